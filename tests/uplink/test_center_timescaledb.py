"""The center's readings on TimescaleDB: ``site_reading_sets`` a compressed-capable
hypertable; new readings, redeliveries and merges into compressed chunks stored once;
a version 1 center (a row per reading, itself a compressed hypertable) regrouped.

Runs on the ``ts_server_url`` server (``tests/conftest.py``); skipped, with the
reason, where there is no PostgreSQL with TimescaleDB.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import asyncpg
import numpy as np
import pytest

from tests.uplink.test_center_store import expected_rows, stored_rows
from zerocarbon.batch import datetime_to_us
from zerocarbon.storage.database import drop_database, ensure_database, open_pool
from zerocarbon.uplink.center_schema import apply_center_policies, create_center_schema
from zerocarbon.uplink.center_store import CenterStore
from zerocarbon.uplink.messages import ReadingsMessage

T0 = datetime(2026, 3, 1, tzinfo=UTC)
RECEIVED = datetime(2026, 3, 10, tzinfo=UTC)
CATALOG = tuple((f"meter{d}", m) for d in range(4) for m in ("active_power_kw", "voltage_v"))


def polls(site: str, day: int, meters: range, *, value0: float = 0.0) -> ReadingsMessage:
    """Every meter of ``meters`` polled each minute of the first hour of ``day``; a
    meter's two metrics share the poll's ts (sets of 2)."""
    minutes = np.arange(60)
    rows = [(m, k, minute) for minute in minutes.tolist() for m in meters for k in range(2)]
    meter, metric, minute = (np.array(c) for c in zip(*rows, strict=True))
    ts = datetime_to_us(T0 + timedelta(days=day)) + minute * 60_000_000 + meter * 1_000
    return ReadingsMessage(
        site=site,
        catalog=CATALOG,
        series=(meter * 2 + metric).astype(np.uint16),
        ts_us=ts.astype(np.int64),
        value=value0 + meter * 10.0 + metric + minute / 100.0,
        quality=np.zeros(len(rows), dtype=np.uint8),
    )


@pytest.fixture
async def center(ts_server_url: str) -> AsyncIterator[str]:
    url = await ensure_database(ts_server_url, f"zc_center_tsdb_{secrets.token_hex(4)}")
    yield url
    await drop_database(ts_server_url, urlsplit(url).path.lstrip("/"))


async def compress_all(conn: asyncpg.Connection, table: str) -> int:
    chunks = await conn.fetch(f"SELECT show_chunks('{table}') AS c")
    for c in chunks:
        await conn.execute(f"SELECT compress_chunk('{c['c']}', if_not_compressed => true)")
    return len(chunks)


async def test_readings_into_compressed_chunks_are_stored_once(center: str) -> None:
    conn = await asyncpg.connect(center)
    pool = await open_pool(center, max_size=2)
    try:
        assert await create_center_schema(conn) is True
        settings = await conn.fetch(
            "SELECT attname, segmentby_column_index, orderby_column_index "
            "FROM timescaledb_information.compression_settings "
            "WHERE hypertable_name = 'site_reading_sets' ORDER BY attname"
        )
        assert [(r["attname"], r["segmentby_column_index"]) for r in settings] == [
            ("site_id", 1),
            ("ts", None),
        ]
        store = CenterStore(pool)
        first = [polls("plant-a", 0, range(2)), polls("plant-b", 1, range(4))]
        assert (await store.store(first, received_at=RECEIVED)).readings_stored == 720
        assert await compress_all(conn, "site_reading_sets") == 2

        # a redelivery into the compressed chunks: nothing new
        again = await store.store(first, received_at=RECEIVED)
        assert (again.readings_stored, again.duplicates) == (0, 720)
        # the other meters of plant-a's stored polls (new series at stored keys: a
        # merge into a compressed chunk), the stored meters again with other values
        # (kept as stored), and a new day
        more = [
            polls("plant-a", 0, range(4), value0=1_000.0),
            polls("plant-a", 2, range(1)),
        ]
        result = await store.store(more, received_at=RECEIVED)
        assert result.new_readings_by_site == {"plant-a": 240 + 120}
        assert await stored_rows(pool) == expected_rows([*first, *more])
        sites = await conn.fetch("SELECT site, readings FROM sites ORDER BY site")
        assert [(r["site"], r["readings"]) for r in sites] == [
            ("plant-a", 240 + 240 + 120),
            ("plant-b", 480),
        ]
    finally:
        await pool.close()
        await conn.close()


async def test_a_version_1_hypertable_is_regrouped_into_sets(center: str) -> None:
    conn = await asyncpg.connect(center)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        await conn.execute(
            """
CREATE TABLE center_migrations (
    version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
INSERT INTO center_migrations (version) VALUES (1);
CREATE TABLE site_readings (
    site_id integer NOT NULL, series_id integer NOT NULL, ts timestamptz NOT NULL,
    value double precision NOT NULL, quality smallint NOT NULL DEFAULT 0,
    PRIMARY KEY (ts, site_id, series_id));
SELECT create_hypertable('site_readings', by_range('ts', interval '1 day'));
ALTER TABLE site_readings SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'site_id, series_id',
    timescaledb.compress_orderby = 'ts');
INSERT INTO site_readings
SELECT 1 + g % 3, 10 + g % 7, '2026-01-01Z'::timestamptz + (g / 21) * interval '1 min',
       g * 0.5, g % 2
FROM generate_series(0, 62999) AS g;
"""
        )
        assert await compress_all(conn, "site_readings") == 3
        query = "SELECT site_id, series_id, ts, value, quality FROM site_readings ORDER BY 1, 2, 3"
        before = [tuple(r) for r in await conn.fetch(query)]

        assert await create_center_schema(conn) is True
        assert [tuple(r) for r in await conn.fetch(query)] == before
        assert len(before) == 63_000
        assert (
            await conn.fetchval("SELECT count(*) FROM site_reading_sets") == 9_000
        )  # 3 sites x 3,000 ts
        assert await conn.fetchval("SELECT to_regclass('site_readings_v1')") is None
    finally:
        await conn.close()


async def policies(conn: asyncpg.Connection) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT proc_name, config FROM timescaledb_information.jobs "
        "WHERE hypertable_name = 'site_reading_sets'"
    )
    out: dict[str, str] = {}
    for r in rows:
        config = json.loads(r["config"])
        out[r["proc_name"]] = config.get("compress_after") or config.get("drop_after")
    return out


async def test_the_center_files_policies_are_applied_and_changed(center: str) -> None:
    conn = await asyncpg.connect(center)
    try:
        assert await create_center_schema(conn) is True
        changes = await apply_center_policies(conn, compress_after_days=7, retention_days=400)
        assert len(changes) == 2
        assert await policies(conn) == {
            "policy_compression": "7 days",
            "policy_retention": "400 days",
        }
        # the same file again changes nothing; a new one replaces or removes them
        assert await apply_center_policies(conn, compress_after_days=7, retention_days=400) == []
        changes = await apply_center_policies(conn, compress_after_days=3, retention_days=None)
        assert changes == [
            "site_reading_sets compression after 7 days -> 3 days",
            "site_reading_sets retention after 400 days -> none",
        ]
        assert await policies(conn) == {"policy_compression": "3 days"}
    finally:
        await conn.close()
