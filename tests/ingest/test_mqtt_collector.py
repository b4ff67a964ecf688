from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import aiomqtt
import pytest

from zerocarbon.batch import Reading, ReadingBatch, SeriesRegistry
from zerocarbon.clock import SystemClock
from zerocarbon.config import SiteConfig
from zerocarbon.ingest.admission import Admission
from zerocarbon.ingest.mqtt.broker import local_broker
from zerocarbon.ingest.mqtt.collector import MqttCollector
from zerocarbon.ingest.pipeline import Pipeline
from zerocarbon.ingest.reading import Ack, BatchSink
from zerocarbon.netutil import free_tcp_port


async def test_subscribes_maps_and_survives_bad_payloads(
    mqtt_url: str, demo_site: SiteConfig
) -> None:
    assert demo_site.mqtt is not None
    registry = SeriesRegistry.for_site(demo_site)
    received: list[Reading] = []

    async def sink(batch: ReadingBatch, ack: Ack | None = None) -> None:
        assert type(batch) is ReadingBatch
        received.extend(batch.readings(registry))

    collector = MqttCollector(
        demo_site.mqtt, demo_site.mqtt_devices, SystemClock(), sink, registry, url=mqtt_url
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
    registry = SeriesRegistry.for_site(demo_site)
    received: list[Reading] = []

    async def sink(batch: ReadingBatch, ack: Ack | None = None) -> None:
        assert type(batch) is ReadingBatch
        received.extend(batch.readings(registry))

    async def publish_line_b(value: float) -> None:
        async with aiomqtt.Client("127.0.0.1", port=port) as pub:
            await pub.publish("factory/line_b/meter", json.dumps({"power_kw": value}), qos=1)

    collector = MqttCollector(
        demo_site.mqtt,
        demo_site.mqtt_devices,
        SystemClock(),
        sink,
        registry,
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


async def test_extreme_timestamps_cost_one_message_and_admission_drops_the_rest(
    mqtt_url: str, demo_site: SiteConfig
) -> None:
    """Collector -> real Pipeline with admission: timestamps a datetime cannot hold are
    clean bad payloads (the collector keeps running); representable but absurd ones
    (2099, year 1) reach admission and are dropped and counted there."""
    assert demo_site.mqtt is not None
    registry = SeriesRegistry.for_site(demo_site)
    clock = SystemClock()
    received: list[Reading] = []

    class Sink:
        name = "recording"

        async def write_batch(self, batch: ReadingBatch) -> None:
            received.extend(batch.readings(registry))

    admission = Admission(demo_site, registry, clock)
    pipeline = Pipeline([Sink()], admission=admission, flush_interval_s=0.01)
    collector = MqttCollector(
        demo_site.mqtt, demo_site.mqtt_devices, clock, pipeline.put, registry, url=mqtt_url
    )
    tasks = [asyncio.create_task(collector.run()), asyncio.create_task(pipeline.run())]
    try:
        async with asyncio.timeout(10):
            await collector.subscribed.wait()
        url = urlparse(mqtt_url)
        async with aiomqtt.Client(url.hostname or "127.0.0.1", port=url.port or 1883) as pub:
            for ts in (
                '"9999-12-31T23:59:59-01:00"',
                '"0001-01-01T00:00:00+01:00"',
                "1e20",
                '"2099-01-01T00:00:00Z"',
                '"0001-01-01T00:00:00Z"',
            ):
                payload = f'{{"ts": {ts}, "power_kw": 999}}'
                await pub.publish("factory/line_a/meter", payload, qos=1)
            await pub.publish("factory/line_a/meter", json.dumps({"power_kw": 4242.5}), qos=1)
        async with asyncio.timeout(10):
            while not any(r.value == 4242.5 for r in received):
                await asyncio.sleep(0.02)
        assert not tasks[0].done()  # the collector survived every message
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert collector.stats.bad_payloads == 3
    assert "line_a" in collector.stats.last_error
    assert [r.value for r in received if r.device == "line_a"] == [4242.5]
    assert admission.stats.by_device["line_a"].out_of_window == 2


async def test_stop_is_not_lost_when_disconnect_fails(
    mqtt_url: str, demo_site: SiteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiomqtt raises MqttError ("Operation timed out") from its disconnect when the
    broker does not confirm it in time (seen under load at shutdown); raised while the
    collector's cancellation unwinds, it replaces the CancelledError. That must not turn
    the stop into a reconnect (seen as a shutdown that never ended). The slow broker is
    the one thing faked here: the disconnect's failure is injected into aiomqtt."""
    assert demo_site.mqtt is not None
    registry = SeriesRegistry.for_site(demo_site)
    real_aexit = aiomqtt.Client.__aexit__

    async def slow_disconnect(self: aiomqtt.Client, exc_type: Any, exc: Any, tb: Any) -> None:
        await real_aexit(self, exc_type, exc, tb)
        if exc_type is asyncio.CancelledError:
            raise aiomqtt.MqttError("Operation timed out")

    monkeypatch.setattr(aiomqtt.Client, "__aexit__", slow_disconnect)

    async def sink(batch: ReadingBatch, ack: Ack | None = None) -> None:
        pass

    collector = MqttCollector(
        demo_site.mqtt, demo_site.mqtt_devices, SystemClock(), sink, registry, url=mqtt_url
    )
    task = asyncio.create_task(collector.run())
    try:
        async with asyncio.timeout(10):
            await collector.subscribed.wait()
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=5)
        assert task in done and task.cancelled()
        assert collector.stats.connections == 1  # no reconnect after the stop
    finally:
        task.cancel()
        await asyncio.wait({task}, timeout=5)  # never hangs, even if the stop were lost


async def test_unacknowledged_message_is_redelivered_to_the_next_session(
    mqtt_url: str, mqtt_broker_kind: str, demo_site: SiteConfig
) -> None:
    """PUBACK is sent only when the pipeline acknowledges the readings: the messages
    of a put the first session never acknowledged (its gateway died before spooling
    them) come again to the next session of the same client id; acknowledged ones do
    not. (A put holds the messages of one loop turn: those that came with 200.0.)"""
    if mqtt_broker_kind == "amqtt":
        pytest.skip("amqtt does not redeliver to a resumed session (Mosquitto is not installed)")
    assert demo_site.mqtt is not None
    mqtt = demo_site.mqtt.model_copy(update={"client_id": f"zc-ack-{secrets.token_hex(4)}"})
    registry = SeriesRegistry.for_site(demo_site)
    first: list[float] = []
    withheld: list[float] = []
    second: list[float] = []

    async def withholding_sink(batch: ReadingBatch, ack: Ack | None = None) -> None:
        values = [r.value for r in batch.readings(registry)]
        first.extend(values)
        if 200.0 in values:
            withheld.extend(values)
        elif ack is not None:
            ack()

    async def acking_sink(batch: ReadingBatch, ack: Ack | None = None) -> None:
        second.extend(r.value for r in batch.readings(registry))
        if ack is not None:
            ack()

    async def session(sink: BatchSink, until: Callable[[], bool]) -> MqttCollector:
        collector = MqttCollector(
            mqtt, demo_site.mqtt_devices, SystemClock(), sink, registry, url=mqtt_url
        )
        task = asyncio.create_task(collector.run())
        try:
            async with asyncio.timeout(10):
                await collector.subscribed.wait()
                if sink is withholding_sink:
                    await publish([1.0, 200.0, 3.0])
                while not until():
                    await asyncio.sleep(0.02)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return collector

    async def publish(values: list[float]) -> None:
        url = urlparse(mqtt_url)
        async with aiomqtt.Client(url.hostname or "127.0.0.1", port=url.port or 1883) as pub:
            for v in values:
                await pub.publish("factory/line_b/meter", json.dumps({"power_kw": v}), qos=1)

    one = await session(withholding_sink, lambda: len(first) == 3)
    assert first == [1.0, 200.0, 3.0] and 200.0 in withheld
    assert one.stats.acked == 3 - len(withheld)
    two = await session(acking_sink, lambda: len(second) >= len(withheld))
    assert second == withheld and two.stats.acked == len(withheld)


async def test_bad_and_unmapped_messages_are_logged_once_per_topic_per_interval(
    demo_site: SiteConfig, caplog: pytest.LogCaptureFixture
) -> None:
    """A flood of bad payloads on one topic gives one warning a minute (clock time),
    with the count since the last one; another topic gets its own; nothing is silent."""
    from tests.ingest.clocks import ManualClock
    from zerocarbon.ingest.mqtt.collector import LOG_INTERVAL_S

    assert demo_site.mqtt is not None
    clock = ManualClock(datetime(2026, 6, 21, tzinfo=UTC))
    registry = SeriesRegistry.for_site(demo_site)

    async def sink(batch: ReadingBatch, ack: Ack | None = None) -> None:
        pass

    collector = MqttCollector(demo_site.mqtt, demo_site.mqtt_devices, clock, sink, registry)
    caplog.set_level(logging.WARNING, logger="zerocarbon.ingest.mqtt.collector")
    for _ in range(5):
        collector._handle("factory/line_a/meter", b"{broken")
    collector._handle("factory/nobody/meter", b"{}")
    clock.advance(LOG_INTERVAL_S)
    collector._handle("factory/line_a/meter", b"{broken")
    lines = [r.getMessage() for r in caplog.records]
    line_a = [m for m in lines if "factory/line_a/meter" in m]
    assert len(line_a) == 2
    assert "(1 since the last report; 1 in all)" in line_a[0]
    assert "(5 since the last report; 6 in all)" in line_a[1]
    unmapped = [m for m in lines if "factory/nobody/meter" in m]
    assert len(unmapped) == 1 and "no device is mapped" in unmapped[0]
    assert collector.stats.bad_payloads == 6 and collector.stats.unknown_topics == 1
