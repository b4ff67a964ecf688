"""Readings grouped per (site, ts) and their binary COPY rows, against plain Python
references: the first copy of each key kept, key order, and every byte of the rows."""

from __future__ import annotations

import struct

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from zerocarbon.storage.copy_binary import HEADER, PG_EPOCH_US, TRAILER
from zerocarbon.uplink.reading_sets import (
    FLOAT8_OID,
    INT2_OID,
    INT4_OID,
    ReadingSets,
    encode_reading_sets,
    group_readings,
    reading_set_dtype,
)

Row = tuple[int, int, list[int], list[float], list[int]]  # site, ts, series, value, quality

readings_lists = st.lists(
    st.tuples(
        st.integers(1, 4),  # site
        st.integers(0, 5).map(lambda k: 1_780_000_000_000_000 + k * 1_000),  # ts [us]
        st.integers(1, 6),  # series
        st.floats(allow_nan=False, allow_infinity=False, width=64),
        st.integers(0, 3),  # quality
    ),
    max_size=80,
)


def reference_sets(readings: list[tuple[int, int, int, float, int]]) -> list[Row]:
    """Per (ts, site), in that order, each series' first reading, series ascending."""
    first: dict[tuple[int, int, int], tuple[float, int]] = {}
    for site, ts, series, value, quality in readings:
        first.setdefault((ts, site, series), (value, quality))
    rows: dict[tuple[int, int], Row] = {}
    for (ts, site, series), (value, quality) in sorted(first.items()):
        row = rows.setdefault((ts, site), (site, ts, [], [], []))
        row[2].append(series)
        row[3].append(value)
        row[4].append(quality)
    return list(rows.values())


def columns(readings: list[tuple[int, int, int, float, int]]) -> ReadingSets:
    site, ts, series, value, quality = (
        [r[i] for r in readings] for i in range(5)
    )  # fmt: skip
    return group_readings(
        np.array(site, dtype=np.int32),
        np.array(ts, dtype=np.int64),
        np.array(series, dtype=np.int32),
        np.array(value, dtype=np.float64),
        np.array(quality, dtype=np.int16),
    )


def as_rows(sets: ReadingSets) -> list[Row]:
    return [
        (
            int(sets.site_id[k]),
            int(sets.ts_us[k]),
            sets.series_id[a : a + n].tolist(),
            sets.value[a : a + n].tolist(),
            sets.quality[a : a + n].tolist(),
        )
        for k, (a, n) in enumerate(zip(sets.start.tolist(), sets.size.tolist(), strict=True))
    ]


def parse_copy(data: bytes) -> list[Row]:
    """Rows of binary COPY data of (int4, timestamptz, int4[], float8[], int2[]),
    read field by field as PostgreSQL's COPY FROM does."""
    assert data[: len(HEADER)] == HEADER and data[-len(TRAILER) :] == TRAILER
    pos, end, rows = len(HEADER), len(data) - len(TRAILER), []

    def take(fmt: str) -> tuple[int | float, ...]:
        nonlocal pos
        values = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return values

    def array(oid: int, fmt: str) -> list[int | float]:
        (length,) = take(">i")
        start = pos
        ndim, flags, element_oid, n, lbound = take(">iiiii")
        assert (ndim, flags, element_oid, lbound) == (1, 0, oid, 1)
        out = []
        for _ in range(int(n)):
            (width,) = take(">i")
            assert width == struct.calcsize(fmt)
            out.append(take(fmt)[0])
        assert pos - start == length
        return out

    while pos < end:
        assert take(">h") == (5,)
        assert take(">i") == (4,)
        (site,) = take(">i")
        assert take(">i") == (8,)
        (ts,) = take(">q")
        series = array(INT4_OID, ">i")
        value = array(FLOAT8_OID, ">d")
        quality = array(INT2_OID, ">h")
        rows.append(
            (
                int(site),
                int(ts) + PG_EPOCH_US,
                [int(s) for s in series],
                [float(v) for v in value],
                [int(q) for q in quality],
            )
        )
    assert pos == end
    return rows


@settings(max_examples=200, deadline=None)
@given(readings_lists)
def test_sets_keep_the_first_copy_of_each_key_in_key_order(
    readings: list[tuple[int, int, int, float, int]],
) -> None:
    sets = columns(readings)
    assert as_rows(sets) == reference_sets(readings)
    assert sets.readings == sum(len(r[2]) for r in reference_sets(readings))
    # each reading's source row is its first copy in the given order
    for k, (a, n) in enumerate(zip(sets.start.tolist(), sets.size.tolist(), strict=True)):
        for e in range(a, a + n):
            site, ts, series, value, quality = readings[int(sets.source[e])]
            assert (site, ts, series) == (
                int(sets.site_id[k]),
                int(sets.ts_us[k]),
                int(sets.series_id[e]),
            )
            assert (value, quality) == (float(sets.value[e]), int(sets.quality[e]))
            first = next(i for i, r in enumerate(readings) if r[:3] == (site, ts, series))
            assert int(sets.source[e]) == first


@settings(max_examples=200, deadline=None)
@given(readings_lists)
def test_copy_rows_hold_every_set_byte_for_byte(
    readings: list[tuple[int, int, int, float, int]],
) -> None:
    sets = columns(readings)
    parsed = parse_copy(bytes(encode_reading_sets(sets)))
    # rows go grouped by size, each size's rows in key order
    assert sorted(parsed, key=lambda r: (len(r[2]), r[1], r[0])) == sorted(
        reference_sets(readings), key=lambda r: (len(r[2]), r[1], r[0])
    )


@settings(max_examples=100, deadline=None)
@given(readings_lists, st.data())
def test_a_subset_of_sets_and_its_counts(
    readings: list[tuple[int, int, int, float, int]], data: st.DataObject
) -> None:
    sets = columns(readings)
    which = np.array(data.draw(st.lists(st.booleans(), min_size=len(sets), max_size=len(sets))))
    part = sets.take(which.astype(np.bool_))
    expected = [row for row, keep in zip(as_rows(sets), which.tolist(), strict=True) if keep]
    assert as_rows(part) == expected
    assert part.source.tolist() == [
        int(sets.source[e])
        for k in np.flatnonzero(which).tolist()
        for e in range(int(sets.start[k]), int(sets.start[k] + sets.size[k]))
    ]
    by_site: dict[int, int] = {}
    for row in expected:
        by_site[row[0]] = by_site.get(row[0], 0) + len(row[2])
    assert part.readings_by_site() == by_site


def test_a_row_of_n_readings_takes_94_plus_26_n_bytes() -> None:
    for n in (1, 5, 200):
        assert reading_set_dtype(n).itemsize == 94 + 26 * n
