"""The binary COPY encoder against PostgreSQL's own binary COPY output."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import asyncpg
import numpy as np
import pytest

from zerocarbon.batch import datetime_to_us
from zerocarbon.storage.copy_binary import (
    HEADER,
    PG_EPOCH_US,
    ROW_DTYPE,
    TRAILER,
    decode_readings,
    encode_readings,
)

COLUMNS = "ts timestamptz, device_id smallint, metric_id smallint, value float8, quality smallint"


def _rows(n: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(3)
    ts_us = datetime_to_us(datetime(2026, 6, 21, tzinfo=UTC)) + rng.integers(-(10**16), 10**14, n)
    ts_us[:2] = [PG_EPOCH_US, PG_EPOCH_US - 1]  # 2000-01-01 and one microsecond before it
    value = rng.normal(0, 1e3, n)
    value[:3] = [-0.0, np.inf, -1e-310]
    return (
        ts_us,
        rng.integers(-32768, 32768, n).astype(np.int16),
        rng.integers(0, 64, n).astype(np.int16),
        value,
        rng.integers(0, 3, n).astype(np.int8),
    )


async def test_encoding_is_byte_identical_to_postgresql_binary_copy(
    pg_conn: asyncpg.Connection,
) -> None:
    ts_us, device, metric, value, quality = _rows(2_000)
    data = encode_readings(ts_us, device, metric, value, quality)
    await pg_conn.execute(f"CREATE TEMP TABLE copy_check (i serial, {COLUMNS})")
    await pg_conn.copy_to_table(
        "copy_check",
        source=data,
        columns=("ts", "device_id", "metric_id", "value", "quality"),
        format="binary",
    )
    out = io.BytesIO()
    await pg_conn.copy_from_query(
        "SELECT ts, device_id, metric_id, value, quality FROM copy_check ORDER BY i",
        output=out,
        format="binary",
    )
    assert out.getvalue() == bytes(data)
    # and the same rows written by PostgreSQL from text, not from our bytes
    first = await pg_conn.fetchrow("SELECT * FROM copy_check ORDER BY i LIMIT 1")
    assert first["ts"] == datetime(2000, 1, 1, tzinfo=UTC)
    await pg_conn.execute("TRUNCATE copy_check")
    await pg_conn.execute(
        "INSERT INTO copy_check (ts, device_id, metric_id, value, quality) VALUES "
        "('1999-12-31 23:59:59.999999+00', -32768, 63, 'Infinity', 2)"
    )
    out = io.BytesIO()
    await pg_conn.copy_from_query(
        "SELECT ts, device_id, metric_id, value, quality FROM copy_check",
        output=out,
        format="binary",
    )
    expected = encode_readings(
        np.array([PG_EPOCH_US - 1]),
        np.array([-32768]),
        np.array([63]),
        np.array([np.inf]),
        np.array([2]),
    )
    assert out.getvalue() == bytes(expected)


def test_layout_header_rows_trailer() -> None:
    assert ROW_DTYPE.itemsize == 44
    data = encode_readings(
        *(np.array([], dtype=t) for t in (np.int64, np.int16, np.int16, np.float64, np.int8))
    )
    assert bytes(data) == HEADER + TRAILER
    ts_us, device, metric, value, quality = _rows(10)
    rows = decode_readings(encode_readings(ts_us, device, metric, value, quality))
    np.testing.assert_array_equal(rows["ts"] + PG_EPOCH_US, ts_us)
    np.testing.assert_array_equal(rows["device_id"], device)
    np.testing.assert_array_equal(rows["metric_id"], metric)
    assert rows["value"].astype("<f8").tobytes() == value.tobytes()
    np.testing.assert_array_equal(rows["quality"], quality)


def test_decoder_refuses_foreign_data() -> None:
    with pytest.raises(ValueError, match="signature"):
        decode_readings(b"COPY" + bytes(30))
    with pytest.raises(ValueError, match="whole rows"):
        decode_readings(HEADER + bytes(10) + TRAILER)
