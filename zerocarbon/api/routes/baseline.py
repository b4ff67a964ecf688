"""``/api/v1/lines/{line}/baseline``: a line's ISO 50006 energy baseline, its EnPI and
the efficiency-drift CUSUM per period (:mod:`zerocarbon.alerts.drift_monitor`)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, status
from pydantic import ValidationError

from zerocarbon.alerts.drift import enpi
from zerocarbon.alerts.drift_monitor import DriftPeriod, HourInput, evaluate_monitor
from zerocarbon.api import baseline_queries, queries
from zerocarbon.api.baseline_schemas import (
    BaselineCusum,
    BaselineEnpi,
    BaselineModel,
    BaselinePeriod,
    LineBaseline,
)
from zerocarbon.api.deps import PoolDep, SiteTimezoneDep
from zerocarbon.api.ranges import UNPROCESSABLE, as_utc, unprocessable
from zerocarbon.config import DriftRule, SiteConfig

router = APIRouter(prefix="/api/v1/lines", tags=["baseline"])

HOUR = timedelta(hours=1)
_DEFAULT_RULE = DriftRule(kind="drift", name="baseline")
_RESPONSES: dict[int | str, dict[str, Any]] = {
    status.HTTP_404_NOT_FOUND: {"description": "No line with that id"},
    status.HTTP_409_CONFLICT: {
        "description": "The baseline cannot be fitted (too few closed hours in the "
        "baseline period, no variation of output, ...)"
    },
    UNPROCESSABLE: {"description": "Invalid query parameters"},
}
UtcQuery = Annotated[datetime | None, Query(description="ISO 8601; naive means UTC")]


def drift_rule_for(site: SiteConfig | None, line: str) -> DriftRule:
    """The site's first drift rule covering ``line`` (its ``lines`` empty or naming it);
    the :class:`DriftRule` defaults without one (baseline: the first 168 closed hours)."""
    if site is not None:
        for rule in site.alerts.rules:
            if isinstance(rule, DriftRule) and (not rule.lines or line in rule.lines):
                return rule
    return _DEFAULT_RULE


def _with_overrides(rule: DriftRule, overrides: dict[str, Any]) -> DriftRule:
    given = {key: value for key, value in overrides.items() if value is not None}
    if not given:
        return rule
    try:
        return DriftRule.model_validate({**rule.model_dump(), **given})
    except ValidationError as exc:
        problems = "; ".join(str(e["msg"]) for e in exc.errors())
        raise unprocessable(f"invalid drift settings: {problems}") from exc


def _period(p: DriftPeriod) -> BaselinePeriod:
    return BaselinePeriod(
        start=p.start,
        end=p.end,
        energy_kwh=p.energy_kwh,
        units=p.units,
        expected_kwh=p.expected_kwh,
        residual_kwh=p.residual_kwh,
        residual_share=p.residual_share,
        cusum_high=p.cusum_high,
        cusum_low=p.cusum_low,
        skipped=p.skipped,
        signal=p.signal,
        in_baseline=p.in_baseline,
    )


@router.get(
    "/{line}/baseline",
    summary="Energy baseline, EnPI and efficiency-drift CUSUM of a line",
    response_model=LineBaseline,
    responses=_RESPONSES,
)
async def line_baseline(
    line: str,
    request: Request,
    pool: PoolDep,
    tz: SiteTimezoneDep,
    start: UtcQuery = None,
    end: UtcQuery = None,
    baseline_start: UtcQuery = None,
    baseline_end: UtcQuery = None,
    period: Annotated[Literal["hour", "shift"] | None, Query()] = None,
    k: Annotated[float | None, Query(gt=0, description="Reference value [sd]")] = None,
    h: Annotated[float | None, Query(gt=0, description="Decision limit [sd]")] = None,
    residual_model: Annotated[Literal["relative", "absolute"] | None, Query()] = None,
) -> LineBaseline:
    """The line's energy baseline (ISO 50006: ``E = a + b x units + c x variables``,
    least squares over the baseline period) and the tabular CUSUM of actual minus
    expected energy per period (Montgomery, SQC sec. 9.1.2): in kWh with the absolute
    residual model, as a share of the expected energy with the relative one (weighted
    least squares; ``chart_unit`` says which).

    Defaults come from the site's drift rule covering the line (else the
    :class:`DriftRule` defaults; baseline = the first 168 closed hours);
    ``baseline_start``/``baseline_end`` (both), ``period``, ``k``, ``h`` and
    ``residual_model`` override them. ``start``/``end`` bound the monitored range
    (default: everything stored): ``series`` has the periods starting in it, the EnPI is
    over its monitored periods; the baseline period is read whether or not it lies in
    the range, and the CUSUM runs from the baseline's end. Only closed hours are used
    (:mod:`..baseline_queries`); an hour missing a relevant variable counts as missing (a
    shift with one is skipped).
    """
    start, end = as_utc(start), as_utc(end)
    if start is not None and end is not None and end <= start:
        raise unprocessable("end must be after start")
    site: SiteConfig | None = getattr(request.app.state, "site", None)
    rule = _with_overrides(
        drift_rule_for(site, line),
        {
            "baseline_start": as_utc(baseline_start),
            "baseline_end": as_utc(baseline_end),
            "period": period,
            "k": k,
            "h": h,
            "residual_model": residual_model,
        },
    )
    if rule.baseline_start is not None and start is not None:
        read_start: datetime | None = min(start, rule.baseline_start)
    else:
        read_start = None  # the baseline is the line's first hours: read from the first
    async with pool.acquire() as conn:
        if not await queries.line_known(conn, line):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown line {line!r}")
        rows = await baseline_queries.closed_line_hours(conn, line, read_start, end)
        means: list[dict[datetime, float]] = []
        if rows:
            for variable in rule.variables:
                device, _, metric = variable.partition(":")
                means.append(
                    await baseline_queries.hourly_means(
                        conn, device, metric, rows[0][0], rows[-1][0] + HOUR
                    )
                )
    hours: list[HourInput] = [
        (when, energy_kwh, units, tuple(m.get(when, math.nan) for m in means))
        for when, energy_kwh, units in rows
    ]
    monitor, periods = evaluate_monitor(hours, line, rule, tz)
    baseline, params, span = monitor.baseline, monitor.params, monitor.baseline_span
    if baseline is None or params is None or span is None:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            monitor.baseline_error or f"line {line}: no baseline could be fitted",
        )
    series = [p for p in periods if start is None or p.start >= start]
    monitored = [p for p in series if p.expected_kwh is not None]
    line_enpi: BaselineEnpi | None = None
    if sum(p.units for p in monitored) > 0:
        extra = [p.variables for p in monitored] if rule.variables else None
        value = enpi(
            baseline,
            [p.energy_kwh for p in monitored],
            [p.units for p in monitored],
            extra,
        )
        line_enpi = BaselineEnpi(
            actual_kwh_per_unit=value.actual_kwh_per_unit,
            expected_kwh_per_unit=value.expected_kwh_per_unit,
            ratio=value.ratio,
        )
    return LineBaseline(
        line=line,
        model=BaselineModel(
            fixed_kwh=baseline.fixed_kwh,
            kwh_per_unit=baseline.kwh_per_unit,
            variables=dict(zip(rule.variables, baseline.extra_coefficients, strict=True)),
            r_squared=baseline.r_squared,
            residual_model=baseline.residual_model,
            chart_unit=baseline.chart_unit,
            residual_sd=baseline.residual_sd,
            residual_sd_kwh=baseline.residual_std_kwh,
            n_periods=baseline.n,
            period=rule.period,
            baseline_start=span[0],
            baseline_end=span[1],
        ),
        enpi=line_enpi,
        cusum=BaselineCusum(
            chart_unit=baseline.chart_unit,
            reference=params.reference,
            limit=params.limit,
            k=rule.k,
            h=rule.h,
        ),
        series=[_period(p) for p in series],
    )
