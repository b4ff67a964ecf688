"""GET /api/v1/energy/hourly."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.api.conftest import SiteData
from zerocarbon.rows import HourlyEnergy

H = timedelta(hours=1)
T0 = datetime(2026, 3, 1, tzinfo=UTC)
CHANNELS = [
    ("grid_meter", "energy_import_kwh"),
    ("grid_meter", "energy_export_kwh"),
    ("pv_roof", "energy_generated_kwh"),
    ("output_counter", "production_count_units"),
]


def channel_hour(hour_start: datetime, device: str, metric: str, delta: float) -> HourlyEnergy:
    return HourlyEnergy(
        hour_start=hour_start,
        device=device,
        metric=metric,
        delta=delta,
        estimated=delta / 10,
        resets=0,
        rollovers=0,
        backsteps=1,
        replacements=0,
        rejected=0,
        gaps=2,
        late=0,
        duplicates=3,
        complete=True,
    )


@pytest.fixture
async def channels(site_data: SiteData) -> None:
    """Four channels over T0 .. T0 + 3 h; delta = 100 x hour + channel index."""
    await site_data.rows(
        energy=[
            channel_hour(T0 + h * H, device, metric, 100.0 * h + i)
            for h in range(4)
            for i, (device, metric) in enumerate(CHANNELS)
        ]
    )


async def test_all_devices_by_hour_then_device(client: httpx.AsyncClient, channels: None) -> None:
    res = await client.get(
        "/api/v1/energy/hourly",
        params={"start": "2026-03-01T01:00:00Z", "end": "2026-03-01T03:00:00Z"},
    )
    assert res.status_code == 200, res.text
    rows = res.json()
    assert [(r["hour_start"], r["device"], r["metric"]) for r in rows] == [
        (f"2026-03-01T0{h}:00:00Z", device, metric) for h in (1, 2) for device, metric in CHANNELS
    ]
    first = rows[0]
    assert set(first) == {f.name for f in fields(HourlyEnergy)} | {"computed_at", "unit"}
    assert (first["delta"], first["estimated"], first["unit"]) == (100.0, 10.0, "kWh")
    assert (first["backsteps"], first["gaps"], first["duplicates"], first["complete"]) == (
        1,
        2,
        3,
        True,
    )
    assert rows[3]["unit"] == "units"


async def test_one_device(client: httpx.AsyncClient, channels: None) -> None:
    rows = (
        await client.get(
            "/api/v1/energy/hourly", params={"device": "grid_meter", "start": "2026-03-01T00:00Z"}
        )
    ).json()
    assert {r["device"] for r in rows} == {"grid_meter"}
    assert [(r["hour_start"][11:13], r["metric"]) for r in rows] == [
        (f"0{h}", m) for h in range(4) for m in ("energy_import_kwh", "energy_export_kwh")
    ]


async def test_default_is_24_hours_up_to_the_newest(
    client: httpx.AsyncClient, channels: None
) -> None:
    rows = (await client.get("/api/v1/energy/hourly", params={"device": "pv_roof"})).json()
    assert [r["delta"] for r in rows] == [2.0, 102.0, 202.0, 302.0]


async def test_known_device_without_rows(client: httpx.AsyncClient, channels: None) -> None:
    res = await client.get("/api/v1/energy/hourly", params={"device": "battery"})
    assert (res.status_code, res.json()) == (200, [])


async def test_unknown_device_is_404(client: httpx.AsyncClient, channels: None) -> None:
    res = await client.get("/api/v1/energy/hourly", params={"device": "no_such_meter"})
    assert res.status_code == 404
    assert "no_such_meter" in res.json()["detail"]


async def test_long_range_is_422(client: httpx.AsyncClient) -> None:
    res = await client.get(
        "/api/v1/energy/hourly", params={"start": "2026-01-01T00:00Z", "end": "2026-03-01T00:00Z"}
    )
    assert res.status_code == 422
    assert "at most 31 days" in res.json()["detail"]
