"""Fixtures for the API tests: settings on the run's database, the app's own client,
a live uvicorn server, and a factory that writes devices, latest values and hourly rows."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from zerocarbon.api.app import create_app
from zerocarbon.api.server import ApiServer, api_server
from zerocarbon.config import SiteConfig
from zerocarbon.netutil import free_tcp_port
from zerocarbon.settings import Settings
from zerocarbon.storage.database import Registry, register_site

SITE_TZ = "Asia/Shanghai"


@pytest.fixture
def settings(pg_url: str) -> Settings:
    return Settings(
        database_url=pg_url,
        site_name="Test factory",
        site_timezone=SITE_TZ,
        live_interval_s=0.05,
    )


@pytest.fixture
async def client(
    settings: Settings, pg_conn: asyncpg.Connection
) -> AsyncIterator[httpx.AsyncClient]:
    """The app's own client (ASGI, no socket), with the app's lifespan running."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://zerocarbon.test") as c:
            yield c


@dataclass
class LiveServer:
    app: FastAPI
    server: ApiServer
    task: asyncio.Task[None]
    url: str


@contextlib.asynccontextmanager
async def running_server(settings: Settings, **config: Any) -> AsyncIterator[LiveServer]:
    """A real uvicorn server (socket, lifespan, shutdown) for the streaming tests:
    httpx's ASGITransport buffers a response until the app returns, so it cannot read
    an endless event stream."""
    app = create_app(settings, live_keepalive_s=config.pop("live_keepalive_s", 15.0))
    port = free_tcp_port()
    server = api_server(app, settings, host="127.0.0.1", port=port, log_level="warning", **config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(5):
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn did not start")
            await asyncio.sleep(0.01)
    try:
        yield LiveServer(app, server, task, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        async with asyncio.timeout(10):
            await task


@pytest.fixture
def serve() -> Callable[..., contextlib.AbstractAsyncContextManager[LiveServer]]:
    """``async with serve(settings, **uvicorn_config) as srv``: see :func:`running_server`."""
    return running_server


@dataclass
class SiteData:
    """Writes test rows straight into the tables the API reads."""

    conn: asyncpg.Connection
    registry: Registry

    async def latest(
        self, device: str, metric: str, ts: datetime, value: float, quality: int = 0
    ) -> None:
        await self.conn.execute(
            """INSERT INTO latest_values (device_id, metric_id, ts, value, quality)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (device_id, metric_id) DO UPDATE SET
               ts = EXCLUDED.ts, value = EXCLUDED.value, quality = EXCLUDED.quality""",
            self.registry.device_ids[device],
            self.registry.metric_ids[metric],
            ts,
            value,
            quality,
        )

    async def hourly(
        self, hour_start: datetime, computed_at: datetime | None = None, **values: float | None
    ) -> dict[str, Any]:
        """Upsert one hourly_carbon row; unspecified columns get plausible values."""
        row = hourly_row(hour_start, **values)
        row["computed_at"] = computed_at or datetime.now(UTC)
        columns = list(row)
        await self.conn.execute(
            f"""INSERT INTO hourly_carbon ({", ".join(columns)})
                VALUES ({", ".join(f"${i + 1}" for i in range(len(columns)))})
                ON CONFLICT (hour_start) DO UPDATE SET
                {", ".join(f"{c} = EXCLUDED.{c}" for c in columns[1:])}""",
            *row.values(),
        )
        return row


def hourly_row(hour_start: datetime, **values: float | None) -> dict[str, Any]:
    grid_import = float(values.pop("grid_import_kwh", 400.0) or 0.0)
    pv = float(values.pop("pv_kwh", 120.0) or 0.0)
    load = grid_import + pv
    row: dict[str, Any] = {
        "hour_start": hour_start,
        "grid_import_kwh": grid_import,
        "grid_export_kwh": 0.0,
        "pv_kwh": pv,
        "battery_charge_kwh": 0.0,
        "battery_discharge_kwh": 0.0,
        "load_kwh": load,
        "production_units": 2.0 * load,
        "scope2_location_kg": grid_import * 0.5703,
        "scope2_market_kg": grid_import * 0.6096,
        "location_factor_kg_per_kwh": 0.5703,
        "market_factor_kg_per_kwh": 0.6096,
        "intensity_kg_per_kwh": grid_import * 0.5703 / load,
        "cfe_share": pv / load,
    }
    row.update(values)
    return row


@pytest.fixture
async def site_data(pg_conn: asyncpg.Connection, demo_site: SiteConfig) -> SiteData:
    """The demo site's devices registered; no values yet."""
    return SiteData(pg_conn, await register_site(pg_conn, demo_site))
