"""Efficiency drift on the simulated plant: detection delay and false alerts, end to end.

The demo site (examples/demo-site.toml) with a production counter on both lines (line A
runs three shifts, line B one day shift), each line drawing an idle load of
``--idle`` x its rating at all hours and an energy per unit that varies by
``--noise`` (relative sd, one seeded factor per hour: product mix, temperature), is
stepped by the simulator's :class:`PlantModel`. Every device's readings (all the metrics
it exposes) are taken at its interval and fed, as numpy batches, through the
:class:`CarbonEngine`; the engine's hourly line rows go into one
:class:`LineDriftMonitor` per line and per period (hour, and 8-hour shift), with the
drift rule's defaults (baseline: the first 168 closed hours, k = 1, h = 5).

For each seed:

(a) ``--baseline-days`` + ``--days`` days with no degradation: the drift signals are
    false alerts;
(b) the same seed with the line ``--line`` degraded by ``--percent`` % (the simulator's
    ``line_degradations`` fault) from a seeded hour 24..47 h after the baseline period:
    the detection delay is the hours from the onset to the end of the first signalling
    period after it (the signal's own hour counted); signals before the onset are false
    alerts too. The run stops ``--watch-h`` hours after the onset.

One JSON line per run and period, then a summary per period (last line: JSON). The
device intervals and the physics step are ``--interval-s`` (default 60 s, against 5-10 s
in the demo): the hourly energies come from counters, so the interval changes only how
a reading's energy is split at hour boundaries, and 60 s keeps 10 seeds within a few
minutes.

    python bench/drift_plant.py [--seeds 10] [--days 30] [--percent 5] [--noise 0.02]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zerocarbon.alerts.drift import DRIFT_H, DRIFT_K  # noqa: E402
from zerocarbon.alerts.drift_monitor import DriftPeriod, LineDriftMonitor  # noqa: E402
from zerocarbon.batch import ReadingBatch, SeriesRegistry  # noqa: E402
from zerocarbon.carbon_engine.engine import CarbonEngine  # noqa: E402
from zerocarbon.config import DriftRule, MqttDevice, SiteConfig, parse_site  # noqa: E402
from zerocarbon.rows import HourlyLine  # noqa: E402
from zerocarbon.simulators.plant import PlantModel  # noqa: E402

DEMO_SITE = ROOT / "examples" / "demo-site.toml"
START = datetime(2026, 6, 1, tzinfo=ZoneInfo("Asia/Shanghai")).astimezone(UTC)
HOUR_S = 3600
PERIODS = ("hour", "shift")


def bench_site(
    seed: int,
    idle_fraction: float,
    efficiency_noise: float,
    interval_s: float,
    degradation: tuple[str, float, float] | None = None,
) -> SiteConfig:
    """The demo site with a production counter on line B too, every device read every
    ``interval_s`` [s], and the line efficiency settings; ``degradation`` is ``(line,
    start_s after the simulation start, percent)``."""
    data: dict[str, Any] = tomllib.loads(DEMO_SITE.read_text(encoding="utf-8"))
    devices = data["devices"]
    devices.append(
        {
            "id": "output_counter_b",
            "role": "production",
            "protocol": "mqtt",
            "line": "line_b",
            "topic": "factory/line_b/output",
            "fields": {"units_total": "production_count_units"},
        }
    )
    for d in devices:
        if d["protocol"] == "mqtt":
            d["interval_s"] = interval_s
        else:
            d["poll_interval_s"] = interval_s
    sim = data["simulation"]
    sim.update(
        seed=seed,
        tick_s=interval_s,
        publish_interval_s=interval_s,
        line_idle_fraction=idle_fraction,
        line_efficiency_noise=efficiency_noise,
        faults={},
    )
    if degradation is not None:
        line, start_s, percent = degradation
        sim["faults"] = {
            "line_degradations": [{"line": line, "start_s": start_s, "percent": percent}]
        }
    return parse_site(data, "<drift bench site>", DEMO_SITE.parent)


def _interval_s(site: SiteConfig, device_id: str) -> float:
    device = site.device(device_id)
    if isinstance(device, MqttDevice):
        return float(device.interval_s)
    return float(getattr(device, "poll_interval_s"))  # noqa: B009 (Modbus, DL/T 645)


def plant_line_hours(site: SiteConfig, hours: int, chunk_h: int = 24) -> Iterator[HourlyLine]:
    """The engine's hourly line rows of ``hours`` simulated hours from :data:`START`,
    closed hours in time order: the plant is stepped to each device's next reading time,
    readings are gathered into numpy arrays and fed to the engine ``chunk_h`` hours at a
    time."""
    start_s = START.timestamp()
    plant = PlantModel(site, start_s)
    registry = SeriesRegistry.for_site(site)
    engine = CarbonEngine(site, registry)
    devices = [d.id for d in site.devices]
    step_s = {d: _interval_s(site, d) for d in devices}
    series = {d: [registry.id(d, m) for m in plant.device_metrics(d)] for d in devices}
    # reading times: the union of every device's grid, due devices per time
    due: dict[float, list[str]] = {}
    end_s = start_s + hours * HOUR_S
    for d in devices:
        for t in np.arange(start_s, end_s + step_s[d] / 2, step_s[d]).tolist():
            due.setdefault(round(t, 6), []).append(d)
    schedule = sorted(due)
    taken = start_s
    i = 0
    chunk_ends = np.arange(start_s + chunk_h * HOUR_S, end_s, chunk_h * HOUR_S).tolist()
    for chunk_end_s in [*chunk_ends, end_s]:
        ids: list[int] = []
        ts_us: list[int] = []
        values: list[float] = []
        while i < len(schedule) and schedule[i] <= chunk_end_s:
            t = schedule[i]
            plant.advance(t)
            stamp = int(round(t * 1e6))
            for d in due[t]:
                reading = plant.values(d)
                ids.extend(series[d])
                values.extend(reading.values())
                ts_us.extend([stamp] * len(reading))
            i += 1
        engine.ingest(ReadingBatch.of(ids, ts_us, values))
        closed = [h for h in engine.hours() if taken <= h and h + HOUR_S <= chunk_end_s]
        # results() also recomputes the other held hours of the same months: keep ours
        wanted = {datetime.fromtimestamp(h, UTC) for h in closed}
        rows = [r for r in engine.results(closed).lines if r.hour_start in wanted]
        rows.sort(key=lambda r: (r.hour_start, r.line))
        yield from rows
        taken = float(chunk_end_s)


def drift_rule(period: str, k: float = DRIFT_K, h: float = DRIFT_H) -> DriftRule:
    """The drift rule's defaults (baseline: first 168 hours, k = 1, h = 5)."""
    return DriftRule(kind="drift", name=f"drift_{period}", period=period, k=k, h=h)


@dataclass(slots=True)
class RunResult:
    """Drift periods per (line, period kind) of one simulated run."""

    periods: dict[tuple[str, str], list[DriftPeriod]] = field(default_factory=dict)
    monitors: dict[tuple[str, str], LineDriftMonitor] = field(default_factory=dict)


def run_plant(
    site: SiteConfig,
    hours: int,
    lines: tuple[str, ...],
    periods: tuple[str, ...] = PERIODS,
    k: float = DRIFT_K,
    h: float = DRIFT_H,
) -> RunResult:
    """Feed ``hours`` simulated hours of ``site`` through the engine into one drift
    monitor per line and period kind."""
    tz = ZoneInfo(site.site.timezone)
    result = RunResult()
    for line in lines:
        for period in periods:
            result.monitors[(line, period)] = LineDriftMonitor(line, drift_rule(period, k, h), tz)
            result.periods[(line, period)] = []
    for row in plant_line_hours(site, hours):
        for period in periods:
            key = (row.line, period)
            if key in result.monitors:
                result.periods[key].extend(
                    result.monitors[key].add_hour(
                        row.hour_start, row.energy_kwh, row.production_units
                    )
                )
    return result


def signals(periods: list[DriftPeriod]) -> list[DriftPeriod]:
    return [p for p in periods if p.signal]


def detection_delay_h(periods: list[DriftPeriod], onset: datetime) -> int | None:
    """Hours from ``onset`` to the end of the first signalling period ending after it."""
    for p in periods:
        if p.signal and p.end > onset:
            return int((p.end - onset) / timedelta(hours=1))
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--baseline-days", type=int, default=7)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--line", default="line_a")
    parser.add_argument("--percent", type=float, default=5.0)
    parser.add_argument("--idle", type=float, default=0.1, help="line_idle_fraction")
    parser.add_argument("--noise", type=float, default=0.02, help="line_efficiency_noise")
    parser.add_argument("--interval-s", type=float, default=60.0)
    parser.add_argument("--watch-h", type=int, default=72)
    parser.add_argument("--k", type=float, default=DRIFT_K, help="reference value [sd]")
    parser.add_argument("--h", type=float, default=DRIFT_H, help="decision limit [sd]")
    args = parser.parse_args()
    lines = ("line_a", "line_b")
    baseline_h = args.baseline_days * 24
    started = time.monotonic()
    false_alerts: dict[str, int] = dict.fromkeys(PERIODS, 0)
    false_by_line: dict[tuple[str, str], int] = {}
    delays: dict[str, list[int | None]] = {p: [] for p in PERIODS}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        quiet = run_plant(
            bench_site(seed, args.idle, args.noise, args.interval_s),
            baseline_h + args.days * 24,
            lines,
            k=args.k,
            h=args.h,
        )
        for (line, period), periods in quiet.periods.items():
            monitor = quiet.monitors[(line, period)]
            baseline = monitor.baseline
            n = len(signals(periods))
            false_alerts[period] += n
            false_by_line[(line, period)] = false_by_line.get((line, period), 0) + n
            print(
                json.dumps(
                    {
                        "scenario": "no_degradation",
                        "seed": seed,
                        "line": line,
                        "period": period,
                        "monitored_periods": sum(not p.in_baseline for p in periods),
                        "false_alerts": n,
                        "r_squared": None if baseline is None else round(baseline.r_squared, 4),
                        "residual_sd_kwh": None
                        if baseline is None
                        else round(baseline.residual_std_kwh, 2),
                        "baseline_error": monitor.baseline_error,
                    }
                ),
                flush=True,
            )
        onset_h = baseline_h + 24 + (seed * 7) % 24
        onset = START + timedelta(hours=onset_h)
        degraded = run_plant(
            bench_site(
                seed,
                args.idle,
                args.noise,
                args.interval_s,
                (args.line, onset_h * HOUR_S, args.percent),
            ),
            onset_h + args.watch_h,
            (args.line,),
            k=args.k,
            h=args.h,
        )
        for (line, period), periods in degraded.periods.items():
            before = [p for p in periods if p.end <= onset]
            delay = detection_delay_h(periods, onset)
            delays[period].append(delay)
            false_alerts[period] += len(signals(before))
            print(
                json.dumps(
                    {
                        "scenario": "degraded",
                        "seed": seed,
                        "line": line,
                        "period": period,
                        "percent": args.percent,
                        "onset": onset.isoformat(),
                        "delay_h": delay,
                        "false_alerts_before_onset": len(signals(before)),
                    }
                ),
                flush=True,
            )
    command = "python bench/drift_plant.py " + " ".join(sys.argv[1:])
    summary: dict[str, Any] = {
        "metric": "drift_plant",
        "command": command.strip(),
        "seeds": args.seeds,
        "baseline_days": args.baseline_days,
        "days": args.days,
        "percent": args.percent,
        "idle_fraction": args.idle,
        "efficiency_noise": args.noise,
        "interval_s": args.interval_s,
        "k": args.k,
        "h": args.h,
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    for period in PERIODS:
        found = [d for d in delays[period] if d is not None]
        summary[period] = {
            "delay_h_median": statistics.median(found) if found else None,
            "delay_h_max": max(found) if found else None,
            "detected_within_24h": sum(d <= 24 for d in found),
            "runs": len(delays[period]),
            "missed": len(delays[period]) - len(found),
            "false_alerts_total": false_alerts[period],
            "false_alerts_by_line": {
                line: n for (line, p), n in false_by_line.items() if p == period
            },
        }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
