from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from typing import Any

import aiomqtt
import pytest

from tests.simulators.conftest import MIDNIGHT_S
from zerocarbon.clock import ScaledClock
from zerocarbon.config import MqttDevice, SiteConfig
from zerocarbon.ingest.mqtt.broker import local_broker
from zerocarbon.netutil import free_tcp_port
from zerocarbon.simulators.mqtt_publisher import MqttPublisher, build_payload, format_ts
from zerocarbon.simulators.plant import PlantModel

ISO_MICROS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")
SPEED = 200.0  # 10 simulated seconds between publishes = 50 ms


class RecordingPlant:
    """The plant, remembering what it told the publisher (by plant time)."""

    def __init__(self, plant: PlantModel, clock: ScaledClock) -> None:
        self.plant = plant
        self.clock = clock
        self.seen: dict[tuple[str, str], dict[str, float]] = {}

    @property
    def now_s(self) -> float:
        return self.plant.now_s

    def values(self, device_id: str) -> dict[str, float]:
        values = self.plant.values(device_id)
        self.seen[(device_id, format_ts(self.plant.now_s))] = values
        return values

    def sync(self) -> None:
        self.plant.advance(self.clock.now_s())


def test_format_ts() -> None:
    assert format_ts(1781924405.123456) == "2026-06-20T03:00:05.123456+00:00"
    assert format_ts(1781924400.0) == "2026-06-20T03:00:00.000000+00:00"


def test_build_payload(demo_site: SiteConfig) -> None:
    meter = demo_site.device("line_a")
    counter = demo_site.device("output_counter")
    assert isinstance(meter, MqttDevice) and isinstance(counter, MqttDevice)
    payload = build_payload(meter, {"active_power_kw": 321.5, "energy_import_kwh": 4.5e5}, 0.5)
    assert payload == {
        "power_kw": 321.5,
        "energy_kwh": 4.5e5,
        "ts": "1970-01-01T00:00:00.500000+00:00",
    }
    units = build_payload(counter, {"production_count_units": 1234.0}, 0.0)["units_total"]
    assert units == 1234 and isinstance(units, int)
    untimed = meter.model_copy(update={"ts_field": None})
    assert "ts" not in build_payload(untimed, {"active_power_kw": 1.0}, 0.0)


async def _collect(
    client: aiomqtt.Client, topics: set[str], timeout_s: float = 10.0
) -> dict[str, dict[str, Any]]:
    got: dict[str, dict[str, Any]] = {}
    async with asyncio.timeout(timeout_s):
        async for message in client.messages:
            got[str(message.topic)] = json.loads(message.payload)
            if set(got) >= topics:
                return got
    raise AssertionError("unreachable")


async def test_publishes_every_device_with_its_keys_and_values(
    mqtt_url: str, demo_site: SiteConfig
) -> None:
    site = demo_site
    start = datetime.fromtimestamp(MIDNIGHT_S + 9 * 3600, UTC)
    clock = ScaledClock(start, SPEED)
    source = RecordingPlant(PlantModel(site, clock.now_s()), clock)
    publisher = MqttPublisher(site, source, clock, url=mqtt_url, sync=source.sync)
    host, port = publisher.host, publisher.port
    topics = {d.topic for d in site.mqtt_devices}
    async with aiomqtt.Client(host, port=port, identifier="zc-test-sim-sub") as sub:
        for topic in topics:
            await sub.subscribe(topic, qos=1)
        task = asyncio.create_task(publisher.run())
        try:
            got = await _collect(sub, topics)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    assert publisher.stats.connects == 1 and publisher.stats.failures == 0
    for device in site.mqtt_devices:
        payload = got[device.topic]
        assert set(payload) == set(device.fields) | {"ts"}
        assert ISO_MICROS.match(payload["ts"]), payload["ts"]
        sent = source.seen[(device.id, payload["ts"])]
        for key in device.fields:
            assert payload[key] == pytest.approx(sent[device.field_metric(key)], rel=1e-15)
    assert got["factory/line_a/meter"]["power_kw"] > 100.0  # 09:00 local, line A running
    assert isinstance(got["factory/line_a/output"]["units_total"], int)


async def test_survives_a_broker_restart(demo_site: SiteConfig) -> None:
    port = free_tcp_port()
    url = f"mqtt://127.0.0.1:{port}"
    clock = ScaledClock(datetime.fromtimestamp(MIDNIGHT_S, UTC), SPEED)
    plant = PlantModel(demo_site, clock.now_s())
    publisher = MqttPublisher(
        demo_site,
        plant,
        clock,
        url=url,
        sync=lambda: plant.advance(clock.now_s()),
        reconnect_min_s=0.1,
        reconnect_max_s=0.2,
        publish_timeout_s=1.0,
    )
    topic = "factory/line_b/meter"
    task = asyncio.create_task(publisher.run())
    try:
        for round_ in range(2):
            async with local_broker("127.0.0.1", port):
                async with aiomqtt.Client(
                    "127.0.0.1", port=port, identifier=f"zc-sub-{round_}"
                ) as sub:
                    await sub.subscribe(topic, qos=1)
                    got = await _collect(sub, {topic})
                    assert "power_kw" in got[topic]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert publisher.stats.connects >= 2
    assert publisher.stats.failures >= 1
