"""The carbon service: a restart continues the open hours from the database, late
readings are recomputed from what storage holds, and an hour already written is
written again when a stuck counter's catch-up gives it energy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from zerocarbon.batch import Reading, ReadingBatch, SeriesRegistry
from zerocarbon.carbon_engine.engine import CarbonEngine
from zerocarbon.carbon_service import CarbonService
from zerocarbon.config import SiteConfig
from zerocarbon.storage.database import Registry, open_pool, register_site
from zerocarbon.storage.writer import ReadingWriter

T0 = datetime(2026, 6, 21, 0, 0, tzinfo=UTC)


def _readings(minutes: list[int]) -> list[Reading]:
    """Grid import at 120 kW, PV at 30 kW, one reading a minute."""
    out = []
    for k in minutes:
        ts = T0 + timedelta(minutes=k)
        out.append(Reading(ts, "grid_meter", "energy_import_kwh", 5000.0 + 2.0 * k))
        out.append(Reading(ts, "pv_roof", "energy_generated_kwh", 800.0 + 0.5 * k))
    return out


async def _run(
    pool: asyncpg.Pool,
    site: SiteConfig,
    registry: Registry,
    readings: list[Reading],
    *,
    restore: bool,
) -> CarbonService:
    series = SeriesRegistry.for_site(site)
    service = CarbonService(CarbonEngine(site, series), pool, registry)
    if restore:
        await service.restore()
    batch = ReadingBatch.from_readings(readings, series)
    await ReadingWriter(pool, registry, series).write_batch(batch)
    await service.write_batch(batch)
    await service.flush()
    return service


async def _hours(conn: asyncpg.Connection) -> dict[datetime, tuple[float, float]]:
    rows = await conn.fetch("SELECT hour_start, grid_import_kwh, pv_kwh FROM hourly_carbon")
    return {r["hour_start"]: (r["grid_import_kwh"], r["pv_kwh"]) for r in rows}


@pytest.mark.parametrize("restore", [True, False])
async def test_restart_mid_hour(
    pg_url: str, pg_conn: asyncpg.Connection, demo_site: SiteConfig, restore: bool
) -> None:
    await pg_conn.execute("TRUNCATE hourly_line")
    registry = await register_site(pg_conn, demo_site)
    pool = await open_pool(pg_url)
    try:
        # first run: 00:00 .. 01:30, then the process stops; second run: 01:31 .. 02:00
        await _run(pool, demo_site, registry, _readings(list(range(0, 91))), restore=True)
        await _run(pool, demo_site, registry, _readings(list(range(91, 121))), restore=restore)
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


async def test_late_readings_recomputed_from_storage(
    pg_url: str, pg_conn: asyncpg.Connection, demo_site: SiteConfig
) -> None:
    """A reading held back for an hour arrives late; the hours it touches are rebuilt
    from the stored readings and the result equals the in-order run."""
    await pg_conn.execute("TRUNCATE hourly_line")
    registry = await register_site(pg_conn, demo_site)
    # grid import steps from 60 kW to 240 kW at 00:50; one reading a minute, but the
    # readings of 00:41 .. 01:09 arrive after 01:10 .. 02:00
    values = {k: 1000.0 + (1.0 * k if k <= 50 else 50.0 + 4.0 * (k - 50)) for k in range(121)}

    def grid(minutes: list[int]) -> list[Reading]:
        return [
            Reading(T0 + timedelta(minutes=k), "grid_meter", "energy_import_kwh", values[k])
            for k in minutes
        ]

    pool = await open_pool(pg_url)
    try:
        service = await _run(
            pool, demo_site, registry, grid([*range(0, 41), *range(70, 121)]), restore=False
        )
        series = service.engine.registry
        late = ReadingBatch.from_readings(grid(list(range(41, 70))), series)
        await ReadingWriter(pool, registry, series).write_batch(late)
        for _ in range(2):  # idempotent: the same late data twice changes nothing
            await service.write_batch(late)
            await service.flush()
    finally:
        await pool.close()
    assert service.engine.stats.late >= 29 and service.recomputes >= 1
    hours = await _hours(pg_conn)
    assert hours[T0][0] == pytest.approx(50.0 + 40.0)
    assert hours[T0 + timedelta(hours=1)][0] == pytest.approx(240.0)
    row = await pg_conn.fetchrow(
        "SELECT late, delta FROM hourly_energy WHERE hour_start = $1 AND device_id = $2 "
        "AND metric_id = 2",
        T0,
        registry.device_ids["grid_meter"],
    )
    assert row["delta"] == pytest.approx(90.0)
    assert row["late"] >= 1  # the hour says late data came in


async def test_catch_up_rewrites_an_hour_already_written(
    pg_url: str, pg_conn: asyncpg.Connection, demo_site: SiteConfig
) -> None:
    """PV at 540 kW (9 kWh a minute; rated 600 kW: at most 15.5 kWh a minute is
    plausible); its register stands still from 00:50 to 01:09 and shows the true value
    again at 01:10. 00:00 is written with what the register showed by then; the
    catch-up gives it the energy of 00:50 .. 01:00 and it is written again."""
    await pg_conn.execute("TRUNCATE hourly_line")
    registry = await register_site(pg_conn, demo_site)

    def pv(minutes: list[int]) -> list[Reading]:
        shown = {k: 800.0 + 9.0 * (50 if 50 <= k < 70 else k) for k in minutes}
        return [
            Reading(T0 + timedelta(minutes=k), "pv_roof", "energy_generated_kwh", shown[k])
            for k in minutes
        ]

    pool = await open_pool(pg_url)
    try:
        service = await _run(pool, demo_site, registry, pv(list(range(0, 70))), restore=False)
        written = (await _hours(pg_conn))[T0][1]
        series = service.engine.registry
        rest = ReadingBatch.from_readings(pv(list(range(70, 81))), series)
        await ReadingWriter(pool, registry, series).write_batch(rest)
        await service.write_batch(rest)
        await service.flush()
    finally:
        await pool.close()
    assert written == pytest.approx(9.0 * 50)  # the register stood still from 00:50
    hours = await _hours(pg_conn)
    assert hours[T0][1] == pytest.approx(9.0 * 60)
    assert hours[T0 + timedelta(hours=1)][1] == pytest.approx(9.0 * 20)
    row = await pg_conn.fetchrow(
        "SELECT delta, replacements, rejected FROM hourly_energy WHERE hour_start = $1 "
        "AND device_id = $2",
        T0,
        registry.device_ids["pv_roof"],
    )
    # (readings a minute apart are beyond pv_roof's gap threshold: every interval is
    # estimated here; the catch-up's own flag is checked in test_stream.py)
    assert row["delta"] == pytest.approx(9.0 * 60)
    assert row["replacements"] == row["rejected"] == 0


@pytest.mark.parametrize("late_minute", [30, 65])
async def test_late_reading_in_a_still_time_keeps_the_catch_up(
    pg_url: str, pg_conn: asyncpg.Connection, demo_site: SiteConfig, late_minute: int
) -> None:
    """The same stuck PV register; one reading arrives after all the others. Its hour is
    rebuilt from the stored readings up to the series' newest point (00:30: the catch-up
    at 01:10 still gives 00:50 .. 01:00 their energy) and back to where the counter last
    moved (01:05, inside the still time: the catch-up is judged over the whole still
    time, not from 00:59, over which it would be a replaced meter)."""
    await pg_conn.execute("TRUNCATE hourly_line")
    registry = await register_site(pg_conn, demo_site)

    def pv(minutes: list[int]) -> list[Reading]:
        return [
            Reading(
                T0 + timedelta(minutes=k),
                "pv_roof",
                "energy_generated_kwh",
                800.0 + 9.0 * (50 if 50 <= k < 70 else k),
            )
            for k in minutes
        ]

    pool = await open_pool(pg_url)
    try:
        minutes = [k for k in range(0, 81) if k != late_minute]
        service = await _run(pool, demo_site, registry, pv(minutes), restore=False)
        series = service.engine.registry
        late = ReadingBatch.from_readings(pv([late_minute]), series)
        await ReadingWriter(pool, registry, series).write_batch(late)
        await service.write_batch(late)
        await service.flush()
    finally:
        await pool.close()
    assert service.engine.stats.late == 1 and service.recomputes == 1
    hours = await _hours(pg_conn)
    assert hours[T0][1] == pytest.approx(9.0 * 60)
    assert hours[T0 + timedelta(hours=1)][1] == pytest.approx(9.0 * 20)
