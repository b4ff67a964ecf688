"""The app factory: required settings, lifespan, OpenAPI and offline docs."""

from __future__ import annotations

import importlib.util
import re

import httpx
import pytest

from zerocarbon.api.app import ApiSettingsError, create_app
from zerocarbon.settings import Settings

URL = re.compile(r"https?://", re.IGNORECASE)


def test_database_url_is_required() -> None:
    with pytest.raises(ApiSettingsError, match="ZEROCARBON_DATABASE_URL"):
        create_app(Settings(database_url=None))


def test_site_timezone_must_be_known(pg_url: str) -> None:
    with pytest.raises(ApiSettingsError, match=r"site_timezone.*'Mars/Olympus'"):
        create_app(Settings(database_url=pg_url, site_timezone="Mars/Olympus"))


async def test_lifespan_opens_and_closes_the_pool(settings: Settings) -> None:
    app = create_app(settings)
    assert getattr(app.state, "pool", None) is None
    async with app.router.lifespan_context(app):
        pool = app.state.pool
        assert await pool.fetchval("SELECT 1") == 1
    assert app.state.pool is None
    assert pool.is_closing()
    assert app.state.live_streams.stopping


async def test_openapi_lists_every_endpoint(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert set(spec["paths"]) >= {
        "/healthz",
        "/api/v1/devices",
        "/api/v1/devices/{device_id}/latest",
        "/api/v1/carbon/hourly",
        "/api/v1/carbon/{period}",
        "/api/v1/energy/hourly",
        "/api/v1/lines",
        "/api/v1/lines/hourly",
        "/api/v1/lines/{period}",
        "/api/v1/live",
        "/api/v1/status",
    }
    assert set(spec["components"]["schemas"]) >= {
        "HourlyCarbon",
        "HourlyEnergy",
        "HourlyLine",
        "CarbonRollup",
        "LineRollup",
    }


@pytest.mark.skipif(
    importlib.util.find_spec("fastapi_offline") is None,
    reason="fastapi-offline (the offline Swagger UI files) is not installed",
)
async def test_docs_work_offline(client: httpx.AsyncClient) -> None:
    for page in ("/docs", "/redoc"):
        res = await client.get(page)
        assert res.status_code == 200
        assert not URL.search(res.text), f"{page} loads something from the internet"
        for asset in re.findall(r'(?:src|href)="([^"]+)"', res.text):
            served = await client.get(asset)
            assert served.status_code == 200, asset
