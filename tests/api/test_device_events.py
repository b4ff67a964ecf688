"""GET /api/v1/devices/{device_id}/events: a device's online/offline changes and torn
reads, newest first, from ``device_events``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from tests.api.conftest import SiteData

T0 = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
URL = "/api/v1/devices/{device}/events"


async def write_events(conn: asyncpg.Connection, site_data: SiteData) -> None:
    grid = site_data.registry.device_ids["grid_meter"]
    rows = [
        (T0, grid, "offline", "timeout reading holding 40000"),
        (T0 + timedelta(minutes=5), grid, "online", ""),
        (T0 + timedelta(minutes=9), grid, "torn_read", "energy_import_kwh: words of two moments"),
    ]
    await conn.executemany(
        "INSERT INTO device_events (ts, device_id, kind, detail) VALUES ($1, $2, $3, $4)", rows
    )


async def test_events_newest_first_with_window_and_limit(
    client: httpx.AsyncClient, pg_conn: asyncpg.Connection, site_data: SiteData
) -> None:
    await write_events(pg_conn, site_data)
    body = (await client.get(URL.format(device="grid_meter"))).json()
    assert body["device"] == "grid_meter"
    assert [e["kind"] for e in body["events"]] == ["torn_read", "online", "offline"]
    assert body["events"][2]["detail"] == "timeout reading holding 40000"
    assert body["events"][2]["ts"] == "2026-03-01T06:00:00Z"
    window = {"start": "2026-03-01T06:01:00", "end": "2026-03-01T06:09:00"}
    windowed = (await client.get(URL.format(device="grid_meter"), params=window)).json()
    assert [e["kind"] for e in windowed["events"]] == ["online"]
    limited = (await client.get(URL.format(device="grid_meter"), params={"limit": 1})).json()
    assert [e["kind"] for e in limited["events"]] == ["torn_read"]
    empty = (await client.get(URL.format(device="pv_roof"))).json()
    assert empty == {"device": "pv_roof", "events": []}


async def test_unknown_device_and_bad_window(
    client: httpx.AsyncClient, site_data: SiteData
) -> None:
    missing = await client.get(URL.format(device="nope"))
    assert missing.status_code == 404
    assert "nope" in missing.json()["detail"]
    backwards = await client.get(
        URL.format(device="grid_meter"),
        params={"start": "2026-03-01T07:00:00Z", "end": "2026-03-01T06:00:00Z"},
    )
    assert backwards.status_code == 422
    assert "not before" in str(backwards.json()["detail"])
    too_many = await client.get(URL.format(device="grid_meter"), params={"limit": 5000})
    assert too_many.status_code == 422
