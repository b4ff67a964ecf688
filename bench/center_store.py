"""Center ingest throughput: batches of readings messages through ``CenterStore.store``
against a bare binary COPY of the same reading sets.

The center stores a site's readings of one instant as one row of ``site_reading_sets``
``(site_id, ts, series_id[], value[], quality[])``, keyed (ts, site_id)
(:mod:`zerocarbon.uplink.center_schema`). The readings here are shaped so that such a
set is what a gateway's poll makes of one device: a site has 10 meters x 5 metrics (50
series) polled once a second, each meter's 5 registers read by one Modbus request and
stamped with one ts, meter ``d`` read ``d`` x 50 ms into the second; so each (site, ts)
holds one meter's 5 readings, a set of 5. The data is a formula of its position (no
randomness, the same every run); every (site, ts, series) occurs once.

A batch is what a worker fetches: ``--messages`` readings messages of ``--readings``
readings each (whole polls: ``--readings`` // 50 seconds of a site, so no set is split
between messages), from ``--sites`` sites in turn, each site's messages following one
another in time. Per run, batch by batch:

- ceiling: a bare binary COPY of the very sets ``CenterStore`` stores (central site
  and series ids, grouped per (site, ts) and encoded beforehand, outside the timing, by
  :mod:`zerocarbon.uplink.reading_sets`) into ``bare``, a table like
  ``site_reading_sets`` with the same primary key (and the same kind: a hypertable of
  the same chunk interval where ``site_reading_sets`` is one), one transaction per
  batch;
- ``CenterStore.store`` of the batches, new readings (a worker whose caches are warm:
  the sites and series exist);
- the same batches stored again (a redelivery: every set is stored, so the batch goes
  through the store's merge path and every reading is skipped);
- the batches stored anew, each ending with the previous batch's last message (a
  replay that a message stored before is in: the store's probe finds that message's
  sets stored, so they alone go through its merge path, and the rest of the batch goes
  straight in); readings/s of new readings.

Rates are readings/s (a reading is one (site, series, ts), of which a set holds 5),
each the readings of all batches over the wall time of the batches. Prints each rate
and the ratios, medians over ``--repeat`` runs, and last the JSON line
``{"metric": "rows_per_s", "value": ..., "ceiling": ..., "ratio": ...}`` (the metric
keeps its name from when a reading was a row; it counts readings).

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
from zerocarbon.uplink.center_store import CenterStore
from zerocarbon.uplink.messages import ReadingsMessage
from zerocarbon.uplink.reading_sets import (
    READING_SET_COLUMNS,
    encode_reading_sets,
    group_messages,
)

DATABASE = "zc_bench_center"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
RECEIVED = T0 + timedelta(days=1)
METRICS = ("p_kw", "q_kvar", "u_v", "i_a", "e_kwh")
DEVICES = 10  # meters a site
CATALOG = tuple((f"meter{d}", metric) for d in range(DEVICES) for metric in METRICS)
POLL_US = 1_000_000  # a site's meters are polled once a second [us]
DEVICE_OFFSET_US = 50_000  # meter d read d x 50 ms into its poll [us]
assert DEVICES * DEVICE_OFFSET_US <= POLL_US


def make_batches(
    n_batches: int, messages: int, readings: int, sites: int
) -> list[list[ReadingsMessage]]:
    """Batches of readings messages of whole polls; each site's messages follow one
    another in time, a meter's readings of a poll share one ts."""
    polls = readings // len(CATALOG)
    i = np.arange(polls * len(CATALOG))
    series = (i % len(CATALOG)).astype(np.uint16)
    poll = i // len(CATALOG)
    offset_us = (series // len(METRICS)).astype(np.int64) * DEVICE_OFFSET_US
    quality = np.zeros(len(i), dtype=np.uint8)
    next_poll = dict.fromkeys(range(sites), 0)
    t0_us = datetime_to_us(T0)
    out = []
    for _ in range(n_batches):
        batch = []
        for j in range(messages):
            site = j % sites
            nth_poll = next_poll[site] + poll
            next_poll[site] += polls
            batch.append(
                ReadingsMessage(
                    site=f"site-{site}",
                    catalog=CATALOG,
                    series=series,
                    ts_us=t0_us + nth_poll.astype(np.int64) * POLL_US + offset_us,
                    value=series * 10.0 + nth_poll * 0.01,
                    quality=quality,
                )
            )
        out.append(batch)
    return out


async def encode_for_bare(conn: asyncpg.Connection, batch: list[ReadingsMessage]) -> bytearray:
    """The binary COPY data of a batch's reading sets, with the central ids the store
    uses, grouped per (site, ts) in primary-key order as the store groups them."""
    ids = {
        (r["site"], r["device"], r["metric"]): r["id"]
        for r in await conn.fetch(
            "SELECT ss.id, s.site, ss.device, ss.metric FROM site_series ss "
            "JOIN sites s ON s.id = ss.site_id"
        )
    }
    site_ids = {r["site"]: r["id"] for r in await conn.fetch("SELECT id, site FROM sites")}
    sets = group_messages(
        batch,
        [site_ids[m.site] for m in batch],
        [np.array([ids[(m.site, *k)] for k in m.catalog], dtype=np.int32) for m in batch],
    )
    assert sets.readings == sum(len(m) for m in batch), "every (site, ts, series) once"
    return encode_reading_sets(sets)


async def create_bare(conn: asyncpg.Connection) -> str:
    """``bare``: the columns and primary key of ``site_reading_sets``, and its kind."""
    await conn.execute("DROP TABLE IF EXISTS bare")
    await conn.execute("CREATE TABLE bare (LIKE site_reading_sets INCLUDING ALL)")
    if await readings_hypertable(conn):
        interval = await conn.fetchval(
            "SELECT time_interval FROM timescaledb_information.dimensions "
            "WHERE hypertable_name = 'site_reading_sets'"
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
        n_readings = sum(len(m) for b in batches for m in b)
        await CenterStore(pool).store(batches[0], received_at=RECEIVED)  # sites, series
        async with pool.acquire() as conn:
            encoded = [await encode_for_bare(conn, b) for b in batches]
        replayed = [batches[0]] + [b + [a[-1]] for a, b in zip(batches, batches[1:], strict=False)]
        copy_rates, store_rates, replay_rates, mixed_rates = [], [], [], []
        for _ in range(repeat):
            async with pool.acquire() as conn:
                await conn.execute("TRUNCATE bare, site_reading_sets")
                await conn.execute("CHECKPOINT")
                start = time.perf_counter()
                for data in encoded:
                    await conn.copy_to_table(
                        "bare", source=data, columns=READING_SET_COLUMNS, format="binary"
                    )
                copy_rates.append(n_readings / (time.perf_counter() - start))
                await conn.execute("CHECKPOINT")
            store = CenterStore(pool)
            await store.store(batches[0][:1], received_at=RECEIVED)  # warm caches
            await pool.execute("TRUNCATE site_reading_sets")
            stored = 0
            start = time.perf_counter()
            for batch in batches:
                stored += (await store.store(batch, received_at=RECEIVED)).readings_stored
            store_rates.append(n_readings / (time.perf_counter() - start))
            assert stored == n_readings, (stored, n_readings)
            start = time.perf_counter()
            for batch in batches:
                result = await store.store(batch, received_at=RECEIVED)
                in_batch = sum(len(m) for m in batch)
                assert result.readings_stored == 0 and result.duplicates == in_batch, result
            replay_rates.append(n_readings / (time.perf_counter() - start))
            await pool.execute("TRUNCATE site_reading_sets")
            stored = 0
            start = time.perf_counter()
            for batch in replayed:
                stored += (await store.store(batch, received_at=RECEIVED)).readings_stored
            mixed_rates.append(n_readings / (time.perf_counter() - start))
            assert stored == n_readings, (stored, n_readings)
        copy, mine, replay, mixed = (
            statistics.median(r) for r in (copy_rates, store_rates, replay_rates, mixed_rates)
        )
        print(
            f"batches={n_batches} x {messages} messages x {readings} readings, {sites} sites, "
            f"sets of {len(METRICS)} readings (a meter's poll), repeat={repeat} (medians); {kind}"
        )
        print(f"bare binary COPY of the same sets (ceiling): {copy:,.0f} readings/s")
        print(f"CenterStore.store, new readings:             {mine:,.0f} readings/s")
        print(f"CenterStore.store, redelivered (skipped):    {replay:,.0f} readings/s")
        print(f"CenterStore.store, a stored message last:    {mixed:,.0f} readings/s (new)")
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
