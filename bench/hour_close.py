"""Time from an hour closing to its carbon row being stored, on the real chain.

A site of ``--devices`` meters (one grid meter, the rest sub-meters) reports once a
(simulated) second through the runtime's own pipeline: admission, the binary-COPY
writer and the carbon service, into PostgreSQL. The readings are put in real time
(``--rate`` simulated seconds per real second); when the first reading after an hour
boundary has been put, the clock starts; it stops when ``hourly_carbon`` holds that
hour's row computed from data covering the whole hour (``complete``). Repeated over
``--hours`` boundaries; prints each latency, the median and the maximum, and one JSON
line ``{"metric": "hour_close_latency_s", "value": median, "max": ...}``.

    ZEROCARBON_DATABASE_URL=postgresql://... python bench/hour_close.py [--devices 200]

Without ``ZEROCARBON_DATABASE_URL`` an embedded PostgreSQL is started in a temporary
folder.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from zerocarbon.batch import ReadingBatch, SeriesRegistry
from zerocarbon.carbon_engine.engine import CarbonEngine
from zerocarbon.carbon_service import CarbonService, warm_up_kernels
from zerocarbon.config import SiteConfig, parse_site
from zerocarbon.ingest.admission import Admission
from zerocarbon.ingest.pipeline import Pipeline
from zerocarbon.storage.database import (
    create_schema,
    drop_database,
    ensure_database,
    open_pool,
    register_site,
)
from zerocarbon.storage.embedded import EmbeddedPostgres
from zerocarbon.storage.writer import ReadingWriter

T0_S = 1_782_000_000 - 1_782_000_000 % 3600 + 3600 - 30  # 30 s before an hour boundary


class BenchClock:
    """The gateway's clock: simulated seconds, moved by the feeder."""

    def __init__(self, start_s: float) -> None:
        self.t = start_s

    @property
    def speed(self) -> float:
        return 1.0

    def now_s(self) -> float:
        return self.t

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.t, UTC)

    async def sleep(self, interval_s: float) -> None:
        await asyncio.sleep(interval_s)


def make_site(n: int) -> SiteConfig:
    devices: list[dict[str, Any]] = [
        {
            "id": f"m{d:04d}",
            "role": "grid" if d == 0 else "load",
            "protocol": "mqtt",
            "topic": f"b/m{d:04d}",
            "interval_s": 1.0,
            "fields": {"e": "energy_import_kwh"},
        }
        for d in range(n)
    ]
    return parse_site({"devices": devices, "mqtt": {"url": "mqtt://127.0.0.1:1883"}}, "bench")


async def run(url: str, n_devices: int, hours: int, rate: float) -> list[float]:
    site = make_site(n_devices)
    series = SeriesRegistry.for_site(site)
    warm_up_kernels(site)
    pool = await open_pool(url, max_size=4)
    async with pool.acquire() as conn:
        await create_schema(conn)
        registry = await register_site(conn, site)
    clock = BenchClock(T0_S)
    writer = ReadingWriter(pool, registry, series)
    carbon = CarbonService(CarbonEngine(site, series), pool, registry)
    pipeline = Pipeline([writer, carbon], admission=Admission(site, series, clock))
    task = asyncio.create_task(pipeline.run())
    ids = np.array([series.id(d.id, "energy_import_kwh") for d in site.devices], np.int32)
    counters = np.zeros(n_devices)
    latencies: list[float] = []
    t = T0_S
    boundary = (T0_S // 3600 + 1) * 3600
    try:
        while len(latencies) < hours:
            # one simulated second of readings (100 kW a meter)
            t += 1
            clock.t = t
            counters += 100.0 / 3600.0
            await pipeline.put(
                ReadingBatch.of(ids, np.full(n_devices, t * 1_000_000, np.int64), counters)
            )
            if t == boundary:  # the hour has closed: the reading at its end is in
                started = time.perf_counter()
                hour = datetime.fromtimestamp(boundary - 3600, UTC)
                while True:
                    async with pool.acquire() as conn:
                        done = await conn.fetchval(
                            "SELECT complete FROM hourly_carbon WHERE hour_start = $1", hour
                        )
                    if done:
                        break
                    # keep the data flowing while waiting, as devices would
                    t += 1
                    clock.t = t
                    counters += 100.0 / 3600.0
                    await pipeline.put(
                        ReadingBatch.of(ids, np.full(n_devices, t * 1_000_000, np.int64), counters)
                    )
                    await asyncio.sleep(1.0 / rate)
                latencies.append(time.perf_counter() - started)
                print(f"hour {hour.isoformat()}: row stored {latencies[-1]:.2f} s after it closed")
                # jump to 30 s before the next boundary
                skip = boundary + 3600 - 30 - t
                counters += 100.0 / 3600.0 * skip
                t += skip
                boundary += 3600
            else:
                await asyncio.sleep(1.0 / rate)
    finally:
        await pipeline.close()
        await task
        await carbon.flush()
        await pool.close()
    return latencies


async def _measure(devices: int, hours: int, rate: float) -> list[float]:
    server_url = os.environ.get("ZEROCARBON_DATABASE_URL")
    embedded = None
    if not server_url:
        embedded = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="zc-bench-")) / "pg")
        server_url = embedded.start()
    name = f"zc_bench_{secrets.token_hex(3)}"
    try:
        url = await ensure_database(server_url, name)
        return await run(url, devices, hours, rate)
    finally:
        await drop_database(server_url, name)
        if embedded is not None:
            embedded.stop()


def measure(devices: int = 200, hours: int = 5, rate: float = 1.0) -> list[float]:
    """Latencies [s] of ``hours`` hour closes (for other benchmarks to report)."""
    return asyncio.run(_measure(devices, hours, rate))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--hours", type=int, default=5)
    parser.add_argument("--rate", type=float, default=1.0, help="simulated s per real s")
    args = parser.parse_args()
    latencies = await _measure(args.devices, args.hours, args.rate)
    print(
        f"hour close -> row stored: median {statistics.median(latencies):.2f} s, "
        f"max {max(latencies):.2f} s over {len(latencies)} hours ({args.devices} devices)"
    )
    print(
        json.dumps(
            {
                "metric": "hour_close_latency_s",
                "value": round(statistics.median(latencies), 3),
                "max": round(max(latencies), 3),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
