"""CounterAccumulator: streaming counter state -> hourly sums."""

from __future__ import annotations

import numpy as np
import pytest

from zerocarbon.carbon_engine.accumulator import CounterAccumulator, Series

H = 1_717_200_000  # 2024-06-01T00:00:00Z [s]
GRID: Series = ("grid_meter", "energy_import_kwh")
PV: Series = ("pv_roof", "energy_generated_kwh")


def test_first_point_only_sets_the_baseline() -> None:
    acc = CounterAccumulator()
    assert acc.add(GRID, [H + 10.0], [500.0]) == set()
    assert acc.hours() == []
    assert acc.last_point(GRID) == (H + 10.0, 500.0)
    assert acc.series() == [GRID]
    # the next point measures from it
    assert acc.add(GRID, [H + 20.0], [501.0]) == {H}
    assert acc.hourly(GRID, H) == pytest.approx((1.0, 0))


def test_batches_continue_across_hours() -> None:
    acc = CounterAccumulator()
    # a constant 36 kW (36 kWh per hour), readings every 900 s, in two batches
    t = H + 900.0 * np.arange(9)  # H .. H + 7200
    v = 1000.0 + 36.0 * (t - H) / 3600.0
    assert acc.add(GRID, t[:3], v[:3]) == {H}
    assert acc.add(GRID, t[3:], v[3:]) == {H, H + 3600}
    assert acc.hours() == [H, H + 3600]
    assert acc.hourly(GRID, H)[0] == pytest.approx(36.0)
    assert acc.hourly(GRID, H + 3600)[0] == pytest.approx(36.0)


def test_interval_over_a_gap_is_spread_and_every_hour_touched_reports() -> None:
    acc = CounterAccumulator()
    acc.add(PV, [H + 1800.0], [0.0])
    changed = acc.add(PV, [H + 3 * 3600.0 + 1800.0], [30.0])  # 3 h gap, 10 kWh/h
    assert changed == {H, H + 3600, H + 7200, H + 10800}
    assert [acc.hourly(PV, h)[0] for h in sorted(changed)] == pytest.approx([5, 10, 10, 5])
    # a later batch with no increase still reports the hour it covers (PV at night)
    assert acc.add(PV, [H + 4 * 3600.0 + 100.0], [30.0]) == {H + 10800, H + 14400}
    assert acc.hourly(PV, H + 14400) == (0.0, 0)


def test_reset_is_counted_in_the_hour_of_the_reading_that_shows_it() -> None:
    acc = CounterAccumulator()
    t = [H + 3000.0, H + 3500.0, H + 3700.0, H + 4000.0]
    v = [100.0, 105.0, 2.0, 5.0]  # cleared between H+3500 and H+3700
    changed = acc.add(GRID, t, v)
    assert changed == {H, H + 3600}
    assert acc.resets == 1
    d0, r0 = acc.hourly(GRID, H)
    d1, r1 = acc.hourly(GRID, H + 3600)
    # 5 in hour 0; the 2 after the reset spread over [H+3500, H+3700): 1 + 1; then 3
    assert (d0, r0) == pytest.approx((5.0 + 1.0, 0))
    assert (d1, r1) == pytest.approx((1.0 + 3.0, 1))


def test_rollover_per_series() -> None:
    wrap = 2.0**32 * 0.01
    acc = CounterAccumulator(rollover_at={GRID: wrap})
    acc.add(GRID, [H, H + 60.0], [wrap - 1.0, 2.0])
    acc.add(PV, [H, H + 60.0], [wrap - 1.0, 2.0])  # no wrap configured: a reset
    assert acc.hourly(GRID, H) == pytest.approx((3.0, 0))
    assert acc.hourly(PV, H) == pytest.approx((2.0, 1))
    assert acc.resets == 1


def test_unsorted_batch_late_and_duplicate_points() -> None:
    acc = CounterAccumulator()
    acc.add(GRID, [H + 30.0, H + 10.0, H + 20.0], [3.0, 1.0, 2.0])  # sorted inside
    assert acc.hourly(GRID, H)[0] == pytest.approx(2.0)
    assert acc.late_points == 0
    # H+20 is older than the last point, H+30 equal to it, H+40 twice: three dropped
    changed = acc.add(GRID, [H + 40.0, H + 20.0, H + 30.0, H + 40.0], [4.0, 9.0, 9.0, 7.0])
    assert changed == {H}
    assert acc.late_points == 3
    assert acc.hourly(GRID, H)[0] == pytest.approx(3.0)
    assert acc.last_point(GRID) == (H + 40.0, 4.0)
    # nothing new at all: no change
    assert acc.add(GRID, [H + 5.0], [100.0]) == set()
    assert acc.late_points == 4
    assert acc.hourly(GRID, H)[0] == pytest.approx(3.0)


def test_duplicates_of_the_baseline_are_late() -> None:
    acc = CounterAccumulator()
    acc.add(GRID, [H + 10.0, H + 10.0, H + 20.0], [1.0, 1.0, 2.0])
    assert acc.late_points == 1
    assert acc.hourly(GRID, H)[0] == pytest.approx(1.0)


def test_non_finite_points_are_dropped() -> None:
    acc = CounterAccumulator()
    acc.add(GRID, [H, H + 10.0, np.nan, H + 30.0], [1.0, np.inf, 5.0, 4.0])
    assert acc.invalid_points == 2
    assert acc.hourly(GRID, H)[0] == pytest.approx(3.0)
    assert acc.add(GRID, [np.nan], [1.0]) == set()
    assert acc.invalid_points == 3


def test_mismatched_arrays() -> None:
    with pytest.raises(ValueError, match="2 timestamps but 1 values"):
        CounterAccumulator().add(GRID, [H, H + 1.0], [1.0])


def test_hourly_without_data_is_a_key_error_not_zero() -> None:
    acc = CounterAccumulator()
    acc.add(GRID, [H, H + 10.0], [1.0, 2.0])
    with pytest.raises(KeyError, match="pv_roof"):
        acc.hourly(PV, H)
    with pytest.raises(KeyError):
        acc.hourly(GRID, H + 3600)
    assert acc.hour_sums(H) == {GRID: pytest.approx((1.0, 0))}
    assert acc.hour_sums(H + 3600) == {}


def test_prune_keeps_the_last_point() -> None:
    acc = CounterAccumulator()
    t = H + 1800.0 * np.arange(7)  # three hours
    acc.add(GRID, t, 10.0 * np.arange(7))
    assert acc.hours() == [H, H + 3600, H + 7200]
    assert acc.prune(H + 7200) == 2
    assert acc.hours() == [H + 7200]
    assert acc.add(GRID, [H + 3 * 3600.0 + 1800.0], [70.0]) == {H + 10800}
    assert acc.hourly(GRID, H + 10800)[0] == pytest.approx(10.0)


def test_random_batches_conserve_the_counter_increase() -> None:
    rng = np.random.default_rng(3)
    n = 20_000
    t = H + np.cumsum(rng.uniform(1.0, 15.0, n))
    v = 5000.0 + np.cumsum(rng.exponential(0.05, n))
    acc = CounterAccumulator()
    for chunk in np.array_split(np.arange(n), 37):
        shuffled = rng.permutation(chunk)
        acc.add(GRID, t[shuffled], v[shuffled])
    total = sum(acc.hourly(GRID, h)[0] for h in acc.hours())
    assert total == pytest.approx(v[-1] - v[0], rel=1e-12)
    assert acc.late_points == 0 and acc.resets == 0
    assert acc.accepted_points == n


def test_increases_falling_into_pruned_hours_are_discarded() -> None:
    acc = CounterAccumulator()
    acc.add(PV, [H, H + 3600.0], [0.0, 10.0])
    acc.add(GRID, [H, H + 7200.0], [0.0, 20.0])
    assert acc.prune(H + 3600) == 1
    # PV back after a gap over hours 1..2: hour 0 is closed, hours 1 and 2 take their part
    assert acc.add(PV, [H + 3 * 3600.0], [40.0]) == {H + 3600, H + 7200}
    assert acc.expired_parts == 0
    acc.prune(H + 7200)
    acc.prune(H)  # the horizon never moves back
    assert acc.add(GRID, [H + 4 * 3600.0], [60.0]) == {H + 7200, H + 10800}
    assert acc.hours() == [H + 7200, H + 10800]
    acc.add(PV, [H + 6 * 3600.0], [40.0])
    acc.prune(H + 6 * 3600)
    acc.add(GRID, [H + 5 * 3600.0, H + 7 * 3600.0], [70.0, 80.0])
    assert acc.expired_parts == 2  # grid's hours 4 and 5
    assert acc.hours() == [H + 6 * 3600]
    assert acc.hourly(GRID, H + 6 * 3600)[0] == pytest.approx(5.0)  # half of [5 h, 7 h)
