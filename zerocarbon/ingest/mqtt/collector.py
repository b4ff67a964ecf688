"""MQTT collector: one subscriber for the site's MQTT devices (aiomqtt).

Subscribes to each device's topic, turns each JSON payload into one
:class:`~zerocarbon.batch.ReadingBatch` and hands it to the pipeline. A bad payload is
logged (naming device and topic) and counted; it never stops the collector. A lost
broker connection is retried with backoff and counted.

At QoS 1 a message is acknowledged (PUBACK) only once the pipeline has its readings in
the spool, in the order the messages came (MQTT 3.1.1 §4.6 asks PUBACKs in order): a
message the gateway did not store — it died, its spool was full — is redelivered by
the broker. With ``[mqtt] client_id`` set the session is persistent, so the broker also
keeps what arrives while the gateway is away (see deploy/mosquitto/zerocarbon.conf for
the queue limits that must not drop it).

Per device (:class:`MqttDeviceStats`): messages, readings, bad payloads and the arrival
time (injected clock) of the last message that gave readings. A device is online while
such a message is at most :data:`ONLINE_INTERVALS` times its ``interval_s`` old.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import aiomqtt
import paho.mqtt.client as mqtt

from zerocarbon.batch import BatchBuilder, ReadingBatch, SeriesRegistry
from zerocarbon.clock import Clock
from zerocarbon.config import MqttConfig, MqttDevice, SiteConfig
from zerocarbon.ingest.mqtt.payload import PayloadError, field_series, parse_payload
from zerocarbon.ingest.reading import Ack, BatchSink
from zerocarbon.tasks import raise_if_cancelling

log = logging.getLogger(__name__)

LOG_INTERVAL_S = 60.0  # at most one warning per topic per this clock time [s]

# A device is online while its last message with readings is at most this many of its
# expected publish intervals (``interval_s``) old: one or two lost messages are normal.
ONLINE_INTERVALS = 3


@dataclass(slots=True)
class MqttStats:
    messages: int = 0
    readings: int = 0
    bad_payloads: int = 0
    unknown_topics: int = 0
    connections: int = 0
    connection_failures: int = 0
    connected: bool = False
    last_error: str = ""
    acked: int = 0  # PUBACKs sent after the readings were spooled (QoS 1)


@dataclass(slots=True)
class MqttDeviceStats:
    """Messages of one device's topic; read by monitoring and tests."""

    offline_after_s: float  # ONLINE_INTERVALS x the device's interval_s [s]
    messages: int = 0
    readings: int = 0
    bad_payloads: int = 0  # problems found in its payloads (one message can have several)
    last_seen_s: float | None = None  # arrival (clock time) of the last message with readings
    last_error: str = ""

    def online(self, now_s: float) -> bool:
        """Whether a message with readings came within ``offline_after_s`` of ``now_s``."""
        return self.last_seen_s is not None and now_s - self.last_seen_s <= self.offline_after_s


class MqttCollector:
    """Series ids of every device's JSON keys are resolved in ``registry`` here, once."""

    def __init__(
        self,
        config: MqttConfig,
        devices: tuple[MqttDevice, ...],
        clock: Clock,
        sink: BatchSink,
        registry: SeriesRegistry,
        *,
        url: str | None = None,
        max_backoff_s: float = 10.0,
        timeout_s: float = 10.0,
    ) -> None:
        self._config = config if url is None else config.model_copy(update={"url": url})
        self._by_topic = {d.topic: d for d in devices}
        self._series = {d.topic: field_series(d, registry) for d in devices}
        self._builder = BatchBuilder(registry)
        self._clock = clock
        self._sink = sink
        self._max_backoff_s = max_backoff_s
        self._timeout_s = timeout_s  # for each broker operation (subscribe, disconnect)
        self.stats = MqttStats()
        self.device_stats = {
            d.id: MqttDeviceStats(offline_after_s=ONLINE_INTERVALS * d.interval_s) for d in devices
        }
        self.subscribed = asyncio.Event()
        self._since_log: dict[str, int] = {}  # topic -> problems since its last log line
        self._last_log_s: dict[str, float] = {}  # topic -> clock time of its last line

    async def run(self) -> None:
        """Subscribe and collect until cancelled, reconnecting after failures."""
        backoff_s = 0.2
        while True:
            try:
                await self._session()
            except aiomqtt.MqttError as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # aiomqtt's disconnect can time out while a cancellation unwinds and
                    # raise MqttError in its place: the stop request must still win
                    raise asyncio.CancelledError from exc
                self.stats.connection_failures += 1
                self.stats.connected = False
                self.subscribed.clear()
                self.stats.last_error = str(exc)
                log.warning(
                    "MQTT broker %s: %s; retrying in %.1f s", self._config.url, exc, backoff_s
                )
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, self._max_backoff_s)
            else:
                backoff_s = 0.2

    async def _session(self) -> None:
        cfg = self._config
        client = aiomqtt.Client(
            cfg.host,
            port=cfg.port,
            identifier=cfg.client_id,
            clean_session=cfg.client_id is None,
            timeout=self._timeout_s,
        )
        paho = client._client  # aiomqtt has no manual-ack option; paho has
        manual = cfg.qos == 1
        paho.manual_ack_set(manual)  # before connecting: no message is acked automatically
        async with client:
            self.stats.connections += 1
            self.stats.connected = True
            for topic in self._by_topic:
                await client.subscribe(topic, qos=cfg.qos)
            self.subscribed.set()
            log.info("MQTT: subscribed to %d topics on %s", len(self._by_topic), cfg.url)
            async for message in client.messages:
                ack = None
                if manual and message.qos == 1:
                    ack = self._acker(paho, message.mid)
                await self._sink(self._handle(str(message.topic), message.payload), ack)
                raise_if_cancelling()

    def _acker(self, paho: mqtt.Client, mid: int) -> Ack:
        """The PUBACK of message ``mid`` on the connection it came on (a message of a
        connection since lost is redelivered on the next one, never acked there)."""

        def ack() -> None:
            paho.ack(mid, 1)
            self.stats.acked += 1

        return ack

    def _handle(self, topic: str, payload: object) -> ReadingBatch:
        """The readings of one message (an empty batch when it holds none)."""
        self.stats.messages += 1
        device = self._by_topic.get(topic)
        if device is None:
            self.stats.unknown_topics += 1
            self._log_limited(
                topic, f"topic {topic!r}: no device is mapped to it", self.stats.unknown_topics
            )
            return self._builder.build()
        if not isinstance(payload, bytes | bytearray):
            payload = str(payload).encode()
        dstats = self.device_stats[device.id]
        dstats.messages += 1
        arrival_s = self._clock.now_s()
        arrival_us = round(arrival_s * 1_000_000)
        try:
            count, problems = parse_payload(
                device, bytes(payload), arrival_us, self._series[topic], self._builder
            )
        except PayloadError as exc:
            self._bad(str(exc), dstats, topic)
            return self._builder.build()
        except Exception as exc:  # a parser bug must cost one message, not the collector
            self._builder.build()  # discard anything half-appended
            log.exception("device %r topic %r: payload not parsed", device.id, topic)
            self._bad(
                f"device {device.id!r} topic {topic!r}: {type(exc).__name__}: {exc}", dstats, topic
            )
            return self._builder.build()
        for problem in problems:
            self._bad(problem, dstats, topic)
        self.stats.readings += count
        dstats.readings += count
        if count:
            dstats.last_seen_s = arrival_s
        return self._builder.build()

    def _bad(self, problem: str, device: MqttDeviceStats, topic: str) -> None:
        device.bad_payloads += 1
        device.last_error = problem
        self.stats.bad_payloads += 1
        self.stats.last_error = problem
        self._log_limited(topic, problem, device.bad_payloads)

    def _log_limited(self, topic: str, problem: str, total: int) -> None:
        """One warning per topic per :data:`LOG_INTERVAL_S` of clock time, with how many
        problems that topic had since its last line: never a flood, never silence."""
        now_s = self._clock.now_s()
        since = self._since_log.get(topic, 0) + 1
        last_s = self._last_log_s.get(topic)
        if last_s is not None and now_s - last_s < LOG_INTERVAL_S:
            self._since_log[topic] = since
            return
        self._since_log[topic] = 0
        self._last_log_s[topic] = now_s
        log.warning("%s (%d since the last report; %d in all)", problem, since, total)


def mqtt_collector(
    site: SiteConfig,
    clock: Clock,
    sink: BatchSink,
    registry: SeriesRegistry,
    *,
    url: str | None = None,
) -> MqttCollector | None:
    """The site's MQTT collector, or None when it has no MQTT devices."""
    if site.mqtt is None or not site.mqtt_devices:
        return None
    return MqttCollector(site.mqtt, site.mqtt_devices, clock, sink, registry, url=url)
