"""The drift rule on the simulated plant, end to end (a short run of
bench/drift_plant.py): readings of every device through the carbon engine into the
line's drift monitor with the drift rule's defaults; a 5 % degradation of the energy per
unit of line A (three shifts) and line B (day shift) is caught within 24 hours, and the
undegraded days before it raise no signal."""

from __future__ import annotations

import importlib.util
import sys
from datetime import timedelta
from types import ModuleType

from tests.conftest import REPO_ROOT

SEED = 3
BASELINE_H = 168
ONSET_H = BASELINE_H + 29  # 05:00 Shanghai on day 9
WATCH_H = 24


def _bench() -> ModuleType:
    path = REPO_ROOT / "bench" / "drift_plant.py"
    spec = importlib.util.spec_from_file_location("drift_plant_bench", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_five_percent_degradation_on_the_plant_is_detected_within_a_day() -> None:
    bench = _bench()
    setting = bench.default_setting()
    assert (setting.period, setting.residual_model) == ("hour", "relative")
    site = bench.bench_site(
        SEED, 0.1, 0.02, 60.0, ("line_a", ONSET_H * 3600.0, 5.0), also_degraded=("line_b",)
    )
    result = bench.run_plant(site, ONSET_H + WATCH_H, ("line_a", "line_b"), (setting,))
    periods = result.periods[("line_a", setting)]
    monitor = result.monitors[("line_a", setting)]
    onset = bench.START + timedelta(hours=ONSET_H)
    assert monitor.baseline is not None and monitor.baseline_error is None
    assert monitor.baseline.n == BASELINE_H
    assert monitor.baseline.r_squared > 0.9
    # the idle load (0.1 x 450 kW) is the intercept, 0.5 kWh per unit the slope
    assert 25.0 < monitor.baseline.fixed_kwh < 65.0
    assert abs(monitor.baseline.kwh_per_unit - 0.5) < 0.02
    # the efficiency noise is 2 % of the process energy: the relative spread is below it
    assert monitor.baseline.residual_std_share is not None
    assert 0.005 < monitor.baseline.residual_std_share < 0.02
    assert len(periods) == ONSET_H + WATCH_H  # every closed hour came through the engine
    for line in ("line_a", "line_b"):
        periods = result.periods[(line, setting)]
        before = [p for p in periods if p.end <= onset and not p.in_baseline]
        assert len(before) == ONSET_H - BASELINE_H
        assert not any(p.signal for p in before)
        delay_h = bench.detection_delay_h(periods, onset)
        assert delay_h is not None and delay_h <= 24, line
