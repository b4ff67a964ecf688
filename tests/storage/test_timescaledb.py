"""The TimescaleDB layout: hypertable, chunk interval, compression and retention
policies, late readings into a compressed chunk stored once, the rollups, and the same
API answer as on plain PostgreSQL.

Runs on ``ZEROCARBON_TEST_TIMESCALEDB_URL`` (a server with the extension preloaded,
``shared_preload_libraries = 'timescaledb'``) when set, else on a server of its own
started from an installed PostgreSQL that has the extension (``pg_config``); skipped,
with the reason, when there is neither. The policies' jobs
are unscheduled in each test database, so that nothing runs behind the tests' back.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import asyncpg
import httpx
import numpy as np
import pytest

from zerocarbon.api.app import create_app
from zerocarbon.batch import ReadingBatch, SeriesRegistry, datetime_to_us
from zerocarbon.config import SiteConfig, StorageConfig
from zerocarbon.settings import Settings
from zerocarbon.storage.database import (
    create_schema,
    drop_database,
    ensure_database,
    open_pool,
    register_site,
)
from zerocarbon.storage.maintenance import StorageMaintenance
from zerocarbon.storage.partitions import open_layout
from zerocarbon.storage.status import describe, storage_status
from zerocarbon.storage.timescale import (
    Hypertable,
    apply_policies,
    chunk_interval,
    hypertable_info,
    memory_budget,
)
from zerocarbon.storage.writer import ReadingWriter

from ..ingest.clocks import ManualClock
from .test_migrations import _legacy_v3

NOW = datetime(2026, 6, 30, 12, tzinfo=UTC)
OLD_DAY = datetime(2026, 6, 10, tzinfo=UTC)  # compressed by the policy's age (7 days)


async def _new_database(server_url: str) -> str:
    return await ensure_database(server_url, f"zc_tsdb_{secrets.token_hex(4)}")


async def _unschedule(conn: asyncpg.Connection) -> None:
    await conn.execute(
        "SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs "
        "WHERE hypertable_name IS NOT NULL"
    )


@pytest.fixture
async def tsdb(ts_server_url: str) -> AsyncIterator[str]:
    """A database with the TimescaleDB layout; retention 60 days, chunks of a day."""
    url = await _new_database(ts_server_url)
    conn = await asyncpg.connect(url)
    try:
        await create_schema(conn, StorageConfig(retention_days=60, chunk_interval_h=24))
        await _unschedule(conn)
    finally:
        await conn.close()
    yield url
    await drop_database(ts_server_url, urlsplit(url).path.lstrip("/"))


@pytest.fixture
async def conn(tsdb: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(tsdb)
    yield c
    await c.close()


async def test_readings_is_a_hypertable_with_its_policies(conn: asyncpg.Connection) -> None:
    info = await hypertable_info(conn)
    assert info.version.startswith("2.")
    assert info.chunk_interval == timedelta(days=1)
    assert info.compress_after == timedelta(days=7)
    assert info.drop_after == timedelta(days=60)
    settings = await conn.fetch(
        "SELECT segmentby, orderby FROM timescaledb_information.hypertable_compression_settings "
        "WHERE hypertable = 'readings'::regclass"
    )
    assert [(s["segmentby"], s["orderby"]) for s in settings] == [("device_id,metric_id", "ts")]
    assert isinstance(await open_layout(conn, StorageConfig()), Hypertable)
    lines = describe(await storage_status(conn), StorageConfig())
    assert any(line.startswith("layout: timescaledb 2.") for line in lines)
    assert "compression policy: after 7 days" in lines and "retention policy: 60 days" in lines


async def test_policies_follow_the_site_file(conn: asyncpg.Connection) -> None:
    changed = StorageConfig(retention_days=None, compress_after_days=3, chunk_interval_h=6)
    changes = await apply_policies(conn, changed, timedelta(hours=6))
    assert len(changes) == 3
    info = await hypertable_info(conn)
    assert (info.chunk_interval, info.compress_after, info.drop_after) == (
        timedelta(hours=6),
        timedelta(days=3),
        None,
    )
    assert await apply_policies(conn, changed, timedelta(hours=6)) == []


async def test_the_chunk_interval_follows_the_ingest_rate(ts_server_url: str) -> None:
    """Without chunk_interval_h: the longest step whose rows and index fit in
    shared_buffers (a quarter of the memory on a tuned server)."""
    url = await _new_database(ts_server_url)
    conn = await asyncpg.connect(url)
    try:
        rows_per_day = 40_000_000.0
        await create_schema(conn, StorageConfig(), rows_per_day=rows_per_day)
        await _unschedule(conn)
        expected = chunk_interval(rows_per_day, await memory_budget(conn))
        assert (await hypertable_info(conn)).chunk_interval == expected < timedelta(days=7)
    finally:
        await conn.close()
        await drop_database(ts_server_url, urlsplit(url).path.lstrip("/"))


async def test_a_version_3_database_becomes_a_hypertable_with_its_rows(
    ts_server_url: str, demo_site: SiteConfig
) -> None:
    url = await _new_database(ts_server_url)
    conn = await asyncpg.connect(url)
    try:
        count = await _legacy_v3(conn, demo_site)
        await create_schema(conn, StorageConfig())
        await _unschedule(conn)
        assert await conn.fetchval("SELECT count(*) FROM readings") == count
        assert (await hypertable_info(conn)).chunks >= 1
        assert await conn.fetchval("SELECT sum(samples) FROM power_1min") == count // 2
    finally:
        await conn.close()
        await drop_database(ts_server_url, urlsplit(url).path.lstrip("/"))


def _pv_batch(series: SeriesRegistry, times: list[datetime], value: float) -> ReadingBatch:
    sid = series.id("pv_roof", "active_power_kw")
    return ReadingBatch.of(
        np.full(len(times), sid, np.int32),
        np.array([datetime_to_us(t) for t in times], np.int64),
        np.full(len(times), value),
    )


async def test_a_compressed_chunk_takes_late_rows_once(
    tsdb: str, conn: asyncpg.Connection, demo_site: SiteConfig
) -> None:
    """A replay into a compressed chunk: the binary COPY meets the unique index and
    fails as on any chunk; the staging table with ON CONFLICT DO NOTHING stores the new
    rows only. A batch of new rows alone goes in by COPY."""
    registry = await register_site(conn, demo_site)
    series = SeriesRegistry.for_site(demo_site)
    pool = await open_pool(tsdb)
    layout = await open_layout(conn, StorageConfig())
    writer = ReadingWriter(pool, registry, series, layout=layout)
    first = [OLD_DAY + timedelta(minutes=k) for k in range(0, 600, 2)]
    try:
        assert await writer.store(_pv_batch(series, first, 1.0)) == len(first)
        compressed = await conn.fetch(
            "SELECT compress_chunk(c) "
            "FROM show_chunks('readings', older_than => $1::timestamptz) c",
            NOW - timedelta(days=7),
        )
        assert len(compressed) == 1
        assert (await hypertable_info(conn)).compressed_chunks == 1
        # late: every stored reading again (changed values must not win) and new ones between
        late = [t + timedelta(minutes=1) for t in first]
        assert await writer.store(_pv_batch(series, first + late, 2.0)) == len(late)
        assert writer.stats.replayed_batches == 1
        assert writer.stats.duplicates_skipped == len(first)
        assert await writer.store(_pv_batch(series, first + late, 3.0)) == 0
        newer = [t + timedelta(seconds=30) for t in first]  # new rows only: the COPY path
        assert await writer.store(_pv_batch(series, newer, 4.0)) == len(newer)
        assert writer.stats.replayed_batches == 2
    finally:
        await pool.close()
    counts = await conn.fetch("SELECT value, count(*) FROM readings GROUP BY value ORDER BY value")
    assert [(r["value"], r["count"]) for r in counts] == [
        (1.0, len(first)),
        (2.0, len(late)),
        (4.0, len(newer)),
    ]


async def test_rollups_and_the_api_answer_as_on_plain_postgresql(
    tsdb: str, pg_server_url: str, demo_site: SiteConfig
) -> None:
    """The same readings, rolled up by the maintenance job on each layout, give the
    same rollup rows and the same API answer."""
    plain_url = await ensure_database(pg_server_url, f"zc_plain_{secrets.token_hex(4)}")
    answers = []
    try:
        for url, timescaledb in ((tsdb, None), (plain_url, False)):
            answers.append(await _rollup_and_ask(url, demo_site, timescaledb))
    finally:
        await drop_database(pg_server_url, urlsplit(plain_url).path.lstrip("/"))
    ts_rows, ts_api = answers[0]
    plain_rows, plain_api = answers[1]
    assert len(ts_rows) == len(plain_rows) > 0
    for a, b in zip(ts_rows, plain_rows, strict=True):
        assert a[:3] == b[:3] and a[4:] == b[4:]
        assert a[3] == pytest.approx(b[3], rel=1e-12)
    assert ts_api == plain_api


async def _rollup_and_ask(
    url: str, site: SiteConfig, timescaledb: bool | None
) -> tuple[list[tuple[object, ...]], list[dict[str, object]]]:
    conn = await asyncpg.connect(url)
    pool = await open_pool(url)
    try:
        await create_schema(conn, StorageConfig(), timescaledb=timescaledb)
        layout = await open_layout(conn, StorageConfig())
        assert isinstance(layout, Hypertable) == (timescaledb is None)
        registry = await register_site(conn, site)
        series = SeriesRegistry.for_site(site)
        maintenance = StorageMaintenance(pool, layout, ManualClock(NOW))
        writer = ReadingWriter(
            pool, registry, series, layout=layout, on_written=maintenance.note_times
        )
        rng = np.random.default_rng(11)
        t0 = datetime_to_us(NOW - timedelta(hours=3))
        sids = np.array(
            [series.id("pv_roof", "active_power_kw"), series.id("battery", "active_power_kw")],
            np.int32,
        )
        for k in range(3):
            ts = np.unique(
                rng.integers(t0 + k * 3_600_000_000, t0 + (k + 1) * 3_600_000_000, 3_000)
            )
            await writer.store(
                ReadingBatch.of(rng.choice(sids, ts.shape[0]), ts, rng.normal(80, 30, ts.shape[0]))
            )
        report = await maintenance.run_once(NOW)
        assert report.failed == ()
        rows = [
            tuple(r)
            for r in await conn.fetch(
                "SELECT bucket, device_id, metric_id, avg_value, min_value, max_value, samples "
                "FROM power_15min ORDER BY 1, 2, 3"
            )
        ]
        app = create_app(Settings(database_url=url, site_timezone="UTC"))
        answers = []
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://zc.test") as c:
                for step in ("1min", "15min"):
                    res = await c.get(
                        "/api/v1/devices/pv_roof/power",
                        params={
                            "step": step,
                            "start": "2026-06-30T09:00Z",
                            "end": "2026-06-30T12:00Z",
                        },
                    )
                    assert res.status_code == 200, res.text
                    answers.append(res.json())
        return rows, _rounded(answers)
    finally:
        await pool.close()
        await conn.close()


def _rounded(answers: list[dict[str, object]]) -> list[dict[str, object]]:
    """Averages to 12 significant digits (aggregation order differs by layout)."""
    out = []
    for a in answers:
        points = a["points"]
        assert isinstance(points, list)
        out.append({**a, "points": [{**p, "avg": float(f"{p['avg']:.12g}")} for p in points]})
    return out
