"""Ingest throughput: the ReadingWriter against bare binary COPY, in the same run.

Ceiling: asyncpg ``copy_records_to_table`` of pre-built records into an identical
readings table (same index). Measured: ``ReadingWriter.write_batch`` from Reading
objects (key lookup, COPY, latest_values upsert). Prints rows/s of both and their
ratio, the median over ``--repeat`` runs.

    python bench/bench_ingest.py [--rows 300000] [--batch 5000] [--repeat 5]

Database: ZEROCARBON_DATABASE_URL's server if set, else an embedded server in a
temporary folder. A scratch database is created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from zerocarbon.config import load_site
from zerocarbon.ingest.reading import Reading
from zerocarbon.storage.database import (
    create_schema,
    drop_database,
    ensure_database,
    open_pool,
    register_site,
)
from zerocarbon.storage.embedded import EmbeddedPostgres
from zerocarbon.storage.writer import READING_COLUMNS, ReadingWriter

SITE = Path(__file__).resolve().parents[1] / "examples" / "demo-site.toml"


async def bench(server_url: str, rows: int, batch: int, repeat: int) -> None:
    site = load_site(SITE)
    url = await ensure_database(server_url, "zc_bench_ingest", recreate=True)
    pool = await open_pool(url)
    try:
        async with pool.acquire() as conn:
            await create_schema(conn)
            registry = await register_site(conn, site)
            await conn.execute("CREATE TABLE IF NOT EXISTS bare (LIKE readings INCLUDING ALL)")
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        devices = [d.id for d in site.devices]
        readings = [
            Reading(t0 + timedelta(seconds=i // 30), devices[i % 6], "active_power_kw", float(i))
            for i in range(rows)
        ]
        records = [
            (r.ts, registry.device_ids[r.device], registry.metric_ids[r.metric], r.value, 0)
            for r in readings
        ]
        bare_rates, writer_rates = [], []
        for _ in range(repeat):
            async with pool.acquire() as conn:
                await conn.execute("TRUNCATE bare, readings, latest_values")
                start = time.perf_counter()
                for i in range(0, rows, batch):
                    await conn.copy_records_to_table(
                        "bare", records=records[i : i + batch], columns=READING_COLUMNS
                    )
                bare_rates.append(rows / (time.perf_counter() - start))
            writer = ReadingWriter(pool, registry)
            start = time.perf_counter()
            for i in range(0, rows, batch):
                await writer.write_batch(readings[i : i + batch])
            writer_rates.append(rows / (time.perf_counter() - start))
        bare, mine = statistics.median(bare_rates), statistics.median(writer_rates)
        print(f"rows={rows} batch={batch} repeat={repeat}")
        print(f"bare COPY (ceiling): {bare:,.0f} rows/s")
        print(f"ReadingWriter:       {mine:,.0f} rows/s")
        print(f"ratio writer/ceiling: {mine / bare:.2f}")
    finally:
        await pool.close()
        await drop_database(server_url, "zc_bench_ingest")


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
