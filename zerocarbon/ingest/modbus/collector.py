"""Modbus TCP collector: one task per physical link (TCP endpoint).

Requests on a link go in sequence; links run in parallel. Each device on the link is
polled on its own ``poll_interval_s`` (in the injected clock's time); a cycle that is
already late when it comes up is skipped and counted, never queued. A timeout or an
exception response marks the device unavailable and is counted; it is never fatal.
"""

from __future__ import annotations

import asyncio
import logging
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

log = logging.getLogger(__name__)


@dataclass(slots=True)
class DeviceStats:
    """Counters of one device's polling; read by monitoring and tests."""

    polls: int = 0
    readings: int = 0
    timeouts: int = 0
    errors: int = 0  # exception responses, connection failures
    skipped_cycles: int = 0
    rejected_values: int = 0
    available: bool = False
    last_error: str = ""


@dataclass(slots=True)
class _PolledDevice:
    config: ModbusTcpDevice
    profile: DeviceProfile
    blocks: list[ReadBlock]
    series: dict[str, int]  # metric point name -> series id, resolved once at start
    next_due_s: float
    stats: DeviceStats = field(default_factory=DeviceStats)


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
        cfg = device.config
        if not await self._ensure_connected():
            self._fail(device, f"cannot connect to {self.name}", timeout=False)
            return
        registers: dict[ReadBlock, list[int]] = {}
        t_sent = self._clock.now_s()
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
                self._fail(device, f"timeout reading {block.table} {block.address}", timeout=True)
                continue
            except (ModbusException, OSError) as exc:
                self._fail(device, f"{block.table} {block.address}+{block.count}: {exc}", False)
                continue
            if response.isError():
                self._fail(
                    device,
                    f"exception response {response} for {block.table} registers "
                    f"{block.address}..{block.end_address - 1}",
                    timeout=False,
                )
                continue
            registers[block] = list(response.registers)
        if not registers:
            return
        # Stamp with the middle of the request/response exchange.
        ts_us = round((t_sent + self._clock.now_s()) / 2 * 1_000_000)
        result = decode_blocks(
            device.series, device.profile, device.blocks, registers, ts_us, self._builder
        )
        batch = self._builder.build()
        stats.rejected_values += len(result.rejected)
        stats.readings += result.readings
        if len(registers) == len(device.blocks):
            if not stats.available:
                log.info("device %s at %s unit %s is available", cfg.id, self.name, cfg.device_id)
            stats.available = True
        if len(batch):
            await self._sink(batch)

    def _fail(self, device: _PolledDevice, message: str, timeout: bool) -> None:
        stats = device.stats
        if timeout:
            stats.timeouts += 1
        else:
            stats.errors += 1
        if stats.available or not stats.last_error:
            log.warning(
                "device %s (%s unit %s): %s",
                device.config.id,
                self.name,
                device.config.device_id,
                message,
            )
        stats.available = False
        stats.last_error = message


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
