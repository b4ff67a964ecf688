"""Fixtures for the API tests: settings on the run's database, the app's own client,
a live uvicorn server, and a factory that writes devices, latest values and hourly rows
(with the engine's upsert)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from zerocarbon.api.app import create_app
from zerocarbon.api.server import ApiServer, api_server
from zerocarbon.config import SiteConfig
from zerocarbon.netutil import free_tcp_port
from zerocarbon.rows import HourlyCarbon, HourlyEnergy, HourlyLine
from zerocarbon.settings import Settings
from zerocarbon.storage.database import Registry, register_site
from zerocarbon.storage.hourly import upsert_hourly

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


@pytest.fixture
async def pg_conn(pg_conn: asyncpg.Connection) -> asyncpg.Connection:
    """The shared fixture's connection, with hourly_line emptied too."""
    await pg_conn.execute("TRUNCATE hourly_line")
    return pg_conn


@dataclass
class SiteData:
    """Writes test rows into the tables the API reads, the way the engine does."""

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

    async def rows(
        self,
        carbon: Sequence[HourlyCarbon] = (),
        energy: Sequence[HourlyEnergy] = (),
        lines: Sequence[HourlyLine] = (),
    ) -> None:
        """Upsert hourly rows with the engine's :func:`upsert_hourly`."""
        await upsert_hourly(self.conn, self.registry, carbon, energy, lines)

    async def hourly(
        self, hour_start: datetime, computed_at: datetime | None = None, **values: Any
    ) -> HourlyCarbon:
        """Upsert one hourly_carbon row; unspecified columns get plausible values."""
        row = hourly_row(hour_start, **values)
        await self.rows(carbon=[row])
        if computed_at is not None:
            await self.conn.execute(
                "UPDATE hourly_carbon SET computed_at = $2 WHERE hour_start = $1",
                hour_start,
                computed_at,
            )
        return row


def hourly_row(hour_start: datetime, **values: Any) -> HourlyCarbon:
    """A consistent hourly_carbon row: grid import and PV (120 kWh) cover the load."""
    grid_import = float(values.pop("grid_import_kwh", 400.0))
    pv = float(values.pop("pv_kwh", 120.0))
    load = grid_import + pv
    row = HourlyCarbon(
        hour_start=hour_start,
        grid_import_kwh=grid_import,
        grid_export_kwh=0.0,
        pv_kwh=pv,
        wind_kwh=0.0,
        battery_charge_kwh=0.0,
        battery_discharge_kwh=0.0,
        load_kwh=load,
        submetered_kwh=load,
        unmetered_kwh=0.0,
        production_units=2.0 * load,
        scope1_kg=0.0,
        scope2_location_kg=grid_import * 0.5703,
        scope2_market_kg=grid_import * 0.6096,
        green_contract_kwh=0.0,
        certificate_kwh=0.0,
        cfe_kwh=pv,
        location_factor_kg_per_kwh=0.5703,
        market_factor_kg_per_kwh=0.6096,
        intensity_kg_per_kwh=grid_import * 0.5703 / load if load > 0 else None,
        market_intensity_kg_per_kwh=grid_import * 0.6096 / load if load > 0 else None,
        cfe_share=pv / load if load > 0 else None,
        estimated_share=0.0,
        missing_devices=0,
        submeter_mismatches=0,
        complete=True,
    )
    return replace(row, **values)


@pytest.fixture
async def site_data(pg_conn: asyncpg.Connection, demo_site: SiteConfig) -> SiteData:
    """The demo site's devices registered; no values yet."""
    return SiteData(pg_conn, await register_site(pg_conn, demo_site))
