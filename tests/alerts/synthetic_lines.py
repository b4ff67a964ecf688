"""Synthetic hourly data of a production line, shaped by the plant simulator's line model.

Production follows the simulator (:class:`zerocarbon.simulators.loads.LineLoad`: shift
pattern, ramps, smooth 4 % noise; units = process kWh x ``units_per_kwh`` as in
``simulators/plant.py``). The simulator meters the process energy only, so its energy per
unit is exactly constant; here the metered energy adds what a real line has and the drift
rule has to see through: a fixed load per hour and independent Gaussian noise::

    E_h = fixed_kwh + kwh_per_unit * (1 + degradation [h >= onset]) * U_h + N(0, sigma)

with ``kwh_per_unit = 1 / units_per_kwh`` and ``sigma = noise_fraction * rated_power_kw
* 1 h``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zerocarbon.alerts.drift import FloatArray
from zerocarbon.simulators.loads import PATTERNS, LineLoad

HOUR_S = 3600.0


@dataclass(frozen=True, slots=True)
class SyntheticLine:
    """Settings of one synthetic line (defaults: the simulator's defaults)."""

    rated_power_kw: float = 200.0
    pattern_index: int = 0  # 0: three shifts, 1: day shift (simulators/loads.PATTERNS)
    units_per_kwh: float = 2.0  # [simulation] units_per_kwh default
    fixed_kw: float = 20.0  # lighting, air leaks, standby [kW]
    noise_fraction: float = 0.02  # hourly energy noise, fraction of rated [-]
    step_s: float = 600.0  # integration step of the line model [s]


def simulate_hours(
    line: SyntheticLine,
    seed: int,
    hours: int,
    start_hour: int = 0,
    onset_hour: int | None = None,
    degradation: float = 0.05,
) -> tuple[FloatArray, FloatArray]:
    """Hourly ``(energy_kwh, units)`` for ``hours`` hours from ``start_hour`` (UTC hours
    since the epoch, site in UTC); the energy per unit rises by ``degradation`` from
    ``onset_hour`` (an index into the returned hours) on."""
    load = LineLoad(line.rated_power_kw, PATTERNS[line.pattern_index], seed, f"line-{seed}")
    steps_per_hour = int(round(HOUR_S / line.step_s))
    t0_s = start_hour * HOUR_S
    load.start((t0_s % 86400.0) / HOUR_S)
    process_kwh = np.zeros(hours)
    for h in range(hours):
        total = 0.0
        for s in range(steps_per_hour):
            mid_s = t0_s + h * HOUR_S + (s + 0.5) * line.step_s
            power_kw = load.step(mid_s, (mid_s % 86400.0) / HOUR_S, line.step_s)
            total += power_kw * line.step_s / HOUR_S
        process_kwh[h] = total
    units = process_kwh * line.units_per_kwh
    factor = np.ones(hours)
    if onset_hour is not None:
        factor[onset_hour:] += degradation
    rng = np.random.default_rng(seed)
    noise_kwh = rng.normal(0.0, line.noise_fraction * line.rated_power_kw, hours)
    energy_kwh: FloatArray = line.fixed_kw + units / line.units_per_kwh * factor + noise_kwh
    return energy_kwh, units
