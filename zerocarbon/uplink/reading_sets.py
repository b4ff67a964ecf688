"""Readings grouped per (site, ts), as rows of arrays, in PostgreSQL's binary COPY.

The center stores a site's readings of one instant as one row of ``site_reading_sets``
``(site_id int4, ts timestamptz, series_id int4[], value float8[], quality int2[])``
(:mod:`zerocarbon.uplink.center_schema`): a gateway stamps all registers of one Modbus
request, all metrics of one MQTT message, with one ``ts``, so a row holds 5 to 200
readings and the table's key and heap pay their per-row costs once for all of them.
``bench/uplink.py`` and ``docs/center.md`` give what that saved against a row per
reading.

:func:`group_readings` turns flat readings into such sets (each (site, ts, series)
once: its first copy in the given order); :func:`encode_reading_sets` writes them as
binary COPY data with numpy, one structured dtype per set size, no Python loop over
rows.

Binary COPY (PostgreSQL documentation, "COPY", "Binary Format"): per row an int16
field count, then per field an int32 byte length and the value in network order; an
array value (``array_send`` in PostgreSQL's ``arrayfuncs.c``) is int32 ndim (1), int32
has-nulls flag (0), int32 element type oid, then per dimension int32 length and int32
lower bound (1), then per element an int32 byte length and the element. A row of ``n``
readings takes ``94 + 26 n`` bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from zerocarbon.storage.copy_binary import HEADER, PG_EPOCH_US, copy_buffer
from zerocarbon.uplink.messages import ReadingsMessage

__all__ = [
    "READING_SET_COLUMNS",
    "ReadingSets",
    "encode_reading_sets",
    "group_messages",
    "group_readings",
    "reading_set_dtype",
]

READING_SET_COLUMNS = ("site_id", "ts", "series_id", "value", "quality")

INT2_OID = 21  # PostgreSQL's pg_type oids of the element types
INT4_OID = 23
FLOAT8_OID = 701
_ARRAY_HEADER_BYTES = 20  # ndim, flags, element oid, length, lower bound


@dataclass(frozen=True, slots=True)
class ReadingSets:
    """Readings grouped per (site, ts): set ``k`` is ``series_id[start[k]:start[k] +
    size[k]]`` (and the same slice of ``value``, ``quality``), series ascending.

    Sets are in key order (ts, then site); ``ts_us`` is POSIX time [us].
    """

    site_id: NDArray[np.int32]  # per set
    ts_us: NDArray[np.int64]  # per set
    start: NDArray[np.int64]  # per set: first element
    size: NDArray[np.int64]  # per set: readings
    series_id: NDArray[np.int32]  # per reading
    value: NDArray[np.float64]  # per reading
    quality: NDArray[np.int16]  # per reading
    source: NDArray[np.int64]  # per reading: its row in the columns grouped

    def __len__(self) -> int:
        return int(self.site_id.shape[0])

    @property
    def readings(self) -> int:
        return int(self.series_id.shape[0])

    def take(self, which: NDArray[np.bool_]) -> ReadingSets:
        """The sets where ``which`` (one flag per set) is true, in order."""
        elements = np.repeat(which, self.size)
        size = self.size[which]
        start = np.zeros(size.shape[0], dtype=np.int64)
        np.cumsum(size[:-1], out=start[1:])
        return ReadingSets(
            site_id=self.site_id[which],
            ts_us=self.ts_us[which],
            start=start,
            size=size,
            series_id=self.series_id[elements],
            value=self.value[elements],
            quality=self.quality[elements],
            source=self.source[elements],
        )

    def readings_by_site(self) -> dict[int, int]:
        """Readings per site id (sites with none left out)."""
        sites, inverse = np.unique(self.site_id, return_inverse=True)
        counts = np.bincount(inverse, weights=self.size, minlength=sites.shape[0])
        return {int(s): int(c) for s, c in zip(sites, counts, strict=True) if c}


def group_readings(
    site_id: NDArray[np.integer],
    ts_us: NDArray[np.int64],
    series_id: NDArray[np.integer],
    value: NDArray[np.float64],
    quality: NDArray[np.integer],
) -> ReadingSets:
    """Equal-length reading columns grouped per (site, ts), each (site, ts, series)
    kept once: its first copy in the given order (a stable sort keeps it first)."""
    order = np.lexsort((series_id, site_id, ts_us))
    site_s = np.asarray(site_id, dtype=np.int32)[order]
    ts_s = np.asarray(ts_us, dtype=np.int64)[order]
    series_s = np.asarray(series_id, dtype=np.int32)[order]
    n = int(order.shape[0])
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return ReadingSets(
            np.zeros(0, np.int32), empty, empty, empty, np.zeros(0, np.int32),
            np.zeros(0, np.float64), np.zeros(0, np.int16), empty,
        )  # fmt: skip
    new_set = np.empty(n, dtype=np.bool_)
    new_set[0] = True
    np.not_equal(site_s[1:], site_s[:-1], out=new_set[1:])
    new_set[1:] |= ts_s[1:] != ts_s[:-1]
    keep = new_set.copy()
    keep[1:] |= series_s[1:] != series_s[:-1]  # a repeated key: its first copy only
    if not bool(keep.all()):
        order, site_s, ts_s, series_s = order[keep], site_s[keep], ts_s[keep], series_s[keep]
        new_set = new_set[keep]
    start = np.flatnonzero(new_set)
    size = np.diff(np.append(start, series_s.shape[0]))
    return ReadingSets(
        site_id=site_s[start],
        ts_us=ts_s[start],
        start=start.astype(np.int64),
        size=size.astype(np.int64),
        series_id=series_s,
        value=np.asarray(value, dtype=np.float64)[order],
        quality=np.asarray(quality, dtype=np.int16)[order],
        source=order.astype(np.int64),
    )


def group_messages(
    messages: Sequence[ReadingsMessage],
    site_ids: Sequence[int],
    catalog_ids: Sequence[NDArray[np.int32]],
) -> ReadingSets:
    """The readings of ``messages`` grouped per (site, ts) (:func:`group_readings`),
    with their central ids: message ``i``'s site is ``site_ids[i]`` and its catalog
    entry ``k`` the series ``catalog_ids[i][k]``. A set's :attr:`ReadingSets.source`
    counts the messages' readings in order."""
    return group_readings(
        np.repeat(np.asarray(site_ids, dtype=np.int32), [len(m) for m in messages]),
        np.concatenate([m.ts_us for m in messages]),
        np.concatenate([ids[m.series] for ids, m in zip(catalog_ids, messages, strict=True)]),
        np.concatenate([m.value for m in messages]),
        np.concatenate([m.quality for m in messages]),
    )


def _array_fields(prefix: str, element: str, n: int) -> list[Any]:
    return [
        (f"{prefix}_len", ">i4"),
        (f"{prefix}_ndim", ">i4"),
        (f"{prefix}_flags", ">i4"),
        (f"{prefix}_oid", ">i4"),
        (f"{prefix}_n", ">i4"),
        (f"{prefix}_lbound", ">i4"),
        (prefix, [("len", ">i4"), ("v", element)], (n,)),
    ]


@cache
def reading_set_dtype(n: int) -> np.dtype[np.void]:
    """The packed binary COPY layout of a row of ``n`` readings (``94 + 26 n`` bytes)."""
    return np.dtype(
        [
            ("nfields", ">i2"),
            ("site_len", ">i4"),
            ("site_id", ">i4"),
            ("ts_len", ">i4"),
            ("ts", ">i8"),
            *_array_fields("series_id", ">i4", n),
            *_array_fields("value", ">f8", n),
            *_array_fields("quality", ">i2", n),
        ]
    )


_ELEMENTS = (("series_id", INT4_OID, 4), ("value", FLOAT8_OID, 8), ("quality", INT2_OID, 2))


def encode_reading_sets(sets: ReadingSets) -> bytearray:
    """Binary COPY data of the rows :data:`READING_SET_COLUMNS` of ``sets``, grouped by
    set size (sets of one size in key order). Returns a ``bytearray`` for asyncpg's
    ``copy_to_table(source=...)``."""
    sizes, inverse = np.unique(sets.size, return_inverse=True)
    counts = np.bincount(inverse, minlength=sizes.shape[0])
    total = sum(
        int(c) * reading_set_dtype(int(n)).itemsize for n, c in zip(sizes, counts, strict=True)
    )
    out = copy_buffer(total)
    offset = len(HEADER)
    for j, n_np in enumerate(sizes):
        n = int(n_np)
        which = np.flatnonzero(inverse == j)
        dtype = reading_set_dtype(n)
        rows = np.frombuffer(out, dtype=dtype, count=which.shape[0], offset=offset)
        offset += which.shape[0] * dtype.itemsize
        rows["nfields"] = len(READING_SET_COLUMNS)
        rows["site_len"] = 4
        rows["site_id"] = sets.site_id[which]
        rows["ts_len"] = 8
        rows["ts"] = sets.ts_us[which] - PG_EPOCH_US
        element = sets.start[which][:, None] + np.arange(n)
        for name, oid, width in _ELEMENTS:
            rows[f"{name}_len"] = _ARRAY_HEADER_BYTES + n * (4 + width)
            rows[f"{name}_ndim"] = 1
            rows[f"{name}_flags"] = 0
            rows[f"{name}_oid"] = oid
            rows[f"{name}_n"] = n
            rows[f"{name}_lbound"] = 1
            rows[name]["len"] = width
            rows[name]["v"] = getattr(sets, name)[element]
    return out
