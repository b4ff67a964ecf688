from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from zerocarbon.config import SiteConfig
from zerocarbon.ingest.reading import Quality, Reading
from zerocarbon.storage.database import open_pool, register_site
from zerocarbon.storage.writer import ReadingWriter

T0 = datetime(2026, 6, 21, 0, 0, tzinfo=UTC)


async def test_copy_and_latest_values(
    pg_url: str, pg_conn: asyncpg.Connection, demo_site: SiteConfig
) -> None:
    registry = await register_site(pg_conn, demo_site)
    pool = await open_pool(pg_url)
    try:
        writer = ReadingWriter(pool, registry)
        readings = [
            Reading(T0 + timedelta(seconds=i), "grid_meter", "energy_import_kwh", 1000.0 + i)
            for i in range(100)
        ]
        readings.append(Reading(T0, "battery", "state_of_charge_pct", 55.0, Quality.ESTIMATED))
        await writer.write_batch(readings)
        # an older reading must not replace the latest value
        await writer.write_batch([Reading(T0, "grid_meter", "energy_import_kwh", 1.0)])
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


async def test_unknown_device_is_skipped_and_counted(
    pg_url: str, pg_conn: asyncpg.Connection, demo_site: SiteConfig
) -> None:
    registry = await register_site(pg_conn, demo_site)
    pool = await open_pool(pg_url)
    try:
        writer = ReadingWriter(pool, registry)
        await writer.write_batch(
            [
                Reading(T0, "ghost", "active_power_kw", 1.0),
                Reading(T0, "battery", "active_power_kw", 2.0),
            ]
        )
    finally:
        await pool.close()
    assert writer.stats.unknown_series == 1
    assert await pg_conn.fetchval("SELECT count(*) FROM readings") == 1


async def test_database_down_keeps_batch_for_retry(
    pg_url: str, pg_conn: asyncpg.Connection, demo_site: SiteConfig
) -> None:
    registry = await register_site(pg_conn, demo_site)
    pool = await open_pool(pg_url)
    writer = ReadingWriter(pool, registry)
    await pg_conn.execute("ALTER TABLE readings RENAME TO readings_away")
    try:
        await writer.write_batch([Reading(T0, "battery", "active_power_kw", 1.0)])
        assert writer.stats.failures == 1 and writer.stats.rows_written == 0
    finally:
        await pg_conn.execute("ALTER TABLE readings_away RENAME TO readings")
    await writer.write_batch([Reading(T0, "battery", "active_power_kw", 2.0)])
    await pool.close()
    assert writer.stats.rows_written == 2
    assert await pg_conn.fetchval("SELECT count(*) FROM readings") == 2


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
