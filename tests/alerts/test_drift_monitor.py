"""The streaming drift monitor of a line (zerocarbon.alerts.drift_monitor): periods,
baseline period, CUSUM and its batch twin, on synthetic lines (tests/alerts/
synthetic_lines.py) and hand-made hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from tests.alerts.synthetic_lines import SyntheticLine, simulate_hours
from zerocarbon.alerts.drift import (
    CusumParams,
    ResidualModel,
    chart_residuals,
    cusum_series,
    drift_cusum_params,
    expected,
    fit_baseline,
)
from zerocarbon.alerts.drift_monitor import (
    DriftPeriod,
    HourInput,
    LineDriftMonitor,
    evaluate_line,
    evaluate_monitor,
)
from zerocarbon.config import DriftRule

H = timedelta(hours=1)
UTC_ZONE = ZoneInfo("UTC")
SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 6, 1, tzinfo=UTC)  # a Monday, 08:00 in Shanghai
BASELINE_H = 168
# the relevant variable stands for an outdoor temperature; the rule needs a known metric
TEMPERATURE = "weather_station:voltage_v"


def rule(**values: Any) -> DriftRule:
    return DriftRule(kind="drift", name="drift", **values)


def synthetic_hours(
    seed: int, hours: int, onset_hour: int | None = None, start: datetime = T0
) -> list[HourInput]:
    energy_kwh, units = simulate_hours(
        SyntheticLine(),
        seed,
        hours,
        start_hour=int(start.timestamp() // 3600),
        onset_hour=onset_hour,
    )
    return [
        (start + i * H, float(e), float(u), ())
        for i, (e, u) in enumerate(zip(energy_kwh, units, strict=True))
    ]


def stream(hours: list[HourInput], monitor: LineDriftMonitor) -> list[DriftPeriod]:
    out: list[DriftPeriod] = []
    for when, energy_kwh, units, variables in hours:
        out.extend(monitor.add_hour(when, energy_kwh, units, variables))
    return out


@pytest.mark.parametrize(("model", "unit"), [("relative", "share"), ("absolute", "kWh")])
def test_streaming_equals_batch_and_the_kernels(model: ResidualModel, unit: str) -> None:
    hours = synthetic_hours(7, BASELINE_H + 240, onset_hour=BASELINE_H + 100)
    model_rule = rule(residual_model=model, k=1.0, h=5.0)
    monitor = LineDriftMonitor("line_a", model_rule, UTC_ZONE)
    streamed = stream(hours, monitor)
    baseline, batch = evaluate_line(hours, "line_a", model_rule, UTC_ZONE)
    assert streamed == batch
    assert monitor.baseline == baseline
    assert len(batch) == len(hours)
    assert [p.in_baseline for p in batch] == [True] * BASELINE_H + [False] * 240
    assert {p.chart_unit for p in batch} == {unit}
    # the same as the kernels of zerocarbon.alerts.drift, computed directly
    energy = np.array([e for _, e, _, _ in hours])
    units = np.array([u for _, _, u, _ in hours])
    direct = fit_baseline(energy[:BASELINE_H], units[:BASELINE_H], residual_model=model)
    assert baseline == direct
    residuals_kwh = energy[BASELINE_H:] - expected(direct, units[BASELINE_H:])
    x = chart_residuals(direct, energy[BASELINE_H:], units[BASELINE_H:])
    assert not np.isnan(x).any()
    params = drift_cusum_params(direct, 1, 1.0, 5.0)
    chart = cusum_series(x, params)
    monitored = batch[BASELINE_H:]
    assert [p.residual_kwh for p in monitored] == pytest.approx(list(residuals_kwh))
    assert [p.residual_share for p in monitored] == pytest.approx(
        list(residuals_kwh / expected(direct, units[BASELINE_H:]))
    )
    assert [p.cusum_high for p in monitored] == pytest.approx(list(chart.upper))
    assert [p.signal for p in monitored] == list(chart.upper_alarm)
    assert any(p.signal for p in monitored)
    assert all(p.charted for p in monitored)
    assert {p.limit for p in monitored} == {params.limit}
    assert params.limit == pytest.approx(5.0 * direct.residual_sd)
    assert {p.reference for p in monitored} == {direct.residual_sd}
    if model == "relative":
        assert direct.residual_sd == direct.residual_std_share
    else:
        assert direct.residual_sd == direct.residual_std_kwh


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_a_five_percent_step_fires_within_a_day(seed: int) -> None:
    onset = BASELINE_H + 30
    hours = synthetic_hours(seed, onset + 48, onset_hour=onset)
    # k = 1, h = 5, as written for these lines: their noise (2 % of rated in every hour)
    # makes a 5 % step only 2 relative sigmas, where the defaults (k = 1.5, h = 7, chosen
    # on the simulated plant, docs/drift.md) take up to 26 h
    _, periods = evaluate_line(hours, "line_a", rule(k=1.0, h=5.0), UTC_ZONE)
    onset_ts = T0 + onset * H
    assert not any(p.signal for p in periods if p.end <= onset_ts)
    first = next(p for p in periods if p.signal)
    assert first.start >= onset_ts
    assert first.end - onset_ts <= 24 * H
    assert first.cusum_high > first.limit  # type: ignore[operator]
    # the chart restarts from zero after a signal
    after = periods[periods.index(first) + 1]
    assert after.chart_unit == "share"  # the default relative residual model
    assert after.cusum_high == pytest.approx(max(0.0, after.residual_share - after.reference))  # type: ignore[operator]


@pytest.mark.parametrize("seed", [21, 22, 23])
def test_no_signal_over_thirty_days_without_degradation(seed: int) -> None:
    hours = synthetic_hours(seed, BASELINE_H + 30 * 24)
    baseline, periods = evaluate_line(hours, "line_a", rule(), UTC_ZONE)
    assert baseline is not None and baseline.r_squared > 0.9
    monitored = [p for p in periods if not p.in_baseline]
    assert len(monitored) == 720
    assert not any(p.signal for p in monitored)
    assert max(p.cusum_high for p in monitored) > 0.0  # the chart did move


def test_shifts_are_aligned_to_local_midnight() -> None:
    # from 05:00 Shanghai: the first shift (00-08 local) is incomplete and skipped
    start = datetime(2026, 6, 1, 5, tzinfo=SHANGHAI).astimezone(UTC)
    hours = synthetic_hours(3, 24 * 12, start=start)
    shift_rule = rule(period="shift", shift_hours=8)
    _, periods = evaluate_line(hours, "line_a", shift_rule, SHANGHAI)
    first = periods[0]
    assert first.start == datetime(2026, 6, 1, 8, tzinfo=SHANGHAI)
    assert first.end == datetime(2026, 6, 1, 16, tzinfo=SHANGHAI)
    assert {p.start.astimezone(SHANGHAI).hour for p in periods} == {0, 8, 16}
    assert {p.end - p.start for p in periods} == {8 * H}
    assert all(p.start.tzinfo == UTC for p in periods)
    # energy and units are the sums of the shift's hours
    by_hour = {when: (e, u) for when, e, u, _ in hours}
    assert first.energy_kwh == pytest.approx(sum(by_hour[first.start + i * H][0] for i in range(8)))
    assert first.units == pytest.approx(sum(by_hour[first.start + i * H][1] for i in range(8)))
    # baseline: the shifts wholly inside the first 168 hours added (the 168th hour ends
    # at 05:00 local, mid-shift), fitted on shift sums
    in_baseline = [p for p in periods if p.in_baseline]
    assert len(in_baseline) == 20
    assert in_baseline[-1].end == start + (BASELINE_H - 5) * H
    monitor, _ = evaluate_monitor(hours, "line_a", shift_rule, SHANGHAI)
    assert monitor.baseline == fit_baseline(
        [p.energy_kwh for p in in_baseline],
        [p.units for p in in_baseline],
        residual_model=shift_rule.residual_model,
    )
    assert monitor.params == CusumParams(
        monitor.baseline.residual_sd,
        shift_rule.k,
        shift_rule.h,
    )


def test_a_shift_with_a_missing_hour_is_skipped() -> None:
    start = datetime(2026, 6, 1, 0, tzinfo=SHANGHAI).astimezone(UTC)
    hours = synthetic_hours(3, 24 * 9, start=start)
    gap = start + (8 * 24 + 9) * H  # 09:00 local on day 9: the 08-16 shift
    holed = [h for h in hours if h[0] != gap]
    shift_rule = rule(period="shift")
    _, full = evaluate_line(hours, "line_a", shift_rule, SHANGHAI)
    _, periods = evaluate_line(holed, "line_a", shift_rule, SHANGHAI)
    assert len(periods) == len(full) - 1
    assert gap - H not in {p.start for p in periods}
    assert datetime(2026, 6, 9, 8, tzinfo=SHANGHAI) not in {p.start for p in periods}
    # a non-finite value counts as missing too
    nan_hours = [(w, float("nan") if w == gap else e, u, v) for w, e, u, v in hours]
    _, with_nan = evaluate_line(nan_hours, "line_a", shift_rule, SHANGHAI)
    assert [p.start for p in with_nan] == [p.start for p in periods]


def test_baseline_period_by_dates() -> None:
    hours = synthetic_hours(5, 24 * 14)
    dated = rule(baseline_start=T0 + 24 * H, baseline_end=T0 + 4 * 24 * H)
    baseline, periods = evaluate_line(hours, "line_a", dated, UTC_ZONE)
    assert [p.start for p in periods if p.in_baseline] == [T0 + i * H for i in range(24, 96)]
    before = periods[:24]
    assert all(p.expected_kwh is None and not p.signal for p in before)
    assert all(p.expected_kwh is not None for p in periods[96:])
    energy = [e for _, e, _, _ in hours[24:96]]
    units = [u for _, _, u, _ in hours[24:96]]
    assert baseline == fit_baseline(energy, units, residual_model=dated.residual_model)


def test_baseline_period_by_hours() -> None:
    hours = synthetic_hours(5, 24 * 5, start=T0 + 3 * H)
    monitor = LineDriftMonitor("line_a", rule(baseline_hours=48), UTC_ZONE)
    periods = stream(hours[:48], monitor)
    assert monitor.baseline is None  # fitted when the first hour past it arrives
    assert monitor.baseline_end == T0 + 51 * H
    periods += stream(hours[48:], monitor)
    assert monitor.baseline is not None and monitor.baseline.n == 48
    assert sum(p.in_baseline for p in periods) == 48
    assert monitor.baseline_span == (T0 + 3 * H, T0 + 51 * H)


def test_hours_out_of_order_are_refused() -> None:
    monitor = LineDriftMonitor("line_a", rule(), UTC_ZONE)
    monitor.add_hour(T0 + 2 * H, 100.0, 150.0)
    with pytest.raises(ValueError, match="time order"):
        monitor.add_hour(T0 + H, 100.0, 150.0)
    with pytest.raises(ValueError, match="time order"):
        monitor.add_hour(T0 + 2 * H, 100.0, 150.0)
    with pytest.raises(ValueError, match="whole hour"):
        monitor.add_hour(T0 + 3 * H + timedelta(minutes=5), 100.0, 150.0)
    with pytest.raises(ValueError, match="variables"):
        monitor.add_hour(T0 + 3 * H, 100.0, 150.0, (21.0,))
    assert monitor.add_hour(T0 + 3 * H, 100.0, 150.0) != []


def test_a_relevant_variable_is_fitted() -> None:
    rng = np.random.default_rng(4)
    n = BASELINE_H + 48
    units = rng.uniform(100.0, 600.0, n)
    temperature_c = 25.0 + 6.0 * np.sin(np.arange(n) * 2 * np.pi / 24) + rng.normal(0, 1, n)
    energy = 40.0 + 0.5 * units + 3.0 * temperature_c + rng.normal(0.0, 4.0, n)
    hours = [
        (T0 + i * H, float(energy[i]), float(units[i]), (float(temperature_c[i]),))
        for i in range(n)
    ]
    baseline, periods = evaluate_line(hours, "line_a", rule(variables=(TEMPERATURE,)), UTC_ZONE)
    assert baseline is not None
    assert baseline.extra_coefficients[0] == pytest.approx(3.0, abs=0.3)
    assert baseline.kwh_per_unit == pytest.approx(0.5, abs=0.01)
    assert baseline.residual_std_kwh == pytest.approx(4.0, rel=0.2)
    last = periods[-1]
    assert last.variables == (float(temperature_c[-1]),)
    assert last.expected_kwh == pytest.approx(
        baseline.fixed_kwh
        + baseline.kwh_per_unit * units[-1]
        + baseline.extra_coefficients[0] * temperature_c[-1]
    )
    # without the variable the fit explains less
    plain, _ = evaluate_line([(w, e, u, ()) for w, e, u, _ in hours], "line_a", rule(), UTC_ZONE)
    assert plain is not None and plain.r_squared < baseline.r_squared


def test_a_baseline_that_cannot_be_fitted_is_reported() -> None:
    shift_rule = rule(period="shift", baseline_hours=20)  # 2 complete shifts: p + 2 = 4
    hours = synthetic_hours(5, 24 * 3, start=datetime(2026, 6, 1, tzinfo=UTC_ZONE))
    monitor, periods = evaluate_monitor(hours, "line_b", shift_rule, UTC_ZONE)
    assert monitor.baseline is None
    assert monitor.baseline_error == (
        "line line_b has 16 closed hours in the baseline period, the fit needs at least "
        "32 (4 complete shifts)"
    )
    monitored = [p for p in periods if not p.in_baseline]
    assert monitored and all(p.expected_kwh is None and not p.signal for p in monitored)
    # no output at all: no energy per unit to fit
    idle = [(w, 10.0 + i % 3, 0.0, ()) for i, (w, _, _, _) in enumerate(hours)]
    monitor, _ = evaluate_monitor(idle, "line_b", rule(baseline_hours=24), UTC_ZONE)
    assert monitor.baseline is None
    assert (
        monitor.baseline_error is not None and "units has zero variance" in monitor.baseline_error
    )
    # fewer hours than the baseline needs
    monitor, _ = evaluate_monitor(hours[:30], "line_b", rule(), UTC_ZONE)
    assert monitor.baseline_error == (
        "line line_b has 30 closed hours, the baseline needs the first 168 (baseline_hours)"
    )


def day_shift_hours(seed: int, hours: int, onset_hour: int | None = None) -> list[HourInput]:
    """A day-shift line (tests/alerts/synthetic_lines.py, pattern 1) whose efficiency
    noise is multiplicative, as on the simulated plant: a fixed 20 kWh an hour plus the
    process energy times ``1 + 0.02 z`` (seeded, one factor per hour), so a running hour's
    residual is several times an idle hour's."""
    line = SyntheticLine(pattern_index=1, noise_fraction=0.0)
    energy_kwh, units = simulate_hours(
        line, seed, hours, start_hour=int(T0.timestamp() // 3600), onset_hour=onset_hour
    )
    process_kwh = energy_kwh - line.fixed_kw
    factor = 1.0 + 0.02 * np.random.default_rng(seed + 100).standard_normal(hours)
    energy_kwh = line.fixed_kw + process_kwh * factor
    return [
        (T0 + i * H, float(e), float(u), ())
        for i, (e, u) in enumerate(zip(energy_kwh, units, strict=True))
    ]


@pytest.mark.parametrize("seed", [12, 19])
def test_relative_residuals_keep_a_day_shift_line_quiet_where_absolute_ones_do_not(
    seed: int,
) -> None:
    hours = day_shift_hours(seed, BASELINE_H + 30 * 24)
    signals = {}
    for model in ("relative", "absolute"):
        _, periods = evaluate_line(
            hours, "line_b", rule(residual_model=model, k=1.0, h=5.0), UTC_ZONE
        )
        assert sum(p.charted for p in periods) == 30 * 24
        signals[model] = sum(p.signal for p in periods)
    # the pooled kWh spread is too wide for idle hours and too narrow for running ones
    assert signals == {"relative": 0, "absolute": 2}


@pytest.mark.parametrize("seed", [4, 5, 7])
def test_relative_residuals_catch_a_five_percent_step_on_a_day_shift_line(seed: int) -> None:
    onset = BASELINE_H + 24 + 3 * seed  # different hours of the day
    hours = day_shift_hours(seed, onset + 48, onset_hour=onset)
    _, periods = evaluate_line(hours, "line_b", rule(), UTC_ZONE)
    onset_ts = T0 + onset * H
    assert not any(p.signal for p in periods if p.end <= onset_ts)
    first = next(p for p in periods if p.signal)
    assert first.chart_unit == "share" and first.start >= onset_ts
    assert first.end - onset_ts <= 24 * H


def test_a_period_with_no_expected_energy_is_skipped_by_the_relative_chart() -> None:
    # no fixed load: idle hours expect (about) nothing, their relative residual is undefined
    rng = np.random.default_rng(9)
    n = BASELINE_H + 48
    units = np.where(np.arange(n) % 24 < 8, 0.0, rng.uniform(200.0, 400.0, n))
    energy = 0.5 * units * (1.0 + 0.02 * rng.standard_normal(n))
    hours: list[HourInput] = [(T0 + i * H, float(energy[i]), float(units[i]), ()) for i in range(n)]
    baseline, periods = evaluate_line(hours, "line_a", rule(), UTC_ZONE)
    assert baseline is not None and baseline.kwh_per_unit == pytest.approx(0.5, abs=0.005)
    monitored = periods[BASELINE_H:]
    idle = [p for p in monitored if p.units == 0.0]
    busy = [p for p in monitored if p.units > 0.0]
    assert len(idle) == 16 and busy and all(p.charted for p in busy)
    assert baseline.residual_std_share == pytest.approx(0.02, rel=0.2)
    for p in idle:  # the fitted intercept is about zero: below the floor
        assert p.expected_kwh is not None and p.expected_kwh <= baseline.min_expected_kwh
        assert not p.charted and p.residual_share is None and not p.signal
        assert p.skipped is not None and "no relative residual" in p.skipped
        before = periods[periods.index(p) - 1]
        assert (p.cusum_high, p.cusum_low) == (before.cusum_high, before.cusum_low)
    # the streaming monitor agrees with the batch one
    assert stream(hours, LineDriftMonitor("line_a", rule(), UTC_ZONE)) == periods
