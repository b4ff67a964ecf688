"""Runs the simulated plant behind real network endpoints.

:class:`PlantSimulator` owns one :class:`~.plant.PlantModel` and serves it:

* one :class:`~.modbus_server.ModbusTcpServer` per distinct ``(host, port)`` of the
  site's Modbus devices, each device a unit (its ``device_id``) whose registers come
  from its profile. A unit also answers reads across unmapped gaps of up to the
  device's ``max_gap_registers`` (with zeros), the tolerance the site file declares
  for the read planner; anything else unmapped is exception 02;
* a physics loop that advances the plant to the clock every ``tick_s`` (and the servers
  bring it up to date before answering, so served values are at most about one tick
  old);
* one :class:`~.rtu_server.RtuServer` per serial port of the site's Modbus RTU units
  and one :class:`~.dlt645_server.Dlt645SerialServer` per serial port of its DL/T 645
  meters, each served on the path ``serial_ports`` maps the site's port to (the other
  end of a pty pair in tests; a port without one is not served), paced at the line's
  baud rate;
* one :class:`~.dlt645_server.Dlt645Server` (a transparent gateway) per ``host:port``
  of the site's DL/T 645 meters behind a gateway;
* an :class:`~.mqtt_publisher.MqttPublisher` for the MQTT devices;
* the ground truth, written as JSON to ``truth_path`` every ``truth_interval_s`` wall
  seconds and on exit;
* the faults of ``simulation.faults`` (:mod:`.faults`): counter faults are in the
  plant's values; a Modbus unit or a DL/T 645 meter in a gap gets no replies (checked
  before every request); a ``closed`` gap closes and reopens its endpoint at the physics ticks;
  exception codes, word swaps, torn reads and spikes are set on the servers and banks
  before every request; a ``single_connection`` device's endpoint serves one client
  at a time; MQTT gaps, late, duplicate, skewed and malformed messages are the
  publisher's.

Time comes only from the injected clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Mapping
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any

from zerocarbon.clock import Clock
from zerocarbon.config import Dlt645Device, ModbusRtuDevice, ModbusTcpDevice, SiteConfig
from zerocarbon.ingest.serial_link import SerialSettings
from zerocarbon.simulators.dlt645_server import (
    Dlt645Line,
    Dlt645SerialServer,
    Dlt645Server,
    FaultKind,
)
from zerocarbon.simulators.ground_truth import GroundTruth
from zerocarbon.simulators.modbus_server import ModbusTcpServer
from zerocarbon.simulators.mqtt_publisher import MqttPublisher
from zerocarbon.simulators.plant import PlantModel
from zerocarbon.simulators.register_bank import RegisterBank
from zerocarbon.simulators.rtu_server import RtuServer
from zerocarbon.tasks import cancel_and_wait

log = logging.getLogger(__name__)


class PlantSimulator:
    """The plant of ``site`` on ``clock``, served over Modbus TCP and MQTT.

    Use as ``async with PlantSimulator(site, clock) as sim:``; ``sim.plant`` and
    ``sim.ground_truth`` may be read at any time.

    Parameters
    ----------
    site : SiteConfig
        Devices, endpoints and simulation parameters.
    clock : Clock
        The only source of time (e.g. :class:`zerocarbon.clock.ScaledClock`).
    mqtt_url : str, optional
        Broker for the MQTT devices, overriding ``site.mqtt.url``.
    truth_path : Path, optional
        Where to write the ground-truth JSON.
    truth_interval_s : float
        Wall seconds between ground-truth writes.
    serial_ports : Mapping[str, str], optional
        For each serial port of the site file, the path to serve its devices on.
    """

    def __init__(
        self,
        site: SiteConfig,
        clock: Clock,
        *,
        mqtt_url: str | None = None,
        truth_path: Path | None = None,
        truth_interval_s: float = 5.0,
        serial_ports: Mapping[str, str] | None = None,
    ) -> None:
        self.site = site
        self.serial_ports = dict(serial_ports or {})
        self.clock = clock
        self.truth_path = truth_path
        self.truth_interval_s = truth_interval_s
        self.plant = PlantModel(site, clock.now_s())
        self.faults = self.plant.faults
        self._min_sync_s = self.plant.tick_s / 10.0
        self.banks: dict[str, RegisterBank] = {}
        self.servers: list[ModbusTcpServer] = []
        # device -> server, unit (Modbus TCP and RTU)
        self._unit_of: dict[str, tuple[ModbusTcpServer | RtuServer, int]] = {}
        self.rtu_servers: list[RtuServer] = []
        self.dlt645_servers: list[Dlt645Server | Dlt645SerialServer] = []
        self._meter_of: dict[str, tuple[Dlt645Line, str]] = {}  # device -> line, address
        self._silent_meters: set[str] = set()
        self.publisher: MqttPublisher | None = None
        if site.mqtt_devices:
            self.publisher = MqttPublisher(
                site, self.plant, clock, url=mqtt_url, sync=self.sync, faults=self.faults
            )
        self._encoded_steps = -1
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def ground_truth(self) -> GroundTruth:
        return self.plant.ground_truth

    def sync(self) -> None:
        """Advance the plant to the clock (unless it is less than tick/10 behind) and
        re-encode the register banks if it moved."""
        now_s = self.clock.now_s()
        if now_s - self.plant.now_s >= self._min_sync_s:
            self.plant.advance(now_s)
        if self.faults.active:  # word swaps, torn reads, spikes: before encoding
            for device_id, bank in self.banks.items():
                self.faults.apply_to_bank(device_id, bank, now_s)
        if self.plant.steps != self._encoded_steps:
            for device_id, bank in self.banks.items():
                bank.update(self.plant.values(device_id))
            self._encoded_steps = self.plant.steps
        for device_id, (server, unit_id) in self._unit_of.items():
            server.set_offline(unit_id, self.faults.silent(device_id, now_s))
            server.set_exception(unit_id, self.faults.exception_code(device_id, now_s))
        for device_id, (line, address) in self._meter_of.items():
            silent = self.faults.silent(device_id, now_s)
            if silent != (device_id in self._silent_meters):
                line.set_fault(address, FaultKind.NO_ANSWER if silent else None)
                self._silent_meters.symmetric_difference_update({device_id})

    async def _switch_endpoints(self) -> None:
        """Close the endpoints of devices in a ``closed`` gap; reopen them after it."""
        now_s = self.clock.now_s()
        for server in self.servers:
            closed = any(
                self.faults.closed(device_id, now_s)
                for device_id, (s, _unit) in self._unit_of.items()
                if s is server
            )
            if closed and server.listening:
                server.suspend()
            elif not closed and not server.listening:
                try:
                    await server.resume()
                except OSError as exc:  # retried at the next tick
                    log.warning("cannot reopen %s after a gap: %s", server.endpoint, exc)

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        by_endpoint: dict[tuple[str, int], list[ModbusTcpDevice]] = {}
        for device in self.site.modbus_devices:
            by_endpoint.setdefault(device.endpoint, []).append(device)
            profile = self.site.profile_of(device)
            self.banks[device.id] = RegisterBank(profile, device.max_gap_registers)
            self.faults.attach_bank(device.id, self.banks[device.id], self.clock.now_s)
        self._encoded_steps = -1
        self.sync()
        try:
            for (host, port), devices in by_endpoint.items():
                units = {d.device_id: self.banks[d.id] for d in devices}
                single = any(self.faults.single_connection(d.id) for d in devices)
                server = ModbusTcpServer(
                    host, port, units, before_request=self.sync, single_connection=single
                )
                for d in devices:
                    self._unit_of[d.id] = (server, d.device_id)
                try:
                    await server.start()
                except OSError as exc:
                    names = ", ".join(d.id for d in devices)
                    raise OSError(f"cannot serve {names} on {host}:{port}: {exc}") from exc
                self.servers.append(server)
            await self._start_rtu_servers()
            await self._start_dlt645_servers()
        except BaseException:
            await self._close_servers()
            raise
        self.sync()  # units in a gap at the start are silent from the first request
        self._spawn(self._physics_loop(), "physics")
        if self.publisher is not None:
            self._spawn(self.publisher.run(), "mqtt-publisher")
        if self.truth_path is not None:
            self._spawn(self._truth_loop(), "ground-truth")
        log.info("%s", self.describe())

    def _serial_path(self, port: str, device_ids: list[str]) -> str | None:
        path = self.serial_ports.get(port)
        if path is None:
            log.warning(
                "no path to serve serial port %s on: %s not simulated", port, ", ".join(device_ids)
            )
        return path

    async def _start_rtu_servers(self) -> None:
        by_port: dict[str, list[ModbusRtuDevice]] = {}
        for device in self.site.modbus_rtu_devices:
            by_port.setdefault(device.serial_port, []).append(device)
        for port, devices in by_port.items():
            path = self._serial_path(port, [d.id for d in devices])
            if path is None:
                continue
            for d in devices:
                self.banks[d.id] = RegisterBank(self.site.profile_of(d), d.max_gap_registers)
                self.faults.attach_bank(d.id, self.banks[d.id], self.clock.now_s)
            self._encoded_steps = -1
            self.sync()
            first = devices[0]  # the site file checked that they agree on the line
            settings = SerialSettings(first.baudrate, first.bytesize, first.parity, first.stopbits)
            units = {d.device_id: self.banks[d.id] for d in devices}
            server = RtuServer(path, units, settings, before_request=self.sync)
            await server.start()
            self.rtu_servers.append(server)
            for d in devices:
                self._unit_of[d.id] = (server, d.device_id)

    def _meter_source(self, device_id: str) -> Mapping[str, float]:
        self.sync()
        return self.plant.values(device_id)

    async def _start_dlt645_servers(self) -> None:
        by_link: dict[str, list[Dlt645Device]] = {}
        for device in self.site.dlt645_devices:
            by_link.setdefault(device.link, []).append(device)
        for link, meters in by_link.items():
            sources = {m.address: partial(self._meter_source, m.id) for m in meters}
            first = meters[0]
            server: Dlt645Server | Dlt645SerialServer
            if first.serial_port is None:
                host, port = first.endpoint
                server = Dlt645Server(host, port, sources)
            else:
                path = self._serial_path(link, [m.id for m in meters])
                if path is None:
                    continue
                settings = SerialSettings(
                    first.baudrate, first.bytesize, first.parity, first.stopbits
                )
                server = Dlt645SerialServer(path, sources, settings)
            try:
                await server.start()
            except OSError as exc:
                names = ", ".join(m.id for m in meters)
                raise OSError(f"cannot serve {names} on {link}: {exc}") from exc
            self.dlt645_servers.append(server)
            for m in meters:
                self._meter_of[m.id] = (server, m.address.upper())

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task, result in zip(tasks, await cancel_and_wait(tasks), strict=True):
            if result is not None:
                log.error("simulator task %s had failed: %r", task.get_name(), result)
        await self._close_servers()
        self.sync()
        self.write_truth()

    async def __aenter__(self) -> PlantSimulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def describe(self) -> str:
        """One line per endpoint and topic served."""
        lines = [f"simulated plant {self.site.site.name!r}:"]
        for server in self.servers:
            units = ", ".join(
                f"unit {unit_id} {device_id} ({bank.profile.profile.name})"
                for unit_id, bank in sorted(server.units.items())
                for device_id, b in self.banks.items()
                if b is bank
            )
            lines.append(f"  modbus tcp {server.endpoint}: {units}")
        for rtu in self.rtu_servers:
            units = ", ".join(
                f"unit {unit_id} {device_id}"
                for device_id, (s, unit_id) in sorted(self._unit_of.items())
                if s is rtu
            )
            lines.append(f"  modbus rtu {rtu.port} ({rtu.settings.describe()}): {units}")
        for line in self.dlt645_servers:
            meters = ", ".join(
                f"{address} {device_id}"
                for device_id, (s, address) in sorted(self._meter_of.items())
                if s is line
            )
            lines.append(f"  dl/t 645 {line.name}: {meters}")
        if self.publisher is not None:
            for device in self.publisher.devices:
                lines.append(f"  mqtt {self.publisher.url} {device.source} ({device.id})")
        if self.truth_path is not None:
            lines.append(f"  ground truth -> {self.truth_path}")
        return "\n".join(lines)

    def write_truth(self) -> None:
        """Write the ground truth to ``truth_path`` now (no-op without one)."""
        if self.truth_path is None:
            return
        try:
            self.ground_truth.save(self.truth_path)
        except OSError as exc:
            log.error("cannot write the ground truth to %s: %s", self.truth_path, exc)

    # --- tasks -----------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=f"simulator-{name}"))

    async def _physics_loop(self) -> None:
        closes = self.faults.closes_endpoints
        while True:
            self.sync()
            if closes:
                await self._switch_endpoints()
            await self.clock.sleep(self.plant.tick_s)

    async def _truth_loop(self) -> None:
        while True:
            await asyncio.sleep(self.truth_interval_s)
            self.write_truth()

    async def _close_servers(self) -> None:
        servers, self.servers = self.servers, []
        rtu_servers, self.rtu_servers = self.rtu_servers, []
        dlt645_servers, self.dlt645_servers = self.dlt645_servers, []
        self._unit_of.clear()
        self._meter_of.clear()
        self._silent_meters.clear()
        for server in servers:
            await server.close()
        for rtu in rtu_servers:
            await rtu.close()
        for line in dlt645_servers:
            await line.close()


async def run_simulator(
    site: SiteConfig,
    clock: Clock,
    *,
    mqtt_url: str | None = None,
    truth_path: Path | None = None,
    serial_ports: Mapping[str, str] | None = None,
) -> None:
    """Serve the simulated plant until cancelled (logs what it serves at start)."""
    async with PlantSimulator(
        site, clock, mqtt_url=mqtt_url, truth_path=truth_path, serial_ports=serial_ports
    ):
        await asyncio.Event().wait()
