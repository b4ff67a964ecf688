"""Upserts of hourly results: recomputing an hour replaces its rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import asyncpg

from zerocarbon.carbon_engine.accounting import HourlyCarbon, HourlyEnergy
from zerocarbon.storage.database import Registry

CARBON_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(HourlyCarbon))

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


@dataclass(frozen=True, slots=True)
class CounterState:
    """What an earlier run stored about one counter series."""

    device: str
    metric: str
    last_ts_s: float  # newest stored reading [POSIX s]
    last_value: float  # its value [metric unit]
    hourly: dict[int, tuple[float, int]]  # hour start [POSIX s] -> (increase, resets)


async def load_counter_state(conn: asyncpg.Connection, keep_hours: int) -> list[CounterState]:
    """The newest stored value of every counter series and its hourly sums of the last
    ``keep_hours`` hours, for the carbon engine to continue where a previous run ended."""
    latest = await conn.fetch(
        """SELECT d.key AS device, m.name AS metric, extract(epoch FROM lv.ts) AS ts_s, lv.value
           FROM latest_values lv
           JOIN devices d ON d.id = lv.device_id
           JOIN metrics m ON m.id = lv.metric_id
           WHERE m.kind = 'counter'"""
    )
    if not latest:
        return []
    newest_s = max(float(r["ts_s"]) for r in latest)
    since_s = (int(newest_s) // 3600 - keep_hours) * 3600
    hourly_rows = await conn.fetch(
        """SELECT d.key AS device, m.name AS metric,
                  extract(epoch FROM h.hour_start)::bigint AS hour_s, h.delta, h.resets
           FROM hourly_energy h
           JOIN devices d ON d.id = h.device_id
           JOIN metrics m ON m.id = h.metric_id
           WHERE h.hour_start >= to_timestamp($1)""",
        since_s,
    )
    sums: dict[tuple[str, str], dict[int, tuple[float, int]]] = {}
    for r in hourly_rows:
        sums.setdefault((r["device"], r["metric"]), {})[int(r["hour_s"])] = (
            float(r["delta"]),
            int(r["resets"]),
        )
    return [
        CounterState(
            r["device"],
            r["metric"],
            float(r["ts_s"]),
            float(r["value"]),
            sums.get((r["device"], r["metric"]), {}),
        )
        for r in latest
    ]
