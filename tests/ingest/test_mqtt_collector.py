from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
from collections.abc import AsyncIterator, Callable
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
from zerocarbon.ingest.mqtt.collector import MAX_MESSAGES_PER_TURN, MqttCollector
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


# --- grouped acknowledgement, seen from the broker's side of the socket ------------------


class ScriptedBroker:
    """The server side of one MQTT 3.1.1 connection on a free loopback port, driven by
    the test: it accepts the connection and subscriptions (CONNACK, SUBACK: OASIS MQTT
    3.1.1 §3.2, §3.9), sends the PUBLISH packets it is given in one write (§3.3) and
    records the id of every PUBACK (§3.4) in the order they come. :meth:`barrier`
    sends a PINGREQ and waits for the PINGRESP that paho answers it with: paho queues
    its packets in order, so a PUBACK queued before the PINGREQ came is in by then."""

    def __init__(self) -> None:
        self.pubacks: list[int] = []
        self._writer: asyncio.StreamWriter | None = None
        self._connected = asyncio.Event()
        self._pong: asyncio.Event | None = None
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> ScriptedBroker:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        if self._writer is not None:
            self._writer.close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"mqtt://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                kind, body = await _read_packet(reader)
                if kind == 0x10:  # CONNECT -> CONNACK, session not present, accepted
                    writer.write(b"\x20\x02\x00\x00")
                    self._connected.set()
                elif kind == 0x80:  # SUBSCRIBE -> SUBACK granting QoS 1 to its one filter
                    writer.write(b"\x90\x03" + body[:2] + b"\x01")
                elif kind == 0x40:  # PUBACK
                    self.pubacks.append(int.from_bytes(body[:2], "big"))
                elif kind == 0xC0:  # the client's keep-alive PINGREQ
                    writer.write(b"\xd0\x00")
                elif kind == 0xD0 and self._pong is not None:  # PINGRESP to our PINGREQ
                    self._pong.set()
                elif kind == 0xE0:  # DISCONNECT
                    return

    def publish_all(self, messages: list[tuple[str, bytes, int]]) -> None:
        """(topic, payload, packet id) of QoS 1 PUBLISH packets, in one write."""
        assert self._writer is not None
        self._writer.write(b"".join(_publish_packet(*m) for m in messages))

    async def barrier(self) -> None:
        assert self._writer is not None
        self._pong = asyncio.Event()
        self._writer.write(b"\xc0\x00")
        await self._pong.wait()


async def _read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(packet type and flags, remaining bytes) of the next MQTT packet (§2.2)."""
    kind = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return kind & 0xF0, await reader.readexactly(length)


def _publish_packet(topic: str, payload: bytes, mid: int) -> bytes:
    body = len(topic.encode()).to_bytes(2, "big") + topic.encode() + mid.to_bytes(2, "big")
    body += payload
    length = bytearray()
    n = len(body)
    while True:
        n, byte = n >> 7, n & 0x7F
        length.append(byte | (0x80 if n else 0))
        if not n:
            break
    return b"\x32" + bytes(length) + body  # PUBLISH, QoS 1


class GatedSink:
    """A pipeline sink that holds each batch until released, or fails on it."""

    name = "gated"

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.batches: list[ReadingBatch] = []
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.returned = 0

    async def write_batch(self, batch: ReadingBatch) -> None:
        self.batches.append(batch)
        self.entered.set()
        if self.fail:
            raise RuntimeError("spool full")
        await self.release.wait()
        self.returned += 1


def _line_b_messages(values: list[float], mids: list[int]) -> list[tuple[str, bytes, int]]:
    return [
        ("factory/line_b/meter", json.dumps({"power_kw": v}).encode(), mid)
        for v, mid in zip(values, mids, strict=True)
    ]


@contextlib.asynccontextmanager
async def _collecting(
    demo_site: SiteConfig, broker: ScriptedBroker, sink: GatedSink
) -> AsyncIterator[tuple[MqttCollector, Pipeline]]:
    """A QoS 1 collector on ``broker`` putting into a real pipeline with ``sink``."""
    assert demo_site.mqtt is not None
    registry = SeriesRegistry.for_site(demo_site)
    pipeline = Pipeline([sink], flush_interval_s=60)  # acks wait: no lingering anyway
    collector = MqttCollector(
        demo_site.mqtt.model_copy(update={"qos": 1}),
        demo_site.mqtt_devices,
        SystemClock(),
        pipeline.put,
        registry,
        url=broker.url,
    )
    tasks = [asyncio.create_task(collector.run()), asyncio.create_task(pipeline.run())]
    try:
        async with asyncio.timeout(10):
            await collector.subscribed.wait()
        yield collector, pipeline
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_messages_of_one_turn_are_one_put_acked_in_order_after_the_sink(
    demo_site: SiteConfig,
) -> None:
    """MAX_MESSAGES_PER_TURN + 44 QoS 1 messages in one write reach the pipeline as two
    puts (one per loop turn); while the sink holds the first no PUBACK goes out; once it
    returns, every message id is acknowledged exactly once, in the order the messages
    came, across both groups (not sorted: ids drawn at random)."""
    count = MAX_MESSAGES_PER_TURN + 44
    mids = random.Random(20261125).sample(range(1, 65536), count)
    values = [float(i) for i in range(count)]
    sink = GatedSink()
    async with ScriptedBroker() as broker, _collecting(demo_site, broker, sink) as running:
        collector, pipeline = running
        broker.publish_all(_line_b_messages(values, mids))
        async with asyncio.timeout(10):
            await sink.entered.wait()
            await broker.barrier()
            assert broker.pubacks == [] and collector.stats.acked == 0  # sink holds them
            sink.release.set()
            while len(broker.pubacks) < count:
                await asyncio.sleep(0.01)
            await broker.barrier()  # nothing more is on its way
    assert broker.pubacks == mids
    assert [len(b) for b in sink.batches] == [MAX_MESSAGES_PER_TURN, 44]
    assert [v for b in sink.batches for v in b.value.tolist()] == values
    assert sink.returned == 2
    assert collector.stats.acked == count and collector.stats.messages == count
    assert pipeline.stats.acked == 2  # one ack call per group


async def test_a_group_a_sink_failed_on_is_not_acknowledged(demo_site: SiteConfig) -> None:
    """A sink fails on the group's batch: none of its messages is acknowledged (the
    broker redelivers them); a later message the sink takes is."""
    sink = GatedSink(fail=True)
    async with ScriptedBroker() as broker, _collecting(demo_site, broker, sink) as running:
        collector, pipeline = running
        broker.publish_all(_line_b_messages([1.0, 2.0, 3.0], [11, 12, 13]))
        async with asyncio.timeout(10):
            while pipeline.stats.unacked_after_failure < 1:
                await asyncio.sleep(0.01)
            await broker.barrier()
            assert broker.pubacks == [] and collector.stats.acked == 0
            sink.fail = False
            sink.release.set()
            broker.publish_all(_line_b_messages([4.0], [14]))
            while not broker.pubacks:
                await asyncio.sleep(0.01)
            await broker.barrier()
    assert broker.pubacks == [14]
    assert pipeline.stats.unacked_after_failure == 1 and pipeline.stats.sink_failures == 1
    assert [b.value.tolist() for b in sink.batches] == [[1.0, 2.0, 3.0], [4.0]]


async def test_a_backlog_built_while_the_pipeline_is_full_goes_in_groups_of_a_turn(
    demo_site: SiteConfig,
) -> None:
    """While a full pipeline holds the collector's put, aiomqtt's reader goes on filling
    the inbox; once the pipeline takes puts again that backlog is put at most
    MAX_MESSAGES_PER_TURN messages at a time (a put never grows with the backlog, so it
    always fits a small spool) and every message is acknowledged once, in order."""
    assert demo_site.mqtt is not None
    turn = MAX_MESSAGES_PER_TURN
    count = 4 * turn + 10
    mids = random.Random(7).sample(range(1, 65536), count)
    values = [float(i) for i in range(count)]
    messages = _line_b_messages(values, mids)
    registry = SeriesRegistry.for_site(demo_site)
    sink = GatedSink()
    pipeline = Pipeline([sink], max_queued=1, flush_interval_s=60)
    put_sizes: list[int] = []

    async def recording_put(batch: ReadingBatch, ack: Ack | None = None) -> None:
        put_sizes.append(len(batch))
        await pipeline.put(batch, ack)

    async with ScriptedBroker() as broker:
        collector = MqttCollector(
            demo_site.mqtt,
            demo_site.mqtt_devices,
            SystemClock(),
            recording_put,
            registry,
            url=broker.url,
        )
        tasks = [asyncio.create_task(collector.run()), asyncio.create_task(pipeline.run())]
        try:
            async with asyncio.timeout(10):
                await collector.subscribed.wait()
                # one group in the sink, one in the queue, one put waiting for room
                for k in range(3):
                    broker.publish_all(messages[k * turn : (k + 1) * turn])
                    while collector.stats.messages < (k + 1) * turn:
                        await asyncio.sleep(0.01)
                broker.publish_all(messages[3 * turn :])
                await broker.barrier()  # paho has read them all: the backlog is there
                assert put_sizes == [turn] * 3 and broker.pubacks == []
                sink.release.set()
                while len(broker.pubacks) < count:
                    await asyncio.sleep(0.01)
                await broker.barrier()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    assert put_sizes == [turn] * 4 + [10]
    assert broker.pubacks == mids
    assert [v for b in sink.batches for v in b.value.tolist()] == values


def test_device_events_follow_messages_and_silence(demo_site: SiteConfig) -> None:
    """Online at the first message with readings, offline once the clock finds it too
    old (3 x interval_s), online again; a device never heard from is offline once its
    limit has passed since start. No broker: the decoding and the state check only."""
    from tests.ingest.clocks import ManualClock
    from zerocarbon.ingest.events import DeviceEvent

    assert demo_site.mqtt is not None
    registry = SeriesRegistry.for_site(demo_site)
    clock = ManualClock(datetime(2026, 6, 21, 1, 0, tzinfo=UTC))
    events: list[DeviceEvent] = []

    async def sink(batch: ReadingBatch, ack: Ack | None = None) -> None:
        pass

    collector = MqttCollector(
        demo_site.mqtt, demo_site.mqtt_devices, clock, sink, registry, events=events.append
    )
    limit_s = collector.device_stats["line_b"].offline_after_s
    payload = json.dumps({"ts": "2026-06-21T01:00:00+00:00", "power_kw": 12.5}).encode()
    collector._handle("factory/line_b/meter", payload)
    assert [(e.device_id, e.kind) for e in events] == [("line_b", "online")]
    clock.advance(limit_s / 2)
    collector.report_states(clock.now_s())  # nothing late yet: no event
    assert len(events) == 1
    clock.advance(limit_s)
    collector.report_states(clock.now_s())
    late = {(e.device_id, e.kind) for e in events[1:]}
    # line_b went silent; the others never spoke and their limits have passed too
    assert late == {(d.id, "offline") for d in demo_site.mqtt_devices}
    offline_b = next(e for e in events[1:] if e.device_id == "line_b")
    assert offline_b.detail == f"no message with readings for {1.5 * limit_s:.0f} s"
    assert offline_b.ts_us == round(clock.now_s() * 1_000_000)
    collector.report_states(clock.now_s())  # reported once, not at every check
    assert len(events) == 1 + len(demo_site.mqtt_devices)
    collector._handle("factory/line_b/meter", payload)
    assert (events[-1].device_id, events[-1].kind) == ("line_b", "online")


async def test_silence_is_found_by_the_collector_itself(
    mqtt_url: str, demo_site: SiteConfig
) -> None:
    """The running collector's own clock-driven check reports a device gone silent."""
    from zerocarbon.clock import ScaledClock
    from zerocarbon.ingest.events import DeviceEvent

    assert demo_site.mqtt is not None
    registry = SeriesRegistry.for_site(demo_site)
    events: list[DeviceEvent] = []

    async def sink(batch: ReadingBatch, ack: Ack | None = None) -> None:
        pass

    clock = ScaledClock(datetime(2026, 6, 21, 1, 0, tzinfo=UTC), speed=200.0)
    collector = MqttCollector(
        demo_site.mqtt,
        demo_site.mqtt_devices,
        clock,
        sink,
        registry,
        url=mqtt_url,
        events=events.append,
    )
    task = asyncio.create_task(collector.run())
    try:
        async with asyncio.timeout(10):
            await collector.subscribed.wait()
        url = urlparse(mqtt_url)
        async with aiomqtt.Client(url.hostname or "127.0.0.1", port=url.port or 1883) as pub:
            await pub.publish("factory/line_b/meter", json.dumps({"power_kw": 1.0}), qos=1)
        async with asyncio.timeout(10):
            while ("line_b", "offline") not in {(e.device_id, e.kind) for e in events}:
                await asyncio.sleep(0.02)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    line_b = [e.kind for e in events if e.device_id == "line_b"]
    assert line_b == ["online", "offline"]


def test_a_stall_shorter_than_a_real_second_is_no_offline_event_at_high_speed(
    demo_site: SiteConfig,
) -> None:
    """At --speed 600 a 0.5 s stall of the event loop is 300 clock seconds of silence:
    over 3 x interval_s, but within the real-time grace, so no event; a longer silence
    is one."""
    from tests.ingest.clocks import ManualClock
    from zerocarbon.ingest.events import DeviceEvent
    from zerocarbon.ingest.mqtt.collector import EVENT_GRACE_REAL_S

    assert demo_site.mqtt is not None
    registry = SeriesRegistry.for_site(demo_site)
    clock = ManualClock(datetime(2026, 6, 21, 1, 0, tzinfo=UTC))
    clock.speed = 600.0
    events: list[DeviceEvent] = []

    async def sink(batch: ReadingBatch, ack: Ack | None = None) -> None:
        pass

    collector = MqttCollector(
        demo_site.mqtt, demo_site.mqtt_devices, clock, sink, registry, events=events.append
    )
    line_b = collector.device_stats["line_b"]
    payload = json.dumps({"ts": "2026-06-21T01:00:00+00:00", "power_kw": 12.5}).encode()
    collector._handle("factory/line_b/meter", payload)
    clock.advance(300.0)  # 0.5 s of real time at x600
    assert not line_b.online(clock.now_s())  # health says so: 300 s > 3 x 10 s
    collector.report_states(clock.now_s())
    assert [(e.device_id, e.kind) for e in events] == [("line_b", "online")]
    clock.advance(line_b.offline_after_s + EVENT_GRACE_REAL_S * 600.0)
    collector.report_states(clock.now_s())
    assert ("line_b", "offline") in {(e.device_id, e.kind) for e in events}
