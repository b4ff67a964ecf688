"""The carbon kernels: numba, plain numpy and the kernels' pure-Python form, held to
hand-computed values and to each other."""

from __future__ import annotations

from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest

from zerocarbon.carbon_engine import kernels, reference

H = 1_717_200_000  # 2024-06-01T00:00:00Z, a whole hour [s]
KERNEL_NAMES = ("counter_deltas", "split_by_hour", "integrate_power", "balance_hours")

# The kernels undecorated (numba keeps the original function as ``py_func``): the same
# code run by CPython, as NUMBA_DISABLE_JIT=1 would, without env vars or reloads.
python_kernels = SimpleNamespace(**{n: getattr(kernels, n).py_func for n in KERNEL_NAMES})

IMPLEMENTATIONS = [
    pytest.param(kernels, id="numba"),
    pytest.param(reference, id="numpy"),
    pytest.param(python_kernels, id="python"),
]


def f64(*values: float) -> np.ndarray[Any, np.dtype[np.float64]]:
    return np.array(values, dtype=np.float64)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
class TestKernels:
    # --- counter_deltas -------------------------------------------------------------
    def test_plain_increase(self, impl: ModuleType) -> None:
        deltas, resets = impl.counter_deltas(f64(100.0, 101.5, 101.5, 103.0))
        np.testing.assert_allclose(deltas, [1.5, 0.0, 1.5])
        assert resets.tolist() == [0, 0, 0]
        assert deltas.dtype == np.float64 and resets.dtype == np.int8

    def test_reset_counts_from_zero(self, impl: ModuleType) -> None:
        deltas, resets = impl.counter_deltas(f64(500.0, 510.0, 3.0, 7.0))
        np.testing.assert_allclose(deltas, [10.0, 3.0, 4.0])
        assert resets.tolist() == [0, 1, 0]

    def test_reset_to_negative_is_never_negative_energy(self, impl: ModuleType) -> None:
        deltas, resets = impl.counter_deltas(f64(5.0, -2.0, 1.0))
        np.testing.assert_allclose(deltas, [0.0, 3.0])
        assert resets.tolist() == [1, 0]

    def test_rollover_of_a_scaled_uint32_register(self, impl: ModuleType) -> None:
        wrap = 2.0**32 * 0.01  # uint32 register of 0.01 kWh
        deltas, resets = impl.counter_deltas(f64(42_949_670.0, 42_949_672.0, 1.5, 4.0), wrap)
        np.testing.assert_allclose(deltas, [2.0, 2.46, 2.5], atol=1e-6)
        assert resets.tolist() == [0, 0, 0]

    def test_decrease_far_from_the_top_is_a_reset_even_with_rollover(
        self, impl: ModuleType
    ) -> None:
        deltas, resets = impl.counter_deltas(f64(1000.0, 10.0), 2.0**32 * 0.01)
        np.testing.assert_allclose(deltas, [10.0])
        assert resets.tolist() == [1]

    def test_without_rollover_a_wrap_is_a_reset(self, impl: ModuleType) -> None:
        deltas, resets = impl.counter_deltas(f64(42_949_672.0, 1.5))
        np.testing.assert_allclose(deltas, [1.5])
        assert resets.tolist() == [1]

    def test_rollover_window_edge(self, impl: ModuleType) -> None:
        # wrap 1000, window 10 %: a wrapped step of exactly 100 is believed, 101 is not
        deltas, resets = impl.counter_deltas(f64(950.0, 50.0, 0.0, 949.0, 50.0), 1000.0, 0.1)
        np.testing.assert_allclose(deltas, [100.0, 0.0, 949.0, 50.0])
        assert resets.tolist() == [0, 1, 0, 1]

    @pytest.mark.parametrize("n", [0, 1])
    def test_fewer_than_two_values(self, impl: ModuleType, n: int) -> None:
        deltas, resets = impl.counter_deltas(np.ones(n))
        assert deltas.shape == (0,) and resets.shape == (0,)

    # --- split_by_hour --------------------------------------------------------------
    def test_interval_spanning_three_hours(self, impl: ModuleType) -> None:
        # 30 min of hour 0, all of hour 1, 15 min of hour 2: 6300 s carrying 63
        out = impl.split_by_hour(f64(H + 1800.0), f64(H + 7200.0 + 900.0), f64(63.0), H, 3)
        np.testing.assert_allclose(out, [18.0, 36.0, 9.0])

    def test_boundaries(self, impl: ModuleType) -> None:
        t0 = f64(H + 3000.0, H + 3600.0, H + 3600.0, H + 100.0)
        t1 = f64(H + 3600.0, H + 4200.0, H + 3600.0, H + 200.0)
        amount = f64(6.0, 2.0, 5.0, 1.0)
        out = impl.split_by_hour(t0, t1, amount, H, 2)
        # ends on a boundary: all in hour 0; starts on it: hour 1;
        # zero length on a boundary: the hour of t0 (1); inside hour 0: hour 0
        np.testing.assert_allclose(out, [7.0, 7.0])

    def test_first_hour_offset_and_empty_hours(self, impl: ModuleType) -> None:
        out = impl.split_by_hour(f64(H + 7500.0), f64(H + 7800.0), f64(4.0), H - 3600, 5)
        np.testing.assert_allclose(out, [0.0, 0.0, 0.0, 4.0, 0.0])

    def test_no_intervals(self, impl: ModuleType) -> None:
        out = impl.split_by_hour(f64(), f64(), f64(), H, 2)
        np.testing.assert_array_equal(out, [0.0, 0.0])

    @pytest.mark.parametrize(
        ("t0", "t1"),
        [
            (H - 1.0, H + 10.0),  # starts before the first hour
            (H + 10.0, H + 7200.5),  # ends after the last hour
            (H + 7200.0, H + 7200.0),  # zero length, after the last hour
            (H + 20.0, H + 10.0),  # ends before it starts
            (float("nan"), H + 10.0),  # not a time
        ],
    )
    def test_out_of_range_is_an_error(self, impl: ModuleType, t0: float, t1: float) -> None:
        with pytest.raises(ValueError, match="split_by_hour"):
            impl.split_by_hour(f64(t0), f64(t1), f64(1.0), H, 2)

    # --- integrate_power ------------------------------------------------------------
    def test_trapezoid(self, impl: ModuleType) -> None:
        ts = f64(H, H + 1800.0, H + 3600.0, H + 5400.0)
        energy = impl.integrate_power(ts, f64(100.0, 100.0, 200.0, -200.0))
        np.testing.assert_allclose(energy, [50.0, 75.0, 0.0], atol=1e-12)

    def test_trapezoid_needs_two_samples(self, impl: ModuleType) -> None:
        assert impl.integrate_power(f64(H), f64(5.0)).shape == (0,)

    # --- balance_hours --------------------------------------------------------------
    def test_balance(self, impl: ModuleType) -> None:
        # hour:     0 import+PV+charge, 1 export, 2 idle, 3 PV > load (cap),
        #           4 meters don't balance, 5 battery exports more than PV
        imp = f64(100.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        exp = f64(0.0, 30.0, 0.0, 0.0, 10.0, 20.0)
        pv = f64(40.0, 80.0, 0.0, 50.0, 5.0, 10.0)
        charge = f64(10.0, 0.0, 0.0, 30.0, 0.0, 0.0)
        discharge = f64(0.0, 5.0, 0.0, 0.0, 0.0, 40.0)
        load, loc_kg, mkt_kg, intensity, cfe = impl.balance_hours(
            imp, exp, pv, charge, discharge, np.full(6, 0.55), np.full(6, 0.6096)
        )
        np.testing.assert_allclose(load, [130.0, 55.0, 0.0, 20.0, -5.0, 30.0])
        np.testing.assert_allclose(loc_kg, [55.0, 0.0, 0.0, 0.0, 0.0, 0.0])
        np.testing.assert_allclose(mkt_kg, [60.96, 0.0, 0.0, 0.0, 0.0, 0.0])
        nan = np.nan
        np.testing.assert_allclose(intensity, [55.0 / 130.0, 0.0, nan, 0.0, nan, 0.0])
        np.testing.assert_allclose(cfe, [40.0 / 130.0, 50.0 / 55.0, nan, 1.0, nan, 0.0])

    def test_hourly_factors(self, impl: ModuleType) -> None:
        _load, loc_kg, mkt_kg, _i, _c = impl.balance_hours(
            f64(10.0, 10.0), f64(0.0, 0.0), f64(0.0, 0.0), f64(0.0, 0.0), f64(0.0, 0.0),
            f64(0.5, 0.25), f64(0.6, 0.125),
        )  # fmt: skip
        np.testing.assert_allclose(loc_kg, [5.0, 2.5])
        np.testing.assert_allclose(mkt_kg, [6.0, 1.25])


def _random_counter(rng: np.random.Generator, n: int, wrap: float) -> np.ndarray[Any, Any]:
    """A meter that wraps at ``wrap`` and is sometimes cleared."""
    values = np.empty(n)
    v = 0.3 * wrap
    steps = rng.exponential(0.5, n)
    cleared_at = rng.random(n) < 0.002
    for i, (step, cleared) in enumerate(zip(steps, cleared_at, strict=True)):
        v += step
        if v >= wrap:
            v -= wrap
        if cleared:
            v = rng.uniform(0.0, 5.0)
        values[i] = v
    return values


def _random_intervals(
    rng: np.random.Generator, n: int
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any], int]:
    t0 = H + rng.uniform(0.0, 20 * 3600.0, n)
    length = rng.exponential(1500.0, n)
    length[rng.random(n) < 0.05] = 0.0  # some zero-length intervals
    length[:3] = [3600.0 * 4.5, 3600.0, 7200.0]  # long ones for sure
    t1 = t0 + length
    n_hours = int(np.ceil((t1.max() - H) / 3600.0)) + 1
    return t0, t1, rng.uniform(0.0, 10.0, n), n_hours


def test_numba_and_numpy_agree_on_random_input() -> None:
    rng = np.random.default_rng(20240601)
    wrap = 100.0
    values = _random_counter(rng, 5000, wrap)
    for rollover_at in (0.0, wrap):
        d_numba, r_numba = kernels.counter_deltas(values, rollover_at)
        d_numpy, r_numpy = reference.counter_deltas(values, rollover_at)
        np.testing.assert_allclose(d_numba, d_numpy, rtol=1e-12, atol=1e-9)
        np.testing.assert_array_equal(r_numba, r_numpy)
        assert (d_numba >= 0).all()
    wrapped = (np.diff(values) < 0) & (reference.counter_deltas(values, wrap)[1] == 0)
    assert wrapped.sum() > 5 and reference.counter_deltas(values, wrap)[1].sum() > 5

    t0, t1, amount, n_hours = _random_intervals(rng, 20_000)
    out_numba = kernels.split_by_hour(t0, t1, amount, H, n_hours)
    out_numpy = reference.split_by_hour(t0, t1, amount, H, n_hours)
    np.testing.assert_allclose(out_numba, out_numpy, rtol=1e-9, atol=1e-9)
    # conservation: every interval's amount lands somewhere, exactly once
    assert out_numba.sum() == pytest.approx(amount.sum(), rel=1e-12)
    assert out_numpy.sum() == pytest.approx(amount.sum(), rel=1e-12)

    ts = H + np.cumsum(rng.uniform(0.0, 30.0, 10_000))
    power = rng.normal(50.0, 80.0, ts.size)
    np.testing.assert_allclose(
        kernels.integrate_power(ts, power), reference.integrate_power(ts, power), rtol=1e-12
    )

    n = 500
    columns = [rng.uniform(0.0, 100.0, n) * (rng.random(n) < 0.7) for _ in range(5)]
    factors = [rng.uniform(0.3, 0.9, n), rng.uniform(0.3, 0.9, n)]
    columns[1][:10] = 0.0
    for a, b in zip(
        kernels.balance_hours(*columns, *factors),
        reference.balance_hours(*columns, *factors),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_python_form_of_the_kernels_agrees_with_numba() -> None:
    for name in KERNEL_NAMES:
        func = getattr(python_kernels, name)
        assert func is getattr(kernels, name).py_func
        assert not hasattr(func, "signatures"), f"{name}.py_func is still a numba dispatcher"
    rng = np.random.default_rng(7)
    values = _random_counter(rng, 2000, 100.0)
    for a, b in zip(
        python_kernels.counter_deltas(values, 100.0),
        kernels.counter_deltas(values, 100.0),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    t0, t1, amount, n_hours = _random_intervals(rng, 400)
    np.testing.assert_array_equal(
        python_kernels.split_by_hour(t0, t1, amount, H, n_hours),
        kernels.split_by_hour(t0, t1, amount, H, n_hours),
    )
