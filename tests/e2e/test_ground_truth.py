"""End to end on real parts: simulated plant -> Modbus TCP / MQTT -> collectors ->
pipeline -> PostgreSQL + carbon engine -> hourly rows, checked against the simulator's
exact hourly energy (ground truth)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from zerocarbon.carbon_service import warm_up_kernels
from zerocarbon.clock import ScaledClock
from zerocarbon.config import SiteConfig
from zerocarbon.runtime import EnergyCenter
from zerocarbon.settings import Settings
from zerocarbon.simulators.endpoints import on_free_ports
from zerocarbon.simulators.runner import PlantSimulator

SPEED = 600.0  # simulated seconds per real second
# Local 07:30 in Shanghai: the 6 compared hours (08:00-14:00 local) have PV, battery
# discharge in the morning peak, day-shift loads and a midday shift change.
START = datetime(2026, 6, 21, 7, 30, tzinfo=UTC) - timedelta(hours=8)
FIRST_HOUR = START + timedelta(minutes=30)
HOURS = 6
TOLERANCE = 0.01  # 1 % of each hour's true value
BATTERY_COUNTER_STEP_KWH = 0.1  # battery_controller profile: energy counters in 0.1 kWh


@pytest.fixture(scope="module")
async def e2e_rows(
    pg_url: str,
    mqtt_url: str,
    demo_site: SiteConfig,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[list[asyncpg.Record], PlantSimulator, EnergyCenter]:
    """Run the plant once for the module; return the compared hourly rows."""
    conn = await asyncpg.connect(pg_url)
    await conn.execute(
        "TRUNCATE readings, latest_values, hourly_energy, hourly_carbon, devices RESTART IDENTITY"
    )
    site = on_free_ports(demo_site, mqtt_url)
    warm_up_kernels(site)  # a cold numba compile would stall the first simulated minutes
    clock = ScaledClock(START, SPEED)
    end_s = (FIRST_HOUR + timedelta(hours=HOURS, minutes=2)).timestamp()
    # start-up and shutdown included: a hang fails here, with the stuck await's traceback
    async with (
        asyncio.timeout(HOURS * 3600 / SPEED * 3 + 150),
        PlantSimulator(site, clock, mqtt_url=mqtt_url) as sim,
        EnergyCenter(
            site,
            Settings(),
            clock,
            database_url=pg_url,
            mqtt_url=mqtt_url,
            spool_dir=tmp_path_factory.mktemp("spool"),  # module-scoped: no per-test data dir
        ) as center,
    ):
        while clock.now_s() < end_s:
            await asyncio.sleep(0.2)
    try:
        rows = await conn.fetch(
            "SELECT * FROM hourly_carbon WHERE hour_start >= $1 AND hour_start < $2 "
            "ORDER BY hour_start",
            FIRST_HOUR,
            FIRST_HOUR + timedelta(hours=HOURS),
        )
    finally:
        await conn.close()
    return rows, sim, center


async def test_hourly_energy_matches_ground_truth(
    e2e_rows: tuple[list[asyncpg.Record], PlantSimulator, EnergyCenter],
) -> None:
    rows, sim, center = e2e_rows
    assert [r["hour_start"] for r in rows] == [
        FIRST_HOUR + timedelta(hours=k) for k in range(HOURS)
    ]
    truth = sim.ground_truth
    errors: dict[str, float] = {}
    for column in ("grid_import_kwh", "pv_kwh", "load_kwh", "battery_discharge_kwh"):
        expected_by_hour = truth.hourly(column)
        for row in rows:
            expected = expected_by_hour.get(row["hour_start"].astimezone(UTC), 0.0)
            got = row[column]
            if column in ("grid_import_kwh", "pv_kwh", "load_kwh"):
                assert expected > 10.0, f"{column} {row['hour_start']}: plant idle, test void"
            error = abs(got - expected)
            if column == "battery_discharge_kwh":
                # its counter has 0.1 kWh steps: each hour's two ends may each be off by one
                assert error <= max(TOLERANCE * expected, 2 * BATTERY_COUNTER_STEP_KWH), (
                    f"{column} at {row['hour_start']}: engine {got:.3f} vs truth {expected:.3f}"
                )
                continue
            rel = error / expected
            errors[column] = max(errors.get(column, 0.0), rel)
            assert rel <= TOLERANCE, (
                f"{column} at {row['hour_start']}: engine {got:.3f} vs truth {expected:.3f}"
            )
    print("max relative error per quantity:", {k: f"{v:.5%}" for k, v in errors.items()})
    # Nothing was lost on the way: every poll's readings reached the database.
    assert center.forwarder is not None and center.forwarder.stats.write_failures == 0
    stats = center.forwarder.stats
    assert stats.readings_forwarded == stats.readings_acknowledged > 0
    assert center.pipeline is not None and center.pipeline.stats.sink_failures == 0


async def test_scope2_is_energy_times_factor(
    e2e_rows: tuple[list[asyncpg.Record], PlantSimulator, EnergyCenter],
) -> None:
    rows, _sim, _center = e2e_rows
    assert rows
    for row in rows:
        assert row["location_factor_kg_per_kwh"] == 0.55  # MEE east grid, data year 2023
        assert row["market_factor_kg_per_kwh"] == 0.6096  # national excl. market non-fossil
        assert row["scope2_location_kg"] == pytest.approx(row["grid_import_kwh"] * 0.55, 1e-12)
        # the demo's June green-power contract and certificates cover part of the import
        covered = row["green_contract_kwh"] + row["certificate_kwh"]
        assert 0.0 < covered <= row["grid_import_kwh"] + 1e-9
        assert row["scope2_market_kg"] == pytest.approx(
            (row["grid_import_kwh"] - covered) * 0.6096, rel=1e-12, abs=1e-9
        )
