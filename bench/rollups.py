"""Power rollups on TimescaleDB: continuous aggregates against the gateway's tables.

The same ``readings`` hypertable feeds both candidates for ``power_1min`` and
``power_15min`` (mean, min, max and samples of the gauge metrics per bucket):

- **tables refreshed by the gateway**: what zerocarbon ships,
  :func:`zerocarbon.storage.rollups.refresh_rollups` over the times just written;
- **continuous aggregates**: a 1-minute cagg on ``readings`` and a 15-minute cagg on
  it (hierarchical), refreshed with ``refresh_continuous_aggregate`` over the window a
  refresh policy would cover (the last hour; the 15-minute one over its last buckets).

A site of ``--devices`` meters, each reporting power and voltage (gauges) and an energy
counter every ``--interval-s`` seconds, has ``--days`` of history loaded first (both
candidates are built from it: the full build time). Then, ``--minutes`` times: one
minute of readings is written (binary COPY, as the writer does) and each candidate
refreshed; the cost per minute of data is the median refresh time. Once more with a
late batch (one COPY: the next minute plus readings of two hours ago), the tables
refreshed over the batch's time range (``note_written``) and over its 15-minute buckets
(``note_times``). Last, the dashboard queries:
one device's power over a day of 1-minute buckets and over a week of 15-minute ones.

Prints each figure and the ratio tables/caggs (below 1: the tables are cheaper), and
last the JSON line ``{"metric": "refresh_ms_per_min", "value": tables, "ceiling": caggs,
"ratio": ...}``.

    ZEROCARBON_DATABASE_URL=postgresql://postgres@127.0.0.1:5433/postgres \\
        python bench/rollups.py [--devices 50] [--interval-s 5] [--days 7] [--minutes 30]

The server must offer TimescaleDB (preloaded); a scratch database is created and
dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np
from numpy.typing import NDArray

from zerocarbon.batch import datetime_to_us, us_to_datetime
from zerocarbon.config import StorageConfig
from zerocarbon.storage.copy_binary import READING_COLUMNS, encode_readings
from zerocarbon.storage.database import create_schema, drop_database, ensure_database
from zerocarbon.storage.maintenance import PendingTimes
from zerocarbon.storage.rollups import GAUGE_METRIC_IDS, refresh_rollups
from zerocarbon.storage.timescale import timescaledb_availability

DATABASE = "zc_bench_rollups"
POWER, ENERGY, VOLTAGE = 1, 2, 9  # metric ids
MINUTE_US = 60_000_000
T0 = datetime(2026, 3, 1, tzinfo=UTC)

CAGG_DDL = f"""
CREATE MATERIALIZED VIEW cagg_1min WITH (timescaledb.continuous,
    timescaledb.materialized_only = true) AS
SELECT time_bucket('1 minute', ts) AS bucket, device_id, metric_id,
       avg(value) AS avg_value, min(value) AS min_value, max(value) AS max_value,
       count(*) AS samples
FROM readings WHERE metric_id IN ({", ".join(map(str, GAUGE_METRIC_IDS))})
GROUP BY 1, 2, 3 WITH NO DATA;
CREATE MATERIALIZED VIEW cagg_15min WITH (timescaledb.continuous,
    timescaledb.materialized_only = true) AS
SELECT time_bucket('15 minutes', bucket) AS bucket, device_id, metric_id,
       sum(avg_value * samples) / sum(samples) AS avg_value, min(min_value) AS min_value,
       max(max_value) AS max_value, sum(samples)::bigint AS samples
FROM cagg_1min GROUP BY 1, 2, 3 WITH NO DATA;
"""
QUERY = """SELECT bucket, avg_value, min_value, max_value, samples FROM {table}
WHERE device_id = $1 AND metric_id = $2 AND bucket >= $3 AND bucket < $4 ORDER BY bucket"""


Columns = tuple[NDArray[np.int64], NDArray[np.int16], NDArray[np.int16], NDArray[np.float64]]


def readings(devices: int, interval_s: float, start_us: int, end_us: int) -> Columns:
    """Every device's power, voltage and energy every ``interval_s`` in [start, end):
    ts [us], device_id, metric_id, value."""
    step = int(interval_s * 1_000_000)
    times = np.arange(start_us, end_us, step, dtype=np.int64)
    n = times.shape[0]
    dev = np.repeat(np.arange(1, devices + 1, dtype=np.int16), 3 * n)
    met = np.tile(np.repeat(np.array([POWER, VOLTAGE, ENERGY], np.int16), n), devices)
    ts = np.tile(times, 3 * devices)
    rng = np.random.default_rng(start_us % 2**32)
    return ts, dev, met, rng.normal(100.0, 30.0, ts.shape[0])


async def copy(conn: asyncpg.Connection, rows: Columns) -> None:
    """One binary COPY of ``rows``, as the writer sends a batch."""
    data = encode_readings(*rows, np.zeros(rows[0].shape[0], np.int8))
    await conn.copy_to_table("readings", source=data, columns=READING_COLUMNS, format="binary")


async def timed(action: Callable[..., Awaitable[object]], *args: object) -> float:
    """Run ``action(*args)``; its duration [ms]."""
    start = time.perf_counter()
    await action(*args)
    return (time.perf_counter() - start) * 1000.0


async def refresh_ranges(conn: asyncpg.Connection, ranges: list[tuple[int, int]]) -> None:
    for lo, hi in ranges:
        await refresh_rollups(conn, lo, hi)


async def refresh_caggs(conn: asyncpg.Connection, start: datetime, end: datetime) -> None:
    """What the two refresh policies do: the 1-minute cagg over the window, then the
    15-minute one over the whole 15-minute buckets of it."""
    q_start = start - timedelta(minutes=start.minute % 15, seconds=start.second)
    q_end = end + timedelta(minutes=(-end.minute) % 15)
    await conn.execute(
        "CALL refresh_continuous_aggregate('cagg_1min', $1::timestamptz, $2::timestamptz)",
        start,
        end,
    )
    await conn.execute(
        "CALL refresh_continuous_aggregate('cagg_15min', $1::timestamptz, $2::timestamptz)",
        q_start,
        q_end,
    )


async def bench(server_url: str, devices: int, interval_s: float, days: int, minutes: int) -> None:
    url = await ensure_database(server_url, DATABASE, recreate=True)
    conn = await asyncpg.connect(url)
    try:
        if not (await timescaledb_availability(conn)).usable:
            raise SystemExit(f"{server_url}: TimescaleDB is not usable on this server")
        await create_schema(conn, StorageConfig(chunk_interval_h=24))
        await conn.execute(
            "SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs"
        )
        await conn.executemany(
            "INSERT INTO devices (key, role, protocol) VALUES ($1, 'load', 'mqtt')",
            [(f"meter_{i}",) for i in range(1, devices + 1)],
        )
        await conn.execute(CAGG_DDL)
        t0 = datetime_to_us(T0)
        history_end = t0 + days * 86_400 * 1_000_000
        load_start = time.perf_counter()
        hour_us = 3_600 * 1_000_000
        for h in range(days * 24):
            await copy(
                conn, readings(devices, interval_s, t0 + h * hour_us, t0 + (h + 1) * hour_us)
            )
        rows = await conn.fetchval("SELECT count(*) FROM readings")
        print(
            f"history: {days} days, {devices} devices x 3 metrics every {interval_s:g} s = "
            f"{rows:,} rows, loaded in {time.perf_counter() - load_start:.1f} s"
        )
        await conn.execute("ANALYZE readings")
        build_tables = await timed(refresh_rollups, conn, t0, history_end - 1)
        build_caggs = await timed(
            refresh_caggs, conn, us_to_datetime(t0), us_to_datetime(history_end)
        )
        print(f"full build: tables {build_tables:,.0f} ms, caggs {build_caggs:,.0f} ms")
        assert await conn.fetchval("SELECT sum(samples) FROM power_15min") == await conn.fetchval(
            "SELECT sum(samples) FROM cagg_15min"
        )

        per_min = 60.0 / interval_s * devices * 3
        tables_ms, caggs_ms = [], []
        now = history_end
        for _ in range(minutes):
            await copy(conn, readings(devices, interval_s, now, now + MINUTE_US))
            tables_ms.append(await timed(refresh_rollups, conn, now, now + MINUTE_US - 1))
            window = (
                us_to_datetime(now + MINUTE_US - 3_600_000_000),
                us_to_datetime(now + MINUTE_US),
            )
            caggs_ms.append(await timed(refresh_caggs, conn, *window))
            now += MINUTE_US
        t_min, c_min = statistics.median(tables_ms), statistics.median(caggs_ms)
        print(f"one minute of data ({per_min:,.0f} rows), refresh, median of {minutes}:")
        print(f"  tables refreshed by the gateway: {t_min:8.1f} ms (max {max(tables_ms):.1f})")
        print(f"  continuous aggregates:           {c_min:8.1f} ms (max {max(caggs_ms):.1f})")

        # a late batch: one COPY of the next minute plus ten readings of two hours ago
        late_start = now - 120 * MINUTE_US
        late: Columns = (
            late_start + 1_234_567 + 500_000 * np.arange(10, dtype=np.int64),
            np.ones(10, np.int16),
            np.full(10, POWER, np.int16),
            np.full(10, 7.0),
        )
        minute = readings(devices, interval_s, now, now + MINUTE_US)
        both = tuple(np.concatenate(pair) for pair in zip(late, minute, strict=True))
        await copy(conn, both)  # type: ignore[arg-type]
        # the writer's note of the batch: its time range, or its 15-minute buckets
        late_tables = await timed(refresh_rollups, conn, late_start, now + MINUTE_US - 1)
        noted = PendingTimes()
        noted.add_times(both[0])
        late_buckets = await timed(refresh_ranges, conn, noted.take())
        late_window = (us_to_datetime(late_start), us_to_datetime(now + MINUTE_US))
        late_caggs = await timed(refresh_caggs, conn, *late_window)
        print("late batch (one COPY: the next minute and 10 readings of 2 h before):")
        print(f"  tables, noted as its time range:  {late_tables:8.1f} ms")
        print(f"  tables, noted as its buckets:     {late_buckets:8.1f} ms")
        print(f"  continuous aggregates:            {late_caggs:8.1f} ms")
        for a, b in (("power_1min", "cagg_1min"), ("power_15min", "cagg_15min")):
            diff = await conn.fetchval(
                f"""SELECT count(*) FROM {a} t FULL JOIN {b} c USING (bucket, device_id, metric_id)
                    WHERE t.samples IS DISTINCT FROM c.samples
                       OR abs(t.avg_value - c.avg_value) > 1e-9 * abs(c.avg_value) + 1e-12"""
            )
            assert diff == 0, f"{a} and {b} differ in {diff} rows"

        await conn.execute("ANALYZE")
        end = us_to_datetime(now)
        queries = {
            "day of 1-minute buckets": ("power_1min", "cagg_1min", timedelta(days=1)),
            "week of 15-minute buckets": ("power_15min", "cagg_15min", timedelta(days=7)),
        }
        query_ratios = []
        for label, (table, cagg, span) in queries.items():
            times = {}
            for name in (table, cagg):
                sql = QUERY.format(table=name)
                samples = []
                for device in range(1, 21):
                    samples.append(await timed(conn.fetch, sql, device, POWER, end - span, end))
                times[name] = statistics.median(samples)
            query_ratios.append(times[table] / times[cagg])
            print(
                f"query, one device's power, {label}: tables {times[table]:.2f} ms, "
                f"caggs {times[cagg]:.2f} ms"
            )
        ratio = t_min / c_min
        print(f"ratio refresh per minute tables/caggs: {ratio:.2f}")
        print(f"ratio full build tables/caggs:         {build_tables / build_caggs:.2f}")
        print(
            f"ratio queries tables/caggs:            {' / '.join(f'{r:.2f}' for r in query_ratios)}"
        )
        print(
            json.dumps(
                {
                    "metric": "refresh_ms_per_min",
                    "value": round(t_min, 2),
                    "ceiling": round(c_min, 2),
                    "ratio": round(ratio, 4),
                }
            )
        )
    finally:
        await conn.close()
        await drop_database(server_url, DATABASE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--interval-s", type=float, default=5.0)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--minutes", type=int, default=30)
    args = parser.parse_args()
    url = os.environ.get("ZEROCARBON_DATABASE_URL")
    if not url:
        raise SystemExit("set ZEROCARBON_DATABASE_URL to a server with TimescaleDB")
    asyncio.run(bench(url, args.devices, args.interval_s, args.days, args.minutes))


if __name__ == "__main__":
    main()
