"""Fault injection: configuration, counter semantics and ground truth (no sockets).

The socket-level observations are in ``test_faults_modbus.py`` and ``test_faults_mqtt.py``.
"""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DEMO_SITE
from tests.simulators.conftest import MIDNIGHT_S
from zerocarbon.config import SimulatorFaults, SiteConfig, SiteConfigError, parse_site
from zerocarbon.metering.registers import RegisterType
from zerocarbon.simulators.faults import FaultError, FaultKind, FaultPlan, counter_register
from zerocarbon.simulators.ground_truth import GroundTruth
from zerocarbon.simulators.plant import PlantModel

HERE = Path(__file__).parent
LOCAL_PROFILE = "profiles/uint32_centi_meter.toml"  # relative to this folder
# 09:30 local: the hour boundary (10:00 local, 02:00 UTC) is 1800 s into the run.
START_S = MIDNIGHT_S + 9.5 * 3600
H0 = datetime.fromtimestamp(START_S - 1800, UTC)
H1 = H0 + timedelta(hours=1)


def site_data(faults: dict[str, Any] | None = None) -> dict[str, Any]:
    """The demo site with a Modbus sub-meter on the test-local profile and an MQTT
    meter whose counter field names its uint32 register."""
    data = tomllib.loads(DEMO_SITE.read_text(encoding="utf-8"))
    data["devices"] += [
        {
            "id": "sub_meter",
            "role": "load",
            "protocol": "modbus_tcp",
            "host": "127.0.0.1",
            "profile": LOCAL_PROFILE,
            "port": 15023,
            "rated_power_kw": 400,
        },
        {
            "id": "line_c",
            "role": "load",
            "protocol": "mqtt",
            "rated_power_kw": 200,
            "topic": "factory/line_c/meter",
            "fields": {
                "power_kw": "active_power_kw",
                "energy_kwh": {"metric": "energy_import_kwh", "type": "uint32", "scale": 0.01},
            },
        },
    ]
    if faults is not None:
        data["simulation"]["faults"] = faults
    return data


def make_site(faults: dict[str, Any] | None = None) -> SiteConfig:
    return parse_site(site_data(faults), "<test site>", HERE)


ALL_FAULTS: dict[str, Any] = {
    "counter_resets": [{"device": "grid_meter", "at_s": 600}],
    "meter_replacements": [
        {"device": "pv_roof", "metric": "energy_generated_kwh", "at_s": 2400, "new_value": 1234.5}
    ],
    "rollovers": [
        {"device": "sub_meter", "metric": "energy_import_kwh", "below_wrap": 20.0},
        {"device": "line_c", "below_wrap": 60.0},
    ],
    "backward_steps": [{"device": "line_a", "at_s": 900}],
    "gaps": [
        {"device": "sub_meter", "start_s": 1000, "duration_s": 300},
        {"device": "output_counter", "start_s": 1700, "duration_s": 200},
    ],
    "late_data": [{"device": "line_b", "start_s": 2000, "duration_s": 100, "delay_s": 60}],
    "duplicates": [{"device": "line_a", "share": 0.3}],
}


def _without_faults(truth: GroundTruth) -> dict[str, Any]:
    doc = truth.to_dict()
    del doc["faults"]
    return doc


def test_config_defaults_are_off_and_the_toml_block_parses() -> None:
    assert SimulatorFaults() == make_site().simulation.faults
    assert not FaultPlan(make_site(), START_S, GroundTruth()).active
    site = make_site(ALL_FAULTS)
    faults = site.simulation.faults
    assert faults.counter_resets[0].metric is None
    assert faults.backward_steps[0].step == 12.0
    assert faults.gaps[0].mode == "silent"
    assert FaultPlan(site, START_S, GroundTruth()).active


@pytest.mark.parametrize(
    ("faults", "message"),
    [
        ({"gaps": [{"device": "line_a", "start_s": -1, "duration_s": 5}]}, "start_s"),
        ({"duplicates": [{"device": "line_a", "share": 1.5}]}, "share"),
        ({"counter_resets": [{"device": "line_a", "at_s": 0, "metric": "kwh"}]}, "unknown metric"),
        ({"gaps": [{"device": "x", "start_s": 0, "duration_s": 5, "mode": "off"}]}, "mode"),
    ],
)
def test_config_errors_name_the_path(faults: dict[str, Any], message: str) -> None:
    with pytest.raises(SiteConfigError, match=r"simulation\.faults\.") as err:
        make_site(faults)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("faults", "message"),
    [
        (
            {"counter_resets": [{"device": "nope", "at_s": 5}]},
            r"simulation\.faults\.counter_resets\[0\]\.device: no device 'nope'",
        ),
        (
            {"backward_steps": [{"device": "grid_meter", "metric": "voltage_v", "at_s": 5}]},
            r"backward_steps\[0\]\.metric: device 'grid_meter' has no counter 'voltage_v'",
        ),
        (
            {"rollovers": [{"device": "grid_meter", "metric": "energy_import_kwh"}]},
            r"rollovers\[0\] \(grid_meter energy_import_kwh, profile point "
            r"'total_import_energy'\): a float32 register cannot wrap",
        ),
        (
            {"rollovers": [{"device": "line_a"}]},
            r"rollovers\[0\]: device 'line_a' field 'energy_kwh' \(energy_import_kwh\) gives no "
            r"register type",
        ),
        (
            {
                "rollovers": [
                    {"device": "battery", "metric": "energy_charged_kwh", "below_wrap": 1e12}
                ]
            },
            r"rollovers\[0\]\.below_wrap: .* is not below the wrap value",
        ),
        (
            {"late_data": [{"device": "grid_meter", "start_s": 0, "duration_s": 10}]},
            r"late_data\[0\]\.device: 'grid_meter' is not an MQTT device",
        ),
        (
            {"duplicates": [{"device": "battery", "share": 0.5}]},
            r"duplicates\[0\]\.device: 'battery' is not an MQTT device",
        ),
    ],
)
def test_plan_errors_name_the_fault(faults: dict[str, Any], message: str) -> None:
    with pytest.raises(FaultError, match=message):
        PlantModel(make_site(faults), START_S)


def test_closed_gap_refuses_a_shared_endpoint() -> None:
    data = site_data(
        {"gaps": [{"device": "pv_roof", "start_s": 0, "duration_s": 9, "mode": "closed"}]}
    )
    for device in data["devices"]:
        if device["id"] == "pv_roof":
            device["port"], device["device_id"] = 15022, 2  # behind the battery's endpoint
    with pytest.raises(FaultError, match=r"gaps\[0\]\.mode: 'closed' would silence battery"):
        PlantModel(parse_site(data, "<t>", HERE), START_S)


def test_wrap_values_follow_register_type_and_scale() -> None:
    reg = counter_register(RegisterType.UINT32, 0.01, "x")
    assert reg.span == pytest.approx(2**32 * 0.01) and reg.low == 0.0
    assert reg.wrap(reg.top + 1.25) == pytest.approx(1.25)
    signed = counter_register(RegisterType.INT32, 0.1, "x")
    assert signed.low == pytest.approx(-(2**31) * 0.1)
    assert signed.wrap(signed.top + 0.5) == pytest.approx(signed.low + 0.5)
    assert counter_register(RegisterType.UINT16, 1.0, "x").span == 65536.0
    with pytest.raises(FaultError, match="float32 register cannot wrap"):
        counter_register(RegisterType.FLOAT32, 0.01, "x")
    # SunSpec: one count of WH is scale x 10**WH_SF (the profile serves WH_SF = 0)
    plan = PlantModel(make_site(), START_S).faults
    assert plan.registers[("pv_roof", "energy_generated_kwh")].span == pytest.approx(2**32 * 1e-3)
    assert plan.registers[("battery", "energy_charged_kwh")].span == pytest.approx(2**32 * 0.1)
    assert ("grid_meter", "energy_import_kwh") not in plan.registers  # float32


class Run:
    """Two hours of the plant with every fault and without any, stepped the same way."""

    def __init__(self) -> None:
        self.faulty = PlantModel(make_site(ALL_FAULTS), START_S)
        self.clean = PlantModel(make_site(), START_S)
        self.seen: dict[float, dict[str, dict[str, float]]] = {}
        self.counted: dict[float, dict[tuple[str, str], float]] = {}
        for offset in range(0, 7201, 10):
            for plant in (self.faulty, self.clean):
                plant.advance(START_S + offset)
            self.seen[offset] = {d.id: self.faulty.values(d.id) for d in self.faulty.site.devices}
            self.counted[offset] = {
                (d, m): self.faulty.counted(d, m)
                for d in self.seen[offset]
                for m in self.seen[offset][d]
                if (d, m) in self.faulty.faults.registers
                or m.startswith("energy")
                or m.startswith("production")
            }
        # What a duplicate/late/gap plan decides is asked by the publisher; ask it here
        # the way the publisher would, once per publish cycle, so it is marked.
        for offset in range(10, 7201, 10):
            self.faulty.faults.duplicate("line_a", START_S + offset)

    def value(self, offset: float, device: str, metric: str) -> float:
        return self.seen[offset][device][metric]

    def truly(self, offset: float, device: str, metric: str) -> float:
        return self.counted[offset][(device, metric)]


@pytest.fixture(scope="module")
def run() -> Run:
    return Run()


def test_ground_truth_is_the_same_with_and_without_faults(run: Run) -> None:
    assert _without_faults(run.faulty.ground_truth) == _without_faults(run.clean.ground_truth)
    assert run.clean.ground_truth.faulty_devices() == []
    for device_id in ("grid_meter", "pv_roof", "sub_meter", "line_c", "line_a"):
        for metric in run.seen[0][device_id]:
            if metric.startswith("energy"):
                assert run.faulty.counted(device_id, metric) == run.clean.counted(device_id, metric)


def test_counter_reset_counts_from_zero(run: Run) -> None:
    key = ("grid_meter", "energy_import_kwh")
    assert run.value(590, *key) == pytest.approx(
        run.faulty.counter_start(*key) + run.truly(590, *key)
    )
    for offset in (600, 610, 3600, 7200):
        since = run.truly(offset, *key) - run.truly(600, *key)
        assert run.value(offset, *key) == pytest.approx(since, abs=1e-9)
    assert run.value(7200, *key) > 0.0  # it kept counting
    export = run.value(7200, "grid_meter", "energy_export_kwh")  # metric None: every counter
    assert export == pytest.approx(
        run.truly(7200, "grid_meter", "energy_export_kwh")
        - run.truly(600, "grid_meter", "energy_export_kwh")
    )


def test_meter_replacement_jumps_to_the_new_reading(run: Run) -> None:
    key = ("pv_roof", "energy_generated_kwh")
    assert run.value(2390, *key) > 1e5
    assert run.value(2400, *key) == 1234.5
    since = run.truly(7200, *key) - run.truly(2400, *key)
    assert since > 10.0  # PV generating in the morning
    assert run.value(7200, *key) == pytest.approx(1234.5 + since)


@pytest.mark.parametrize(("device", "below"), [("sub_meter", 20.0), ("line_c", 60.0)])
def test_rollover_wraps_at_the_register_value(run: Run, device: str, below: float) -> None:
    key = (device, "energy_import_kwh")
    top = 2**32 * 0.01
    assert run.faulty.counter_start(*key) == pytest.approx(top - below)
    wrapped_at = next(o for o in sorted(run.seen) if run.truly(o, *key) >= below)
    before = run.value(wrapped_at - 10, *key)
    after = run.value(wrapped_at, *key)
    assert top - below < before < top
    assert after == pytest.approx(run.truly(wrapped_at, *key) - below, abs=1e-6)
    assert 0.0 <= after < 5.0
    assert run.value(7200, *key) == pytest.approx(run.truly(7200, *key) - below, abs=1e-6)
    wrap_hour = H0 if wrapped_at <= 1800 else H1
    assert run.faulty.ground_truth.fault_hours(device, FaultKind.ROLLOVER) == [wrap_hour]


def test_backward_step_reads_lower_once(run: Run) -> None:
    key = ("line_a", "energy_import_kwh")
    start = run.faulty.counter_start(*key)
    assert run.value(900, *key) == pytest.approx(start + run.truly(900, *key) - 12.0)
    assert run.value(900, *key) < run.value(890, *key) - 10.0
    for offset in (890, 910, 920):
        assert run.value(offset, *key) == pytest.approx(start + run.truly(offset, *key))


def test_gaps_keep_counting(run: Run) -> None:
    key = ("sub_meter", "energy_import_kwh")
    counted = run.truly(1300, *key) - run.truly(1000, *key)
    assert counted > 10.0
    assert run.value(1300, *key) - run.value(1000, *key) == pytest.approx(counted, abs=1e-6)
    assert run.faulty.faults.silent("sub_meter", START_S + 1000)
    assert not run.faulty.faults.silent("sub_meter", START_S + 1300)
    assert not run.faulty.faults.closed("sub_meter", START_S + 1100)


def test_fault_hours_are_recorded_per_device(run: Run) -> None:
    truth = run.faulty.ground_truth
    assert truth.faults("grid_meter") == {H0: {FaultKind.COUNTER_RESET}}
    assert truth.faults("pv_roof") == {H1: {FaultKind.METER_REPLACEMENT}}
    assert truth.faults("output_counter") == {H0: {FaultKind.GAP}, H1: {FaultKind.GAP}}
    assert truth.faults("line_b") == {H1: {FaultKind.LATE_DATA}}
    assert FaultKind.GAP in truth.faults("sub_meter")[H0]
    line_a = truth.faults("line_a")
    assert FaultKind.BACKWARD_STEP in line_a[H0]
    assert all(FaultKind.DUPLICATE_DATA in kinds for kinds in line_a.values())
    assert "battery" not in truth.faulty_devices()
    # saved and loaded with the amounts
    loaded = GroundTruth.from_dict(truth.to_dict())
    assert loaded.faults("output_counter") == truth.faults("output_counter")
    doc = truth.to_dict()
    assert doc["faults"]["grid_meter"] == {H0.isoformat(): ["counter_reset"]}
    del doc["faults"]
    assert GroundTruth.from_dict(doc).faulty_devices() == []  # older documents


def test_duplicates_are_seeded() -> None:
    shares = []
    for _ in range(2):
        plan = FaultPlan(
            make_site({"duplicates": [{"device": "line_a", "share": 0.25, "at_s": [55]}]}),
            START_S,
            GroundTruth(),
        )
        shares.append([plan.duplicate("line_a", START_S + t) for t in range(10, 2001, 10)])
    assert shares[0] == shares[1]
    assert 30 < sum(shares[0]) < 70  # about a quarter of 200
    assert shares[0][5]  # the first message at or after 55 s (at 60 s)
