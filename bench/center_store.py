"""Center ingest throughput: batches of readings messages through ``CenterStore.store``
against a bare binary COPY of the same rows.

A batch is what a worker fetches: ``--messages`` readings messages of ``--readings``
readings each, from ``--sites`` sites in turn (each message 50 series of its site, one
reading per series per second). Per run, batch by batch:

- ceiling: binary COPY of the very rows ``CenterStore`` stores (central site and series
  ids, encoded beforehand) into ``bare``, a table like ``site_readings`` with the same
  primary key (and the same kind: a hypertable of the same chunk interval where
  ``site_readings`` is one), one transaction per batch;
- ``CenterStore.store`` of the batches, new rows (a worker whose caches are warm: the
  sites and series exist);
- the same batches stored again (a redelivery: every reading skipped);
- the batches stored anew, each ending with the previous batch's last message (a
  replay that a message stored before is in: the worst case of the COPY straight into
  ``site_readings``, which the primary key refuses at the batch's end, so the batch
  goes through the staging table); rows/s of new rows.

Prints rows/s of each and the ratios, medians over ``--repeat`` runs, and last the JSON
line ``{"metric": "rows_per_s", "value": ..., "ceiling": ..., "ratio": ...}``.

    python bench/center_store.py [--messages 20] [--readings 5000] [--batches 10]
                                 [--sites 4] [--repeat 5] [--database-url URL]

Database: ``--database-url``'s server (default ZEROCARBON_DATABASE_URL), else an
embedded server in a temporary folder. A scratch database is created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import numpy as np

from zerocarbon.batch import datetime_to_us
from zerocarbon.storage.database import drop_database, ensure_database, open_pool
from zerocarbon.storage.embedded import EmbeddedPostgres
from zerocarbon.uplink.center_schema import create_center_schema, readings_hypertable
from zerocarbon.uplink.center_store import (
    SITE_READING_COLUMNS,
    CenterStore,
    encode_site_readings,
)
from zerocarbon.uplink.messages import ReadingsMessage

DATABASE = "zc_bench_center"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
RECEIVED = T0 + timedelta(days=1)
CATALOG = tuple(
    (f"meter{d}", metric) for d in range(10) for metric in ("p_kw", "q_kvar", "u_v", "i_a", "e_kwh")
)


def make_batches(
    n_batches: int, messages: int, readings: int, sites: int
) -> list[list[ReadingsMessage]]:
    """Batches of readings messages; each site's messages follow one another in time."""
    per_series = readings // len(CATALOG)
    i = np.arange(per_series * len(CATALOG))
    series = (i % len(CATALOG)).astype(np.uint16)
    second = i // len(CATALOG)
    value = series * 10.0 + second * 0.01
    quality = np.zeros(len(i), dtype=np.uint8)
    next_s = dict.fromkeys(range(sites), 0)
    out = []
    for _ in range(n_batches):
        batch = []
        for j in range(messages):
            site = j % sites
            start = next_s[site]
            next_s[site] += per_series
            batch.append(
                ReadingsMessage(
                    site=f"site-{site}",
                    catalog=CATALOG,
                    series=series,
                    ts_us=datetime_to_us(T0) + (start + second).astype(np.int64) * 1_000_000,
                    value=value,
                    quality=quality,
                )
            )
        out.append(batch)
    return out


async def encode_for_bare(conn: asyncpg.Connection, batch: list[ReadingsMessage]) -> bytearray:
    """The binary COPY data of a batch's rows, with the central ids the store uses, in
    the order the store copies new rows (primary-key order)."""
    ids = {
        (r["site"], r["device"], r["metric"]): r["id"]
        for r in await conn.fetch(
            "SELECT ss.id, s.site, ss.device, ss.metric FROM site_series ss "
            "JOIN sites s ON s.id = ss.site_id"
        )
    }
    site_ids = {r["site"]: r["id"] for r in await conn.fetch("SELECT id, site FROM sites")}
    site_id = np.concatenate([np.full(len(m), site_ids[m.site], dtype=np.int32) for m in batch])
    series_id = np.concatenate(
        [np.array([ids[(m.site, *k)] for k in m.catalog], dtype=np.int32)[m.series] for m in batch]
    )
    ts_us = np.concatenate([m.ts_us for m in batch])
    value = np.concatenate([m.value for m in batch])
    quality = np.concatenate([m.quality for m in batch])
    # in primary-key order, as the store copies them (the ceiling gets the same help)
    order = np.lexsort((series_id, site_id, ts_us))
    return encode_site_readings(
        site_id[order], series_id[order], ts_us[order], value[order], quality[order]
    )


async def create_bare(conn: asyncpg.Connection) -> str:
    """``bare``: the columns and primary key of ``site_readings``, and its kind."""
    await conn.execute("DROP TABLE IF EXISTS bare")
    await conn.execute("CREATE TABLE bare (LIKE site_readings INCLUDING ALL)")
    if await readings_hypertable(conn):
        interval = await conn.fetchval(
            "SELECT time_interval FROM timescaledb_information.dimensions "
            "WHERE hypertable_name = 'site_readings'"
        )
        await conn.execute(
            "SELECT create_hypertable('bare', by_range('ts', $1::interval))", interval
        )
        return f"TimescaleDB hypertables, chunk interval {interval}"
    return "plain tables"


async def bench(
    server_url: str, messages: int, readings: int, n_batches: int, sites: int, repeat: int
) -> None:
    url = await ensure_database(server_url, DATABASE, recreate=True)
    pool = await open_pool(url)
    try:
        async with pool.acquire() as conn:
            await create_center_schema(conn)
            kind = await create_bare(conn)
        batches = make_batches(n_batches, messages, readings, sites)
        rows = sum(len(m) for b in batches for m in b)
        await CenterStore(pool).store(batches[0], received_at=RECEIVED)  # sites, series
        async with pool.acquire() as conn:
            encoded = [await encode_for_bare(conn, b) for b in batches]
        replayed = [batches[0]] + [b + [a[-1]] for a, b in zip(batches, batches[1:], strict=False)]
        copy_rates, store_rates, replay_rates, mixed_rates = [], [], [], []
        for _ in range(repeat):
            async with pool.acquire() as conn:
                await conn.execute("TRUNCATE bare, site_readings")
                await conn.execute("CHECKPOINT")
                start = time.perf_counter()
                for data in encoded:
                    await conn.copy_to_table(
                        "bare", source=data, columns=SITE_READING_COLUMNS, format="binary"
                    )
                copy_rates.append(rows / (time.perf_counter() - start))
                await conn.execute("CHECKPOINT")
            store = CenterStore(pool)
            await store.store(batches[0][:1], received_at=RECEIVED)  # warm caches
            await pool.execute("TRUNCATE site_readings")
            stored = 0
            start = time.perf_counter()
            for batch in batches:
                stored += (await store.store(batch, received_at=RECEIVED)).readings_stored
            store_rates.append(rows / (time.perf_counter() - start))
            assert stored == rows, (stored, rows)
            start = time.perf_counter()
            for batch in batches:
                result = await store.store(batch, received_at=RECEIVED)
                assert result.readings_stored == 0 and result.duplicates == len(batch) * readings
            replay_rates.append(rows / (time.perf_counter() - start))
            await pool.execute("TRUNCATE site_readings")
            stored = 0
            start = time.perf_counter()
            for batch in replayed:
                stored += (await store.store(batch, received_at=RECEIVED)).readings_stored
            mixed_rates.append(rows / (time.perf_counter() - start))
            assert stored == rows, (stored, rows)
        copy, mine, replay, mixed = (
            statistics.median(r) for r in (copy_rates, store_rates, replay_rates, mixed_rates)
        )
        print(
            f"batches={n_batches} x {messages} messages x {readings} readings, {sites} sites, "
            f"repeat={repeat} (medians); {kind}"
        )
        print(f"bare binary COPY of the same rows (ceiling): {copy:,.0f} rows/s")
        print(f"CenterStore.store, new rows:                 {mine:,.0f} rows/s")
        print(f"CenterStore.store, redelivered (skipped):    {replay:,.0f} rows/s")
        print(f"CenterStore.store, a stored message last:   {mixed:,.0f} rows/s (new rows)")
        print(f"ratio store/bare binary COPY:              {mine / copy:.2f}")
        print(f"ratio redelivery/bare binary COPY:         {replay / copy:.2f}")
        print(f"ratio a stored message last/bare binary COPY: {mixed / copy:.2f}")
        print(
            json.dumps(
                {
                    "metric": "rows_per_s",
                    "value": round(mine, 1),
                    "ceiling": round(copy, 1),
                    "ratio": round(mine / copy, 4),
                }
            )
        )
    finally:
        await pool.close()
        await drop_database(server_url, DATABASE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20, help="messages per batch")
    parser.add_argument("--readings", type=int, default=5_000, help="readings per message")
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--sites", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("ZEROCARBON_DATABASE_URL"),
        help="a server's maintenance database (default: an embedded server)",
    )
    args = parser.parse_args()
    server_url = args.database_url
    embedded = None
    if not server_url:
        embedded = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="zc-bench-", dir="/tmp")) / "pg")
        server_url = embedded.start()
    try:
        asyncio.run(
            bench(server_url, args.messages, args.readings, args.batches, args.sites, args.repeat)
        )
    finally:
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":
    main()
