"""Streaming efficiency-drift monitor of one production line (a ``drift`` alert rule).

A :class:`LineDriftMonitor` takes the line's closed hours in time order (energy [kWh],
units produced, hourly means of the rule's relevant variables), groups them into the
rule's periods (hours, or shifts of ``shift_hours`` aligned to local midnight), fits the
ISO 50006 energy baseline on the periods of the baseline period
(:func:`zerocarbon.alerts.drift.fit_baseline` on period sums, with the rule's
``residual_model``) and then runs the upper and lower tabular CUSUM of the residual per
period (Montgomery, "Introduction to Statistical Quality Control", 6th ed., sec. 9.1.2):
``actual - expected`` [kWh] with the absolute model, ``(actual - expected) / expected``
[share] with the relative one (each period's :attr:`DriftPeriod.chart_unit` says which).
A period *signals* when the upper sum ``C+`` exceeds ``H = h * sigma``; both sums then
restart from zero in the next period (sec. 9.1.2: the chart is restarted once the
assignable cause is dealt with). The lower sum (energy saved against the baseline) is
reported but never signals.

``sigma`` is the residual standard deviation of the baseline's period sums in the chart's
unit (:attr:`~zerocarbon.alerts.drift.Baseline.residual_sd`), ``K = k * sigma``, ``H = h
* sigma`` (:func:`~zerocarbon.alerts.drift.drift_cusum_params` with one period per block:
the fit is on the period sums themselves). With the relative model, a period whose
expected energy is at or below :attr:`~zerocarbon.alerts.drift.Baseline.min_expected_kwh`
has no relative residual: the chart skips it (sums unchanged, no signal) and its
:attr:`DriftPeriod.skipped` says why.

:func:`evaluate_line` is the batch form for the API: the same periods for the same hours.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from zerocarbon.alerts.drift import (
    MIN_DEGREES_OF_FREEDOM,
    Baseline,
    ChartUnit,
    CusumParams,
    drift_cusum_params,
    expected,
    fit_baseline,
)
from zerocarbon.config import DriftRule

HOUR = timedelta(hours=1)

HourInput = tuple[datetime, float, float, tuple[float, ...]]


@dataclass(frozen=True, slots=True)
class DriftPeriod:
    """One evaluated period of a line (an hour, or a shift of ``shift_hours``).

    Energies are per period [kWh]; ``variables`` are the means of the rule's relevant
    variables' hourly means over the period, in the rule's order. The CUSUM fields
    (``cusum_high``, ``cusum_low``, ``reference``, ``limit``) are in ``chart_unit``: kWh
    per period with the absolute residual model, a share of the expected energy [-]
    with the relative one (0.05: 5 % above the baseline).
    """

    line: str
    start: datetime  # UTC, inclusive
    end: datetime  # UTC, exclusive
    energy_kwh: float
    units: float
    variables: tuple[float, ...]
    in_baseline: bool  # part of the baseline period (no CUSUM)
    expected_kwh: float | None  # None in the baseline period or without a baseline
    residual_kwh: float | None  # actual - expected
    residual_share: float | None  # (actual - expected) / expected; None as expected_kwh
    chart_unit: ChartUnit  # unit of the CUSUM fields: "kWh" or "share"
    cusum_high: float  # C+ after this period (0 in the baseline period)
    cusum_low: float  # C-
    reference: float | None  # K
    limit: float | None  # H
    signal: bool  # C+ > H at this period (both sums restart from 0 after it)
    skipped: str | None = None  # why the chart did not take this monitored period

    @property
    def charted(self) -> bool:
        """The period updated the CUSUM (monitored, with a residual in the chart unit)."""
        return self.expected_kwh is not None and self.skipped is None


@dataclass(slots=True)
class _OpenPeriod:
    start: datetime
    end: datetime
    hours_needed: int
    hours: int = 0
    energy_kwh: float = 0.0
    units: float = 0.0
    variables: list[float] | None = None
    broken: bool = False  # a non-finite value: evaluated as missing


class LineDriftMonitor:
    """Drift of one line under ``rule``, fed hour by hour.

    Parameters
    ----------
    line : str
        The line's id.
    rule : DriftRule
        Period, baseline period, relevant variables, ``k`` and ``h``.
    tz : ZoneInfo
        The site's time zone: shifts are aligned to its local midnight (with 8-hour
        shifts 00-08, 08-16, 16-24 local time).

    Missing hours: an hour that never arrives leaves its period incomplete, and an
    incomplete shift is skipped (neither evaluated nor part of the fit; the CUSUM goes
    on from the previous period). An hour whose energy, units or a variable is not
    finite counts as missing. With ``period = "hour"`` each hour is its own period.
    On days with a daylight-saving change a shift has one hour more or less than
    ``shift_hours``; it is evaluated like the others.

    Baseline period: the periods lying wholly in ``[rule.baseline_start,
    rule.baseline_end)`` when given, else in the first ``rule.baseline_hours`` hours
    added. The baseline is fitted when the first hour past that period arrives (or on
    :meth:`close_baseline`); if it cannot be fitted, :attr:`baseline_error` says why and
    later periods are returned with ``expected_kwh = None``.
    """

    def __init__(self, line: str, rule: DriftRule, tz: ZoneInfo) -> None:
        self.line = line
        self.rule = rule
        self.tz = tz
        self.baseline_error: str | None = None
        self.params: CusumParams | None = None
        self._baseline: Baseline | None = None
        self._fitted = False
        self._n_variables = len(rule.variables)
        self._last_hour: datetime | None = None
        self._hours_added = 0
        self._baseline_start: datetime | None = None
        self._baseline_end: datetime | None = None
        if rule.baseline_start is not None and rule.baseline_end is not None:
            self._baseline_start = rule.baseline_start.astimezone(UTC)
            self._baseline_end = rule.baseline_end.astimezone(UTC)
        self._baseline_hours = 0  # closed hours in the baseline's complete periods
        self._fit_energy: list[float] = []
        self._fit_units: list[float] = []
        self._fit_variables: list[tuple[float, ...]] = []
        self._fit_span: tuple[datetime, datetime] | None = None
        self._open: _OpenPeriod | None = None
        self._upper = 0.0
        self._lower = 0.0
        self._restart = False

    # --- what is known ---------------------------------------------------------------

    @property
    def baseline(self) -> Baseline | None:
        """The fitted baseline (``None`` until the baseline period is over, or if it
        could not be fitted: see :attr:`baseline_error`)."""
        return self._baseline

    @property
    def baseline_span(self) -> tuple[datetime, datetime] | None:
        """UTC start of the first and end of the last period the baseline was fitted on."""
        return self._fit_span

    @property
    def baseline_end(self) -> datetime | None:
        """End of the baseline period in UTC, once known (the rule's ``baseline_end``,
        or the end of the ``baseline_hours``-th hour added)."""
        return self._baseline_end

    @property
    def last_hour(self) -> datetime | None:
        """Start of the last hour added (UTC)."""
        return self._last_hour

    @property
    def hours_added(self) -> int:
        """Hours added so far."""
        return self._hours_added

    @property
    def chart_unit(self) -> ChartUnit:
        """Unit of the CUSUM: "share" with the relative residual model, else "kWh"."""
        return "share" if self.rule.residual_model == "relative" else "kWh"

    @property
    def hours_per_period(self) -> int:
        """Nominal hours per period: 1, or ``shift_hours``."""
        return 1 if self.rule.period == "hour" else self.rule.shift_hours

    # --- periods ---------------------------------------------------------------------

    def _period_of(self, hour_start: datetime) -> tuple[datetime, datetime]:
        if self.rule.period == "hour":
            return hour_start, hour_start + HOUR
        local = hour_start.astimezone(self.tz)
        midnight = datetime.combine(local.date(), time(0), self.tz)
        next_midnight = datetime.combine(local.date() + timedelta(days=1), time(0), self.tz)
        elapsed_h = int((hour_start - midnight.astimezone(UTC)) // HOUR)
        index = elapsed_h // self.rule.shift_hours
        start = midnight.astimezone(UTC) + index * self.rule.shift_hours * HOUR
        end = min(start + self.rule.shift_hours * HOUR, next_midnight.astimezone(UTC))
        # the last shift of a 25-hour day takes the extra hour; of a 23-hour day it is short
        if next_midnight.astimezone(UTC) - end < self.rule.shift_hours * HOUR:
            end = next_midnight.astimezone(UTC)
        return start, end

    def _in_baseline(self, start: datetime, end: datetime) -> bool:
        if self._fitted:
            return False
        if self._baseline_start is not None and self._baseline_end is not None:
            return self._baseline_start <= start and end <= self._baseline_end
        return self._baseline_end is None or end <= self._baseline_end

    # --- feeding ---------------------------------------------------------------------

    def _uncharted(
        self, period: _OpenPeriod, means: tuple[float, ...], *, in_baseline: bool
    ) -> DriftPeriod:
        """A period with no expected energy: in the baseline, or without a baseline."""
        return DriftPeriod(
            self.line,
            period.start,
            period.end,
            period.energy_kwh,
            period.units,
            means,
            in_baseline=in_baseline,
            expected_kwh=None,
            residual_kwh=None,
            residual_share=None,
            chart_unit=self.chart_unit,
            cusum_high=0.0,
            cusum_low=0.0,
            reference=None,
            limit=None,
            signal=False,
        )

    def add_hour(
        self,
        hour_start: datetime,
        energy_kwh: float,
        units: float,
        variables: Sequence[float] = (),
    ) -> list[DriftPeriod]:
        """Add one closed hour; return the periods it completed (none or one).

        Parameters
        ----------
        hour_start : datetime
            Start of the hour, timezone-aware, on a whole hour; later than the last one.
        energy_kwh : float
            The line's energy in the hour [kWh].
        units : float
            Units produced in the hour [unit].
        variables : sequence of float
            Hourly means of the rule's relevant variables, in the rule's order.

        Raises
        ------
        ValueError
            A naive or unaligned ``hour_start``, one not after the previous hour, or the
            wrong number of variables.
        """
        if hour_start.tzinfo is None:
            raise ValueError(f"hour_start must be timezone-aware, got {hour_start}")
        hour_start = hour_start.astimezone(UTC)
        if hour_start.minute or hour_start.second or hour_start.microsecond:
            raise ValueError(f"hour_start must be on a whole hour, got {hour_start}")
        if self._last_hour is not None and hour_start <= self._last_hour:
            raise ValueError(
                f"line {self.line}: hour {hour_start.isoformat()} is not after the last "
                f"hour added ({self._last_hour.isoformat()}); hours must come in time order"
            )
        if len(variables) != self._n_variables:
            raise ValueError(
                f"line {self.line}: {len(variables)} variables given, the rule has "
                f"{self._n_variables} ({', '.join(self.rule.variables) or 'none'})"
            )
        self._last_hour = hour_start
        self._hours_added += 1
        if not self._fitted and self._baseline_end is not None and hour_start >= self._baseline_end:
            self.close_baseline()

        start, end = self._period_of(hour_start)
        period = self._open
        if period is None or period.start != start:
            # a period left open is incomplete: skipped
            period = _OpenPeriod(start, end, round((end - start) / HOUR))
            self._open = period
        period.hours += 1
        values = (energy_kwh, units, *variables)
        if not all(math.isfinite(v) for v in values):
            period.broken = True
        else:
            period.energy_kwh += energy_kwh
            period.units += units
            if period.variables is None:
                period.variables = [0.0] * self._n_variables
            for i, v in enumerate(variables):
                period.variables[i] += v
        if self._baseline_end is None and self._hours_added == self.rule.baseline_hours:
            self._baseline_end = hour_start + HOUR  # the baseline-th hour closes it
        if hour_start + HOUR < end:
            return []
        self._open = None
        if period.broken or period.hours != period.hours_needed:
            return []
        means = tuple(v / period.hours for v in (period.variables or ()))
        return [self._evaluate(period, means)]

    def close_baseline(self) -> Baseline | None:
        """Fit the baseline on the baseline periods seen so far (called by
        :meth:`add_hour` at the first hour past the baseline period; call it to fit
        when no later hour will come). Idempotent."""
        if self._fitted:
            return self._baseline
        self._fitted = True
        n = len(self._fit_energy)
        p = 2 + self._n_variables
        extra = np.array(self._fit_variables, dtype=np.float64).reshape(n, self._n_variables)
        try:
            baseline = fit_baseline(
                self._fit_energy,
                self._fit_units,
                extra if self._n_variables else None,
                self.rule.residual_model,
            )
            self.params = drift_cusum_params(baseline, 1, self.rule.k, self.rule.h)
        except ValueError as exc:
            m = self.hours_per_period
            if n < p + MIN_DEGREES_OF_FREEDOM:
                self.baseline_error = (
                    f"line {self.line} has {self._baseline_hours} closed hours in the "
                    f"baseline period, the fit needs at least "
                    f"{(p + MIN_DEGREES_OF_FREEDOM) * m} ({p + MIN_DEGREES_OF_FREEDOM} "
                    f"complete {self.rule.period}s)"
                )
            else:
                self.baseline_error = (
                    f"line {self.line}: the baseline cannot be fitted on its {n} "
                    f"{self.rule.period}s in the baseline period: {exc}"
                )
            return None
        self._baseline = baseline
        return baseline

    def _evaluate(self, period: _OpenPeriod, means: tuple[float, ...]) -> DriftPeriod:
        if self._in_baseline(period.start, period.end):
            self._fit_energy.append(period.energy_kwh)
            self._fit_units.append(period.units)
            self._fit_variables.append(means)
            self._baseline_hours += period.hours
            first = self._fit_span[0] if self._fit_span is not None else period.start
            self._fit_span = (first, period.end)
            return self._uncharted(period, means, in_baseline=True)
        baseline, params = self._baseline, self.params
        if baseline is None or params is None:
            return self._uncharted(period, means, in_baseline=False)
        extra = np.array([means], dtype=np.float64) if self._n_variables else None
        expected_kwh = float(expected(baseline, [period.units], extra)[0])
        residual_kwh = period.energy_kwh - expected_kwh
        residual_share: float | None = None
        skipped: str | None = None
        if expected_kwh > baseline.min_expected_kwh:
            residual_share = residual_kwh / expected_kwh
        elif baseline.residual_model == "relative":
            skipped = (
                f"expected energy {expected_kwh:.6g} kWh is not above "
                f"{baseline.min_expected_kwh:.3g} kWh: no relative residual, period "
                "left out of the CUSUM"
            )
        x = residual_share if baseline.residual_model == "relative" else residual_kwh
        signal = False
        if x is not None:
            if self._restart:
                self._upper = self._lower = 0.0
            reference = params.reference
            self._upper = max(0.0, x - reference + self._upper)
            self._lower = max(0.0, -reference - x + self._lower)
            signal = self._upper > params.limit
            self._restart = signal
        return DriftPeriod(
            self.line,
            period.start,
            period.end,
            period.energy_kwh,
            period.units,
            means,
            in_baseline=False,
            expected_kwh=expected_kwh,
            residual_kwh=residual_kwh,
            residual_share=residual_share,
            chart_unit=self.chart_unit,
            cusum_high=self._upper,
            cusum_low=self._lower,
            reference=params.reference,
            limit=params.limit,
            signal=signal,
            skipped=skipped,
        )


def evaluate_line(
    hours: Sequence[HourInput], line: str, rule: DriftRule, tz: ZoneInfo
) -> tuple[Baseline | None, list[DriftPeriod]]:
    """Batch version for the API: the same periods :class:`LineDriftMonitor` yields for
    the same hours ``(hour_start, energy_kwh, units, variables)`` (in time order).

    When the hours end inside or right at the end of the baseline period, the baseline
    is fitted on what was seen if the period is over (dates given and the last hour
    reaches ``baseline_end``, or ``baseline_hours`` hours seen); otherwise it stays
    ``None``. Use :func:`evaluate_monitor` to also get the reason a fit failed.
    """
    monitor, periods = evaluate_monitor(hours, line, rule, tz)
    return monitor.baseline, periods


def evaluate_monitor(
    hours: Sequence[HourInput], line: str, rule: DriftRule, tz: ZoneInfo
) -> tuple[LineDriftMonitor, list[DriftPeriod]]:
    """:func:`evaluate_line` returning the monitor itself (its :attr:`baseline_error`,
    :attr:`params`, :attr:`baseline_span`)."""
    monitor = LineDriftMonitor(line, rule, tz)
    periods: list[DriftPeriod] = []
    for hour_start, energy_kwh, units, variables in hours:
        periods.extend(monitor.add_hour(hour_start, energy_kwh, units, variables))
    if monitor.baseline is None and monitor.baseline_error is None:
        end, last = monitor.baseline_end, monitor.last_hour
        if end is not None and last is not None and last + HOUR >= end:
            monitor.close_baseline()
        elif rule.baseline_end is None:
            monitor.baseline_error = (
                f"line {line} has {monitor.hours_added} closed hours, the baseline needs "
                f"the first {rule.baseline_hours} (baseline_hours)"
            )
        else:
            upto = "none" if last is None else f"up to {(last + HOUR).isoformat()}"
            monitor.baseline_error = (
                f"line {line}: the baseline period ends at {rule.baseline_end.isoformat()}, "
                f"the line has closed hours {upto}"
            )
    return monitor, periods
