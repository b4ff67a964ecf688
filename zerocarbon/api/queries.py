"""The API's read queries. Every function takes a pool (or a connection) and returns
response models or plain values; the routes and the live stream share them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TypeAlias

import asyncpg

from zerocarbon.api.schemas import (
    HOURLY_COLUMNS,
    Device,
    DeviceCounts,
    HourlyCarbon,
    LatestValue,
)

Db: TypeAlias = asyncpg.Pool | asyncpg.Connection  # where a query runs

_HOURLY_SELECT = f"SELECT {', '.join(HOURLY_COLUMNS)} FROM hourly_carbon"

_LATEST_SELECT = """
SELECT d.key AS device, m.name AS metric, m.unit, lv.ts, lv.value, lv.quality
FROM latest_values lv
JOIN devices d ON d.id = lv.device_id
JOIN metrics m ON m.id = lv.metric_id
WHERE d.active
"""


async def ping(db: Db, *, timeout_s: float) -> None:
    """Run ``SELECT 1``; raise on any database trouble."""
    await db.fetchval("SELECT 1", timeout=timeout_s)


async def devices(db: Db) -> list[Device]:
    rows = await db.fetch(
        "SELECT key, name, role, protocol, line, rated_power_kw FROM devices WHERE active "
        "ORDER BY id"
    )
    return [
        Device(
            id=r["key"],
            name=r["name"],
            role=r["role"],
            protocol=r["protocol"],
            line=r["line"],
            rated_power_kw=r["rated_power_kw"],
        )
        for r in rows
    ]


async def device_exists(db: Db, device: str) -> bool:
    return bool(
        await db.fetchval("SELECT EXISTS (SELECT 1 FROM devices WHERE key = $1 AND active)", device)
    )


async def latest_of_device(db: Db, device: str) -> list[LatestValue]:
    rows = await db.fetch(_LATEST_SELECT + " AND d.key = $1 ORDER BY m.id", device)
    return [_latest_value(r) for r in rows]


async def latest_all(db: Db) -> list[tuple[str, LatestValue]]:
    """Every latest value as (device id, value), ordered by device and metric."""
    rows = await db.fetch(_LATEST_SELECT + " ORDER BY d.id, m.id")
    return [(r["device"], _latest_value(r)) for r in rows]


def _latest_value(r: asyncpg.Record) -> LatestValue:
    return LatestValue(
        metric=r["metric"], unit=r["unit"], ts=r["ts"], value=r["value"], quality=r["quality"]
    )


async def newest_reading_ts(db: Db) -> datetime | None:
    """The data's "now": the newest timestamp among the latest values."""
    value: datetime | None = await db.fetchval("SELECT max(ts) FROM latest_values")
    return value


async def newest_hour_start(db: Db) -> datetime | None:
    value: datetime | None = await db.fetchval("SELECT max(hour_start) FROM hourly_carbon")
    return value


async def hourly(db: Db, start: datetime, end: datetime) -> list[HourlyCarbon]:
    """Rows with ``start <= hour_start < end``, oldest first."""
    rows = await db.fetch(
        _HOURLY_SELECT + " WHERE hour_start >= $1 AND hour_start < $2 ORDER BY hour_start",
        start,
        end,
    )
    return [HourlyCarbon.model_validate(dict(r)) for r in rows]


async def hourly_computed_since(db: Db, since: datetime) -> list[HourlyCarbon]:
    """Rows with ``computed_at > since``, oldest hour first."""
    rows = await db.fetch(_HOURLY_SELECT + " WHERE computed_at > $1 ORDER BY hour_start", since)
    return [HourlyCarbon.model_validate(dict(r)) for r in rows]


async def hourly_versions_since(db: Db, margin: timedelta) -> dict[datetime, datetime]:
    """hour_start -> computed_at of the rows computed within ``margin`` of the newest."""
    rows = await db.fetch(
        """SELECT hour_start, computed_at FROM hourly_carbon
           WHERE computed_at > (SELECT max(computed_at) FROM hourly_carbon) - $1::interval""",
        margin,
    )
    return {r["hour_start"]: r["computed_at"] for r in rows}


async def device_counts(db: Db) -> DeviceCounts:
    rows = await db.fetch(
        """SELECT d.role, count(*) AS total,
                  count(*) FILTER (WHERE EXISTS (
                      SELECT 1 FROM latest_values lv WHERE lv.device_id = d.id)) AS reporting
           FROM devices d WHERE d.active GROUP BY d.role ORDER BY d.role"""
    )
    return DeviceCounts(
        total=sum(r["total"] for r in rows),
        reporting=sum(r["reporting"] for r in rows),
        by_role={r["role"]: r["total"] for r in rows},
    )
