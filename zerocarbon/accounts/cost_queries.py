"""What the energy cost reads from the database: the site's hourly rows
(``hourly_carbon``), the lines' month totals (``hourly_line``) and the grid meters'
15-minute import demand (``power_15min``). The computation is
:mod:`zerocarbon.accounts.cost`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime
from typing import TypeAlias

import asyncpg

from zerocarbon.accounts.cost import LineEnergy
from zerocarbon.metering.metrics import METRICS
from zerocarbon.rows import HourlyCarbon

__all__ = ["Db", "hourly_carbon_rows", "import_demand_15min", "line_energy", "newest_hour_start"]

Db: TypeAlias = asyncpg.Pool | asyncpg.Connection  # where a query runs

ACTIVE_POWER_METRIC_ID = next(m.id for m in METRICS if m.name == "active_power_kw")
_CARBON_COLUMNS = ", ".join(f.name for f in fields(HourlyCarbon))


async def newest_hour_start(db: Db) -> datetime | None:
    """The newest ``hour_start`` of ``hourly_carbon``; None when it is empty."""
    value: datetime | None = await db.fetchval("SELECT max(hour_start) FROM hourly_carbon")
    return value


async def hourly_carbon_rows(db: Db, start: datetime, end: datetime) -> list[HourlyCarbon]:
    """The site's hourly rows with ``start <= hour_start < end``, oldest first."""
    rows = await db.fetch(
        f"""SELECT {_CARBON_COLUMNS} FROM hourly_carbon
            WHERE hour_start >= $1 AND hour_start < $2 ORDER BY hour_start""",
        start,
        end,
    )
    return [HourlyCarbon(*tuple(r)) for r in rows]


async def line_energy(db: Db, start: datetime, end: datetime) -> list[LineEnergy]:
    """Each line's energy [kWh] and output summed over ``[start, end)``, by line id."""
    rows = await db.fetch(
        """SELECT line, sum(energy_kwh) AS energy_kwh, sum(production_units) AS units
           FROM hourly_line WHERE hour_start >= $1 AND hour_start < $2
           GROUP BY line ORDER BY line""",
        start,
        end,
    )
    return [LineEnergy(r["line"], float(r["energy_kwh"]), float(r["units"])) for r in rows]


async def import_demand_15min(
    db: Db, start: datetime, end: datetime, grid_devices: Sequence[str]
) -> list[tuple[datetime, float]]:
    """(bucket start, kW) of the site's 15-minute import demand in ``[start, end)``: the
    sum over the grid meters of their ``power_15min`` average ``active_power_kw``
    (a grid meter's sign: + import, - export), oldest first."""
    rows = await db.fetch(
        """SELECT p.bucket, sum(p.avg_value) AS demand_kw
           FROM power_15min p JOIN devices d ON d.id = p.device_id
           WHERE d.key = ANY($3::text[]) AND p.metric_id = $4
             AND p.bucket >= $1 AND p.bucket < $2
           GROUP BY p.bucket ORDER BY p.bucket""",
        start,
        end,
        list(grid_devices),
        ACTIVE_POWER_METRIC_ID,
    )
    return [(r["bucket"], float(r["demand_kw"])) for r in rows]
