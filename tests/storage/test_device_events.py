"""Device events kept in ``device_events``: queued without blocking, written in order,
kept while the database is away, bounded, and served newest first."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest

from zerocarbon.config import SiteConfig
from zerocarbon.ingest.events import DeviceEvent, DeviceEventKind
from zerocarbon.storage import device_events as events_module
from zerocarbon.storage.database import register_site
from zerocarbon.storage.device_events import DeviceEventLog, device_events

T0_US = int(datetime(2026, 5, 1, 8, 0, tzinfo=UTC).timestamp() * 1_000_000)


def event(
    k: int, device: str = "grid_meter", kind: DeviceEventKind = DeviceEventKind.OFFLINE
) -> DeviceEvent:
    return DeviceEvent(T0_US + k * 1_000_000, device, kind, f"timeout #{k}")


async def test_events_are_stored_and_served_newest_first(
    pg_url: str, pg_conn: asyncpg.Connection, demo_site: SiteConfig
) -> None:
    registry = await register_site(pg_conn, demo_site)
    pool = await asyncpg.create_pool(pg_url, min_size=1, max_size=2)
    try:
        events = DeviceEventLog(pool, registry.device_ids)
        events.record(event(0))
        events.record(event(1, kind=DeviceEventKind.ONLINE))
        events.record(event(2, device="pv_roof", kind=DeviceEventKind.TORN_READ))
        assert (events.recorded, events.pending, events.stored) == (3, 3, 0)
        await events.flush()
        assert (events.pending, events.stored) == (0, 3)
        rows = await device_events(pool, "grid_meter")
        assert [(r.kind, r.detail) for r in rows] == [
            ("online", "timeout #1"),
            ("offline", "timeout #0"),
        ]
        assert rows[0].ts == datetime(2026, 5, 1, 8, 0, 1, tzinfo=UTC)
        windowed = await device_events(
            pool, "grid_meter", since=datetime(2026, 5, 1, 8, 0, 1, tzinfo=UTC)
        )
        assert [r.kind for r in windowed] == ["online"]
        assert [r.kind for r in await device_events(pool, "pv_roof")] == ["torn_read"]
    finally:
        await pool.close()


async def test_unknown_device_and_full_queue_are_dropped_and_counted(
    pg_url: str, pg_conn: asyncpg.Connection, demo_site: SiteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = await register_site(pg_conn, demo_site)
    monkeypatch.setattr(events_module, "MAX_PENDING_EVENTS", 3)
    pool = await asyncpg.create_pool(pg_url, min_size=1, max_size=1)
    try:
        events = DeviceEventLog(pool, registry.device_ids)
        events.record(event(0, device="no_such_meter"))
        for k in range(5):
            events.record(event(k))
        assert (events.recorded, events.dropped, events.pending) == (3, 3, 3)
        await events.flush()
        # the oldest are kept: they say when the trouble began
        assert [r.detail for r in await device_events(pool, "grid_meter")] == [
            "timeout #2",
            "timeout #1",
            "timeout #0",
        ]
    finally:
        await pool.close()


async def test_events_wait_while_the_database_is_away(
    pg_url: str, pg_conn: asyncpg.Connection, demo_site: SiteConfig
) -> None:
    registry = await register_site(pg_conn, demo_site)
    closed = await asyncpg.create_pool(pg_url, min_size=1, max_size=1)
    await closed.close()
    events = DeviceEventLog(closed, registry.device_ids)
    events.record(event(0))
    with pytest.raises(asyncpg.InterfaceError):
        await events.flush()
    assert (events.pending, events.stored) == (1, 0)
    pool = await asyncpg.create_pool(pg_url, min_size=1, max_size=1)
    try:
        events._pool = pool  # the database is back
        await events.flush()
        assert [r.detail for r in await device_events(pool, "grid_meter")] == ["timeout #0"]
    finally:
        await pool.close()
