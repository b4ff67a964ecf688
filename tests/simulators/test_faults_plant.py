"""Plant faults: a line whose energy per unit degrades, a demand peak (no sockets).

Each is checked against an undegraded run of the same seed: the plant is stepped tick
by tick (``PlantModel.advance`` takes the simulated time directly, as the runner's
clock gives it) and the hourly ground truth of both runs is compared.
"""

from __future__ import annotations

import math
import tomllib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import DEMO_SITE, REPO_ROOT
from tests.simulators.conftest import MIDNIGHT_S
from zerocarbon.config import SiteConfig, SiteConfigError, load_site, parse_site
from zerocarbon.simulators.faults import FaultError, FaultKind
from zerocarbon.simulators.ground_truth import GroundTruth, SiteQuantity
from zerocarbon.simulators.plant import PlantModel

RUN_HOURS = 10
DEGRADE_HOUR = 6  # the degradation starts at the 6th hour of the run
PERCENT = 5.0
LINE_KWH = ("line_a", "energy_import_kwh")
OTHER_LINE_KWH = ("line_b", "energy_import_kwh")
UNITS = ("output_counter", "production_count_units")
START_HOUR = datetime.fromtimestamp(MIDNIGHT_S, UTC)  # local midnight is a UTC hour


def _data(faults: dict[str, Any] | None = None, plant_only: bool = False) -> dict[str, Any]:
    data = tomllib.loads(DEMO_SITE.read_text(encoding="utf-8"))
    if plant_only:  # no PV or battery: every extra kW of load is a kW of grid import
        data["devices"] = [d for d in data["devices"] if d["role"] not in ("pv", "battery")]
    data["simulation"]["faults"] = faults or {}
    return data


def _site(faults: dict[str, Any] | None = None, plant_only: bool = False) -> SiteConfig:
    return parse_site(_data(faults, plant_only), "<test site>", DEMO_SITE.parent)


def _run(site: SiteConfig, hours: int = RUN_HOURS) -> GroundTruth:
    plant = PlantModel(site, MIDNIGHT_S)
    plant.advance(MIDNIGHT_S + hours * 3600)
    return plant.ground_truth


def _hour(i: int) -> datetime:
    return START_HOUR + timedelta(hours=i)


@pytest.fixture(scope="module")
def undegraded() -> GroundTruth:
    return _run(_site())


@pytest.fixture(scope="module")
def degraded() -> GroundTruth:
    faults = {
        "line_degradations": [
            {"line": "line_a", "start_s": DEGRADE_HOUR * 3600, "percent": PERCENT}
        ]
    }
    return _run(_site(faults))


def test_energy_per_unit_is_unchanged_before_and_up_by_the_percent_after(
    undegraded: GroundTruth, degraded: GroundTruth
) -> None:
    base_kwh, worse_kwh = undegraded.hourly(LINE_KWH), degraded.hourly(LINE_KWH)
    base_units, worse_units = undegraded.hourly(UNITS), degraded.hourly(UNITS)
    assert len(base_kwh) == RUN_HOURS
    for i in range(RUN_HOURS):
        hour = _hour(i)
        assert base_units[hour] > 100  # a working line: energy per unit is meaningful
        base_kwh_per_unit = base_kwh[hour] / base_units[hour]
        worse_kwh_per_unit = worse_kwh[hour] / worse_units[hour]
        if i < DEGRADE_HOUR:
            assert worse_kwh[hour] == base_kwh[hour]
            assert worse_kwh_per_unit == base_kwh_per_unit
        else:
            ratio = worse_kwh_per_unit / base_kwh_per_unit
            assert ratio == pytest.approx(1 + PERCENT / 100, rel=1e-12)


def test_degradation_leaves_production_and_other_lines_alone(
    undegraded: GroundTruth, degraded: GroundTruth
) -> None:
    assert degraded.hourly(UNITS) == undegraded.hourly(UNITS)
    assert degraded.hourly(SiteQuantity.PRODUCTION_UNITS) == undegraded.hourly(
        SiteQuantity.PRODUCTION_UNITS
    )
    assert degraded.hourly(OTHER_LINE_KWH) == undegraded.hourly(OTHER_LINE_KWH)


def test_degradation_is_real_energy_in_the_site_load(
    undegraded: GroundTruth, degraded: GroundTruth
) -> None:
    base_load = undegraded.hourly(SiteQuantity.LOAD_KWH)
    worse_load = degraded.hourly(SiteQuantity.LOAD_KWH)
    base_line = undegraded.hourly(LINE_KWH)
    for i in range(RUN_HOURS):
        hour = _hour(i)
        extra_kwh = base_line[hour] * PERCENT / 100 if i >= DEGRADE_HOUR else 0.0
        assert worse_load[hour] - base_load[hour] == pytest.approx(extra_kwh, abs=1e-6)


def test_degradation_is_marked_from_its_hour_on_its_line(degraded: GroundTruth) -> None:
    assert degraded.fault_hours("line_a", FaultKind.LINE_DEGRADATION) == [
        _hour(i) for i in range(DEGRADE_HOUR, RUN_HOURS)
    ]
    assert degraded.fault_hours("line_b") == []
    assert degraded.fault_hours("output_counter") == []


def test_degradation_starting_inside_a_step_counts_the_share_after_it(
    undegraded: GroundTruth,
) -> None:
    start_s = 2 * 3600 + 1802.5  # halfway into a 5 s step, half an hour into hour 2
    faults = {"line_degradations": [{"line": "line_a", "start_s": start_s, "percent": 10.0}]}
    truth = _run(_site(faults), hours=3)
    base = undegraded.hourly(LINE_KWH)[_hour(2)]
    got = truth.hourly(LINE_KWH)[_hour(2)]
    assert truth.hourly(LINE_KWH)[_hour(1)] == undegraded.hourly(LINE_KWH)[_hour(1)]
    # About half the hour at +10 %: the extra is near 5 % of the hour's energy.
    assert 0.04 * base < got - base < 0.06 * base
    assert truth.hourly(UNITS)[_hour(2)] == undegraded.hourly(UNITS)[_hour(2)]


PEAKS = [
    {"start_s": 2 * 3600 + 600, "duration_s": 900, "extra_kw": 300.0},
    {"start_s": 5 * 3600 - 300, "duration_s": 900, "extra_kw": 120.0},  # over an hour
]


@pytest.fixture(scope="module")
def no_peak() -> GroundTruth:
    return _run(_site(plant_only=True), hours=7)


@pytest.fixture(scope="module")
def peaked() -> GroundTruth:
    return _run(_site({"demand_peaks": PEAKS}, plant_only=True), hours=7)


def test_demand_peak_raises_grid_import_by_extra_kw_times_duration_in_its_window(
    no_peak: GroundTruth, peaked: GroundTruth
) -> None:
    expected_kwh = {
        _hour(2): 300.0 * 900 / 3600,  # 75 kWh
        _hour(4): 120.0 * 300 / 3600,  # 10 kWh
        _hour(5): 120.0 * 600 / 3600,  # 20 kWh
    }
    base = no_peak.hourly(SiteQuantity.GRID_IMPORT_KWH)
    got = peaked.hourly(SiteQuantity.GRID_IMPORT_KWH)
    base_load = no_peak.hourly(SiteQuantity.LOAD_KWH)
    got_load = peaked.hourly(SiteQuantity.LOAD_KWH)
    assert len(base) == 7
    for i in range(7):
        hour = _hour(i)
        extra = expected_kwh.get(hour)
        if extra is None:
            assert got[hour] == base[hour]
            assert got_load[hour] == base_load[hour]
        else:
            assert got[hour] - base[hour] == pytest.approx(extra, rel=1e-9)
            assert got_load[hour] - base_load[hour] == pytest.approx(extra, rel=1e-9)
    grid_total = peaked.total(SiteQuantity.GRID_IMPORT_KWH)
    assert grid_total - no_peak.total(SiteQuantity.GRID_IMPORT_KWH) == pytest.approx(105.0)
    assert peaked.hourly(LINE_KWH) == no_peak.hourly(LINE_KWH)  # unmetered: no line sees it
    assert peaked.hourly(UNITS) == no_peak.hourly(UNITS)


def test_demand_peak_is_marked_on_the_grid_meter_in_its_hours(peaked: GroundTruth) -> None:
    assert peaked.fault_hours("grid_meter", FaultKind.DEMAND_PEAK) == [
        _hour(2),
        _hour(4),
        _hour(5),
    ]
    assert peaked.faulty_devices() == ["grid_meter"]


def test_plant_faults_survive_the_ground_truth_file(peaked: GroundTruth) -> None:
    again = GroundTruth.from_dict(peaked.to_dict())
    assert again.fault_hours("grid_meter", FaultKind.DEMAND_PEAK) == [_hour(2), _hour(4), _hour(5)]
    assert math.isclose(
        again.total(SiteQuantity.GRID_IMPORT_KWH), peaked.total(SiteQuantity.GRID_IMPORT_KWH)
    )


def test_unknown_line_is_named_with_its_fault_entry() -> None:
    faults = {
        "line_degradations": [
            {"line": "line_a", "start_s": 0, "percent": 5.0},
            {"line": "line_z", "start_s": 0, "percent": 5.0},
        ]
    }
    with pytest.raises(FaultError) as err:
        PlantModel(_site(faults), MIDNIGHT_S)
    message = str(err.value)
    assert message.startswith("simulation.faults.line_degradations[1].line: no line 'line_z'")
    assert "line_a" in message and "line_b" in message


def test_line_without_a_load_device_is_refused() -> None:
    data = _data({"line_degradations": [{"line": "line_b", "start_s": 0, "percent": 5.0}]})
    data["devices"] = [d for d in data["devices"] if d["id"] != "line_b"]
    site = parse_site(data, "<test site>", DEMO_SITE.parent)
    with pytest.raises(
        FaultError, match=r"line_degradations\[0\]\.line: line 'line_b' has no load"
    ):
        PlantModel(site, MIDNIGHT_S)


@pytest.mark.parametrize(
    ("faults", "path"),
    [
        (
            {"line_degradations": [{"line": "line_a", "start_s": 0, "percent": -5.0}]},
            "simulation.faults.line_degradations[0].percent",
        ),
        (
            {"line_degradations": [{"line": "line_a", "start_s": -1, "percent": 5.0}]},
            "simulation.faults.line_degradations[0].start_s",
        ),
        (
            {"demand_peaks": [{"start_s": 0, "extra_kw": 0.0}]},
            "simulation.faults.demand_peaks[0].extra_kw",
        ),
        (
            {"demand_peaks": [{"start_s": 0, "duration_s": 0, "extra_kw": 10.0}]},
            "simulation.faults.demand_peaks[0].duration_s",
        ),
        (
            {"demand_peaks": [{"start_s": 0, "extra_kw": 10.0, "device": "grid_meter"}]},
            "simulation.faults.demand_peaks[0].device",
        ),
    ],
)
def test_config_errors_name_the_fault_entry(faults: dict[str, Any], path: str) -> None:
    with pytest.raises(SiteConfigError, match=path.replace("[", r"\[").replace("]", r"\]")):
        _site(faults)


def test_demand_peak_defaults_to_a_quarter_hour() -> None:
    site = _site({"demand_peaks": [{"start_s": 60, "extra_kw": 50.0}]})
    (peak,) = site.simulation.faults.demand_peaks
    assert peak.duration_s == 900.0


def test_example_site_has_each_alert_fault() -> None:
    site = load_site(REPO_ROOT / "examples" / "alert-faults-site.toml")
    plant = PlantModel(site, MIDNIGHT_S)
    plant.advance(MIDNIGHT_S + 6 * 3600)
    truth = plant.ground_truth
    assert truth.fault_hours("line_b", FaultKind.GAP) == [_hour(1)]
    assert truth.fault_hours("line_b", FaultKind.COUNTER_RESET) == [_hour(3)]
    assert truth.fault_hours("line_a", FaultKind.LINE_DEGRADATION) == [_hour(5)]
    assert truth.fault_hours("grid_meter", FaultKind.DEMAND_PEAK) == [_hour(2)]
    assert {r.kind for r in site.alerts.rules} == {
        "offline",
        "threshold",
        "demand",
        "data_quality",
        "drift",
    }
