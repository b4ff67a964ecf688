"""Faults seen by a Modbus TCP client reading the running simulator (manual clock)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.client.mixin import ModbusClientMixin
from pymodbus.exceptions import ModbusException

from tests.simulators.clocks import ManualClock
from tests.simulators.conftest import MIDNIGHT_S
from tests.simulators.test_faults import HERE, site_data
from zerocarbon.config import ModbusTcpDevice, SiteConfig, parse_site
from zerocarbon.metering.profile import RegisterTable
from zerocarbon.metering.registers import WordOrder
from zerocarbon.simulators.endpoints import on_free_ports
from zerocarbon.simulators.faults import FaultKind
from zerocarbon.simulators.plant import PlantModel
from zerocarbon.simulators.runner import PlantSimulator

START_S = MIDNIGHT_S + 18 * 3600  # 18:00 local: grid import, some PV, lines running
FAULTS: dict[str, Any] = {
    "counter_resets": [{"device": "grid_meter", "at_s": 60}],
    "meter_replacements": [
        {"device": "pv_roof", "metric": "energy_generated_kwh", "at_s": 120, "new_value": 1234.5}
    ],
    "rollovers": [{"device": "sub_meter", "metric": "energy_import_kwh", "below_wrap": 3.0}],
    "backward_steps": [
        {"device": "grid_meter", "metric": "energy_import_kwh", "at_s": 200, "duration_s": 10}
    ],
    "gaps": [
        {"device": "sub_meter", "start_s": 240, "duration_s": 60},
        {"device": "pv_roof", "start_s": 320, "duration_s": 60, "mode": "closed"},
    ],
}


def modbus_site(faults: dict[str, Any] | None) -> SiteConfig:
    data = site_data(faults)
    data["devices"] = [d for d in data["devices"] if d["protocol"] == "modbus_tcp"]
    del data["mqtt"]
    return on_free_ports(parse_site(data, "<test site>", HERE))


@dataclass
class Served:
    sim: PlantSimulator
    clock: ManualClock
    site: SiteConfig

    def device(self, device_id: str) -> ModbusTcpDevice:
        device = self.site.device(device_id)
        assert isinstance(device, ModbusTcpDevice)
        return device

    async def at(self, offset_s: float) -> None:
        await self.clock.advance(START_S + offset_s)

    async def read(self, device_id: str, metric: str, timeout_s: float = 2.0) -> float:
        """The metric's engineering value as a pymodbus client reads it."""
        device = self.device(device_id)
        profile = self.site.profile_of(device)
        point = next(p for p in profile.metric_points if p.metric == metric)
        client = AsyncModbusTcpClient(device.host, port=device.port, timeout=timeout_s, retries=0)
        if not await client.connect():
            raise ConnectionRefusedError(f"{device.host}:{device.port}")
        try:
            reader = (
                client.read_input_registers
                if point.table is RegisterTable.INPUT
                else client.read_holding_registers
            )
            response = await reader(
                point.address, count=point.register_count, device_id=device.device_id
            )
            assert not response.isError(), response
            order: Literal["big", "little"] = (
                "little" if profile.word_order_of(point) is WordOrder.LITTLE else "big"
            )
            raw = client.convert_from_registers(
                response.registers, ModbusClientMixin.DATATYPE[point.type.name], word_order=order
            )
            assert isinstance(raw, int | float)
            return float(raw) * self.sim.banks[device_id].unit_value(point)
        finally:
            client.close()

    def counted(self, device_id: str, metric: str) -> float:
        return self.sim.plant.counted(device_id, metric)


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    site = modbus_site(FAULTS)
    clock = ManualClock(START_S)
    async with PlantSimulator(site, clock) as sim:
        await clock.wait_sleeping(1)  # the physics loop
        yield Served(sim, clock, site)


async def test_modbus_client_sees_every_counter_fault_and_gap(served: Served) -> None:
    grid = ("grid_meter", "energy_import_kwh")
    pv = ("pv_roof", "energy_generated_kwh")
    sub = ("sub_meter", "energy_import_kwh")
    plant = served.sim.plant
    float32 = 0.125  # float32 resolution near 1.2e6 kWh

    await served.at(10)
    top = 2**32 * 0.01
    assert top - 3.0 <= await served.read(*sub) < top  # uint32 x 0.01 kWh, near its wrap
    await served.at(50)
    assert await served.read(*grid) == pytest.approx(
        plant.counter_start(*grid) + served.counted(*grid), abs=float32
    )

    await served.at(60)  # reset: the counter restarts at 0
    grid_at_reset = served.counted(*grid)
    await served.at(100)
    assert await served.read(*grid) == pytest.approx(
        served.counted(*grid) - grid_at_reset, abs=1e-4
    )
    assert served.counted(*sub) > 3.0
    assert await served.read(*sub) == pytest.approx(served.counted(*sub) - 3.0, abs=0.01)

    await served.at(120)  # a new PV meter reading 1234.5 kWh
    pv_at_swap = served.counted(*pv)
    await served.at(180)
    assert await served.read(*pv) == pytest.approx(
        1234.5 + served.counted(*pv) - pv_at_swap, abs=1e-3
    )

    await served.at(195)
    before_step = await served.read(*grid)
    await served.at(205)  # 12 kWh lower than the true value for 10 s
    stepped = await served.read(*grid)
    assert stepped == pytest.approx(served.counted(*grid) - grid_at_reset - 12.0, abs=1e-3)
    assert stepped < before_step - 10.0
    await served.at(215)
    assert await served.read(*grid) == pytest.approx(
        served.counted(*grid) - grid_at_reset, abs=1e-3
    )

    await served.at(235)
    sub_before_gap = await served.read(*sub)
    await served.at(250)  # silent unit: the request times out, the others answer
    with pytest.raises(ModbusException):
        await served.read(*sub, timeout_s=0.3)
    assert await served.read("battery", "state_of_charge_pct") > 0.0
    await served.at(300)  # back, having counted all along
    sub_after_gap = await served.read(*sub)
    assert sub_after_gap - sub_before_gap > 1.0
    assert sub_after_gap == pytest.approx(served.counted(*sub) - 3.0, abs=0.01)

    await served.at(330)  # closed endpoint: connections refused
    with pytest.raises(ConnectionRefusedError):
        await served.read(*pv)
    await served.at(385)
    assert await served.read(*pv) == pytest.approx(
        1234.5 + served.counted(*pv) - pv_at_swap, abs=1e-3
    )

    truth = served.sim.ground_truth
    hour = truth.fault_hours("grid_meter")
    assert truth.faults("grid_meter") == {
        hour[0]: {FaultKind.COUNTER_RESET, FaultKind.BACKWARD_STEP}
    }
    assert truth.faults("pv_roof") == {hour[0]: {FaultKind.METER_REPLACEMENT, FaultKind.GAP}}
    assert truth.faults("sub_meter") == {hour[0]: {FaultKind.ROLLOVER, FaultKind.GAP}}
    assert truth.faults("battery") == {}


async def test_ground_truth_is_unchanged_by_the_faults(served: Served) -> None:
    await served.at(400)
    clean = PlantModel(modbus_site(None), START_S)
    clean.advance(START_S + 400)
    faulty = served.sim.ground_truth.to_dict()
    assert faulty.pop("faults")
    reference = clean.ground_truth.to_dict()
    assert reference.pop("faults") == {}
    assert faulty == reference
    assert served.sim.plant.steps == clean.steps == 80


async def test_gap_at_the_start_is_silent_from_the_first_request() -> None:
    site = modbus_site({"gaps": [{"device": "battery", "start_s": 0, "duration_s": 30}]})
    clock = ManualClock(START_S)
    async with PlantSimulator(site, clock) as sim:
        await clock.wait_sleeping(1)
        served = Served(sim, clock, site)
        with pytest.raises(ModbusException):
            await served.read("battery", "state_of_charge_pct", timeout_s=0.3)
        await asyncio.sleep(0)
        await served.at(30)
        assert await served.read("battery", "state_of_charge_pct") > 0.0
