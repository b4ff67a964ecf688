"""Line efficiency in the simulated plant: an idle load and an hourly efficiency factor
(simulation.line_idle_fraction, line_efficiency_noise) on what the line's meter counts,
while its production counter counts the process output; off by default."""

from __future__ import annotations

import math
import statistics
import tomllib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import DEMO_SITE
from tests.simulators.conftest import MIDNIGHT_S
from zerocarbon.alerts.drift import fit_baseline
from zerocarbon.config import SiteConfig, SiteConfigError, parse_site
from zerocarbon.simulators.loads import DAY_SHIFT, THREE_SHIFTS, LineLoad
from zerocarbon.simulators.plant import PlantModel

HOURS = 48
IDLE = 0.1
NOISE = 0.02
LINE_A_RATED_KW = 450.0  # demo site
UNITS_PER_KWH = 2.0
LINE_KWH = ("line_a", "energy_import_kwh")
LINE_B_KWH = ("line_b", "energy_import_kwh")
UNITS = ("output_counter", "production_count_units")
START = datetime.fromtimestamp(MIDNIGHT_S, UTC)


def _site(**simulation: Any) -> SiteConfig:
    data = tomllib.loads(DEMO_SITE.read_text(encoding="utf-8"))
    data["simulation"].update(simulation)
    return parse_site(data, "<test site>", DEMO_SITE.parent)


@pytest.fixture(scope="module")
def plant() -> PlantModel:
    model = PlantModel(_site(line_idle_fraction=IDLE, line_efficiency_noise=NOISE), MIDNIGHT_S)
    model.advance(MIDNIGHT_S + HOURS * 3600)
    return model


def test_defaults_draw_exactly_the_output() -> None:
    load = LineLoad(300.0, DAY_SHIFT, 42, "line_b")
    assert load.idle_kw == 0.0
    assert load.efficiency_factor(MIDNIGHT_S) == 1.0
    for output_kw in (0.0, 1.0 / 3.0, 287.123456789):
        assert load.drawn_kw(MIDNIGHT_S, output_kw) == output_kw


def test_the_settings_are_validated() -> None:
    for bad in ({"line_idle_fraction": -0.1}, {"line_efficiency_noise": 0.5}):
        with pytest.raises(SiteConfigError):
            _site(**bad)


def test_the_efficiency_factor_is_seeded_per_hour() -> None:
    a = LineLoad(450.0, THREE_SHIFTS, 7, "line_a", efficiency_noise=NOISE)
    b = LineLoad(450.0, THREE_SHIFTS, 7, "line_a", efficiency_noise=NOISE)
    other = LineLoad(450.0, THREE_SHIFTS, 7, "line_b", efficiency_noise=NOISE)
    hours = [MIDNIGHT_S + h * 3600.0 for h in range(2000)]
    factors = [a.efficiency_factor(t) for t in hours]
    # a function of the hour only: the same in any order, constant within the hour
    assert [b.efficiency_factor(t + 1799.0) for t in reversed(hours)] == factors[::-1]
    assert factors != [other.efficiency_factor(t) for t in hours]
    assert statistics.mean(factors) == pytest.approx(1.0, abs=0.002)
    assert statistics.stdev(factors) == pytest.approx(NOISE, rel=0.1)
    assert min(factors) >= 1.0 - 3 * NOISE and max(factors) <= 1.0 + 3 * NOISE


def test_the_meter_counts_idle_load_plus_output_times_the_hourly_factor(
    plant: PlantModel,
) -> None:
    truth = plant.ground_truth
    energy, units = truth.hourly(LINE_KWH), truth.hourly(UNITS)
    assert len(energy) == HOURS
    reference = LineLoad(LINE_A_RATED_KW, THREE_SHIFTS, 42, "line_a", efficiency_noise=NOISE)
    idle_kwh = IDLE * LINE_A_RATED_KW
    for i in range(HOURS):
        hour = START + timedelta(hours=i)
        factor = reference.efficiency_factor(hour.timestamp())
        process_kwh = energy[hour] - idle_kwh
        # units are whole: the counter is within one unit of output x units_per_kwh
        assert process_kwh / factor * UNITS_PER_KWH == pytest.approx(units[hour], abs=1.0)
    # energy per unit varies from hour to hour, by about the noise
    per_unit = [(energy[h] - idle_kwh) / units[h] for h in energy]
    assert statistics.stdev(per_unit) / statistics.mean(per_unit) == pytest.approx(NOISE, rel=0.5)


def test_an_energy_baseline_finds_the_idle_load_and_the_spread(plant: PlantModel) -> None:
    truth = plant.ground_truth
    energy, units = truth.hourly(LINE_KWH), truth.hourly(UNITS)
    hours = list(energy)
    baseline = fit_baseline([energy[h] for h in hours], [units[h] for h in hours])
    assert baseline.fixed_kwh == pytest.approx(IDLE * LINE_A_RATED_KW, rel=0.35)
    assert baseline.kwh_per_unit == pytest.approx(1.0 / UNITS_PER_KWH, rel=0.03)
    mean_process_kwh = statistics.mean(units[h] for h in hours) / UNITS_PER_KWH
    assert baseline.residual_std_kwh == pytest.approx(NOISE * mean_process_kwh, rel=0.4)
    assert 0.5 < baseline.r_squared < 0.999  # noisy, no longer an exact line


def test_the_ground_truth_is_what_the_meters_count(plant: PlantModel) -> None:
    for key in (LINE_KWH, LINE_B_KWH, UNITS):
        assert math.fsum(plant.ground_truth.hourly(key).values()) == pytest.approx(
            plant.counted(*key), rel=1e-12
        )
    # line B runs one day shift: at night it draws its idle load and its 10 % idle pattern
    night = START + timedelta(hours=2)
    line_b = plant.ground_truth.hourly(LINE_B_KWH)[night]
    assert line_b > IDLE * 300.0 + 0.10 * 300.0 * 0.9


def test_default_plant_is_unchanged_by_the_new_code() -> None:
    default = PlantModel(_site(), MIDNIGHT_S)
    explicit = PlantModel(_site(line_idle_fraction=0.0, line_efficiency_noise=0.0), MIDNIGHT_S)
    for model in (default, explicit):
        model.advance(MIDNIGHT_S + 3 * 3600)
    assert default.ground_truth.hourly(LINE_KWH) == explicit.ground_truth.hourly(LINE_KWH)
    energy, units = default.ground_truth.hourly(LINE_KWH), default.ground_truth.hourly(UNITS)
    for hour in energy:  # without the new settings energy per unit is constant
        assert energy[hour] * UNITS_PER_KWH == pytest.approx(units[hour], abs=1.0)
