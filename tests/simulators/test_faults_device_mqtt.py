"""Device faults seen by an MQTT subscriber of the running simulator (manual clock):
clock skew, malformed JSON, spikes and stuck values in payloads."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

import aiomqtt
import pytest

from tests.simulators.clocks import ManualClock
from tests.simulators.test_faults_mqtt import START_S, mqtt_site
from zerocarbon.simulators.faults import DEEP_NESTING, FaultKind
from zerocarbon.simulators.runner import PlantSimulator

END = 300
FAULTS: dict[str, Any] = {
    "clock_skews": [{"device": "line_a", "start_s": 100, "duration_s": 50, "skew_s": 600}],
    "malformed": [{"device": "line_b", "share": 0.3, "at_s": [20]}],
    "spikes": [{"device": "line_c", "at_s": [45, 200], "factor": 10.0}],
    "stuck_values": [{"device": "line_a", "metric": "active_power_kw", "start_s": 200}],
}
Raw = tuple[str, bytes]  # topic, payload


@pytest.fixture(scope="module")
async def observed(mqtt_url: str) -> tuple[list[Raw], PlantSimulator]:
    """Every message of ``END`` simulated seconds, in arrival order, and the simulator."""
    site = mqtt_site(FAULTS, mqtt_url)
    clock = ManualClock(START_S)
    host, port = mqtt_url.removeprefix("mqtt://").rsplit(":", 1)
    messages: list[Raw] = []
    async with aiomqtt.Client(host, port=int(port), identifier="zc-test-dev-faults-sub") as sub:
        for device in site.mqtt_devices:
            assert device.topic is not None
            await sub.subscribe(device.topic, qos=1)
        async with PlantSimulator(site, clock, mqtt_url=mqtt_url) as sim:
            await clock.wait_sleeping(2)  # the physics loop and the connected publisher
            for offset in range(5, END + 1, 5):
                await clock.advance(START_S + offset)
            assert sim.publisher is not None
            published = sim.publisher.stats.published
            async with asyncio.timeout(10):
                async for message in sub.messages:
                    assert isinstance(message.payload, bytes)
                    messages.append((str(message.topic), message.payload))
                    if len(messages) == published:
                        break
    return messages, sim


def _payloads(messages: list[Raw], topic: str) -> list[bytes]:
    return [payload for t, payload in messages if t == topic]


def _offset(payload: dict[str, Any]) -> float:
    return datetime.fromisoformat(payload["ts"]).timestamp() - START_S


def test_clock_skew_moves_the_timestamps_of_its_window(
    observed: tuple[list[Raw], PlantSimulator],
) -> None:
    messages, sim = observed
    line_a = [json.loads(p) for p in _payloads(messages, "factory/line_a/meter")]
    offsets = [round(_offset(p)) for p in line_a]
    expected = [t + 600 if 100 <= t < 150 else t for t in range(10, END + 1, 10)]
    assert offsets == expected
    energy = [p["energy_kwh"] for p in line_a]
    assert energy == sorted(energy)  # the values are the true ones, in order
    assert sim.publisher is not None and sim.publisher.stats.skewed == 5
    truth = sim.ground_truth
    assert FaultKind.CLOCK_SKEW in truth.faults("line_a")[truth.fault_hours("line_a")[0]]


def test_malformed_messages_replace_a_share_of_one_device(
    observed: tuple[list[Raw], PlantSimulator],
) -> None:
    messages, sim = observed
    line_b = _payloads(messages, "factory/line_b/meter")
    assert len(line_b) == END // 10  # replaced, not dropped
    bad: list[str] = []
    for payload in line_b:
        try:
            doc = json.loads(payload)
        except json.JSONDecodeError:
            bad.append("truncated")
            continue
        except RecursionError:
            assert len(payload) == 2 * DEEP_NESTING
            bad.append("deep_nesting")
            continue
        bad.append("ok" if isinstance(doc, dict) else "not_object")
    assert bad[1] == "truncated"  # the first message at or after 20 s
    kinds = [k for k in bad if k != "ok"]
    assert kinds[:3] == ["truncated", "not_object", "deep_nesting"]
    assert 4 <= len(kinds) <= 16  # about 0.3 x 30
    assert sim.publisher is not None and sim.publisher.stats.malformed == len(kinds)
    for topic in ("factory/line_a/meter", "factory/line_c/meter", "factory/line_a/output"):
        assert all(isinstance(json.loads(p), dict) for p in _payloads(messages, topic))
    assert len(sim.ground_truth.fault_hours("line_b", FaultKind.MALFORMED)) >= 1


def test_spike_is_one_message(observed: tuple[list[Raw], PlantSimulator]) -> None:
    messages, sim = observed
    line_c = {
        round(_offset(doc)): doc["power_kw"]
        for doc in (json.loads(p) for p in _payloads(messages, "factory/line_c/meter"))
    }
    for at, before, after in ((50, 40, 60), (200, 190, 210)):
        assert line_c[at] == pytest.approx(10.0 * (line_c[before] + line_c[after]) / 2, rel=0.2)
        assert line_c[after] < 2 * line_c[before]
    assert sim.publisher is not None and sim.publisher.stats.spiked == 2
    assert sim.ground_truth.fault_hours("line_c", FaultKind.SPIKE)


def test_stuck_power_holds_while_energy_counts(
    observed: tuple[list[Raw], PlantSimulator],
) -> None:
    messages, _sim = observed
    line_a = [json.loads(p) for p in _payloads(messages, "factory/line_a/meter")]
    power = {round(_offset(p)): p["power_kw"] for p in line_a if _offset(p) < 1000}
    held = [power[t] for t in range(200, END + 1, 10)]
    assert len(set(held)) == 1
    assert len({power[t] for t in range(10, 100, 10)}) > 3
    energy = {round(_offset(p)): p["energy_kwh"] for p in line_a}
    assert energy[END] > energy[200]
