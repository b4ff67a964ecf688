"""Device faults (exception codes, single connection, word swaps, stuck values, spikes,
torn reads, clock skews, malformed messages): configuration and plan (no sockets).

What a client or subscriber sees is in ``test_faults_device_modbus.py`` and
``test_faults_device_mqtt.py``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import REPO_ROOT
from tests.simulators.test_faults import H0, H1, HERE, START_S, make_site, site_data
from zerocarbon.config import ModbusTcpDevice, SiteConfigError, load_site, parse_site
from zerocarbon.ingest.mqtt.payload import MAX_PAYLOAD_BYTES
from zerocarbon.simulators.faults import (
    DEEP_NESTING,
    FaultError,
    FaultKind,
    FaultPlan,
    malformed_payload,
)
from zerocarbon.simulators.ground_truth import GroundTruth
from zerocarbon.simulators.plant import PlantModel
from zerocarbon.simulators.register_bank import RegisterBank

CARRY_KWH = 65536 * 0.01  # one high-word step of sub_meter's uint32 x 0.01 kWh counter


@pytest.mark.parametrize(
    ("faults", "message"),
    [
        ({"exception_codes": [{"device": "grid_meter", "code": 0}]}, "exception_codes[0].code"),
        ({"exception_codes": [{"device": "grid_meter", "code": 256}]}, "exception_codes[0].code"),
        ({"clock_skews": [{"device": "line_a", "skew_s": 0}]}, "clock_skews[0].skew_s"),
        ({"spikes": [{"device": "line_a", "at_s": []}]}, "spikes[0].at_s"),
        ({"word_swaps": [{"device": "battery", "metric": "watts"}]}, "unknown metric 'watts'"),
        ({"torn_reads": [{"device": "sub_meter", "mode": "half"}]}, "torn_reads[0].mode"),
        ({"malformed": [{"device": "line_a", "kinds": ["empty"]}]}, "malformed[0].kinds[0]"),
        ({"stuck_values": [{"device": "line_a", "duration_s": 0}]}, "stuck_values[0].duration_s"),
    ],
)
def test_config_errors_name_the_entry(faults: dict[str, Any], message: str) -> None:
    with pytest.raises(SiteConfigError, match=r"simulation\.faults\.") as err:
        make_site(faults)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("faults", "message"),
    [
        (
            {"exception_codes": [{"device": "line_a"}]},
            r"simulation\.faults\.exception_codes\[0\]\.device: 'line_a' is not a Modbus TCP "
            r"device",
        ),
        (
            {"single_connection": [{"device": "output_counter"}]},
            r"single_connection\[0\]\.device: 'output_counter' is not a Modbus TCP device",
        ),
        (
            {"spikes": [{"device": "nope", "at_s": [5]}]},
            r"simulation\.faults\.spikes\[0\]\.device: no device 'nope'",
        ),
        (
            {"spikes": [{"device": "line_a", "metric": "energy_import_kwh", "at_s": [5]}]},
            r"spikes\[0\]\.metric: 'energy_import_kwh' is a counter",
        ),
        (
            {"spikes": [{"device": "output_counter", "at_s": [5]}]},
            r"spikes\[0\]\.metric: device 'output_counter' has no metric 'active_power_kw'",
        ),
        (
            {"word_swaps": [{"device": "battery", "metric": "state_of_charge_pct"}]},
            r"word_swaps\[0\]\.metric: device 'battery' has no value of two or more registers "
            r"for 'state_of_charge_pct'",
        ),
        (
            {"word_swaps": [{"device": "line_b"}]},
            r"word_swaps\[0\]\.device: 'line_b' is not a Modbus TCP device",
        ),
        (
            {"stuck_values": [{"device": "battery", "metric": "voltage_v"}]},
            r"stuck_values\[0\]\.metric: device 'battery' has no metric 'voltage_v'",
        ),
        (
            {"torn_reads": [{"device": "grid_meter", "metric": "energy_import_kwh"}]},
            r"torn_reads\[0\]: device 'grid_meter' energy_import_kwh is a float32 register .*"
            r"torn reads need a 32-bit integer one",
        ),
        (
            {"torn_reads": [{"device": "sub_meter", "metric": "voltage_v"}]},
            r"torn_reads\[0\]\.metric: device 'sub_meter' has no counter 'voltage_v'",
        ),
        (
            {
                "torn_reads": [
                    {"device": "sub_meter", "metric": "energy_import_kwh", "below_carry": 700}
                ]
            },
            r"torn_reads\[0\]\.below_carry: 700.0 is not below one high-word step \(655.36\)",
        ),
        (
            {
                "rollovers": [{"device": "sub_meter", "metric": "energy_import_kwh"}],
                "torn_reads": [
                    {"device": "sub_meter", "metric": "energy_import_kwh", "below_carry": 5}
                ],
            },
            r"torn_reads\[0\]\.below_carry: sub_meter energy_import_kwh also has a rollover",
        ),
        (
            {"clock_skews": [{"device": "battery", "skew_s": 600}]},
            r"clock_skews\[0\]\.device: 'battery' is not an MQTT device",
        ),
        (
            {"malformed": [{"device": "pv_roof", "share": 0.5}]},
            r"malformed\[0\]\.device: 'pv_roof' is not an MQTT device",
        ),
    ],
)
def test_plan_errors_name_the_fault(faults: dict[str, Any], message: str) -> None:
    with pytest.raises(FaultError, match=message):
        PlantModel(make_site(faults), START_S)


def test_clock_skew_needs_a_timestamp_in_the_payload() -> None:
    data = site_data({"clock_skews": [{"device": "line_a", "skew_s": 600}]})
    for device in data["devices"]:
        if device["id"] == "line_a":
            device["ts_field"] = None  # stamped on arrival
    with pytest.raises(FaultError, match=r"clock_skews\[0\]\.device: 'line_a' has no ts_field"):
        PlantModel(parse_site(data, "<t>", HERE), START_S)


WINDOWS: dict[str, Any] = {
    "exception_codes": [
        {"device": "battery", "start_s": 100, "duration_s": 50, "code": 6},
        {"device": "battery", "start_s": 3000},  # to the end, 04 by default
    ],
    "single_connection": [{"device": "pv_roof"}],
    "word_swaps": [{"device": "sub_meter", "start_s": 200, "duration_s": 100}],
    "torn_reads": [
        {"device": "sub_meter", "metric": "energy_import_kwh", "start_s": 400, "below_carry": 2.5}
    ],
    "clock_skews": [{"device": "line_a", "start_s": 500, "duration_s": 60, "skew_s": -900}],
}


def test_windows_switch_on_and_off() -> None:
    plan = PlantModel(make_site(WINDOWS), START_S).faults
    assert plan.active
    at = START_S
    assert plan.exception_code("battery", at + 99) is None
    assert plan.exception_code("battery", at + 100) == 6
    assert plan.exception_code("battery", at + 149.9) == 6
    assert plan.exception_code("battery", at + 150) is None
    assert plan.exception_code("battery", at + 1e6) == 4
    assert plan.exception_code("grid_meter", at + 120) is None
    assert plan.single_connection("pv_roof") and not plan.single_connection("battery")
    # every value of two or more registers: power (float32), import (uint32), export (int32)
    assert plan.word_swaps("sub_meter", at + 250) == {
        "active_power_kw",
        "energy_import_kwh",
        "energy_export_kwh",
    }
    assert plan.word_swaps("sub_meter", at + 300) == set()
    assert plan.torn_modes("sub_meter", at + 399) == {}
    assert plan.torn_modes("sub_meter", at + 400) == {"energy_import_kwh": "old_high"}
    assert plan.skew_s("line_a", at + 530) == -900.0
    assert plan.skew_s("line_a", at + 560) == 0.0
    assert plan.skew_s("line_b", at + 530) == 0.0


def test_below_carry_starts_the_counter_under_its_next_carry() -> None:
    clean = PlantModel(make_site(), START_S)
    plant = PlantModel(make_site(WINDOWS), START_S)
    key = ("sub_meter", "energy_import_kwh")
    start = plant.counter_start(*key)
    assert start % CARRY_KWH == pytest.approx(CARRY_KWH - 2.5)
    assert 0 < start - clean.counter_start(*key) <= CARRY_KWH
    assert plant.counter_start("sub_meter", "energy_export_kwh") == clean.counter_start(
        "sub_meter", "energy_export_kwh"
    )


def test_apply_to_bank_sets_swaps_torn_reads_and_spikes() -> None:
    faults = {
        "word_swaps": [{"device": "sub_meter", "metric": "active_power_kw", "start_s": 200}],
        "spikes": [{"device": "sub_meter", "at_s": [250, 260], "factor": 3.0}],
        "torn_reads": [{"device": "sub_meter", "metric": "energy_import_kwh", "below_carry": 2.5}],
    }
    plant = PlantModel(make_site(faults), START_S)
    plan = plant.faults
    device = plant.site.device("sub_meter")
    assert isinstance(device, ModbusTcpDevice)
    bank = RegisterBank(plant.site.profile_of(device))
    now = [START_S]
    plan.attach_bank("sub_meter", bank, lambda: now[0])
    power = bank.profile.point("active_power")
    energy = bank.profile.point("import_energy")

    def read(name: str) -> tuple[list[int], float]:
        point = bank.profile.point(name)
        words = bank.read(point.table, point.address, 2)
        assert words is not None
        value = bank.profile.decode_raw(point, words) * bank.unit_value(point)
        return words, value

    torn_at: list[float] = []
    for t in range(0, 301, 5):
        now[0] = START_S + t
        plant.advance(now[0])
        plan.apply_to_bank("sub_meter", bank, now[0])
        bank.update(plant.values("sub_meter"))
        true_kw = bank.values["active_power_kw"]
        words, kw = read("active_power")
        straight = bank.profile.encode_raw(power, true_kw)
        if t < 200:
            assert words == straight
            assert kw == pytest.approx(true_kw, rel=1e-6)
        elif t in (250, 260):  # one spiked read each, then the true value (swapped)
            assert kw != pytest.approx(true_kw)
            again, _ = read("active_power")
            assert again == straight[::-1]
        else:
            assert words == straight[::-1]
        count = len(bank.served)
        _words, kwh = read("import_energy")
        if len(bank.served) > count:
            torn_at.append(t)
            assert bank.served[-1].kind == "torn_read"
            assert bank.served[-1].true_value - kwh == pytest.approx(CARRY_KWH, abs=0.02)
    spikes = [f for f in bank.served if f.kind == "spike"]
    assert [f.served_value for f in spikes] == pytest.approx([3.0 * f.true_value for f in spikes])
    assert len(spikes) == 2
    assert len(torn_at) == 1 and 0 < torn_at[0] < 300  # 2.5 kWh below the carry at 0 s
    assert energy.register_count == 2
    assert plant.ground_truth.faults("sub_meter") == {
        H0: {FaultKind.WORD_SWAP, FaultKind.SPIKE, FaultKind.TORN_READ}
    }


def test_stuck_values_hold_the_first_reported_value() -> None:
    faults = {
        "stuck_values": [
            {"device": "line_a", "metric": "active_power_kw", "start_s": 600, "duration_s": 300},
            {"device": "battery", "start_s": 600, "duration_s": 300},  # every metric
        ]
    }
    plant = PlantModel(make_site(faults), START_S)
    seen: dict[int, dict[str, dict[str, float]]] = {}
    key = ("battery", "energy_discharged_kwh")
    counted: dict[int, float] = {}
    for t in range(0, 1201, 10):
        plant.advance(START_S + t)
        seen[t] = {d: plant.values(d) for d in ("line_a", "battery")}
        counted[t] = plant.counted(*key)
    assert seen[590]["line_a"]["active_power_kw"] != seen[600]["line_a"]["active_power_kw"]
    held = {t: seen[t]["line_a"]["active_power_kw"] for t in range(600, 900, 10)}
    assert set(held.values()) == {seen[600]["line_a"]["active_power_kw"]}
    assert len({seen[t]["line_a"]["active_power_kw"] for t in range(900, 1201, 10)}) > 5
    energy = [seen[t]["line_a"]["energy_import_kwh"] for t in range(600, 900, 10)]
    assert energy == sorted(energy) and energy[-1] > energy[0]  # not listed: it counts
    battery = [seen[t]["battery"] for t in range(600, 900, 10)]
    assert all(b == battery[0] for b in battery)
    assert counted[890] - counted[600] > 1.0  # discharging at the morning peak
    assert battery[-1][key[1]] == battery[0][key[1]]
    after = seen[900]["battery"][key[1]]  # the window is over: the true count at once
    assert after == pytest.approx(plant.counter_start(*key) + counted[900], abs=0.2)
    assert plant.ground_truth.faults("battery") == {H0: {FaultKind.STUCK_VALUE}}
    assert plant.ground_truth.faults("line_a") == {H0: {FaultKind.STUCK_VALUE}}


def test_malformed_messages_are_seeded_and_take_the_kinds_in_turn() -> None:
    site = make_site({"malformed": [{"device": "line_a", "share": 0.2, "at_s": [55]}]})
    picks = []
    for _ in range(2):
        plan = FaultPlan(site, START_S, GroundTruth())
        picks.append([plan.malformed("line_a", START_S + t) for t in range(10, 2001, 10)])
    assert picks[0] == picks[1]
    kinds = [k for k in picks[0] if k is not None]
    assert picks[0][5] == "truncated"  # the first message at or after 55 s (60 s)
    assert 20 < len(kinds) < 65  # about a fifth of 200, and the one at 60 s
    assert kinds[:3] == ["truncated", "not_object", "deep_nesting"]
    assert kinds[3:6] == kinds[:3]
    plan = FaultPlan(site, START_S, GroundTruth())
    assert all(plan.malformed("line_b", START_S + t) is None for t in range(10, 2001, 10))


def test_malformed_payloads() -> None:
    payload = json.dumps({"power_kw": 12.5, "energy_kwh": 1234.5, "ts": "2026-06-21T02:00:00Z"})
    truncated = malformed_payload("truncated", payload)
    assert payload.startswith(truncated) and len(truncated) < len(payload)
    with pytest.raises(json.JSONDecodeError):
        json.loads(truncated)
    assert json.loads(malformed_payload("not_object", payload)) == [
        12.5,
        1234.5,
        "2026-06-21T02:00:00Z",
    ]
    deep = malformed_payload("deep_nesting", payload)
    assert len(deep) == 2 * DEEP_NESTING < MAX_PAYLOAD_BYTES
    with pytest.raises(RecursionError):
        json.loads(deep)


def test_ground_truth_is_unchanged_by_device_faults() -> None:
    faults = {
        **WINDOWS,
        "stuck_values": [{"device": "line_b", "start_s": 100, "duration_s": 2000}],
        "spikes": [{"device": "line_a", "at_s": [100]}],
        "malformed": [{"device": "line_c", "share": 0.5}],
    }
    faulty = PlantModel(make_site(faults), START_S)
    clean = PlantModel(make_site(), START_S)
    for t in range(0, 3601, 10):
        for plant in (faulty, clean):
            plant.advance(START_S + t)
            for device in plant.site.devices:
                plant.values(device.id)
    doc = faulty.ground_truth.to_dict()
    reference = clean.ground_truth.to_dict()
    assert doc.pop("faults") and reference.pop("faults") == {}
    assert doc == reference
    truth = faulty.ground_truth
    exception = {FaultKind.EXCEPTION_CODE}
    assert truth.faults("battery") == {H0: exception, H1: exception}  # 100-150 s, 3000 s on
    assert truth.faults("line_a") == {H0: {FaultKind.CLOCK_SKEW}}  # spikes: when served
    assert truth.faults("line_b") == {H0: {FaultKind.STUCK_VALUE}, H1: {FaultKind.STUCK_VALUE}}
    assert truth.faults("sub_meter") == {H0: {FaultKind.WORD_SWAP}}
    assert "pv_roof" not in truth.faulty_devices()  # single connection: not an event


def test_the_faults_example_loads_and_every_fault_happens() -> None:
    site = load_site(REPO_ROOT / "examples" / "device-faults-site.toml")
    faults = site.simulation.faults
    given = {name for name in type(faults).model_fields if getattr(faults, name)}
    assert given >= {
        "exception_codes",
        "single_connection",
        "word_swaps",
        "stuck_values",
        "spikes",
        "torn_reads",
        "clock_skews",
        "malformed",
        "duplicates",
        "late_data",
    }
    plant = PlantModel(site, START_S)
    plan = plant.faults
    assert plan.exception_code("battery", START_S + 700) == 6
    assert plan.single_connection("pv_roof")
    key = ("battery", "energy_discharged_kwh")
    carry_kwh = 65536 * 0.1
    assert plant.counter_start(*key) % carry_kwh == pytest.approx(carry_kwh - 2.0)
    for t in range(0, 5001, 10):
        plant.advance(START_S + t)
        for d in site.devices:
            plant.values(d.id)
        for device_id in ("line_a", "line_b"):
            plan.duplicate(device_id, START_S + t)
            plan.malformed(device_id, START_S + t)
            plan.due_spikes(device_id, START_S + t)
    truth = plant.ground_truth
    marked = {
        kind for d in truth.faulty_devices() for kinds in truth.faults(d).values() for kind in kinds
    }
    assert marked >= {
        FaultKind.EXCEPTION_CODE,
        FaultKind.WORD_SWAP,
        FaultKind.STUCK_VALUE,
        FaultKind.CLOCK_SKEW,
        FaultKind.MALFORMED,
        FaultKind.DUPLICATE_DATA,
        FaultKind.LATE_DATA,
    }
