"""GET /api/v1/devices/{device_id}/power: a device's gauge in 1-minute or 15-minute
buckets, from the power rollups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from tests.api.conftest import SiteData
from zerocarbon.batch import datetime_to_us
from zerocarbon.storage.rollups import refresh_rollups

T0 = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
URL = "/api/v1/devices/{device}/power"


async def write_readings(conn: asyncpg.Connection, site_data: SiteData) -> None:
    """PV power every 20 s for 2 h (value = minute of the day + second / 100), a battery
    state of charge every minute, a counter; the rollups refreshed; latest values."""
    pv = site_data.registry.device_ids["pv_roof"]
    battery = site_data.registry.device_ids["battery"]
    power = site_data.registry.metric_ids["active_power_kw"]
    soc = site_data.registry.metric_ids["state_of_charge_pct"]
    energy = site_data.registry.metric_ids["energy_generated_kwh"]
    rows = []
    for k in range(360):
        t = T0 + timedelta(seconds=20 * k)
        rows.append((t, pv, power, t.hour * 60 + t.minute + t.second / 100, 0))
        rows.append((t, pv, energy, float(k), 0))
        if k % 3 == 0:
            rows.append((t, battery, soc, 50 + k / 10, 0))
    await conn.copy_records_to_table(
        "readings", records=rows, columns=("ts", "device_id", "metric_id", "value", "quality")
    )
    await refresh_rollups(conn, datetime_to_us(T0), datetime_to_us(rows[-1][0]))
    await site_data.latest("pv_roof", "active_power_kw", rows[-2][0], rows[-2][3])


@pytest.fixture
async def readings(pg_conn: asyncpg.Connection, site_data: SiteData) -> None:
    await pg_conn.execute("TRUNCATE power_1min, power_15min")
    await write_readings(pg_conn, site_data)


async def test_one_minute_buckets(client: httpx.AsyncClient, readings: None) -> None:
    res = await client.get(
        URL.format(device="pv_roof"),
        params={"start": "2026-03-01T06:10:00Z", "end": "2026-03-01T06:13:00Z"},
    )
    assert res.status_code == 200, res.text
    body = res.json()
    assert (body["device"], body["metric"], body["unit"], body["step"]) == (
        "pv_roof",
        "active_power_kw",
        "kW",
        "1min",
    )
    assert body["start"] == "2026-03-01T06:10:00Z" and body["end"] == "2026-03-01T06:13:00Z"
    assert [p["bucket"] for p in body["points"]] == [
        "2026-03-01T06:10:00Z",
        "2026-03-01T06:11:00Z",
        "2026-03-01T06:12:00Z",
    ]
    first = body["points"][0]  # readings at :00, :20, :40 of minute 370
    assert first["samples"] == 3 and first["min"] == 370.0 and first["max"] == 370.4
    assert first["avg"] == pytest.approx(370.2)


async def test_fifteen_minute_buckets(client: httpx.AsyncClient, readings: None) -> None:
    res = await client.get(
        URL.format(device="pv_roof"),
        params={"step": "15min", "start": "2026-03-01T06:00:00", "end": "2026-03-01T09:00:00"},
    )
    assert res.status_code == 200, res.text
    points = res.json()["points"]
    assert len(points) == 8  # two hours of readings
    assert all(p["samples"] == 45 for p in points)
    assert points[0]["min"] == 360.0 and points[0]["max"] == 374.4
    assert points[0]["avg"] == pytest.approx((360 + 374) / 2 + 0.2)


async def test_another_gauge_and_the_default_range(
    client: httpx.AsyncClient, readings: None
) -> None:
    res = await client.get(URL.format(device="pv_roof"))  # 24 h up to the newest reading
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["end"] == "2026-03-01T08:00:00Z" and len(body["points"]) == 120
    res = await client.get(
        URL.format(device="battery"),
        params={"metric": "state_of_charge_pct", "step": "15min", "start": "2026-03-01T06:00Z"},
    )
    assert res.status_code == 200, res.text
    assert res.json()["unit"] == "%" and len(res.json()["points"]) == 8


async def test_a_device_without_readings(client: httpx.AsyncClient, readings: None) -> None:
    res = await client.get(URL.format(device="line_a"))
    assert res.status_code == 200, res.text
    assert res.json()["points"] == [] and res.json()["start"] is None


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"metric": "energy_generated_kwh"}, "is not a gauge"),
        ({"step": "5min"}, "1min"),
        ({"start": "2026-03-01T06:00Z", "end": "2026-03-09T06:00Z"}, "at most 7 days"),
        ({"step": "15min", "start": "2026-03-01", "end": "2026-04-02"}, "at most 31 days"),
        ({"start": "2026-03-01T06:00Z", "end": "2026-03-01T06:00Z"}, "must be before"),
        ({"start": "yesterday"}, "datetime"),
    ],
)
async def test_what_it_cannot_serve_is_a_422(
    client: httpx.AsyncClient, readings: None, params: dict[str, str], message: str
) -> None:
    res = await client.get(URL.format(device="pv_roof"), params=params)
    assert res.status_code == 422, res.text
    assert message in res.text


async def test_an_unknown_device_is_a_404(client: httpx.AsyncClient, readings: None) -> None:
    res = await client.get(URL.format(device="no_such_meter"))
    assert res.status_code == 404
    assert "no_such_meter" in res.json()["detail"]
