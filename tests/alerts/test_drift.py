"""Tests of zerocarbon.alerts.drift: the ISO 50006 baseline fit and the tabular CUSUM."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.alerts.synthetic_lines import SyntheticLine, simulate_hours
from zerocarbon.alerts.drift import (
    DRIFT_H,
    DRIFT_K,
    MIN_EXPECTED_SHARE,
    Baseline,
    CusumParams,
    CusumState,
    arl_siegmund,
    chart_residuals,
    cusum_series,
    drift_cusum_params,
    enpi,
    expected,
    fit_baseline,
    sum_per_block,
)


def _noisy_line(seed: int, n: int = 500) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    units = rng.uniform(0.0, 400.0, n)
    units[rng.random(n) < 0.2] = 0.0  # idle hours stay in the fit
    temperature_c = rng.uniform(-5.0, 35.0, n)
    energy_kwh = 20.0 + 0.5 * units + 1.2 * temperature_c + rng.normal(0.0, 2.0, n)
    return energy_kwh, units, temperature_c


def test_fit_recovers_known_coefficients() -> None:
    energy_kwh, units, temperature_c = _noisy_line(seed=7)
    baseline = fit_baseline(energy_kwh, units, temperature_c)
    assert baseline.fixed_kwh == pytest.approx(20.0, abs=0.6)
    assert baseline.kwh_per_unit == pytest.approx(0.5, abs=0.003)
    assert baseline.extra_coefficients[0] == pytest.approx(1.2, abs=0.03)
    assert baseline.residual_std_kwh == pytest.approx(2.0, rel=0.1)
    assert baseline.n == 500
    assert baseline.parameters == 3


def test_r_squared_and_sigma_match_numpy_lstsq() -> None:
    energy_kwh, units, temperature_c = _noisy_line(seed=11, n=120)
    baseline = fit_baseline(energy_kwh, units, temperature_c)
    design = np.column_stack((np.ones(120), units, temperature_c))
    coefficients, sse, _, _ = np.linalg.lstsq(design, energy_kwh, rcond=None)
    sst = float(np.sum((energy_kwh - energy_kwh.mean()) ** 2))
    assert baseline.fixed_kwh == pytest.approx(coefficients[0])
    assert baseline.kwh_per_unit == pytest.approx(coefficients[1])
    assert baseline.r_squared == pytest.approx(1.0 - sse[0] / sst)
    assert baseline.residual_std_kwh == pytest.approx(np.sqrt(sse[0] / (120 - 3)))


def test_fit_without_extra_matches_polyfit() -> None:
    energy_kwh, units, _ = _noisy_line(seed=3, n=60)
    baseline = fit_baseline(energy_kwh, units)
    slope, intercept = np.polyfit(units, energy_kwh, 1)
    assert (baseline.fixed_kwh, baseline.kwh_per_unit) == pytest.approx((intercept, slope))
    assert baseline.extra_coefficients == ()


@pytest.mark.parametrize(
    ("energy_kwh", "units", "extra", "message"),
    [
        ([1.0, 2.0, 3.0], [1.0, 2.0, 4.0], None, "too few periods"),
        ([1.0, 2.0, 3.0, 4.0], [5.0, 5.0, 5.0, 5.0], None, "units has zero variance"),
        ([1.0, float("nan"), 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], None, "energy_kwh contains NaN"),
        ([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, float("nan"), 4.0], None, "units contains NaN"),
        ([2.0, 2.0, 2.0, 2.0], [1.0, 2.0, 3.0, 4.0], None, "energy_kwh has zero variance"),
        ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0], None, "differ in length"),
        ([1.0, 2.0, 3.0, 5.0, 4.0], [1.0, 2.0, 3.0, 4.0, 6.0], [2.0] * 5, "collinear"),
        ([1.0, 2.0, 3.0, 5.0, 4.0], [1.0, 2.0, 3.0, 4.0, 6.0], [1.0, 2.0], "extra must have"),
    ],
)
def test_fit_refuses_degenerate_input(
    energy_kwh: list[float], units: list[float], extra: list[float] | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        fit_baseline(energy_kwh, units, extra)


def test_expected_and_enpi() -> None:
    units = np.array([0.0, 100.0, 200.0, 300.0, 0.0, 250.0])
    baseline = fit_baseline(10.0 + 0.5 * units + [0.1, -0.1, 0.1, -0.1, 0.0, 0.0], units)
    assert expected(baseline, units) == pytest.approx(10.0 + 0.5 * units, abs=0.2)
    degraded_kwh = 10.0 + 0.525 * units  # 5 % more per unit, same fixed load
    indicator = enpi(baseline, degraded_kwh, units)
    assert indicator.actual_kwh_per_unit == pytest.approx((60.0 + 0.525 * 850.0) / 850.0)
    assert indicator.expected_kwh_per_unit == pytest.approx(
        float(expected(baseline, units).sum()) / 850.0
    )
    assert indicator.ratio == pytest.approx(1.044, abs=0.002)
    with pytest.raises(ValueError, match="no units produced"):
        enpi(baseline, [10.0, 10.0], [0.0, 0.0])
    with pytest.raises(ValueError, match="extra has 1 columns"):
        expected(baseline, units, units)


def test_sum_per_block_drops_incomplete_shift() -> None:
    assert sum_per_block(np.arange(10.0), 4).tolist() == [6.0, 22.0]


# Montgomery, SQC 6th ed., Example 9.1 / Table 9.1: mu0 = 10, sigma = 1, k = 1/2, h = 5;
# the first 20 observations from N(10, 1), the last 10 from N(11, 1).
MONTGOMERY_9_1 = [
    9.45, 7.99, 9.29, 11.66, 12.16, 10.18, 8.04, 11.46, 9.20, 10.34,
    9.03, 11.47, 10.51, 9.40, 10.08, 9.37, 10.62, 10.31, 8.52, 10.84,
    10.90, 9.33, 12.29, 11.50, 10.60, 11.08, 10.38, 11.62, 11.31, 10.52,
]  # fmt: skip


def test_cusum_textbook_example() -> None:
    params = CusumParams(sigma=1.0, target=10.0, reset_after_alarm=False)
    series = cusum_series(MONTGOMERY_9_1, params)
    # by hand: C+_4 = 11.66 - 10.5, C+_5 = 1.16 + 12.16 - 10.5; C-_2 = 0.05 + 9.5 - 7.99
    assert series.upper[3:5] == pytest.approx([1.16, 2.82])
    assert series.lower[:3] == pytest.approx([0.05, 1.56, 1.77])
    # Table 9.2: C+_28 = 4.47, C+_29 = 5.28 > H = 5, the first signal
    assert series.upper[27:29] == pytest.approx([4.47, 5.28], abs=0.005)
    assert series.alarm_indices == (28, 29)
    assert not series.lower_alarm.any()


def test_cusum_reset_after_alarm_by_hand() -> None:
    params = CusumParams(sigma=1.0, k=0.5, h=2.0)
    state = CusumState()
    uppers, lowers, alarms = [], [], []
    for x in [1.0, 2.0, 0.0, -3.0, 3.0, 1.0]:
        state = state.update(x, params)
        uppers.append(state.upper)
        lowers.append(state.lower)
        alarms.append((state.upper_alarm, state.lower_alarm))
    assert uppers == [0.5, 2.0, 1.5, 0.0, 2.5, 0.5]  # 2.0 is not above H; reset after 2.5
    assert lowers == [0.0, 0.0, 0.0, 2.5, 0.0, 0.0]  # reset after the signal at -3
    assert alarms == [(False, False)] * 3 + [(False, True), (True, False), (False, False)]
    batch = cusum_series([1.0, 2.0, 0.0, -3.0, 3.0, 1.0], params)
    assert batch.upper.tolist() == uppers
    assert batch.alarm_indices == (3, 4)


def test_cusum_params_refuse_bad_values() -> None:
    with pytest.raises(ValueError, match="sigma"):
        CusumParams(sigma=0.0)
    with pytest.raises(ValueError, match="h must be"):
        CusumParams(sigma=1.0, h=float("nan"))


@settings(max_examples=200, deadline=None)
@given(
    quarters=st.lists(st.integers(-40, 40), max_size=80),
    k_quarters=st.integers(0, 8),
    h_quarters=st.integers(1, 24),
    reset=st.booleans(),
)
def test_streaming_equals_batch(
    quarters: list[int], k_quarters: int, h_quarters: int, reset: bool
) -> None:
    # multiples of 1/4 keep every sum exact, so the two forms must agree bit for bit
    residuals = [q / 4.0 for q in quarters]
    params = CusumParams(1.0, k_quarters / 4.0, h_quarters / 4.0, 0.0, reset)
    batch = cusum_series(residuals, params)
    state = CusumState()
    for i, x in enumerate(residuals):
        state = state.update(x, params)
        assert state.upper == batch.upper[i]
        assert state.lower == batch.lower[i]
        assert state.upper_alarm == batch.upper_alarm[i]
        assert state.lower_alarm == batch.lower_alarm[i]


def test_streaming_close_to_batch_on_real_valued_residuals() -> None:
    residuals = np.random.default_rng(5).normal(0.3, 1.0, 2000)
    params = CusumParams(sigma=1.0)
    batch = cusum_series(residuals, params)
    state = CusumState()
    for i, x in enumerate(residuals):
        state = state.update(float(x), params)
        assert state.upper == pytest.approx(batch.upper[i], abs=1e-9)
        assert state.alarm == (batch.upper_alarm[i] or batch.lower_alarm[i])
    assert len(batch.alarm_indices) > 0  # a 0.3-sigma bias does signal over 2000 periods


def test_siegmund_matches_montgomery_table() -> None:
    # Table 9.3 (two-sided, k = 1/2): h = 5 gives ARL0 465 and ARL(1 sigma) 10.4
    assert arl_siegmund(0.0, 0.5, 5.0) / 2.0 == pytest.approx(465.0, rel=0.02)
    assert arl_siegmund(1.0, 0.5, 5.0) == pytest.approx(10.4, rel=0.02)


BASELINE_H = 30 * 24


@pytest.mark.parametrize("pattern_index", [0, 1])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_drift_detected_within_a_day_and_quiet_for_a_month(seed: int, pattern_index: int) -> None:
    line = SyntheticLine(pattern_index=pattern_index)
    onset_h = 5 + 7 * seed  # onsets at different hours of the shift pattern
    energy_kwh, units = simulate_hours(
        line, seed, BASELINE_H + 30 * 24, onset_hour=BASELINE_H + 30 * 24 - 48 + onset_h
    )
    baseline = fit_baseline(energy_kwh[:BASELINE_H], units[:BASELINE_H])
    assert baseline.r_squared > 0.9
    # k = 1, h = 5, the settings this test was written for (the defaults are now chosen
    # for relative residuals on the simulated plant, docs/drift.md)
    params = drift_cusum_params(baseline, k=1.0, h=5.0)
    assert (DRIFT_K, DRIFT_H) == (1.5, 7.0)
    residuals = energy_kwh[BASELINE_H:] - expected(baseline, units[BASELINE_H:])
    series = cusum_series(residuals, params)
    onset_index = 30 * 24 - 48 + onset_h
    assert not series.upper_alarm[:onset_index].any()  # ~29 days without degradation
    first = np.flatnonzero(series.upper_alarm[onset_index:])
    assert first.size > 0 and first[0] < 24


@pytest.mark.parametrize("pattern_index", [0, 1])
def test_no_alarm_over_30_days_without_degradation(pattern_index: int) -> None:
    line = SyntheticLine(pattern_index=pattern_index)
    energy_kwh, units = simulate_hours(line, 42, BASELINE_H + 30 * 24)
    baseline = fit_baseline(energy_kwh[:BASELINE_H], units[:BASELINE_H])
    residuals = energy_kwh[BASELINE_H:] - expected(baseline, units[BASELINE_H:])
    assert cusum_series(residuals, drift_cusum_params(baseline)).alarm_indices == ()


def test_per_shift_cusum_scales_sigma_and_detects() -> None:
    line = SyntheticLine(pattern_index=0)
    energy_kwh, units = simulate_hours(line, 9, BASELINE_H + 10 * 24, onset_hour=BASELINE_H + 96)
    baseline = fit_baseline(energy_kwh[:BASELINE_H], units[:BASELINE_H])
    params = drift_cusum_params(baseline, periods_per_block=8)
    assert params.sigma == pytest.approx(baseline.residual_std_kwh * np.sqrt(8.0))
    residuals = energy_kwh[BASELINE_H:] - expected(baseline, units[BASELINE_H:])
    series = cusum_series(sum_per_block(residuals, 8), params)
    assert series.upper_alarm.size == 30
    assert not series.upper_alarm[:12].any()  # 4 days (12 shifts) before the onset
    assert series.upper_alarm[12:15].any()  # signalled within 3 shifts (24 h)
    with pytest.raises(ValueError, match="periods_per_block"):
        drift_cusum_params(baseline, periods_per_block=0)


# --- relative residual model (weighted least squares, weights 1 / expected^2) ---------


def _multiplicative_line(
    seed: int, n: int = 600, noise: float = 0.03
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A day-shift-like line: idle hours (no output, 30 kWh fixed load) and busy hours
    (100..400 units at 0.5 kWh/unit), the whole energy scaled by ``1 + noise x z``."""
    rng = np.random.default_rng(seed)
    units = rng.uniform(100.0, 400.0, n)
    units[rng.random(n) < 0.4] = 0.0
    mean_kwh = 30.0 + 0.5 * units
    energy_kwh = mean_kwh * (1.0 + noise * rng.standard_normal(n))
    return energy_kwh, units, mean_kwh


def test_relative_model_recovers_coefficients_and_the_relative_spread() -> None:
    energy_kwh, units, _ = _multiplicative_line(seed=5)
    baseline = fit_baseline(energy_kwh, units, residual_model="relative")
    assert baseline.residual_model == "relative" and baseline.chart_unit == "share"
    assert baseline.fixed_kwh == pytest.approx(30.0, abs=0.3)
    assert baseline.kwh_per_unit == pytest.approx(0.5, abs=0.005)
    assert baseline.residual_std_share == pytest.approx(0.03, rel=0.1)
    assert baseline.residual_sd == baseline.residual_std_share
    # s_rel and R^2 by hand from the fitted coefficients
    fitted = expected(baseline, units)
    share = (energy_kwh - fitted) / fitted
    assert baseline.residual_std_share == pytest.approx(np.sqrt(share @ share / (600 - 2)))
    sse = float((energy_kwh - fitted) @ (energy_kwh - fitted))
    sst = float(np.sum((energy_kwh - energy_kwh.mean()) ** 2))
    assert baseline.r_squared == pytest.approx(1.0 - sse / sst)
    assert baseline.residual_std_kwh == pytest.approx(np.sqrt(sse / (600 - 2)))
    # the weighted fit is the fixed point of weighted least squares: refitting with
    # weights from its own expected energies moves the coefficients very little
    root_w = 1.0 / fitted
    design = np.column_stack((np.ones_like(units), units))
    again, _, _, _ = np.linalg.lstsq(design * root_w[:, None], energy_kwh * root_w, rcond=None)
    assert again == pytest.approx([baseline.fixed_kwh, baseline.kwh_per_unit], rel=1e-4)


def test_weighted_fit_pins_the_fixed_load_better_than_ols() -> None:
    # idle periods have a small spread with multiplicative noise: WLS leans on them
    errors = {"relative": [], "absolute": []}  # type: dict[str, list[float]]
    for seed in range(20):
        energy_kwh, units, _ = _multiplicative_line(seed=100 + seed, n=168)
        for model in ("relative", "absolute"):
            fitted = fit_baseline(energy_kwh, units, residual_model=model)
            errors[model].append(abs(fitted.fixed_kwh - 30.0))
    assert np.mean(errors["relative"]) < 0.5 * np.mean(errors["absolute"])


def test_relative_chart_residuals_and_params() -> None:
    energy_kwh, units, mean_kwh = _multiplicative_line(seed=8, n=200)
    baseline = fit_baseline(energy_kwh, units, residual_model="relative")
    x = chart_residuals(baseline, energy_kwh * 1.05, units)
    want = expected(baseline, units)
    assert x == pytest.approx((energy_kwh * 1.05 - want) / want)
    params = drift_cusum_params(baseline, k=1.0, h=5.0)
    assert params.sigma == baseline.residual_std_share
    assert params.limit == pytest.approx(5.0 * baseline.residual_std_share)
    with pytest.raises(ValueError, match="periods_per_block must be 1"):
        drift_cusum_params(baseline, periods_per_block=8)
    absolute = fit_baseline(energy_kwh, units)
    assert chart_residuals(absolute, energy_kwh, units) == pytest.approx(
        energy_kwh - expected(absolute, units)
    )
    assert absolute.residual_std_share is None and absolute.chart_unit == "kWh"


def test_relative_residual_of_a_vanishing_expected_energy_is_missing() -> None:
    # no fixed load: an idle period expects 0 kWh, its relative residual is undefined
    baseline = Baseline(
        fixed_kwh=0.0,
        kwh_per_unit=0.5,
        extra_coefficients=(),
        r_squared=0.99,
        residual_std_kwh=3.0,
        n=168,
        residual_model="relative",
        residual_std_share=0.02,
        mean_expected_kwh=100.0,
    )
    assert baseline.min_expected_kwh == pytest.approx(MIN_EXPECTED_SHARE * 100.0)
    x = chart_residuals(baseline, [0.3, 105.0, 0.01], [0.0, 200.0, 0.1])  # 0.05 kWh expected
    assert np.isnan(x[0]) and np.isnan(x[2])
    assert x[1] == pytest.approx(0.05)
    # fitted on such a line, the idle periods get no weight and the slope is recovered
    rng = np.random.default_rng(3)
    units = rng.uniform(100.0, 400.0, 100)
    units[::4] = 0.0
    energy_kwh = 0.5 * units * (1.0 + 0.02 * rng.standard_normal(100))
    fitted = fit_baseline(energy_kwh, units, residual_model="relative")
    assert fitted.kwh_per_unit == pytest.approx(0.5, abs=0.005)
    assert abs(fitted.fixed_kwh) < 5.0  # noise about zero, whatever its sign
    # without the floor the idle periods' residual of about -100 % would swamp s_rel
    assert fitted.residual_std_share == pytest.approx(0.02, rel=0.2)


def test_relative_model_refusals() -> None:
    with pytest.raises(ValueError, match="residual_model"):
        fit_baseline([1.0, 2.0, 3.0, 5.0], [1.0, 2.0, 3.0, 4.0], residual_model="log")  # type: ignore[arg-type]
    # every expected energy at or below zero: nothing left to weight
    with pytest.raises(ValueError, match="positive expected energy"):
        fit_baseline([-5.0, -6.0, -7.0, -8.5, -9.0], [1.0, 2.0, 3.0, 4.0, 5.0], None, "relative")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_relative_chart_catches_a_five_percent_step_within_a_day(seed: int) -> None:
    energy_kwh, units, _ = _multiplicative_line(seed=seed, n=168 + 72, noise=0.02)
    onset = 168 + 10 + seed
    energy_kwh[onset:] *= 1.05
    baseline = fit_baseline(energy_kwh[:168], units[:168], residual_model="relative")
    x = chart_residuals(baseline, energy_kwh[168:], units[168:])
    chart = cusum_series(x, drift_cusum_params(baseline))
    assert not chart.upper_alarm[: onset - 168].any()
    first = np.flatnonzero(chart.upper_alarm[onset - 168 :])
    assert first.size > 0 and first[0] < 24
