"""Modbus RTU transport against the RTU simulator over a socat pty pair."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.serial_support import PtyPair
from zerocarbon.ingest.modbus.rtu_frame import encode_exception, encode_read_answer
from zerocarbon.ingest.modbus.rtu_transport import ModbusRtuTransport
from zerocarbon.ingest.modbus.transport import (
    READ_HOLDING_REGISTERS,
    READ_INPUT_REGISTERS,
    ModbusExceptionResponse,
    ModbusLinkDown,
    ModbusTimeout,
    ModbusTransport,
)
from zerocarbon.ingest.serial_link import SerialSettings, open_serial
from zerocarbon.metering.profile import RegisterTable, load_profile
from zerocarbon.simulators.register_bank import RegisterBank
from zerocarbon.simulators.rtu_server import RtuServer

SETTINGS = SerialSettings(baudrate=115_200, parity="E")
TIMEOUT_S = 1.0  # no test waits this out except where a timeout is under test
SHORT_TIMEOUT_S = 0.2


def _bank() -> RegisterBank:
    bank = RegisterBank(load_profile("eastron_sdm630"), gap_fill_registers=10)
    bank.update({"voltage_v": 231.5, "energy_import_kwh": 12345.5, "active_power_kw": 42.0})
    return bank


@pytest.fixture
async def line(pty_pair: PtyPair) -> AsyncIterator[tuple[RtuServer, ModbusRtuTransport]]:
    server = RtuServer(pty_pair.a, {3: _bank(), 4: _bank()}, SETTINGS, pace=None)
    transport = ModbusRtuTransport(pty_pair.b, SETTINGS)
    async with server:
        await transport.connect()
        try:
            yield server, transport
        finally:
            await transport.close()


def test_is_a_modbus_transport() -> None:
    transport: ModbusTransport = ModbusRtuTransport("/dev/null", SETTINGS)
    assert transport.max_in_flight == 1
    assert transport.name == "/dev/null"
    assert not transport.connected


async def test_reads_registers_of_two_units(
    line: tuple[RtuServer, ModbusRtuTransport],
) -> None:
    server, transport = line
    bank = server.units[3]
    for unit in (3, 4):
        got = await transport.read_registers(unit, READ_INPUT_REGISTERS, 0, 2, TIMEOUT_S)
        assert got == bank.read(RegisterTable.INPUT, 0, 2)
    got = await transport.read_registers(3, READ_INPUT_REGISTERS, 70, 6, TIMEOUT_S)
    assert got == bank.read(RegisterTable.INPUT, 70, 6)
    assert transport.stats.requests == transport.stats.answers == 3
    assert server.answers == 3
    assert transport.stats.bytes_received == server.bytes_sent == 2 * 9 + (5 + 12)


async def test_exception_answers(line: tuple[RtuServer, ModbusRtuTransport]) -> None:
    server, transport = line
    with pytest.raises(ModbusExceptionResponse) as unmapped:
        await transport.read_registers(3, READ_INPUT_REGISTERS, 1000, 2, TIMEOUT_S)
    assert (unmapped.value.function_code, unmapped.value.exception_code) == (4, 2)
    with pytest.raises(ModbusExceptionResponse) as holding:
        await transport.read_registers(3, READ_HOLDING_REGISTERS, 0, 2, TIMEOUT_S)
    assert holding.value.exception_code == 2  # the meter maps input registers only
    server.set_exception(4, 6)
    with pytest.raises(ModbusExceptionResponse) as busy:
        await transport.read_registers(4, READ_INPUT_REGISTERS, 0, 2, TIMEOUT_S)
    assert busy.value.exception_code == 6
    assert "unit 4" in str(busy.value)
    assert transport.stats.exceptions == server.exceptions == 3
    # the line still works after exceptions
    assert len(await transport.read_registers(3, READ_INPUT_REGISTERS, 0, 2, TIMEOUT_S)) == 2


async def test_unit_not_on_the_line_times_out(
    line: tuple[RtuServer, ModbusRtuTransport],
) -> None:
    server, transport = line
    with pytest.raises(ModbusTimeout, match="unit 9"):
        await transport.read_registers(9, READ_INPUT_REGISTERS, 0, 2, SHORT_TIMEOUT_S)
    assert server.ignored_frames == 1
    assert server.answers == 0
    assert transport.stats.timeouts == 1
    server.set_offline(3)
    with pytest.raises(ModbusTimeout):
        await transport.read_registers(3, READ_INPUT_REGISTERS, 0, 2, SHORT_TIMEOUT_S)
    server.set_offline(3, False)
    assert len(await transport.read_registers(3, READ_INPUT_REGISTERS, 0, 2, TIMEOUT_S)) == 2


async def test_illegal_function_from_the_server(pty_pair: PtyPair) -> None:
    server = RtuServer(pty_pair.a, {1: _bank()}, SETTINGS, pace=None)
    answer = server.handle(bytes((1, 0x2B, 0x0E, 0x01, 0x00, 0, 0)))
    assert answer == encode_exception(1, 0x2B, 1)
    answer = server.handle(bytes((1, 0x04, 0x00, 0x00, 0x00, 0x7E, 0, 0)))  # 126 registers
    assert answer == encode_exception(1, 0x04, 3)
    assert server.handle(bytes((0, 0x04, 0, 0, 0, 2, 0, 0))) is None  # broadcast


class _FakeUnit:
    """The far end of the pair driven by hand: reads a request, writes given bytes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def answer_with(self, *frames: bytes) -> bytes:
        request = await self.reader.readexactly(8)
        for frame in frames:
            self.writer.write(frame)
        await self.writer.drain()
        return request


@pytest.fixture
async def fake_line(pty_pair: PtyPair) -> AsyncIterator[tuple[_FakeUnit, ModbusRtuTransport]]:
    reader, writer = await open_serial(pty_pair.a, SETTINGS)
    transport = ModbusRtuTransport(pty_pair.b, SETTINGS)
    await transport.connect()
    try:
        yield _FakeUnit(reader, writer), transport
    finally:
        await transport.close()
        writer.close()


async def _read_with(
    fake: _FakeUnit, transport: ModbusRtuTransport, *frames: bytes, timeout_s: float = TIMEOUT_S
) -> list[int]:
    read = asyncio.create_task(transport.read_registers(5, READ_INPUT_REGISTERS, 0, 2, timeout_s))
    request = await fake.answer_with(*frames)
    assert request[:2] == bytes((5, 4))
    return await read


async def test_bad_crc_is_discarded_and_the_read_times_out(
    fake_line: tuple[_FakeUnit, ModbusRtuTransport],
) -> None:
    fake, transport = fake_line
    corrupt = bytearray(encode_read_answer(5, 4, [1, 2]))
    corrupt[-1] ^= 0xFF
    with pytest.raises(ModbusTimeout):
        await _read_with(fake, transport, bytes(corrupt), timeout_s=SHORT_TIMEOUT_S)
    assert transport.stats.bad_crc == 1
    assert transport.stats.answers == 0


async def test_frame_of_another_unit_is_discarded(
    fake_line: tuple[_FakeUnit, ModbusRtuTransport],
) -> None:
    fake, transport = fake_line
    with pytest.raises(ModbusTimeout):
        await _read_with(
            fake, transport, encode_read_answer(6, 4, [1, 2]), timeout_s=SHORT_TIMEOUT_S
        )
    assert transport.stats.foreign_frames == 1
    # a wrong byte count from the right unit is not taken either
    with pytest.raises(ModbusTimeout):
        await _read_with(
            fake, transport, encode_read_answer(5, 4, [1, 2, 3]), timeout_s=SHORT_TIMEOUT_S
        )
    assert transport.stats.foreign_frames == 2


async def test_answer_after_junk_and_a_foreign_frame_is_taken(
    fake_line: tuple[_FakeUnit, ModbusRtuTransport],
) -> None:
    fake, transport = fake_line
    got = await _read_with(
        fake,
        transport,
        b"\x00\xff",
        encode_read_answer(6, 4, [7, 7]),
        encode_read_answer(5, 4, [0xBEEF, 0x0102]),
    )
    assert got == [0xBEEF, 0x0102]
    assert transport.stats.foreign_frames == 1
    assert transport.stats.junk_bytes >= 2


async def test_stale_bytes_before_a_request_are_dropped(
    fake_line: tuple[_FakeUnit, ModbusRtuTransport],
) -> None:
    fake, transport = fake_line
    with pytest.raises(ModbusTimeout):
        await _read_with(fake, transport, timeout_s=SHORT_TIMEOUT_S)
    late = encode_read_answer(5, 4, [9, 9])  # the late answer to the timed-out read
    fake.writer.write(late)
    await fake.writer.drain()
    while transport.stats.bytes_received < len(late):
        await asyncio.sleep(0.005)
    got = await _read_with(fake, transport, encode_read_answer(5, 4, [1, 2]))
    assert got == [1, 2]
    assert transport.stats.stale_bytes == len(late)


async def test_missing_port_is_link_down_naming_it() -> None:
    transport = ModbusRtuTransport("/dev/does-not-exist-rtu", SETTINGS)
    with pytest.raises(ModbusLinkDown, match="/dev/does-not-exist-rtu"):
        await transport.connect()
    with pytest.raises(ModbusLinkDown, match="/dev/does-not-exist-rtu"):
        await transport.read_registers(1, READ_INPUT_REGISTERS, 0, 2, TIMEOUT_S)


async def test_a_pacing_server_waits_the_bus_time(pty_pair: PtyPair) -> None:
    paced: list[float] = []

    async def pace(seconds: float) -> None:
        paced.append(seconds)
        await asyncio.sleep(seconds)

    settings = SerialSettings(baudrate=19_200, parity="E")  # 11 bits a character
    server = RtuServer(pty_pair.a, {1: _bank()}, settings, pace=pace)
    transport = ModbusRtuTransport(pty_pair.b, settings)
    loop = asyncio.get_running_loop()
    async with server:
        await transport.connect()
        started_s = loop.time()
        try:
            for _ in range(3):
                await transport.read_registers(1, READ_INPUT_REGISTERS, 70, 6, TIMEOUT_S)
        finally:
            elapsed_s = loop.time() - started_s
            await transport.close()
    # each exchange: an 8-byte request and a 17-byte answer, then t3.5
    char_s = 11 / 19_200
    assert paced == pytest.approx([(8 + 17) * char_s + 3.5 * char_s] * 3)
    assert server.paced_s == pytest.approx(sum(paced))
    assert server.bytes_sent == 3 * 17
    assert elapsed_s >= sum(paced)  # a lower bound only: sleeps never end early


async def test_silence_before_each_request(pty_pair: PtyPair) -> None:
    settings = SerialSettings(baudrate=9600, parity="N", stopbits=2)
    assert settings.rtu_interframe_s == pytest.approx(3.5 * 11 / 9600)
    fast = SerialSettings(baudrate=38_400)
    assert fast.rtu_interframe_s == pytest.approx(1.75e-3)
    transport = ModbusRtuTransport(pty_pair.b, settings, request_gap_s=0.02)
    assert transport.silence_s == pytest.approx(0.02)
    assert ModbusRtuTransport(pty_pair.b, settings).silence_s == pytest.approx(3.5 * 11 / 9600)


async def test_a_line_that_goes_away_is_link_down(pty_pair: PtyPair) -> None:
    transport = ModbusRtuTransport(pty_pair.b, SETTINGS)
    await transport.connect()
    try:
        read = asyncio.create_task(
            transport.read_registers(1, READ_INPUT_REGISTERS, 0, 2, TIMEOUT_S)
        )
        while transport.stats.requests == 0:
            await asyncio.sleep(0.005)
        pty_pair.stop()  # the adapter unplugged: socat and both ptys gone
        with pytest.raises(ModbusLinkDown, match=pty_pair.b):
            await read
        assert not transport.connected
        with pytest.raises(ModbusLinkDown):
            await transport.read_registers(1, READ_INPUT_REGISTERS, 0, 2, TIMEOUT_S)
        with pytest.raises(ModbusLinkDown, match=pty_pair.b):
            await transport.connect()  # the port is gone
    finally:
        await transport.close()


async def test_a_line_never_silent_times_out_before_sending(pty_pair: PtyPair) -> None:
    _reader, writer = await open_serial(pty_pair.a, SETTINGS)
    # a long request gap: the line must be quiet for 0.5 s, and a byte comes every 5 ms
    transport = ModbusRtuTransport(pty_pair.b, SETTINGS, request_gap_s=0.5)
    await transport.connect()

    async def babble() -> None:
        while True:
            writer.write(b"\x55")
            await writer.drain()
            await asyncio.sleep(0.005)

    babbler = asyncio.create_task(babble())
    try:
        with pytest.raises(ModbusTimeout, match="never silent"):
            await transport.read_registers(5, READ_INPUT_REGISTERS, 0, 2, SHORT_TIMEOUT_S)
    finally:
        babbler.cancel()
        await asyncio.gather(babbler, return_exceptions=True)
        await transport.close()
        writer.close()
    assert transport.stats.requests == 0  # nothing was sent onto a busy line
    assert transport.stats.timeouts == 1
