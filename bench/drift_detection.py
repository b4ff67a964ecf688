"""Efficiency drift rule: detection delay and false alarms over many seeded lines.

Each run simulates a line shaped like the plant simulator's (tests/alerts/
synthetic_lines.py: the simulator's LineLoad for production, plus a fixed load and
hourly noise), fits the ISO 50006 baseline on ``--baseline-days`` days, then runs the
drift CUSUM (upper side, hourly residuals) over ``--days`` days without degradation
(false alarms) and, separately, over a period with a ``--degradation`` rise of the
energy per unit from a random hour (delay = hours from the onset to the first signal,
the hour of the signal counted). Both shift patterns alternate between runs. Last line:
a JSON summary.

    python bench/drift_detection.py [--runs 200] [--k 1.0] [--h 5.0] [--noise 0.02]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.alerts.synthetic_lines import SyntheticLine, simulate_hours  # noqa: E402
from zerocarbon.alerts.drift import (  # noqa: E402
    DRIFT_H,
    DRIFT_K,
    Baseline,
    cusum_series,
    drift_cusum_params,
    expected,
    fit_baseline,
)


def _residuals(
    line: SyntheticLine, seed: int, baseline_h: int, hours: int, onset: int | None, deg: float
) -> tuple[np.ndarray, Baseline]:
    energy_kwh, units = simulate_hours(
        line,
        seed,
        baseline_h + hours,
        onset_hour=None if onset is None else baseline_h + onset,
        degradation=deg,
    )
    baseline = fit_baseline(energy_kwh[:baseline_h], units[:baseline_h])
    residuals = energy_kwh[baseline_h:] - expected(baseline, units[baseline_h:])
    return residuals, baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--baseline-days", type=int, default=30)
    parser.add_argument("--degradation", type=float, default=0.05)
    parser.add_argument("--noise", type=float, default=0.02, help="fraction of rated, per h")
    parser.add_argument("--k", type=float, default=DRIFT_K)
    parser.add_argument("--h", type=float, default=DRIFT_H)
    args = parser.parse_args()
    baseline_h = args.baseline_days * 24
    rng = np.random.default_rng(2026)
    delays: list[int] = []
    delays_by_pattern: dict[int, list[int]] = {0: [], 1: []}
    missed = 0
    false_alarms: list[int] = []
    r_squared: list[float] = []
    for run in range(args.runs):
        line = SyntheticLine(pattern_index=run % 2, noise_fraction=args.noise)
        seed = 1000 + run
        quiet, baseline = _residuals(line, seed, baseline_h, args.days * 24, None, 0.0)
        r_squared.append(baseline.r_squared)
        params = drift_cusum_params(baseline, k=args.k, h=args.h)
        false_alarms.append(int(cusum_series(quiet, params).upper_alarm.sum()))
        onset = 24 + int(rng.integers(0, 24))
        drifting, baseline2 = _residuals(
            line, seed + 500_000, baseline_h, onset + 72, onset, args.degradation
        )
        params2 = drift_cusum_params(baseline2, k=args.k, h=args.h)
        signals = np.flatnonzero(cusum_series(drifting, params2).upper_alarm[onset:])
        if signals.size == 0:
            missed += 1
        else:
            delays.append(int(signals[0]) + 1)
            delays_by_pattern[run % 2].append(int(signals[0]) + 1)
    delay = np.array(delays)
    runs_with_fa = sum(1 for f in false_alarms if f > 0)
    print(f"runs {args.runs}, k {args.k}, h {args.h}, noise {args.noise:.3f} x rated per h")
    print(f"baseline R^2: median {np.median(r_squared):.3f}, min {min(r_squared):.3f}")
    if delay.size:
        q = np.percentile(delay, [50, 90, 99])
        print(
            f"detection delay [h]: median {q[0]:.0f}, p90 {q[1]:.0f}, p99 {q[2]:.0f}, "
            f"max {delay.max()}, over 24 h {int((delay > 24).sum())}, missed in 72 h {missed}"
        )
        for index, name in ((0, "three shifts"), (1, "day shift")):
            own = delays_by_pattern[index]
            if own:
                print(f"  {name}: median {np.median(own):.0f} h, max {max(own)} h")
        print(
            "delay histogram [h]:",
            {int(d): int(c) for d, c in zip(*np.unique(delay, return_counts=True), strict=True)},
        )
    print(
        f"false alarms over {args.days} days: {sum(false_alarms)} in total, "
        f"{runs_with_fa} of {args.runs} runs with any"
    )
    summary = {
        "metric": "drift_detection",
        "runs": args.runs,
        "k": args.k,
        "h": args.h,
        "noise_fraction": args.noise,
        "delay_h_median": float(np.median(delay)) if delay.size else None,
        "delay_h_max": int(delay.max()) if delay.size else None,
        "detected_within_24h": int((delay <= 24).sum()),
        "missed": missed,
        "false_alarms_total": sum(false_alarms),
        "runs_with_false_alarm": runs_with_fa,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
