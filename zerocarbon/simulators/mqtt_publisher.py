"""Publishes the simulated MQTT devices' payloads to a broker.

Every ``simulation.publish_interval_s`` simulated seconds (on a grid aligned to the
POSIX epoch) each MQTT device publishes its values in the form its site-file entry
reads them, so each form is decoded against its simulator:

* ``fields``: ``{json_key: value, ..., ts_field: ISO time}`` on its topic: the keys of
  its ``fields`` table and, when ``ts_field`` is set, the time the values stand for
  (ISO 8601 UTC with microseconds);
* ``rules`` and ``preset``: one JSON document per topic with each value (divided by its
  rule's ``scale``) at its path (:func:`json_messages`); ``{device}`` and ``+`` levels
  become the device id, a last ``#`` is dropped. A Tasmota ``Time`` is the local time
  of the device's zone without an offset, as Tasmota sends it; Shelly documents have no
  time, as Shelly's status topics;
* ``sparkplug``: one simulated edge node per (group, edge node) (:class:`SparkplugEdge`):
  NBIRTH and DBIRTH (names, aliases, datatypes, values) after each connect, NDATA and
  DDATA with aliases and ``seq`` every cycle, a new birth when an NCMD asks for a
  rebirth, and NDEATH as the connection's MQTT will (of the first edge node).

The QoS is ``site.mqtt.qos`` (Sparkplug B: QoS 0, its NDEATH will QoS 1).

Faults (:class:`~.faults.FaultPlan`, optional): a device in a gap is not published; a
late message is held back and published at its release time after that cycle's live
messages (held messages still waiting when the publisher stops are dropped); a
duplicated message is published twice in a row; a skewed message carries a timestamp
off the plant's time, a spiked one a gauge multiplied, a malformed one broken JSON.
Counter faults are already in the values the source gives. Faults apply to JSON
messages; a Sparkplug B edge node can lose messages (:meth:`SparkplugEdge.lose_messages`:
a gap in ``seq``).

A broker that goes away is retried with exponential backoff (wall time: it is about the
network, not the plant); failures are counted and logged, never raised. Cycles that
cannot be kept (a slow broker, a very fast clock) are skipped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

import aiomqtt

from zerocarbon.clock import Clock
from zerocarbon.config import DEVICE_CAPTURE, MqttDevice, SiteConfig, split_json_path
from zerocarbon.ingest.mqtt.sparkplug import (
    BD_SEQ_METRIC,
    REBIRTH_METRIC,
    DataType,
    Metric,
    Payload,
    SparkplugError,
    decode_payload,
    encode_payload,
)
from zerocarbon.simulators.faults import FaultKind, FaultPlan, malformed_payload
from zerocarbon.tasks import raise_if_cancelling

log = logging.getLogger(__name__)


class ValueSource(Protocol):
    """What the publisher reads: a plant's time and its devices' values."""

    @property
    def now_s(self) -> float: ...

    def values(self, device_id: str) -> dict[str, float]: ...


def format_ts(ts_s: float) -> str:
    """ISO 8601 UTC with microseconds, e.g. ``2026-06-21T03:00:05.123456+00:00``."""
    return datetime.fromtimestamp(ts_s, UTC).isoformat(timespec="microseconds")


def build_payload(device: MqttDevice, values: Mapping[str, float], ts_s: float) -> dict[str, Any]:
    """The JSON object ``device`` publishes for ``values`` (metric -> value) at ``ts_s``.

    Production counts are whole numbers and are published as integers.
    """
    payload: dict[str, Any] = {}
    for key in device.fields:
        metric = device.field_metric(key)
        if metric not in values:
            continue
        value = values[metric]
        payload[key] = int(value) if metric == "production_count_units" else value
    if device.ts_field is not None:
        payload[device.ts_field] = format_ts(ts_s)
    return payload


def publish_topic(topic_filter: str, device_id: str) -> str:
    """The topic a simulated device publishes to for one of its topic filters:
    ``{device}`` and ``+`` levels are its id, a last ``#`` level is dropped."""
    levels = topic_filter.split("/")
    if levels[-1] == "#":
        levels.pop()
    return "/".join(device_id if lv in ("+", DEVICE_CAPTURE) else lv for lv in levels)


def _put(doc: dict[str, Any], steps: Sequence[str | int], value: object) -> None:
    """Set ``value`` at a JSON path, making the objects and lists on the way (a list is
    padded with empty objects up to the index)."""
    node: Any = doc
    for step, after in zip(steps, [*steps[1:], None], strict=True):
        last = after is None
        empty: object = None if last else ({} if isinstance(after, str) else [])
        if isinstance(step, str):
            if last:
                node[step] = value
            else:
                node = node.setdefault(step, empty)
        else:
            while len(node) <= step:
                node.append({} if isinstance(after, str) else [] if after is not None else None)
            if last:
                node[step] = value
            else:
                node = node[step]


def _local_iso(ts_s: float, zone: ZoneInfo) -> str:
    """Local time without an offset, to the second, as Tasmota's ``Time``."""
    return datetime.fromtimestamp(ts_s, zone).replace(tzinfo=None).isoformat(timespec="seconds")


def json_messages(
    device: MqttDevice, values: Mapping[str, float], ts_s: float, site_timezone: str = "UTC"
) -> list[tuple[str, dict[str, Any]]]:
    """The (topic, JSON object) messages ``device`` publishes for ``values`` (metric ->
    value, in our units) at ``ts_s``: :func:`build_payload` on its topic for ``fields``,
    one document per topic for rules and presets (each value / its rule's ``scale``)."""
    if not device.uses_paths:
        return [(device.topic, build_payload(device, values, ts_s))]
    docs: dict[str, dict[str, Any]] = {}
    for rule in device.message_rules():
        topic = publish_topic(rule.topic or "", device.id)
        doc = docs.setdefault(topic, _preset_extras(device, topic))
        if rule.metric in values and rule.path is not None:
            raw = values[rule.metric] / rule.scale
            _put(doc, split_json_path(rule.path), int(raw) if rule.type is not None else raw)
    ts_path = device.ts_path()
    if ts_path is not None:
        zone = device.local_time_zone(site_timezone)
        stamp = format_ts(ts_s) if zone is None else _local_iso(ts_s, ZoneInfo(zone))
        for doc in docs.values():
            _put(doc, split_json_path(ts_path), stamp)
    if device.preset == "tasmota":
        for doc in docs.values():
            energy = doc.get("ENERGY", {})
            if energy.get("Voltage"):
                energy["Current"] = round(energy.get("Power", 0.0) / energy["Voltage"], 3)
    return list(docs.items())


def _preset_extras(device: MqttDevice, topic: str) -> dict[str, Any]:
    """Keys of a preset's real payloads that carry no reading (so the decoder meets
    documents of their real shape): Shelly's component ``id`` and switch ``output``."""
    if device.preset in ("shelly", "shelly_pro3em"):
        extras: dict[str, Any] = {"id": 0}
        if topic.endswith("/switch:0"):
            extras.update(source="init", output=True)
        return extras
    return {}


class SparkplugEdge:
    """A simulated Sparkplug B edge node (Sparkplug 3.0.0 §6.4): the site's devices with
    this (group, edge node), their metrics as Double with aliases numbered from 1.

    ``seq`` counts every NBIRTH (0), DBIRTH, NDATA and DDATA modulo 256; ``bd_seq`` the
    MQTT sessions (one more at each connect, carried by NBIRTH and the NDEATH will).
    """

    def __init__(self, group: str, edge_node: str, devices: Sequence[MqttDevice]) -> None:
        self.group = group
        self.edge_node = edge_node
        self.devices = tuple(devices)
        self.seq = 0
        self.bd_seq = -1
        self.births = 0
        self._alias: dict[tuple[str | None, str], int] = {}
        for device in self.devices:
            assert device.sparkplug is not None
            for rule in device.rules:
                key = (device.sparkplug.device, rule.name or "")
                self._alias.setdefault(key, len(self._alias) + 1)

    def topic(self, kind: str, device: str | None = None) -> str:
        base = f"spBv1.0/{self.group}/{kind}/{self.edge_node}"
        return base if device is None else f"{base}/{device}"

    def new_session(self) -> tuple[str, bytes]:
        """Start an MQTT session: the NDEATH will (topic, payload) it connects with."""
        self.bd_seq = (self.bd_seq + 1) % 256
        bd = Metric(BD_SEQ_METRIC, None, None, DataType.UINT64, self.bd_seq)
        return self.topic("NDEATH"), encode_payload(Payload(None, None, (bd,)))

    def _next_seq(self) -> int:
        seq = self.seq
        self.seq = (seq + 1) % 256
        return seq

    def lose_messages(self, count: int = 1) -> None:
        """Fault: ``count`` messages the host never gets (a gap in ``seq``)."""
        self.seq = (self.seq + count) % 256

    def _metrics(
        self, values_of: Callable[[str], Mapping[str, float]], ts_ms: int, birth: bool
    ) -> dict[str | None, list[Metric]]:
        by_device: dict[str | None, list[Metric]] = {}
        for device in self.devices:
            assert device.sparkplug is not None
            sp_device = device.sparkplug.device
            values = values_of(device.id)
            metrics = by_device.setdefault(sp_device, [])
            for rule in device.rules:
                if rule.metric not in values or rule.name is None:
                    continue
                alias = self._alias[(sp_device, rule.name)]
                metrics.append(
                    Metric(
                        rule.name if birth else None,
                        alias,
                        ts_ms,
                        DataType.DOUBLE,
                        values[rule.metric] / rule.scale,
                    )
                )
        return by_device

    def birth(
        self, values_of: Callable[[str], Mapping[str, float]], ts_ms: int
    ) -> list[tuple[str, bytes]]:
        """NBIRTH (``seq`` 0) and a DBIRTH per device, with names, aliases and values."""
        self.births += 1
        self.seq = 0
        by_device = self._metrics(values_of, ts_ms, birth=True)
        node = [
            Metric(BD_SEQ_METRIC, None, ts_ms, DataType.UINT64, max(self.bd_seq, 0)),
            Metric(REBIRTH_METRIC, None, ts_ms, DataType.BOOLEAN, False),
            *by_device.pop(None, []),
        ]
        out = [
            (self.topic("NBIRTH"), encode_payload(Payload(ts_ms, self._next_seq(), tuple(node))))
        ]
        for sp_device, metrics in by_device.items():
            payload = Payload(ts_ms, self._next_seq(), tuple(metrics))
            out.append((self.topic("DBIRTH", sp_device), encode_payload(payload)))
        return out

    def data(
        self, values_of: Callable[[str], Mapping[str, float]], ts_ms: int
    ) -> list[tuple[str, bytes]]:
        """NDATA (when the node has metrics of its own) and a DDATA per device."""
        out: list[tuple[str, bytes]] = []
        for sp_device, metrics in self._metrics(values_of, ts_ms, birth=False).items():
            if not metrics:
                continue
            kind = "NDATA" if sp_device is None else "DDATA"
            payload = Payload(ts_ms, self._next_seq(), tuple(metrics))
            out.append((self.topic(kind, sp_device), encode_payload(payload)))
        return out

    def wants_rebirth(self, topic: str, payload: bytes) -> bool:
        """Whether a message is an NCMD to this node with ``Node Control/Rebirth`` true."""
        if topic != self.topic("NCMD"):
            return False
        try:
            message = decode_payload(payload)
        except SparkplugError:
            return False
        return any(m.name == REBIRTH_METRIC and m.value is True for m in message.metrics)


@dataclass(slots=True)
class PublisherStats:
    published: int = 0  # messages accepted by the broker (PUBACK at QoS 1)
    connects: int = 0  # successful connections
    failures: int = 0  # failed connects and lost connections
    skipped_cycles: int = 0  # publish cycles not kept
    withheld: int = 0  # messages not published for a gap (fault)
    delayed: int = 0  # messages held back to be published late (fault)
    duplicated: int = 0  # messages published a second time (fault)
    skewed: int = 0  # messages stamped off the plant's time (fault)
    spiked: int = 0  # messages with a spiked gauge (fault)
    malformed: int = 0  # messages replaced by malformed JSON (fault)
    rebirths: int = 0  # Sparkplug B births sent because an NCMD asked for them


class MqttPublisher:
    """Publishes ``site``'s MQTT devices from ``source`` on ``clock``'s schedule.

    Parameters
    ----------
    site : SiteConfig
        Devices, QoS and (unless ``url`` is given) the broker URL.
    source : ValueSource
        The plant (its ``now_s`` stamps the payloads).
    clock : Clock
        Simulated time; the publish interval is in its seconds.
    url : str, optional
        ``mqtt://host:port`` overriding ``site.mqtt.url``.
    sync : callable, optional
        Called before each cycle to bring ``source`` up to the clock.
    reconnect_min_s, reconnect_max_s : float
        Backoff between connection attempts [wall s], doubling from min to max.
    publish_timeout_s : float
        Wall time a QoS 1 publish may wait for its PUBACK before the connection is
        considered lost [s].
    faults : FaultPlan, optional
        Gaps, late and duplicate messages to inject.
    """

    def __init__(
        self,
        site: SiteConfig,
        source: ValueSource,
        clock: Clock,
        *,
        url: str | None = None,
        sync: Callable[[], None] | None = None,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        publish_timeout_s: float = 5.0,
        faults: FaultPlan | None = None,
    ) -> None:
        self.devices: tuple[MqttDevice, ...] = site.mqtt_devices
        # the site's broker login, if it has one (a simulated device logs in like a real one)
        self.username = site.mqtt.username if site.mqtt is not None else None
        self.password = site.mqtt.password(os.environ) if site.mqtt is not None else None
        self.json_devices = tuple(d for d in self.devices if d.sparkplug is None)
        self.site_timezone = site.site.timezone
        edges: dict[tuple[str, str], list[MqttDevice]] = {}
        for d in self.devices:
            if d.sparkplug is not None:
                edges.setdefault((d.sparkplug.group, d.sparkplug.edge_node), []).append(d)
        self.edges = {key: SparkplugEdge(*key, devices) for key, devices in edges.items()}
        self._as_topic: dict[tuple[str, str], MqttDevice] = {}  # device on one of its topics
        self._publishing = asyncio.Lock()  # a rebirth does not cut into a cycle's seq
        self.url = url or (site.mqtt.url if site.mqtt is not None else "mqtt://127.0.0.1:1883")
        parsed = urlparse(self.url)
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 1883
        self.qos = site.mqtt.qos if site.mqtt is not None else 1
        self.interval_s = site.simulation.publish_interval_s
        self.source = source
        self.clock = clock
        self.sync = sync
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        self.publish_timeout_s = publish_timeout_s
        self.identifier = f"zerocarbon-sim-{uuid.uuid4().hex[:12]}"
        self.stats = PublisherStats()
        self.faults = faults
        self._held: list[tuple[float, str, str]] = []  # (release_s, topic, payload)

    @property
    def topics(self) -> list[str]:
        """The topics of the JSON devices' messages."""
        return [
            topic
            for d in self.json_devices
            for topic in dict.fromkeys(
                publish_topic(r.topic or "", d.id) for r in d.message_rules()
            )
        ]

    async def run(self) -> None:
        """Publish until cancelled; connection trouble is retried, never raised."""
        if not self.devices:
            return
        backoff_s = self.reconnect_min_s
        while True:
            connected = False
            try:
                async with self._connect() as client:
                    connected = True
                    self.stats.connects += 1
                    backoff_s = self.reconnect_min_s
                    log.info("simulator publishing to %s as %s", self.url, self.identifier)
                    await self._start_edges(client)
                    async with asyncio.TaskGroup() as tasks:
                        tasks.create_task(self._watch_connection(client))
                        tasks.create_task(self._publish_forever(client))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let the broker take the simulator down
                while isinstance(exc, ExceptionGroup) and exc.exceptions:
                    exc = exc.exceptions[0]
                self.stats.failures += 1
                what = "lost the connection to" if connected else "cannot connect to"
                log.warning(
                    "simulator %s MQTT broker %s (%s); retrying in %.1f s",
                    what,
                    self.url,
                    exc.__cause__ or exc,
                    backoff_s,
                )
            await asyncio.sleep(backoff_s)
            backoff_s = min(self.reconnect_max_s, backoff_s * 2.0)

    @contextlib.asynccontextmanager
    async def _connect(self) -> AsyncIterator[aiomqtt.Client]:
        """``async with aiomqtt.Client(...)``, safe against cancellation mid-connect.

        aiomqtt 2.5 leaves the socket open (and an exception nobody retrieves) when
        ``__aenter__`` is cancelled; here the attempt is allowed to finish (shielded,
        within ``publish_timeout_s``) and is then closed before the cancellation goes on.
        """
        will = None
        for edge in self.edges.values():
            topic, payload = edge.new_session()
            if will is None:  # MQTT has one will a connection: the first edge node's
                will = aiomqtt.Will(topic, payload, qos=1)
        client = aiomqtt.Client(
            self.host,
            port=self.port,
            identifier=self.identifier,
            timeout=self.publish_timeout_s,
            will=will,
            username=self.username,
            password=self.password,
        )
        entering = asyncio.ensure_future(client.__aenter__())
        try:
            await asyncio.shield(entering)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.publish_timeout_s):
                    await entering
                    await client.__aexit__(None, None, None)
            raise
        try:
            yield client
        except BaseException as exc:
            # aiomqtt's disconnect can time out (MqttError) under load; raised here it
            # would replace ``exc``, and a CancelledError turned into an MqttError makes
            # run() reconnect instead of stopping
            with contextlib.suppress(aiomqtt.MqttError):
                await client.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        await client.__aexit__(None, None, None)

    async def _start_edges(self, client: aiomqtt.Client) -> None:
        """Subscribe each edge node's NCMD topic and publish its births."""
        for edge in self.edges.values():
            await client.subscribe(edge.topic("NCMD"), qos=0)
        for edge in self.edges.values():
            await self._birth(client, edge)

    async def _birth(self, client: aiomqtt.Client, edge: SparkplugEdge) -> None:
        async with self._publishing:
            if self.sync is not None:
                self.sync()
            ts_ms = round(self.source.now_s * 1000)
            for topic, payload in edge.birth(self.source.values, ts_ms):
                await self._send(client, topic, payload, qos=0)

    async def _send(
        self, client: aiomqtt.Client, topic: str, payload: str | bytes, *, qos: int
    ) -> None:
        await client.publish(topic, payload, qos=qos, timeout=self.publish_timeout_s)
        self.stats.published += 1
        raise_if_cancelling()  # aiomqtt's wait for the PUBACK may swallow a stop

    async def _watch_connection(self, client: aiomqtt.Client) -> None:
        """Answer rebirth requests; raise :class:`aiomqtt.MqttError` as soon as the
        connection drops.

        Only the edge nodes' NCMD topics are subscribed, so the message iterator
        otherwise only ends by raising on a disconnection; that ends the cycle at once
        (instead of at a publish timeout).
        """
        async for message in client.messages:
            topic = str(message.topic)
            payload = message.payload
            for edge in self.edges.values():
                if isinstance(payload, bytes) and edge.wants_rebirth(topic, payload):
                    self.stats.rebirths += 1
                    await self._birth(client, edge)
        raise aiomqtt.MqttError("message iteration ended")

    async def _publish_forever(self, client: aiomqtt.Client) -> None:
        interval = self.interval_s
        next_s = math.floor(self.clock.now_s() / interval) * interval + interval
        while True:
            await self.clock.sleep(next_s - self.clock.now_s())
            await self.publish_once(client)
            next_s += interval
            now_s = self.clock.now_s()
            if next_s <= now_s:
                missed = math.floor((now_s - next_s) / interval) + 1
                self.stats.skipped_cycles += missed
                next_s += missed * interval

    async def publish_once(self, client: aiomqtt.Client) -> None:
        """Publish every device's current payload once."""
        async with self._publishing:
            if self.sync is not None:
                self.sync()
            ts_s = self.source.now_s
            messages = [  # all taken at one plant time, before any await lets the plant move
                (self._on_topic(d, topic), json.dumps(doc, separators=(",", ":")))
                for d in self.json_devices
                for topic, doc in json_messages(
                    d, self.source.values(d.id), ts_s, self.site_timezone
                )
            ]
            ts_ms = round(ts_s * 1000)
            sparkplug = [
                m for edge in self.edges.values() for m in edge.data(self.source.values, ts_ms)
            ]
            for topic, payload in self._apply_faults(messages, ts_s):
                await self._send(client, topic, payload, qos=self.qos)
            for topic, data in sparkplug:
                await self._send(client, topic, data, qos=0)

    def _on_topic(self, device: MqttDevice, topic: str) -> MqttDevice:
        """``device`` with ``topic`` as its topic: what the faults see of one message."""
        if topic == device.topic:
            return device
        key = (device.id, topic)
        copy = self._as_topic.get(key)
        if copy is None:
            copy = self._as_topic[key] = device.model_copy(update={"topic": topic})
        return copy

    def _apply_faults(
        self, messages: list[tuple[MqttDevice, str]], ts_s: float
    ) -> list[tuple[str, str]]:
        """The (topic, payload) pairs to publish now, in order."""
        faults = self.faults
        if faults is None:
            return [(d.topic, payload) for d, payload in messages]
        out: list[tuple[str, str]] = []
        for device, clean in messages:
            if faults.silent(device.id, ts_s):
                self.stats.withheld += 1
                continue
            payload = self._distort(faults, device, clean, ts_s)
            release_s = faults.late_release_s(device.id, ts_s)
            if release_s is not None:
                self._held.append((release_s, device.topic, payload))
                self.stats.delayed += 1
                continue
            out.append((device.topic, payload))
            if faults.duplicate(device.id, ts_s):
                out.append((device.topic, payload))
                self.stats.duplicated += 1
        due = [(topic, payload) for release_s, topic, payload in self._held if release_s <= ts_s]
        if due:
            self._held = [item for item in self._held if item[0] > ts_s]
            out.extend(faults.shuffled(due, ts_s))
        return out

    def _distort(self, faults: FaultPlan, device: MqttDevice, payload: str, ts_s: float) -> str:
        """``payload`` (stamped ``ts_s``) with the device's clock skew and due spikes, or
        replaced by malformed JSON."""
        skew_s = faults.skew_s(device.id, ts_s)
        spikes = faults.due_spikes(device.id, ts_s)
        if skew_s or spikes:
            doc = json.loads(payload)
            ts_path = device.ts_path()
            if skew_s and ts_path is not None:
                if _replace_at(doc, _steps(device, ts_path), lambda _: format_ts(ts_s + skew_s)):
                    self.stats.skewed += 1
            for spike in spikes:
                served = False
                for key in device.fields:
                    if device.field_metric(key) == spike.metric:
                        served |= _replace_at(
                            doc,
                            _steps(device, key),
                            lambda v, spike=spike: (  # type: ignore[misc]
                                spike.value if spike.value is not None else spike.factor * v
                            ),
                        )
                # a preset's metric may travel on another of its topics: served only
                # where the message carries it, so the ground truth marks only what was sent
                if served:
                    faults.mark_served(device.id, FaultKind.SPIKE, ts_s)
                    self.stats.spiked += 1
            payload = json.dumps(doc, separators=(",", ":"))
        kind = faults.malformed(device.id, ts_s)
        if kind is not None:
            self.stats.malformed += 1
            return malformed_payload(kind, payload)
        return payload


def _steps(device: MqttDevice, key: str) -> tuple[str | int, ...]:
    """The JSON path of a device's key: dotted paths for rules and presets, the literal
    top-level key for a ``fields`` device (a key may contain a dot there)."""
    return split_json_path(key) if device.uses_paths else (key,)


def _replace_at(doc: Any, steps: tuple[str | int, ...], new: Callable[[Any], Any]) -> bool:
    """Replace the value at ``steps`` in ``doc`` by ``new(value)``; False if absent."""
    node = doc
    for step in steps[:-1]:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return False
    last = steps[-1]
    try:
        node[last] = new(node[last])
    except (KeyError, IndexError, TypeError):
        return False
    return True
