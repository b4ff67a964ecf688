"""The spool forwarder against a real PostgreSQL: order, outages, restarts, a full
spool, a batch the database refuses, a site file changed under a spool."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import numpy as np
import pytest

from zerocarbon.batch import ReadingBatch, SeriesRegistry, datetime_to_us
from zerocarbon.config import SiteConfig
from zerocarbon.storage.database import Registry, open_pool, register_site
from zerocarbon.storage.forwarder import SpoolForwarder
from zerocarbon.storage.spool import Spool
from zerocarbon.storage.spool_series import SpoolSeries
from zerocarbon.storage.writer import ReadingWriter

T0_US = datetime_to_us(datetime(2026, 6, 21, tzinfo=UTC))


@dataclass
class Rig:
    url: str
    server_url: str  # the server's maintenance database (to refuse connections to ours)
    conn: asyncpg.Connection
    pool: asyncpg.Pool
    registry: Registry
    series: SeriesRegistry
    power: int  # series id of battery/active_power_kw

    async def _admin(self, sql: str) -> None:
        name = await self.conn.fetchval("SELECT current_database()")
        admin = await asyncpg.connect(self.server_url)
        try:
            await admin.execute(sql.format(name=name))
        finally:
            await admin.close()

    async def database_away(self) -> None:
        """Refuse new connections and drop the pool's: the database is "down" (the
        test's own connection is kept, to look)."""
        await self._admin('ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        me = await self.conn.fetchval("SELECT pg_backend_pid()")
        await self.conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> $1",
            me,
        )

    async def database_back(self) -> None:
        await self._admin('ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')

    def batch(self, start: int, n: int) -> ReadingBatch:
        """``n`` power readings one second apart from second ``start``; value = index."""
        k = np.arange(start, start + n)
        return ReadingBatch.of([self.power] * n, (T0_US + k * 1_000_000).tolist(), k.tolist())

    async def stored_values(self) -> list[float]:
        rows = await self.conn.fetch("SELECT value FROM readings ORDER BY ts")
        return [r["value"] for r in rows]


@pytest.fixture
async def rig(
    pg_url: str, pg_server_url: str, pg_conn: asyncpg.Connection, demo_site: SiteConfig
) -> AsyncIterator[Rig]:
    registry = await register_site(pg_conn, demo_site)
    series = SeriesRegistry.for_site(demo_site)
    pool = await open_pool(pg_url)
    rig = Rig(
        pg_url,
        pg_server_url,
        pg_conn,
        pool,
        registry,
        series,
        series.id("battery", "active_power_kw"),
    )
    try:
        yield rig
    finally:
        await rig.database_back()
        pool.terminate()


def forwarder(rig: Rig, directory: Path, **spool_options: int) -> SpoolForwarder:
    spool = Spool(directory, fsync="never", **spool_options)  # type: ignore[arg-type]
    return SpoolForwarder(
        spool,
        ReadingWriter(rig.pool, rig.registry, rig.series),
        retry_min_s=0.01,
        retry_max_s=0.05,
        full_retry_s=0.01,
        poison_attempts=3,
    )


async def until(condition: object, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.01)


async def stop(fwd: SpoolForwarder, task: asyncio.Task[None]) -> None:
    fwd.request_stop()
    await asyncio.wait_for(task, 10)


async def test_forwards_in_order_and_hands_stored_batches_on(rig: Rig, tmp_path: Path) -> None:
    seen: list[float] = []

    async def consumer(batch: ReadingBatch) -> None:
        seen.extend(batch.value.tolist())

    fwd = forwarder(rig, tmp_path)
    fwd._consumers.append(consumer)
    task = asyncio.create_task(fwd.run())
    for k in range(5):
        await fwd.write_batch(rig.batch(10 * k, 10))
    await until(lambda: fwd.stats.readings_stored == 50)
    await stop(fwd, task)
    assert await rig.stored_values() == [float(v) for v in range(50)]
    assert seen == [float(v) for v in range(50)]
    assert fwd.stats.readings_acknowledged == 50 and fwd.spool.depth_records == 0


async def test_database_outage_spools_then_drains_logging_once_each_way(
    rig: Rig, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="zerocarbon.storage.forwarder")
    fwd = forwarder(rig, tmp_path)
    task = asyncio.create_task(fwd.run())
    await fwd.write_batch(rig.batch(0, 10))
    await until(lambda: fwd.stats.readings_stored == 10)
    await rig.database_away()
    for k in range(1, 6):
        await fwd.write_batch(rig.batch(10 * k, 10))
    await until(lambda: not fwd.database_up)
    await until(lambda: fwd.stats.write_failures >= 3)  # retried, still down
    health = fwd.health()
    assert not health.database_up and health.spool_depth_readings == 50
    assert health.oldest_unreplayed_age_s is not None and health.oldest_unreplayed_age_s >= 0
    await rig.database_back()
    await until(lambda: fwd.spool.depth_records == 0)
    await stop(fwd, task)
    assert await rig.stored_values() == [float(v) for v in range(60)]
    assert fwd.stats.outages == 1 and fwd.health().database_up
    down = [r for r in caplog.records if "database unavailable" in r.getMessage()]
    back = [r for r in caplog.records if "database back" in r.getMessage()]
    assert len(down) == 1 and "wait in the spool" in down[0].getMessage()
    assert len(back) == 1 and "forwarding" in back[0].getMessage()


async def test_a_spool_left_by_a_stopped_run_is_replayed_at_the_next(
    rig: Rig, tmp_path: Path
) -> None:
    first = forwarder(rig, tmp_path)
    task = asyncio.create_task(first.run())
    await rig.database_away()
    for k in range(4):
        await first.write_batch(rig.batch(10 * k, 10))
    await stop(first, task)  # the database is away: the rest stays spooled
    assert first.spool.depth_rows == 40
    first.spool.close()
    await rig.database_back()

    seen: list[ReadingBatch] = []

    async def consumer(batch: ReadingBatch) -> None:
        seen.append(batch)

    second = forwarder(rig, tmp_path)
    second._consumers.append(consumer)
    assert second.spool.depth_rows == 40
    task = asyncio.create_task(second.run())
    await second.write_batch(rig.batch(40, 10))
    await until(lambda: second.spool.depth_records == 0)
    await stop(second, task)
    assert await rig.stored_values() == [float(v) for v in range(50)]
    assert second.stats.replayed_readings == 40
    assert sum(len(b) for b in seen) == 50


async def test_a_replayed_batch_stored_before_the_crash_is_not_stored_twice(
    rig: Rig, tmp_path: Path
) -> None:
    """A crash between the database commit and the spool's commit: the next run
    forwards the record again and the writer skips what is there."""
    spool = Spool(tmp_path, fsync="never")
    spool.append(rig.batch(0, 10))
    spool.close()
    writer = ReadingWriter(rig.pool, rig.registry, rig.series)
    await writer.store(rig.batch(0, 10))  # stored, never committed in the spool
    fwd = forwarder(rig, tmp_path)
    task = asyncio.create_task(fwd.run())
    await until(lambda: fwd.spool.depth_records == 0)
    await stop(fwd, task)
    assert await rig.stored_values() == [float(v) for v in range(10)]
    assert fwd.stats.duplicates_skipped == 10 and fwd.stats.readings_stored == 0


async def test_a_full_spool_holds_collection_back_counted_until_there_is_room(
    rig: Rig, tmp_path: Path
) -> None:
    fwd = forwarder(rig, tmp_path, quota_bytes=4096, segment_bytes=1024)
    task = asyncio.create_task(fwd.run())
    await rig.database_away()
    written = 0
    blocked: asyncio.Task[None] | None = None
    for k in range(100):  # 20 readings (~460 bytes) a batch: the quota holds a few
        pending = asyncio.create_task(fwd.write_batch(rig.batch(20 * k, 20)))
        await asyncio.sleep(0.05)
        if not pending.done():
            blocked = pending
            break
        written += 20
    assert blocked is not None, "the spool never filled"
    health = fwd.health()
    assert health.spool_full and health.spool_alarm and fwd.stats.full_waits == 1
    await rig.database_back()
    await asyncio.wait_for(blocked, 10)
    await until(lambda: fwd.spool.depth_records == 0)
    await stop(fwd, task)
    assert await rig.stored_values() == [float(v) for v in range(written + 20)]
    assert not fwd.health().spool_full and fwd.stats.full_wait_s > 0


async def test_a_batch_the_database_refuses_is_set_aside_and_the_rest_flows(
    rig: Rig, tmp_path: Path
) -> None:
    await rig.conn.execute(
        "ALTER TABLE readings ADD CONSTRAINT plausible_value CHECK (value < 1e9) NOT VALID"
    )
    try:
        fwd = forwarder(rig, tmp_path)
        fwd._max_rows = 10  # one batch a write: the refused one alone
        task = asyncio.create_task(fwd.run())
        await fwd.write_batch(rig.batch(0, 10))
        bad = rig.batch(10, 10)
        bad.value[3] = 5e9
        await fwd.write_batch(bad)
        await fwd.write_batch(rig.batch(20, 10))
        await until(lambda: fwd.spool.depth_records == 0)
        await stop(fwd, task)
    finally:
        await rig.conn.execute("ALTER TABLE readings DROP CONSTRAINT plausible_value")
    assert await rig.stored_values() == [float(v) for v in [*range(10), *range(20, 30)]]
    assert fwd.stats.quarantined_readings == 10
    kept = list((tmp_path / "quarantine").glob("*.npz"))
    assert len(kept) == 1
    with np.load(kept[0]) as saved:
        assert saved["value"].tolist() == bad.value.tolist()
        assert "plausible_value" in str(saved["error"])


async def test_spooled_series_follow_a_changed_site_file_by_device_id(
    rig: Rig, tmp_path: Path, demo_site: SiteConfig
) -> None:
    """Readings spooled under one device order are stored under the same devices after
    the site file reordered them (and a removed device's are not given to another)."""
    old = SeriesRegistry(["pv_roof", "battery", "retired_meter"])
    spool = Spool(tmp_path, fsync="never")
    SpoolSeries(tmp_path, old, spool.last_seq + 1)
    old_power = old.id("battery", "active_power_kw")
    spool.append(ReadingBatch.of([old_power], [T0_US], [7.0]))
    spool.append(ReadingBatch.of([old.id("retired_meter", "active_power_kw")], [T0_US], [9.0]))
    spool.close()
    fwd = forwarder(rig, tmp_path)
    fwd._series = SpoolSeries(tmp_path, rig.series, fwd.spool.last_seq + 1)
    task = asyncio.create_task(fwd.run())
    await until(lambda: fwd.spool.depth_records == 0)
    await stop(fwd, task)
    rows = await rig.conn.fetch(
        "SELECT d.key, r.value FROM readings r JOIN devices d ON d.id = r.device_id"
    )
    assert [(r["key"], r["value"]) for r in rows] == [("battery", 7.0)]
    assert old_power != rig.power  # the ids did change
