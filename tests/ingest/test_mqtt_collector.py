from __future__ import annotations

import asyncio
import contextlib
import json
from urllib.parse import urlparse

import aiomqtt

from zerocarbon.clock import SystemClock
from zerocarbon.config import SiteConfig
from zerocarbon.ingest.mqtt.broker import local_broker
from zerocarbon.ingest.mqtt.collector import MqttCollector
from zerocarbon.ingest.reading import Reading
from zerocarbon.netutil import free_tcp_port


async def test_subscribes_maps_and_survives_bad_payloads(
    mqtt_url: str, demo_site: SiteConfig
) -> None:
    assert demo_site.mqtt is not None
    received: list[Reading] = []

    async def sink(readings: list[Reading]) -> None:
        received.extend(readings)

    collector = MqttCollector(
        demo_site.mqtt, demo_site.mqtt_devices, SystemClock(), sink, url=mqtt_url
    )
    task = asyncio.create_task(collector.run())
    try:
        async with asyncio.timeout(10):
            await collector.subscribed.wait()
        url = urlparse(mqtt_url)
        async with aiomqtt.Client(url.hostname or "127.0.0.1", port=url.port or 1883) as pub:
            await pub.publish("factory/line_a/meter", b"{broken", qos=1)
            await pub.publish(
                "factory/line_b/meter",
                json.dumps({"ts": "2026-06-21T01:00:00+00:00", "power_kw": 12.5}),
                qos=1,
            )
            await pub.publish("factory/line_a/output", json.dumps({"units_total": 7}), qos=1)
        async with asyncio.timeout(10):
            while len(received) < 2 or collector.stats.bad_payloads < 1:
                await asyncio.sleep(0.02)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    by_device = {r.device: r for r in received}
    assert by_device["line_b"].metric == "active_power_kw" and by_device["line_b"].value == 12.5
    assert by_device["output_counter"].value == 7.0
    assert collector.stats.bad_payloads == 1
    assert collector.stats.messages == 3


async def test_survives_a_broker_restart(demo_site: SiteConfig) -> None:
    """The broker goes away and comes back on the same port: the collector counts the
    failure, reconnects, subscribes again and goes on collecting."""
    assert demo_site.mqtt is not None
    port = free_tcp_port()
    received: list[Reading] = []

    async def sink(readings: list[Reading]) -> None:
        received.extend(readings)

    async def publish_line_b(value: float) -> None:
        async with aiomqtt.Client("127.0.0.1", port=port) as pub:
            await pub.publish("factory/line_b/meter", json.dumps({"power_kw": value}), qos=1)

    collector = MqttCollector(
        demo_site.mqtt,
        demo_site.mqtt_devices,
        SystemClock(),
        sink,
        url=f"mqtt://127.0.0.1:{port}",
        max_backoff_s=0.2,
    )
    task = asyncio.create_task(collector.run())
    try:
        async with local_broker("127.0.0.1", port):
            async with asyncio.timeout(10):
                await collector.subscribed.wait()
            await publish_line_b(1.0)
            async with asyncio.timeout(10):
                while not received:
                    await asyncio.sleep(0.02)
        async with asyncio.timeout(10):
            while collector.stats.connection_failures == 0:
                await asyncio.sleep(0.02)
        assert not collector.subscribed.is_set()
        async with local_broker("127.0.0.1", port):
            async with asyncio.timeout(10):
                await collector.subscribed.wait()
            await publish_line_b(2.0)
            async with asyncio.timeout(10):
                while len(received) < 2:
                    await asyncio.sleep(0.02)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert [r.value for r in received] == [1.0, 2.0]
    assert collector.stats.connections == 2
    assert collector.stats.connection_failures >= 1
