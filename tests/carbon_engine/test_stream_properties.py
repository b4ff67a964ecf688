"""Properties of the streaming kernel over generated feeds (deterministic hypothesis)."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from tests.carbon_engine.test_stream import (
    H0,
    T0,
    UINT32_CENTI_WRAP,
    Fed,
    Ring,
    S,
    Series,
    assert_same,
)
from zerocarbon.carbon_engine import stream, stream_reference
from zerocarbon.carbon_engine.stream import EV_DUPLICATE, HOUR_US, POWER

numba_kernel = stream.stream_readings
reference = stream_reference.stream_readings

BIG_RING = 512  # hours: every generated feed fits, nothing expires

# counters (one wrapping, one rated, one unbounded) and two power gauges
SITE = [
    Series(wrap=UINT32_CENTI_WRAP, rated_kw=500.0),
    Series(pos=1, rated_kw=200.0),
    Series(pos=2),
    Series(kind=POWER, pos=3, neg=4, rated_kw=100.0),
    Series(kind=POWER, pos=5, rated_kw=100.0, gap_s=600.0),
]

Feed = tuple[NDArray[np.int32], NDArray[np.int64], NDArray[np.float64]]


@st.composite
def series_readings(draw: st.DrawFn, s: int, in_order: bool = True) -> list[tuple[int, int, float]]:
    """(series, ts [us], value) of one series of SITE, time-ordered unless ``in_order``
    is False (then some readings are late or repeat a time)."""
    n = draw(st.integers(1, 25))
    dts = draw(
        st.lists(
            st.sampled_from([1, 2, 7, 45, 600, 3599, 3600, 5400, 20_000]), min_size=n, max_size=n
        )
    )
    t = T0 + draw(st.integers(0, 3600)) * S + np.cumsum(dts).astype(np.int64) * S
    if not in_order:
        back = draw(st.lists(st.sampled_from([0, 0, 0, 1, 5, 100]), min_size=n, max_size=n))
        t = t - np.asarray(back, np.int64) * S
    spec = SITE[s]
    out: list[tuple[int, int, float]] = []
    if spec.kind == POWER:
        for ti in t.tolist():
            out.append((s, ti, draw(st.sampled_from([-90.0, -12.5, 0.0, 3.0, 40.0, 99.0, 500.0]))))
        return out
    v = UINT32_CENTI_WRAP - 1.0 if s == 0 else 1000.0
    shown = v  # what a register that stands still shows
    steps = ["up", "up", "up", "flat", "reset", "spike", "back", "swap", "stuck", "stuck"]
    for j, ti in enumerate(t.tolist()):
        step = draw(st.sampled_from(steps))
        dt_s = dts[j]
        if step == "stuck":  # counting on below the rating, the register shows its old value
            v += draw(st.floats(0.0, 0.08)) * dt_s
            out.append((s, ti, shown % UINT32_CENTI_WRAP if s == 0 else shown))
            continue
        if step == "up":
            v += draw(st.floats(0.0, 0.1)) * dt_s
        elif step == "reset":
            v = 0.01
        elif step == "back":
            v -= 0.5
        elif step == "swap":
            v = 1234.5
        x = v * 5.0 if step == "spike" else v
        shown = v
        out.append((s, ti, x % UINT32_CENTI_WRAP if s == 0 else x))
    return out


@st.composite
def feeds(draw: st.DrawFn, in_order: bool = True) -> Feed:
    """Several series interleaved in arrival order (each keeps its own order)."""
    chosen = draw(st.lists(st.integers(0, len(SITE) - 1), min_size=1, max_size=4, unique=True))
    per = [draw(series_readings(s, in_order)) for s in chosen]
    order = draw(st.permutations([k for k, p in enumerate(per) for _ in p]))
    pos = [0] * len(per)
    rows = []
    for k in order:
        rows.append(per[k][pos[k]])
        pos[k] += 1
    if in_order:
        rows.sort(key=lambda r: r[1])  # stable: a series' own order is kept
    return (
        np.array([r[0] for r in rows], np.int32),
        np.array([r[1] for r in rows], np.int64),
        np.array([r[2] for r in rows], np.float64),
    )


def run(
    impl: Any, feed: Feed, cuts: list[int] | None = None, n_slots: int = BIG_RING
) -> tuple[Ring, list[Fed]]:
    ring = Ring(SITE, n_slots)
    s, t, v = feed
    edges = [0, *sorted(cuts or []), s.shape[0]]
    return ring, [
        ring.feed(impl, s[a:b], t[a:b], v[a:b]) for a, b in zip(edges, edges[1:], strict=False)
    ]


@settings(derandomize=True, max_examples=60, deadline=None)
@given(
    dts=st.lists(st.integers(1, 30_000), min_size=1, max_size=40),
    increments=st.lists(st.floats(0.0, 1e4), min_size=40, max_size=40),
    start=st.integers(0, HOUR_US - 1),
)
def test_energy_is_conserved_through_hour_splitting(
    dts: list[int], increments: list[float], start: int
) -> None:
    spec = Series(gap_s=1e9)
    ring = Ring([spec], BIG_RING)
    t = T0 + start + np.concatenate(([0], np.cumsum(dts))) * S
    v = 1000.0 + np.concatenate(([0.0], np.cumsum(increments[: len(dts)])))
    fed = ring.feed(numba_kernel, np.zeros(t.shape, np.int32), t, v)
    assert fed.n_used == t.shape[0] and fed.n_expired == 0
    np.testing.assert_allclose(ring.energy.sum(), v[-1] - v[0], rtol=1e-9, atol=1e-9)
    hours = ring.ring_hour[ring.ring_hour >= 0]
    assert hours.min() == t[0] // HOUR_US and hours.max() == (t[-1] - 1) // HOUR_US


@settings(derandomize=True, max_examples=60, deadline=None)
@given(feed=feeds(in_order=False), data=st.data())
def test_any_split_into_consecutive_batches_gives_the_same_result(
    feed: Feed, data: st.DataObject
) -> None:
    n = feed[0].shape[0]
    cuts = data.draw(st.lists(st.integers(0, n), max_size=5))
    n_slots = data.draw(st.sampled_from([3, BIG_RING]))
    whole, (fed,) = run(numba_kernel, feed, n_slots=n_slots)
    split, parts = run(numba_kernel, feed, cuts, n_slots=n_slots)
    assert_same(whole, split)
    edges = [0, *sorted(cuts)]
    late = [i + edges[k] for k, p in enumerate(parts) for i in p.late]
    assert late == fed.late
    assert sum(p.n_used for p in parts) == fed.n_used
    assert sum(p.n_expired for p in parts) == fed.n_expired


@settings(derandomize=True, max_examples=60, deadline=None)
@given(feed=feeds(in_order=False))
def test_interleaving_of_series_changes_no_series_result(feed: Feed) -> None:
    mixed, _ = run(numba_kernel, feed)
    s = feed[0]
    for k in np.unique(s).tolist():
        alone, _ = run(numba_kernel, (s[s == k], feed[1][s == k], feed[2][s == k]))
        chans = [c for c in (SITE[k].pos, SITE[k].neg) if c >= 0]
        for name in ("last_ts", "last_value", "cand_ts", "cand_value", "last_rate", "moved_ts"):
            assert getattr(alone, name)[k] == getattr(mixed, name)[k], name
        for c in chans:
            for h in range(H0, H0 + BIG_RING):
                assert alone.energy_at(c, h) == mixed.energy_at(c, h)
                assert alone.estimated_at(c, h) == mixed.estimated_at(c, h)
                np.testing.assert_array_equal(
                    alone.events[c, h % BIG_RING] if alone.ring_hour[h % BIG_RING] == h else 0,
                    mixed.events[c, h % BIG_RING] if mixed.ring_hour[h % BIG_RING] == h else 0,
                )


@settings(derandomize=True, max_examples=60, deadline=None)
@given(feed=feeds(in_order=True), data=st.data())
def test_duplicated_readings_change_only_the_duplicate_count(
    feed: Feed, data: st.DataObject
) -> None:
    s, t, v = feed
    # a counter with no rating never rejects; power samples within the rating
    keep = (s == 2) | ((np.isin(s, [3, 4])) & (np.abs(v) <= 150.0))
    s, t, v = s[keep], t[keep], v[keep]
    n = s.shape[0]
    copies = data.draw(st.lists(st.integers(1, 3), min_size=n, max_size=n)) if n else []
    # each reading repeated right after itself (as a collector that re-sends)
    rep = np.repeat(np.arange(n), copies).astype(np.int64)
    base, (fed,) = run(numba_kernel, (s, t, v))
    dup, (fed_dup,) = run(numba_kernel, (s[rep], t[rep], v[rep]))
    n_dup = int(np.sum(copies)) - n
    assert dup.events[:, :, EV_DUPLICATE].sum() == n_dup
    dup.events[:, :, EV_DUPLICATE] = 0
    # a duplicate of a first reading puts its count in an hour that held nothing else
    new = base.ring_hour != dup.ring_hour
    assert (base.ring_hour[new] == -1).all()
    assert not dup.energy[:, new].any() and not dup.events[:, new].any()
    base.ring_hour[new] = dup.ring_hour[new]
    if n_dup:
        base.dirty |= dup.dirty  # a duplicate marks its hour changed
    assert_same(base, dup)
    assert (fed_dup.n_used, fed_dup.n_late, fed_dup.n_expired) == (fed.n_used, 0, fed.n_expired)


@settings(derandomize=True, max_examples=80, deadline=None)
@given(feed=feeds(in_order=True), data=st.data())
def test_numba_equals_the_reference_on_in_order_feeds(feed: Feed, data: st.DataObject) -> None:
    n = feed[0].shape[0]
    cuts = data.draw(st.lists(st.integers(0, n), max_size=3))
    n_slots = data.draw(st.sampled_from([2, 5, BIG_RING]))
    compiled, fed_c = run(numba_kernel, feed, cuts, n_slots)
    ref, fed_r = run(reference, feed, cuts, n_slots)
    assert fed_c == fed_r
    assert_same(compiled, ref)
