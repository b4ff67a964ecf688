"""PostgreSQL binary COPY of the ``readings`` columns, encoded from arrays in one pass.

Format (PostgreSQL documentation, "COPY", section "Binary Format"): an 11-byte
signature ``PGCOPY\\n\\377\\r\\n\\0``, an int32 flags field (0: no OIDs), an int32 header
extension length (0); then per row an int16 field count followed, per field, by an
int32 byte length and the value in network (big-endian) order; then an int16 -1
trailer. Our row is ``(ts timestamptz, device_id int2, metric_id int2, value float8,
quality int2)``: a fixed 44 bytes, so a numpy structured dtype with big-endian fields
describes it exactly and filling its columns is the whole encoding. ``timestamptz``
is an int64 of microseconds since 2000-01-01 00:00 UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

READING_COLUMNS = ("ts", "device_id", "metric_id", "value", "quality")

SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
HEADER = SIGNATURE + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"  # flags 0, no extension
TRAILER = b"\xff\xff"  # int16 -1
PG_EPOCH_US = 946_684_800 * 1_000_000  # 2000-01-01T00:00Z as POSIX microseconds [us]

# PostgreSQL's timestamptz range (4713-11-24 BC .. 294276-12-31 AD), as POSIX [us];
# its upper end lies beyond int64 POSIX microseconds, so every int64 above the lower
# end is storable.
PG_MIN_TS_US = -211_813_488_000_000_000 + PG_EPOCH_US
PG_MAX_TS_US = 2**63 - 1

ROW_DTYPE = np.dtype(
    [
        ("nfields", ">i2"),
        ("ts_len", ">i4"),
        ("ts", ">i8"),
        ("device_len", ">i4"),
        ("device_id", ">i2"),
        ("metric_len", ">i4"),
        ("metric_id", ">i2"),
        ("value_len", ">i4"),
        ("value", ">f8"),
        ("quality_len", ">i4"),
        ("quality", ">i2"),
    ]
)  # packed: itemsize 44, no padding
assert ROW_DTYPE.itemsize == 44

_LENGTHS = {
    "nfields": 5,
    "ts_len": 8,
    "device_len": 2,
    "metric_len": 2,
    "value_len": 8,
    "quality_len": 2,
}


def encode_readings(
    ts_us: NDArray[np.int64],
    device_id: NDArray[np.integer],
    metric_id: NDArray[np.integer],
    value: NDArray[np.float64],
    quality: NDArray[np.integer],
) -> bytearray:
    """Binary COPY data of rows ``(ts, device_id, metric_id, value, quality)``.

    ``ts_us`` is POSIX time [us]; it must lie in PostgreSQL's timestamptz range
    (:data:`PG_MIN_TS_US` .. :data:`PG_MAX_TS_US`) or the server rejects the COPY.
    Returns a ``bytearray``: pass it to asyncpg's ``copy_to_table(source=...)`` as is
    (a ``bytes`` object would be taken for a file name there).
    """
    return encode_rows(
        ROW_DTYPE,
        _LENGTHS,
        {
            "ts": ts_us - PG_EPOCH_US,
            "device_id": device_id,
            "metric_id": metric_id,
            "value": value,
            "quality": quality,
        },
    )


def copy_buffer(rows_bytes: int) -> bytearray:
    """Binary COPY data to fill: :data:`HEADER`, ``rows_bytes`` zero bytes for the rows
    (from offset ``len(HEADER)``), :data:`TRAILER`."""
    out = bytearray(len(HEADER) + rows_bytes + len(TRAILER))
    out[: len(HEADER)] = HEADER
    out[len(out) - len(TRAILER) :] = TRAILER
    return out


def encode_rows(
    dtype: np.dtype[np.void], lengths: Mapping[str, int], columns: Mapping[str, NDArray[Any]]
) -> bytearray:
    """Binary COPY data of rows laid out as the packed big-endian ``dtype``: each field
    preceded by its length field (``lengths``: the field count ``nfields`` and every
    ``<column>_len``), filled from ``columns`` (equal-length arrays; times already
    relative to :data:`PG_EPOCH_US`), between :data:`HEADER` and :data:`TRAILER`."""
    n = int(next(iter(columns.values())).shape[0]) if columns else 0
    out = copy_buffer(n * dtype.itemsize)
    rows = np.frombuffer(out, dtype=dtype, count=n, offset=len(HEADER))
    for name, length in lengths.items():
        rows[name] = length
    for name, column in columns.items():
        rows[name] = column
    return out


def decode_readings(data: bytes | bytearray | memoryview) -> NDArray[np.void]:
    """Rows of binary COPY data in the :data:`ROW_DTYPE` layout (``ts`` still relative
    to 2000-01-01; add :data:`PG_EPOCH_US`). For tests and tools; raises
    :class:`ValueError` when the data is not exactly header, 44-byte rows of 5
    non-null fields of our lengths, and trailer."""
    buf = memoryview(data).cast("B")
    if bytes(buf[: len(SIGNATURE)]) != SIGNATURE:
        raise ValueError("not PostgreSQL binary COPY data (bad signature)")
    ext = int.from_bytes(buf[15:19], "big", signed=True)
    start = len(HEADER) + ext
    end = len(buf) - len(TRAILER)
    if bytes(buf[end:]) != TRAILER or (end - start) % ROW_DTYPE.itemsize:
        raise ValueError("binary COPY data is not whole rows of (ts, device, metric, value, q)")
    rows = np.frombuffer(
        buf, dtype=ROW_DTYPE, count=(end - start) // ROW_DTYPE.itemsize, offset=start
    )
    for name, length in _LENGTHS.items():
        if rows.size and not np.all(rows[name] == length):
            raise ValueError(f"binary COPY field {name} is not {length} in every row")
    return rows
