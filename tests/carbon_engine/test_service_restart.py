"""A restart continues the open hours from the database instead of overwriting them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from zerocarbon.carbon_engine.engine import CarbonEngine
from zerocarbon.carbon_engine.service import CarbonService
from zerocarbon.config import SiteConfig
from zerocarbon.ingest.reading import Reading
from zerocarbon.storage.database import open_pool, register_site
from zerocarbon.storage.writer import ReadingWriter

T0 = datetime(2026, 6, 21, 0, 0, tzinfo=UTC)


def _readings(minutes: range) -> list[Reading]:
    """Grid import at 120 kW, PV at 30 kW, one reading a minute."""
    out = []
    for k in minutes:
        ts = T0 + timedelta(minutes=k)
        out.append(Reading(ts, "grid_meter", "energy_import_kwh", 5000.0 + 2.0 * k))
        out.append(Reading(ts, "pv_roof", "energy_generated_kwh", 800.0 + 0.5 * k))
    return out


async def _run(
    pool: asyncpg.Pool, site: SiteConfig, registry: object, batch: list[Reading], *, restore: bool
) -> None:
    service = CarbonService(CarbonEngine(site), pool, registry)  # type: ignore[arg-type]
    if restore:
        await service.restore()
    await ReadingWriter(pool, registry).write_batch(batch)  # type: ignore[arg-type]
    await service.write_batch(batch)
    await service.flush()


async def _hours(conn: asyncpg.Connection) -> dict[datetime, tuple[float, float]]:
    rows = await conn.fetch("SELECT hour_start, grid_import_kwh, pv_kwh FROM hourly_carbon")
    return {r["hour_start"]: (r["grid_import_kwh"], r["pv_kwh"]) for r in rows}


@pytest.mark.parametrize("restore", [True, False])
async def test_restart_mid_hour(
    pg_url: str, pg_conn: asyncpg.Connection, demo_site: SiteConfig, restore: bool
) -> None:
    registry = await register_site(pg_conn, demo_site)
    pool = await open_pool(pg_url)
    try:
        # first run: 00:00 .. 01:30, then the process stops; second run: 01:31 .. 02:00
        await _run(pool, demo_site, registry, _readings(range(0, 91)), restore=True)
        await _run(pool, demo_site, registry, _readings(range(91, 121)), restore=restore)
    finally:
        await pool.close()
    hours = await _hours(pg_conn)
    first, second = T0, T0 + timedelta(hours=1)
    assert hours[first] == pytest.approx((120.0, 30.0))
    if restore:
        # the minute of downtime is bridged and the open hour keeps its first part
        assert hours[second] == pytest.approx((120.0, 30.0))
    else:
        # without restoring, the second run would overwrite 01:00 with its part only
        assert hours[second][0] == pytest.approx(58.0)
