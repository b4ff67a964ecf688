"""Uplink throughput: many sites, through the center's cluster, into the central database.

Real processes on loopback: a three-node nats-server cluster (the center, JetStream
domain ``center``), one nats-server leaf node per site (its own JetStream domain, as a
gateway runs it), the stream ``ZC_CENTER`` sourcing every site's stream, and
``--workers`` ingest worker processes (``zerocarbon center worker``) storing into a
fresh central PostgreSQL database.

Each site publishes ``--messages`` readings messages of ``--rows`` readings (the wire
format of :mod:`zerocarbon.uplink.wire`, encoded beforehand; plant-like values on 200
series: 20 devices of 10 metrics polled every 5 s, a device's 10 readings sharing the
ts of its poll as a Modbus request's registers do, so that the center stores sets of 10
readings) into its leaf's stream, all sites at once. Timed:

- **end to end**: from the first publish until the central database holds every
  reading (``sites.readings``, counted by the workers' transactions);
- **ceiling**: bare JetStream moving the same messages the same way — the same
  publishes into the same leaf streams, sourced over the same leaf connections into an
  R3 stream at the center (as ``ZC_CENTER``), consumed by ``--workers`` bare pull consumers that
  acknowledge without decoding or storing.

Both are timed the same way: from the first publish, with the streams' sources, the
consumers and the workers set up ``SETTLE_S`` beforehand (setting up 100 sources takes
seconds; charged to the ceiling, it made 1.2 M readings/s look like 0.8 M).

Prints readings/s of both and their ratio (median over ``--repeat`` runs, ceiling and
end to end alternating); the CPU time each part spent per million readings within the
timed window (ceiling: cluster nodes, leaf nodes, this process; end to end: cluster
nodes, workers, PostgreSQL when it runs here, leaf nodes, this process), from which a
1,000-site group is sized; PostgreSQL's transactions, WAL bytes and full-page images
per reading end to end; last the JSON line
``{"metric": "uplink_readings_per_s", "value": ..., "ceiling": ..., "ratio": ...}``.

    python bench/uplink.py [--sites 100] [--messages 60] [--rows 200] [--workers 2]

Database: ZEROCARBON_DATABASE_URL's server if set, else an embedded server in a
temporary folder; a scratch database is created and dropped. nats-server: on PATH or
/usr/sbin (Debian's package).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import nats
import numpy as np
from nats.aio.client import Client as NatsClient
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.uplink.nats_support import WORKER_USER, HubCluster, NatsLab  # noqa: E402
from zerocarbon.batch import ReadingBatch, SeriesRegistry  # noqa: E402
from zerocarbon.storage.database import drop_database, ensure_database  # noqa: E402
from zerocarbon.storage.embedded import EmbeddedPostgres  # noqa: E402
from zerocarbon.uplink import wire  # noqa: E402
from zerocarbon.uplink.center_schema import create_center_schema  # noqa: E402
from zerocarbon.uplink.center_streams import ensure_center_stream, site_source  # noqa: E402
from zerocarbon.uplink.leaf import LeafServer, find_nats_server  # noqa: E402
from zerocarbon.uplink.nats_config import new_password  # noqa: E402
from zerocarbon.uplink.publisher import SENT_HEADER  # noqa: E402
from zerocarbon.uplink.subjects import (  # noqa: E402
    CENTER_STREAM,
    SITE_STREAM,
    subject,
)

BARE_STREAM = "ZC_BARE"
BARE_CONSUMER = "bare"
DEVICES = 20  # per site
METRICS = (
    "active_power_kw",
    "energy_import_kwh",
    "energy_export_kwh",
    "energy_generated_kwh",
    "state_of_charge_pct",
    "production_count_units",
    "voltage_v",
    "frequency_hz",
    "gas_volume_nm3",
    "temperature_c",
)  # 20 devices x 10 metrics = 200 series a site
PER_SITE_READINGS_PER_S = 40.0  # 200 series read every 5 s: the sizing assumption
GROUP_SITES = 1_000
TIMEOUT_S = 600.0
DEVICE_STAGGER_US = 25_000  # between two devices' polls in a round [us]
SETTLE_S = 3.0  # before either timed run: sources, consumers and workers set up


def site_payloads(site: str, messages: int, rows: int, run: int, seed: int) -> list[bytes]:
    """``messages`` readings messages of ``rows`` readings of one site, distinct per run."""
    rng = np.random.default_rng(seed)
    devices = [f"dev{i:02d}" for i in range(DEVICES)]
    registry = SeriesRegistry(devices)
    series = np.array([registry.id(d, m) for d in devices for m in METRICS], dtype=np.int32)
    payloads = []
    base_us = 1_780_000_000_000_000 + run * 10**13  # each run its own time range
    for k in range(messages):
        idx = np.arange(k * rows, (k + 1) * rows)
        s = series[idx % len(series)]
        # a device's metrics share the ts of its poll (one Modbus request); the devices
        # of a site are polled DEVICE_STAGGER_US apart within each 5 s round
        device = (idx % len(series)) // len(METRICS)
        ts = base_us + (idx // len(series)) * 5_000_000 + device * DEVICE_STAGGER_US
        value = np.round(rng.normal(100.0, 10.0, rows), 3)
        batch = ReadingBatch(s, ts.astype(np.int64), value, np.zeros(rows, dtype=np.uint8))
        payloads.append(wire.encode(wire.readings_message(site, batch, registry)))
    return payloads


@dataclass
class Site:
    name: str
    leaf: LeafServer
    nc: NatsClient | None = None


async def publish_all(sites: Sequence[Site], payloads: dict[str, list[bytes]]) -> None:
    async def one(site: Site) -> None:
        assert site.nc is not None
        js = site.nc.jetstream()
        name = subject(site.name, "readings")
        sent = str(int(time.time() * 1e6))
        await asyncio.gather(
            *(
                js.publish(
                    name,
                    p,
                    headers={
                        "Nats-Msg-Id": wire.message_id(site.name, "readings", p),
                        SENT_HEADER: sent,
                    },
                )
                for p in payloads[site.name]
            )
        )

    await asyncio.gather(*(one(s) for s in sites))


async def purge_sites(sites: Sequence[Site]) -> None:
    for s in sites:
        assert s.nc is not None
        await s.nc.jetstream().purge_stream(SITE_STREAM)


def cpu_s(pids: Sequence[int]) -> float:
    """User + system CPU time of processes (and their waited-for children) [s]."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15]) / tick
    return total


def cpu_counter(
    *groups: Sequence[int] | Callable[[], Sequence[int]],
) -> Callable[[], tuple[float, ...]]:
    """A function giving the CPU time so far of each group of processes (a list of
    pids, or a function listing them when called), then of this process."""

    def now() -> tuple[float, ...]:
        return (*(cpu_s(g() if callable(g) else g) for g in groups), time.process_time())

    return now


def postgres_pids() -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            with contextlib.suppress(OSError):
                if (p / "comm").read_text().strip() in ("postgres", "postmaster"):
                    out.append(int(p.name))
    return out


async def ceiling_run(
    cluster: HubCluster,
    sites: Sequence[Site],
    payloads: dict[str, list[bytes]],
    workers: int,
    cpu_now: Callable[[], tuple[float, ...]],
) -> tuple[float, tuple[float, ...]]:
    """Seconds for bare JetStream to move every message into the center and hand it,
    acknowledged, to ``workers`` bare consumers, and what ``cpu_now`` counted meanwhile.

    Timed as end to end is: from the first publish, with the stream's sources and the
    consumers set up beforehand (setting up 100 sources takes seconds, which timing it
    would charge to JetStream)."""
    nc = await cluster.connect_worker()
    js = nc.jetstream()
    with contextlib.suppress(Exception):
        await js.delete_stream(BARE_STREAM)
    await js.add_stream(
        StreamConfig(
            name=BARE_STREAM,
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=3,
            sources=[site_source(s.name) for s in sites],
        )
    )
    await js.add_consumer(
        BARE_STREAM,
        ConsumerConfig(
            durable_name=BARE_CONSUMER, ack_policy=AckPolicy.EXPLICIT, max_ack_pending=20_000
        ),
    )
    total = sum(len(v) for v in payloads.values())
    consumed = 0
    done = asyncio.Event()

    async def consume() -> None:
        nonlocal consumed
        cnc = await cluster.connect_worker()
        sub = await cnc.jetstream().pull_subscribe_bind(BARE_CONSUMER, BARE_STREAM)
        try:
            while not done.is_set():
                try:
                    msgs = await sub.fetch(64, timeout=0.5)
                except (TimeoutError, nats.errors.TimeoutError):
                    continue
                for m in msgs:
                    await m.ack()
                consumed += len(msgs)
                if consumed >= total:
                    done.set()
        finally:
            await cnc.close()

    consumers = [asyncio.create_task(consume()) for _ in range(workers)]
    await asyncio.sleep(SETTLE_S)
    cpu_before = cpu_now()
    t0 = time.perf_counter()
    await publish_all(sites, payloads)
    await asyncio.wait_for(done.wait(), TIMEOUT_S)
    elapsed = time.perf_counter() - t0
    cpu_used = tuple(a - b for a, b in zip(cpu_now(), cpu_before, strict=True))
    for c in consumers:
        c.cancel()
    await asyncio.gather(*consumers, return_exceptions=True)
    await js.delete_stream(BARE_STREAM)
    await nc.close()
    return elapsed, cpu_used


async def stored_readings(db_url: str) -> int:
    conn = await asyncpg.connect(db_url)
    try:
        return int(await conn.fetchval("SELECT coalesce(sum(readings), 0) FROM sites"))
    finally:
        await conn.close()


_PG_ACTIVITY = """
SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()),
       (SELECT wal_bytes FROM pg_stat_wal), (SELECT wal_fpi FROM pg_stat_wal)
"""


async def pg_activity(conn: asyncpg.Connection) -> tuple[float, float, float]:
    """(transactions committed in this database, WAL bytes, WAL full-page images) so far;
    the statistics lag a transaction by up to half a second (PostgreSQL 15)."""
    row = await conn.fetchrow(_PG_ACTIVITY)
    return (float(row[0]), float(row[1]), float(row[2]))


async def end_to_end_run(
    db_url: str,
    sites: Sequence[Site],
    payloads: dict[str, list[bytes]],
    expected: int,
    cpu_now: Callable[[], tuple[float, ...]],
) -> tuple[float, tuple[float, ...], tuple[float, float, float]]:
    """Seconds until the central database holds every reading, what ``cpu_now`` counted
    meanwhile, and the database's (transactions, WAL bytes, full-page images)."""
    conn = await asyncpg.connect(db_url)
    try:
        before = int(await conn.fetchval("SELECT coalesce(sum(readings), 0) FROM sites"))
        activity = await pg_activity(conn)
        cpu_before = cpu_now()
        t0 = time.perf_counter()
        await publish_all(sites, payloads)
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            now = int(await conn.fetchval("SELECT coalesce(sum(readings), 0) FROM sites"))
            if now - before >= expected:
                elapsed = time.perf_counter() - t0
                cpu_used = tuple(a - b for a, b in zip(cpu_now(), cpu_before, strict=True))
                await asyncio.sleep(1.0)  # the statistics collector catches up
                after = await pg_activity(conn)
                xacts, wal_bytes, wal_fpi = (a - b for a, b in zip(after, activity, strict=True))
                return elapsed, cpu_used, (xacts, wal_bytes, wal_fpi)
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {now - before} of {expected} readings stored")
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


async def bench(args: argparse.Namespace, server_url: str) -> dict[str, float]:
    binary = find_nats_server()
    names = [f"site-{i:04d}" for i in range(args.sites)]
    passwords = {n: new_password() for n in names}
    db_name = f"zc_bench_uplink_{os.getpid()}"
    db_url = await ensure_database(server_url, db_name, recreate=True)
    conn = await asyncpg.connect(db_url)
    await create_center_schema(conn)
    await conn.close()
    workers: list[subprocess.Popen[bytes]] = []
    async with NatsLab(binary) as lab:
        cluster = await lab.hub_cluster(passwords)
        await cluster.wait_meta_leader()
        print(f"cluster up; starting {args.sites} leaf nodes ...", flush=True)
        sites: list[Site] = []
        for chunk in range(0, len(names), 20):
            leaves = await asyncio.gather(
                *(lab.leaf(n, passwords[n], cluster.leaf_urls) for n in names[chunk : chunk + 20])
            )
            sites += [
                Site(n, leaf) for n, leaf in zip(names[chunk : chunk + 20], leaves, strict=True)
            ]
        for s in sites:
            s.nc = lab.track(await nats.connect(s.leaf.client_url))
            await s.nc.jetstream().add_stream(
                StreamConfig(
                    name=SITE_STREAM, subjects=[f"zc.{s.name}.>"], storage=StorageType.FILE
                )
            )
        center_file = lab.folder / "center.toml"
        center_file.write_text(
            "[center]\n"
            'database_url_env = "ZC_BENCH_CENTER_DB"\n'
            f"nats_urls = {json.dumps(cluster.client_urls)}\n"
            f"nats_user = {json.dumps(WORKER_USER)}\n"
            'nats_password_env = "ZC_BENCH_CENTER_NATS"\n'
            f"fetch_batch = {args.fetch}\n"
        )
        env = {
            **os.environ,
            "ZC_BENCH_CENTER_DB": db_url,
            "ZC_BENCH_CENTER_NATS": cluster.worker_password,
        }
        expected = args.sites * args.messages * args.rows
        ceilings: list[float] = []
        e2e: list[float] = []
        cpu: dict[str, list[float]] = {
            "cluster": [],
            "workers": [],
            "postgres": [],
            "leaves": [],
            "bench": [],
        }
        ceiling_cpu: dict[str, list[float]] = {"cluster": [], "leaves": [], "bench": []}
        database: dict[str, list[float]] = {
            "transactions_per_million": [],
            "wal_bytes_per_reading": [],
            "wal_fpi_per_million": [],
        }
        try:
            for run in range(args.repeat):
                payloads = {
                    n: site_payloads(n, args.messages, args.rows, 2 * run, seed=i)
                    for i, n in enumerate(names)
                }
                await purge_sites(sites)
                hub_pids = [p.pid for p in cluster.processes.values() if p.pid]
                leaf_pids = [s.leaf.pid for s in sites if s.leaf.pid]
                t, used = await ceiling_run(
                    cluster,
                    sites,
                    payloads,
                    args.workers,
                    cpu_counter(hub_pids, leaf_pids),
                )
                for key, seconds in zip(ceiling_cpu, used, strict=True):
                    ceiling_cpu[key].append(seconds / expected * 1e6)
                ceilings.append(expected / t)
                # end to end: the center's stream, consumer and workers
                payloads = {
                    n: site_payloads(n, args.messages, args.rows, 2 * run + 1, seed=i)
                    for i, n in enumerate(names)
                }
                await purge_sites(sites)
                nc = await cluster.connect_worker()
                js = nc.jetstream()
                with contextlib.suppress(Exception):
                    await js.delete_stream(CENTER_STREAM)
                await ensure_center_stream(js, names, replicas=3, ack_wait_s=60)
                await nc.close()
                workers = [
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "zerocarbon",
                            "center",
                            "worker",
                            "--config",
                            str(center_file),
                            "--name",
                            f"w{i}",
                        ],
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    for i in range(args.workers)
                ]
                await asyncio.sleep(SETTLE_S)  # connected and pulling
                worker_pids = [w.pid for w in workers]
                t, used, (xacts, wal_bytes, wal_fpi) = await end_to_end_run(
                    db_url,
                    sites,
                    payloads,
                    expected,
                    cpu_counter(hub_pids, worker_pids, postgres_pids, leaf_pids),
                )
                database["transactions_per_million"].append(xacts / expected * 1e6)
                database["wal_bytes_per_reading"].append(wal_bytes / expected)
                database["wal_fpi_per_million"].append(wal_fpi / expected * 1e6)
                e2e.append(expected / t)
                for key, seconds in zip(cpu, used, strict=True):
                    cpu[key].append(seconds / expected * 1e6)
                for w in workers:
                    w.terminate()
                for w in workers:
                    w.wait(30)
                workers = []
                print(
                    f"run {run + 1}: ceiling {ceilings[-1]:,.0f} readings/s, "
                    f"end to end {e2e[-1]:,.0f} readings/s",
                    flush=True,
                )
        finally:
            for w in workers:
                w.kill()
    await drop_database(server_url, db_name)
    result = {
        "ceiling": statistics.median(ceilings),
        "value": statistics.median(e2e),
        **{f"cpu_s_per_million_{k}": statistics.median(v) for k, v in cpu.items()},
        **{k: statistics.median(v) for k, v in database.items()},
        **{f"ceiling_cpu_s_per_million_{k}": statistics.median(v) for k, v in ceiling_cpu.items()},
    }
    return result


def report(args: argparse.Namespace, r: dict[str, float]) -> None:
    ratio = r["value"] / r["ceiling"]
    print()
    print(
        f"{args.sites} sites x {args.messages} messages x {args.rows} readings, "
        f"{args.workers} workers, median of {args.repeat}"
    )
    print(f"  bare JetStream (ceiling): {r['ceiling']:>12,.0f} readings/s")
    print(f"  end to end:               {r['value']:>12,.0f} readings/s   ratio {ratio:.2f}")
    print(
        "  CPU per million readings, ceiling: "
        + ", ".join(
            f"{part} {r[f'ceiling_cpu_s_per_million_{part}']:.2f} s"
            for part in ("cluster", "leaves", "bench")
        )
        + " (bench: this process, publishing and consuming)"
    )
    print("  CPU per million readings, end to end:")
    for part in ("cluster", "workers", "postgres", "leaves", "bench"):
        print(f"    {part:<10} {r[f'cpu_s_per_million_{part}']:7.2f} s")
    print(
        f"  PostgreSQL per million readings: {r['transactions_per_million']:,.0f} transactions, "
        f"{r['wal_bytes_per_reading']:.0f} WAL bytes a reading, "
        f"{r['wal_fpi_per_million']:,.0f} full-page images"
    )
    group_rate = GROUP_SITES * PER_SITE_READINGS_PER_S
    center_s = sum(r[f"cpu_s_per_million_{p}"] for p in ("cluster", "workers", "postgres"))
    cores = group_rate * center_s / 1e6
    print(
        f"  a {GROUP_SITES:,}-site group at {PER_SITE_READINGS_PER_S:g} readings/s a site: "
        f"{group_rate:,.0f} readings/s, {cores:.2f} busy cores at the center "
        f"(cluster {group_rate * r['cpu_s_per_million_cluster'] / 1e6:.2f}, "
        f"workers {group_rate * r['cpu_s_per_million_workers'] / 1e6:.2f}, "
        f"PostgreSQL {group_rate * r['cpu_s_per_million_postgres'] / 1e6:.2f})"
    )
    print(
        json.dumps(
            {
                "metric": "uplink_readings_per_s",
                "value": round(r["value"]),
                "ceiling": round(r["ceiling"]),
                "ratio": round(ratio, 3),
                "center_cores_for_1000_sites": round(cores, 2),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=100)
    parser.add_argument("--messages", type=int, default=60, help="messages a site publishes")
    parser.add_argument(
        "--rows",
        type=int,
        default=200,
        help="readings a message (200: 5 s of a 200-series site, the gateway's default linger)",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fetch", type=int, default=256, help="messages a worker takes at once")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    url = os.environ.get("ZEROCARBON_DATABASE_URL")
    if url:
        report(args, asyncio.run(bench(args, url)))
        return
    folder = Path(tempfile.mkdtemp(prefix="zc-bench-uplink-"))
    server = EmbeddedPostgres(folder / "pg")
    try:
        report(args, asyncio.run(bench(args, server.start())))
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
