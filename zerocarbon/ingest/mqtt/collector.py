"""MQTT collector: one subscriber for the site's MQTT devices (aiomqtt over paho).

Subscribes to the topic filters of the site's mapping rules
(:class:`~zerocarbon.ingest.mqtt.mapping.MqttMapping`: exact topics, patterns, presets,
Sparkplug B edge nodes), turns each message into readings and hands them to the
pipeline; Sparkplug B rebirth requests are published, death certificates take devices
offline. A bad payload is logged (naming device and topic) and counted; it
never stops the collector. A lost broker connection is retried with backoff and counted.

Messages are taken in groups, one group per event-loop turn: paho's ``on_message``
only appends the message to an inbox and wakes the collector, which then reads what
else the socket already holds (paho's ``loop_read``, up to
:data:`MAX_MESSAGES_PER_TURN`), decodes the whole group into one
:class:`~zerocarbon.batch.ReadingBatch` and puts it into the pipeline once. So the
per-message costs are paho's packet parsing and the payload's decoding; the event loop
turn, the pipeline put and the PUBACK flush are paid once per group. (aiomqtt's own
message queue, with an ``asyncio`` task per message, is not used; aiomqtt still
connects, subscribes, reads and writes the socket and reports a lost connection.)

At QoS 1 a message is acknowledged (PUBACK) only once the pipeline has its readings in
the spool: a group's single ack sends the PUBACK of each of its messages, in the order
they came (MQTT 3.1.1 §4.6 asks PUBACKs in order), and groups are acknowledged in put
order. A group the gateway did not store — it died, a sink failed on it — is not
acknowledged at all; the broker sends it again when the session resumes (MQTT 3.1.1
§4.4: on reconnecting, not on the live connection). With ``[mqtt]
client_id`` set the session is persistent, so the broker also keeps what arrives while
the gateway is away (see deploy/mosquitto/zerocarbon.conf for the queue limits that
must not drop it).

Per device (:class:`MqttDeviceStats`): messages, readings, bad payloads and the arrival
time (injected clock) of the last message that gave readings. A device is online while
such a message is at most :data:`ONLINE_INTERVALS` times its ``interval_s`` old.
Changes of that state are sent to ``events`` as device events: online at the first
message with readings after silence, offline when a periodic check finds the last one
too old (or none came since start) by more than :data:`EVENT_GRACE_REAL_S` of real time,
or at once on a Sparkplug B death certificate.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass

import aiomqtt
import paho.mqtt.client as mqtt

from zerocarbon.batch import BatchBuilder, ReadingBatch, SeriesRegistry
from zerocarbon.clock import Clock
from zerocarbon.config import MqttConfig, MqttDevice, SiteConfig
from zerocarbon.ingest.events import DeviceEvent, DeviceEventKind, DeviceEventSink, discard_events
from zerocarbon.ingest.mqtt.mapping import MqttMapping
from zerocarbon.ingest.reading import Ack, BatchSink
from zerocarbon.tasks import cancel_and_wait, raise_if_cancelling

log = logging.getLogger(__name__)

LOG_INTERVAL_S = 60.0  # at most one warning per topic per this clock time [s]

# A device is online while its last message with readings is at most this many of its
# expected publish intervals (``interval_s``) old: one or two lost messages are normal.
ONLINE_INTERVALS = 3
# An offline *event* also needs the silence to outlast this much real time (N clock
# seconds at --speed N): at high speed a 50 ms stall of a busy event loop is minutes of
# clock time, and must not be reported as a device that went away and came back.
EVENT_GRACE_REAL_S = 1.0

# Most messages decoded into one batch per event-loop turn; more wait for the next turn,
# so a flood holds the loop (and the other collectors on it) for about 10 ms at most.
# The broker does not bound a group: Mosquitto 2.0 sent 1,000 unacknowledged QoS 1
# messages in a row to the bench's collector despite max_inflight_messages 100.
MAX_MESSAGES_PER_TURN = 256

NOT_UTF8_TOPIC = "(topic not valid UTF-8)"  # how such a topic is counted and logged


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


class _Inbox:
    """Messages paho has parsed and the collector has not taken yet.

    Used in the event loop's thread only: paho calls :meth:`on_message` from its
    ``loop_read``, which aiomqtt's socket reader and the collector call there.
    """

    __slots__ = ("_closed", "_waiter", "messages")

    def __init__(self) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    def on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        """paho's ``on_message`` callback: keep the message, wake the collector."""
        self.messages.append(message)
        self._wake()

    def close(self) -> None:
        """The connection is gone: wake the collector for good."""
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Until a message is there or the inbox is closed."""
        if self.messages or self._closed:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def take(self, limit: int) -> list[mqtt.MQTTMessage]:
        """The first ``limit`` messages kept so far, in arrival order (the rest stay)."""
        messages = self.messages
        if len(messages) <= limit:
            self.messages = []
            return messages
        self.messages = messages[limit:]
        return messages[:limit]


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
        site_timezone: str = "UTC",
        events: DeviceEventSink = discard_events,
    ) -> None:
        self._config = config if url is None else config.model_copy(update={"url": url})
        self.mapping = MqttMapping(devices, registry, site_timezone=site_timezone)
        self._outgoing: list[tuple[str, bytes]] = []  # Sparkplug B rebirth requests to send
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
        self._events = events
        self._reported_online: dict[str, bool] = {}  # device -> state last sent as an event
        self._dead: set[str] = set()  # Sparkplug B devices whose death came last
        self._started_s = clock.now_s()
        self._since_log: dict[str, int] = {}  # topic -> problems since its last log line
        self._last_log_s: dict[str, float] = {}  # topic -> clock time of its last line

    async def run(self) -> None:
        """Subscribe and collect until cancelled, reconnecting after failures."""
        watch = asyncio.create_task(self._watch_silence(), name="mqtt device silence")
        try:
            await self._collect()
        finally:
            await cancel_and_wait([watch])

    async def _watch_silence(self) -> None:
        """Report devices gone silent (a message with readings is over
        :data:`ONLINE_INTERVALS` x ``interval_s`` old, or never came): no message marks
        that, so a periodic check does, a few times per shortest silence limit. It
        waits in real time (the limit over the clock's speed) and reads the clock: it
        only looks at the time, never moves a clock a test drives by hand."""
        if not self.device_stats:
            return
        limit_s = min(d.offline_after_s for d in self.device_stats.values())
        period_s = min(max(limit_s / 4 / self._clock.speed, 0.01), 5.0)  # [real s]
        while True:
            await asyncio.sleep(period_s)
            self.report_states(self._clock.now_s())

    def report_states(self, now_s: float) -> None:
        """Send an online/offline event for each device whose state changed since the
        last one sent (a device never heard from is offline once its limit has passed
        since the collector started)."""
        grace_s = EVENT_GRACE_REAL_S * self._clock.speed
        for device_id, dstats in self.device_stats.items():
            online = dstats.online(now_s)
            if self._reported_online.get(device_id) is online:
                continue
            seen_s = self._started_s if dstats.last_seen_s is None else dstats.last_seen_s
            dead = dstats.last_seen_s is None and device_id in self._dead
            if not online and not dead and now_s - seen_s <= dstats.offline_after_s + grace_s:
                continue  # within the grace: not yet an event
            if online:
                detail = "messages with readings again"
            elif dstats.last_seen_s is None and device_id in self._dead:
                detail = "Sparkplug B death certificate"
            elif dstats.last_seen_s is None:
                detail = f"no message with readings since start ({dstats.offline_after_s:g} s)"
            else:
                detail = f"no message with readings for {now_s - dstats.last_seen_s:.0f} s"
            self._reported_online[device_id] = online
            kind = DeviceEventKind.ONLINE if online else DeviceEventKind.OFFLINE
            self._events(DeviceEvent(round(now_s * 1_000_000), device_id, kind, detail))

    async def _collect(self) -> None:
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
            username=cfg.username,
            password=cfg.password(os.environ),
        )
        paho = client._client  # aiomqtt has neither manual acks nor grouped messages; paho has
        manual = cfg.qos == 1
        paho.manual_ack_set(manual)  # before connecting: no message is acked automatically
        inbox = _Inbox()
        paho.on_message = inbox.on_message  # in place of aiomqtt's queue (a task per message)
        async with client:
            self.stats.connections += 1
            self.stats.connected = True
            for topic in self.mapping.subscriptions:
                await client.subscribe(topic, qos=cfg.qos)
            # aiomqtt's message iterator gets no message now: it ends only when the
            # connection is lost, raising the MqttError that says why
            lost = asyncio.ensure_future(anext(client.messages))
            lost.add_done_callback(lambda _: inbox.close())
            self.subscribed.set()
            log.info(
                "MQTT: subscribed to %d topics on %s", len(self.mapping.subscriptions), cfg.url
            )
            try:
                while True:
                    await inbox.wait()
                    self._read_available(paho, inbox)
                    # at most a turn's worth: aiomqtt's reader also fills the inbox (one
                    # message per readable socket) while a full pipeline holds the put
                    messages = inbox.take(MAX_MESSAGES_PER_TURN)
                    if messages:
                        batch, mids = self._decode_group(messages, manual)
                        await self._sink(batch, self._acker(paho, mids) if mids else None)
                        raise_if_cancelling()
                        outgoing, self._outgoing = self._outgoing, []
                        for topic, payload in outgoing:  # QoS 0, as Sparkplug B's NCMD
                            await client.publish(topic, payload, qos=0)
                        if inbox.messages:
                            await asyncio.sleep(0)  # a backlog: one group per loop turn
                    elif lost.done():
                        lost.result()  # raises the MqttError of the lost connection
                        raise aiomqtt.MqttError("Disconnected during message iteration")
            finally:
                lost.cancel()
                if lost.done() and not lost.cancelled():
                    lost.exception()  # seen: a stop that came after it is no error to report

    @staticmethod
    def _read_available(paho: mqtt.Client, inbox: _Inbox) -> None:
        """Let paho parse the messages the socket already holds into ``inbox`` (up to
        :data:`MAX_MESSAGES_PER_TURN`): one ``loop_read`` per packet, until one brings
        no message (the socket is drained, or it read another kind of packet)."""
        try:
            while len(inbox.messages) < MAX_MESSAGES_PER_TURN:
                before = len(inbox.messages)
                if paho.loop_read() != mqtt.MQTT_ERR_SUCCESS or len(inbox.messages) == before:
                    return
        except Exception as exc:  # as aiomqtt's reader: a read that fails ends the connection
            raise aiomqtt.MqttError(f"reading from the broker failed: {exc!r}") from exc

    def _decode_group(
        self, messages: list[mqtt.MQTTMessage], manual: bool
    ) -> tuple[ReadingBatch, list[int]]:
        """The readings of ``messages`` as one batch, and the message ids to acknowledge
        (their QoS 1 messages, in arrival order; none when acks are automatic)."""
        mids: list[int] = []
        for message in messages:
            try:
                topic = message.topic
            except UnicodeDecodeError:  # brokers refuse such topics (MQTT 3.1.1 §1.5.3)
                topic = NOT_UTF8_TOPIC
            self._handle(topic, bytes(message.payload))  # bytes(b) is b for bytes
            if manual and message.qos == 1:
                mids.append(message.mid)
        return self._builder.build(), mids

    def _acker(self, paho: mqtt.Client, mids: list[int]) -> Ack:
        """One ack for a group: the PUBACK of each of ``mids``, in order, on the
        connection they came on (a message of a connection since lost is redelivered on
        the next one, never acked there). paho queues them and aiomqtt's writer sends
        them in the next loop turn."""

        def ack() -> None:
            for mid in mids:
                paho.ack(mid, 1)
            self.stats.acked += len(mids)

        return ack

    def _handle(self, topic: str, payload: bytes) -> None:
        """Decode one message: append its readings to ``self._builder`` (which holds the
        group's readings so far), count them and its problems. Appends nothing for a
        message without readings; never raises for a bad message."""
        self.stats.messages += 1
        arrival_s = self._clock.now_s()
        rows_before = len(self._builder)
        try:
            outcome = self.mapping.decode(
                topic, payload, round(arrival_s * 1_000_000), self._builder
            )
        except Exception as exc:  # a decoder bug must cost one message, not the collector
            self._discard_rows_from(rows_before)  # anything half-appended
            log.exception("topic %r: payload not decoded", topic)
            self.stats.bad_payloads += 1
            problem = f"topic {topic!r}: {type(exc).__name__}: {exc}"
            self.stats.last_error = problem
            self._log_limited(topic, problem, self.stats.bad_payloads)
            return
        if outcome.unmapped is not None:
            self.stats.unknown_topics += 1
            self._log_limited(topic, outcome.unmapped, self.stats.unknown_topics)
        for result in outcome.devices:
            dstats = self.device_stats[result.device_id]
            dstats.messages += 1
            for problem in result.problems:
                self._bad(problem, dstats, topic)
            self.stats.readings += result.readings
            dstats.readings += result.readings
            if result.readings:
                dstats.last_seen_s = arrival_s
                self._dead.discard(result.device_id)
                if self._reported_online.get(result.device_id) is not True:
                    self.report_states(arrival_s)
        for device_id in outcome.offline:  # a Sparkplug B death certificate
            self.device_stats[device_id].last_seen_s = None
            self._dead.add(device_id)
            self.report_states(arrival_s)
        self._outgoing.extend(outcome.publish)

    def _discard_rows_from(self, start: int) -> None:
        """Drop the builder's rows from index ``start`` on, keeping those before it."""
        if len(self._builder) == start:
            return
        kept = self._builder.build()
        for series_id, ts_us, value, quality in zip(
            kept.series[:start].tolist(),
            kept.ts_us[:start].tolist(),
            kept.value[:start].tolist(),
            kept.quality[:start].tolist(),
            strict=True,
        ):
            self._builder.add_id(series_id, ts_us, value, quality)

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
    events: DeviceEventSink = discard_events,
) -> MqttCollector | None:
    """The site's MQTT collector, or None when it has no MQTT devices."""
    if site.mqtt is None or not site.mqtt_devices:
        return None
    return MqttCollector(
        site.mqtt,
        site.mqtt_devices,
        clock,
        sink,
        registry,
        url=url,
        site_timezone=site.site.timezone,
        events=events,
    )
