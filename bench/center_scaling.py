"""Center storage scaling: ingest worker processes storing into one central database.

How far one PostgreSQL node takes a group's center, to decide how storage grows past it
(``docs/center.md``). The center stores a site's readings of one instant as one row of
``site_reading_sets`` ``(site_id, ts, series_id[], value[], quality[])``, keyed
(ts, site_id) (:mod:`zerocarbon.uplink.center_schema`; ``site_readings`` is a view
unnesting them). The same readings every run: ``--batches`` batches of ``--messages``
readings messages of ``--readings`` readings each, from ``--sites`` sites. Each site
has 200 series, 40 meters x 5 metrics, polled every 5 s; a meter's 5 registers are
read by one Modbus request and share one ts, meter ``d`` read ``d`` x 100 ms into the
poll plus a seeded jitter of up to 20 ms a request, so each (site, ts) holds one
meter's 5 readings: a set of 5, 40 sets a site and poll. A message is ``--readings``
/ 200 whole polls of its site (5 by default; no set is split between messages);
values are seeded noise, and every (site, ts, series) occurs once. The messages form
one stream, the sites in turn, as the center's work-queue stream holds them. For N =
``--workers`` processes (``multiprocessing``, spawned, each its own connection and its
own warm ``CenterStore``: its sites and series exist and are cached), timed from a
common start to the last process done, with ``CHECKPOINT`` before each run:

- ``store, stream order``: process w stores batches w, w + N, w + 2N, ... of the stream
  (what JetStream's pull consumer hands N workers: every batch holds messages of many
  sites, so workers meet on the sites' row locks, ``CenterStore``'s concurrency rule);
- ``store, sites split``: process w stores only the messages of the sites with
  ``index % N == w``, in stream order, in batches of the same size (as if each worker,
  or each database, had sites of its own);
- ``ceiling, unlogged``: a bare binary COPY of the very sets ``CenterStore`` writes
  (central ids, grouped per (site, ts) and encoded beforehand, outside the timing, by
  :mod:`zerocarbon.uplink.reading_sets`) into ``bare``, an ``UNLOGGED`` copy of
  ``site_reading_sets`` with the same primary key (a plain table even where
  ``site_reading_sets`` is a hypertable), one transaction per batch, the stream order's
  batches split as in the first line;
- ``ceiling, logged``: the same into ``bare_logged``, a logged copy (WAL written, as
  for ``site_reading_sets``).

Prints readings/s of each line per N (median of ``--repeat`` runs; a reading is one
(site, series, ts), of which a set holds 5), the bytes a stored reading takes
(``pg_relation_size``, ``pg_indexes_size`` and ``pg_total_relation_size`` of
``site_reading_sets``, divided by the readings its sets hold, the sum of
``cardinality(series_id)``, after each stream-order run), and an estimate for a group:
per site 200 series at one reading per 5 s (40 readings/s, an assumption, not a
measurement), the readings/s and bytes a day of ``--group-sites`` sites against the
best rate measured. Last the JSON line ``{"metric": "readings_per_s", "value": <best
store rate>, "ceiling": <unlogged COPY at that N>, "ratio": ...}``.

    python bench/center_scaling.py [--workers 1,2,4] [--batches 16] [--messages 64]
        [--readings 1000] [--sites 100] [--repeat 3] [--database-url URL]

Database: ``--database-url``'s server (default: ZEROCARBON_BENCH_DATABASE_URL), else
an embedded server in a temporary folder. A scratch database is created and dropped.
The processes share the machine with the database server: on a 2-core machine N = 4
measures contention, not 4 cores' worth.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.synchronize import Barrier
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

DATABASE = "zc_bench_center_scaling"
SEED = 20260701
T0 = datetime(2026, 1, 1, tzinfo=UTC)
RECEIVED = T0 + timedelta(days=30)
POLL_S = 5  # one reading per series every 5 s
DEVICES = 40  # meters a site
METRICS = ("active_power_kw", "reactive_power_kvar", "voltage_v", "current_a", "energy_kwh")
CATALOG = tuple((f"meter{d:02d}", metric) for d in range(DEVICES) for metric in METRICS)
# 200 series a site
DEVICE_OFFSET_US = 100_000  # meter d read d x 100 ms into its poll [us]
JITTER_US = 20_000  # and up to 20 ms later, seeded, per Modbus request [us]
assert DEVICES * DEVICE_OFFSET_US + JITTER_US <= POLL_S * 1_000_000
SITE_READINGS_PER_S = len(CATALOG) / POLL_S  # the assumed rate of one site: 40 readings/s
STORE_MODES = ("store, stream order", "store, sites split")
COPY_MODES = {"ceiling, unlogged": "bare", "ceiling, logged": "bare_logged"}


@dataclass(frozen=True, slots=True)
class Shape:
    batches: int
    messages: int
    readings: int
    sites: int

    @property
    def total_messages(self) -> int:
        return self.batches * self.messages

    @property
    def polls(self) -> int:
        return self.readings // len(CATALOG)

    @property
    def total_readings(self) -> int:
        return self.total_messages * self.polls * len(CATALOG)


def site_name(index: int) -> str:
    return f"site-{index:04d}"


def message(shape: Shape, k: int) -> ReadingsMessage:
    """Message ``k`` of the stream: site ``k % sites``, its polls ``k // sites``-th; a
    meter's readings of a poll share one ts (one Modbus request)."""
    site, nth = k % shape.sites, k // shape.sites
    polls, width = shape.polls, len(CATALOG)
    rng = np.random.default_rng((SEED, k))
    poll = np.repeat(np.arange(polls), width)
    series = np.tile(np.arange(width, dtype=np.uint16), polls)
    device = series // len(METRICS)
    jitter_us = rng.integers(0, JITTER_US, size=(polls, DEVICES))  # per request
    ts_us = (
        datetime_to_us(T0)
        + ((nth * polls + poll) * POLL_S * 1_000_000).astype(np.int64)
        + device.astype(np.int64) * DEVICE_OFFSET_US
        + jitter_us[poll, device]
    )
    return ReadingsMessage(
        site=site_name(site),
        catalog=CATALOG,
        series=series,
        ts_us=ts_us,
        value=rng.normal(100.0, 5.0, size=len(poll)),
        quality=np.zeros(len(poll), dtype=np.uint8),
    )


def share(shape: Shape, mode: str, n: int, w: int) -> list[list[int]]:
    """The message numbers of process ``w`` of ``n``, batch by batch."""
    if mode == "store, sites split":
        mine = [k for k in range(shape.total_messages) if (k % shape.sites) % n == w]
        return [mine[i : i + shape.messages] for i in range(0, len(mine), shape.messages)]
    return [
        list(range(b * shape.messages, (b + 1) * shape.messages))
        for b in range(w, shape.batches, n)
    ]


async def _worker_main(
    url: str, shape: Shape, mode: str, n: int, w: int, ready: Barrier, go: Barrier
) -> float:
    batches = [[message(shape, k) for k in b] for b in share(shape, mode, n, w)]
    if mode in STORE_MODES:
        pool = await open_pool(url, max_size=1)
        try:
            store = CenterStore(pool)
            # its sites and series exist and are cached: an empty message of each site
            sites = sorted({m.site for b in batches for m in b})
            empty = [
                ReadingsMessage(
                    s,
                    CATALOG,
                    np.zeros(0, np.uint16),
                    np.zeros(0, np.int64),
                    np.zeros(0),
                    np.zeros(0, np.uint8),
                )
                for s in sites
            ]
            await store.store(empty, received_at=RECEIVED)
            ready.wait()
            go.wait()
            start = time.perf_counter()
            stored = 0
            for batch in batches:
                stored += (await store.store(batch, received_at=RECEIVED)).readings_stored
            elapsed = time.perf_counter() - start
            assert stored == sum(len(m) for b in batches for m in b), stored
            return elapsed
        finally:
            await pool.close()
    conn = await asyncpg.connect(url)
    try:
        encoded = [await encode_sets(conn, b) for b in batches]
        ready.wait()
        go.wait()
        start = time.perf_counter()
        for data in encoded:
            await conn.copy_to_table(
                COPY_MODES[mode], source=data, columns=READING_SET_COLUMNS, format="binary"
            )
        return time.perf_counter() - start
    finally:
        await conn.close()


def worker_process(
    url: str,
    shape: Shape,
    mode: str,
    n: int,
    w: int,
    ready: Barrier,
    go: Barrier,
    results: mp.Queue[tuple[int, float]],
) -> None:
    results.put((w, asyncio.run(_worker_main(url, shape, mode, n, w, ready, go))))


async def encode_sets(conn: asyncpg.Connection, batch: list[ReadingsMessage]) -> bytearray:
    """The binary COPY data of a batch's reading sets with the central ids
    ``CenterStore`` uses, grouped per (site, ts) in primary-key order."""
    site_ids = {r["site"]: r["id"] for r in await conn.fetch("SELECT id, site FROM sites")}
    series = {
        (r["site_id"], r["device"], r["metric"]): r["id"]
        for r in await conn.fetch("SELECT id, site_id, device, metric FROM site_series")
    }
    sids = [site_ids[m.site] for m in batch]
    sets = group_messages(
        batch,
        sids,
        [
            np.array([series[(sid, d, metric)] for d, metric in m.catalog], dtype=np.int32)
            for sid, m in zip(sids, batch, strict=True)
        ],
    )
    assert sets.readings == sum(len(m) for m in batch), "every (site, ts, series) once"
    return encode_reading_sets(sets)


async def _reset(url: str, mode: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        table = COPY_MODES.get(mode, "site_reading_sets")
        await conn.execute(f"TRUNCATE {table}")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


def one_run(url: str, shape: Shape, mode: str, n: int) -> float:
    """Readings/s of ``n`` processes storing every row once in ``mode``."""
    ctx = mp.get_context("spawn")
    ready, go = ctx.Barrier(n + 1), ctx.Barrier(n + 1)
    results: mp.Queue[tuple[int, float]] = ctx.Queue()
    procs = [
        ctx.Process(target=worker_process, args=(url, shape, mode, n, w, ready, go, results))
        for w in range(n)
    ]
    for p in procs:
        p.start()
    try:
        ready.wait(timeout=300)
        asyncio.run(_reset(url, mode))
        go.wait(timeout=60)
        start = time.perf_counter()
        done = [results.get(timeout=900) for _ in procs]
        elapsed = time.perf_counter() - start
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    assert len(done) == n and all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return shape.total_readings / elapsed


async def setup(url: str, shape: Shape) -> str:
    """The center's schema, every site and series, and the ceiling's tables."""
    conn = await asyncpg.connect(url)
    try:
        await create_center_schema(conn)
        hypertable = await readings_hypertable(conn)
        await conn.execute("CREATE UNLOGGED TABLE bare (LIKE site_reading_sets INCLUDING ALL)")
        await conn.execute("CREATE TABLE bare_logged (LIKE site_reading_sets INCLUDING ALL)")
    finally:
        await conn.close()
    pool = await open_pool(url, max_size=1)
    try:
        empty = [
            ReadingsMessage(
                site_name(s),
                CATALOG,
                np.zeros(0, np.uint16),
                np.zeros(0, np.int64),
                np.zeros(0),
                np.zeros(0, np.uint8),
            )
            for s in range(shape.sites)
        ]
        await CenterStore(pool).store(empty, received_at=RECEIVED)
    finally:
        await pool.close()
    if hypertable:
        return "site_reading_sets a TimescaleDB hypertable, the ceiling's tables plain"
    return "plain tables"


async def sizes(url: str) -> dict[str, float]:
    """Bytes a stored reading takes in ``site_reading_sets``: heap, index, total, each
    divided by the readings its sets hold; and the readings and sets (rows) counted."""
    conn = await asyncpg.connect(url)
    try:
        readings, sets = await conn.fetchrow(
            "SELECT sum(cardinality(series_id)), count(*) FROM site_reading_sets"
        )
        heap, index, total = await conn.fetchrow(
            "SELECT pg_relation_size('site_reading_sets'), "
            "pg_indexes_size('site_reading_sets'), pg_total_relation_size('site_reading_sets')"
        )
    finally:
        await conn.close()
    return {
        "readings": readings,
        "sets": sets,
        "heap": heap / readings,
        "index": index / readings,
        "total": total / readings,
    }


async def server_facts(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        version = await conn.fetchval("SHOW server_version")
        settings = [
            f"{name}={await conn.fetchval(f'SHOW {name}')}"
            for name in ("shared_buffers", "max_wal_size", "synchronous_commit")
        ]
    finally:
        await conn.close()
    return f"PostgreSQL {version} ({', '.join(settings)}); {os.cpu_count()} cores"


def bench(server_url: str, shape: Shape, workers: list[int], repeat: int, group_sites: int) -> None:
    url = asyncio.run(ensure_database(server_url, DATABASE, recreate=True))
    try:
        kind = asyncio.run(setup(url, shape))
        print(
            f"{shape.batches} batches x {shape.messages} messages x "
            f"{shape.polls * len(CATALOG)} readings = {shape.total_readings:,} readings of "
            f"{shape.sites} sites x {len(CATALOG)} series, sets of {len(METRICS)} readings "
            f"(a meter's poll); repeat={repeat} (medians); {kind}"
        )
        print(asyncio.run(server_facts(url)))
        rates: dict[tuple[str, int], float] = {}
        per_reading: list[dict[str, float]] = []
        for n in workers:
            for mode in (*STORE_MODES, *COPY_MODES):
                runs = []
                for _ in range(repeat):
                    runs.append(one_run(url, shape, mode, n))
                    if mode == STORE_MODES[0]:
                        per_reading.append(asyncio.run(sizes(url)))
                rates[(mode, n)] = statistics.median(runs)
                spread = ", ".join(f"{r:,.0f}" for r in runs)
                print(f"N={n} {mode:<22} {rates[(mode, n)]:>12,.0f} readings/s  ({spread})")
        print()
        header = "readings/s".ljust(24) + "".join(f"{'N=' + str(n):>12}" for n in workers)
        print(header)
        for mode in (*STORE_MODES, *COPY_MODES):
            print(mode.ljust(24) + "".join(f"{rates[(mode, n)]:>12,.0f}" for n in workers))
        print(
            "store / unlogged COPY".ljust(24)
            + "".join(
                f"{rates[(STORE_MODES[0], n)] / rates[('ceiling, unlogged', n)]:>12.2f}"
                for n in workers
            )
        )
        heap, index, total = (
            statistics.median(s[k] for s in per_reading) for k in ("heap", "index", "total")
        )
        print(
            f"\nbytes a stored reading (site_reading_sets: {int(per_reading[-1]['readings']):,} "
            f"readings in {int(per_reading[-1]['sets']):,} sets): "
            f"heap {heap:.1f}, index {index:.1f}, total {total:.1f}"
        )
        best_n = max(workers, key=lambda n: rates[(STORE_MODES[0], n)])
        best = rates[(STORE_MODES[0], best_n)]
        need = group_sites * SITE_READINGS_PER_S
        per_day = need * 86_400
        print(
            f"one node, best measured (stream order, N={best_n}): {best:,.0f} readings/s; "
            f"a site at {len(CATALOG)} series / {POLL_S} s (assumed): "
            f"{SITE_READINGS_PER_S:.0f} readings/s, so {best / SITE_READINGS_PER_S:,.0f} "
            "sites' live rate"
        )
        print(
            f"{group_sites:,} sites: {need:,.0f} readings/s ({need / best:.0%} of that rate), "
            f"{per_day / 1e9:.2f} G readings and {per_day * total / 1e9:,.0f} GB a day "
            f"uncompressed; a day's backlog of all of them replays in "
            f"{per_day / max(best - need, 1) / 3600:,.1f} h at the margin left"
        )
        ceiling = rates[("ceiling, unlogged", best_n)]
        print(
            json.dumps(
                {
                    "metric": "readings_per_s",
                    "value": round(best, 1),
                    "ceiling": round(ceiling, 1),
                    "ratio": round(best / ceiling, 4),
                }
            )
        )
    finally:
        asyncio.run(drop_database(server_url, DATABASE))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,4", help="process counts, comma-separated")
    parser.add_argument("--batches", type=int, default=16, help="batches in all, every N")
    parser.add_argument("--messages", type=int, default=64, help="messages per batch")
    parser.add_argument(
        "--readings", type=int, default=1_000, help=f"readings per message (x {len(CATALOG)})"
    )
    parser.add_argument("--sites", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--group-sites", type=int, default=1_000, help="sites of the estimate")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("ZEROCARBON_BENCH_DATABASE_URL"),
        help="a server's maintenance database (default: an embedded server)",
    )
    args = parser.parse_args()
    if args.readings < len(CATALOG) or args.readings % len(CATALOG):
        parser.error(f"--readings must be a multiple of {len(CATALOG)} (a site's series)")
    shape = Shape(args.batches, args.messages, args.readings, args.sites)
    workers = [int(n) for n in args.workers.split(",")]
    server_url = args.database_url
    embedded = None
    if not server_url:
        embedded = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="zc-bench-", dir="/tmp")) / "pg")
        server_url = embedded.start()
    try:
        bench(server_url, shape, workers, args.repeat, args.group_sites)
    finally:
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":
    main()
