"""Sparkplug B: the payload codec, the host-side decoder (births, aliases, seq, rebirth,
death) and an edge node simulator against the collector through a real broker."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import aiomqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zerocarbon.batch import BatchBuilder, Reading, ReadingBatch, SeriesRegistry
from zerocarbon.clock import ScaledClock
from zerocarbon.config import SiteConfig, SiteConfigError, parse_site
from zerocarbon.ingest.mqtt.collector import MqttCollector
from zerocarbon.ingest.mqtt.mapping import MqttMapping
from zerocarbon.ingest.mqtt.payload import MessageOutcome
from zerocarbon.ingest.mqtt.sparkplug import (
    BD_SEQ_METRIC,
    REBIRTH_METRIC,
    DataType,
    Metric,
    Payload,
    SparkplugError,
    decode_payload,
    encode_payload,
    metric_number,
)
from zerocarbon.ingest.reading import Ack
from zerocarbon.simulators.mqtt_publisher import MqttPublisher, SparkplugEdge
from zerocarbon.simulators.plant import PlantModel

T0_MS = 1_790_000_000_000


def _site(group: str = "plant", edge: str = "edge-1") -> SiteConfig:
    grid: dict[str, Any] = {"id": "grid", "role": "grid", "protocol": "mqtt", "topic": "x/grid"}
    grid["fields"] = {"p": "active_power_kw"}
    chiller = {
        "id": "chiller",
        "role": "load",
        "protocol": "mqtt",
        "sparkplug": {"group": group, "edge_node": edge, "device": "meter-1"},
        "rules": [
            {"name": "Power/Active", "metric": "active_power_kw", "scale": 0.001, "unit": "W"},
            {"name": "Energy/Import", "metric": "energy_import_kwh"},
        ],
    }
    node = {
        "id": "edge-meter",
        "role": "load",
        "protocol": "mqtt",
        "sparkplug": {"group": group, "edge_node": edge},
        "rules": [{"name": "Voltage", "metric": "voltage_v"}],
    }
    return parse_site({"mqtt": {}, "devices": [grid, chiller, node]}, "test.toml")


def _payload(seq: int | None, *metrics: Metric, ts_ms: int = T0_MS) -> bytes:
    return encode_payload(Payload(ts_ms, seq, metrics))


def test_codec_round_trip() -> None:
    metrics = (
        Metric("i8", 1, T0_MS, DataType.INT8, -23 & 0xFFFFFFFF),
        Metric("i64", 2, None, DataType.INT64, (-5) & 0xFFFFFFFFFFFFFFFF),
        Metric("u32", 3, None, DataType.UINT32, 4_000_000_000),
        Metric("f", 4, None, DataType.FLOAT, 1.5),
        Metric("d", 5, None, DataType.DOUBLE, 1e300),
        Metric("b", 6, None, DataType.BOOLEAN, True),
        Metric("s", 7, None, DataType.STRING, "héllo"),
        Metric("null", 8, None, DataType.DOUBLE, None),
    )
    decoded = decode_payload(encode_payload(Payload(T0_MS, 255, metrics)))
    assert decoded == Payload(T0_MS, 255, metrics)
    numbers = [metric_number(m, m.datatype) for m in decoded.metrics]
    assert numbers == [-23.0, -5.0, 4e9, 1.5, 1e300, None, None, None]
    # a signed value sent sign-extended to 32 bits reads the same
    assert metric_number(Metric(value=0xFFFFFFE9), DataType.INT8) == -23.0


@pytest.mark.parametrize(
    "raw",
    [
        b"\x08",  # a varint cut short
        b"\x12\x05\x0a\x01",  # a metric longer than what is left
        b"\x0b",  # wire type 3 (groups)
        b"\x12\x02\x0a\xff",  # a metric whose name is cut short
        b"\x08" + b"\xff" * 11,  # a varint of 11 bytes
    ],
)
def test_codec_refuses_broken_payloads(raw: bytes) -> None:
    with pytest.raises(SparkplugError):
        decode_payload(raw)


def test_config_refuses_json_forms_on_sparkplug_devices() -> None:
    site = _site().model_dump(mode="json", exclude_none=True)
    site["devices"][1].pop("fields")  # derived from the rules: not in a site file
    site["devices"][1]["rules"][0]["path"] = "a.b"
    with pytest.raises(SiteConfigError, match=r"devices\[1\]: rules\[0\]\.name"):
        parse_site(site, "test.toml")
    site["devices"][1]["rules"][0].pop("path")
    site["devices"][1]["sparkplug"]["edge_node"] = "edge/1"
    with pytest.raises(SiteConfigError, match=r"devices\[1\]\.sparkplug\.edge_node"):
        parse_site(site, "test.toml")


class Host:
    """The decoder with a registry, as the collector holds it."""

    def __init__(self, site: SiteConfig) -> None:
        self.registry = SeriesRegistry.for_site(site)
        self.mapping = MqttMapping(site.mqtt_devices, self.registry)
        self.arrival_us = T0_MS * 1000

    def send(self, topic: str, payload: bytes) -> tuple[MessageOutcome, list[Reading]]:
        out = BatchBuilder(self.registry)
        outcome = self.mapping.decode(topic, payload, self.arrival_us, out)
        return outcome, list(out.build().readings(self.registry))


def _births(host: Host, bd_seq: int = 0) -> None:
    host.send(
        "spBv1.0/plant/NBIRTH/edge-1",
        _payload(
            0,
            Metric(BD_SEQ_METRIC, None, None, DataType.UINT64, bd_seq),
            Metric(REBIRTH_METRIC, None, None, DataType.BOOLEAN, False),
            Metric("Voltage", 1, None, DataType.FLOAT, 231.5),
        ),
    )
    host.send(
        "spBv1.0/plant/DBIRTH/edge-1/meter-1",
        _payload(
            1,
            Metric("Power/Active", 10, None, DataType.INT32, 12_000),
            Metric("Energy/Import", 11, None, DataType.DOUBLE, 500.25),
            Metric("Status", 12, None, DataType.STRING, "run"),
        ),
    )


def test_births_then_data_by_alias() -> None:
    host = Host(_site())
    nbirth = _payload(0, Metric("Voltage", 1, None, DataType.FLOAT, 231.5))
    outcome, readings = host.send("spBv1.0/plant/NBIRTH/edge-1", nbirth)
    assert [(r.device, r.metric, r.value) for r in readings] == [("edge-meter", "voltage_v", 231.5)]
    assert outcome.publish == [] and outcome.unmapped is None
    dbirth = _payload(1, Metric("Power/Active", 10, None, DataType.INT32, 12_000))
    _outcome, readings = host.send("spBv1.0/plant/DBIRTH/edge-1/meter-1", dbirth)
    assert [(r.metric, r.value) for r in readings] == [("active_power_kw", 12.0)]
    ddata = _payload(2, Metric(None, 10, T0_MS + 500, 0, -3000 & 0xFFFFFFFF))  # alias only
    outcome, readings = host.send("spBv1.0/plant/DDATA/edge-1/meter-1", ddata)
    assert [(r.metric, r.value) for r in readings] == [("active_power_kw", -3.0)]
    assert readings[0].ts == datetime.fromtimestamp((T0_MS + 500) / 1000, UTC)  # metric time
    assert outcome.devices[0].problems == [] and outcome.publish == []


def test_seq_gap_asks_for_one_rebirth_and_seq_wraps() -> None:
    host = Host(_site())
    _births(host)
    seq = 2
    for _ in range(300):  # through 255 -> 0
        outcome, _ = host.send(
            "spBv1.0/plant/NDATA/edge-1", _payload(seq % 256, Metric(None, 1, None, 0, 1.0))
        )
        assert outcome.publish == []
        seq += 1
    gap, readings = host.send(
        "spBv1.0/plant/NDATA/edge-1", _payload((seq + 3) % 256, Metric(None, 1, None, 0, 2.0))
    )
    assert [r.value for r in readings] == [2.0]  # the aliases still hold: the value counts
    assert len(gap.publish) == 1
    topic, request = gap.publish[0]
    assert topic == "spBv1.0/plant/NCMD/edge-1"
    asked = decode_payload(request).metrics
    assert [(m.name, m.datatype, m.value) for m in asked] == [(REBIRTH_METRIC, 11, True)]
    again, _ = host.send("spBv1.0/plant/NDATA/edge-1", _payload(0, Metric(None, 1, None, 0, 3.0)))
    assert again.publish == []  # one request per hold-off, not one per message
    host.arrival_us += 6_000_000
    later, _ = host.send("spBv1.0/plant/NDATA/edge-1", _payload(9, Metric(None, 1, None, 0, 3.0)))
    assert len(later.publish) == 1
    sparkplug = host.mapping.sparkplug
    assert sparkplug is not None and sparkplug.stats.seq_gaps == 3
    assert sparkplug.stats.rebirth_requests == 2


def test_data_before_birth_and_unknown_alias_ask_for_a_rebirth() -> None:
    host = Host(_site())
    early, readings = host.send(
        "spBv1.0/plant/DDATA/edge-1/meter-1", _payload(5, Metric(None, 10, None, 0, 1.0))
    )
    assert readings == [] and len(early.publish) == 1
    assert "before the node's NBIRTH" in early.devices[0].problems[0]
    _births(host)
    host.arrival_us += 6_000_000
    unknown, _ = host.send(
        "spBv1.0/plant/DDATA/edge-1/meter-1", _payload(2, Metric(None, 99, None, 0, 1.0))
    )
    assert "unknown alias 99" in unknown.devices[0].problems[0] and len(unknown.publish) == 1


def test_deaths_take_devices_offline() -> None:
    host = Host(_site())
    _births(host, bd_seq=4)
    ddeath, _ = host.send("spBv1.0/plant/DDEATH/edge-1/meter-1", _payload(2))
    assert ddeath.offline == ["chiller"]
    stale = _payload(None, Metric(BD_SEQ_METRIC, None, None, DataType.UINT64, 3))
    old, _ = host.send("spBv1.0/plant/NDEATH/edge-1", stale)
    assert old.offline == []  # the will of an earlier session
    death = _payload(None, Metric(BD_SEQ_METRIC, None, None, DataType.UINT64, 4))
    now, _ = host.send("spBv1.0/plant/NDEATH/edge-1", death)
    assert sorted(now.offline) == ["chiller", "edge-meter"]
    after, readings = host.send(
        "spBv1.0/plant/NDATA/edge-1", _payload(3, Metric(None, 1, None, 0, 1.0))
    )
    assert readings == [] and len(after.publish) == 1  # dead: a rebirth is needed first


def test_unmapped_and_malformed_sparkplug_messages() -> None:
    host = Host(_site())
    _births(host)
    other, _ = host.send("spBv1.0/plant/DDATA/edge-1/meter-9", _payload(2))
    assert other.unmapped is not None and "meter-9" in other.unmapped
    broken, _ = host.send("spBv1.0/plant/DDATA/edge-1/meter-1", b"\x12\x7f")
    assert "truncated" in broken.devices[0].problems[0]
    command, _ = host.send("spBv1.0/plant/NCMD/edge-1", _payload(None))
    assert command.unmapped is None and command.devices == []  # our own request, seen again


# --- an edge node simulator against the collector, through a real broker --------------


class RecordingPlant:
    def __init__(self, plant: PlantModel, clock: ScaledClock) -> None:
        self.plant = plant
        self.clock = clock
        self.seen: dict[tuple[str, str], list[float]] = {}

    @property
    def now_s(self) -> float:
        return self.plant.now_s

    def values(self, device_id: str) -> dict[str, float]:
        values = self.plant.values(device_id)
        for metric, value in values.items():
            self.seen.setdefault((device_id, metric), []).append(value)
        return values

    def sync(self) -> None:
        self.plant.advance(self.clock.now_s())


async def _until(condition: Any, timeout_s: float = 15.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.02)


async def test_edge_node_simulator_birth_data_rebirth_death(mqtt_url: str) -> None:
    group = f"g-{secrets.token_hex(3)}"
    site = _site(group=group)
    registry = SeriesRegistry.for_site(site)
    clock = ScaledClock(datetime(2026, 6, 21, 2, 0, tzinfo=UTC), 400.0)
    source = RecordingPlant(PlantModel(site, clock.now_s()), clock)
    publisher = MqttPublisher(site, source, clock, url=mqtt_url, sync=source.sync)
    edge = publisher.edges[(group, "edge-1")]
    received: list[Reading] = []

    async def sink(batch: ReadingBatch, ack: Ack | None = None) -> None:
        received.extend(batch.readings(registry))
        if ack is not None:
            ack()

    assert site.mqtt is not None
    collector = MqttCollector(site.mqtt, site.mqtt_devices, clock, sink, registry, url=mqtt_url)
    sparkplug = collector.mapping.sparkplug
    assert sparkplug is not None
    stats = collector.device_stats
    collecting = asyncio.create_task(collector.run())
    publishing: asyncio.Task[None] | None = None
    try:
        await _until(collector.subscribed.is_set)
        publishing = asyncio.create_task(publisher.run())
        await _until(lambda: stats["chiller"].readings >= 6 and stats["edge-meter"].readings >= 3)
        assert sparkplug.stats.births == 1 and sparkplug.stats.rebirth_requests == 0
        edge.lose_messages(1)  # the host sees a gap in seq
        await _until(lambda: publisher.stats.rebirths >= 1)
        assert sparkplug.stats.seq_gaps >= 1 and sparkplug.stats.rebirth_requests >= 1
        await _until(lambda: sparkplug.stats.births >= 2)
        before = stats["chiller"].readings
        await _until(lambda: stats["chiller"].readings >= before + 4)
        publishing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await publishing
        assert stats["chiller"].online(clock.now_s())
        # the broker would send the will of a lost session: its NDEATH, with its bdSeq
        bd = Metric(BD_SEQ_METRIC, None, None, DataType.UINT64, edge.bd_seq)
        url = urlparse(mqtt_url)
        async with aiomqtt.Client(url.hostname or "127.0.0.1", port=url.port or 1883) as pub:
            await pub.publish(edge.topic("NDEATH"), encode_payload(Payload(None, None, (bd,))))
        await _until(lambda: sparkplug.stats.deaths >= 1)
    finally:
        for task in (publishing, collecting):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    now_s = clock.now_s()
    assert not stats["chiller"].online(now_s) and not stats["edge-meter"].online(now_s)
    assert stats["chiller"].bad_payloads == 0 and collector.stats.unknown_topics == 0
    assert {(r.device, r.metric) for r in received if r.device != "grid"} == {
        ("chiller", "active_power_kw"),
        ("chiller", "energy_import_kwh"),
        ("edge-meter", "voltage_v"),
    }
    for r in received:  # each value is one the plant gave, in our units
        sent = source.seen[(r.device, r.metric)]
        assert any(v == pytest.approx(r.value, rel=1e-12, abs=1e-12) for v in sent), r
    power = [r.value for r in received if r.metric == "active_power_kw"]
    assert max(power) > 10.0  # kW: the line runs at 10:00 local


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_sparkplug_error(raw: bytes) -> None:
    with contextlib.suppress(SparkplugError):
        decode_payload(raw)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["NBIRTH", "DBIRTH", "NDATA", "DDATA", "NDEATH", "DDEATH"]),
            st.integers(0, 255) | st.none(),
            st.lists(
                st.builds(
                    Metric,
                    st.sampled_from(["Power/Active", "Energy/Import", "Voltage", "x"]) | st.none(),
                    st.integers(0, 20) | st.none(),
                    st.integers(0, 2**64 - 1) | st.none(),
                    st.integers(0, 20),
                    st.integers(0, 2**64 - 1) | st.floats() | st.booleans() | st.text() | st.none(),
                ),
                max_size=4,
            ),
        ),
        max_size=12,
    )
)
def test_any_message_sequence_is_decoded_without_raising(
    messages: list[tuple[str, int | None, list[Metric]]],
) -> None:
    host = Host(_site())
    for kind, seq, metrics in messages:
        device = "/meter-1" if kind.startswith("D") else ""
        topic = f"spBv1.0/plant/{kind}/edge-1{device}"
        outcome, readings = host.send(topic, _payload(seq, *metrics))
        assert all(abs(r.value) < float("inf") for r in readings)
        assert len(outcome.publish) <= 1


async def test_a_lost_edge_connection_delivers_its_death(mqtt_url: str) -> None:
    """The edge node's NDEATH is its connection's will: a connection that drops without
    a DISCONNECT makes the broker publish it, and its bdSeq matches the birth's."""
    group = f"g-{secrets.token_hex(3)}"
    site = _site(group=group)
    registry = SeriesRegistry.for_site(site)

    async def sink(batch: ReadingBatch, ack: Ack | None = None) -> None:
        if ack is not None:
            ack()

    assert site.mqtt is not None
    clock = ScaledClock(datetime(2026, 6, 21, 2, 0, tzinfo=UTC), 1.0)
    collector = MqttCollector(site.mqtt, site.mqtt_devices, clock, sink, registry, url=mqtt_url)
    sparkplug = collector.mapping.sparkplug
    assert sparkplug is not None
    edge = SparkplugEdge(group, "edge-1", site.mqtt_devices[1:])
    edge.new_session()  # an earlier session: its will must not count once this one is born
    will_topic, will = edge.new_session()
    url = urlparse(mqtt_url)
    collecting = asyncio.create_task(collector.run())
    node = aiomqtt.Client(
        url.hostname or "127.0.0.1",
        port=url.port or 1883,
        will=aiomqtt.Will(will_topic, will, qos=1),
    )
    try:
        await _until(collector.subscribed.is_set)
        await node.__aenter__()
        values = {"chiller": {"active_power_kw": 2.0}, "edge-meter": {"voltage_v": 230.0}}
        for topic, payload in edge.birth(values.__getitem__, 1000):
            await node.publish(topic, payload)
        await _until(lambda: collector.device_stats["chiller"].readings == 1)
        assert collector.device_stats["chiller"].online(clock.now_s())
        sock = node._client.socket()
        assert isinstance(sock, socket.socket)
        # the TCP connection ends without a DISCONNECT: the broker sends the will (a
        # shutdown, not a close: the event loop still watches the socket, and paho
        # closes it when it reads the end)
        sock.shutdown(socket.SHUT_RDWR)
        await _until(lambda: sparkplug.stats.deaths == 1)
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(0.5):  # its socket is gone: no DISCONNECT to wait for
                await node.__aexit__(None, None, None)
        collecting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await collecting
    assert not collector.device_stats["chiller"].online(clock.now_s())
    assert not collector.device_stats["edge-meter"].online(clock.now_s())
