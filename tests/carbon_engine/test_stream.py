"""The streaming kernel: compiled, its pure-Python form and the numpy reference, held to
hand-computed cases of every rule and to each other."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from zerocarbon.carbon_engine import stream, stream_reference
from zerocarbon.carbon_engine.stream import (
    COUNTER,
    EV_BACKSTEP,
    EV_DUPLICATE,
    EV_GAP,
    EV_LATE,
    EV_REJECTED,
    EV_REPLACED,
    EV_RESET,
    EV_ROLLOVER,
    EV_SAMPLES,
    HOUR_US,
    IGNORED,
    N_EVENTS,
    NO_TS,
    POWER,
)

Kernel = Callable[..., tuple[int, int, int]]

H0 = 476_000  # 2024-04-20T08:00Z as POSIX hours; every case starts on this hour
T0 = H0 * HOUR_US  # [us]
S = 1_000_000  # one second [us]
ALL_HOURS = (-(2**62), 2**62)
UINT32_CENTI_WRAP = 2.0**32 * 0.01  # uint32 register of 0.01 kWh: 42,949,672.96 kWh

# The kernel undecorated (numba keeps the original as ``py_func``; with
# NUMBA_DISABLE_JIT=1 it is a plain function already): the same code run by CPython.
python_kernel: Kernel = getattr(stream.stream_readings, "py_func", stream.stream_readings)

IMPLEMENTATIONS = [
    pytest.param(stream.stream_readings, id="numba"),
    pytest.param(python_kernel, id="python"),
    pytest.param(stream_reference.stream_readings, id="numpy"),
]


@dataclass(frozen=True)
class Series:
    """One series of a test site: kind, channels, register wrap, rating, gap."""

    kind: int = COUNTER
    pos: int = 0
    neg: int = -1
    wrap: float = 0.0
    rated_kw: float | None = None
    gap_s: float = 30.0


@dataclass(frozen=True)
class Fed:
    n_late: int
    n_used: int
    n_expired: int
    late: list[int]


class Ring:
    """Per-series model and streaming state sized as the engine sizes them."""

    def __init__(self, series: Sequence[Series], n_slots: int = 6) -> None:
        n = len(series)
        self.kind = np.array([s.kind for s in series], np.int8)
        self.pos = np.array([s.pos for s in series], np.int32)
        self.neg = np.array([s.neg for s in series], np.int32)
        self.wrap = np.array([s.wrap for s in series], np.float64)
        # 1.5 x rated power, in kWh per second (what SeriesModel derives)
        self.max_rate = np.array(
            [np.inf if s.rated_kw is None else 1.5 * s.rated_kw / 3600.0 for s in series],
            np.float64,
        )
        self.gap_us = np.array([int(s.gap_s * S) for s in series], np.int64)
        nc = max([max(s.pos, s.neg) for s in series] + [0]) + 1
        self.last_ts = np.full(n, NO_TS, np.int64)
        self.last_value = np.zeros(n, np.float64)
        self.cand_ts = np.full(n, NO_TS, np.int64)
        self.cand_value = np.zeros(n, np.float64)
        self.last_rate = np.zeros(n, np.float64)
        self.moved_ts = np.full(n, NO_TS, np.int64)
        self.ring_hour = np.full(n_slots, -1, np.int64)
        self.energy = np.zeros((nc, n_slots), np.float64)
        self.estimated = np.zeros((nc, n_slots), np.float64)
        self.events = np.zeros((nc, n_slots, N_EVENTS), np.int32)
        self.dirty = np.zeros(n_slots, np.bool_)

    def feed(
        self,
        impl: Kernel,
        series: Sequence[int] | NDArray[Any],
        ts_us: Sequence[int] | NDArray[Any],
        values: Sequence[float] | NDArray[Any],
        hours: tuple[int, int] = ALL_HOURS,
    ) -> Fed:
        s = np.asarray(series, np.int32)
        t = np.asarray(ts_us, np.int64)
        v = np.asarray(values, np.float64)
        late = np.full(s.shape[0], -1, np.int64)
        n_late, n_used, n_expired = impl(
            s,
            t,
            v,
            self.kind,
            self.pos,
            self.neg,
            self.wrap,
            self.max_rate,
            self.gap_us,
            self.last_ts,
            self.last_value,
            self.cand_ts,
            self.cand_value,
            self.last_rate,
            self.moved_ts,
            self.ring_hour,
            self.energy,
            self.estimated,
            self.events,
            self.dirty,
            late,
            hours[0],
            hours[1],
        )
        return Fed(int(n_late), int(n_used), int(n_expired), late[:n_late].tolist())

    def arrays(self) -> dict[str, NDArray[Any]]:
        names = (
            "last_ts",
            "last_value",
            "cand_ts",
            "cand_value",
            "last_rate",
            "moved_ts",
            "ring_hour",
            "energy",
            "estimated",
            "events",
            "dirty",
        )
        return {n: getattr(self, n) for n in names}

    def _slot(self, hour: int) -> int | None:
        slot = hour % self.ring_hour.shape[0]
        return slot if self.ring_hour[slot] == hour else None

    def energy_at(self, channel: int, hour: int) -> float:
        slot = self._slot(hour)
        return 0.0 if slot is None else float(self.energy[channel, slot])

    def estimated_at(self, channel: int, hour: int) -> float:
        slot = self._slot(hour)
        return 0.0 if slot is None else float(self.estimated[channel, slot])

    def count(self, channel: int, code: int, hour: int | None = None) -> int:
        if hour is None:
            return int(self.events[channel, :, code].sum())
        slot = self._slot(hour)
        return 0 if slot is None else int(self.events[channel, slot, code])


def one(
    impl: Kernel, spec: Series, t_s: Sequence[float], values: Sequence[float], n_slots: int = 6
) -> tuple[Ring, Fed]:
    """One series fed one batch; times in seconds after T0."""
    ring = Ring([spec], n_slots)
    ts = [T0 + round(x * S) for x in t_s]
    return ring, ring.feed(impl, [0] * len(ts), ts, values)


def assert_same(a: Ring, b: Ring) -> None:
    for name, x in a.arrays().items():
        y = b.arrays()[name]
        if x.dtype.kind == "f":
            np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-9, err_msg=name)
        else:
            np.testing.assert_array_equal(x, y, err_msg=name)


def stuck_meter(t_s: float, start_s: float, froze_s: float, back_s: float) -> float:
    """A 0.01 kWh register counting 0.02 kWh/s from ``start_s``, whose value stood
    still from its reading at ``froze_s`` until ``back_s`` [s]."""
    shown = froze_s if froze_s <= t_s < back_s else t_s
    return round(1000.0 + 0.02 * (shown - start_s), 2)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
class TestRules:
    # --- counters --------------------------------------------------------------------
    def test_normal_increase(self, impl: Kernel) -> None:
        ring, fed = one(
            impl, Series(rated_kw=100.0), [0, 1, 2, 3], [1000.0, 1000.01, 1000.03, 1000.03]
        )
        assert ring.energy_at(0, H0) == pytest.approx(0.03)
        assert ring.count(0, EV_SAMPLES, H0) == 3
        assert ring.estimated_at(0, H0) == 0.0
        assert (fed.n_used, fed.n_late, fed.n_expired) == (4, 0, 0)
        assert ring.last_value[0] == 1000.03 and ring.dirty.any()

    def test_rollover_of_a_uint32_centi_kwh_register(self, impl: Kernel) -> None:
        spec = Series(wrap=UINT32_CENTI_WRAP, rated_kw=100.0)  # at most 0.0417 kWh/s
        ring, _ = one(impl, spec, [0, 1, 2, 3], [42_949_672.90, 42_949_672.94, 0.05, 0.09])
        assert ring.energy_at(0, H0) == pytest.approx(0.04 + 0.07 + 0.04, abs=1e-6)
        assert ring.count(0, EV_ROLLOVER) == 1
        assert ring.count(0, EV_RESET) == 0

    def test_device_reset_to_about_zero_counts_from_zero(self, impl: Kernel) -> None:
        # 0.02 kWh/s, then the counter is cleared within the third second and shows 0.01:
        # the second's energy is estimated at the last rate (0.02), 0.01 of it estimated
        ring, _ = one(impl, Series(rated_kw=100.0), [0, 1, 2, 3], [5000.0, 5000.02, 0.01, 0.03])
        assert ring.energy_at(0, H0) == pytest.approx(0.02 + 0.02 + 0.02)
        assert ring.estimated_at(0, H0) == pytest.approx(0.01)
        assert ring.count(0, EV_RESET) == 1

    def test_reset_counts_at_least_what_the_new_counter_shows(self, impl: Kernel) -> None:
        # slow before (0.001 kWh/s), the new counter already shows more: nothing estimated
        ring, _ = one(impl, Series(rated_kw=100.0), [0, 1, 2], [5000.0, 5000.001, 0.02])
        assert ring.energy_at(0, H0) == pytest.approx(0.001 + 0.02)
        assert ring.estimated_at(0, H0) == 0.0

    def test_small_backward_step_counts_nothing_and_never_twice(self, impl: Kernel) -> None:
        # a ~1e6 kWh meter steps back 12 kWh, then climbs back past its old value
        spec = Series(rated_kw=1000.0)  # 0.4167 kWh/s: +5 kWh in 10 s is plausible
        values = [
            1_000_000.0,
            1_000_002.0,
            999_990.0,
            999_995.0,
            1_000_000.0,
            1_000_002.0,
            1_000_004.0,
        ]
        ring, fed = one(impl, spec, [0, 10, 20, 30, 40, 50, 60], values)
        assert ring.energy_at(0, H0) == pytest.approx(2.0 + 2.0)
        assert ring.count(0, EV_BACKSTEP) == 3
        assert ring.count(0, EV_REJECTED) == 0 and ring.count(0, EV_RESET) == 0
        assert fed.n_used == 7
        assert ring.last_value[0] == 1_000_004.0

    def test_spike_beyond_rated_power_is_rejected_and_counting_continues(
        self, impl: Kernel
    ) -> None:
        values = [1000.0, 1000.01, 5000.0, 1000.03, 1000.04, 3.0, 1000.06]  # up, then down
        ring, fed = one(impl, Series(rated_kw=100.0), [0, 1, 2, 3, 4, 5, 6], values)
        assert ring.energy_at(0, H0) == pytest.approx(0.06)
        assert ring.count(0, EV_REJECTED) == 2
        assert ring.count(0, EV_REPLACED) == 0
        assert fed.n_used == 5
        assert ring.cand_ts[0] == NO_TS

    def test_meter_replacement_estimates_the_swap_at_the_new_rate(self, impl: Kernel) -> None:
        # old meter to 5000.10 at 10 s; the new one reads 1234.5 at 70 s, then +0.02 kWh/s
        t = [0, 5, 10, 70, 71, 72]
        values = [5000.0, 5000.05, 5000.10, 1234.5, 1234.52, 1234.54]
        ring, fed = one(impl, Series(rated_kw=100.0), t, values)
        swap = 0.02 * 60  # (10 s, 70 s) at the new meter's 0.02 kWh/s
        assert ring.count(0, EV_REPLACED) == 1 and ring.count(0, EV_REJECTED) == 0
        assert ring.estimated_at(0, H0) == pytest.approx(swap)
        assert ring.energy_at(0, H0) == pytest.approx(0.10 + swap + 0.02 + 0.02)
        assert ring.last_value[0] == 1234.54 and fed.n_used == 5

    def test_gap_is_flagged_estimated(self, impl: Kernel) -> None:
        ring, _ = one(impl, Series(rated_kw=100.0), [0, 10, 100, 110], [10.0, 10.1, 10.9, 11.0])
        assert ring.count(0, EV_GAP) == 1
        assert ring.estimated_at(0, H0) == pytest.approx(0.8)
        assert ring.energy_at(0, H0) == pytest.approx(1.0)

    # --- a counter that stood still, then caught up --------------------------------------
    def test_stuck_counter_catching_up_across_an_hour_boundary(self, impl: Kernel) -> None:
        # 72 kW (0.02 kWh/s) from 3000 s, a reading every 10 s; the register froze after
        # its reading at 3500 s and showed the true value again from 3810 s on
        t = list(range(3000, 4210, 10))
        values = [stuck_meter(x, 3000, 3500, 3810) for x in t]
        ring, fed = one(impl, Series(rated_kw=100.0), t, values)  # at most 0.0417 kWh/s
        assert values[t.index(3800)] == values[t.index(3500)]  # it stood still
        # each hour gets the energy used in it (to the register's 0.01 kWh)
        assert ring.energy_at(0, H0) == pytest.approx(0.02 * 600, abs=0.01)
        assert ring.energy_at(0, H0 + 1) == pytest.approx(0.02 * 600, abs=0.01)
        # the still time before the last stuck reading is estimated: (3500 s, 3800 s)
        assert ring.estimated_at(0, H0) == pytest.approx(0.02 * 100, abs=0.01)
        assert ring.estimated_at(0, H0 + 1) == pytest.approx(0.02 * 200, abs=0.01)
        assert ring.count(0, EV_GAP) == 1 and ring.count(0, EV_GAP, H0 + 1) == 1
        assert ring.count(0, EV_REPLACED) == 0 and ring.count(0, EV_REJECTED) == 0
        # the catch-up reading was held, then confirmed with the next: used as one
        assert fed.n_used == len(t) - 1 and ring.cand_ts[0] == NO_TS
        assert ring.last_rate[0] > 0.0  # it moves again: no still time

    def test_catch_up_in_two_batches_marks_the_closed_hour_again(self, impl: Kernel) -> None:
        ring = Ring([Series(rated_kw=100.0)])
        t = list(range(3000, 3900, 10))
        values = [stuck_meter(x, 3000, 3500, 3810) for x in t]
        ts = [T0 + x * S for x in t]
        k = t.index(3800) + 1  # the first batch ends stuck, an hour after it began
        ring.feed(impl, [0] * k, ts[:k], values[:k])
        assert ring.moved_ts[0] == T0 + 3500 * S  # standing still since
        assert ring.energy_at(0, H0) == pytest.approx(0.02 * 500, abs=0.01)
        ring.dirty[:] = False  # the hours so far were written
        ring.feed(impl, [0] * (len(t) - k), ts[k:], values[k:])
        assert ring.dirty[H0 % ring.ring_hour.shape[0]]  # the closed hour changed
        assert ring.energy_at(0, H0) == pytest.approx(0.02 * 600, abs=0.01)

    def test_spike_after_a_still_time_is_still_rejected(self, impl: Kernel) -> None:
        # a load switched off for 10 minutes, then one reading 10 kWh up (plausible over
        # the still time at 0.0417 kWh/s, not over 10 s), then back at the baseline
        t = [0, 300, 600, 610, 620, 630]
        values = [500.0, 500.0, 500.0, 510.0, 500.0, 500.02]
        ring, fed = one(impl, Series(rated_kw=100.0, gap_s=1000.0), t, values)
        assert ring.count(0, EV_REJECTED) == 1
        assert ring.count(0, EV_GAP) == 0 and ring.count(0, EV_REPLACED) == 0
        assert ring.energy_at(0, H0) == pytest.approx(0.02)
        assert ring.estimated_at(0, H0) == 0.0

    def test_jump_beyond_the_still_time_is_a_replacement(self, impl: Kernel) -> None:
        # stood still 70 s since 10 s (at most 3 kWh at 100 kW), then 20 kWh up at 80 s
        t = [0, 10, 20, 50, 80, 90, 100]
        values = [500.0, 500.2, 500.2, 500.2, 520.2, 520.4, 520.6]
        ring, _ = one(impl, Series(rated_kw=100.0), t, values)
        assert ring.count(0, EV_REPLACED) == 1 and ring.count(0, EV_GAP) == 0
        swap = 0.02 * 30  # (50 s, 80 s) at the new meter's 0.02 kWh/s
        assert ring.energy_at(0, H0) == pytest.approx(0.2 + swap + 0.4)
        assert ring.estimated_at(0, H0) == pytest.approx(swap)

    def test_moving_counter_jump_is_a_replacement_not_a_catch_up(self, impl: Kernel) -> None:
        # the counter moved at every reading: its still time is nil, a jump up beyond
        # the interval's bound is the replaced meter's, as before
        t = [0, 10, 20, 30, 40]
        values = [500.0, 500.2, 500.4, 9000.0, 9000.2]
        ring, _ = one(impl, Series(rated_kw=100.0), t, values)
        assert ring.count(0, EV_REPLACED) == 1 and ring.count(0, EV_GAP) == 0
        assert ring.energy_at(0, H0) == pytest.approx(0.4 + 0.2 + 0.2)

    # --- power ---------------------------------------------------------------------------
    def test_power_trapezoid_and_sign_change_split_at_zero(self, impl: Kernel) -> None:
        spec = Series(kind=POWER, pos=0, neg=1, rated_kw=10.0, gap_s=3600.0)  # |p| <= 15 kW
        # 6 kW for 600 s, then 6 -> -3 kW over 600 s: zero at 400 s
        ring, fed = one(impl, spec, [0, 600, 1200, 1800], [6.0, 6.0, -3.0, 20.0])
        assert ring.energy_at(0, H0) == pytest.approx(1.0 + 0.5 * 6 * 400 / 3600)
        assert ring.energy_at(1, H0) == pytest.approx(0.5 * 3 * 200 / 3600)
        assert ring.count(0, EV_REJECTED) == 1  # 20 kW > 1.5 x rated
        assert fed.n_used == 3 and ring.last_value[0] == -3.0

    def test_power_gap_is_estimated(self, impl: Kernel) -> None:
        spec = Series(kind=POWER, pos=0, rated_kw=10.0, gap_s=30.0)
        ring, _ = one(impl, spec, [0, 10, 70], [3.6, 3.6, 3.6])
        assert ring.count(0, EV_GAP) == 1
        assert ring.energy_at(0, H0) == pytest.approx(3.6 * 70 / 3600)
        assert ring.estimated_at(0, H0) == pytest.approx(3.6 * 60 / 3600)

    def test_power_feeding_only_its_negative_channel_still_counts_events(
        self, impl: Kernel
    ) -> None:
        """A battery with a discharge counter integrates only charging from power: its
        gap, late, duplicate and rejected readings are counted on the charge channel."""
        spec = Series(kind=POWER, pos=-1, neg=0, rated_kw=10.0, gap_s=60.0)
        ring, fed = one(impl, spec, [0, 100, 100, 50, 110], [-1.0, -1.0, -1.0, -1.0, -99.0])
        assert ring.count(0, EV_GAP) == 1
        assert ring.count(0, EV_DUPLICATE) == 1
        assert ring.count(0, EV_LATE) == 1 and fed.late == [3]
        assert ring.count(0, EV_REJECTED) == 1
        assert ring.energy_at(0, H0) == pytest.approx(100 / 3600)

    def test_nan_power_is_rejected_not_silently_lost(self, impl: Kernel) -> None:
        spec = Series(kind=POWER, pos=0, rated_kw=10.0, gap_s=3600.0)
        ring, fed = one(impl, spec, [0, 60, 120], [3.6, float("nan"), 3.6])
        assert ring.count(0, EV_REJECTED) == 1
        assert ring.energy_at(0, H0) == pytest.approx(3.6 * 120 / 3600)
        assert fed.n_used == 2

    def test_expired_lump_outside_the_span_is_not_counted(self, impl: Kernel) -> None:
        ring = Ring([Series(gap_s=1e9)], n_slots=3)
        fed = ring.feed(impl, [0, 0], [T0, T0 + 10 * 3600 * S], [0.0, 10.0], hours=(H0 + 9, H0 + 9))
        assert fed.n_expired == 0
        assert ring.energy_at(0, H0 + 9) == pytest.approx(1.0)

    # --- hours ----------------------------------------------------------------------------
    def test_split_across_hours_conserves_energy(self, impl: Kernel) -> None:
        spec = Series(gap_s=1e6)
        t = [3600 - 30, 3 * 3600 + 30]  # 30 s, two whole hours, 30 s
        ring, _ = one(impl, spec, t, [100.0, 100.0 + 7.26])
        parts = [ring.energy_at(0, H0 + k) for k in range(4)]
        np.testing.assert_allclose(parts, [0.03, 3.6, 3.6, 0.03], rtol=1e-9)
        assert sum(parts) == pytest.approx(7.26, rel=1e-12)
        assert [ring.count(0, EV_SAMPLES, H0 + k) for k in range(4)] == [1, 1, 1, 1]

    def test_only_hours_between_hour_lo_and_hour_hi_are_added(self, impl: Kernel) -> None:
        ring = Ring([Series(gap_s=1e6)])
        ts = [T0 + 1800 * S, T0 + 3 * 3600 * S + 1800 * S]  # 3.5 h .. 3.5 h
        ring.feed(impl, [0, 0], ts, [0.0, 6.0], hours=(H0 + 1, H0 + 2))
        assert [ring.energy_at(0, H0 + k) for k in range(4)] == pytest.approx([0.0, 2.0, 2.0, 0.0])

    # --- late, duplicate, ring ------------------------------------------------------------
    def test_late_readings_are_returned_by_index(self, impl: Kernel) -> None:
        ring = Ring([Series(), Series(pos=1)])
        first = ring.feed(impl, [0, 0, 1], [T0, T0 + 10 * S, T0 + 10 * S], [1.0, 2.0, 5.0])
        fed = ring.feed(
            impl,
            [0, 1, 0, 0, 1],
            [T0 + 5 * S, T0 + 20 * S, T0 + 20 * S, T0 + 15 * S, T0 + S],
            [1.5, 6.0, 3.0, 2.5, 5.5],
        )
        assert first.n_late == 0
        assert fed.late == [0, 3, 4] and fed.n_late == 3
        assert ring.count(0, EV_LATE) == 2 and ring.count(1, EV_LATE) == 1
        assert ring.energy_at(0, H0) == pytest.approx(2.0)
        assert ring.energy_at(1, H0) == pytest.approx(1.0)

    def test_duplicates_are_dropped_and_counted(self, impl: Kernel) -> None:
        ring, fed = one(impl, Series(), [0, 10, 10, 10, 20], [1.0, 2.0, 2.0, 9.0, 3.0])
        assert ring.count(0, EV_DUPLICATE) == 2
        assert ring.energy_at(0, H0) == pytest.approx(2.0)
        assert fed.n_used == 3 and fed.n_late == 0

    def test_first_reading_only_sets_the_baseline(self, impl: Kernel) -> None:
        ring, fed = one(impl, Series(), [0], [123.0])
        assert fed.n_used == 1 and not ring.events.any() and not ring.dirty.any()
        assert (ring.last_ts[0], ring.last_value[0]) == (T0, 123.0)

    def test_ignored_series_changes_nothing(self, impl: Kernel) -> None:
        ring = Ring([Series(kind=IGNORED)])
        fed = ring.feed(impl, [0, 0], [T0, T0 - S], [1.0, 2.0])
        assert fed == Fed(0, 0, 0, []) and ring.last_ts[0] == NO_TS

    def test_far_future_and_year_one_stay_in_the_ring_and_bounded(self, impl: Kernel) -> None:
        n_slots = 6
        ring = Ring([Series(), Series(pos=1)], n_slots)
        y2099 = 4_102_444_800 * S  # 2100-01-01T00:00Z
        year_one = -62_135_596_800 * S  # 0001-01-01T00:00Z
        shapes = {k: v.shape for k, v in ring.arrays().items()}
        ring.feed(impl, [0, 0, 1], [T0, T0 + 10 * S, year_one], [1.0, 2.0, 7.0])
        start = time.perf_counter()
        fed = ring.feed(impl, [0, 0, 1], [y2099 - S, T0 + 20 * S, T0], [5.0, 6.0, 8.0])
        elapsed = time.perf_counter() - start
        assert elapsed < 1.0  # 660k hours (series 0) and 17.7M hours (series 1) apart
        assert {k: v.shape for k, v in ring.arrays().items()} == shapes
        assert fed.late == [1]
        h_end = (y2099 - S) // HOUR_US
        assert sorted(ring.ring_hour.tolist()) == list(range(h_end - n_slots + 1, h_end + 1))
        # each long interval: one expired lump; series 1's last hours expire against 0's
        assert fed.n_expired == 2 + n_slots
        assert ring.energy_at(0, h_end) > 0.0
        assert 0.0 < ring.energy.sum() < 4.0


# --- the implementations held to each other -------------------------------------------

SITE = [
    Series(wrap=UINT32_CENTI_WRAP, rated_kw=200.0),
    Series(pos=1),
    Series(pos=2, rated_kw=3000.0),
    Series(kind=POWER, pos=3, neg=4, rated_kw=300.0),
    Series(kind=POWER, pos=5, rated_kw=300.0, gap_s=120.0),
    Series(kind=IGNORED, pos=-1),
]


def mixed_feed(
    seed: int, n: int, step_s: float
) -> tuple[NDArray[np.int32], NDArray[np.int64], NDArray[np.float64]]:
    """Readings of SITE in arrival order with every rule in them: rollovers, resets,
    steps back, spikes, replacements, gaps, late and duplicate readings, sign changes,
    registers that stand still for a while and then catch up."""
    rng = np.random.default_rng(seed)
    s = rng.integers(0, len(SITE), n).astype(np.int32)
    dt = rng.exponential(step_s, n) * S
    dt[rng.random(n) < 0.01] *= 400.0  # gaps of hours
    t = (T0 + np.cumsum(dt)).astype(np.int64)
    late = rng.random(n) < 0.04
    t[late] -= rng.integers(0, int(10 * step_s * S), int(late.sum()))
    dup = np.flatnonzero(rng.random(n) < 0.03)
    dup = dup[dup > 0]
    s[dup], t[dup] = s[dup - 1], t[dup - 1]
    counter = np.zeros(len(SITE))
    counter[0], counter[2] = UINT32_CENTI_WRAP - 0.5, 1e6
    frozen = np.zeros(len(SITE), np.int64)  # readings a register still stands still
    shown = np.zeros(len(SITE))  # the value it stands still at
    v = np.empty(n)
    for j in range(n):
        k = int(s[j])
        if SITE[k].kind == POWER:
            v[j] = rng.normal(20.0, 150.0) if rng.random() > 0.02 else 5000.0
            continue
        counter[k] += rng.uniform(0.0, 0.05 * step_s)
        x = counter[k] % UINT32_CENTI_WRAP if k == 0 else counter[k]
        if frozen[k] > 0:
            frozen[k] -= 1
            v[j] = shown[k]
            continue
        if rng.random() < 0.02 and (k != 0 or counter[k] >= UINT32_CENTI_WRAP):
            frozen[k], shown[k] = rng.integers(2, 60), x  # from the next reading on
        r = rng.random()
        if r < 0.01:
            x = rng.uniform(0.0, 0.05)  # reset
        elif r < 0.02:
            x *= 3.0  # spike
        elif r < 0.03:
            x -= rng.uniform(0.0, 5.0)  # step back
        elif r < 0.035 and k != 0:
            counter[k] = rng.uniform(100.0, 2000.0)  # replaced
            x = counter[k]
        v[j] = x
    return s, t, v


def split_run(
    impl: Kernel, feed: tuple[NDArray[Any], ...], cuts: Sequence[int], n_slots: int
) -> tuple[Ring, list[Fed]]:
    ring = Ring(SITE, n_slots)
    s, t, v = feed
    edges = [0, *cuts, s.shape[0]]
    return ring, [
        ring.feed(impl, s[a:b], t[a:b], v[a:b]) for a, b in zip(edges, edges[1:], strict=False)
    ]


@pytest.mark.parametrize(
    ("seed", "step_s", "n_slots"), [(1, 1.0, 2), (2, 20.0, 4), (3, 300.0, 3), (4, 5.0, 48)]
)
def test_numba_python_and_numpy_agree(seed: int, step_s: float, n_slots: int) -> None:
    feed = mixed_feed(seed, 3000, step_s)
    cuts = [700, 701, 2500]
    base, base_fed = split_run(stream.stream_readings, feed, cuts, n_slots)
    assert sum(f.n_expired for f in base_fed) > 0 or step_s < 10.0 or n_slots > 4
    for impl in (python_kernel, stream_reference.stream_readings):
        ring, fed = split_run(impl, feed, cuts, n_slots)
        assert fed == base_fed
        assert_same(base, ring)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_mixed_feed_has_every_rule_in_it(seed: int) -> None:
    ring, fed = split_run(stream.stream_readings, mixed_feed(seed, 3000, 5.0), [], 2000)
    seen = ring.events.sum(axis=(0, 1))
    codes = (
        EV_RESET,
        EV_ROLLOVER,
        EV_BACKSTEP,
        EV_REPLACED,
        EV_REJECTED,
        EV_GAP,
        EV_LATE,
        EV_DUPLICATE,
    )
    assert all(seen[c] > 0 for c in codes), seen
    assert fed[0].n_late > 0 and ring.energy[4].sum() > 0.0  # power, both signs


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_recomputing_a_span_leaves_the_events_of_other_hours_alone(impl: Kernel) -> None:
    ring = Ring([Series()])
    # recompute hour H0 from its readings plus the first one after it (a gap into H0 + 1)
    for _ in range(2):
        ring.last_ts[:] = NO_TS
        ring.feed(impl, [0, 0], [T0 + 3590 * S, T0 + 3650 * S], [1.0, 2.0], hours=(H0, H0))
    assert ring.count(0, EV_GAP, H0 + 1) == 0
    assert ring.energy_at(0, H0) == pytest.approx(2 * 10 / 60)


def test_every_rule_without_jit() -> None:
    """The rules once more with numba's JIT off: the kernel and its helpers as CPython."""
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"{__file__}::TestRules",
            "-k",
            "numba",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout
