"""Sparkplug B over MQTT: the payload codec, and the host-side decoder of edge nodes.

Topics are ``spBv1.0/<group>/<type>/<edge node>[/<device>]`` with the types NBIRTH,
NDATA, NDEATH, NCMD (edge node) and DBIRTH, DDATA, DDEATH, DCMD (device). Payloads are
the protobuf message ``Payload`` of Eclipse Tahu's ``sparkplug_b/sparkplug_b.proto``
(Sparkplug 3.0.0 §6.4): ``timestamp`` (1, uint64 ms), ``metrics`` (2), ``seq`` (3,
uint64); a ``Metric`` has ``name`` (1), ``alias`` (2), ``timestamp`` (3, ms),
``datatype`` (4), ``is_null`` (7) and one value: ``int_value`` (10, uint32),
``long_value`` (11, uint64), ``float_value`` (12), ``double_value`` (13),
``boolean_value`` (14), ``string_value`` (15). This module reads and writes that
subset with a small protobuf wire-format codec (varint, fixed32/64, length-delimited;
unknown fields are skipped), because the Python Sparkplug packages pin paho-mqtt 1.x,
which aiomqtt 2 cannot use.

Host rules (Sparkplug 3.0.0 §5, §6.4.19): a birth certificate names the metrics and
their aliases and datatypes; later DATA may carry aliases only. Every message of an edge
node after its NBIRTH carries ``seq``, one more than the previous modulo 256 (NDEATH
has none). A missing birth, an unknown alias or a gap in ``seq`` makes the host ask for
a rebirth: an NCMD with the boolean metric ``Node Control/Rebirth`` = true. NDEATH takes
the node and its devices offline (when its ``bdSeq`` matches the birth's), DDEATH one
device.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from zerocarbon.batch import MAX_TS_US, BatchBuilder, SeriesRegistry
from zerocarbon.config import MqttDevice
from zerocarbon.ingest.mqtt.payload import MAX_PAYLOAD_BYTES, DeviceOutcome, MessageOutcome

SPARKPLUG_PREFIX = "spBv1.0/"
REBIRTH_METRIC = "Node Control/Rebirth"
BD_SEQ_METRIC = "bdSeq"
REBIRTH_HOLDOFF_US = 5_000_000  # one rebirth request per edge node per this [us]
MAX_METRICS = 10_000  # metrics in one payload (a birth of a big node has a few hundred)


class DataType(IntEnum):
    """Sparkplug B metric datatypes (Sparkplug 3.0.0 §6.4.16; the scalar ones)."""

    UNKNOWN = 0
    INT8 = 1
    INT16 = 2
    INT32 = 3
    INT64 = 4
    UINT8 = 5
    UINT16 = 6
    UINT32 = 7
    UINT64 = 8
    FLOAT = 9
    DOUBLE = 10
    BOOLEAN = 11
    STRING = 12
    DATETIME = 13
    TEXT = 14


_SIGNED_BITS = {DataType.INT8: 8, DataType.INT16: 16, DataType.INT32: 32, DataType.INT64: 64}
_INT_TYPES = {DataType.INT8, DataType.INT16, DataType.INT32, DataType.UINT8, DataType.UINT16}
_INT_TYPES |= {DataType.UINT32}
_LONG_TYPES = {DataType.INT64, DataType.UINT64, DataType.DATETIME}


class SparkplugError(ValueError):
    """A payload that is not a readable Sparkplug B ``Payload``."""


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric of a payload. ``value`` is the raw field that was set (an int for
    int/long values as sent, unsigned), None when none was or ``is_null``."""

    name: str | None = None
    alias: int | None = None
    timestamp_ms: int | None = None
    datatype: int = DataType.UNKNOWN
    value: int | float | bool | str | None = None


@dataclass(frozen=True, slots=True)
class Payload:
    """A Sparkplug B payload: sending time [POSIX ms], sequence number and metrics."""

    timestamp_ms: int | None = None
    seq: int | None = None
    metrics: tuple[Metric, ...] = ()


# --- protobuf wire format (protobuf.dev/programming-guides/encoding) -------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    for shift in range(0, 70, 7):
        if pos >= len(data):
            raise SparkplugError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result & ((1 << 64) - 1), pos
    raise SparkplugError("varint longer than 10 bytes")


def _fields(data: bytes) -> Iterable[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of a message; fixed32/64 as raw bytes."""
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _read_varint(data, pos)
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _read_varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise SparkplugError(f"field {number}: unsupported wire type {wire}")
        if pos > len(data):
            raise SparkplugError(f"field {number}: truncated")
        yield number, wire, value


def _text(value: int | bytes) -> str:
    if not isinstance(value, bytes):
        raise SparkplugError("a string field is not length-delimited")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise SparkplugError("a string field is not UTF-8") from None


def _int(value: int | bytes) -> int:
    if not isinstance(value, int):
        raise SparkplugError("an integer field is not a varint")
    return value


def _decode_metric(data: bytes) -> Metric:
    name: str | None = None
    alias = timestamp_ms = None
    datatype = 0
    value: int | float | bool | str | None = None
    is_null = False
    for number, _wire, raw in _fields(data):
        if number == 1:
            name = _text(raw)
        elif number == 2:
            alias = _int(raw)
        elif number == 3:
            timestamp_ms = _int(raw)
        elif number == 4:
            datatype = _int(raw)
        elif number == 7:
            is_null = bool(_int(raw))
        elif number in (10, 11):
            value = _int(raw)
        elif number == 12 and isinstance(raw, bytes) and len(raw) == 4:
            value = struct.unpack("<f", raw)[0]
        elif number == 13 and isinstance(raw, bytes) and len(raw) == 8:
            value = struct.unpack("<d", raw)[0]
        elif number == 14:
            value = bool(_int(raw))
        elif number == 15:
            value = _text(raw)
    return Metric(name, alias, timestamp_ms, datatype, None if is_null else value)


def decode_payload(data: bytes) -> Payload:
    """A Sparkplug B payload from its protobuf bytes; :class:`SparkplugError` if it is
    not one (or larger than :data:`~zerocarbon.ingest.mqtt.payload.MAX_PAYLOAD_BYTES`)."""
    if len(data) > MAX_PAYLOAD_BYTES:
        raise SparkplugError(f"payload of {len(data):,} bytes is larger than accepted")
    timestamp_ms = seq = None
    metrics: list[Metric] = []
    for number, _wire, raw in _fields(data):
        if number == 1:
            timestamp_ms = _int(raw)
        elif number == 2:
            if not isinstance(raw, bytes):
                raise SparkplugError("a metric is not length-delimited")
            if len(metrics) >= MAX_METRICS:
                raise SparkplugError(f"more than {MAX_METRICS} metrics")
            metrics.append(_decode_metric(raw))
        elif number == 3:
            seq = _int(raw)
    return Payload(timestamp_ms, seq, tuple(metrics))


def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _encode_metric(metric: Metric) -> bytes:
    out = bytearray()
    if metric.name is not None:
        raw = metric.name.encode()
        out += _key(1, 2) + _varint(len(raw)) + raw
    if metric.alias is not None:
        out += _key(2, 0) + _varint(metric.alias)
    if metric.timestamp_ms is not None:
        out += _key(3, 0) + _varint(metric.timestamp_ms)
    if metric.datatype:
        out += _key(4, 0) + _varint(metric.datatype)
    value = metric.value
    datatype = metric.datatype  # IntEnum members hash and compare as their ints
    if value is None:
        out += _key(7, 0) + _varint(1)
    elif isinstance(value, bool):
        out += _key(14, 0) + _varint(int(value))
    elif isinstance(value, str):
        raw = value.encode()
        out += _key(15, 2) + _varint(len(raw)) + raw
    elif isinstance(value, float):  # float_value for Float, double_value otherwise
        try:
            single = struct.pack("<f", value) if datatype == DataType.FLOAT else None
        except OverflowError:  # beyond float32: sent as a double
            single = None
        if single is not None:
            out += _key(12, 5) + single
        else:
            out += _key(13, 1) + struct.pack("<d", value)
    elif datatype in _INT_TYPES or (not datatype and 0 <= value <= 0xFFFFFFFF):
        out += _key(10, 0) + _varint(value & 0xFFFFFFFF)
    else:  # long_value: Int64, UInt64, DateTime and larger integers
        out += _key(11, 0) + _varint(value)
    return bytes(out)


def encode_payload(payload: Payload) -> bytes:
    """The protobuf bytes of a payload (the inverse of :func:`decode_payload`)."""
    out = bytearray()
    if payload.timestamp_ms is not None:
        out += _key(1, 0) + _varint(payload.timestamp_ms)
    for metric in payload.metrics:
        raw = _encode_metric(metric)
        out += _key(2, 2) + _varint(len(raw)) + raw
    if payload.seq is not None:
        out += _key(3, 0) + _varint(payload.seq)
    return bytes(out)


def metric_number(metric: Metric, datatype: int) -> float | None:
    """A metric's value as a number by its datatype (signed integers in two's complement
    of their width), or None for booleans, strings, dates and nulls."""
    value = metric.value
    if value is None or isinstance(value, bool | str):
        return None
    if isinstance(value, float):  # float_value or double_value, whatever the datatype says
        return value
    bits = _SIGNED_BITS.get(datatype)  # type: ignore[call-overload]
    if bits is not None:
        value &= (1 << bits) - 1
        return float(value - (1 << bits) if value >> (bits - 1) else value)
    if datatype in _INT_TYPES or datatype == DataType.UINT64:
        return float(value)
    return None


def rebirth_request(timestamp_ms: int) -> bytes:
    """The NCMD payload that asks an edge node for a rebirth."""
    return encode_payload(
        Payload(timestamp_ms, None, (Metric(REBIRTH_METRIC, None, None, DataType.BOOLEAN, True),))
    )


# --- the host side: edge node state and mapping to our devices -------------------------


@dataclass(frozen=True, slots=True)
class _Target:
    device_id: str
    series: dict[str, tuple[int, float]]  # Sparkplug metric name -> (series id, scale)


@dataclass(slots=True)
class _Node:
    """What the host knows of one edge node since its last birth."""

    next_seq: int | None = None  # None: no birth since start or since its death
    bd_seq: int | None = None
    # device (None: the node itself) -> alias -> (name, datatype); name -> datatype
    aliases: dict[str | None, dict[int, tuple[str, int]]] = field(default_factory=dict)
    datatypes: dict[str | None, dict[str, int]] = field(default_factory=dict)
    rebirth_at_us: int | None = None  # arrival time of the last rebirth request


@dataclass(slots=True)
class SparkplugStats:
    births: int = 0
    deaths: int = 0
    seq_gaps: int = 0
    rebirth_requests: int = 0


class SparkplugDecoder:
    """Decodes the Sparkplug B messages of the site's edge nodes into readings.

    Each :class:`~zerocarbon.config.MqttDevice` with ``sparkplug`` maps (group, edge
    node, device) and its rules' metric names to our device and metrics (value x
    ``scale``). Raises :class:`zerocarbon.batch.UnknownSeriesError` for a metric the
    registry does not know.
    """

    def __init__(self, devices: Sequence[MqttDevice], registry: SeriesRegistry) -> None:
        self._targets: dict[tuple[str, str, str | None], list[_Target]] = {}
        for device in devices:
            source = device.sparkplug
            assert source is not None
            series = {
                rule.name: (registry.id(device.id, rule.metric), rule.scale)
                for rule in device.rules
                if rule.name is not None
            }
            key = (source.group, source.edge_node, source.device)
            self._targets.setdefault(key, []).append(_Target(device.id, series))
        self._nodes: dict[tuple[str, str], _Node] = {
            (group, edge): _Node() for group, edge, _device in self._targets
        }
        self.subscriptions: tuple[str, ...] = tuple(
            topic
            for group, edge in self._nodes
            for topic in (f"spBv1.0/{group}/+/{edge}", f"spBv1.0/{group}/+/{edge}/+")
        )
        self.stats = SparkplugStats()

    def decode(
        self, topic: str, payload: bytes, arrival_us: int, out: BatchBuilder
    ) -> MessageOutcome:
        """Append a message's readings to ``out``; births, deaths and sequence numbers
        update the node's state. ``arrival_us`` [POSIX us] stamps metrics without a time."""
        levels = topic.split("/")
        if len(levels) not in (4, 5):
            return MessageOutcome(unmapped=f"topic {topic!r}: not a Sparkplug B topic")
        _ns, group, kind, edge = levels[:4]
        device = levels[4] if len(levels) == 5 else None
        if kind in ("NCMD", "DCMD", "STATE"):
            return MessageOutcome()  # commands (ours among them) carry no readings
        node = self._nodes.get((group, edge))
        if node is None:
            return MessageOutcome(unmapped=f"topic {topic!r}: no device is mapped to it")
        targets = self._targets.get((group, edge, device), [])
        outcome = MessageOutcome(devices=[DeviceOutcome(t.device_id) for t in targets])
        where = f"Sparkplug {group}/{edge}" + (f"/{device}" if device else "")
        try:
            message = decode_payload(payload)
        except SparkplugError as exc:
            self._problem(outcome, f"{where} {kind}: {exc}", topic)
            return outcome
        if kind == "NBIRTH":
            self._birth_node(node, message)
        elif kind == "NDEATH":
            self._death_node(node, message, group, edge, outcome)
            return outcome
        elif kind in ("NDATA", "DBIRTH", "DDATA", "DDEATH"):
            if not self._check_seq(node, message, group, edge, arrival_us, outcome):
                self._problem(outcome, f"{where} {kind} before the node's NBIRTH", topic)
                return outcome
            if kind == "DBIRTH":
                node.aliases[device] = {}
                node.datatypes[device] = {}
            elif kind == "DDEATH":
                outcome.offline.extend(t.device_id for t in targets)
                return outcome
        else:
            return MessageOutcome(unmapped=f"topic {topic!r}: unknown Sparkplug type {kind!r}")
        birth = kind in ("NBIRTH", "DBIRTH")
        unknown_alias = self._readings(
            node, device, message, birth, targets, arrival_us, out, outcome, where
        )
        if unknown_alias:  # the host lost the birth (it started after it): ask again
            self._request_rebirth(outcome, group, edge, node, arrival_us)
        if not birth and not targets:
            outcome.unmapped = f"topic {topic!r}: no device is mapped to it"
        return outcome

    def _problem(self, outcome: MessageOutcome, problem: str, topic: str) -> None:
        if outcome.devices:
            for device in outcome.devices:
                device.problems.append(problem)
        elif outcome.unmapped is None:
            outcome.unmapped = f"topic {topic!r}: {problem}"

    def _birth_node(self, node: _Node, message: Payload) -> None:
        self.stats.births += 1
        node.next_seq = ((message.seq or 0) + 1) % 256
        node.aliases = {None: {}}
        node.datatypes = {None: {}}
        node.rebirth_at_us = None
        for metric in message.metrics:
            if metric.name == BD_SEQ_METRIC and isinstance(metric.value, int):
                node.bd_seq = metric.value

    def _death_node(
        self, node: _Node, message: Payload, group: str, edge: str, outcome: MessageOutcome
    ) -> None:
        bd_seq = next(
            (m.value for m in message.metrics if m.name == BD_SEQ_METRIC and m.value is not None),
            None,
        )
        if bd_seq is not None and node.bd_seq is not None and bd_seq != node.bd_seq:
            return  # the will of an older session: this one is still alive
        self.stats.deaths += 1
        node.next_seq = None
        node.aliases = {}
        node.datatypes = {}
        for (g, e, _device), targets in self._targets.items():
            if (g, e) == (group, edge):
                outcome.offline.extend(t.device_id for t in targets)

    def _check_seq(
        self,
        node: _Node,
        message: Payload,
        group: str,
        edge: str,
        arrival_us: int,
        outcome: MessageOutcome,
    ) -> bool:
        """Whether the node is born; a gap in ``seq`` (or no birth) asks for a rebirth."""
        if node.next_seq is None:
            self._request_rebirth(outcome, group, edge, node, arrival_us)
            return False
        seq = message.seq
        if seq != node.next_seq:
            self.stats.seq_gaps += 1
            self._request_rebirth(outcome, group, edge, node, arrival_us)
        node.next_seq = ((seq if seq is not None else node.next_seq) + 1) % 256
        return True

    def _request_rebirth(
        self, outcome: MessageOutcome, group: str, edge: str, node: _Node, arrival_us: int
    ) -> None:
        if node.rebirth_at_us is not None and arrival_us - node.rebirth_at_us < REBIRTH_HOLDOFF_US:
            return
        node.rebirth_at_us = arrival_us
        self.stats.rebirth_requests += 1
        outcome.publish.append(
            (f"spBv1.0/{group}/NCMD/{edge}", rebirth_request(arrival_us // 1000))
        )

    def _readings(
        self,
        node: _Node,
        device: str | None,
        message: Payload,
        birth: bool,
        targets: list[_Target],
        arrival_us: int,
        out: BatchBuilder,
        outcome: MessageOutcome,
        where: str,
    ) -> bool:
        """Append the mapped metrics' readings; return whether an alias was unknown."""
        unknown_alias = False
        aliases = node.aliases.setdefault(device, {})
        datatypes = node.datatypes.setdefault(device, {})
        default_us = arrival_us if message.timestamp_ms is None else message.timestamp_ms * 1000
        for metric in message.metrics:
            name = metric.name
            if birth and name is not None:
                if metric.alias is not None:
                    aliases[metric.alias] = (name, metric.datatype)
                datatypes[name] = metric.datatype
            if name is None:
                known = aliases.get(metric.alias) if metric.alias is not None else None
                if known is None:
                    unknown_alias = True
                    for d in outcome.devices:
                        d.problems.append(f"{where}: unknown alias {metric.alias}")
                    continue
                name = known[0]
            datatype = metric.datatype or datatypes.get(name, 0)
            ts_us = default_us if metric.timestamp_ms is None else metric.timestamp_ms * 1000
            for target, result in zip(targets, outcome.devices, strict=True):
                mapped = target.series.get(name)
                if mapped is None:
                    continue
                if ts_us > MAX_TS_US:  # uint64 milliseconds reach past year 9999
                    result.problems.append(f"{where}: metric {name!r}: timestamp {ts_us} us")
                    continue
                number = metric_number(metric, datatype)
                if number is None or not math.isfinite(number * mapped[1]):
                    result.problems.append(
                        f"{where}: metric {name!r} must be a finite number, got "
                        f"{metric.value!r:.80} (datatype {datatype})"
                    )
                    continue
                out.add_id(mapped[0], ts_us, number * mapped[1])
                result.readings += 1
        return unknown_alias
