"""Faults seen by an MQTT subscriber of the running simulator (manual clock)."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

import aiomqtt
import pytest

from tests.simulators.clocks import ManualClock
from tests.simulators.conftest import MIDNIGHT_S
from tests.simulators.test_faults import HERE, site_data
from zerocarbon.config import SiteConfig, parse_site
from zerocarbon.simulators.endpoints import on_free_ports
from zerocarbon.simulators.faults import FaultKind
from zerocarbon.simulators.plant import PlantModel
from zerocarbon.simulators.runner import PlantSimulator

START_S = MIDNIGHT_S + 10 * 3600 - 150  # 09:57:30 local: the hour turns 150 s in
END = 300
FAULTS: dict[str, Any] = {
    "backward_steps": [{"device": "line_a", "at_s": 50}],
    "late_data": [{"device": "line_a", "start_s": 100, "duration_s": 30, "delay_s": 20}],
    "duplicates": [
        {"device": "line_a", "at_s": [195]},
        {"device": "output_counter", "share": 0.5, "end_s": 300},
    ],
    "gaps": [{"device": "output_counter", "start_s": 60, "duration_s": 30}],
    "meter_replacements": [{"device": "output_counter", "at_s": 230, "new_value": 5000}],
    "counter_resets": [{"device": "line_b", "at_s": 170}],
    "rollovers": [{"device": "line_c", "below_wrap": 1.0}],
}
Message = tuple[str, int, dict[str, Any]]  # topic, ts offset [s], payload


def mqtt_site(faults: dict[str, Any] | None, mqtt_url: str) -> SiteConfig:
    data = site_data(faults)
    data["devices"] = [
        d for d in data["devices"] if d["protocol"] == "mqtt" or d["id"] == "grid_meter"
    ]
    return on_free_ports(parse_site(data, "<test site>", HERE), mqtt_url)


def _offset(payload: dict[str, Any]) -> int:
    offset = datetime.fromisoformat(payload["ts"]).timestamp() - START_S
    assert offset == round(offset)
    return round(offset)


@pytest.fixture(scope="module")
async def observed(mqtt_url: str) -> tuple[list[Message], PlantSimulator]:
    """Every message of ``END`` simulated seconds, in arrival order, and the simulator."""
    site = mqtt_site(FAULTS, mqtt_url)
    clock = ManualClock(START_S)
    host, port = mqtt_url.removeprefix("mqtt://").rsplit(":", 1)
    messages: list[Message] = []
    async with aiomqtt.Client(host, port=int(port), identifier="zc-test-faults-sub") as sub:
        for device in site.mqtt_devices:
            await sub.subscribe(device.topic, qos=1)
        async with PlantSimulator(site, clock, mqtt_url=mqtt_url) as sim:
            await clock.wait_sleeping(2)  # the physics loop and the connected publisher
            for offset in range(5, END + 1, 5):
                await clock.advance(START_S + offset)
            assert sim.publisher is not None
            published = sim.publisher.stats.published
            async with asyncio.timeout(10):
                async for message in sub.messages:
                    payload = json.loads(message.payload)
                    messages.append((str(message.topic), _offset(payload), payload))
                    if len(messages) == published:
                        break
    return messages, sim


def _of(messages: list[Message], topic: str) -> list[tuple[int, dict[str, Any]]]:
    return [(ts, payload) for t, ts, payload in messages if t == topic]


def test_late_messages_arrive_after_newer_ones_with_their_own_time(
    observed: tuple[list[Message], PlantSimulator],
) -> None:
    messages, sim = observed
    line_a = _of(messages, "factory/line_a/meter")
    order = [ts for ts, _ in line_a]
    assert order[:9] == list(range(10, 100, 10))
    assert order[9:12] == [130, 140, 150]
    assert sorted(order[12:15]) == [100, 110, 120]  # released with the 150 s cycle
    assert order[15:] == [*range(160, 200, 10), 200, 200, *range(210, END + 1, 10)]
    assert sim.publisher is not None and sim.publisher.stats.delayed == 3
    # by their own timestamps, the held values fit between their neighbours
    by_ts = {ts: p["energy_kwh"] for ts, p in line_a}
    for ts in (100, 110, 120):
        assert by_ts[ts - 10] < by_ts[ts] < by_ts[ts + 10]


def test_duplicates_are_the_same_message_twice(
    observed: tuple[list[Message], PlantSimulator],
) -> None:
    messages, sim = observed
    line_a = _of(messages, "factory/line_a/meter")
    twice = [a for a, b in zip(line_a, line_a[1:], strict=False) if a == b]
    assert [ts for ts, _ in twice] == [200]  # the first message at or after 195 s
    output = _of(messages, "factory/line_a/output")
    repeats = sum(1 for a, b in zip(output, output[1:], strict=False) if a == b)
    assert sim.publisher is not None
    assert repeats + 1 == sim.publisher.stats.duplicated
    assert 5 <= repeats <= 22  # about half of the 27 published
    hours = sim.ground_truth.faults("output_counter")
    assert all(FaultKind.DUPLICATE_DATA in kinds for kinds in hours.values())


def test_gap_withholds_messages_and_counting_goes_on(
    observed: tuple[list[Message], PlantSimulator],
) -> None:
    messages, sim = observed
    output = dict(_of(messages, "factory/line_a/output"))
    assert [t for t in range(10, END + 1, 10) if t not in output] == [60, 70, 80]
    assert output[90]["units_total"] > output[50]["units_total"]
    assert sim.publisher is not None and sim.publisher.stats.withheld == 3


def test_counter_faults_in_payloads(observed: tuple[list[Message], PlantSimulator]) -> None:
    messages, sim = observed
    plant = sim.plant
    line_a = dict(_of(messages, "factory/line_a/meter"))
    energy = {ts: p["energy_kwh"] for ts, p in line_a.items()}
    assert energy[50] == pytest.approx((energy[40] + energy[60]) / 2 - 12.0, abs=1.0)
    assert energy[40] < energy[60] < energy[70]

    line_b = {ts: p["energy_kwh"] for ts, p in _of(messages, "factory/line_b/meter")}
    assert line_b[160] > 1e5
    assert 0.0 <= line_b[170] < 1e-9  # reset exactly at a publish time
    assert 0.0 < line_b[180] < line_b[END] < 50.0

    units = {ts: p["units_total"] for ts, p in _of(messages, "factory/line_a/output")}
    assert units[220] > 1e5
    assert 5000 <= units[230] <= units[END] < 5000 + 100

    line_c = {ts: p["energy_kwh"] for ts, p in _of(messages, "factory/line_c/meter")}
    top = 2**32 * 0.01
    assert top - 1.0 < line_c[10] < top
    assert line_c[END] == pytest.approx(plant.counted("line_c", "energy_import_kwh") - 1.0)
    assert 0.0 < line_c[END] < 20.0


def test_fault_hours_and_unchanged_ground_truth(
    observed: tuple[list[Message], PlantSimulator], mqtt_url: str
) -> None:
    _messages, sim = observed
    truth = sim.ground_truth
    hours = sorted({h for d in truth.faulty_devices() for h in truth.faults(d)})
    assert len(hours) == 2
    first, second = hours
    assert second.timestamp() == START_S + 150
    assert truth.faults("line_a") == {
        first: {FaultKind.BACKWARD_STEP, FaultKind.LATE_DATA},
        second: {FaultKind.DUPLICATE_DATA},
    }
    assert truth.faults("line_b") == {second: {FaultKind.COUNTER_RESET}}
    assert truth.faults("line_c") == {first: {FaultKind.ROLLOVER}}
    assert truth.faults("output_counter")[first] >= {FaultKind.GAP}
    assert truth.faults("output_counter")[second] >= {FaultKind.METER_REPLACEMENT}

    clean = PlantModel(mqtt_site(None, mqtt_url), START_S)
    clean.advance(START_S + END)
    faulty = truth.to_dict()
    faulty.pop("faults")
    reference = clean.ground_truth.to_dict()
    reference.pop("faults")
    assert faulty == reference
