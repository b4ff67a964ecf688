"""Ingest throughput: readings from the pipeline into the indexed readings table.

Ceilings, into a table like readings (same unique index, same kind: a hypertable with
the same chunk interval, or daily range partitions), batch by batch:

- bare ``copy_records_to_table`` of pre-built Python records (asyncpg's own encoder):
  the ceiling of the JSON line;
- bare binary COPY: ``copy_to_table(format="binary")`` of the very bytes the writer
  would send, encoded beforehand (the server's cost alone).

Measured, with ingest idempotent (the unique index on series and time is always on):

- the gateway's path: ``Pipeline.put`` of collector-sized batches (admission off) ->
  the on-disk spool (fsync per batch, the default policy) -> the forwarder -> the
  ``ReadingWriter`` (binary COPY of new rows), timed until the last row is stored: the
  value of the JSON line;
- the same without the spool (the pipeline straight into the writer);
- ``ReadingWriter.store`` of rows already stored (a replay or a redelivery): the
  insert-only-new path through a staging table.

Prints rows/s of each and the ratios, medians over ``--repeat`` runs, and last the JSON
line ``{"metric": "rows_per_s", "value": ..., "ceiling": ..., "ratio": ...}``.

    python bench/ingest.py [--rows 300000] [--batch 5000] [--repeat 5]

Database: ZEROCARBON_DATABASE_URL's server if set, else an embedded server in a
temporary folder. A scratch database is created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import numpy as np

from zerocarbon.batch import ReadingBatch, SeriesRegistry, datetime_to_us, us_to_datetime
from zerocarbon.config import StorageConfig, load_site
from zerocarbon.ingest.pipeline import Pipeline
from zerocarbon.metering.metrics import METRICS
from zerocarbon.storage.copy_binary import encode_readings
from zerocarbon.storage.database import (
    create_schema,
    drop_database,
    ensure_database,
    open_pool,
    register_site,
)
from zerocarbon.storage.embedded import EmbeddedPostgres
from zerocarbon.storage.forwarder import SpoolForwarder
from zerocarbon.storage.partitions import open_layout
from zerocarbon.storage.spool import Spool
from zerocarbon.storage.timescale import is_hypertable
from zerocarbon.storage.writer import READING_COLUMNS, ReadingWriter

SITE = Path(__file__).resolve().parents[1] / "examples" / "demo-site.toml"
T0 = datetime(2026, 1, 1, tzinfo=UTC)  # the rows span about three hours from here


async def bench(server_url: str, rows: int, batch: int, repeat: int) -> None:
    site = load_site(SITE)
    url = await ensure_database(server_url, "zc_bench_ingest", recreate=True)
    pool = await open_pool(url)
    try:
        async with pool.acquire() as conn:
            await create_schema(conn)
            registry = await register_site(conn, site)
            layout = await open_layout(conn, StorageConfig())
            kind = await create_bare_like_readings(conn)
        series = SeriesRegistry.for_site(site)
        t0_us = datetime_to_us(T0)
        i = np.arange(rows)
        devices = np.array([series.device_index(d.id) for d in site.devices])[i % 6]
        power = series.id(site.devices[0].id, "active_power_kw") % 64
        whole = ReadingBatch.of(
            devices * 64 + power, t0_us + (i // 30) * 1_000_000 + i % 30, i.astype(np.float64)
        )
        chunks = [whole.take(np.arange(k, min(k + batch, rows))) for k in range(0, rows, batch)]
        device_db = np.array([registry.device_ids[d] for d in series.device_ids])
        metric_db = np.full(64, -1)
        for m in METRICS:
            metric_db[m.id] = registry.metric_ids[m.name]

        def db_keys(b: ReadingBatch) -> tuple[np.ndarray, np.ndarray]:
            return device_db[series.device_index_of[b.series]], metric_db[
                series.metric_id_of[b.series]
            ]

        encoded = [encode_readings(c.ts_us, *db_keys(c), c.value, c.quality) for c in chunks]
        records = [
            [
                (us_to_datetime(t), d, m, v, q)
                for t, d, m, v, q in zip(
                    c.ts_us.tolist(),
                    *(k.tolist() for k in db_keys(c)),
                    c.value.tolist(),
                    c.quality.tolist(),
                    strict=True,
                )
            ]
            for c in chunks
        ]
        copy_rates, records_rates, writer_rates, replay_rates = [], [], [], []
        spooled_rates: list[float] = []
        for _ in range(repeat):
            async with pool.acquire() as conn:
                await conn.execute("TRUNCATE bare, readings, latest_values")
                start = time.perf_counter()
                for data in encoded:
                    await conn.copy_to_table(
                        "bare", source=data, columns=READING_COLUMNS, format="binary"
                    )
                copy_rates.append(rows / (time.perf_counter() - start))
                await conn.execute("TRUNCATE bare")
                start = time.perf_counter()
                for recs in records:
                    await conn.copy_records_to_table("bare", records=recs, columns=READING_COLUMNS)
                records_rates.append(rows / (time.perf_counter() - start))
            spooled_rates.append(
                await spooled_run(
                    pool, ReadingWriter(pool, registry, series, layout=layout), chunks
                )
            )
            async with pool.acquire() as conn:
                await conn.execute("TRUNCATE readings, latest_values")
            writer = ReadingWriter(pool, registry, series, layout=layout)
            pipeline = Pipeline([writer], max_queued=len(chunks) + 1, batch_rows=batch)
            start = time.perf_counter()
            runner = asyncio.create_task(pipeline.run())
            for chunk in chunks:
                await pipeline.put(chunk)
            await pipeline.close()
            await runner
            writer_rates.append(rows / (time.perf_counter() - start))
            assert writer.stats.rows_written == rows
            again = ReadingWriter(pool, registry, series, layout=layout)
            start = time.perf_counter()
            for chunk in chunks:
                await again.store(chunk)
            replay_rates.append(rows / (time.perf_counter() - start))
            assert again.stats.rows_written == 0 and again.stats.duplicates_skipped == rows
        copy, recs, direct, replay, mine = (
            statistics.median(r)
            for r in (copy_rates, records_rates, writer_rates, replay_rates, spooled_rates)
        )
        print(f"rows={rows} batch={batch} repeat={repeat} (medians); readings: {kind}")
        print(f"copy_records_to_table of the same rows (ceiling): {recs:,.0f} rows/s")
        print(f"bare binary COPY of the same bytes:               {copy:,.0f} rows/s")
        print(f"pipeline -> spool -> forwarder -> writer:         {mine:,.0f} rows/s")
        print(f"pipeline -> writer (no spool):                    {direct:,.0f} rows/s")
        print(f"ReadingWriter replaying stored rows (skipped):    {replay:,.0f} rows/s")
        print(f"ratio gateway path/copy_records_to_table:  {mine / recs:.2f}")
        print(f"ratio gateway path/bare binary COPY:       {mine / copy:.2f}")
        print(f"ratio no-spool/copy_records_to_table:      {direct / recs:.2f}")
        print(f"ratio replay/copy_records_to_table:        {replay / recs:.2f}")
        print(
            json.dumps(
                {
                    "metric": "rows_per_s",
                    "value": round(mine, 1),
                    "ceiling": round(recs, 1),
                    "ratio": round(mine / recs, 4),
                }
            )
        )
    finally:
        await pool.close()
        await drop_database(server_url, "zc_bench_ingest")


async def create_bare_like_readings(conn: asyncpg.Connection) -> str:
    """The ceiling's table ``bare``: the same columns and unique index as ``readings``,
    and the same kind of table (a hypertable with the same chunk interval, or daily
    range partitions with the day the bench writes); returns which kind."""
    await conn.execute("DROP TABLE IF EXISTS bare")
    await conn.execute("CREATE TABLE bare (LIKE readings INCLUDING DEFAULTS)")
    if await is_hypertable(conn):
        interval = await conn.fetchval(
            "SELECT time_interval FROM timescaledb_information.dimensions "
            "WHERE hypertable_name = 'readings'"
        )
        await conn.execute("CREATE UNIQUE INDEX ON bare (device_id, metric_id, ts)")
        await conn.execute(
            "SELECT create_hypertable('bare', by_range('ts', $1::interval))", interval
        )
        return f"TimescaleDB hypertables, chunk interval {interval}"
    await conn.execute("DROP TABLE bare")
    await conn.execute(
        "CREATE TABLE bare (LIKE readings INCLUDING DEFAULTS) PARTITION BY RANGE (ts)"
    )
    await conn.execute("CREATE UNIQUE INDEX ON bare (device_id, metric_id, ts)")
    await conn.execute(
        f"CREATE TABLE bare_day PARTITION OF bare FOR VALUES FROM ('{T0:%Y-%m-%d}') "
        f"TO ('{T0 + timedelta(days=1):%Y-%m-%d}')"
    )
    await conn.execute("CREATE TABLE bare_default PARTITION OF bare DEFAULT")
    return "native daily partitions"


async def spooled_run(
    pool: asyncpg.Pool, writer: ReadingWriter, chunks: list[ReadingBatch]
) -> float:
    """rows/s of the gateway's path, from the first put to the last row stored."""
    rows = sum(len(c) for c in chunks)
    async with pool.acquire() as conn:
        await conn.execute("TRUNCATE readings, latest_values")
    folder = Path(tempfile.mkdtemp(prefix="zc-bench-spool-", dir="/tmp"))
    spool = Spool(folder, fsync="always")
    forwarder = SpoolForwarder(spool, writer)
    pipeline = Pipeline([forwarder], max_queued=len(chunks) + 1, batch_rows=len(chunks[0]))
    try:
        start = time.perf_counter()
        forwarding = asyncio.create_task(forwarder.run())
        runner = asyncio.create_task(pipeline.run())
        for chunk in chunks:
            await pipeline.put(chunk)
        await pipeline.close()
        await runner
        forwarder.request_stop()
        await forwarding
        elapsed = time.perf_counter() - start
    finally:
        spool.close()
        shutil.rmtree(folder, ignore_errors=True)
    assert forwarder.stats.readings_stored == rows, forwarder.stats
    return rows / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    server_url = os.environ.get("ZEROCARBON_DATABASE_URL")
    embedded = None
    if not server_url:
        embedded = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="zc-bench-", dir="/tmp")) / "pg")
        server_url = embedded.start()
    try:
        asyncio.run(bench(server_url, args.rows, args.batch, args.repeat))
    finally:
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":
    main()
