"""DL/T 645-2007 collector: the meters on one RS-485 line.

The line is reached through a transparent gateway, which passes DL/T 645-2007 frames
between a TCP connection and the line, or on a local serial port
(:mod:`zerocarbon.ingest.dlt645.link`). A line carries one exchange at a time: requests
on a link go in sequence,
one read-data request (C = 0x11) per data identifier, each answered before the next is
sent. Links run in parallel (one collector each).

Each meter is polled on its own ``poll_interval_s`` in the injected clock's time; a
cycle that is already late when it comes up is skipped and counted, never queued. A
poll reads the meter's identifiers and hands their values to ``sink`` as one
:class:`~zerocarbon.batch.ReadingBatch`, each value stamped with the middle of its
exchange. A failure is typed (:class:`FailureKind`), counted and marks the meter
unavailable; it is never fatal. A request that times out or gets a corrupt frame is
sent again up to ``retries`` times; a refused connection is tried again after a
back-off that doubles from ``reconnect_min_s`` to ``reconnect_max_s`` (a serial port
that is missing or busy is treated the same way).

Timeouts are real seconds (the line does not run faster with a simulated clock);
intervals and back-off are the clock's seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from zerocarbon.batch import BatchBuilder, SeriesRegistry
from zerocarbon.clock import Clock
from zerocarbon.ingest.dlt645.frame import (
    AbnormalReplyError,
    DataId,
    Dlt645Error,
    FrameError,
    UnexpectedReplyError,
    address_to_wire,
    data_item,
    decode_read_reply,
    encode_read_request,
    parse_frame,
)
from zerocarbon.ingest.dlt645.link import Dlt645Link
from zerocarbon.ingest.events import DeviceEvent, DeviceEventKind, DeviceEventSink, discard_events
from zerocarbon.ingest.reading import BatchSink
from zerocarbon.metering.dlt645 import DEFAULT_IDENTIFIERS, metric_of
from zerocarbon.tasks import raise_if_cancelling

__all__ = ["DeviceStats", "Dlt645LinkCollector", "Dlt645Meter", "FailureKind"]

log = logging.getLogger(__name__)

READ_CHUNK_BYTES = 256
US_PER_S = 1_000_000


@dataclass(frozen=True, slots=True)
class Dlt645Meter:
    """One meter on a gateway's line.

    Attributes
    ----------
    device_id : str
        The site file's device id.
    address : str
        Meter address, 12 digits as printed on the meter (DL/T 645-2007 4.2.2);
        ``AA`` bytes are wildcards (the all-``AA`` address suits a line with one meter).
    poll_interval_s : float
        Time between polls [s], in the clock's time.
    timeout_s : float
        Longest wait for one reply [s], real time.
    identifiers : tuple of int
        Data identifiers to read (DL/T 645-2007 附录A), each carrying a metric
        (:mod:`zerocarbon.metering.dlt645`).
    """

    device_id: str
    address: str
    poll_interval_s: float = 10.0
    timeout_s: float = 1.0
    identifiers: tuple[DataId, ...] = DEFAULT_IDENTIFIERS

    def __post_init__(self) -> None:
        where = f"DL/T 645 meter {self.device_id!r}"
        try:
            address_to_wire(self.address)
        except Dlt645Error as exc:
            raise ValueError(f"{where}: address: {exc}") from None
        if not self.poll_interval_s > 0:
            raise ValueError(f"{where}: poll_interval_s must be > 0, got {self.poll_interval_s}")
        if not self.timeout_s > 0:
            raise ValueError(f"{where}: timeout_s must be > 0, got {self.timeout_s}")
        if not self.identifiers:
            raise ValueError(f"{where}: identifiers is empty")
        if len(set(self.identifiers)) != len(self.identifiers):
            raise ValueError(f"{where}: identifiers repeat")
        for data_id in self.identifiers:
            try:
                data_item(data_id)
                metric_of(data_id)
            except KeyError as exc:
                raise ValueError(f"{where}: identifiers: {exc.args[0]}") from None


class FailureKind(StrEnum):
    """Why an exchange with a meter failed."""

    TIMEOUT = "timeout"  # no complete reply within timeout_s
    ABNORMAL_REPLY = "abnormal_reply"  # the meter answered C = 0xD1 with an error byte
    BAD_FRAME = "bad_frame"  # checksum, terminator or length wrong
    DECODE = "decode"  # a well-formed reply whose value is not valid BCD or too short
    CONNECTION = "connection"  # refused, reset or closed by the gateway


@dataclass(slots=True)
class DeviceStats:
    """Counters of one meter's polling; read by monitoring and tests.

    ``timeouts`` and ``errors`` count exchanges that failed after their retries
    (a connection failure counts once per poll); ``failures`` splits them by kind.
    """

    polls: int = 0
    readings: int = 0
    timeouts: int = 0
    errors: int = 0
    retries: int = 0
    skipped_cycles: int = 0
    available: bool = False
    last_error: str = ""
    failures: dict[FailureKind, int] = field(default_factory=lambda: dict.fromkeys(FailureKind, 0))


class _Failure(Exception):
    def __init__(self, kind: FailureKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(slots=True)
class _PolledMeter:
    config: Dlt645Meter
    series: tuple[tuple[DataId, int], ...]  # identifier -> series id, resolved at start
    next_due_s: float
    stats: DeviceStats = field(default_factory=DeviceStats)
    reported_online: bool | None = None  # the state last sent as an event (None: none yet)


class Dlt645LinkCollector:
    """Polls every meter on one line (gateway or serial port); hands each poll's readings to
    ``sink`` as one :class:`~zerocarbon.batch.ReadingBatch`.

    Series ids are resolved in ``registry`` here, once; a device the registry lacks
    raises :class:`~zerocarbon.batch.UnknownSeriesError` naming it.

    Parameters
    ----------
    link : TcpGateway or SerialPort
        How the line is reached.
    meters : sequence of Dlt645Meter
        The meters on its line (device ids unique).
    clock : Clock
        Time of the polls and of the readings.
    sink : BatchSink
        Awaited with each poll's batch.
    registry : SeriesRegistry
        Series ids of the site.
    retries : int
        Extra sends of a request after a timeout or a corrupt reply.
    reconnect_min_s, reconnect_max_s : float
        Back-off after a failed connect [s, clock time], doubling from min to max.
    events : DeviceEventSink
        Receives each meter's online/offline changes (the first outcome too).
    """

    def __init__(
        self,
        link: Dlt645Link,
        meters: Sequence[Dlt645Meter],
        clock: Clock,
        sink: BatchSink,
        registry: SeriesRegistry,
        *,
        retries: int = 1,
        reconnect_min_s: float = 1.0,
        reconnect_max_s: float = 60.0,
        events: DeviceEventSink = discard_events,
    ) -> None:
        if not meters:
            raise ValueError(f"DL/T 645 link {link.name} has no meters")
        ids = [m.device_id for m in meters]
        if len(set(ids)) != len(ids):
            raise ValueError(f"DL/T 645 link {link.name}: device ids repeat: {ids}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        if not 0 < reconnect_min_s <= reconnect_max_s:
            raise ValueError(
                f"need 0 < reconnect_min_s <= reconnect_max_s, got "
                f"{reconnect_min_s} and {reconnect_max_s}"
            )
        self.link = link
        self._clock = clock
        self._sink = sink
        self._events = events
        self._builder = BatchBuilder(registry)
        self.retries = retries
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        now = clock.now_s()
        self.meters = [
            _PolledMeter(
                m,
                tuple((d, registry.id(m.device_id, metric_of(d))) for d in m.identifiers),
                now,
            )
            for m in meters
        ]
        self.connect_timeout_s = max(m.timeout_s for m in meters)
        self.connect_failures = 0
        self.connects = 0  # connections opened
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._buffer = bytearray()
        self._backoff_s = reconnect_min_s
        self._next_connect_s = now

    @property
    def name(self) -> str:
        return self.link.name

    def stats(self) -> dict[str, DeviceStats]:
        return {m.config.device_id: m.stats for m in self.meters}

    async def run(self) -> None:
        """Poll until cancelled."""
        try:
            while True:
                meter = min(self.meters, key=lambda m: m.next_due_s)
                wait_s = meter.next_due_s - self._clock.now_s()
                if wait_s > 0:
                    await self._clock.sleep(wait_s)
                self._skip_late_cycles(meter)
                await self._poll(meter)
                raise_if_cancelling()  # a wait_for inside may have swallowed a stop
                meter.next_due_s += meter.config.poll_interval_s
        finally:
            self._disconnect()

    def _skip_late_cycles(self, meter: _PolledMeter) -> None:
        interval_s = meter.config.poll_interval_s
        late_s = self._clock.now_s() - meter.next_due_s
        if late_s >= interval_s:
            missed = int(late_s // interval_s)
            meter.stats.skipped_cycles += missed
            meter.next_due_s += missed * interval_s

    # ------------------------------------------------------------------ connection

    async def _connect(self) -> None:
        """Open the connection unless it is open; :class:`_Failure` while backing off."""
        if self._writer is not None:
            return
        now = self._clock.now_s()
        if now < self._next_connect_s:
            raise _Failure(
                FailureKind.CONNECTION,
                f"{self.name} unreachable; next attempt in {self._next_connect_s - now:.1f} s",
            )
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                self._reader, self._writer = await self.link.open()
        except (OSError, TimeoutError) as exc:
            self.connect_failures += 1
            self._next_connect_s = self._clock.now_s() + self._backoff_s
            self._backoff_s = min(2 * self._backoff_s, self.reconnect_max_s)
            raise _Failure(
                FailureKind.CONNECTION, f"cannot connect to {self.name}: {exc}"
            ) from None
        self.connects += 1
        self._backoff_s = self.reconnect_min_s
        self._buffer.clear()

    def _disconnect(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()

    # ------------------------------------------------------------------ polling

    async def _poll(self, meter: _PolledMeter) -> None:
        stats = meter.stats
        stats.polls += 1
        cfg = meter.config
        try:
            await self._connect()
        except _Failure as failure:
            self._fail(meter, failure)
            return
        ok = 0
        for data_id, series_id in meter.series:
            t_sent = self._clock.now_s()
            try:
                value = await self._read(cfg, data_id, stats)
            except _Failure as failure:
                self._fail(meter, failure)
                if failure.kind is FailureKind.CONNECTION:
                    break  # the rest of the poll would fail the same way
                continue
            ts_us = round((t_sent + self._clock.now_s()) / 2 * US_PER_S)
            self._builder.add_id(series_id, ts_us, value)
            ok += 1
        batch = self._builder.build()
        stats.readings += len(batch)
        if ok == len(meter.series):
            if not stats.available:
                log.info(
                    "DL/T 645 meter %s (%s) at %s is available",
                    cfg.device_id,
                    cfg.address,
                    self.name,
                )
            stats.available = True
            self._report(meter, online=True, detail=f"at {self.name}")
        if len(batch):
            await self._sink(batch)

    async def _read(self, cfg: Dlt645Meter, data_id: DataId, stats: DeviceStats) -> float:
        """One identifier's value, sending the request up to ``1 + retries`` times."""
        for attempt in range(self.retries + 1):
            if attempt:
                stats.retries += 1
            try:
                return await self._exchange(cfg, data_id)
            except _Failure as failure:
                if failure.kind not in (FailureKind.TIMEOUT, FailureKind.BAD_FRAME):
                    raise
                if attempt == self.retries:
                    raise
        raise AssertionError("unreachable")

    async def _exchange(self, cfg: Dlt645Meter, data_id: DataId) -> float:
        reader, writer = self._reader, self._writer
        if reader is None or writer is None:
            raise _Failure(FailureKind.CONNECTION, f"not connected to {self.name}")
        buffer = self._buffer
        buffer.clear()  # whatever an earlier, timed-out exchange left
        what = f"{data_id:08X} from meter {cfg.address}"
        try:
            writer.write(encode_read_request(cfg.address, data_id))
            async with asyncio.timeout(cfg.timeout_s):
                await writer.drain()
                while True:
                    try:
                        found = parse_frame(buffer)
                    except FrameError as exc:
                        del buffer[: exc.end]
                        raise _Failure(FailureKind.BAD_FRAME, f"reading {what}: {exc}") from None
                    if found is None:
                        data = await reader.read(READ_CHUNK_BYTES)
                        if not data:
                            raise ConnectionError("connection closed by the gateway")
                        buffer += data
                        continue
                    frame, end = found
                    del buffer[:end]
                    try:
                        return decode_read_reply(frame, cfg.address, data_id)
                    except UnexpectedReplyError as exc:
                        # An echo of the request or a late reply to an earlier one.
                        log.debug("%s: skipping a frame: %s", self.name, exc)
                    except AbnormalReplyError as exc:
                        raise _Failure(
                            FailureKind.ABNORMAL_REPLY, f"reading {data_id:08X}: {exc}"
                        ) from None
                    except Dlt645Error as exc:
                        raise _Failure(FailureKind.DECODE, f"reading {what}: {exc}") from None
        except TimeoutError:
            raise _Failure(
                FailureKind.TIMEOUT, f"no reply within {cfg.timeout_s} s reading {what}"
            ) from None
        except OSError as exc:  # ConnectionError included
            self._disconnect()
            raise _Failure(FailureKind.CONNECTION, f"{self.name}: {exc}") from None

    def _fail(self, meter: _PolledMeter, failure: _Failure) -> None:
        stats = meter.stats
        if failure.kind is FailureKind.TIMEOUT:
            stats.timeouts += 1
        else:
            stats.errors += 1
        stats.failures[failure.kind] += 1
        message = str(failure)
        if stats.available or not stats.last_error:
            log.warning("DL/T 645 meter %s: %s", meter.config.device_id, message)
        stats.available = False
        stats.last_error = message
        self._report(meter, online=False, detail=message)

    def _report(self, meter: _PolledMeter, *, online: bool, detail: str) -> None:
        """Send an event when the meter's state differs from the one last reported."""
        if meter.reported_online is online:
            return
        meter.reported_online = online
        kind = DeviceEventKind.ONLINE if online else DeviceEventKind.OFFLINE
        ts_us = round(self._clock.now_s() * US_PER_S)
        self._events(DeviceEvent(ts_us, meter.config.device_id, kind, detail))
