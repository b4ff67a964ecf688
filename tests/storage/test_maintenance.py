"""The storage maintenance job: rollups equal a direct aggregate (late readings
included), a restart catches up, partitions ahead and retention by the round, the
database away or a step failing never ends the loop."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import asyncpg
import numpy as np
import pytest

from zerocarbon.batch import ReadingBatch, SeriesRegistry, datetime_to_us
from zerocarbon.config import SiteConfig, StorageConfig
from zerocarbon.storage.database import (
    create_schema,
    drop_database,
    ensure_database,
    open_pool,
    register_site,
)
from zerocarbon.storage.maintenance import MaintenanceReport, StorageMaintenance
from zerocarbon.storage.partitions import DailyPartitions, open_layout
from zerocarbon.storage.rollups import GAUGE_METRIC_IDS, VIEWS
from zerocarbon.storage.writer import ReadingWriter

from ..ingest.clocks import ManualClock

T0 = datetime(2026, 6, 21, 8, 0, tzinfo=UTC)
GAUGES = [("pv_roof", "active_power_kw"), ("battery", "state_of_charge_pct"),
          ("grid_meter", "active_power_kw")]  # fmt: skip
COUNTER = ("grid_meter", "energy_import_kwh")


@dataclass
class Site:
    url: str
    conn: asyncpg.Connection
    pool: asyncpg.Pool
    layout: DailyPartitions
    maintenance: StorageMaintenance
    writer: ReadingWriter
    series: SeriesRegistry
    clock: ManualClock


@pytest.fixture
async def db(pg_server_url: str) -> AsyncIterator[str]:
    name = f"zc_maint_{secrets.token_hex(4)}"
    url = await ensure_database(pg_server_url, name)
    conn = await asyncpg.connect(url)
    try:
        await create_schema(conn, timescaledb=False)
    finally:
        await conn.close()
    yield url
    await drop_database(pg_server_url, name)


async def _site(url: str, demo_site: SiteConfig, **storage: int | None) -> Site:
    """The runtime's wiring: one layout shared by writer and maintenance, the writer
    telling the maintenance what it wrote."""
    conn = await asyncpg.connect(url)
    layout = await open_layout(conn, StorageConfig(**storage))  # type: ignore[arg-type]
    assert isinstance(layout, DailyPartitions)
    registry = await register_site(conn, demo_site)
    series = SeriesRegistry.for_site(demo_site)
    pool = await open_pool(url)
    clock = ManualClock(T0 + timedelta(hours=1))
    maintenance = StorageMaintenance(pool, layout, clock, interval_s=60.0)
    writer = ReadingWriter(pool, registry, series, layout=layout, on_written=maintenance.note_times)
    return Site(url, conn, pool, layout, maintenance, writer, series, clock)


@pytest.fixture
async def site(db: str, demo_site: SiteConfig) -> AsyncIterator[Site]:
    s = await _site(db, demo_site)
    yield s
    await s.pool.close()
    await s.conn.close()


def _batch(
    series: SeriesRegistry, rng: np.random.Generator, start: datetime, minutes: float, n: int
) -> ReadingBatch:
    """``n`` readings at random times in ``minutes`` from ``start``, of the gauges and a
    counter (which the rollups leave out)."""
    sids = np.array([series.id(d, m) for d, m in (*GAUGES, COUNTER)], dtype=np.int32)
    t = datetime_to_us(start)
    ts = np.unique(rng.integers(t, t + int(minutes * 60e6), n))
    return ReadingBatch.of(rng.choice(sids, ts.shape[0]), ts, rng.normal(100, 40, ts.shape[0]))


async def _assert_rollups_equal_a_direct_aggregate(conn: asyncpg.Connection) -> None:
    for view in VIEWS.values():
        width = f"{int(view.width.total_seconds())} seconds"
        direct = await conn.fetch(
            f"""SELECT date_bin('{width}', ts, timestamptz '2000-01-01Z') AS bucket, device_id,
                       metric_id, avg(value) AS avg_value, min(value) AS min_value,
                       max(value) AS max_value, count(*) AS samples
                FROM readings WHERE metric_id = ANY($1::int2[])
                GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""",
            list(GAUGE_METRIC_IDS),
        )
        rolled = await conn.fetch(
            f"SELECT * FROM {view.table} ORDER BY bucket, device_id, metric_id"
        )
        assert len(rolled) == len(direct) > 0, view.table
        for a, b in zip(rolled, direct, strict=True):
            assert (a["bucket"], a["device_id"], a["metric_id"], a["samples"]) == (
                b["bucket"], b["device_id"], b["metric_id"], b["samples"]
            )  # fmt: skip
            assert (a["min_value"], a["max_value"]) == (b["min_value"], b["max_value"])
            assert a["avg_value"] == pytest.approx(b["avg_value"], rel=1e-12)


async def test_rollups_equal_a_direct_aggregate(site: Site) -> None:
    rng = np.random.default_rng(1)
    for k in range(3):
        await site.writer.store(_batch(site.series, rng, T0 + timedelta(minutes=17 * k), 17, 900))
    report = await site.maintenance.run_once(site.clock.now())
    assert report.failed == () and len(report.refreshed) == 1
    await _assert_rollups_equal_a_direct_aggregate(site.conn)
    assert (
        await site.conn.fetchval(
            "SELECT count(*) FROM power_1min WHERE metric_id = 2"  # the counter: left out
        )
        == 0
    )


async def test_late_readings_are_aggregated_again(site: Site) -> None:
    rng = np.random.default_rng(2)
    await site.writer.store(_batch(site.series, rng, T0, 45, 2_000))
    await site.maintenance.run_once(site.clock.now())
    # late: into minutes already rolled up, with values beyond their min and max
    sid = site.series.id("pv_roof", "active_power_kw")
    late = [T0 + timedelta(minutes=3, seconds=0.5), T0 + timedelta(minutes=31, seconds=7.25)]
    await site.writer.store(
        ReadingBatch.of(
            np.full(2, sid, np.int32),
            np.array([datetime_to_us(t) for t in late], np.int64),
            np.array([-1e6, 1e6]),
        )
    )
    # and a batch mixing live readings with one of long ago, noted by its times
    mixed = _batch(site.series, rng, T0 + timedelta(minutes=45), 5, 300)
    old = ReadingBatch.of(
        np.array([sid], np.int32),
        np.array([datetime_to_us(T0 - timedelta(hours=5))], np.int64),
        np.array([42.0]),
    )
    both = ReadingBatch.concat([mixed, old])
    await site.writer.store(both)
    site.maintenance.note_times(both.ts_us)
    report = await site.maintenance.run_once(site.clock.now())
    assert report.failed == ()
    await _assert_rollups_equal_a_direct_aggregate(site.conn)
    rows = await site.conn.fetch(
        "SELECT bucket, min_value, max_value FROM power_15min WHERE metric_id = 1 "
        "AND device_id = (SELECT id FROM devices WHERE key = 'pv_roof') ORDER BY bucket"
    )
    extremes = {r["bucket"]: (r["min_value"], r["max_value"]) for r in rows}
    assert extremes[T0][0] == -1e6 and extremes[T0 + timedelta(minutes=30)][1] == 1e6
    assert extremes[T0 - timedelta(hours=5)] == (42.0, 42.0)


async def test_a_restart_catches_up(db: str, demo_site: SiteConfig) -> None:
    """Readings written before a stop, never rolled up: the next process's first round
    rolls them up (from the last refresh on; everything when none happened)."""
    rng = np.random.default_rng(3)
    first = await _site(db, demo_site)
    try:
        await first.writer.store(_batch(first.series, rng, T0, 30, 1_000))  # then it stops
    finally:
        await first.pool.close()
        await first.conn.close()
    second = await _site(db, demo_site)
    try:
        await second.maintenance.run_once(second.clock.now())
        await _assert_rollups_equal_a_direct_aggregate(second.conn)
        await second.writer.store(_batch(second.series, rng, T0 + timedelta(minutes=30), 30, 800))
    finally:
        await second.pool.close()
        await second.conn.close()
    third = await _site(db, demo_site)
    try:
        report = await third.maintenance.run_once(third.clock.now())
        assert report.refreshed[0].start <= T0 + timedelta(minutes=30)
        await _assert_rollups_equal_a_direct_aggregate(third.conn)
    finally:
        await third.pool.close()
        await third.conn.close()


async def test_partitions_ahead_and_retention_by_the_round(db: str, demo_site: SiteConfig) -> None:
    s = await _site(db, demo_site, partitions_ahead_days=1, retention_days=2)
    try:
        day = timedelta(days=1)
        now = datetime(2031, 3, 10, 9, tzinfo=UTC)
        report = await s.maintenance.run_once(now)
        assert report.created == ("readings_p20310310", "readings_p20310311")
        report = await s.maintenance.run_once(now + 3 * day)
        assert report.created == ("readings_p20310313", "readings_p20310314")
        # 2031-03-10 ended more than 2 days before 2031-03-13 09:00, 2031-03-11 did not
        assert "readings_p20310310" in report.dropped
        assert "readings_p20310311" not in report.dropped
    finally:
        await s.pool.close()
        await s.conn.close()


async def _set_connections(server_url: str, database: str, allowed: bool) -> None:
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(allowed).lower()}')
        if not allowed:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                database,
            )
    finally:
        await admin.close()


async def test_the_database_away_is_retried_next_round(
    site: Site, pg_server_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    rng = np.random.default_rng(4)
    await site.writer.store(_batch(site.series, rng, T0, 20, 500))
    name = urlsplit(site.url).path.lstrip("/")
    await _set_connections(pg_server_url, name, allowed=False)
    try:
        with caplog.at_level(logging.INFO, logger="zerocarbon.storage.maintenance"):
            reports = [await site.maintenance.run_once(site.clock.now()) for _ in range(3)]
    finally:
        await _set_connections(pg_server_url, name, allowed=True)
    assert all(r.failed == ("connection",) for r in reports)
    assert site.maintenance.problems.counts == {"connection": 3}
    warnings = [r for r in caplog.records if r.name == "zerocarbon.storage.maintenance"]
    assert len(warnings) == 1 and "retried later" in warnings[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="zerocarbon.storage.maintenance"):
        report = await site.maintenance.run_once(site.clock.now())
    assert report.failed == () and report.refreshed  # what was noted was kept
    assert any("works again" in r.getMessage() for r in caplog.records)
    site.conn = await asyncpg.connect(site.url)  # the fixture's was terminated
    await _assert_rollups_equal_a_direct_aggregate(site.conn)


class _FailingRetention:
    """A layout whose retention fails (the others' steps must still run)."""

    def __init__(self, layout: DailyPartitions) -> None:
        self._layout = layout
        self.kind = layout.kind
        self.cover = layout.cover
        self.ensure_ahead = layout.ensure_ahead
        self.drain_default = layout.drain_default

    async def drop_expired(self, conn: asyncpg.Connection, now: datetime) -> list[str]:
        raise RuntimeError("retention broke")


async def test_a_failing_step_does_not_stop_the_others(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    maintenance = StorageMaintenance(site.pool, _FailingRetention(site.layout), site.clock)
    maintenance.note_written(datetime_to_us(T0), datetime_to_us(T0 + timedelta(minutes=5)))
    await site.writer.store(_batch(site.series, np.random.default_rng(5), T0, 5, 200))
    with caplog.at_level(logging.WARNING, logger="zerocarbon.storage.maintenance"):
        reports = [await maintenance.run_once(site.clock.now()) for _ in range(2)]
    assert [r.failed for r in reports] == [("retention",), ("retention",)]
    assert reports[0].refreshed and reports[0].created
    assert maintenance.problems.counts == {"retention": 2}
    logged = [r for r in caplog.records if r.name == "zerocarbon.storage.maintenance"]
    assert len(logged) == 1 and "retention broke" in logged[0].getMessage()


class _RoundClock(ManualClock):
    """Sleeps advance the clock; the third sleep waits until the test cancels."""

    def __init__(self, start: datetime) -> None:
        super().__init__(start)
        self.sleeps = 0
        self.third = asyncio.Event()

    async def sleep(self, interval_s: float) -> None:
        self.sleeps += 1
        self.advance(interval_s)
        if self.sleeps == 3:
            self.third.set()
            await asyncio.Event().wait()


async def test_run_rounds_on_the_injected_clock(site: Site) -> None:
    clock = _RoundClock(datetime(2032, 1, 1, 12, tzinfo=UTC))
    maintenance = StorageMaintenance(site.pool, site.layout, clock, interval_s=86_400)
    task = asyncio.create_task(maintenance.run())
    await asyncio.wait_for(clock.third.wait(), timeout=30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert maintenance.rounds == 3
    made = await site.conn.fetchval(
        "SELECT count(*) FROM pg_class WHERE relname LIKE 'readings_p2032010%' AND relkind = 'r'"
    )
    assert made == 3 + 3  # 1, 2 and 3 January, each with 3 days ahead (4 .. 6 January)


def test_report_defaults() -> None:
    report = MaintenanceReport(T0)
    assert report.failed == () and report.moved_rows == 0
