"""Upserts of hourly results: recomputing an hour replaces its rows."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from zerocarbon.carbon_engine.accounting import HourlyCarbon, HourlyEnergy
from zerocarbon.storage.database import Registry

CARBON_COLUMNS = (
    "hour_start",
    "grid_import_kwh",
    "grid_export_kwh",
    "pv_kwh",
    "battery_charge_kwh",
    "battery_discharge_kwh",
    "load_kwh",
    "production_units",
    "scope2_location_kg",
    "scope2_market_kg",
    "location_factor_kg_per_kwh",
    "market_factor_kg_per_kwh",
    "intensity_kg_per_kwh",
    "cfe_share",
)

_CARBON_UPSERT = f"""
INSERT INTO hourly_carbon ({", ".join(CARBON_COLUMNS)}, computed_at)
VALUES ({", ".join(f"${i + 1}" for i in range(len(CARBON_COLUMNS)))}, now())
ON CONFLICT (hour_start) DO UPDATE SET
{", ".join(f"{c} = EXCLUDED.{c}" for c in CARBON_COLUMNS[1:])}, computed_at = now()
"""

_ENERGY_UPSERT = """
INSERT INTO hourly_energy (hour_start, device_id, metric_id, delta, resets, computed_at)
VALUES ($1, $2, $3, $4, $5, now())
ON CONFLICT (hour_start, device_id, metric_id) DO UPDATE SET
delta = EXCLUDED.delta, resets = EXCLUDED.resets, computed_at = now()
"""


async def upsert_hourly(
    conn: asyncpg.Connection,
    registry: Registry,
    carbon: Sequence[HourlyCarbon],
    energy: Sequence[HourlyEnergy],
) -> None:
    """Write hourly carbon and per-device energy rows in one transaction."""
    carbon_args = [tuple(getattr(row, c) for c in CARBON_COLUMNS) for row in carbon]
    energy_args = [
        (
            row.hour_start,
            registry.device_ids[row.device],
            registry.metric_ids[row.metric],
            row.delta,
            row.resets,
        )
        for row in energy
        if row.device in registry.device_ids
    ]
    async with conn.transaction():
        if energy_args:
            await conn.executemany(_ENERGY_UPSERT, energy_args)
        if carbon_args:
            await conn.executemany(_CARBON_UPSERT, carbon_args)
