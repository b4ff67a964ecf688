"""Carbon engine throughput against a bare numpy pass over the same data, in one run.

Ceiling: ``np.diff`` of the counter values then ``np.add.reduceat`` into hours (the
least work that turns counter readings into hourly energy, with no reset handling and
no splitting at hour boundaries). Measured:

* ``CounterAccumulator.add`` on arrays (numba kernels: deltas with reset detection,
  split across hour boundaries, hourly sums);
* ``CarbonEngine.ingest`` from Reading objects (the pipeline's path).

Prints points/s of each and the ratio to the ceiling, median over ``--repeat`` runs.

    python bench/bench_engine.py [--points 5000000] [--readings 500000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from zerocarbon.carbon_engine.accumulator import CounterAccumulator
from zerocarbon.carbon_engine.engine import CarbonEngine
from zerocarbon.carbon_engine.service import warm_up_kernels
from zerocarbon.config import load_site
from zerocarbon.ingest.reading import Reading

SITE = Path(__file__).resolve().parents[1] / "examples" / "demo-site.toml"
T0_S = 1_782_000_000.0  # an hour boundary is irrelevant: data starts mid-hour


def _series(n: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ts = T0_S + np.cumsum(rng.uniform(0.5, 1.5, n))  # ~1 s polls
    values = 1e6 + np.cumsum(rng.uniform(0.0, 0.3, n))  # kWh counter
    return ts, values


def ceiling(ts: np.ndarray, values: np.ndarray) -> np.ndarray:
    deltas = np.diff(values)
    hours = np.floor(ts[1:] / 3600.0).astype(np.int64)
    starts = np.flatnonzero(np.r_[True, hours[1:] != hours[:-1]])
    return np.add.reduceat(deltas, starts)


def _median_rate(n: int, repeat: int, run: object) -> float:
    rates = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()  # type: ignore[operator]
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=5_000_000)
    parser.add_argument("--readings", type=int, default=500_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    site = load_site(SITE)
    warm_up_kernels(site)
    ts, values = _series(args.points)

    bare = _median_rate(args.points, args.repeat, lambda: ceiling(ts, values))
    kernels = _median_rate(
        args.points, args.repeat, lambda: CounterAccumulator().add(("d", "m"), ts, values)
    )
    total_bare = ceiling(ts, values).sum()
    acc = CounterAccumulator()
    acc.add(("d", "m"), ts, values)
    total_acc = sum(acc.hourly(("d", "m"), h)[0] for h in acc.hours())
    assert abs(total_acc - total_bare) <= 1e-6 * total_bare, (total_acc, total_bare)

    n = args.readings
    readings = [
        Reading(datetime.fromtimestamp(float(t), UTC), "grid_meter", "energy_import_kwh", float(v))
        for t, v in zip(ts[:n], values[:n], strict=True)
    ]
    engine_rate = _median_rate(n, args.repeat, lambda: CarbonEngine(site).ingest(readings))

    print(f"points={args.points:,} readings={n:,} repeat={args.repeat}")
    print(f"bare numpy diff+reduceat (ceiling): {bare / 1e6:8.1f} M points/s")
    print(
        f"accumulator (numba kernels):        {kernels / 1e6:8.1f} M points/s"
        f"   ratio {kernels / bare:.2f}"
    )
    print(
        f"engine.ingest from Reading objects: {engine_rate / 1e6:8.1f} M points/s"
        f"   ratio {engine_rate / bare:.3f}"
    )


if __name__ == "__main__":
    main()
