"""The API's read queries. Every function takes a pool (or a connection) and returns
response models or plain values; the routes and the live stream share them."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Literal, TypeAlias
from zoneinfo import ZoneInfo

import asyncpg

from zerocarbon.api.rollup import CARBON_ROLLUP, LINE_ROLLUP, Aggregate, Period
from zerocarbon.api.schemas import (
    HOURLY_COLUMNS,
    CarbonRollup,
    Device,
    DeviceCounts,
    HourlyCarbon,
    HourlyEnergy,
    HourlyLine,
    LatestValue,
    Line,
    LineRollup,
)

Db: TypeAlias = asyncpg.Pool | asyncpg.Connection  # where a query runs
HourlyTable: TypeAlias = Literal["hourly_carbon", "hourly_energy", "hourly_line"]

_HOURLY_SELECT = f"SELECT {', '.join(HOURLY_COLUMNS)} FROM hourly_carbon"

# hourly_energy keeps device and metric as keys of devices and metrics
_ENERGY_JOINED = {"device": "d.key", "metric": "m.name", "unit": "m.unit"}
_ENERGY_SELECT = (
    "SELECT "
    + ", ".join(f"{_ENERGY_JOINED.get(c, 'h.' + c)} AS {c}" for c in HourlyEnergy.model_fields)
    + """
FROM hourly_energy h
JOIN devices d ON d.id = h.device_id
JOIN metrics m ON m.id = h.metric_id
WHERE h.hour_start >= $1 AND h.hour_start < $2 AND ($3::text IS NULL OR d.key = $3)
ORDER BY h.hour_start, d.id, m.id"""
)

_LINE_SELECT = f"""SELECT {", ".join(HourlyLine.model_fields)} FROM hourly_line
WHERE hour_start >= $1 AND hour_start < $2 AND ($3::text IS NULL OR line = $3)
ORDER BY hour_start, line"""

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


async def newest_hour_start(db: Db, table: HourlyTable = "hourly_carbon") -> datetime | None:
    value: datetime | None = await db.fetchval(f"SELECT max(hour_start) FROM {table}")
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


async def hourly_energy(
    db: Db, start: datetime, end: datetime, device: str | None = None
) -> list[HourlyEnergy]:
    """Per-channel rows with ``start <= hour_start < end`` (of one device, or all),
    by hour, then device and metric in the registry's order."""
    rows = await db.fetch(_ENERGY_SELECT, start, end, device)
    return [HourlyEnergy.model_validate(dict(r)) for r in rows]


async def device_known(db: Db, device: str) -> bool:
    """Whether ``device`` is or was a device of the site (its rows are kept)."""
    return bool(await db.fetchval("SELECT EXISTS (SELECT 1 FROM devices WHERE key = $1)", device))


async def lines(db: Db) -> list[Line]:
    """The production lines named by the active devices, in the site file's order."""
    rows = await db.fetch(
        """SELECT line, array_agg(key ORDER BY id) AS devices FROM devices
           WHERE active AND line IS NOT NULL GROUP BY line ORDER BY min(id)"""
    )
    return [Line(id=r["line"], devices=list(r["devices"])) for r in rows]


async def line_known(db: Db, line: str) -> bool:
    """Whether a device names ``line`` or it has hourly rows."""
    return bool(
        await db.fetchval(
            """SELECT EXISTS (SELECT 1 FROM devices WHERE line = $1)
                   OR EXISTS (SELECT 1 FROM hourly_line WHERE line = $1)""",
            line,
        )
    )


async def hourly_lines(
    db: Db, start: datetime, end: datetime, line: str | None = None
) -> list[HourlyLine]:
    """Per-line rows with ``start <= hour_start < end`` (of one line, or all)."""
    rows = await db.fetch(_LINE_SELECT, start, end, line)
    return [HourlyLine.model_validate(dict(r)) for r in rows]


def _rollup_sql(
    period: Period, source: str, keys: tuple[str, ...], aggs: tuple[Aggregate, ...]
) -> str:
    """Group the hourly rows of ``source`` (a subquery selecting ``local_start``, the
    hour's local period start, and the table's columns) by period and ``keys``.

    Parameters: $1, $2 the first and the excluded period start (local dates, aligned to
    ``period``), $3 the site's time zone.
    """
    group = ", ".join(("h.local_start", *(f"h.{k}" for k in keys)))
    columns = [
        "h.local_start::date AS period_start",
        "h.local_start AT TIME ZONE $3 AS start_utc",
        f"(h.local_start + interval '{period.sql_interval}') AT TIME ZONE $3 AS end_utc",
        *(f"h.{k}" for k in keys),
        *(f"{a.sql} AS {a.name}" for a in aggs),
    ]
    return f"SELECT {', '.join(columns)}\nFROM ({source}) h\nGROUP BY {group} ORDER BY {group}"


def _local_period(period: Period, alias: str) -> str:
    return f"date_trunc('{period.sql_unit}', {alias}.hour_start AT TIME ZONE $3) AS local_start"


def _in_range(alias: str) -> str:
    """The hours of the periods [$1, $2): from local midnight of $1 to that of $2."""
    return (
        f"{alias}.hour_start >= $1::date::timestamp AT TIME ZONE $3 "
        f"AND {alias}.hour_start < $2::date::timestamp AT TIME ZONE $3"
    )


async def carbon_rollup(
    db: Db, period: Period, start: date, end: date, tz: ZoneInfo
) -> list[CarbonRollup]:
    """The site's periods starting in ``[start, end)`` (period starts, local dates) that
    have hourly rows, oldest first."""
    source = f"SELECT {_local_period(period, 'c')}, c.* FROM hourly_carbon c WHERE {_in_range('c')}"
    rows = await db.fetch(_rollup_sql(period, source, (), CARBON_ROLLUP), start, end, tz.key)
    return [CarbonRollup.model_validate(dict(r)) for r in rows]


async def line_rollup(
    db: Db, period: Period, start: date, end: date, tz: ZoneInfo, line: str | None = None
) -> list[LineRollup]:
    """Each line's periods starting in ``[start, end)`` that have hourly rows, by period
    then line; an hour counts as complete when the site's row of that hour is."""
    source = f"""SELECT {_local_period(period, "l")}, l.*, coalesce(c.complete, false) AS complete
        FROM hourly_line l LEFT JOIN hourly_carbon c ON c.hour_start = l.hour_start
        WHERE {_in_range("l")} AND ($4::text IS NULL OR l.line = $4)"""
    rows = await db.fetch(
        _rollup_sql(period, source, ("line",), LINE_ROLLUP), start, end, tz.key, line
    )
    return [LineRollup.model_validate(dict(r)) for r in rows]


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
