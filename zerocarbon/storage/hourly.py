"""Upserts of hourly rows (recomputing an hour replaces its rows), the stored state a
restarted engine continues from, and the readings a late-data recompute needs.

Columns come from the row types of :mod:`zerocarbon.rows` (see
:func:`zerocarbon.storage.schema.stored_columns`); nothing here names a column twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple
from datetime import datetime

import asyncpg
import numpy as np
from numpy.typing import NDArray

from zerocarbon.batch import datetime_to_us
from zerocarbon.rows import HourlyCarbon, HourlyEnergy, HourlyLine
from zerocarbon.storage.database import Registry
from zerocarbon.storage.schema import ROW_KEYS, stored_columns


def _upsert_sql(table: str) -> str:
    cols = [c for c, _t, _n in stored_columns(table)]
    keys = ROW_KEYS[table]
    values = ", ".join(f"${i + 1}" for i in range(len(cols)))
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c not in keys)
    return (
        f"INSERT INTO {table} ({', '.join(cols)}, computed_at) VALUES ({values}, now()) "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}, computed_at = now()"
    )


_UPSERT = {t: _upsert_sql(t) for t in ROW_KEYS}


async def upsert_hourly(
    conn: asyncpg.Connection,
    registry: Registry,
    carbon: Sequence[HourlyCarbon],
    energy: Sequence[HourlyEnergy],
    lines: Sequence[HourlyLine] = (),
) -> None:
    """Write hourly carbon, per-channel energy and per-line rows in one transaction."""
    energy_args = [
        (row.hour_start, registry.device_ids[row.device], registry.metric_ids[row.metric])
        + astuple(row)[3:]
        for row in energy
        if row.device in registry.device_ids
    ]
    async with conn.transaction():
        if energy_args:
            await conn.executemany(_UPSERT["hourly_energy"], energy_args)
        if lines:
            await conn.executemany(_UPSERT["hourly_line"], [astuple(r) for r in lines])
        if carbon:
            await conn.executemany(_UPSERT["hourly_carbon"], [astuple(r) for r in carbon])


async def load_hourly_energy(conn: asyncpg.Connection, since: datetime) -> list[HourlyEnergy]:
    """Stored per-channel rows of hours starting at or after ``since``."""
    cols = ", ".join("h." + c for c, _t, _n in stored_columns("hourly_energy")[3:])
    rows = await conn.fetch(
        f"""SELECT h.hour_start, d.key AS device, m.name AS metric, {cols}
            FROM hourly_energy h
            JOIN devices d ON d.id = h.device_id
            JOIN metrics m ON m.id = h.metric_id
            WHERE h.hour_start >= $1 ORDER BY h.hour_start""",
        since,
    )
    return [HourlyEnergy(*tuple(r)) for r in rows]


async def load_latest_points(conn: asyncpg.Connection) -> list[tuple[str, str, datetime, float]]:
    """(device, metric, ts, value) of the newest stored reading of every series."""
    rows = await conn.fetch(
        """SELECT d.key AS device, m.name AS metric, lv.ts, lv.value
           FROM latest_values lv
           JOIN devices d ON d.id = lv.device_id
           JOIN metrics m ON m.id = lv.metric_id"""
    )
    return [(r["device"], r["metric"], r["ts"], float(r["value"])) for r in rows]


async def readings_around(
    conn: asyncpg.Connection,
    device_id: int,
    metric_id: int,
    start: datetime,
    end: datetime,
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """One series' stored readings in [start, end) plus the last before and the first
    after: what :meth:`CarbonEngine.recompute` needs. Times in POSIX us."""
    rows = await conn.fetch(
        """(SELECT ts, value FROM readings WHERE device_id = $1 AND metric_id = $2
              AND ts < $3 ORDER BY ts DESC LIMIT 1)
           UNION ALL
           (SELECT ts, value FROM readings WHERE device_id = $1 AND metric_id = $2
              AND ts >= $3 AND ts < $4)
           UNION ALL
           (SELECT ts, value FROM readings WHERE device_id = $1 AND metric_id = $2
              AND ts >= $4 ORDER BY ts LIMIT 1)""",
        device_id,
        metric_id,
        start,
        end,
    )
    ts = np.array([datetime_to_us(r["ts"]) for r in rows], np.int64)
    values = np.array([r["value"] for r in rows], np.float64)
    return ts, values
