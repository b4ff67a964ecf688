from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.client.mixin import ModbusClientMixin

from tests.simulators.conftest import MIDNIGHT_S
from zerocarbon.config import ModbusTcpDevice, SiteConfig
from zerocarbon.metering.profile import Point, RegisterTable, load_profile
from zerocarbon.metering.registers import WordOrder
from zerocarbon.netutil import free_tcp_port
from zerocarbon.simulators.modbus_server import ModbusTcpServer
from zerocarbon.simulators.plant import PlantModel
from zerocarbon.simulators.register_bank import RegisterBank


@dataclass
class Served:
    site: SiteConfig
    plant: PlantModel
    banks: dict[str, RegisterBank]
    servers: list[ModbusTcpServer]


@pytest.fixture
async def served(local_site: SiteConfig) -> AsyncIterator[Served]:
    """The demo plant at 10:00 local, each Modbus device on its own free port (strict)."""
    plant = PlantModel(local_site, MIDNIGHT_S + 10 * 3600)
    plant.advance(plant.now_s + 600.0)
    banks: dict[str, RegisterBank] = {}
    servers = []
    for device in local_site.modbus_devices:
        banks[device.id] = RegisterBank(local_site.profile_of(device))
        banks[device.id].update(plant.values(device.id))
        server = ModbusTcpServer(device.host, device.port, {device.device_id: banks[device.id]})
        await server.start()
        servers.append(server)
    yield Served(local_site, plant, banks, servers)
    for server in servers:
        await server.close()


async def _read(
    client: AsyncModbusTcpClient, point: Point, unit: int, count: int | None = None
) -> list[int]:
    reader = (
        client.read_input_registers
        if point.table is RegisterTable.INPUT
        else client.read_holding_registers
    )
    response = await reader(point.address, count=count or point.register_count, device_id=unit)
    assert not response.isError(), response
    return list(response.registers)


async def test_pymodbus_reads_plant_values_for_every_demo_profile(served: Served) -> None:
    checked = set()
    for device in served.site.modbus_devices:
        assert isinstance(device, ModbusTcpDevice)
        profile = served.site.profile_of(device)
        bank = served.banks[device.id]
        expected = served.plant.values(device.id)
        client = AsyncModbusTcpClient(device.host, port=device.port, timeout=2, retries=0)
        assert await client.connect()
        try:
            for point in profile.metric_points:
                assert point.metric is not None
                registers = await _read(client, point, device.device_id)
                data_type = ModbusClientMixin.DATATYPE[point.type.name]
                order: Literal["big", "little"] = (
                    "little" if profile.word_order_of(point) is WordOrder.LITTLE else "big"
                )
                raw = client.convert_from_registers(registers, data_type, word_order=order)
                assert isinstance(raw, int | float)
                sf = 0
                if point.scale_factor is not None:
                    sf_registers = await _read(
                        client, profile.point(point.scale_factor), device.device_id
                    )
                    sf_raw = client.convert_from_registers(
                        sf_registers, ModbusClientMixin.DATATYPE.INT16
                    )
                    assert isinstance(sf_raw, int)
                    sf = sf_raw
                value = raw * point.scale * 10.0**sf
                want = expected[point.metric]
                assert value == pytest.approx(want, abs=bank.resolution(point, want) + 1e-9), (
                    device.id,
                    point.name,
                )
                checked.add((profile.profile.name, point.metric))
        finally:
            client.close()
    assert {name for name, _ in checked} == {
        "eastron_sdm630",
        "sunspec_inverter_103",
        "battery_controller",
    }
    assert len(checked) == 13


def _request(transaction_id: int, unit: int, function: int, address: int, count: int) -> bytes:
    return struct.pack(">HHHBBHH", transaction_id, 0, 6, unit, function, address, count)


async def _reply(reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
    header = await asyncio.wait_for(reader.readexactly(7), 5.0)
    transaction_id, protocol_id, length, unit = struct.unpack(">HHHB", header)
    assert protocol_id == 0
    return transaction_id, unit, await reader.readexactly(length - 1)


@pytest.fixture
async def one_endpoint() -> AsyncIterator[tuple[ModbusTcpServer, dict[int, RegisterBank]]]:
    """Three units behind one port (like a gateway): 1 meter, 2 inverter, 7 battery."""
    units = {
        1: RegisterBank(load_profile("eastron_sdm630")),
        2: RegisterBank(load_profile("sunspec_inverter_103")),
        7: RegisterBank(load_profile("battery_controller")),
    }
    units[1].update({"voltage_v": 230.5, "active_power_kw": 321.0})
    units[7].update({"state_of_charge_pct": 55.5})
    server = ModbusTcpServer("127.0.0.1", free_tcp_port(), units)
    await server.start()
    yield server, units
    await server.close()


async def test_pipelined_requests_in_one_write_get_every_reply(
    one_endpoint: tuple[ModbusTcpServer, dict[int, RegisterBank]],
) -> None:
    server, _units = one_endpoint
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(
            _request(11, 1, 4, 0, 2) + _request(12, 7, 3, 0, 1) + _request(13, 2, 3, 40000, 4)
        )
        await writer.drain()
        replies = [await _reply(reader) for _ in range(3)]
        assert [(tid, unit) for tid, unit, _ in replies] == [(11, 1), (12, 7), (13, 2)]
        (_, _, voltage), (_, _, soc), (_, _, marker) = replies
        assert voltage[:2] == bytes([4, 4])
        assert struct.unpack(">f", voltage[2:])[0] == pytest.approx(230.5)
        assert soc == bytes([3, 2]) + struct.pack(">H", 555)
        assert marker[2:6] == b"SunS"
    finally:
        writer.close()
        await writer.wait_closed()


async def test_partial_frames_are_reassembled(
    one_endpoint: tuple[ModbusTcpServer, dict[int, RegisterBank]],
) -> None:
    server, _units = one_endpoint
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        data = _request(21, 1, 4, 52, 2) + _request(22, 1, 4, 0, 2)
        for chunk in (data[:3], data[3:9], data[9:15], data[15:]):  # frames cut anywhere
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(0.01)  # let the server see each piece on its own
        first, second = await _reply(reader), await _reply(reader)
        assert (first[0], second[0]) == (21, 22)
        assert struct.unpack(">f", first[2][2:])[0] == pytest.approx(321000.0)  # W
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize(
    ("unit", "function", "address", "count", "code"),
    [
        (1, 6, 0, 1, 0x01),  # write single register: illegal function
        (1, 1, 0, 1, 0x01),  # read coils: illegal function
        (1, 4, 2, 2, 0x02),  # input registers 2-3 are not mapped
        (1, 4, 0, 4, 0x02),  # 0-1 mapped, 2-3 not
        (1, 3, 0, 2, 0x02),  # the meter has no holding registers
        (2, 3, 40004, 1, 0x02),  # beyond the SunSpec marker
        (1, 4, 65535, 2, 0x02),  # past the end of the address space
        (1, 4, 0, 0, 0x03),  # quantity 0
        (1, 4, 0, 126, 0x03),  # quantity above 125
        (9, 4, 0, 2, 0x0B),  # a unit this endpoint does not serve
    ],
)
async def test_exception_responses(
    one_endpoint: tuple[ModbusTcpServer, dict[int, RegisterBank]],
    unit: int,
    function: int,
    address: int,
    count: int,
    code: int,
) -> None:
    server, _units = one_endpoint
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(_request(99, unit, function, address, count))
        await writer.drain()
        assert await _reply(reader) == (99, unit, bytes([function | 0x80, code]))
    finally:
        writer.close()
        await writer.wait_closed()


async def test_pymodbus_sees_exception_codes(
    one_endpoint: tuple[ModbusTcpServer, dict[int, RegisterBank]],
) -> None:
    server, _units = one_endpoint
    client = AsyncModbusTcpClient("127.0.0.1", port=server.port, timeout=2, retries=0)
    assert await client.connect()
    try:
        response = await client.read_input_registers(2, count=2, device_id=1)
        assert response.isError() and response.exception_code == 2
        good = await client.read_input_registers(70, count=6, device_id=1)
        assert not good.isError() and len(good.registers) == 6
    finally:
        client.close()


async def test_malformed_frames(
    one_endpoint: tuple[ModbusTcpServer, dict[int, RegisterBank]],
) -> None:
    server, _units = one_endpoint
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        not_modbus = struct.pack(">HHHBBHH", 1, 7, 6, 1, 4, 0, 2)  # protocol id 7: discarded
        short_pdu = struct.pack(">HHHBBH", 2, 0, 4, 1, 4, 0)  # read without a quantity
        writer.write(not_modbus + short_pdu + _request(3, 1, 4, 0, 2))
        await writer.drain()
        assert await _reply(reader) == (2, 1, bytes([0x84, 0x03]))
        assert (await _reply(reader))[0] == 3
        writer.write(struct.pack(">HHHB", 4, 0, 0, 1))  # length 0: framing lost -> closed
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5.0) == b""
        assert server.framing_errors == 1
    finally:
        writer.close()
        await writer.wait_closed()


async def test_offline_unit_stays_silent(
    one_endpoint: tuple[ModbusTcpServer, dict[int, RegisterBank]],
) -> None:
    server, _units = one_endpoint
    server.set_offline(7)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(_request(1, 7, 3, 0, 1) + _request(2, 1, 4, 0, 2))
        await writer.drain()
        assert (await _reply(reader))[:2] == (2, 1)  # the request to unit 7 got nothing
        server.set_offline(7, False)
        writer.write(_request(3, 7, 3, 0, 1))
        await writer.drain()
        assert (await _reply(reader))[:2] == (3, 7)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_close_drops_connections() -> None:
    bank = RegisterBank(load_profile("battery_controller"))
    server = ModbusTcpServer("127.0.0.1", 0, {1: bank})
    await server.start()
    assert server.port != 0
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    await server.close()
    assert await asyncio.wait_for(reader.read(), 5.0) == b""
    writer.close()
    await writer.wait_closed()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", server.port)


async def test_set_exception_answers_every_request_with_the_code(
    one_endpoint: tuple[ModbusTcpServer, dict[int, RegisterBank]],
) -> None:
    server, _units = one_endpoint
    server.set_exception(1, 0x06)  # server device busy
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(_request(1, 1, 4, 0, 2) + _request(2, 7, 3, 0, 1))
        await writer.drain()
        assert await _reply(reader) == (1, 1, bytes([0x84, 0x06]))
        assert (await _reply(reader))[:2] == (2, 7)  # other units are unaffected
        server.set_exception(1, None)
        writer.write(_request(3, 1, 4, 0, 2))
        await writer.drain()
        tid, unit, pdu = await _reply(reader)
        assert (tid, unit, pdu[:2]) == (3, 1, bytes([4, 4]))
        assert server.exceptions == 1
    finally:
        writer.close()
        await writer.wait_closed()
    with pytest.raises(ValueError):
        server.set_exception(1, 0)


async def test_single_connection_refuses_a_second_client() -> None:
    bank = RegisterBank(load_profile("battery_controller"))
    server = ModbusTcpServer("127.0.0.1", 0, {1: bank}, single_connection=True)
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        reader2, writer2 = await asyncio.open_connection("127.0.0.1", server.port)
        assert await asyncio.wait_for(reader2.read(), 5.0) == b""  # closed at once
        writer2.close()
        assert server.refused_connections == 1
        writer.write(_request(5, 1, 3, 0, 1))  # the first client is still served
        await writer.drain()
        assert (await _reply(reader))[:2] == (5, 1)
        writer.close()
        await writer.wait_closed()
        for _ in range(100):  # the server sees the close after its next loop turn
            if server.connections == 0:
                break
            await asyncio.sleep(0.01)
        reader3, writer3 = await asyncio.open_connection("127.0.0.1", server.port)
        writer3.write(_request(6, 1, 3, 0, 1))
        await writer3.drain()
        assert (await _reply(reader3))[:2] == (6, 1)
        assert server.refused_connections == 1
        writer3.close()
        await writer3.wait_closed()
        server.single_connection = False  # settable: now a second client is served
        reader4, writer4 = await asyncio.open_connection("127.0.0.1", server.port)
        reader5, writer5 = await asyncio.open_connection("127.0.0.1", server.port)
        writer4.write(_request(7, 1, 3, 0, 1))
        writer5.write(_request(8, 1, 3, 0, 1))
        assert (await _reply(reader4))[0] == 7
        assert (await _reply(reader5))[0] == 8
        for w in (writer4, writer5):
            w.close()
            await w.wait_closed()
    finally:
        await server.close()


async def test_read_hook_rewrites_the_registers_sent(
    one_endpoint: tuple[ModbusTcpServer, dict[int, RegisterBank]],
) -> None:
    server, units = one_endpoint
    seen: list[tuple[int, RegisterTable, int, list[int]]] = []

    def tear(unit: int, table: RegisterTable, address: int, registers: list[int]) -> list[int]:
        seen.append((unit, table, address, list(registers)))
        return [0xDEAD] + registers[1:]

    server.read_hook = tear
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(_request(1, 1, 4, 0, 2))
        await writer.drain()
        _tid, _unit, pdu = await _reply(reader)
        original = units[1].read(RegisterTable.INPUT, 0, 2)
        assert original is not None
        assert seen == [(1, RegisterTable.INPUT, 0, original)]
        assert pdu == bytes([4, 4]) + struct.pack(">HH", 0xDEAD, original[1])

        server.read_hook = lambda unit, table, address, registers: registers[:1]  # wrong size
        writer.write(_request(2, 1, 4, 0, 2))
        await writer.drain()
        assert await _reply(reader) == (2, 1, bytes([0x84, 0x04]))
        server.read_hook = None
        writer.write(_request(3, 1, 4, 0, 2))
        await writer.drain()
        assert (await _reply(reader))[2] == bytes([4, 4]) + struct.pack(">2H", *original)
    finally:
        writer.close()
        await writer.wait_closed()
