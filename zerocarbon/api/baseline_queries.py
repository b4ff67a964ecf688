"""SQL of ``GET /api/v1/lines/{line}/baseline``: a line's closed hours and the hourly
means of relevant variables.

A line hour is *closed* when its ``hourly_carbon`` row is ``complete`` (every meter
covered the hour) or a later hour has a ``hourly_carbon`` row (the hour is over and data
went on); the newest, still-filling hour is left out unless already complete.
"""

from __future__ import annotations

import math
from datetime import datetime

from zerocarbon.api.queries import Db


async def closed_line_hours(
    db: Db, line: str, start: datetime | None, end: datetime | None
) -> list[tuple[datetime, float, float]]:
    """``(hour_start, energy_kwh, production_units)`` of ``line``'s closed hours with
    ``start <= hour_start < end`` (open bounds when None), oldest first."""
    rows = await db.fetch(
        """SELECT l.hour_start, l.energy_kwh, l.production_units
           FROM hourly_line l
           LEFT JOIN hourly_carbon c ON c.hour_start = l.hour_start
           WHERE l.line = $1
             AND ($2::timestamptz IS NULL OR l.hour_start >= $2)
             AND ($3::timestamptz IS NULL OR l.hour_start < $3)
             AND (c.complete OR l.hour_start < (SELECT max(hour_start) FROM hourly_carbon))
           ORDER BY l.hour_start""",
        line,
        start,
        end,
    )
    return [(r["hour_start"], float(r["energy_kwh"]), float(r["production_units"])) for r in rows]


async def hourly_means(
    db: Db, device: str, metric: str, start: datetime, end: datetime
) -> dict[datetime, float]:
    """Mean of ``device``'s ``metric`` readings per UTC hour in ``[start, end)``
    (hours on the POSIX epoch's grid, whatever the session's time zone)."""
    rows = await db.fetch(
        """SELECT to_timestamp(floor(extract(epoch FROM r.ts) / 3600) * 3600) AS hour_start,
                  avg(r.value) AS mean
           FROM readings r
           JOIN devices d ON d.id = r.device_id
           JOIN metrics m ON m.id = r.metric_id
           WHERE d.key = $1 AND m.name = $2 AND r.ts >= $3 AND r.ts < $4
           GROUP BY 1""",
        device,
        metric,
        start,
        end,
    )
    return {r["hour_start"]: float(r["mean"]) for r in rows if math.isfinite(r["mean"])}
