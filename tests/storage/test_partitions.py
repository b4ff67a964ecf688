"""Native daily partitions of ``readings``: made ahead, made on demand for a late batch
(and never failing it), the default partition drained, retention dropping whole days,
and queries answering as on an unpartitioned table."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np
import pytest

from zerocarbon.batch import MAX_TS_US, MIN_TS_US, ReadingBatch, SeriesRegistry, datetime_to_us
from zerocarbon.config import SiteConfig, StorageConfig
from zerocarbon.storage.database import (
    create_schema,
    drop_database,
    ensure_database,
    open_pool,
    register_site,
)
from zerocarbon.storage.partitions import (
    DAY_US,
    DailyPartitions,
    day_of,
    open_layout,
    partition_days,
    partition_name,
)
from zerocarbon.storage.writer import ReadingWriter

NOW = datetime(2030, 1, 10, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture
async def db(pg_server_url: str) -> AsyncIterator[str]:
    """A database of its own with the native layout (partitions are per database)."""
    name = f"zc_parts_{secrets.token_hex(4)}"
    url = await ensure_database(pg_server_url, name)
    conn = await asyncpg.connect(url)
    try:
        await create_schema(conn, timescaledb=False)
    finally:
        await conn.close()
    yield url
    await drop_database(pg_server_url, name)


@pytest.fixture
async def conn(db: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(db)
    yield c
    await c.close()


async def _layout(conn: asyncpg.Connection, **storage: int | None) -> DailyPartitions:
    layout = await open_layout(conn, StorageConfig(**storage))  # type: ignore[arg-type]
    assert isinstance(layout, DailyPartitions)
    return layout


async def _writer(
    db: str, conn: asyncpg.Connection, site: SiteConfig, layout: DailyPartitions | None
) -> tuple[ReadingWriter, asyncpg.Pool, SeriesRegistry]:
    registry = await register_site(conn, site)
    series = SeriesRegistry.for_site(site)
    pool = await open_pool(db)
    return ReadingWriter(pool, registry, series, layout=layout), pool, series


def _batch(series: SeriesRegistry, times: list[datetime], value: float = 1.0) -> ReadingBatch:
    sid = series.id("pv_roof", "active_power_kw")
    ts = np.array([datetime_to_us(t) for t in times], dtype=np.int64)
    return ReadingBatch.of(
        np.full(len(times), sid, np.int32), ts, np.full(len(times), value, np.float64)
    )


async def _placement(conn: asyncpg.Connection) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT tableoid::regclass::text AS part, count(*) FROM readings GROUP BY 1"
    )
    return {r["part"]: r["count"] for r in rows}


async def test_partitions_are_made_ahead(conn: asyncpg.Connection) -> None:
    layout = await _layout(conn, partitions_ahead_days=3)
    made = await layout.ensure_ahead(conn, NOW)
    assert made == [
        "readings_p20300110",
        "readings_p20300111",
        "readings_p20300112",
        "readings_p20300113",
    ]
    assert await layout.ensure_ahead(conn, NOW) == []
    assert await layout.ensure_ahead(conn, NOW + DAY) == ["readings_p20300114"]
    assert {partition_name(d) for d in await partition_days(conn)} >= set(made)


async def test_a_batch_for_a_far_past_day_gets_its_partition(
    db: str, conn: asyncpg.Connection, demo_site: SiteConfig
) -> None:
    layout = await _layout(conn)
    writer, pool, series = await _writer(db, conn, demo_site, layout)
    try:
        old = [
            datetime(1969, 7, 20, 20, 17, 40, tzinfo=UTC),
            datetime(1999, 12, 31, 23, 59, tzinfo=UTC),
        ]
        assert await writer.store(_batch(series, old)) == 2
        # stored again (a replay): the staging-table path, on partitions too
        assert await writer.store(_batch(series, [*old, old[1] + DAY])) == 1
    finally:
        await pool.close()
    assert await _placement(conn) == {
        "readings_p19690720": 1,
        "readings_p19991231": 1,
        "readings_p20000101": 1,
    }
    assert writer.stats.replayed_batches == 1 and writer.stats.duplicates_skipped == 2
    # the days between the two ends of a long batch were not made one by one
    assert len(layout.days) < 100


async def test_cover_of_known_days_does_not_ask_the_database(
    db: str, conn: asyncpg.Connection
) -> None:
    layout = await _layout(conn)
    t = datetime_to_us(NOW)
    await layout.cover(conn, t, t + DAY_US)
    closed = await asyncpg.connect(db)
    await closed.close()
    await layout.cover(closed, t, t + DAY_US)  # a closed connection would raise if used
    assert layout.created == 2


async def test_the_first_and_last_representable_days(conn: asyncpg.Connection) -> None:
    layout = await _layout(conn)
    await layout.cover(conn, MIN_TS_US, MIN_TS_US)
    await layout.cover(conn, MAX_TS_US, MAX_TS_US)
    assert {"readings_p00010101", "readings_p99991231"} <= {
        partition_name(d) for d in await partition_days(conn)
    }
    await conn.execute(
        "INSERT INTO readings VALUES ('0001-01-01 00:00:00+00', 1, 1, 1, 0), "
        "('9999-12-31 23:59:59.999999+00', 1, 1, 2, 0)"
    )
    assert await _placement(conn) == {"readings_p00010101": 1, "readings_p99991231": 1}


async def test_rows_of_the_default_partition_move_into_a_new_partition(
    db: str, conn: asyncpg.Connection, demo_site: SiteConfig
) -> None:
    """Written without cover (another tool, or making the partition failed): the rows
    wait in the default partition; making their day's partition moves them."""
    writer, pool, series = await _writer(db, conn, demo_site, None)
    day1, day2 = datetime(2020, 2, 29, 6, tzinfo=UTC), datetime(2020, 3, 2, 6, tzinfo=UTC)
    try:
        await writer.store(_batch(series, [day1, day1 + timedelta(hours=1), day2]))
    finally:
        await pool.close()
    assert await _placement(conn) == {"readings_default": 3}
    layout = await _layout(conn)
    await layout.cover(conn, datetime_to_us(day1), datetime_to_us(day1))
    assert await _placement(conn) == {"readings_default": 1, "readings_p20200229": 2}
    assert await layout.drain_default(conn) == 1
    assert await _placement(conn) == {"readings_p20200229": 2, "readings_p20200302": 1}
    assert layout.moved_rows == 3


async def test_a_partition_that_cannot_be_made_in_time_does_not_fail_the_batch(
    db: str, conn: asyncpg.Connection, demo_site: SiteConfig
) -> None:
    """A long query holding the default partition: making the partition gives up after
    the lock timeout, the batch is stored in the default partition, the failure is
    counted, and the next round moves the rows."""
    layout = DailyPartitions(await partition_days(conn), StorageConfig(), lock_timeout_ms=100)
    writer, pool, series = await _writer(db, conn, demo_site, layout)
    reader = await asyncpg.connect(db)
    late = datetime(2021, 5, 5, 5, tzinfo=UTC)
    try:
        reader_tx = reader.transaction()
        await reader_tx.start()
        await reader.fetch("SELECT * FROM readings_default LIMIT 1")  # holds ACCESS SHARE
        assert await writer.store(_batch(series, [late])) == 1
        await reader_tx.rollback()
    finally:
        await reader.close()
        await pool.close()
    assert await _placement(conn) == {"readings_default": 1}
    assert layout.problems.counts == {"partition": 1}
    assert await layout.drain_default(conn) == 1
    assert await _placement(conn) == {"readings_p20210505": 1}


async def test_retention_drops_whole_old_partitions_only(conn: asyncpg.Connection) -> None:
    layout = await _layout(conn, retention_days=5)
    days = [NOW - k * DAY for k in range(10, -1, -1)]  # NOW - 10 days .. NOW, at noon
    for t in days:
        await layout.cover(conn, datetime_to_us(t), datetime_to_us(t))
    await conn.executemany("INSERT INTO readings VALUES ($1, 1, 1, 1, 0)", [(t,) for t in days])
    # old rows waiting in the default partition: those of a day wholly expired go too
    await conn.execute("INSERT INTO readings VALUES ('2000-01-01T00:00Z', 1, 1, 1, 0)")
    await conn.execute("INSERT INTO readings VALUES ('2030-01-20T00:00Z', 1, 1, 1, 0)")
    before = await partition_days(conn)
    dropped = await layout.drop_expired(conn, NOW)
    # NOW - 5 days is noon of 2030-01-05: the days up to 2030-01-04 ended before it
    first_kept = day_of(datetime_to_us(datetime(2030, 1, 5, tzinfo=UTC)))
    assert dropped == [partition_name(d) for d in sorted(before) if d < first_kept]
    assert dropped[-5:] == [
        f"readings_p{d}" for d in ("20291231", *(f"2030010{k}" for k in range(1, 5)))
    ]
    remaining = await _placement(conn)
    assert remaining.pop("readings_default") == 1  # the future row, not the one of 2000
    assert remaining == {f"readings_p203001{d:02d}": 1 for d in range(5, 11)}
    assert await layout.drop_expired(conn, NOW) == []
    assert day_of(datetime_to_us(NOW - 5 * DAY)) in layout.days


async def test_queries_answer_as_on_an_unpartitioned_table(
    db: str, conn: asyncpg.Connection, demo_site: SiteConfig
) -> None:
    layout = await _layout(conn)
    writer, pool, series = await _writer(db, conn, demo_site, layout)
    rng = np.random.default_rng(7)
    t0 = datetime_to_us(datetime(2025, 3, 29, tzinfo=UTC))
    sids = np.array(
        [series.id(d, m) for d in ("pv_roof", "grid_meter") for m in ("active_power_kw",
         "energy_import_kwh")],
        dtype=np.int32,
    )  # fmt: skip
    try:
        for k in range(5):
            ts = np.sort(
                rng.integers(t0 + k * 20 * 3_600_000_000, t0 + (k + 1) * 20 * 3_600_000_000, 2_000)
            )
            batch = ReadingBatch.of(
                rng.choice(sids, ts.shape[0]), ts, rng.normal(50, 20, ts.shape[0])
            )
            await writer.store(batch)
    finally:
        await pool.close()
    await conn.execute("INSERT INTO readings VALUES ('2025-04-20T01:02:03Z', 1, 1, 3.5, 0)")
    await conn.execute(
        "CREATE TABLE readings_plain AS SELECT * FROM readings;"
        "CREATE UNIQUE INDEX ON readings_plain (device_id, metric_id, ts)"
    )
    queries = [
        "SELECT count(*), sum(value), min(ts), max(ts) FROM {t}",
        "SELECT device_id, metric_id, date_trunc('hour', ts) h, avg(value), count(*) FROM {t} "
        "WHERE ts >= '2025-03-30T07:30Z' AND ts < '2025-04-01T00:00Z' "
        "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        "SELECT ts, value FROM {t} WHERE device_id = 1 AND metric_id = 1 "
        "AND ts < '2025-03-31T12:00Z' ORDER BY ts DESC LIMIT 1",
        "SELECT ts, value FROM {t} WHERE device_id = 1 AND metric_id = 1 "
        "AND ts >= '2025-03-31T12:00Z' ORDER BY ts LIMIT 1",
        "SELECT * FROM {t} ORDER BY device_id, metric_id, ts",
    ]
    for q in queries:
        assert await conn.fetch(q.format(t="readings")) == await conn.fetch(
            q.format(t="readings_plain")
        ), q
