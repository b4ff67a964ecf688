"""Modbus TCP collector: one task per physical link (TCP endpoint).

Requests on a link go in sequence; links run in parallel. Each device on the link is
polled on its own ``poll_interval_s`` (in the injected clock's time); a cycle that is
already late when it comes up is skipped and counted, never queued. A timeout or an
exception response marks the device unavailable and is counted; it is never fatal.

Health: a poll is *good* when every block of the device was read. A good poll sets
``last_seen_s`` (the injected clock's time) and the poll latency: wall time
(:func:`time.perf_counter`) from the first request sent to the last block decoded, kept
as the last value and as an exponentially weighted moving average with weight
:data:`LATENCY_EWMA_ALPHA` on the newest poll. A poll with any failed block counts one
consecutive failure and marks the device unavailable; online/offline changes are
counted (the first poll's outcome sets the state without counting a change).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException, ModbusIOException

from zerocarbon.batch import BatchBuilder, SeriesRegistry
from zerocarbon.clock import Clock
from zerocarbon.config import ModbusTcpDevice, SiteConfig
from zerocarbon.ingest.modbus.decoder import decode_blocks, point_series
from zerocarbon.ingest.modbus.planner import ReadBlock, needed_points, plan_reads
from zerocarbon.ingest.reading import BatchSink
from zerocarbon.metering.profile import DeviceProfile, RegisterTable
from zerocarbon.tasks import raise_if_cancelling

log = logging.getLogger(__name__)

# Weight of the newest poll in the smoothed latency: about the last 10 polls count
# (an EWMA's span is (2 - alpha) / alpha = 9 polls).
LATENCY_EWMA_ALPHA = 0.2


@dataclass(slots=True)
class DeviceStats:
    """Counters and health of one device's polling; read by monitoring and tests."""

    polls: int = 0
    readings: int = 0
    timeouts: int = 0
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
    config: ModbusTcpDevice
    profile: DeviceProfile
    blocks: list[ReadBlock]
    series: dict[str, int]  # metric point name -> series id, resolved once at start
    next_due_s: float
    stats: DeviceStats = field(default_factory=DeviceStats)


class _PollRegisters(dict[ReadBlock, list[int]]):
    """The registers one poll read, per block; when its first request went out; why
    the blocks that failed did."""

    def __init__(self, t_sent_s: float, t_start_wall: float) -> None:
        super().__init__()
        self.t_sent_s = t_sent_s  # injected clock [s]
        self.t_start_wall = t_start_wall  # time.perf_counter() [s]
        self.failures: list[str] = []


class ModbusLinkCollector:
    """Polls every device behind one TCP endpoint; hands each poll's readings to
    ``sink`` as one :class:`~zerocarbon.batch.ReadingBatch`.

    Series ids of every profile point are resolved in ``registry`` here, once; a
    device or metric the registry lacks raises
    :class:`~zerocarbon.batch.UnknownSeriesError` naming it.
    """

    def __init__(
        self,
        host: str,
        port: int,
        devices: Sequence[tuple[ModbusTcpDevice, DeviceProfile]],
        clock: Clock,
        sink: BatchSink,
        registry: SeriesRegistry,
    ) -> None:
        self.host = host
        self.port = port
        self._clock = clock
        self._sink = sink
        self._builder = BatchBuilder(registry)
        now = clock.now_s()
        self.devices = [
            _PolledDevice(
                cfg,
                profile,
                plan_reads(needed_points(profile), max_gap_registers=cfg.max_gap_registers),
                point_series(cfg.id, profile, registry),
                now,
            )
            for cfg, profile in devices
        ]
        timeout_s = max(cfg.timeout_s for cfg, _ in devices)
        self._client = AsyncModbusTcpClient(
            host, port=port, timeout=timeout_s, retries=0, reconnect_delay=0
        )
        self.connect_failures = 0

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"

    def stats(self) -> dict[str, DeviceStats]:
        return {d.config.id: d.stats for d in self.devices}

    async def run(self) -> None:
        """Poll until cancelled."""
        try:
            while True:
                device = min(self.devices, key=lambda d: d.next_due_s)
                wait_s = device.next_due_s - self._clock.now_s()
                if wait_s > 0:
                    await self._clock.sleep(wait_s)
                self._skip_late_cycles(device)
                await self._poll(device)
                raise_if_cancelling()  # pymodbus' wait_for may have swallowed a stop
                device.next_due_s += device.config.poll_interval_s
        finally:
            self._client.close()

    def _skip_late_cycles(self, device: _PolledDevice) -> None:
        interval_s = device.config.poll_interval_s
        late_s = self._clock.now_s() - device.next_due_s
        if late_s >= interval_s:
            missed = int(late_s // interval_s)
            device.stats.skipped_cycles += missed
            device.next_due_s += missed * interval_s

    async def _ensure_connected(self) -> bool:
        if self._client.connected:
            return True
        try:
            ok = await self._client.connect()
        except (OSError, ModbusException):
            ok = False
        if not ok:
            self.connect_failures += 1
        return bool(ok)

    async def _poll(self, device: _PolledDevice) -> None:
        stats = device.stats
        stats.polls += 1
        if not await self._ensure_connected():
            self._poll_failed(device, [self._fail(stats, f"cannot connect to {self.name}", False)])
            return
        registers = await self._read_blocks(device)
        if registers.failures:
            self._poll_failed(device, registers.failures)
        if not registers:
            return
        # Stamp with the middle of the request/response exchange.
        t_received = self._clock.now_s()
        ts_us = round((registers.t_sent_s + t_received) / 2 * 1_000_000)
        result = decode_blocks(
            device.series, device.profile, device.blocks, registers, ts_us, self._builder
        )
        batch = self._builder.build()
        stats.rejected_values += len(result.rejected)
        stats.readings += result.readings
        if not registers.failures:
            was_available = stats.available
            stats.record_good_poll(t_received, time.perf_counter() - registers.t_start_wall)
            if not was_available:
                cfg = device.config
                log.info("device %s at %s unit %s is available", cfg.id, self.name, cfg.device_id)
        if len(batch):
            await self._sink(batch)

    async def _read_blocks(self, device: _PolledDevice) -> _PollRegisters:
        """The registers of every block that answered; a failed block is counted."""
        cfg = device.config
        stats = device.stats
        registers = _PollRegisters(self._clock.now_s(), time.perf_counter())
        for block in device.blocks:
            try:
                if block.table is RegisterTable.INPUT:
                    call = self._client.read_input_registers(
                        block.address, count=block.count, device_id=cfg.device_id
                    )
                else:
                    call = self._client.read_holding_registers(
                        block.address, count=block.count, device_id=cfg.device_id
                    )
                # pymodbus enforces the timeout itself; wait_for is a backstop.
                response = await asyncio.wait_for(call, timeout=2 * cfg.timeout_s)
            except (TimeoutError, ModbusIOException):
                message = f"timeout reading {block.table} {block.address}"
                registers.failures.append(self._fail(stats, message, timeout=True))
                continue
            except (ModbusException, OSError) as exc:
                message = f"{block.table} {block.address}+{block.count}: {exc}"
                registers.failures.append(self._fail(stats, message, timeout=False))
                continue
            if response.isError():
                message = (
                    f"exception response {response} for {block.table} registers "
                    f"{block.address}..{block.end_address - 1}"
                )
                registers.failures.append(self._fail(stats, message, timeout=False))
                continue
            registers[block] = list(response.registers)
        return registers

    @staticmethod
    def _fail(stats: DeviceStats, message: str, timeout: bool) -> str:
        """Count one failed request; returns ``message``."""
        if timeout:
            stats.timeouts += 1
        else:
            stats.errors += 1
        return message

    def _poll_failed(self, device: _PolledDevice, failures: list[str]) -> None:
        """Mark the device unavailable; log when it was available or never failed."""
        stats = device.stats
        if stats.available or not stats.last_error:
            log.warning(
                "device %s (%s unit %s): %s",
                device.config.id,
                self.name,
                device.config.device_id,
                "; ".join(failures),
            )
        stats.last_error = failures[-1]
        stats.record_failed_poll()


def link_collectors(
    site: SiteConfig, clock: Clock, sink: BatchSink, registry: SeriesRegistry
) -> list[ModbusLinkCollector]:
    """One collector per distinct (host, port) among the site's Modbus TCP devices."""
    links: dict[tuple[str, int], list[tuple[ModbusTcpDevice, DeviceProfile]]] = {}
    for device in site.modbus_devices:
        links.setdefault(device.endpoint, []).append((device, site.profile_of(device)))
    return [
        ModbusLinkCollector(h, p, devs, clock, sink, registry) for (h, p), devs in links.items()
    ]
