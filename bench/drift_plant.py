"""Efficiency drift on the simulated plant: detection delay and false alerts, end to end.

The demo site (examples/demo-site.toml) with a production counter on both lines (line A
runs three shifts, line B one day shift), each line drawing an idle load of
``--idle`` x its rating at all hours and an energy per unit that varies by
``--noise`` (relative sd, one seeded factor per hour: product mix, temperature), is
stepped by the simulator's :class:`PlantModel`. Every device's readings (all the metrics
it exposes) are taken at its interval and fed, as numpy batches, through the
:class:`CarbonEngine`; the engine's hourly line rows go into one
:class:`LineDriftMonitor` per line and per drift setting: every combination of period
(hour, 8-hour shift), ``--residual-model`` (relative, absolute), ``--k`` and ``--h``
(each may list several values), the baseline the first 168 closed hours. One simulation
serves every setting, so they are compared on the same data.

For each seed:

(a) ``--baseline-days`` + ``--days`` days with no degradation: the drift signals on
    both lines are false alerts;
(b) the same seed with each line of ``--line`` (default both) degraded by ``--percent``
    % (the simulator's ``line_degradations`` fault) from a seeded hour 24..47 h after
    the baseline period: the detection delay is the hours from the onset to the end of
    the first signalling period after it (the signal's own hour counted); signals
    before the onset are false alerts too. The lines' meters, noise and degradations
    are independent, so both lines are degraded in the same run. The run stops
    ``--watch-h`` hours after the onset.

One JSON line per run, line and setting, then a summary per setting (last line: JSON).
The device intervals and the physics step are ``--interval-s`` (default 60 s, against
5-10 s in the demo): the hourly energies come from counters, so the interval changes
only how a reading's energy is split at hour boundaries. ``--jobs`` runs seeds in
parallel processes.

    python bench/drift_plant.py [--seeds 30] [--days 30] [--percent 5] [--noise 0.02]
        [--residual-model relative absolute] [--k 1] [--h 5 6] [--jobs 2]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
import tomllib
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zerocarbon.alerts.drift import DRIFT_H, DRIFT_K, ResidualModel  # noqa: E402
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
RESIDUAL_MODELS: tuple[ResidualModel, ...] = ("relative", "absolute")
LINES = ("line_a", "line_b")


def bench_site(
    seed: int,
    idle_fraction: float,
    efficiency_noise: float,
    interval_s: float,
    degradation: tuple[str, float, float] | None = None,
    also_degraded: Sequence[str] = (),
) -> SiteConfig:
    """The demo site with a production counter on line B too, every device read every
    ``interval_s`` [s], and the line efficiency settings; ``degradation`` is ``(line,
    start_s after the simulation start, percent)``, the same for ``also_degraded``."""
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
            "line_degradations": [
                {"line": each, "start_s": start_s, "percent": percent}
                for each in (line, *also_degraded)
            ]
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


@dataclass(frozen=True, slots=True)
class Setting:
    """One drift rule setting measured."""

    period: str
    residual_model: ResidualModel
    k: float
    h: float

    @property
    def label(self) -> str:
        return f"{self.period} {self.residual_model} k={self.k:g} h={self.h:g}"

    def rule(self) -> DriftRule:
        """The drift rule with this setting (baseline: the first 168 closed hours)."""
        return DriftRule(
            kind="drift",
            name=f"drift_{self.period}",
            period=self.period,
            residual_model=self.residual_model,
            k=self.k,
            h=self.h,
        )


def default_setting() -> Setting:
    """The drift rule's defaults (:class:`DriftRule`)."""
    rule = DriftRule(kind="drift", name="drift")
    return Setting(rule.period, rule.residual_model, rule.k, rule.h)


@dataclass(slots=True)
class RunResult:
    """Drift periods per (line, setting) of one simulated run."""

    periods: dict[tuple[str, Setting], list[DriftPeriod]] = field(default_factory=dict)
    monitors: dict[tuple[str, Setting], LineDriftMonitor] = field(default_factory=dict)


def run_plant(
    site: SiteConfig, hours: int, lines: tuple[str, ...], settings: Sequence[Setting]
) -> RunResult:
    """Feed ``hours`` simulated hours of ``site`` through the engine into one drift
    monitor per line and setting."""
    tz = ZoneInfo(site.site.timezone)
    result = RunResult()
    for line in lines:
        for setting in settings:
            result.monitors[(line, setting)] = LineDriftMonitor(line, setting.rule(), tz)
            result.periods[(line, setting)] = []
    for row in plant_line_hours(site, hours):
        for setting in settings:
            key = (row.line, setting)
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


def onset_hour(seed: int, baseline_h: int) -> int:
    """The degradation's onset, hours after the start: 24..47 h after the baseline."""
    return baseline_h + 24 + (seed * 7) % 24


def run_seed(
    seed: int, args: argparse.Namespace, settings: tuple[Setting, ...]
) -> list[dict[str, Any]]:
    """Both scenarios of one seed; one record per scenario, line and setting."""
    baseline_h = args.baseline_days * 24
    records: list[dict[str, Any]] = []
    quiet = run_plant(
        bench_site(seed, args.idle, args.noise, args.interval_s),
        baseline_h + args.days * 24,
        LINES,
        settings,
    )
    for (line, setting), periods in quiet.periods.items():
        monitor = quiet.monitors[(line, setting)]
        baseline = monitor.baseline
        records.append(
            {
                "scenario": "no_degradation",
                "seed": seed,
                "line": line,
                "setting": setting.label,
                "monitored_periods": sum(p.charted for p in periods),
                "false_alerts": len(signals(periods)),
                "r_squared": None if baseline is None else round(baseline.r_squared, 4),
                "residual_sd": None if baseline is None else round(baseline.residual_sd, 5),
                "chart_unit": monitor.chart_unit,
                "baseline_error": monitor.baseline_error,
            }
        )
    onset_h = onset_hour(seed, baseline_h)
    onset = START + timedelta(hours=onset_h)
    degraded_lines = tuple(args.line)
    degraded = run_plant(
        bench_site(
            seed,
            args.idle,
            args.noise,
            args.interval_s,
            (degraded_lines[0], onset_h * HOUR_S, args.percent),
            degraded_lines[1:],
        ),
        onset_h + args.watch_h,
        degraded_lines,
        settings,
    )
    for (line, setting), periods in degraded.periods.items():
        before = [p for p in periods if p.end <= onset]
        records.append(
            {
                "scenario": "degraded",
                "seed": seed,
                "line": line,
                "setting": setting.label,
                "percent": args.percent,
                "onset": onset.isoformat(),
                "delay_h": detection_delay_h(periods, onset),
                "false_alerts_before_onset": len(signals(before)),
            }
        )
    return records


def summarise(records: list[dict[str, Any]], settings: tuple[Setting, ...]) -> dict[str, Any]:
    """Per setting: false alerts per line (both scenarios), delays per degraded line."""
    out: dict[str, Any] = {}
    for setting in settings:
        own = [r for r in records if r["setting"] == setting.label]
        quiet = [r for r in own if r["scenario"] == "no_degradation"]
        degraded = [r for r in own if r["scenario"] == "degraded"]
        entry: dict[str, Any] = {
            "false_alerts_by_line": {
                line: sum(r["false_alerts"] for r in quiet if r["line"] == line) for line in LINES
            },
            "quiet_runs_with_a_false_alert": sum(r["false_alerts"] > 0 for r in quiet),
            "false_alerts_before_onset": sum(r["false_alerts_before_onset"] for r in degraded),
        }
        for line in sorted({r["line"] for r in degraded}):
            delays = [r["delay_h"] for r in degraded if r["line"] == line]
            found = [d for d in delays if d is not None]
            entry[f"degraded_{line}"] = {
                "runs": len(delays),
                "delay_h_median": statistics.median(found) if found else None,
                "delay_h_max": max(found) if found else None,
                "detected_within_24h": sum(d <= 24 for d in found),
                "missed": len(delays) - len(found),
            }
        out[setting.label] = entry
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--baseline-days", type=int, default=7)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--line", nargs="+", default=list(LINES), choices=LINES)
    parser.add_argument("--percent", type=float, default=5.0)
    parser.add_argument("--idle", type=float, default=0.1, help="line_idle_fraction")
    parser.add_argument("--noise", type=float, default=0.02, help="line_efficiency_noise")
    parser.add_argument("--interval-s", type=float, default=60.0)
    parser.add_argument("--watch-h", type=int, default=72)
    parser.add_argument("--period", nargs="+", default=list(PERIODS), choices=PERIODS)
    parser.add_argument(
        "--residual-model", nargs="+", default=list(RESIDUAL_MODELS), choices=RESIDUAL_MODELS
    )
    parser.add_argument("--k", type=float, nargs="+", default=[DRIFT_K], help="reference [sd]")
    parser.add_argument("--h", type=float, nargs="+", default=[DRIFT_H], help="limit [sd]")
    parser.add_argument("--jobs", type=int, default=1, help="seeds in parallel processes")
    args = parser.parse_args()
    settings = tuple(
        Setting(period, model, k, h)
        for period, model, k, h in itertools.product(
            args.period, args.residual_model, args.k, args.h
        )
    )
    started = time.monotonic()
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    records: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for batch in pool.map(run_seed, seeds, itertools.repeat(args), itertools.repeat(settings)):
            for record in batch:
                print(json.dumps(record), flush=True)
            records.extend(batch)
    command = "python bench/drift_plant.py " + " ".join(sys.argv[1:])
    summary: dict[str, Any] = {
        "metric": "drift_plant",
        "command": command.strip(),
        "seeds": args.seeds,
        "baseline_days": args.baseline_days,
        "days": args.days,
        "line_days_per_line": args.seeds * args.days,
        "percent": args.percent,
        "idle_fraction": args.idle,
        "efficiency_noise": args.noise,
        "interval_s": args.interval_s,
        "elapsed_s": round(time.monotonic() - started, 1),
        "settings": summarise(records, settings),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
