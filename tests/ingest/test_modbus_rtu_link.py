"""The link scheduler over the Modbus RTU transport: units on one pty line polled in
sequence, values decoded from the simulator's banks; a unit that is absent does not
take the line down for the others (one silent unit is not a silent link)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from tests.serial_support import PtyPair
from zerocarbon.batch import ReadingBatch, SeriesRegistry
from zerocarbon.clock import ScaledClock
from zerocarbon.config import ModbusRtuDevice
from zerocarbon.ingest.modbus.collector import ModbusLinkScheduler
from zerocarbon.ingest.modbus.rtu_transport import ModbusRtuTransport
from zerocarbon.ingest.serial_link import SerialSettings
from zerocarbon.metering.profile import load_profile
from zerocarbon.simulators.register_bank import RegisterBank
from zerocarbon.simulators.rtu_server import RtuServer

START = datetime(2026, 6, 21, 2, 0, tzinfo=UTC)
LINE = SerialSettings(baudrate=115_200, parity="E")
VALUES = {"voltage_v": 231.5, "frequency_hz": 50.0, "energy_import_kwh": 1024.5}
PROFILE = load_profile("eastron_sdm630")


def _device(device_id: str, unit: int, timeout_s: float = 1.0) -> ModbusRtuDevice:
    return ModbusRtuDevice.model_validate(
        {
            "id": device_id,
            "role": "load",
            "protocol": "modbus_rtu",
            "profile": "eastron_sdm630",
            "serial_port": "unused",
            "device_id": unit,
            "timeout_s": timeout_s,
            "retries": 1,
        }
    )


class _Line:
    """Units 1 and 2 served on ``pair.a``; a scheduler for ``devices`` on ``pair.b``."""

    def __init__(self, pair: PtyPair, devices: Sequence[ModbusRtuDevice]) -> None:
        bank = RegisterBank(PROFILE, gap_fill_registers=10)
        bank.update(VALUES)
        self.registry = SeriesRegistry([d.id for d in devices])
        self.batches: list[ReadingBatch] = []
        self.server = RtuServer(pair.a, {1: bank, 2: bank}, LINE, pace=None)
        self.transport = ModbusRtuTransport(pair.b, LINE)
        self.scheduler = ModbusLinkScheduler(
            self.transport,
            [(d, PROFILE) for d in devices],
            ScaledClock(START, speed=50.0),  # 1 s polls every 20 ms
            self._sink,
            self.registry,
        )

    async def _sink(self, batch: ReadingBatch, ack: Callable[[], None] | None = None) -> None:
        self.batches.append(batch)

    async def run_until(self, polls: dict[str, int]) -> None:
        async with self.server:
            task = asyncio.create_task(self.scheduler.run())
            try:
                async with asyncio.timeout(20):
                    stats = self.scheduler.stats()
                    while any(stats[d].polls < n for d, n in polls.items()):
                        await asyncio.sleep(0.01)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def values(self) -> dict[tuple[str, str], float]:
        readings = [r for b in self.batches for r in b.readings(self.registry)]
        return {(r.device, r.metric): r.value for r in readings}


async def test_units_on_one_line(pty_pair: PtyPair) -> None:
    line = _Line(pty_pair, [_device("meter_1", 1), _device("meter_2", 2)])
    await line.run_until({"meter_1": 3, "meter_2": 3})
    stats = line.scheduler.stats()
    for name in ("meter_1", "meter_2"):
        assert stats[name].available and stats[name].errors == stats[name].timeouts == 0
    # the stop may cut the one exchange in flight: its answer sent, never taken
    assert line.server.answers - 1 <= line.transport.stats.answers <= line.server.answers
    assert line.transport.stats.timeouts == line.server.ignored_frames == 0
    values = line.values()
    for metric, value in VALUES.items():
        assert values[("meter_1", metric)] == value  # float32 holds these exactly
        assert values[("meter_2", metric)] == value


async def test_an_absent_unit_does_not_disturb_the_others(pty_pair: PtyPair) -> None:
    devices = [_device("meter_1", 1), _device("meter_2", 2), _device("absent", 3, 0.05)]
    line = _Line(pty_pair, devices)
    await line.run_until({"meter_1": 3, "meter_2": 3, "absent": 2})
    stats = line.scheduler.stats()
    absent = stats["absent"]
    assert not absent.available and absent.timeouts >= 2 and absent.retried_requests >= 1
    timeouts = line.transport.stats.timeouts
    assert timeouts >= absent.timeouts
    assert timeouts <= line.server.ignored_frames <= timeouts + 1  # + one cut by the stop
    for name in ("meter_1", "meter_2"):
        assert stats[name].errors == 0, stats[name]
    assert not any(device == "absent" for device, _ in line.values())
