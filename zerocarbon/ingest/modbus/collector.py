"""Modbus link scheduler: polls the units behind one physical link.

A *link* is one TCP endpoint or one serial port; the scheduler
(:class:`ModbusLinkScheduler`) takes its :class:`~zerocarbon.ingest.modbus.transport.
ModbusTransport` and does not care which. Links run in parallel (one scheduler each);
:class:`ModbusLinkCollector` is the scheduler over our Modbus TCP transport
(:mod:`zerocarbon.ingest.modbus.tcp_transport`), one connection per endpoint.

Scheduling. Each device is polled on its own ``poll_interval_s`` (the injected clock's
time) by a task of its own; a cycle that is already late when it comes up is skipped
and counted, never queued. A poll reads the device's planned blocks
(:mod:`~zerocarbon.ingest.modbus.planner`); the blocks of a device, and the polls of
devices due together, are issued concurrently and the transport sends at most its
``max_in_flight`` at once (1: strictly one after the other, as on a serial bus or a
gateway without a window). With ``request_gap_s`` > 0 requests go one at a time, each
at least ``request_gap_s`` [s, clock time] after the previous answer (or timeout), for
slow gateways and buses.

Failures. A request that times out is sent again up to the device's ``retries``; an
exception response is final for the poll (the unit is alive but refuses). A link that
is down (refused, broken, or silent: :data:`LINK_SILENT_TIMEOUTS` or more timeouts in a
row, every unit on it among them, and no answer at all, as on a half-open connection;
one absent unit among others that answer is not a silent link) is closed and opened
again on the next poll, after a back-off that doubles from ``reconnect_min_s`` to
``reconnect_max_s`` [s, clock time] while connecting fails; never two connections at
once. A poll with a failed block counts one consecutive failure and marks the device
unavailable; the values of its good blocks still go to the sink.

Health: a poll is *good* when every block of the device was read. A good poll sets
``last_seen_s`` (the injected clock's time) and the poll latency: wall time
(:func:`time.perf_counter`) from the first request sent to the last block decoded, kept
as the last value and as an exponentially weighted moving average with weight
:data:`LATENCY_EWMA_ALPHA` on the newest poll. Online/offline changes are counted (the
first poll's outcome sets the state without counting a change), logged, and reported as
:class:`~zerocarbon.ingest.events.DeviceEvent` (the first outcome too) to ``events``.

Torn reads: counters of several registers pass the guard of
:mod:`zerocarbon.ingest.modbus.torn` (a suspect block is read again once; a value that
stays implausible is refused, counted in ``torn_reads`` and reported as a
``TORN_READ`` event, never handed to the sink).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from zerocarbon.batch import SeriesRegistry
from zerocarbon.clock import Clock
from zerocarbon.config import ModbusTcpDevice, SiteConfig
from zerocarbon.ingest.events import DeviceEvent, DeviceEventKind, DeviceEventSink, discard_events
from zerocarbon.ingest.modbus.decoder import DeviceDecoder, PointValue, point_series, rows_batch
from zerocarbon.ingest.modbus.planner import ReadBlock, needed_points, plan_reads
from zerocarbon.ingest.modbus.tcp_transport import ModbusTcpTransport
from zerocarbon.ingest.modbus.torn import CounterGuard
from zerocarbon.ingest.modbus.transport import (
    READ_HOLDING_REGISTERS,
    READ_INPUT_REGISTERS,
    ModbusExceptionResponse,
    ModbusLinkDown,
    ModbusTimeout,
    ModbusTransport,
)
from zerocarbon.ingest.reading import BatchSink
from zerocarbon.metering.profile import DeviceProfile, RegisterTable
from zerocarbon.tasks import raise_if_cancelling

__all__ = [
    "LATENCY_EWMA_ALPHA",
    "LINK_SILENT_TIMEOUTS",
    "DeviceStats",
    "ModbusDeviceConfig",
    "ModbusLinkCollector",
    "ModbusLinkScheduler",
    "link_collectors",
]

log = logging.getLogger(__name__)

# Weight of the newest poll in the smoothed latency: about the last 10 polls count
# (an EWMA's span is (2 - alpha) / alpha = 9 polls).
LATENCY_EWMA_ALPHA = 0.2
# Timeouts in a row without any answer on the link: the connection is taken as dead.
LINK_SILENT_TIMEOUTS = 3
US_PER_S = 1_000_000
_FUNCTION_CODES = {
    RegisterTable.HOLDING: READ_HOLDING_REGISTERS,
    RegisterTable.INPUT: READ_INPUT_REGISTERS,
}


class ModbusDeviceConfig(Protocol):
    """What the scheduler reads of a device's configuration (a TCP or an RTU device)."""

    @property
    def id(self) -> str: ...
    @property
    def device_id(self) -> int: ...  # Modbus unit id
    @property
    def poll_interval_s(self) -> float: ...
    @property
    def timeout_s(self) -> float: ...
    @property
    def max_gap_registers(self) -> int: ...
    @property
    def retries(self) -> int: ...
    @property
    def rated_power_kw(self) -> float | None: ...


@dataclass(slots=True)
class DeviceStats:
    """Counters and health of one device's polling; read by monitoring and tests."""

    polls: int = 0
    readings: int = 0
    timeouts: int = 0  # requests without an answer in time (retries included)
    errors: int = 0  # exception responses, connection failures
    skipped_cycles: int = 0
    rejected_values: int = 0
    available: bool = False
    last_error: str = ""
    last_seen_s: float | None = None  # injected clock's time of the last good poll [s]
    latency_last_s: float | None = None  # wall time of the last good poll [s]
    latency_avg_s: float | None = None  # EWMA of latency_last_s, LATENCY_EWMA_ALPHA [s]
    consecutive_failures: int = 0  # failed polls since the last good one
    went_offline: int = 0  # available -> unavailable changes
    came_online: int = 0  # unavailable -> available changes
    exception_responses: int = 0  # of errors: answers with a Modbus exception code
    retried_requests: int = 0  # requests sent again after a timeout
    torn_reads: int = 0  # counter values refused as torn (not handed to the sink)
    torn_rereads: int = 0  # blocks read again because a counter looked torn

    def record_good_poll(self, seen_s: float, latency_s: float) -> None:
        """A poll read every block at clock time ``seen_s`` [s], in ``latency_s`` [s]."""
        if not self.available and self._state_known():
            self.came_online += 1
        self.available = True
        self.consecutive_failures = 0
        self.last_seen_s = seen_s
        self.latency_last_s = latency_s
        if self.latency_avg_s is None:
            self.latency_avg_s = latency_s
        else:
            self.latency_avg_s += LATENCY_EWMA_ALPHA * (latency_s - self.latency_avg_s)

    def record_failed_poll(self) -> None:
        """A poll in which at least one block failed (or the link did not connect)."""
        if self.available:
            self.went_offline += 1
        self.available = False
        self.consecutive_failures += 1

    def _state_known(self) -> bool:
        """False before the first poll's outcome: it sets the state, it is no change."""
        return self.last_seen_s is not None or self.consecutive_failures > 0


@dataclass(slots=True)
class _PolledDevice:
    config: ModbusDeviceConfig
    profile: DeviceProfile
    blocks: list[ReadBlock]
    series: dict[str, int]  # metric point name -> series id, resolved once at start
    guard: CounterGuard
    decoder: DeviceDecoder
    block_of: dict[str, int]  # metric point name -> index of its block
    next_due_s: float
    stats: DeviceStats = field(default_factory=DeviceStats)

    def describe(self, link: str) -> str:
        return f"device {self.config.id} ({link} unit {self.config.device_id})"


class ModbusLinkScheduler:
    """Polls every device on one link through ``transport`` (see the module docstring)
    and hands each poll's readings to ``sink`` as one
    :class:`~zerocarbon.batch.ReadingBatch`.

    Parameters
    ----------
    transport : ModbusTransport
        The link; the scheduler connects, reconnects and closes it.
    devices : sequence of (config, profile)
        The units on the link; unit ids must differ.
    clock : Clock
        Time of polls, back-off, request gaps and readings.
    sink : BatchSink
        Awaited with each poll's batch.
    registry : SeriesRegistry
        Series ids of every profile point are resolved here, once; a device or metric
        the registry lacks raises :class:`~zerocarbon.batch.UnknownSeriesError`.
    events : DeviceEventSink
        Receives online/offline/torn-read events (default: discarded).
    request_gap_s : float
        Pause between an answer and the next request [s, clock time]; 0: none.
    reconnect_min_s, reconnect_max_s : float
        Back-off after a failed connect [s, clock time], doubling from min to max.
    """

    def __init__(
        self,
        transport: ModbusTransport,
        devices: Sequence[tuple[ModbusDeviceConfig, DeviceProfile]],
        clock: Clock,
        sink: BatchSink,
        registry: SeriesRegistry,
        *,
        events: DeviceEventSink = discard_events,
        request_gap_s: float = 0.0,
        reconnect_min_s: float = 1.0,
        reconnect_max_s: float = 60.0,
    ) -> None:
        if not devices:
            raise ValueError(f"Modbus link {transport.name} has no devices")
        units = [cfg.device_id for cfg, _ in devices]
        if len(set(units)) != len(units):
            raise ValueError(f"Modbus link {transport.name}: unit ids repeat: {units}")
        if request_gap_s < 0:
            raise ValueError(f"request_gap_s must be >= 0, got {request_gap_s}")
        if not 0 < reconnect_min_s <= reconnect_max_s:
            raise ValueError(
                "need 0 < reconnect_min_s <= reconnect_max_s, got "
                f"{reconnect_min_s} and {reconnect_max_s}"
            )
        self._transport = transport
        self._clock = clock
        self._sink = sink
        self._events = events
        self.request_gap_s = request_gap_s
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        now = clock.now_s()
        self.devices = [_polled(cfg, profile, registry, now) for cfg, profile in devices]
        self.connect_failures = 0
        self.gap_waits = 0  # requests that waited for request_gap_s
        self.link_resets = 0  # connections closed after LINK_SILENT_TIMEOUTS
        self._connecting: asyncio.Future[None] | None = None
        self._gap_lock = asyncio.Lock()
        self._next_send_s = now
        self._backoff_s = reconnect_min_s
        self._next_connect_s = now
        self._last_connect_error = ""
        self._silent_timeouts = 0  # timeouts since the last answer on the link
        self._silent_units: set[int] = set()  # units that timed out since then

    @property
    def name(self) -> str:
        return self._transport.name

    @property
    def transport(self) -> ModbusTransport:
        return self._transport

    def stats(self) -> dict[str, DeviceStats]:
        return {d.config.id: d.stats for d in self.devices}

    async def run(self) -> None:
        """Poll until cancelled; the link is closed at the end."""
        try:
            if len(self.devices) == 1:
                await self._device_loop(self.devices[0])
            else:
                async with asyncio.TaskGroup() as group:
                    for device in self.devices:
                        group.create_task(self._device_loop(device))
        finally:
            if self._connecting is not None:
                self._connecting.cancel()
                with contextlib.suppress(asyncio.CancelledError, ModbusLinkDown):
                    await self._connecting
            await self._transport.close()

    async def _device_loop(self, device: _PolledDevice) -> None:
        clock = self._clock
        interval_s = device.config.poll_interval_s
        while True:
            wait_s = device.next_due_s - clock.now_s()
            if wait_s > 0:
                await clock.sleep(wait_s)
            self._skip_late_cycles(device)
            await self._poll(device)
            raise_if_cancelling()  # a wait inside may have swallowed a stop
            device.next_due_s += interval_s

    def _skip_late_cycles(self, device: _PolledDevice) -> None:
        interval_s = device.config.poll_interval_s
        late_s = self._clock.now_s() - device.next_due_s
        if late_s >= interval_s:
            missed = int(late_s // interval_s)
            device.stats.skipped_cycles += missed
            device.next_due_s += missed * interval_s

    # ------------------------------------------------------------------ the link

    async def _ensure_connected(self) -> None:
        """Connect unless connected; :class:`ModbusLinkDown` when it fails or while the
        back-off after a failed attempt runs. Polls that need the link while it is
        being opened wait for that one attempt (and share its outcome)."""
        if self._transport.connected:
            return
        attempt = self._connecting
        if attempt is None:
            attempt = self._connecting = asyncio.ensure_future(self._connect())
            attempt.add_done_callback(self._connect_done)
        await asyncio.shield(attempt)

    def _connect_done(self, attempt: asyncio.Future[None]) -> None:
        if self._connecting is attempt:
            self._connecting = None
        if not attempt.cancelled():
            attempt.exception()  # retrieved: every waiter has seen it

    async def _connect(self) -> None:
        now = self._clock.now_s()
        if now < self._next_connect_s:
            raise ModbusLinkDown(
                f"{self._last_connect_error}; next attempt in {self._next_connect_s - now:.1f} s"
            )
        try:
            await self._transport.connect()
        except ModbusLinkDown as exc:
            self.connect_failures += 1
            self._last_connect_error = str(exc)
            self._next_connect_s = self._clock.now_s() + self._backoff_s
            self._backoff_s = min(2 * self._backoff_s, self.reconnect_max_s)
            raise
        self._backoff_s = self.reconnect_min_s
        self._link_answered()

    async def _request(self, device: _PolledDevice, block: ReadBlock) -> list[int]:
        """One request, paced by ``request_gap_s``; counts link silence."""
        cfg = device.config
        function_code = _FUNCTION_CODES[block.table]
        if self.request_gap_s <= 0:
            return await self._send(cfg, function_code, block)
        async with self._gap_lock:
            wait_s = self._next_send_s - self._clock.now_s()
            if wait_s > 0:
                self.gap_waits += 1
                await self._clock.sleep(wait_s)
            try:
                return await self._send(cfg, function_code, block)
            finally:
                self._next_send_s = self._clock.now_s() + self.request_gap_s

    async def _send(
        self, cfg: ModbusDeviceConfig, function_code: int, block: ReadBlock
    ) -> list[int]:
        try:
            registers = await self._transport.read_registers(
                cfg.device_id, function_code, block.address, block.count, cfg.timeout_s
            )
        except ModbusTimeout:
            self._silent_timeouts += 1
            self._silent_units.add(cfg.device_id)
            if (
                self._silent_timeouts >= LINK_SILENT_TIMEOUTS
                and len(self._silent_units) == len(self.devices)
                and self._transport.connected
            ):
                self._link_answered()
                self.link_resets += 1
                log.warning(
                    "Modbus link %s: %d timeouts in a row, no unit answers; reconnecting",
                    self.name,
                    LINK_SILENT_TIMEOUTS,
                )
                await self._transport.close()
            raise
        except ModbusExceptionResponse:
            self._link_answered()
            raise
        if self._silent_timeouts:
            self._link_answered()
        return registers

    def _link_answered(self) -> None:
        self._silent_timeouts = 0
        self._silent_units.clear()

    async def _read_block(
        self, device: _PolledDevice, block: ReadBlock, failures: list[str], retries: int
    ) -> list[int] | None:
        """The block's registers, or None with the reason appended to ``failures``
        (each failed request counted)."""
        stats = device.stats
        for attempt in range(retries + 1):
            if attempt:
                stats.retried_requests += 1
            try:
                return await self._request(device, block)
            except ModbusTimeout:
                stats.timeouts += 1
            except ModbusExceptionResponse as exc:
                stats.errors += 1
                stats.exception_responses += 1
                code = exc.exception_code
                failures.append(f"exception code {code:#04x} reading {_where(block)}")
                return None
            except ModbusLinkDown as exc:
                stats.errors += 1
                failures.append(f"{_where(block)}: {exc}")
                return None
        failures.append(f"timeout reading {_where(block)}")
        return None

    # ------------------------------------------------------------------ polling

    async def _poll(self, device: _PolledDevice) -> None:
        stats = device.stats
        stats.polls += 1
        try:
            await self._ensure_connected()
        except ModbusLinkDown as exc:
            stats.errors += 1
            self._poll_failed(device, [str(exc)])
            return
        clock = self._clock
        t_sent_s = clock.now_s()
        t_start_wall = time.perf_counter()
        failures: list[str] = []
        retries = device.config.retries
        registers: list[list[int] | None]
        if len(device.blocks) == 1:
            registers = [await self._read_block(device, device.blocks[0], failures, retries)]
        else:
            registers = await asyncio.gather(
                *(self._read_block(device, b, failures, retries) for b in device.blocks)
            )
        if failures:
            self._poll_failed(device, failures)
            if all(regs is None for regs in registers):
                return
        # Stamp with the middle of the request/response exchange.
        t_received_s = clock.now_s()
        ts_us = round((t_sent_s + t_received_s) / 2 * US_PER_S)
        values = device.decoder.decode(registers)
        refused: list[str] = []
        if device.guard.points:
            suspects = device.guard.suspects(values, t_received_s)
            if suspects:
                refused = await self._settle_suspects(device, suspects, values, t_received_s)
            device.guard.accept(values, t_received_s, refused)
        batch, result = rows_batch(device.series, values, ts_us, refused)
        stats.rejected_values += len(result.rejected)
        stats.readings += result.readings
        if not failures:
            self._poll_good(device, t_received_s, time.perf_counter() - t_start_wall)
        if len(batch):
            await self._sink(batch)

    async def _settle_suspects(
        self,
        device: _PolledDevice,
        suspects: list[str],
        values: dict[str, PointValue],
        at_s: float,
    ) -> list[str]:
        """Read the blocks of suspect counters again once (torn-read rule 2); put the
        accepted re-read values into ``values``; return the refused point names."""
        refused: list[str] = []
        by_block: dict[int, list[str]] = {}
        for name in suspects:
            by_block.setdefault(device.block_of[name], []).append(name)
        for index, names in by_block.items():
            device.stats.torn_rereads += 1
            failures: list[str] = []
            regs = await self._read_block(device, device.blocks[index], failures, retries=0)
            again = {} if regs is None else device.decoder.decode_block(index, regs)
            for name in names:
                first = values[name]
                second = again.get(name)
                if second is not None and device.guard.resolve(name, first, second, at_s):
                    values[name] = second
                    continue
                refused.append(name)
                reason = device.guard.implausible(name, first, at_s) or "implausible"
                detail = f"{name}: {reason}; re-read " + (
                    failures[0] if second is None else f"gave {second.value}"
                )
                self._torn(device, detail)
        return refused

    def _torn(self, device: _PolledDevice, detail: str) -> None:
        device.stats.torn_reads += 1
        log.warning("%s: value refused as torn: %s", device.describe(self.name), detail)
        self._emit(device, DeviceEventKind.TORN_READ, detail)

    def _poll_good(self, device: _PolledDevice, seen_s: float, latency_s: float) -> None:
        stats = device.stats
        was_available = stats.available
        stats.record_good_poll(seen_s, latency_s)
        if not was_available:
            log.info("%s is available", device.describe(self.name))
            self._emit(device, DeviceEventKind.ONLINE, f"answers on {self.name}")

    def _poll_failed(self, device: _PolledDevice, failures: list[str]) -> None:
        """Mark the device unavailable; log and report when it was available or when
        this is its first outcome."""
        stats = device.stats
        first_outcome = not stats._state_known()
        if stats.available or first_outcome:
            message = "; ".join(failures)
            log.warning("%s: %s", device.describe(self.name), message)
            self._emit(device, DeviceEventKind.OFFLINE, message)
        stats.last_error = failures[-1]
        stats.record_failed_poll()

    def _emit(self, device: _PolledDevice, kind: DeviceEventKind, detail: str) -> None:
        ts_us = round(self._clock.now_s() * US_PER_S)
        try:
            self._events(DeviceEvent(ts_us, device.config.id, kind, detail))
        except Exception:
            log.exception("device event sink failed on %s %s", device.config.id, kind)


def _where(block: ReadBlock) -> str:
    return f"{block.table} registers {block.address}..{block.end_address - 1}"


def _polled(
    cfg: ModbusDeviceConfig, profile: DeviceProfile, registry: SeriesRegistry, now_s: float
) -> _PolledDevice:
    blocks = plan_reads(needed_points(profile), max_gap_registers=cfg.max_gap_registers)
    return _PolledDevice(
        cfg,
        profile,
        blocks,
        point_series(cfg.id, profile, registry),
        CounterGuard(profile, cfg.rated_power_kw),
        DeviceDecoder(profile, blocks),
        {p.name: i for i, b in enumerate(blocks) for p in b.points},
        now_s,
    )


def _link_property(devices: Sequence[tuple[ModbusTcpDevice, DeviceProfile]], name: str) -> float:
    """A property all devices on one endpoint must share (the site file checks it too)."""
    first = devices[0][0]
    for cfg, _ in devices[1:]:
        if getattr(cfg, name) != getattr(first, name):
            raise ValueError(
                f"devices {first.id!r} and {cfg.id!r} share {first.host}:{first.port} but "
                f"disagree on {name}"
            )
    value = getattr(first, name)
    assert isinstance(value, int | float)
    return value


class ModbusLinkCollector(ModbusLinkScheduler):
    """The scheduler over one Modbus TCP endpoint (:class:`ModbusTcpTransport`, one
    connection; its window is the devices' ``max_in_flight``, its request gap their
    ``request_gap_s``; the connect timeout the longest of their ``timeout_s``)."""

    def __init__(
        self,
        host: str,
        port: int,
        devices: Sequence[tuple[ModbusTcpDevice, DeviceProfile]],
        clock: Clock,
        sink: BatchSink,
        registry: SeriesRegistry,
        *,
        events: DeviceEventSink = discard_events,
        reconnect_min_s: float = 1.0,
        reconnect_max_s: float = 60.0,
    ) -> None:
        if not devices:
            raise ValueError(f"Modbus link {host}:{port} has no devices")
        transport = ModbusTcpTransport(
            host,
            port,
            max_in_flight=int(_link_property(devices, "max_in_flight")),
            connect_timeout_s=max(cfg.timeout_s for cfg, _ in devices),
        )
        super().__init__(
            transport,
            devices,
            clock,
            sink,
            registry,
            events=events,
            request_gap_s=_link_property(devices, "request_gap_s"),
            reconnect_min_s=reconnect_min_s,
            reconnect_max_s=reconnect_max_s,
        )
        self.host = host
        self.port = port
        self.tcp = transport


def link_collectors(
    site: SiteConfig,
    clock: Clock,
    sink: BatchSink,
    registry: SeriesRegistry,
    events: DeviceEventSink = discard_events,
) -> list[ModbusLinkCollector]:
    """One collector per distinct (host, port) among the site's Modbus TCP devices."""
    links: dict[tuple[str, int], list[tuple[ModbusTcpDevice, DeviceProfile]]] = {}
    for device in site.modbus_devices:
        links.setdefault(device.endpoint, []).append((device, site.profile_of(device)))
    return [
        ModbusLinkCollector(h, p, devs, clock, sink, registry, events=events)
        for (h, p), devs in links.items()
    ]
