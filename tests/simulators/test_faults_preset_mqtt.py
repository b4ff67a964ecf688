"""Payload faults on preset devices, whose values sit at JSON paths: a spike reaches
Tasmota's nested ``ENERGY.Power`` and a clock skew its ``Time`` (a subscriber of the
running simulator, manual clock)."""

from __future__ import annotations

import asyncio
import json
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiomqtt

from tests.simulators.clocks import ManualClock
from tests.simulators.test_faults_mqtt import START_S
from zerocarbon.config import parse_site
from zerocarbon.simulators.endpoints import on_free_ports
from zerocarbon.simulators.faults import FaultKind
from zerocarbon.simulators.runner import PlantSimulator

EXAMPLE = Path(__file__).parent.parent.parent / "examples" / "mqtt-tasmota.toml"
END = 600
STEP_S = 10  # the simulator publishes every simulation.publish_interval_s
BERLIN = ZoneInfo("Europe/Berlin")


async def test_spike_and_skew_reach_a_tasmota_payload(mqtt_url: str) -> None:
    data: dict[str, Any] = tomllib.loads(EXAMPLE.read_text())
    data["simulation"] = {
        "faults": {
            "spikes": [{"device": "compressor", "at_s": [120], "factor": 10.0}],
            "clock_skews": [
                {"device": "compressor", "start_s": 300, "duration_s": 120, "skew_s": 900}
            ],
        }
    }
    site = on_free_ports(parse_site(data, "<tasmota faults>", EXAMPLE.parent), mqtt_url)
    clock = ManualClock(START_S)
    host, port = mqtt_url.removeprefix("mqtt://").rsplit(":", 1)
    payloads: list[dict[str, Any]] = []
    async with aiomqtt.Client(host, port=int(port), identifier="zc-test-preset-faults") as sub:
        await sub.subscribe("tele/tasmota_8A3F2C/SENSOR", qos=1)
        async with PlantSimulator(site, clock, mqtt_url=mqtt_url) as sim:
            await clock.wait_sleeping(2)
            for offset in range(5, END + 1, 5):
                await clock.advance(START_S + offset)
            assert sim.publisher is not None
            async with asyncio.timeout(10):
                async for message in sub.messages:
                    assert isinstance(message.payload, bytes)
                    payloads.append(json.loads(message.payload))
                    if len(payloads) == END // STEP_S:
                        break
    powers = [p["ENERGY"]["Power"] for p in payloads]
    offsets = [round(_posix_s(p["Time"]) - START_S) for p in payloads]
    times = range(STEP_S, END + 1, STEP_S)
    assert offsets == [t + 900 if 300 <= t < 420 else t for t in times]
    median = sorted(powers)[len(powers) // 2]
    assert [t for t, p in zip(times, powers, strict=True) if p > 5 * median] == [120]
    assert sim.publisher.stats.spiked == 1 and sim.publisher.stats.skewed == 12
    hours = sim.ground_truth.faults("compressor")
    assert any(FaultKind.SPIKE in kinds for kinds in hours.values())


def _posix_s(text: str) -> float:
    """Tasmota's Time: local (Europe/Berlin here) without an offset; a skewed one is
    written with its offset."""
    stamp = datetime.fromisoformat(text)
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=BERLIN)).timestamp()
