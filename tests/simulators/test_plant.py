from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass, field

import pytest

from tests.conftest import DEMO_SITE, REPO_ROOT
from tests.simulators.conftest import MIDNIGHT_S, SHANGHAI
from zerocarbon.config import DeviceRole, ModbusTcpDevice, SiteConfig
from zerocarbon.metering.metrics import METRICS_BY_NAME, MetricKind
from zerocarbon.simulators.ground_truth import GroundTruth, SiteQuantity
from zerocarbon.simulators.plant import PlantModel
from zerocarbon.simulators.register_bank import RegisterBank


@dataclass
class Trace:
    """Per-step records of 48 simulated hours of the demo plant, stepped tick by tick."""

    plant: PlantModel
    balance_error_kw: list[float] = field(default_factory=list)
    soc_pct: list[float] = field(default_factory=list)
    line_kw: dict[str, list[float]] = field(default_factory=dict)
    battery_kw: list[float] = field(default_factory=list)


@pytest.fixture(scope="module")
def trace(demo_site: SiteConfig) -> Trace:
    plant = PlantModel(demo_site, MIDNIGHT_S)
    out = Trace(plant, line_kw={"line_a": [], "line_b": []})
    end_s = MIDNIGHT_S + 48 * 3600
    while plant.now_s < end_s:
        plant.advance(plant.now_s + plant.tick_s)
        p = plant.power
        out.balance_error_kw.append(p.load_kw - (p.grid_kw + p.pv_total_kw + p.battery_total_kw))
        out.soc_pct.append(plant.soc_pct("battery"))
        out.battery_kw.append(p.battery_kw["battery"])
        for line, powers in out.line_kw.items():
            powers.append(p.line_kw[line])
    return out


def _counter_keys(plant: PlantModel, site: SiteConfig) -> list[tuple[str, str]]:
    return [
        (d.id, m)
        for d in site.devices
        for m in plant.device_metrics(d.id)
        if METRICS_BY_NAME[m].kind is MetricKind.COUNTER
    ]


def test_energy_balance_holds_in_every_step(trace: Trace) -> None:
    assert len(trace.balance_error_kw) == 48 * 3600 / 5
    assert max(abs(e) for e in trace.balance_error_kw) < 1e-9


def test_counters_are_initial_plus_integral(trace: Trace, demo_site: SiteConfig) -> None:
    plant = trace.plant
    keys = _counter_keys(plant, demo_site)
    assert set(keys) == {
        ("grid_meter", "energy_import_kwh"),
        ("grid_meter", "energy_export_kwh"),
        ("pv_roof", "energy_generated_kwh"),
        ("battery", "energy_charged_kwh"),
        ("battery", "energy_discharged_kwh"),
        ("line_a", "energy_import_kwh"),
        ("line_b", "energy_import_kwh"),
        ("output_counter", "production_count_units"),
    }
    for device_id, metric in keys:
        start = plant.counter_start(device_id, metric)
        assert start > 0
        now = plant.values(device_id)[metric]
        assert now - start == pytest.approx(plant.ground_truth.total((device_id, metric)), abs=1e-6)
    truth = plant.ground_truth
    assert truth.total(("grid_meter", "energy_import_kwh")) == pytest.approx(
        truth.total(SiteQuantity.GRID_IMPORT_KWH), rel=1e-12
    )
    assert truth.total(("pv_roof", "energy_generated_kwh")) == pytest.approx(
        truth.total(SiteQuantity.PV_KWH), rel=1e-12
    )
    # Site balance over the whole run, from the ground truth alone.
    balance = (
        truth.total("grid_import_kwh")
        - truth.total("grid_export_kwh")
        + truth.total("pv_kwh")
        + truth.total("battery_discharge_kwh")
        - truth.total("battery_charge_kwh")
        - truth.total("load_kwh")
    )
    assert abs(balance) < 1e-6


def test_production_counts_whole_units_of_line_energy(trace: Trace) -> None:
    plant = trace.plant
    units = plant.values("output_counter")["production_count_units"]
    assert units == math.floor(units)
    produced = units - plant.counter_start("output_counter", "production_count_units")
    line_energy = plant.ground_truth.total(("line_a", "energy_import_kwh"))
    assert produced == pytest.approx(line_energy * 2.0, abs=1.0)
    assert plant.ground_truth.total(SiteQuantity.PRODUCTION_UNITS) == produced


def test_battery_soc_stays_in_its_windows(trace: Trace) -> None:
    assert 10.0 <= min(trace.soc_pct) and max(trace.soc_pct) <= 95.0  # BMS limits
    assert min(trace.soc_pct) > 19.9  # peak discharge stops at 20 %
    assert max(trace.soc_pct) < 90.1  # valley charge stops at 90 %
    assert max(trace.soc_pct) > 85.0 and min(trace.soc_pct) < 25.0  # and it does cycle


def test_changes_are_ramps_not_steps(trace: Trace) -> None:
    for line, rated in (("line_a", 450.0), ("line_b", 300.0)):
        powers = trace.line_kw[line]
        biggest = max(abs(b - a) for a, b in zip(powers, powers[1:], strict=False))
        assert biggest < 0.03 * rated, line  # a shift change would be a jump of 20-75 %
    battery = trace.battery_kw
    assert (
        max(abs(b - a) for a, b in zip(battery, battery[1:], strict=False)) <= 250 * 5 / 60 + 1e-9
    )


def test_demo_day_hours(demo_day: PlantModel) -> None:
    truth = demo_day.ground_truth
    pv = {h.astimezone(SHANGHAI).hour: v for h, v in truth.hourly("pv_kwh").items()}
    assert len(pv) == 24
    assert all(pv[h] == 0.0 for h in (0, 1, 2, 3, 20, 21, 22, 23))
    assert all(pv[h] > 300.0 for h in (10, 11, 12, 13))
    assert all(v > 50.0 for v in truth.hourly("grid_import_kwh").values())
    assert all(v == 0.0 for v in truth.hourly("grid_export_kwh").values())
    charge = {h.astimezone(SHANGHAI).hour: v for h, v in truth.hourly("battery_charge_kwh").items()}
    discharge = {
        h.astimezone(SHANGHAI).hour: v for h, v in truth.hourly("battery_discharge_kwh").items()
    }
    assert charge[1] > 50.0 and discharge[9] > 50.0 and discharge[14] > 50.0
    assert discharge[2] == 0.0 and charge[9] == 0.0 and discharge[12] == 0.0


def test_values_and_gauges(demo_day: PlantModel, demo_site: SiteConfig) -> None:
    for device in demo_site.devices:
        values = demo_day.values(device.id)
        assert list(values) == list(demo_day.device_metrics(device.id))
        if "voltage_v" in values:
            assert 225.0 < values["voltage_v"] < 235.0
        if "frequency_hz" in values:
            assert 49.9 < values["frequency_hz"] < 50.1
    power = demo_day.power
    assert demo_day.values("grid_meter")["active_power_kw"] == power.grid_kw
    assert demo_day.values("battery")["active_power_kw"] == power.battery_kw["battery"]
    assert demo_day.values("line_a")["active_power_kw"] == power.line_kw["line_a"]
    assert demo_day.values("battery")["state_of_charge_pct"] == demo_day.soc_pct("battery")


def test_initial_counters_leave_register_headroom(demo_site: SiteConfig) -> None:
    plant = PlantModel(demo_site, MIDNIGHT_S)
    for device in demo_site.devices:
        if not isinstance(device, ModbusTcpDevice):
            continue
        bank = RegisterBank(demo_site.profile_of(device))
        for point in bank.profile.metric_points:
            assert point.metric is not None
            if METRICS_BY_NAME[point.metric].kind is MetricKind.COUNTER:
                start = plant.counter_start(device.id, point.metric)
                assert 0 < start <= 0.25 * bank.value_range(point)[1]


def test_steps_of_tick_with_a_shorter_last_one(demo_site: SiteConfig) -> None:
    plant = PlantModel(demo_site, MIDNIGHT_S)
    plant.advance(MIDNIGHT_S + 12.0)
    assert plant.steps == 3
    assert (plant.power.start_s, plant.power.end_s) == (MIDNIGHT_S + 10.0, MIDNIGHT_S + 12.0)
    plant.advance(MIDNIGHT_S + 1.0)  # the past: nothing happens
    assert plant.steps == 3 and plant.now_s == MIDNIGHT_S + 12.0


def test_same_inputs_same_values(demo_site: SiteConfig) -> None:
    def run() -> tuple[list[dict[str, float]], GroundTruth]:
        plant = PlantModel(demo_site, MIDNIGHT_S + 7.25 * 3600)
        for dt in (0.3, 7.0, 3600.0, 1.1, 5400.0, 12.5):
            plant.advance(plant.now_s + dt)
        return [plant.values(d.id) for d in demo_site.devices], plant.ground_truth

    (values_1, truth_1), (values_2, truth_2) = run(), run()
    assert values_1 == values_2
    assert truth_1.to_dict() == truth_2.to_dict()


def test_pv_surplus_is_stored_then_exported(demo_site: SiteConfig) -> None:
    devices = tuple(
        d.model_copy(update={"rated_power_kw": 3000.0}) if d.role is DeviceRole.PV else d
        for d in demo_site.devices
    )
    site = demo_site.model_copy(update={"devices": devices})
    plant = PlantModel(site, MIDNIGHT_S)
    plant.advance(MIDNIGHT_S + 24 * 3600)
    truth = plant.ground_truth
    noon = {h.astimezone(SHANGHAI).hour: v for h, v in truth.hourly("grid_export_kwh").items()}
    assert noon[12] > 500.0
    assert truth.total("battery_charge_kwh") > 300.0  # surplus went into the battery first
    assert plant.soc_pct("battery") <= 95.0
    assert truth.total(("grid_meter", "energy_export_kwh")) == pytest.approx(
        truth.total("grid_export_kwh"), rel=1e-12
    )
    export_counter = plant.values("grid_meter")["energy_export_kwh"]
    assert export_counter - plant.counter_start("grid_meter", "energy_export_kwh") == pytest.approx(
        truth.total("grid_export_kwh"), abs=1e-6
    )
    assert all(v >= 0.0 for v in truth.hourly("grid_import_kwh").values())


def test_a_step_across_an_hour_is_split_by_time(demo_site: SiteConfig) -> None:
    hour_s = MIDNIGHT_S + 9 * 3600  # 09:00 local, everything running
    plant = PlantModel(demo_site, hour_s - 2.0)
    plant.advance(hour_s + 3.0)  # one 5-s step: 2 s before the hour, 3 s after
    assert plant.steps == 1
    power = plant.power
    step_kwh = power.load_kw * 5.0 / 3600
    hourly = list(plant.ground_truth.hourly("load_kwh").values())
    assert hourly == pytest.approx([step_kwh * 2 / 5, step_kwh * 3 / 5], rel=1e-12)
    assert sum(hourly) == pytest.approx(step_kwh, rel=1e-15)
    pv = list(plant.ground_truth.hourly(("pv_roof", "energy_generated_kwh")).values())
    assert pv == pytest.approx(
        [power.pv_kw["pv_roof"] * 2 / 3600, power.pv_kw["pv_roof"] * 3 / 3600]
    )


def test_same_values_in_another_process(demo_site: SiteConfig) -> None:
    """Seeds do not depend on the interpreter's string hashing."""
    script = (
        "import json; from zerocarbon.config import load_site;"
        "from zerocarbon.simulators.plant import PlantModel;"
        f"s = load_site({str(DEMO_SITE)!r}); p = PlantModel(s, {MIDNIGHT_S!r});"
        f"p.advance({MIDNIGHT_S + 3600.0!r});"
        "print(json.dumps({d.id: p.values(d.id) for d in s.devices}))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout
    plant = PlantModel(demo_site, MIDNIGHT_S)
    plant.advance(MIDNIGHT_S + 3600.0)
    assert json.loads(out) == {d.id: plant.values(d.id) for d in demo_site.devices}
