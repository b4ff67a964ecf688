"""Publishes the simulated MQTT devices' JSON payloads to a broker.

Every ``simulation.publish_interval_s`` simulated seconds (on a grid aligned to the
POSIX epoch) each MQTT device publishes ``{json_key: value, ..., ts_field: ISO time}``
on its topic: the keys of its ``fields`` table (metric -> every JSON key that names
it) and, when ``ts_field`` is set, the time the values stand for (ISO 8601 UTC with
microseconds). The QoS is ``site.mqtt.qos``.

Faults (:class:`~.faults.FaultPlan`, optional): a device in a gap is not published; a
late message is held back and published at its release time after that cycle's live
messages (held messages still waiting when the publisher stops are dropped); a
duplicated message is published twice in a row; a skewed message carries a timestamp
off the plant's time, a spiked one a gauge multiplied, a malformed one broken JSON.
Counter faults are already in the values the source gives.

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
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlparse

import aiomqtt

from zerocarbon.clock import Clock
from zerocarbon.config import MqttDevice, SiteConfig
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
        return [d.topic for d in self.devices]

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
        client = aiomqtt.Client(
            self.host, port=self.port, identifier=self.identifier, timeout=self.publish_timeout_s
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

    async def _watch_connection(self, client: aiomqtt.Client) -> None:
        """Raise :class:`aiomqtt.MqttError` as soon as the connection drops.

        Nothing is subscribed, so the message iterator only ever ends by raising on a
        disconnection; that ends the cycle at once (instead of at a publish timeout).
        """
        async for _message in client.messages:
            pass
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
        if self.sync is not None:
            self.sync()
        ts_s = self.source.now_s
        messages = [  # all taken at one plant time, before any await lets the plant move
            (
                d,
                json.dumps(build_payload(d, self.source.values(d.id), ts_s), separators=(",", ":")),
            )
            for d in self.devices
        ]
        for topic, payload in self._apply_faults(messages, ts_s):
            await client.publish(
                topic,
                payload,
                qos=self.qos,
                timeout=self.publish_timeout_s,
            )
            self.stats.published += 1
            raise_if_cancelling()  # aiomqtt's wait for the PUBACK may swallow a stop

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
            if skew_s and device.ts_field is not None:
                doc[device.ts_field] = format_ts(ts_s + skew_s)
                self.stats.skewed += 1
            for spike in spikes:
                for key in device.fields:
                    if device.field_metric(key) == spike.metric and key in doc:
                        doc[key] = (
                            spike.value if spike.value is not None else spike.factor * doc[key]
                        )
                faults.mark_served(device.id, FaultKind.SPIKE, ts_s)
                self.stats.spiked += 1
            payload = json.dumps(doc, separators=(",", ":"))
        kind = faults.malformed(device.id, ts_s)
        if kind is not None:
            self.stats.malformed += 1
            return malformed_payload(kind, payload)
        return payload
