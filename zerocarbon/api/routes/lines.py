"""``/api/v1/lines``: production lines, their hourly energy and output, and roll-ups."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status

from zerocarbon.api import queries
from zerocarbon.api.deps import HourRangeDep, PeriodRangeDep, PoolDep, SiteTimezoneDep
from zerocarbon.api.ranges import HOURLY_RANGE_ERRORS, ROLLUP_RANGE_ERRORS
from zerocarbon.api.rollup import Period
from zerocarbon.api.schemas import HourlyLine, Line, LineRollup

router = APIRouter(prefix="/api/v1/lines", tags=["lines"])

LineQuery = Annotated[str | None, Query(description="A line id; all lines without")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    status.HTTP_404_NOT_FOUND: {"description": "No line with that id"}
}


async def _check_line(db: queries.Db, line: str | None) -> None:
    if line is not None and not await queries.line_known(db, line):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown line {line!r}")


@router.get("", response_model=list[Line], summary="Production lines")
async def list_lines(pool: PoolDep, request: Request) -> list[Line]:
    """The lines named by the devices' ``line``, with their devices, in the site file's
    order; with their ``[[lines]]`` name, product and unit when the app runs in the
    gateway (which knows the site file)."""
    found = await queries.lines(pool)
    site = getattr(request.app.state, "site", None)
    if site is None:
        return found
    described = {ln.id: ln for ln in site.lines}
    return [
        line.model_copy(update={"name": d.name, "product": d.product, "unit": d.unit})
        if (d := described.get(line.id)) is not None
        else line
        for line in found
    ]


@router.get(
    "/hourly",
    summary="Hourly energy, output and carbon per line",
    response_model=list[HourlyLine],
    responses={
        **NOT_FOUND,
        **HOURLY_RANGE_ERRORS,
    },
)
async def hourly_lines(
    pool: PoolDep, span: HourRangeDep, line: LineQuery = None
) -> list[HourlyLine]:
    """Per-line rows with ``start <= hour_start < end``, by hour, then line.

    ``start``/``end`` and their defaults as for ``/api/v1/carbon/hourly`` (the newest
    row here is the newest of ``hourly_line``). At most 31 days per request.
    """
    async with pool.acquire() as conn:
        await _check_line(conn, line)
        newest = await queries.newest_hour_start(conn, "hourly_line") if span.open else None
        bounds = span.resolve(newest)
        if bounds is None:
            return []
        return await queries.hourly_lines(conn, *bounds, line)


@router.get(
    "/{period}",
    summary="Daily, monthly or yearly energy, output and carbon per line",
    response_model=list[LineRollup],
    responses={
        **NOT_FOUND,
        **ROLLUP_RANGE_ERRORS,
    },
)
async def line_rollup(
    period: Period,
    pool: PoolDep,
    tz: SiteTimezoneDep,
    span: PeriodRangeDep,
    line: LineQuery = None,
) -> list[LineRollup]:
    """Each line's hourly rows summed per day, month or year of the site's time zone,
    by period, then line; periods without rows are left out.

    ``start``/``end`` and their defaults as for ``/api/v1/carbon/{period}``. Sums of the
    hourly rows; ``kwh_per_unit`` and ``kg_per_unit`` recomputed from the sums,
    ``estimated_share`` weighted by ``energy_kwh``; ``complete_hours`` counts the hours
    whose site row is complete.
    """
    async with pool.acquire() as conn:
        await _check_line(conn, line)
        newest = await queries.newest_hour_start(conn, "hourly_line") if span.open else None
        bounds = span.resolve(period, None if newest is None else newest.astimezone(tz).date())
        if bounds is None:
            return []
        return await queries.line_rollup(conn, period, *bounds, tz, line)
