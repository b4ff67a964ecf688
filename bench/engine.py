"""Streaming carbon engine throughput against one bare numpy pass over the same input.

Input: ``--devices`` MQTT devices polled about once a second (energy counters on a
uint32 x 0.01 kWh register, a few % power-only gauges), ``--readings`` readings in
arrival order: tick by tick, every device once per tick, as collectors deliver them.
Fed batch by batch (``--batch`` readings) to ``CarbonEngine.ingest``.

Ceiling: one bare numpy pass over the same input in the same run (a sum over each of the
arrays series, ts_us, value). Prints the medians over ``--repeat`` runs, the kernel's
speed-up over its numpy reference on a slice (both driven the way the engine drives
the kernel), the time from an hour closing to its carbon row being stored
(``bench/hour_close.py``, on ``ZEROCARBON_DATABASE_URL`` or an embedded server), and
last one JSON line:
``{"metric": "readings_per_s", "value": ..., "ceiling": ..., "ratio": ...}``.

    python bench/engine.py [--readings 10000000] [--devices 1000] [--repeat 5]
                           [--hour-close-hours 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from zerocarbon.batch import ReadingBatch, SeriesRegistry
from zerocarbon.carbon_engine import stream as st
from zerocarbon.carbon_engine import stream_reference
from zerocarbon.carbon_engine.engine import CarbonEngine
from zerocarbon.carbon_engine.series_model import SeriesModel
from zerocarbon.config import SiteConfig, parse_site

T0_US = 1_782_000_123_456_789  # not on an hour boundary
POWER_SHARE = 0.03  # devices that report power only
RATED_KW = 200.0


def make_site(n_devices: int) -> SiteConfig:
    devices: list[dict[str, Any]] = []
    for d in range(n_devices):
        power_only = d > 0 and d % round(1 / POWER_SHARE) == 0
        fields: dict[str, Any] = (
            {"p": "active_power_kw"}
            if power_only
            else {"e": {"metric": "energy_import_kwh", "type": "uint32", "scale": 0.01}}
        )
        devices.append(
            {
                "id": f"dev{d:05d}",
                "role": "grid" if d == 0 else "load",
                "protocol": "mqtt",
                "topic": f"plant/dev{d:05d}",
                "interval_s": 1.0,
                "rated_power_kw": RATED_KW,
                "fields": fields,
            }
        )
    return parse_site({"devices": devices, "mqtt": {"url": "mqtt://127.0.0.1:1883"}}, "bench")


def make_readings(
    site: SiteConfig, registry: SeriesRegistry, n: int, seed: int = 7
) -> ReadingBatch:
    """``n`` readings, tick-major: every device once per ~1 s tick, in arrival order."""
    rng = np.random.default_rng(seed)
    n_dev = len(site.devices)
    ticks = -(-n // n_dev)
    ids = np.empty(n_dev, np.int32)
    power = np.zeros(n_dev, np.bool_)
    for d, dev in enumerate(site.devices):
        power[d] = "p" in dev.fields  # type: ignore[union-attr]
        ids[d] = registry.id(dev.id, "active_power_kw" if power[d] else "energy_import_kwh")
    offset = rng.integers(0, 1_000_000, n_dev)  # each device's phase in the second
    jitter = rng.integers(-20_000, 20_000, (ticks, n_dev))
    ts = T0_US + np.arange(ticks, dtype=np.int64)[:, None] * 1_000_000 + offset + jitter
    load_kw = rng.uniform(10.0, 150.0, n_dev) * rng.uniform(0.8, 1.2, (ticks, n_dev))
    start = rng.uniform(0.0, 2.0**32 * 0.01, n_dev)
    energy = (start + np.cumsum(load_kw / 3600.0, axis=0)) % (2.0**32 * 0.01)
    value = np.where(power, load_kw, np.round(energy, 2))
    series = np.broadcast_to(ids, (ticks, n_dev))
    return ReadingBatch.of(series.ravel()[:n], ts.ravel()[:n], value.ravel()[:n])


def timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def feed_all(engine: Any, batches: list[ReadingBatch]) -> None:
    for b in batches:
        engine.ingest(b)


def ceiling_pass(batch: ReadingBatch) -> float:
    return float(batch.series.sum()) + float(batch.ts_us.sum()) + float(batch.value.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--readings", type=int, default=10_000_000)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--slice", type=int, default=200_000, help="readings for the speed-up")
    parser.add_argument(
        "--hour-close-hours",
        type=int,
        default=3,
        help="hours for the hour-close latency on a real database (bench/hour_close.py; "
        "ZEROCARBON_DATABASE_URL or an embedded server); 0 skips it",
    )
    args = parser.parse_args()

    site = make_site(args.devices)
    registry = SeriesRegistry.for_site(site)
    data = make_readings(site, registry, args.readings)
    n = len(data)
    batches = [data.take(np.arange(a, min(a + args.batch, n))) for a in range(0, n, args.batch)]
    feed_all(CarbonEngine(site, registry), batches[:2])  # compile / load the kernel

    engine_s, ceiling_s = [], []
    for _ in range(args.repeat):
        engine = CarbonEngine(site, registry)
        engine_s.append(timed(partial(feed_all, engine, batches)))
        ceiling_s.append(timed(lambda: ceiling_pass(data)))
    value = n / statistics.median(engine_s)
    ceiling = n / statistics.median(ceiling_s)

    m = min(args.slice, n)
    head = data.take(np.arange(m))
    part = [head.take(np.arange(a, min(a + args.batch, m))) for a in range(0, m, args.batch)]
    kernel_s, ref_s = [], []
    reference = stream_reference.stream_readings
    for _ in range(args.repeat):  # engines built before the clock starts
        kernel_s.append(timed(partial(feed_all, CarbonEngine(site, registry), part)))
        ref_s.append(timed(partial(feed_all, CarbonEngine(site, registry, kernel=reference), part)))
    check_k, check_r = CarbonEngine(site, registry), CarbonEngine(site, registry, kernel=reference)
    feed_all(check_k, part)
    feed_all(check_r, part)
    np.testing.assert_allclose(check_k.energy, check_r.energy, rtol=1e-9, atol=1e-9)

    kinds = np.bincount(SeriesModel(site, registry).kind[data.series[: args.devices]], minlength=3)
    print(
        f"{args.devices} devices ({kinds[st.POWER]} power-only), {n:,} readings in "
        f"{len(batches)} batches of {args.batch:,} to CarbonEngine.ingest, median of "
        f"{args.repeat}"
    )
    print(f"engine:  {value / 1e6:8.2f} M readings/s  ({statistics.median(engine_s):.2f} s)")
    print(f"ceiling: {ceiling / 1e6:8.2f} M readings/s  (sum of series, ts_us, value)")
    print(
        f"kernel vs numpy reference on {m:,} readings: "
        f"{statistics.median(ref_s) / statistics.median(kernel_s):.1f}x "
        f"({m / statistics.median(kernel_s) / 1e6:.2f} vs "
        f"{m / statistics.median(ref_s) / 1e6:.2f} M readings/s)"
    )
    if args.hour_close_hours > 0:
        import hour_close  # bench/hour_close.py, beside this file

        latencies = hour_close.measure(hours=args.hour_close_hours)
        print(
            f"hour close -> carbon row stored: median {statistics.median(latencies):.2f} s, "
            f"max {max(latencies):.2f} s over {len(latencies)} hours (bench/hour_close.py)"
        )
    print(
        json.dumps(
            {
                "metric": "readings_per_s",
                "value": round(value, 1),
                "ceiling": round(ceiling, 1),
                "ratio": round(value / ceiling, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
