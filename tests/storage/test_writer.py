from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np
import pytest

from zerocarbon.batch import Quality, Reading, ReadingBatch, SeriesRegistry, datetime_to_us
from zerocarbon.config import SiteConfig
from zerocarbon.storage.copy_binary import PG_EPOCH_US, decode_readings
from zerocarbon.storage.database import open_pool, register_site
from zerocarbon.storage.writer import ReadingWriter, latest_rows

T0 = datetime(2026, 6, 21, 0, 0, tzinfo=UTC)


async def test_copy_and_latest_values(
    pg_url: str, pg_conn: asyncpg.Connection, demo_site: SiteConfig
) -> None:
    registry = await register_site(pg_conn, demo_site)
    series = SeriesRegistry.for_site(demo_site)
    pool = await open_pool(pg_url)
    try:
        writer = ReadingWriter(pool, registry, series)
        readings = [
            Reading(T0 + timedelta(seconds=i), "grid_meter", "energy_import_kwh", 1000.0 + i)
            for i in range(100)
        ]
        readings.append(Reading(T0, "battery", "state_of_charge_pct", 55.0, Quality.ESTIMATED))
        await writer.write_batch(ReadingBatch.from_readings(readings, series))
        # an older reading must not replace the latest value
        older = [Reading(T0 - timedelta(seconds=1), "grid_meter", "energy_import_kwh", 1.0)]
        await writer.write_batch(ReadingBatch.from_readings(older, series))
    finally:
        await pool.close()

    assert writer.stats.rows_written == 102
    count = await pg_conn.fetchval("SELECT count(*) FROM readings")
    assert count == 102
    row = await pg_conn.fetchrow(
        """SELECT l.ts, l.value FROM latest_values l JOIN devices d ON d.id = l.device_id
           JOIN metrics m ON m.id = l.metric_id
           WHERE d.key = 'grid_meter' AND m.name = 'energy_import_kwh'"""
    )
    assert row["value"] == 1099.0 and row["ts"] == T0 + timedelta(seconds=99)
    quality = await pg_conn.fetchval(
        "SELECT quality FROM readings r JOIN devices d ON d.id = r.device_id WHERE d.key='battery'"
    )
    assert quality == int(Quality.ESTIMATED)


async def test_stored_rows_equal_the_batch_in_every_column(
    pg_url: str, pg_conn: asyncpg.Connection, demo_site: SiteConfig
) -> None:
    """What PostgreSQL stored, read back as its own binary COPY output and decoded,
    equals the batch: microsecond times (before 2000 and before 1970 too), keys,
    float64 values bit for bit, quality."""
    registry = await register_site(pg_conn, demo_site)
    series = SeriesRegistry.for_site(demo_site)
    rng = np.random.default_rng(7)
    n = 5_000
    ids = np.array(
        [series.id(d.id, m) for d in demo_site.devices for m in ("active_power_kw", "voltage_v")],
        dtype=np.int32,
    )
    ts_us = datetime_to_us(T0) + rng.integers(-(10**15), 10**12, n)  # ~1994..2026, any us
    ts_us[:3] = [
        datetime_to_us(datetime(1, 1, 1, tzinfo=UTC)),
        datetime_to_us(datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)),
        datetime_to_us(datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)),
    ]
    values = rng.normal(0, 1e6, n)
    values[:4] = [-0.0, 5e-324, 1.7976931348623157e308, -123.456789012345678]
    batch = ReadingBatch.of(rng.choice(ids, n), ts_us, values, rng.integers(0, 3, n))
    pool = await open_pool(pg_url)
    try:
        await ReadingWriter(pool, registry, series).write_batch(batch)
    finally:
        await pool.close()

    out = io.BytesIO()
    await pg_conn.copy_from_query(
        "SELECT ts, device_id, metric_id, value, quality FROM readings",
        output=out,
        format="binary",
    )
    stored = decode_readings(out.getvalue())
    assert stored.shape == (n,)
    key = np.lexsort((stored["value"].view(">i8"), stored["ts"]))
    stored = stored[key]
    devices = np.array([registry.device_ids[d] for d in series.device_ids])
    expect_device = devices[series.device_index_of[batch.series]]
    expect_metric = series.metric_id_of[batch.series]
    order = np.lexsort((batch.value.astype(">f8").view(">i8"), batch.ts_us))
    np.testing.assert_array_equal(stored["ts"] + PG_EPOCH_US, batch.ts_us[order])
    np.testing.assert_array_equal(stored["device_id"], expect_device[order])
    np.testing.assert_array_equal(stored["metric_id"], expect_metric[order])
    assert stored["value"].astype("<f8").tobytes() == batch.value[order].tobytes()
    np.testing.assert_array_equal(stored["quality"], batch.quality[order])
    # and through asyncpg's own decoding, for a few rows
    first = await pg_conn.fetchrow("SELECT ts, value FROM readings ORDER BY ts LIMIT 1")
    assert first["ts"] == datetime(1, 1, 1, tzinfo=UTC)


async def test_unknown_device_is_skipped_and_counted(
    pg_url: str, pg_conn: asyncpg.Connection, demo_site: SiteConfig
) -> None:
    registry = await register_site(pg_conn, demo_site)
    # the series registry knows a device the database does not (and an id beyond it)
    series = SeriesRegistry(["ghost", *(d.id for d in demo_site.devices)])
    pool = await open_pool(pg_url)
    try:
        writer = ReadingWriter(pool, registry, series)
        batch = ReadingBatch.from_readings(
            [
                Reading(T0, "ghost", "active_power_kw", 1.0),
                Reading(T0, "battery", "active_power_kw", 2.0),
            ],
            series,
        )
        await writer.write_batch(batch)
        await writer.write_batch(ReadingBatch.of([series.size + 3], [datetime_to_us(T0)], [3.0]))
    finally:
        await pool.close()
    assert writer.stats.unknown_series == 2
    assert await pg_conn.fetchval("SELECT count(*) FROM readings") == 1


async def test_a_failed_write_raises_and_keeps_nothing(
    pg_url: str, pg_conn: asyncpg.Connection, demo_site: SiteConfig
) -> None:
    """The writer holds no rows of its own: a failure is the caller's (the spool's) to
    retry, and the next write stores only what it is given."""
    registry = await register_site(pg_conn, demo_site)
    series = SeriesRegistry.for_site(demo_site)
    pool = await open_pool(pg_url)
    writer = ReadingWriter(pool, registry, series)
    power = series.id("battery", "active_power_kw")
    await pg_conn.execute("ALTER TABLE readings RENAME TO readings_away")
    try:
        with pytest.raises(asyncpg.UndefinedTableError):
            await writer.store(ReadingBatch.of([power], [datetime_to_us(T0)], [1.0]))
        assert writer.stats.failures == 1 and writer.stats.rows_written == 0
    finally:
        await pg_conn.execute("ALTER TABLE readings_away RENAME TO readings")
    assert await writer.store(ReadingBatch.of([power], [datetime_to_us(T0) + 1], [2.0])) == 1
    await pool.close()
    assert writer.stats.rows_written == 1
    assert await pg_conn.fetchval("SELECT count(*) FROM readings") == 1


def test_latest_rows_one_per_series_newest_later_row_wins_ties() -> None:
    series = np.array([5, 3, 5, 3, 9, 5], dtype=np.int32)
    ts_us = np.array([10, 20, 30, 20, 1, 30], dtype=np.int64)
    assert latest_rows(series, ts_us).tolist() == [3, 5, 4]
    assert latest_rows(series[:0], ts_us[:0]).tolist() == []


async def test_devices_dropped_from_the_site_are_marked_inactive(
    pg_conn: asyncpg.Connection, demo_site: SiteConfig
) -> None:
    await register_site(pg_conn, demo_site)
    smaller = demo_site.model_copy(
        update={"devices": tuple(d for d in demo_site.devices if d.id != "line_b")}
    )
    registry = await register_site(pg_conn, smaller)
    assert "line_b" not in registry.device_ids
    rows = dict(await pg_conn.fetch("SELECT key, active FROM devices"))
    assert rows["line_b"] is False and rows["line_a"] is True
    await register_site(pg_conn, demo_site)  # back in the file: active again
    assert await pg_conn.fetchval("SELECT active FROM devices WHERE key = 'line_b'") is True


async def test_a_reading_delivered_twice_is_stored_once(
    pg_url: str, pg_conn: asyncpg.Connection, demo_site: SiteConfig
) -> None:
    """Redelivery (QoS 1), replay or a collector restart: the same readings again, alone,
    mixed with new ones, or twice in one batch, are stored once; the rest is counted."""
    registry = await register_site(pg_conn, demo_site)
    series = SeriesRegistry.for_site(demo_site)

    def grid(seconds: range) -> ReadingBatch:
        return ReadingBatch.from_readings(
            [
                Reading(T0 + timedelta(seconds=i), "grid_meter", "energy_import_kwh", 10.0 + i)
                for i in seconds
            ],
            series,
        )

    pool = await open_pool(pg_url)
    try:
        writer = ReadingWriter(pool, registry, series)
        await writer.write_batch(grid(range(0, 50)))  # new: the COPY path
        await writer.write_batch(grid(range(0, 50)))  # all again
        await writer.write_batch(grid(range(25, 75)))  # half again, half new
        twice = ReadingBatch.concat([grid(range(75, 80)), grid(range(75, 80))])
        await writer.write_batch(twice)  # the same reading twice in one batch
    finally:
        await pool.close()
    stored = await pg_conn.fetch("SELECT ts, value FROM readings ORDER BY ts")
    assert [r["ts"] for r in stored] == [T0 + timedelta(seconds=i) for i in range(80)]
    assert [r["value"] for r in stored] == [10.0 + i for i in range(80)]
    assert writer.stats.rows_written == 80
    assert writer.stats.duplicates_skipped == 50 + 25 + 5
    assert writer.stats.replayed_batches == 3
    assert writer.stats.failures == 0


async def test_upgrade_keeps_one_of_each_duplicate(pg_server_url: str) -> None:
    """A version-2 database (readings stored twice, no unique index) upgraded to 3:
    one row per (series, time) is kept and the unique index is in place."""
    import secrets

    from zerocarbon.storage.database import create_schema, drop_database, ensure_database

    name = f"zc_upgrade_{secrets.token_hex(3)}"
    url = await ensure_database(pg_server_url, name)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            """CREATE TABLE schema_info (version integer NOT NULL);
               INSERT INTO schema_info VALUES (2);
               CREATE TABLE readings (ts timestamptz NOT NULL, device_id smallint NOT NULL,
                   metric_id smallint NOT NULL, value double precision NOT NULL,
                   quality smallint NOT NULL DEFAULT 0);
               CREATE INDEX readings_series_ts ON readings (device_id, metric_id, ts);
               INSERT INTO readings VALUES ('2026-06-21T00:00Z', 1, 2, 5.0, 0),
                   ('2026-06-21T00:00Z', 1, 2, 5.0, 0), ('2026-06-21T00:01Z', 1, 2, 6.0, 0)"""
        )
        await create_schema(conn)
        assert await conn.fetchval("SELECT count(*) FROM readings") == 2
        assert await conn.fetchval("SELECT max(version) FROM schema_info") == 3
        indexes = await conn.fetch("SELECT indexname FROM pg_indexes WHERE tablename = 'readings'")
        assert {r["indexname"] for r in indexes} == {"readings_series_ts_key"}
        with_dup = "INSERT INTO readings VALUES ('2026-06-21T00:01Z', 1, 2, 6.0, 0)"
        try:
            await conn.execute(with_dup)
            raise AssertionError("the unique index let a duplicate in")
        except asyncpg.UniqueViolationError:
            pass
    finally:
        await conn.close()
        await drop_database(pg_server_url, name)
