"""The streaming kernel: one pass over a batch of readings -> hourly energy.

:func:`stream_readings` walks a batch in arrival order (any interleaving of series,
no sort) and, per reading, pairs it with its series' last accepted point, turns the
pair into energy (counter increase, or the trapezoid of power) and spreads it over the
UTC hours the interval covers, into a ring of hourly sums per energy *channel*.
Everything that must survive from one batch to the next is in :class:`StreamState`'s
arrays; the kernel itself is a pure function of its arguments (it writes only into the
arrays it is given).

Rules, per series (``wrap``, ``max_rate``, ``gap_us`` come from the site file and the
device's profile; see :mod:`zerocarbon.carbon_engine.series_model`):

Counters (``kind == COUNTER``), with ``d = new - prev`` and ``allow`` the largest
increase the device's rated power makes plausible over the interval
(``max_rate * (dt + 2 s)``; unbounded without a rating):

* ``0 <= d <= allow``: normal increase.
* ``d < 0`` and ``wrap > 0`` and the wrapped increase ``wrap - prev + new`` is in
  ``[0, min(allow, 0.1 wrap)]``: register **rollover** [2]_.
* ``d < 0`` and ``new <= allow`` and ``new < prev / 2``: the device **reset** its counter
  (counted from 0) [1]_. What it counted between ``prev`` and the reset instant is gone
  from the register: the interval is estimated at the series' last rate, and the part
  beyond ``new`` is flagged estimated.
* ``d < 0`` and ``-d <= 1e-3 prev + allow``: a small **backward step** (a meter that
  restarted near its old value, jitter of a float register): no energy, and the
  baseline stays at ``prev``, so nothing is ever counted twice.
* otherwise (a jump up beyond ``allow``, or a large drop that is neither): the reading
  is held as a *candidate*. If the next reading is plausible from the old baseline, the
  candidate was a spike: **rejected**. If it is plausible from the candidate, the meter
  was **replaced**: the new meter's rate over (candidate, next) estimates the energy
  over (old baseline, candidate) (flagged estimated) and counting continues from the
  candidate. Otherwise the candidate is rejected and the new reading held instead.
* a candidate confirmed so (the next reading plausible from it) whose jump up ``c - prev``
  is plausible over the time since the counter last *moved*,
  ``0 <= c - prev <= max_rate * (t_c - moved_ts + 2 s)`` (``moved_ts``: the last reading
  whose interval counted energy; every interval after it counted nothing), is a
  **catch-up**, not a replacement: the register stood still (a frozen display or
  register, busy firmware, a gateway serving a cached value) and then counted at once
  what was used over ``(moved_ts, t_c)``. The jump is spread uniformly over that time,
  the part before ``prev`` flagged estimated (the register did not say when it was
  used), and counted as a **gap** (no column of its own: the still time is a gap in the
  information, and a spread over closed hours marks them changed, so they are written
  again). A counter that stood still because nothing was used (a load switched off)
  makes the bound generous, which is why the jump is held and confirmed like any
  candidate: a spike after a still time is still rejected when the next reading returns
  to the baseline.

Power (``kind == POWER``, kW): trapezoid energy of each interval [3]_, its positive
part to channel ``pos_channel`` and its negative part to ``neg_channel`` (the zero
crossing of the linear interpolant splits a sign change exactly); a sample with
``|p| > max_rate * 3600`` (1.5x rated power) is rejected.

Both: an interval longer than ``gap_us`` is a **gap**: its energy (spread uniformly in
time for counters) is added to the hours and also to their *estimated* sums. A reading
not newer than its series' last point is **late** (its index is returned; the caller
recomputes the hours it touches from stored readings) or a **duplicate** (same time:
dropped and counted). The first reading of a series only sets its baseline.

Hours live in a ring of ``n_slots`` slots (``slot = hour % n_slots``); a part of an
interval falling in an hour older than the slot holds is **expired** (counted, dropped):
memory and work per reading are bounded by the ring, whatever the input.

References
----------
.. [1] Prometheus documentation, "Query functions: increase()": counter resets.
.. [2] IETF RFC 2578 (SMIv2), sec. 7.1.6: Counter32 wraps to zero at its maximum.
.. [3] W. H. Press et al., "Numerical Recipes", 3rd ed., 2007, sec. 4.1 (trapezoid).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np
from numba import njit
from numpy.typing import NDArray

__all__ = [
    "COUNTER",
    "EV_BACKSTEP",
    "EV_DUPLICATE",
    "EV_EXPIRED",
    "EV_GAP",
    "EV_LATE",
    "EV_REJECTED",
    "EV_REPLACED",
    "EV_RESET",
    "EV_ROLLOVER",
    "EV_SAMPLES",
    "HOUR_US",
    "IGNORED",
    "N_EVENTS",
    "NO_TS",
    "POWER",
    "stream_readings",
]

HOUR_US = 3_600_000_000  # one hour [us]
NO_TS = np.iinfo(np.int64).min  # "no point yet"

IGNORED = 0
COUNTER = 1
POWER = 2

# event codes: columns of the per-(channel, slot) event counts
EV_RESET = 0
EV_ROLLOVER = 1
EV_BACKSTEP = 2
EV_REPLACED = 3
EV_REJECTED = 4
EV_GAP = 5
EV_LATE = 6
EV_DUPLICATE = 7
EV_EXPIRED = 8
EV_SAMPLES = 9  # intervals (pairs of readings) contributing to the hour
N_EVENTS = 10

JITTER_S = 2.0  # time-stamp jitter allowed in the plausibility bound [s]
BACKSTEP_FRACTION = 1e-3  # largest backward step taken as jitter, of the counter value
ROLLOVER_WINDOW = 0.1  # a wrap may add at most this fraction of the register range

_F = TypeVar("_F", bound=Callable[..., Any])

Ring = tuple[
    NDArray[np.int64],  # ring_hour: hour index held by each slot
    NDArray[np.float64],  # energy: (channels, slots)
    NDArray[np.float64],  # estimated: (channels, slots)
    NDArray[np.int32],  # events: (channels, slots, N_EVENTS)
    NDArray[np.bool_],  # dirty: (slots,)
]


def _kernel(func: _F) -> _F:
    """``numba.njit(cache=True)`` with the function's own type for mypy."""
    return cast(_F, njit(cache=True)(func))


@_kernel
def _slot_for(hour: int, ring: Ring) -> int:
    """Slot of ``hour`` in the ring, clearing a slot that held an older hour; -1 when
    ``hour`` is older than what its slot holds (expired)."""
    ring_hour, energy, estimated, events, dirty = ring
    n_slots = ring_hour.shape[0]
    slot: int = hour % n_slots
    held = ring_hour[slot]
    if held == hour:
        return slot
    if held > hour:
        return -1
    ring_hour[slot] = hour
    energy[:, slot] = 0.0
    estimated[:, slot] = 0.0
    events[:, slot, :] = 0
    dirty[slot] = False
    return slot


@_kernel
def _event(
    channel: int,
    ts_us: int,
    code: int,
    ring: Ring,
    hour_lo: int,
    hour_hi: int,
) -> None:
    events, dirty = ring[3], ring[4]
    hour = ts_us // HOUR_US
    if channel < 0 or hour < hour_lo or hour > hour_hi:
        return
    slot = _slot_for(hour, ring)
    if slot < 0:
        return
    events[channel, slot, code] += 1
    dirty[slot] = True


@_kernel
def _spread(
    channel: int,
    t0_us: int,
    t1_us: int,
    amount: float,
    is_estimate: bool,
    ring: Ring,
    hour_lo: int,
    hour_hi: int,
) -> int:
    """Add ``amount`` over [t0, t1) uniformly in time to the hours it covers that lie in
    [hour_lo, hour_hi]; returns how many hourly parts expired."""
    ring_hour, energy, estimated, events, dirty = ring
    if channel < 0:
        return 0
    h0 = t0_us // HOUR_US
    h1 = (t1_us - 1) // HOUR_US if t1_us > t0_us else h0
    expired = 0
    if h0 == h1:
        if h0 < hour_lo or h0 > hour_hi:
            return 0
        slot = _slot_for(h0, ring)
        if slot < 0:
            return 1
        energy[channel, slot] += amount
        if is_estimate:
            estimated[channel, slot] += amount
        events[channel, slot, EV_SAMPLES] += 1
        dirty[slot] = True
        return 0
    rate = amount / float(t1_us - t0_us)
    done = 0.0
    start = t0_us
    # hours older than the ring can hold are one expired lump: work stays bounded
    h_first = max(h0, h1 - ring_hour.shape[0] + 1)
    if h_first > h0:
        start = h_first * HOUR_US
        done = rate * float(start - t0_us)
        if h0 <= hour_hi and h_first - 1 >= hour_lo:
            expired += 1
    for h in range(h_first, h1 + 1):
        end = (h + 1) * HOUR_US if h < h1 else t1_us
        part = amount - done if h == h1 else rate * float(end - start)
        done += part
        start = end
        if h < hour_lo or h > hour_hi:
            continue
        slot = _slot_for(h, ring)
        if slot < 0:
            expired += 1
            continue
        energy[channel, slot] += part
        if is_estimate:
            estimated[channel, slot] += part
        events[channel, slot, EV_SAMPLES] += 1
        dirty[slot] = True
    return expired


@_kernel
def _settle_candidate(
    ch: int,
    ech: int,
    moved_t: int,
    prev_t: int,
    jump: float,
    cand_t: int,
    t: int,
    dc: float,
    rate: float,
    gap_us: int,
    ring: Ring,
    hour_lo: int,
    hour_hi: int,
) -> int:
    """A candidate confirmed by the next reading (at ``t``, ``dc`` above it): a catch-up
    of a counter that stood still since ``moved_t`` when its ``jump`` from the baseline
    is plausible over that time, else a replaced meter; returns the expired parts."""
    expired = 0
    catch_up = 0.0 <= jump <= rate * (float(cand_t - moved_t) / 1e6 + JITTER_S)
    if catch_up:
        # the jump is what was used over (moved, cand): spread there, (moved, prev)
        # estimated
        x0, x1, code = moved_t, prev_t, EV_GAP
        part = jump * (float(prev_t - moved_t) / float(cand_t - moved_t))
    else:
        # meter replaced at the candidate: (prev, cand) estimated at the new meter's rate
        x0, x1, code = prev_t, cand_t, EV_REPLACED
        part = dc / float(t - cand_t) * float(cand_t - prev_t)
    _event(ech, cand_t, code, ring, hour_lo, hour_hi)
    if x1 > x0:
        expired += _spread(ch, x0, x1, part, True, ring, hour_lo, hour_hi)
    if catch_up:
        gap = cand_t - prev_t > gap_us
        expired += _spread(ch, prev_t, cand_t, jump - part, gap, ring, hour_lo, hour_hi)
    # then count (cand, t)
    expired += _spread(ch, cand_t, t, dc, t - cand_t > gap_us, ring, hour_lo, hour_hi)
    return expired


@_kernel
def stream_readings(
    series: NDArray[np.int32],
    ts_us: NDArray[np.int64],
    value: NDArray[np.float64],
    kind: NDArray[np.int8],
    pos_channel: NDArray[np.int32],
    neg_channel: NDArray[np.int32],
    wrap: NDArray[np.float64],
    max_rate: NDArray[np.float64],
    gap_us: NDArray[np.int64],
    last_ts: NDArray[np.int64],
    last_value: NDArray[np.float64],
    cand_ts: NDArray[np.int64],
    cand_value: NDArray[np.float64],
    last_rate: NDArray[np.float64],
    moved_ts: NDArray[np.int64],
    ring_hour: NDArray[np.int64],
    energy: NDArray[np.float64],
    estimated: NDArray[np.float64],
    events: NDArray[np.int32],
    dirty: NDArray[np.bool_],
    late_out: NDArray[np.int64],
    hour_lo: int,
    hour_hi: int,
) -> tuple[int, int, int]:
    """Feed a batch of readings, in arrival order, into the hourly ring.

    Parameters
    ----------
    series, ts_us, value : ndarray, shape (n,)
        The batch: series id, POSIX time [us], value [metric unit; kW for power].
    kind, pos_channel, neg_channel, wrap, max_rate, gap_us : ndarray, shape (n_series,)
        Per series: ``IGNORED``/``COUNTER``/``POWER``; channel (row of the ring) that
        receives positive / negative energy (-1: none); register wrap value [unit]
        (0: never wraps); largest plausible rate [unit/s] (inf: unknown); gap
        threshold [us].
    last_ts, last_value, cand_ts, cand_value, last_rate, moved_ts : ndarray, shape (n_series,)
        Streaming state, updated in place (``NO_TS``: none); ``last_rate`` is the rate of
        a counter's last counted interval [unit/us]; ``moved_ts`` [us], while that rate
        is 0 (the last interval counted nothing), the time since which the counter has
        stood still: the last reading that counted energy, or the baseline, backward
        step or candidate after which nothing was counted (otherwise stale); a new or
        restored series starts from its ``last_ts``.
    ring_hour : ndarray of int64, shape (n_slots,)
        Hour index (POSIX hours) each slot holds; updated in place.
    energy, estimated : ndarray of float64, shape (n_channels, n_slots)
        Hourly sums [unit] and their estimated part; updated in place.
    events : ndarray of int32, shape (n_channels, n_slots, N_EVENTS)
        Event counts per channel and hour; updated in place.
    dirty : ndarray of bool, shape (n_slots,)
        Set where a slot changed.
    late_out : ndarray of int64, shape (>= n,)
        Receives the batch indices of late readings.
    hour_lo, hour_hi : int
        Only parts in these hours (POSIX hours, inclusive) are added (recomputing a
        span passes its bounds; streaming passes the whole range).

    Returns
    -------
    n_late : int
        Late readings, their indices in ``late_out[:n_late]``.
    n_used : int
        Readings that changed the state (baselines included).
    n_expired : int
        Hourly parts dropped because their hour had left the ring.
    """
    ring = (ring_hour, energy, estimated, events, dirty)
    n_late = 0
    n_used = 0
    n_expired = 0
    # the hour most readings fall in, cached: its bounds [us] and slot (fast path)
    cur_lo = 0
    cur_hi = -1
    cur_hour = -1
    cur_slot = 0
    n_slots = ring_hour.shape[0]
    for i in range(series.shape[0]):
        s = series[i]
        k = kind[s]
        if k == IGNORED:
            continue
        t = ts_us[i]
        v = value[i]
        ch = pos_channel[s]
        ech = ch if ch >= 0 else neg_channel[s]  # the channel events are counted on
        # NaN is never a value (admission drops it first); power beyond the rating
        if v != v or (k == POWER and not abs(v) <= max_rate[s] * 3600.0):
            _event(ech, t, EV_REJECTED, ring, hour_lo, hour_hi)
            continue
        prev_t = last_ts[s]
        if prev_t == NO_TS:  # the first reading only sets the baseline
            last_ts[s] = t
            last_value[s] = v
            moved_ts[s] = t
            n_used += 1
            continue
        if t < prev_t or (cand_ts[s] != NO_TS and t < cand_ts[s]):
            late_out[n_late] = i
            n_late += 1
            _event(ech, t, EV_LATE, ring, hour_lo, hour_hi)
            continue
        if t == prev_t or t == cand_ts[s]:
            _event(ech, t, EV_DUPLICATE, ring, hour_lo, hour_hi)
            continue
        prev_v = last_value[s]
        gap = t - prev_t > gap_us[s]
        amount = 0.0  # energy of the interval (prev_t, t) [unit]
        extra = 0.0  # its estimated part lost before a counter reset [unit]
        c = ch  # the channel it goes to
        if k == POWER:
            dt_h = float(t - prev_t) / HOUR_US
            if (prev_v >= 0.0) != (v >= 0.0):
                # sign change: split at the zero crossing of the linear interpolant
                frac = prev_v / (prev_v - v)
                tz = prev_t + int(frac * float(t - prev_t))
                e0 = 0.5 * prev_v * frac * dt_h
                e1 = 0.5 * v * (1.0 - frac) * dt_h
                if gap:
                    _event(ech, t, EV_GAP, ring, hour_lo, hour_hi)
                c0 = ch if e0 >= 0.0 else neg_channel[s]
                c1 = ch if e1 >= 0.0 else neg_channel[s]
                n_expired += _spread(c0, prev_t, tz, abs(e0), gap, ring, hour_lo, hour_hi)
                n_expired += _spread(c1, tz, t, abs(e1), gap, ring, hour_lo, hour_hi)
                last_ts[s] = t
                last_value[s] = v
                n_used += 1
                continue
            e = 0.5 * (prev_v + v) * dt_h
            amount = abs(e)
            c = ch if e >= 0.0 else neg_channel[s]
        else:  # counters
            rate = max_rate[s]
            allow = rate * (float(t - prev_t) / 1e6 + JITTER_S)
            d = v - prev_v
            if cand_ts[s] != NO_TS:
                ct = cand_ts[s]
                dc = v - cand_value[s]
                if 0.0 <= d <= allow:  # the candidate was a spike
                    _event(ech, ct, EV_REJECTED, ring, hour_lo, hour_hi)
                    cand_ts[s] = NO_TS
                elif 0.0 <= dc <= rate * (float(t - ct) / 1e6 + JITTER_S):
                    # the counter stood still since moved_ts if its last interval
                    # counted nothing, else since prev
                    mt = moved_ts[s] if last_rate[s] == 0.0 and moved_ts[s] != NO_TS else prev_t
                    n_expired += _settle_candidate(
                        ch,
                        ech,
                        mt,
                        prev_t,
                        cand_value[s] - prev_v,
                        ct,
                        t,
                        dc,
                        rate,
                        gap_us[s],
                        ring,
                        hour_lo,
                        hour_hi,
                    )
                    cand_ts[s] = NO_TS
                    last_ts[s] = t
                    last_value[s] = v
                    last_rate[s] = dc / float(t - ct)
                    moved_ts[s] = ct
                    n_used += 1
                    continue
                else:  # neither: the old candidate was a spike, this one is held instead
                    _event(ech, ct, EV_REJECTED, ring, hour_lo, hour_hi)
                    cand_ts[s] = t
                    cand_value[s] = v
                    continue
            if d >= 0.0:
                if d > allow:
                    cand_ts[s] = t
                    cand_value[s] = v
                    continue
                amount = d
            else:
                w = wrap[s]
                wrapped = w - prev_v + v
                if w > 0.0 and 0.0 <= wrapped <= min(allow, ROLLOVER_WINDOW * w):
                    amount = wrapped
                    _event(ech, t, EV_ROLLOVER, ring, hour_lo, hour_hi)
                elif v >= 0.0 and v <= allow and v < 0.5 * prev_v:
                    amount = v
                    # the energy before the reset instant is gone from the register:
                    # estimate the whole interval at the last known rate
                    extra = max(last_rate[s] * float(t - prev_t) - v, 0.0)
                    _event(ech, t, EV_RESET, ring, hour_lo, hour_hi)
                elif -d <= BACKSTEP_FRACTION * prev_v + (allow if allow < 1e300 else 0.0):
                    # keep the baseline at prev: nothing counted twice
                    _event(ech, t, EV_BACKSTEP, ring, hour_lo, hour_hi)
                    last_ts[s] = t
                    moved_ts[s] = t
                    n_used += 1
                    continue
                else:
                    cand_ts[s] = t
                    cand_value[s] = v
                    continue
            # the first interval that counts nothing after one that did: the counter
            # stands still since prev (written only then: a store per reading cost
            # about a tenth of the kernel's speed)
            if amount + extra == 0.0 and last_rate[s] != 0.0:
                moved_ts[s] = prev_t
            last_rate[s] = (amount + extra) / float(t - prev_t)
        # the interval (prev_t, t) carries amount (+ extra) to channel c
        if gap:
            _event(ech, t, EV_GAP, ring, hour_lo, hour_hi)
        if (
            c >= 0
            and not gap
            and extra == 0.0
            and prev_t >= cur_lo
            and t <= cur_hi
            and ring_hour[cur_slot] == cur_hour
        ):
            # fast path: the whole interval lies in the cached hour
            energy[c, cur_slot] += amount
            events[c, cur_slot, EV_SAMPLES] += 1
            dirty[cur_slot] = True
        else:
            n_expired += _spread(c, prev_t, t, amount, gap, ring, hour_lo, hour_hi)
            if extra > 0.0:
                n_expired += _spread(c, prev_t, t, extra, True, ring, hour_lo, hour_hi)
            hour = (t - 1) // HOUR_US
            if hour_lo <= hour <= hour_hi:
                cur_hour = hour
                cur_lo = hour * HOUR_US
                cur_hi = cur_lo + HOUR_US
                cur_slot = hour % n_slots
        last_ts[s] = t
        last_value[s] = v
        n_used += 1
    return n_late, n_used, n_expired
