"""Device faults seen by a Modbus TCP client of the running simulator (manual clock):
exception codes, a single-connection endpoint, word swaps, torn reads, spikes and stuck
values."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from tests.simulators.clocks import ManualClock
from tests.simulators.test_faults_modbus import START_S, Served, modbus_site
from zerocarbon.metering.profile import RegisterTable
from zerocarbon.simulators.faults import FaultKind
from zerocarbon.simulators.runner import PlantSimulator

CARRY_KWH = 65536 * 0.01  # sub_meter: uint32 x 0.01 kWh
FAULTS: dict[str, Any] = {
    "exception_codes": [
        {"device": "battery", "start_s": 30, "duration_s": 20, "code": 6},
        {"device": "battery", "start_s": 60, "duration_s": 10},  # 04 by default
    ],
    "single_connection": [{"device": "pv_roof"}],
    "word_swaps": [
        {"device": "sub_meter", "metric": "energy_export_kwh", "start_s": 100, "duration_s": 50}
    ],
    "torn_reads": [{"device": "sub_meter", "metric": "energy_import_kwh", "below_carry": 1.0}],
    "spikes": [{"device": "grid_meter", "at_s": [80], "factor": 10.0}],
    "stuck_values": [{"device": "sub_meter", "metric": "active_power_kw", "start_s": 200}],
}


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    site = modbus_site(FAULTS)
    clock = ManualClock(START_S)
    async with PlantSimulator(site, clock) as sim:
        await clock.wait_sleeping(1)  # the physics loop
        yield Served(sim, clock, site)


async def _exception_code(served: Served, device_id: str) -> int | None:
    """The exception code a read of the device's first point gets (None: answered)."""
    device = served.device(device_id)
    point = served.site.profile_of(device).metric_points[0]
    client = AsyncModbusTcpClient(device.host, port=device.port, timeout=2.0, retries=0)
    assert await client.connect()
    try:
        reader = (
            client.read_input_registers
            if point.table is RegisterTable.INPUT
            else client.read_holding_registers
        )
        response = await reader(
            point.address, count=point.register_count, device_id=device.device_id
        )
        return int(response.exception_code) if response.isError() else None
    finally:
        client.close()


async def test_exception_codes_in_their_windows(served: Served) -> None:
    assert await _exception_code(served, "battery") is None
    await served.at(30)
    assert await _exception_code(served, "battery") == 0x06  # server device busy
    assert await _exception_code(served, "grid_meter") is None  # its own endpoint
    await served.at(50)
    assert await _exception_code(served, "battery") is None
    await served.at(65)
    assert await _exception_code(served, "battery") == 0x04  # server device failure
    await served.at(70)
    assert await _exception_code(served, "battery") is None
    assert served.sim.ground_truth.faults("battery") == {
        served.sim.ground_truth.fault_hours("battery")[0]: {FaultKind.EXCEPTION_CODE}
    }


async def test_single_connection_endpoint_closes_a_second_client(served: Served) -> None:
    device = served.device("pv_roof")
    server = next(s for s in served.sim.servers if s.port == device.port)
    assert server.single_connection
    _r1, first = await asyncio.open_connection(device.host, device.port)
    try:
        await served.read("battery", "state_of_charge_pct")  # another endpoint: not limited
        reader, second = await asyncio.open_connection(device.host, device.port)
        async with asyncio.timeout(5):
            assert await reader.read() == b""  # closed by the server at once
        second.close()
        assert server.refused_connections == 1
        with pytest.raises((ModbusException, ConnectionRefusedError)):
            await served.read("pv_roof", "active_power_kw", timeout_s=0.5)
        assert server.refused_connections >= 2  # pymodbus tries again: closed each time
        assert server.connections == 1
    finally:
        first.close()
        await first.wait_closed()
    async with asyncio.timeout(5):
        while server.connections:
            await asyncio.sleep(0.01)
    refused = server.refused_connections
    assert await served.read("pv_roof", "active_power_kw") >= 0.0  # the one connection
    assert server.refused_connections == refused


def _swapped_int32(value: float, unit: float) -> float:
    """``value`` on an int32 register of ``unit`` per count, read with its words swapped."""
    raw = round(value / unit) & 0xFFFF_FFFF
    swapped = ((raw & 0xFFFF) << 16) | (raw >> 16)
    return (swapped - (1 << 32) if swapped >= 1 << 31 else swapped) * unit


async def test_word_swap_serves_the_other_word_order(served: Served) -> None:
    key = ("sub_meter", "energy_export_kwh")  # int32 x 0.1 kWh; a load: it stays put
    await served.at(95)
    value = await served.read(*key)
    assert value == pytest.approx(served.sim.plant.counter_start(*key), abs=0.05)
    assert (round(value / 0.1) >> 16) != round(value / 0.1) & 0xFFFF  # swapping shows
    await served.at(100)
    assert await served.read(*key) == pytest.approx(_swapped_int32(value, 0.1))
    power_kw = await served.read("sub_meter", "active_power_kw")  # only the listed one
    assert power_kw == pytest.approx(served.sim.banks["sub_meter"].values["active_power_kw"])
    assert power_kw > 10.0
    await served.at(150)
    assert await served.read(*key) == pytest.approx(value)
    truth = served.sim.ground_truth
    assert FaultKind.WORD_SWAP in truth.faults("sub_meter")[truth.fault_hours("sub_meter")[0]]


async def test_torn_read_once_after_the_carry(served: Served) -> None:
    key = ("sub_meter", "energy_import_kwh")
    plant = served.sim.plant
    start = plant.counter_start(*key)
    assert start % CARRY_KWH == pytest.approx(CARRY_KWH - 1.0, abs=1e-6)
    values: list[tuple[float, float]] = []  # (read, true)
    offset = 0
    while plant.counted(*key) < 3.0:
        offset += 5
        await served.at(offset)
        values.append((await served.read(*key), start + plant.counted(*key)))
        assert offset < 300, "sub_meter did not count 3 kWh in 300 s"
    torn = [(read, true) for read, true in values if abs(read - true) > 1.0]
    assert len(torn) == 1
    read, true = torn[0]
    assert true - read == pytest.approx(CARRY_KWH, abs=0.02)  # old high word, new low
    bank = served.sim.banks["sub_meter"]
    assert [f.kind for f in bank.served] == ["torn_read"]
    assert (
        FaultKind.TORN_READ
        in served.sim.ground_truth.faults("sub_meter")[
            served.sim.ground_truth.fault_hours("sub_meter", FaultKind.TORN_READ)[0]
        ]
    )


async def test_spike_is_one_read(served: Served) -> None:
    key = ("grid_meter", "active_power_kw")
    await served.at(75)
    before = await served.read(*key)
    await served.at(80)
    spiked = await served.read(*key)
    again = await served.read(*key)
    assert abs(before) > 10.0
    assert spiked == pytest.approx(10.0 * again, rel=1e-5)
    await served.at(85)
    assert await served.read(*key) == pytest.approx(again, rel=0.2)
    assert served.sim.ground_truth.fault_hours("grid_meter", FaultKind.SPIKE)


async def test_stuck_value_holds(served: Served) -> None:
    key = ("sub_meter", "active_power_kw")
    seen = []
    for offset in range(180, 400, 20):
        await served.at(offset)
        seen.append(await served.read(*key))
    assert len(set(seen[:2])) == 2  # still moving at 180 and 200 s ...
    assert len(set(seen[1:])) == 1  # ... held from 200 s
