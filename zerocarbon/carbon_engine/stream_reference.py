"""Plain-numpy reference of the streaming kernel (no numba).

Same signature and results as :func:`zerocarbon.carbon_engine.stream.stream_readings`
(see its module docstring for the rules, units and references), computed another way so
that the two are independent implementations of one specification; the tests hold them
to each other. Results agree to rounding, not bit for bit (hourly sums are added in
another order).

How it is computed:

1. The batch is grouped by series (stable argsort: each series keeps its arrival order).
2. Per series, every consecutive pair of readings is classified at once with array
   expressions: a pair is *plain* when the newer reading is newer and, for a counter, a
   normal increase, a rollover or a reset; for power, a sample within the rated bound.
   Runs of plain pairs that follow an accepted baseline become intervals (and their
   rollover/reset/gap events) as arrays. Only the other readings (first reading, late,
   duplicate, backward step, spike, replacement or catch-up candidates, rejected power)
   go through a scalar state machine, one reading at a time; after a run, the start of
   its last pair that counts nothing after one that did is the series' ``moved_ts``.
3. The intervals are split into their hours all at once (``np.repeat``), and the ring is
   updated at the end: a slot ends up holding the largest hour any operation touched in
   it, so only operations on that hour survive; an hourly part counts as expired when
   its slot already held a newer hour at its turn in arrival order (a cumulative
   maximum per slot). As in the kernel, only the last ``n_slots`` hours of an interval
   are split; any older hours of it are one expired lump.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from zerocarbon.carbon_engine.stream import (
    BACKSTEP_FRACTION,
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
    JITTER_S,
    NO_TS,
    POWER,
    ROLLOVER_WINDOW,
)

__all__ = ["stream_readings"]

_I64 = NDArray[np.int64]
_F64 = NDArray[np.float64]
_NO_TS = int(NO_TS)
_SUB = 8  # operations per reading are ordered by (batch index, sub-step < _SUB)


@dataclass
class _Ops:
    """Ring operations in the order the kernel would make them.

    Intervals: (batch index, sub-step, channel, t0 [us], t1 [us], amount, estimated);
    events: (batch index, sub-step, channel, time [us], event code). Scalar steps append
    Python values; vectorised runs append arrays.
    """

    iv: list[tuple[_I64, _I64, _I64, _I64, _I64, _F64, NDArray[np.bool_]]] = field(
        default_factory=list
    )
    ev: list[tuple[_I64, _I64, _I64, _I64, _I64]] = field(default_factory=list)
    iv_scalar: list[tuple[int, int, int, int, int, float, bool]] = field(default_factory=list)
    ev_scalar: list[tuple[int, int, int, int, int]] = field(default_factory=list)

    def interval(
        self, i: int, sub: int, ch: int, t0: int, t1: int, amount: float, est: bool
    ) -> None:
        if ch >= 0:
            self.iv_scalar.append((i, sub, ch, t0, t1, amount, est))

    def event(self, i: int, sub: int, ch: int, t: int, code: int) -> None:
        if ch >= 0:
            self.ev_scalar.append((i, sub, ch, t, code))

    def intervals(self) -> tuple[_I64, _I64, _I64, _I64, _I64, _F64, NDArray[np.bool_]]:
        parts = list(self.iv)
        if self.iv_scalar:
            cols = list(zip(*self.iv_scalar, strict=True))
            parts.append(
                (
                    np.array(cols[0], np.int64),
                    np.array(cols[1], np.int64),
                    np.array(cols[2], np.int64),
                    np.array(cols[3], np.int64),
                    np.array(cols[4], np.int64),
                    np.array(cols[5], np.float64),
                    np.array(cols[6], np.bool_),
                )
            )
        if not parts:
            e = np.empty(0, np.int64)
            return e, e, e, e, e, np.empty(0, np.float64), np.empty(0, np.bool_)
        i, sub, ch, t0, t1, amount, est = (np.concatenate(c) for c in zip(*parts, strict=True))
        keep = ch >= 0
        return (
            i[keep],
            sub[keep],
            ch[keep],
            t0[keep],
            t1[keep],
            amount[keep].astype(np.float64),
            est[keep].astype(np.bool_),
        )

    def events(self) -> tuple[_I64, _I64, _I64, _I64, _I64]:
        parts = list(self.ev)
        if self.ev_scalar:
            cols = list(zip(*self.ev_scalar, strict=True))
            parts.append(tuple(np.array(c, np.int64) for c in cols))  # type: ignore[arg-type]
        if not parts:
            e = np.empty(0, np.int64)
            return e, e, e, e, e
        i, sub, ch, t, code = (np.concatenate(c) for c in zip(*parts, strict=True))
        keep = ch >= 0
        return i[keep], sub[keep], ch[keep], t[keep], code[keep]


@dataclass
class _SeriesState:
    last_ts: int
    last_value: float
    cand_ts: int
    cand_value: float
    last_rate: float = 0.0  # rate of the last counted interval [unit/us]
    moved_ts: int = _NO_TS  # stood still since, while last_rate == 0 [us]


def _step(
    i: int,
    t: int,
    v: float,
    k: int,
    ch: int,
    neg: int,
    w: float,
    rate: float,
    gap_us: int,
    st: _SeriesState,
    ops: _Ops,
    late: list[int],
) -> tuple[int, bool]:
    """One reading through the state machine; returns (readings used, whether the
    reading is now the series' baseline with its own time and value)."""
    ech = ch if ch >= 0 else neg  # the channel events are counted on
    if v != v or (k == POWER and not abs(v) <= rate * 3600.0):  # NaN, beyond the rating
        ops.event(i, 0, ech, t, EV_REJECTED)
        return 0, False
    if st.last_ts == _NO_TS:
        st.last_ts, st.last_value, st.moved_ts = t, v, t
        return 1, True
    prev_t, prev_v = st.last_ts, st.last_value
    if t < prev_t or (st.cand_ts != _NO_TS and t < st.cand_ts):
        late.append(i)
        ops.event(i, 0, ech, t, EV_LATE)
        return 0, False
    if t == prev_t or t == st.cand_ts:
        ops.event(i, 0, ech, t, EV_DUPLICATE)
        return 0, False
    gap = t - prev_t > gap_us
    if k == POWER:
        if gap:
            ops.event(i, 0, ech, t, EV_GAP)
        dt_h = float(t - prev_t) / HOUR_US
        if (prev_v >= 0.0) == (v >= 0.0):
            e = 0.5 * (prev_v + v) * dt_h
            ops.interval(i, 1, ch if e >= 0.0 else neg, prev_t, t, abs(e), gap)
        else:
            frac = prev_v / (prev_v - v)
            tz = prev_t + int(frac * float(t - prev_t))
            e0 = 0.5 * prev_v * frac * dt_h
            e1 = 0.5 * v * (1.0 - frac) * dt_h
            ops.interval(i, 1, ch if e0 >= 0.0 else neg, prev_t, tz, abs(e0), gap)
            ops.interval(i, 2, ch if e1 >= 0.0 else neg, tz, t, abs(e1), gap)
        st.last_ts, st.last_value = t, v
        return 1, True
    allow = rate * (float(t - prev_t) / 1e6 + JITTER_S)
    d = v - prev_v
    if st.cand_ts != _NO_TS:
        ct, cv = st.cand_ts, st.cand_value
        if 0.0 <= d <= allow:
            ops.event(i, 0, ech, ct, EV_REJECTED)  # the candidate was a spike
            st.cand_ts = _NO_TS
        else:
            dc = v - cv
            if 0.0 <= dc <= rate * (float(t - ct) / 1e6 + JITTER_S):
                still = st.last_rate == 0.0 and st.moved_ts != _NO_TS
                mt = st.moved_ts if still else prev_t
                jump = cv - prev_v
                if 0.0 <= jump <= rate * (float(ct - mt) / 1e6 + JITTER_S):
                    # a catch-up of a counter that stood still since mt
                    ops.event(i, 0, ech, ct, EV_GAP)
                    share = float(prev_t - mt) / float(ct - mt)
                    before = jump * share if prev_t > mt else 0.0
                    if prev_t > mt:
                        ops.interval(i, 1, ch, mt, prev_t, before, True)
                    ops.interval(i, 2, ch, prev_t, ct, jump - before, ct - prev_t > gap_us)
                else:  # the meter was replaced at the candidate
                    ops.event(i, 0, ech, ct, EV_REPLACED)
                    est = dc / float(t - ct) * float(ct - prev_t)
                    ops.interval(i, 1, ch, prev_t, ct, est, True)
                ops.interval(i, 3, ch, ct, t, dc, t - ct > gap_us)
                st.cand_ts = _NO_TS
                st.last_ts, st.last_value = t, v
                st.last_rate = dc / float(t - ct)
                st.moved_ts = ct
                return 1, True
            ops.event(i, 0, ech, ct, EV_REJECTED)
            st.cand_ts, st.cand_value = t, v
            return 0, False
    extra = 0.0
    if d >= 0.0:
        if d > allow:
            st.cand_ts, st.cand_value = t, v
            return 0, False
        amount = d
    else:
        wrapped = w - prev_v + v
        if w > 0.0 and 0.0 <= wrapped <= min(allow, ROLLOVER_WINDOW * w):
            amount = wrapped
            ops.event(i, 1, ech, t, EV_ROLLOVER)
        elif 0.0 <= v <= allow and v < 0.5 * prev_v:
            amount = v
            ops.event(i, 1, ech, t, EV_RESET)
            extra = max(st.last_rate * float(t - prev_t) - v, 0.0)
        elif -d <= BACKSTEP_FRACTION * prev_v + (allow if allow < 1e300 else 0.0):
            ops.event(i, 1, ech, t, EV_BACKSTEP)
            st.last_ts = st.moved_ts = t
            return 1, False
        else:
            st.cand_ts, st.cand_value = t, v
            return 0, False
    if gap:
        ops.event(i, 2, ech, t, EV_GAP)
    ops.interval(i, 3, ch, prev_t, t, amount, gap)
    if extra > 0.0:
        ops.interval(i, 4, ch, prev_t, t, extra, True)
    st.last_ts, st.last_value = t, v
    if amount + extra == 0.0 and st.last_rate != 0.0:
        st.moved_ts = prev_t  # stands still from here
    st.last_rate = (amount + extra) / float(t - prev_t)
    return 1, True


def _plain_pairs(
    k: int, t: _I64, v: _F64, w: float, rate: float
) -> tuple[NDArray[np.bool_], NDArray[np.bool_], NDArray[np.bool_]]:
    """Per consecutive pair (p-1, p): plain, rollover, reset (counters)."""
    t0, t1, v0, v1 = t[:-1], t[1:], v[:-1], v[1:]
    newer = t1 > t0
    if k == POWER:
        no = np.zeros(t1.shape, np.bool_)
        return newer & (np.abs(v1) <= rate * 3600.0) & ~np.isnan(v0), no, no
    with np.errstate(invalid="ignore", over="ignore"):
        allow = rate * ((t1 - t0).astype(np.float64) / 1e6 + JITTER_S)
        d = v1 - v0
        normal = (d >= 0.0) & (d <= allow)
        wrapped = w - v0 + v1
        rolled = (
            (d < 0.0)
            & (w > 0.0)
            & (wrapped >= 0.0)
            & (wrapped <= np.minimum(allow, ROLLOVER_WINDOW * w))
        )
        reset = (d < 0.0) & ~rolled & (v1 >= 0.0) & (v1 <= allow) & (v1 < 0.5 * v0)
    # reset pairs take the scalar path: their estimate needs the rate before them
    return newer & (normal | rolled), rolled, reset


def _run(
    i: _I64,
    k: int,
    ch: int,
    neg: int,
    w: float,
    gap_us: int,
    t0: _I64,
    t1: _I64,
    v0: _F64,
    v1: _F64,
    rolled: NDArray[np.bool_],
    reset: NDArray[np.bool_],
    ops: _Ops,
) -> None:
    """A run of plain pairs (prev -> new) of one series, as arrays of operations."""
    n = i.shape[0]
    gap = (t1 - t0) > gap_us
    chs = np.full(n, ch, np.int64)
    if k == POWER:
        echs = np.full(n, ch if ch >= 0 else neg, np.int64)
        ops.ev.append(
            (
                i[gap],
                np.zeros(int(gap.sum()), np.int64),
                echs[gap],
                t1[gap],
                np.full(int(gap.sum()), EV_GAP, np.int64),
            )
        )
        dt_h = (t1 - t0).astype(np.float64) / HOUR_US
        same = (v0 >= 0.0) == (v1 >= 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(same, 0.0, v0 / np.where(same, 1.0, v0 - v1))
        e = np.where(same, 0.5 * (v0 + v1) * dt_h, 0.5 * v0 * frac * dt_h)
        tz = np.where(same, t1, t0 + (frac * (t1 - t0).astype(np.float64)).astype(np.int64))
        c0 = np.where(e >= 0.0, ch, neg)
        ops.iv.append((i, np.ones(n, np.int64), c0, t0, tz, np.abs(e), gap))
        x = ~same
        e1 = 0.5 * v1[x] * (1.0 - frac[x]) * dt_h[x]
        ops.iv.append(
            (
                i[x],
                np.full(e1.shape, 2, np.int64),
                np.where(e1 >= 0.0, ch, neg),
                tz[x],
                t1[x],
                np.abs(e1),
                gap[x],
            )
        )
        return
    amount = np.where(rolled, w - v0 + v1, np.where(reset, v1, v1 - v0))
    for mask, code, sub in ((rolled, EV_ROLLOVER, 1), (reset, EV_RESET, 1), (gap, EV_GAP, 2)):
        m = int(mask.sum())
        if m:
            ops.ev.append(
                (
                    i[mask],
                    np.full(m, sub, np.int64),
                    chs[mask],
                    t1[mask],
                    np.full(m, code, np.int64),
                )
            )
    ops.iv.append((i, np.full(n, 3, np.int64), chs, t0, t1, amount, gap))


def _series(
    s: int,
    idx: _I64,
    ts_us: _I64,
    value: _F64,
    kind: NDArray[np.int8],
    pos_channel: NDArray[np.int32],
    neg_channel: NDArray[np.int32],
    wrap: _F64,
    max_rate: _F64,
    gap_us: _I64,
    st: _SeriesState,
    ops: _Ops,
    late: list[int],
) -> int:
    """All readings of one series, in arrival order; returns readings used."""
    k, ch, neg = int(kind[s]), int(pos_channel[s]), int(neg_channel[s])
    w, rate, gap = float(wrap[s]), float(max_rate[s]), int(gap_us[s])
    t = ts_us[idx]
    v = value[idx]
    plain, rolled, reset = _plain_pairs(k, t, v, w, rate)
    breaks = np.flatnonzero(~plain) + 1  # points p whose pair (p-1, p) is not plain
    used = 0
    n = idx.shape[0]
    p = 0
    chained = False  # point p-1 is the baseline (time and value) and nothing is held
    while p < n:
        if chained:
            q = int(breaks[np.searchsorted(breaks, p)]) if breaks.size and breaks[-1] >= p else n
            if q > p:
                a, b = p - 1, q - 1  # pairs (p-1, p) .. (q-2, q-1)
                _run(
                    idx[p:q],
                    k,
                    ch,
                    neg,
                    w,
                    gap,
                    t[a:b],
                    t[p:q],
                    v[a:b],
                    v[p:q],
                    rolled[a:b],
                    reset[a:b],
                    ops,
                )
                used += q - p
                if k == COUNTER:
                    last = q - 2  # the run's last pair (q-2, q-1)
                    amount = (w - v[last] + v[q - 1]) if rolled[last] else v[q - 1] - v[last]
                    # pairs that count nothing after one that did: still from their start
                    counted = np.where(rolled[a:b], w - v[a:b] + v[p:q], v[p:q] - v[a:b]) != 0
                    before = np.concatenate(([st.last_rate != 0.0], counted[:-1]))
                    stops = np.flatnonzero(~counted & before)
                    if stops.size:
                        st.moved_ts = int(t[a + int(stops[-1])])
                    st.last_rate = float(amount) / float(t[q - 1] - t[last])
                st.last_ts, st.last_value = int(t[q - 1]), float(v[q - 1])
                p = q
                continue
        u, chained = _step(
            int(idx[p]), int(t[p]), float(v[p]), k, ch, neg, w, rate, gap, st, ops, late
        )
        chained = chained and st.cand_ts == _NO_TS
        used += u
        p += 1
    return used


def _parts(
    iv: tuple[_I64, _I64, _I64, _I64, _I64, _F64, NDArray[np.bool_]],
    n_slots: int,
    hour_lo: int,
    hour_hi: int,
) -> tuple[tuple[_I64, _I64, _I64, _I64, _F64, NDArray[np.bool_]], int]:
    """Hourly parts of intervals: of each, its last ``n_slots`` hours that lie in
    [hour_lo, hour_hi]; and how many intervals had older hours (one expired lump each)."""
    i, sub, ch, t0, t1, amount, est = iv
    h0 = t0 // HOUR_US
    h1 = np.where(t1 > t0, (t1 - 1) // HOUR_US, h0)
    h_first = np.maximum(h0, h1 - (n_slots - 1))
    lo = np.maximum(h_first, hour_lo)
    hi = np.minimum(h1, hour_hi)
    count = np.maximum(hi - lo + 1, 0)
    rep = np.repeat(np.arange(i.shape[0]), count)
    first = np.cumsum(count) - count
    hour = lo[rep] + (np.arange(rep.shape[0]) - first[rep])
    a, b, g1 = t0[rep], t1[rep], h1[rep]
    single = h0[rep] == g1
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = amount[rep] / np.where(single, 1.0, (b - a).astype(np.float64))
    start = np.maximum(hour * HOUR_US, a)
    end = np.minimum((hour + 1) * HOUR_US, b)
    part = np.where(
        single,
        amount[rep],
        np.where(
            hour == g1,
            amount[rep] - rate * (g1 * HOUR_US - a).astype(np.float64),
            rate * (end - start).astype(np.float64),
        ),
    )
    lumps = (h_first > h0) & (h0 <= hour_hi) & (h_first - 1 >= hour_lo)
    return (i[rep], sub[rep], ch[rep], hour, part, est[rep]), int(lumps.sum())


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
    """Feed a batch of readings, in arrival order, into the hourly ring (numpy reference).

    See :func:`zerocarbon.carbon_engine.stream.stream_readings` for the parameters
    (the same arrays, updated in place the same way) and the returned
    ``(n_late, n_used, n_expired)``.
    """
    ops = _Ops()
    late: list[int] = []
    used = 0
    s_arr = np.asarray(series)
    order = np.argsort(s_arr, kind="stable").astype(np.int64)
    sorted_s = s_arr[order]
    bounds = np.flatnonzero(sorted_s[1:] != sorted_s[:-1]) + 1
    for idx in np.split(order, bounds) if order.size else []:
        s = int(s_arr[idx[0]])
        if kind[s] == IGNORED:
            continue
        st = _SeriesState(
            int(last_ts[s]),
            float(last_value[s]),
            int(cand_ts[s]),
            float(cand_value[s]),
            float(last_rate[s]),
            int(moved_ts[s]),
        )
        used += _series(
            s,
            idx,
            ts_us,
            value,
            kind,
            pos_channel,
            neg_channel,
            wrap,
            max_rate,
            gap_us,
            st,
            ops,
            late,
        )
        last_ts[s], last_value[s] = st.last_ts, st.last_value
        cand_ts[s], cand_value[s] = st.cand_ts, st.cand_value
        last_rate[s] = st.last_rate
        moved_ts[s] = st.moved_ts
    late.sort()
    late_out[: len(late)] = late
    n_expired = _apply(ops, ring_hour, energy, estimated, events, dirty, hour_lo, hour_hi)
    return len(late), used, n_expired


def _apply(
    ops: _Ops,
    ring_hour: _I64,
    energy: _F64,
    estimated: _F64,
    events: NDArray[np.int32],
    dirty: NDArray[np.bool_],
    hour_lo: int,
    hour_hi: int,
) -> int:
    """Put the batch's operations into the ring; returns the expired hourly parts."""
    n_slots = ring_hour.shape[0]
    (pi, psub, pch, phour, pamount, pest), n_lumps = _parts(
        ops.intervals(), n_slots, hour_lo, hour_hi
    )
    ei, esub, ech, ets, ecode = ops.events()
    ehour = ets // HOUR_US
    inside = (ehour >= hour_lo) & (ehour <= hour_hi)
    ei, esub, ech, ehour, ecode = (a[inside] for a in (ei, esub, ech, ehour, ecode))
    n_p = pi.shape[0]
    # every operation on the ring: hourly parts, then events
    op_i = np.concatenate([pi, ei])
    op_sub = np.concatenate([psub, esub])
    op_hour = np.concatenate([phour, ehour])
    op_slot = op_hour % n_slots
    order = np.lexsort((op_hour, op_sub, op_i, op_slot))
    held_before = np.empty(op_hour.shape, np.int64)
    slots = op_slot[order]
    hours = op_hour[order]
    bounds = np.flatnonzero(slots[1:] != slots[:-1]) + 1
    final = ring_hour.copy()
    for g in np.split(np.arange(order.shape[0]), bounds) if order.size else []:
        slot = int(slots[g[0]])
        running = np.maximum(np.maximum.accumulate(hours[g]), ring_hour[slot])
        held_before[order[g]] = np.concatenate(([ring_hour[slot]], running[:-1]))
        final[slot] = running[-1]
    n_expired = n_lumps + int((held_before[:n_p] > phour).sum())
    moved = np.flatnonzero(final != ring_hour)
    ring_hour[moved] = final[moved]
    energy[:, moved] = 0.0
    estimated[:, moved] = 0.0
    events[:, moved, :] = 0
    dirty[moved] = False
    keep = phour == final[phour % n_slots]
    ps = phour[keep] % n_slots
    np.add.at(energy, (pch[keep], ps), pamount[keep])
    e = pest[keep]
    np.add.at(estimated, (pch[keep][e], ps[e]), pamount[keep][e])
    np.add.at(events, (pch[keep], ps, EV_SAMPLES), 1)
    dirty[ps] = True
    keep = ehour == final[ehour % n_slots]
    es = ehour[keep] % n_slots
    np.add.at(events, (ech[keep], es, ecode[keep]), 1)
    dirty[es] = True
    return n_expired
