"""GET /api/v1/live: the event stream, against a real uvicorn server."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest
from pydantic import BaseModel

from zerocarbon.api.live import LiveSession, LiveStreams, live_events, site_day
from zerocarbon.api.schemas import LiveAlerts
from zerocarbon.settings import Settings
from zerocarbon.storage import alerts
from zerocarbon.storage.alerts import AlertChange

SITE_TZ = "Asia/Shanghai"  # as in the settings fixture
H = timedelta(hours=1)
# 2026-03-01 14:20:05 in Shanghai: the site's day is 2026-02-28T16:00Z .. 2026-03-01T16:00Z
NOW = datetime(2026, 3, 1, 6, 20, 5, tzinfo=UTC)
DAY_START = datetime(2026, 2, 28, 16, tzinfo=UTC)


async def sse(response: httpx.Response) -> AsyncIterator[tuple[str, Any]]:
    """(event, parsed data) of each message; comments as ("comment", text)."""
    event, data = "message", []
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith(":"):
            yield "comment", line[1:].strip()
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)


async def next_event(stream: AsyncIterator[tuple[str, Any]], wanted: str) -> Any:
    """The data of the next ``wanted`` event, skipping others (bounded wait)."""
    async with asyncio.timeout(5):
        async for event, data in stream:
            if event == wanted:
                return data
    raise AssertionError(f"stream ended before a {wanted!r} event")


@pytest.fixture
async def today(site_data: Any) -> Any:
    """Latest values at NOW, today's hours up to 14:00 local, and one row of yesterday."""
    await site_data.latest("grid_meter", "active_power_kw", NOW, 320.0)
    await site_data.latest("pv_roof", "active_power_kw", NOW - timedelta(seconds=5), 410.5)
    await site_data.latest("battery", "state_of_charge_pct", NOW, 64.0)
    old = datetime.now(UTC) - timedelta(minutes=5)
    await site_data.hourly(DAY_START - H, computed_at=old)  # yesterday 23:00 local
    for i in range(15):  # 00:00 .. 14:00 local
        await site_data.hourly(DAY_START + i * H, computed_at=old, grid_import_kwh=100.0 + i)
    return site_data


def test_site_day_handles_dst() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    start, end = site_day(datetime(2026, 3, 29, 12, tzinfo=UTC), berlin)  # spring forward
    assert (start, end - start) == (datetime(2026, 3, 28, 23, tzinfo=UTC), timedelta(hours=23))
    start, end = site_day(datetime(2026, 10, 25, 12, tzinfo=UTC), berlin)  # fall back
    assert end - start == timedelta(hours=25)
    assert site_day(NOW, ZoneInfo(SITE_TZ)) == (DAY_START, DAY_START + 24 * H)


async def test_snapshot_then_readings_and_hourly(
    settings: Settings, today: Any, serve: Any
) -> None:
    async with (
        serve(settings) as srv,
        httpx.AsyncClient(base_url=srv.url) as client,
        client.stream("GET", "/api/v1/live") as res,
    ):
        assert res.status_code == 200
        assert res.headers["content-type"].startswith("text/event-stream")
        stream = sse(res)
        snap = await next_event(stream, "snapshot")
        assert snap["site_name"] == "Test factory"
        assert snap["site_timezone"] == SITE_TZ
        assert snap["now"] == "2026-03-01T06:20:05Z"
        assert (snap["day_start"], snap["day_end"]) == (
            "2026-02-28T16:00:00Z",
            "2026-03-01T16:00:00Z",
        )
        assert snap["latest"] == {
            "battery": {"state_of_charge_pct": {"value": 64.0, "ts": "2026-03-01T06:20:05Z"}},
            "grid_meter": {"active_power_kw": {"value": 320.0, "ts": "2026-03-01T06:20:05Z"}},
            "pv_roof": {"active_power_kw": {"value": 410.5, "ts": "2026-03-01T06:20:00Z"}},
        }
        assert len(snap["hourly"]) == 15  # today's only, not yesterday's
        assert snap["hourly"][0]["hour_start"] == "2026-02-28T16:00:00Z"
        assert snap["hourly"][-1]["grid_import_kwh"] == 114.0
        assert srv.app.state.live_streams.active == 1

        # a newer reading of one device: only that value is sent
        await today.latest("grid_meter", "active_power_kw", NOW + timedelta(seconds=5), 330.0)
        readings = await next_event(stream, "readings")
        assert readings == {
            "now": "2026-03-01T06:20:10Z",
            "latest": {
                "grid_meter": {"active_power_kw": {"value": 330.0, "ts": "2026-03-01T06:20:10Z"}}
            },
        }

        # the engine recomputes the current hour: an hourly event with that row
        await today.hourly(DAY_START + 14 * H, grid_import_kwh=150.0)
        hourly = await next_event(stream, "hourly")
        assert [r["hour_start"] for r in hourly["rows"]] == ["2026-03-01T06:00:00Z"]
        assert hourly["rows"][0]["grid_import_kwh"] == 150.0
        assert set(hourly["rows"][0]) == set(snap["hourly"][0])


async def test_new_day_sends_a_new_snapshot(settings: Settings, today: Any, serve: Any) -> None:
    async with (
        serve(settings) as srv,
        httpx.AsyncClient(base_url=srv.url) as client,
        client.stream("GET", "/api/v1/live") as res,
    ):
        stream = sse(res)
        await next_event(stream, "snapshot")
        midnight = DAY_START + 24 * H  # 00:00 local, next day
        await today.latest("grid_meter", "active_power_kw", midnight + timedelta(seconds=3), 200)
        snap = await next_event(stream, "snapshot")
        assert snap["day_start"] == "2026-03-01T16:00:00Z"
        assert snap["hourly"] == []


async def test_keepalive_comment_during_silence(settings: Settings, today: Any, serve: Any) -> None:
    async with (
        serve(settings, live_keepalive_s=0.2) as srv,
        httpx.AsyncClient(base_url=srv.url) as client,
        client.stream("GET", "/api/v1/live") as res,
    ):
        stream = sse(res)
        await next_event(stream, "snapshot")
        assert await next_event(stream, "comment") == "keepalive"


async def test_client_disconnect_ends_the_stream(
    settings: Settings, today: Any, serve: Any
) -> None:
    async with serve(settings) as srv:
        streams: LiveStreams = srv.app.state.live_streams
        async with (
            httpx.AsyncClient(base_url=srv.url) as client,
            client.stream("GET", "/api/v1/live") as res,
        ):
            await next_event(sse(res), "snapshot")
            assert streams.active == 1
        async with asyncio.timeout(5):
            while streams.active:
                await asyncio.sleep(0.02)


async def test_server_shutdown_is_not_held_by_open_streams(
    settings: Settings, today: Any, serve: Any
) -> None:
    # no graceful-shutdown timeout: only ending the streams lets uvicorn stop
    async with serve(settings, timeout_graceful_shutdown=None) as srv:
        async with httpx.AsyncClient(base_url=srv.url) as client:
            async with client.stream("GET", "/api/v1/live") as res:
                stream = sse(res)
                await next_event(stream, "snapshot")
                t0 = time.monotonic()
                srv.server.should_exit = True
                async with asyncio.timeout(5):
                    async for _ in stream:  # the server ends the response
                        pass
                    await srv.task
        assert time.monotonic() - t0 < 3
        assert srv.app.state.live_streams.active == 0


async def test_stopping_the_streams_ends_the_generator(settings: Settings, today: Any) -> None:
    """What the app's lifespan does when it ends (for servers other than ApiServer)."""
    from zerocarbon.storage.database import open_pool

    assert settings.database_url is not None
    pool = await open_pool(settings.database_url)
    try:
        streams = LiveStreams()
        session = LiveSession("x", ZoneInfo(SITE_TZ))
        async with pool.acquire() as conn:
            first = await session.snapshot(conn)
        events = live_events(session, first, pool, streams, interval_s=0.05)
        assert "event: snapshot" in await anext(events)
        assert streams.active == 1
        streams.stop()
        async with asyncio.timeout(2):
            with pytest.raises(StopAsyncIteration):
                while True:
                    await anext(events)
        assert streams.active == 0
    finally:
        await pool.close()


async def test_refused_while_shutting_down(settings: Settings, today: Any, serve: Any) -> None:
    async with serve(settings) as srv, httpx.AsyncClient(base_url=srv.url) as client:
        srv.app.state.live_streams.stop()
        res = await client.get("/api/v1/live")
        assert res.status_code == 503


def alert_change(
    state: Literal["firing", "resolved"] = "firing", *, subject: str = "site", at_min: int = 0
) -> AlertChange:
    return AlertChange(
        rule="grid_demand",
        kind="demand",
        subject=subject,
        episode=1,
        state=state,
        severity="critical",
        ts=NOW + at_min * timedelta(minutes=1),
        since=NOW + (at_min - 2) * timedelta(minutes=1),
        message_en=f"demand {state}",
        message_zh="需量告警" if state == "firing" else "需量恢复",
        evidence={"demand_kw": 520.0, "limit_kw": 500.0},
    )


@pytest.fixture
async def no_alerts(pg_conn: asyncpg.Connection) -> asyncpg.Connection:
    await pg_conn.execute("TRUNCATE alerts, alert_events RESTART IDENTITY CASCADE")
    return pg_conn


async def test_snapshot_has_the_firing_alerts_then_alert_events(
    settings: Settings, today: Any, no_alerts: asyncpg.Connection, serve: Any
) -> None:
    conn = no_alerts
    await alerts.record_change(conn, alert_change(subject="old"), [], NOW)
    await alerts.record_change(conn, alert_change("resolved", subject="old", at_min=1), [], NOW)
    firing_id = await alerts.record_change(conn, alert_change(subject="meter_1"), [], NOW)
    async with (
        serve(settings) as srv,
        httpx.AsyncClient(base_url=srv.url) as client,
        client.stream("GET", "/api/v1/live") as res,
    ):
        stream = sse(res)
        snap = await next_event(stream, "snapshot")
        assert [(a["id"], a["subject"], a["state"]) for a in snap["alerts"]] == [
            (firing_id, "meter_1", "firing")
        ]
        assert snap["alerts"][0]["messages"] == {"en": "demand firing", "zh": "需量告警"}
        assert "events" not in snap["alerts"][0]

        # a new alert fires: one alert event with only that change (none of the
        # changes recorded before the snapshot is sent again)
        new_id = await alerts.record_change(conn, alert_change(subject="line_a", at_min=3), [], NOW)
        ev = await next_event(stream, "alert")
        assert len(ev["events"]) == 1
        (item,) = ev["events"]
        assert item["event"]["state"] == "firing"
        assert item["event"]["ts"] == "2026-03-01T06:23:05Z"
        assert item["alert"]["id"] == new_id
        assert (item["alert"]["rule"], item["alert"]["subject"], item["alert"]["severity"]) == (
            "grid_demand",
            "line_a",
            "critical",
        )
        assert item["alert"]["state"] == "firing" and item["alert"]["acked"] is False
        assert item["alert"]["evidence"] == {"demand_kw": 520.0, "limit_kw": 500.0}

        # acknowledged, then resolved: each an event with the alert as it is then
        assert new_id is not None
        await alerts.acknowledge(conn, new_id, "shift-lead", "on it", NOW)
        ev = await next_event(stream, "alert")
        (item,) = ev["events"]
        assert (item["event"]["state"], item["event"]["actor"]) == ("acknowledged", "shift-lead")
        assert (item["alert"]["acked"], item["alert"]["acked_by"]) == (True, "shift-lead")
        await alerts.record_change(
            conn, alert_change("resolved", subject="line_a", at_min=9), [], NOW
        )
        ev = await next_event(stream, "alert")
        (item,) = ev["events"]
        assert item["event"]["state"] == "resolved"
        assert (item["alert"]["state"], item["alert"]["resolved_at"]) == (
            "resolved",
            "2026-03-01T06:29:05Z",
        )
        assert item["alert"]["messages"]["zh"] == "需量恢复"


def alert_subjects(events: list[tuple[str, BaseModel]]) -> list[str]:
    """Subjects of the alerts of the ``alert`` events among ``events``."""
    return [e.alert.subject for _, p in events if isinstance(p, LiveAlerts) for e in p.events]


async def test_an_alert_change_committed_late_is_still_sent(
    pg_url: str, today: Any, no_alerts: asyncpg.Connection
) -> None:
    """An event whose id was taken before one already sent, committed after it."""
    conn = no_alerts
    session = LiveSession("x", ZoneInfo(SITE_TZ))
    await session.snapshot(conn)
    slow = await asyncpg.connect(pg_url)
    try:
        tx = slow.transaction()
        await tx.start()
        await alerts.record_change(slow, alert_change(subject="slow"), [], NOW)
        await alerts.record_change(conn, alert_change(subject="fast"), [], NOW)
        assert alert_subjects(await session.poll(conn)) == ["fast"]
        await tx.commit()
    finally:
        await slow.close()
    assert alert_subjects(await session.poll(conn)) == ["slow"]
    assert [name for name, _ in await session.poll(conn)] == []  # nothing twice
