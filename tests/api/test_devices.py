"""GET /api/v1/devices and /api/v1/devices/{id}/latest."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from zerocarbon.config import SiteConfig


async def test_list_in_site_file_order(
    client: httpx.AsyncClient, site_data: Any, demo_site: SiteConfig
) -> None:
    res = await client.get("/api/v1/devices")
    assert res.status_code == 200
    devices = res.json()
    assert [d["id"] for d in devices] == [d.id for d in demo_site.devices]
    pv = next(d for d in devices if d["id"] == "pv_roof")
    assert pv == {
        "id": "pv_roof",
        "name": "Rooftop PV inverter (SunSpec 103)",
        "role": "pv",
        "protocol": "modbus_tcp",
        "line": None,
        "rated_power_kw": 600.0,
    }
    line_a = next(d for d in devices if d["id"] == "line_a")
    assert (line_a["protocol"], line_a["line"], line_a["role"]) == ("mqtt", "line_a", "load")


async def test_empty_site(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/devices")).json() == []


async def test_latest_values(client: httpx.AsyncClient, site_data: Any) -> None:
    ts = datetime(2026, 3, 2, 6, 30, 5, tzinfo=UTC)
    await site_data.latest("battery", "state_of_charge_pct", ts, 61.5)
    await site_data.latest("battery", "active_power_kw", ts, -120.25, quality=1)
    await site_data.latest("grid_meter", "active_power_kw", ts, 300.0)  # another device
    res = await client.get("/api/v1/devices/battery/latest")
    assert res.status_code == 200
    assert res.json() == {
        "device": "battery",
        "values": [
            {
                "metric": "active_power_kw",
                "unit": "kW",
                "ts": "2026-03-02T06:30:05Z",
                "value": -120.25,
                "quality": 1,
            },
            {
                "metric": "state_of_charge_pct",
                "unit": "%",
                "ts": "2026-03-02T06:30:05Z",
                "value": 61.5,
                "quality": 0,
            },
        ],
    }


async def test_known_device_without_values(client: httpx.AsyncClient, site_data: Any) -> None:
    res = await client.get("/api/v1/devices/pv_roof/latest")
    assert res.status_code == 200
    assert res.json() == {"device": "pv_roof", "values": []}


async def test_unknown_device_is_404(client: httpx.AsyncClient, site_data: Any) -> None:
    res = await client.get("/api/v1/devices/no_such_meter/latest")
    assert res.status_code == 404
    assert "no_such_meter" in res.json()["detail"]
