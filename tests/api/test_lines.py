"""GET /api/v1/lines and /api/v1/lines/hourly (roll-ups: test_rollup.py)."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.api.conftest import SiteData
from zerocarbon.api.app import create_app
from zerocarbon.config import SiteConfig
from zerocarbon.rows import HourlyLine
from zerocarbon.settings import Settings

H = timedelta(hours=1)
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def line_hour(hour_start: datetime, line: str, energy_kwh: float, units: float) -> HourlyLine:
    return HourlyLine(
        hour_start=hour_start,
        line=line,
        energy_kwh=energy_kwh,
        production_units=units,
        kwh_per_unit=energy_kwh / units if units else None,
        scope2_location_kg=energy_kwh * 0.3,
        scope2_market_kg=energy_kwh * 0.33,
        kg_per_unit=energy_kwh * 0.3 / units if units else None,
        estimated_share=0.0,
    )


@pytest.fixture
async def line_hours(site_data: SiteData) -> None:
    """line_a and line_b over T0 .. T0 + 2 h; line_b makes nothing."""
    await site_data.rows(
        lines=[
            line_hour(T0 + h * H, line, 10.0 * (h + 1), 20.0 if line == "line_a" else 0.0)
            for h in range(3)
            for line in ("line_a", "line_b")
        ]
    )


async def test_lines_from_the_devices(client: httpx.AsyncClient, site_data: SiteData) -> None:
    res = await client.get("/api/v1/lines")
    assert res.status_code == 200
    assert res.json() == [
        {
            "id": "line_a",
            "devices": ["line_a", "output_counter"],
            "name": "",
            "product": "",
            "unit": "units",
        },
        {"id": "line_b", "devices": ["line_b"], "name": "", "product": "", "unit": "units"},
    ]


async def test_lines_named_by_the_site_file(
    settings: Settings, site_data: SiteData, demo_site: SiteConfig
) -> None:
    """In the gateway the app knows the site file: each line's name, product and unit."""
    app = create_app(settings, site=demo_site)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            lines = (await c.get("/api/v1/lines")).json()
    described = {ln.id: ln for ln in demo_site.lines}
    assert [(x["id"], x["name"], x["unit"]) for x in lines] == [
        (i, described[i].name, described[i].unit) for i in ("line_a", "line_b")
    ]
    assert lines[0]["name"]  # the demo names its lines


async def test_no_lines(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/lines")).json() == []


async def test_hourly_all_lines(client: httpx.AsyncClient, line_hours: None) -> None:
    res = await client.get(
        "/api/v1/lines/hourly",
        params={"start": "2026-03-01T01:00:00Z", "end": "2026-03-01T03:00:00Z"},
    )
    assert res.status_code == 200, res.text
    rows = res.json()
    assert [(r["hour_start"], r["line"]) for r in rows] == [
        ("2026-03-01T01:00:00Z", "line_a"),
        ("2026-03-01T01:00:00Z", "line_b"),
        ("2026-03-01T02:00:00Z", "line_a"),
        ("2026-03-01T02:00:00Z", "line_b"),
    ]
    assert set(rows[0]) == {f.name for f in fields(HourlyLine)} | {"computed_at"}
    assert (rows[0]["energy_kwh"], rows[0]["kwh_per_unit"]) == (20.0, 1.0)
    assert (rows[1]["kwh_per_unit"], rows[1]["kg_per_unit"]) == (None, None)


async def test_hourly_one_line(client: httpx.AsyncClient, line_hours: None) -> None:
    rows = (await client.get("/api/v1/lines/hourly", params={"line": "line_b"})).json()
    assert [(r["line"], r["energy_kwh"]) for r in rows] == [
        ("line_b", 10.0),
        ("line_b", 20.0),
        ("line_b", 30.0),
    ]


async def test_unknown_line_is_404(client: httpx.AsyncClient, line_hours: None) -> None:
    res = await client.get("/api/v1/lines/hourly", params={"line": "line_z"})
    assert res.status_code == 404
    assert "line_z" in res.json()["detail"]
