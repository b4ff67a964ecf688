"""The power views of the dashboards: ``power_1min`` and ``power_15min``.

Both have the same columns on every layout: ``bucket`` (timestamptz, the bucket's
start, buckets aligned on UTC), ``device_id``, ``metric_id``, ``avg_value``,
``min_value``, ``max_value`` (in the metric's unit) and ``samples`` (readings in the
bucket), over the gauge metrics (:data:`GAUGE_METRIC_IDS`: active power, state of
charge, voltage, frequency). The 15-minute view is built from the 1-minute one: its
average is the 1-minute averages weighted by their samples, so it equals the average
of the readings.

They are tables refreshed by the gateway (:func:`refresh_rollups`, run by the
maintenance job over the times the writer reported): each refresh re-aggregates whole
buckets from ``readings`` and upserts them, so a late reading is folded into its
bucket the next time round. ``docs/architecture.md`` gives the measurements
(``bench/rollups.py``) that chose these tables over TimescaleDB continuous aggregates.

Refreshes read ``readings`` series by series through its unique index
(device_id, metric_id, ts), so no index is added to ``readings`` (ingest pays nothing)
and the cost of a refresh follows the rows refreshed, not the size of the day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import asyncpg

from zerocarbon.batch import datetime_to_us, us_to_datetime
from zerocarbon.metering.metrics import METRICS, MetricKind

Step = Literal["1min", "15min"]

GAUGE_METRIC_IDS: tuple[int, ...] = tuple(m.id for m in METRICS if m.kind is MetricKind.GAUGE)
ROLLUP_COLUMNS = (
    "bucket",
    "device_id",
    "metric_id",
    "avg_value",
    "min_value",
    "max_value",
    "samples",
)


@dataclass(frozen=True, slots=True)
class RollupView:
    step: Step
    table: str
    width: timedelta  # bucket width

    @property
    def width_us(self) -> int:
        return int(self.width / timedelta(microseconds=1))

    def floor_us(self, ts_us: int) -> int:
        """Start of the bucket holding ``ts_us`` [us] (buckets aligned on the epoch)."""
        return ts_us - ts_us % self.width_us


POWER_1MIN = RollupView("1min", "power_1min", timedelta(minutes=1))
POWER_15MIN = RollupView("15min", "power_15min", timedelta(minutes=15))
VIEWS: dict[Step, RollupView] = {v.step: v for v in (POWER_1MIN, POWER_15MIN)}

_ORIGIN = "timestamptz '2000-01-01 00:00:00+00'"  # date_bin origin: buckets on UTC


def rollup_tables_ddl() -> str:
    """The two tables and the refresh watermark (``rollup_state``)."""
    ddl = [
        f"""CREATE TABLE IF NOT EXISTS {view.table} (
    bucket timestamptz NOT NULL,
    device_id smallint NOT NULL,
    metric_id smallint NOT NULL,
    avg_value double precision NOT NULL,
    min_value double precision NOT NULL,
    max_value double precision NOT NULL,
    samples bigint NOT NULL,
    PRIMARY KEY (device_id, metric_id, bucket)
);"""
        for view in VIEWS.values()
    ]
    ddl.append(
        """CREATE TABLE IF NOT EXISTS rollup_state (
    name text PRIMARY KEY,
    refreshed_through timestamptz,  -- newest reading time a refresh has covered
    refreshed_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO rollup_state (name) VALUES ('power') ON CONFLICT DO NOTHING;"""
    )
    return "\n".join(ddl)


_SET_AGGREGATES = """ON CONFLICT (device_id, metric_id, bucket) DO UPDATE SET
    avg_value = EXCLUDED.avg_value, min_value = EXCLUDED.min_value,
    max_value = EXCLUDED.max_value, samples = EXCLUDED.samples
WHERE (p.avg_value, p.min_value, p.max_value, p.samples)
    IS DISTINCT FROM (EXCLUDED.avg_value, EXCLUDED.min_value, EXCLUDED.max_value,
                      EXCLUDED.samples)"""

# series by series (devices x gauge metrics), each through the unique index of readings
_REFRESH_1MIN = f"""
INSERT INTO power_1min AS p ({", ".join(ROLLUP_COLUMNS)})
SELECT date_bin('1 minute', r.ts, {_ORIGIN}), d.id, m.id,
       avg(r.value), min(r.value), max(r.value), count(*)
FROM devices d
CROSS JOIN unnest($3::int2[]) AS m (id)
CROSS JOIN LATERAL (
    SELECT ts, value FROM readings
    WHERE device_id = d.id AND metric_id = m.id AND ts >= $1 AND ts < $2
    OFFSET 0  -- kept a per-series index scan (not flattened into a scan of the day)
) r
GROUP BY 1, 2, 3
{_SET_AGGREGATES}"""

_REFRESH_15MIN = f"""
INSERT INTO power_15min AS p ({", ".join(ROLLUP_COLUMNS)})
SELECT date_bin('15 minutes', r.bucket, {_ORIGIN}), d.id, m.id,
       sum(r.avg_value * r.samples) / sum(r.samples), min(r.min_value), max(r.max_value),
       sum(r.samples)
FROM devices d
CROSS JOIN unnest($3::int2[]) AS m (id)
CROSS JOIN LATERAL (
    SELECT bucket, avg_value, min_value, max_value, samples FROM power_1min
    WHERE device_id = d.id AND metric_id = m.id AND bucket >= $1 AND bucket < $2
    OFFSET 0
) r
GROUP BY 1, 2, 3
{_SET_AGGREGATES}"""


@dataclass(frozen=True, slots=True)
class RefreshResult:
    start: datetime  # first 15-minute bucket refreshed
    end: datetime  # end of the last one
    rows_1min: int  # 1-minute rows written or changed
    rows_15min: int


async def refresh_rollups(
    conn: asyncpg.Connection, min_ts_us: int, max_ts_us: int
) -> RefreshResult:
    """Re-aggregate every bucket holding a time in ``[min_ts_us, max_ts_us]`` [us]: the
    1-minute buckets from ``readings``, then the 15-minute buckets around them from
    ``power_1min`` (whole 15-minute buckets, so they see all their minutes). One
    transaction; the watermark in ``rollup_state`` moves to ``max_ts_us`` if later."""
    lo = POWER_15MIN.floor_us(min_ts_us)
    hi = POWER_15MIN.floor_us(max_ts_us) + POWER_15MIN.width_us
    lo_1 = POWER_1MIN.floor_us(min_ts_us)
    hi_1 = POWER_1MIN.floor_us(max_ts_us) + POWER_1MIN.width_us
    gauges = list(GAUGE_METRIC_IDS)
    async with conn.transaction():
        # a plan for the given times: a generic one (chosen after 5 runs of a prepared
        # statement) cannot prune chunks and partitions at plan time, and took 30x longer;
        # and no JIT: compiling took 200 ms where the query runs in 20 (bench/rollups.py)
        await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL jit = off")
        status_1 = await conn.execute(
            _REFRESH_1MIN, us_to_datetime(lo_1), us_to_datetime(hi_1), gauges
        )
        status_15 = await conn.execute(
            _REFRESH_15MIN, us_to_datetime(lo), us_to_datetime(hi), gauges
        )
        await conn.execute(
            """UPDATE rollup_state SET refreshed_at = now(),
                   refreshed_through = greatest(refreshed_through, $1)
               WHERE name = 'power'""",
            us_to_datetime(max_ts_us),
        )
    return RefreshResult(
        us_to_datetime(lo),
        us_to_datetime(hi),
        int(status_1.split()[-1]),
        int(status_15.split()[-1]),
    )


async def refreshed_through(conn: asyncpg.Connection) -> datetime | None:
    """Newest reading time a refresh has covered (None: none yet)."""
    value: datetime | None = await conn.fetchval(
        "SELECT refreshed_through FROM rollup_state WHERE name = 'power'"
    )
    return value


async def newest_reading_us(conn: asyncpg.Connection) -> int | None:
    """Newest reading time of a gauge metric [us] (from ``latest_values``)."""
    value: datetime | None = await conn.fetchval(
        "SELECT max(ts) FROM latest_values WHERE metric_id = ANY($1::int2[])",
        list(GAUGE_METRIC_IDS),
    )
    return None if value is None else datetime_to_us(value)


async def gauge_reading_span(conn: asyncpg.Connection) -> tuple[int, int] | None:
    """Oldest and newest stored reading time of a gauge metric [us], None without any
    (series by series, through the unique index)."""
    row = await conn.fetchrow(
        """SELECT min(x.lo) AS lo, max(x.hi) AS hi
           FROM devices d CROSS JOIN unnest($1::int2[]) AS m (id)
           CROSS JOIN LATERAL (SELECT min(ts) AS lo, max(ts) AS hi FROM readings
                               WHERE device_id = d.id AND metric_id = m.id) x""",
        list(GAUGE_METRIC_IDS),
    )
    if row is None or row["lo"] is None:
        return None
    return datetime_to_us(row["lo"]), datetime_to_us(row["hi"])
