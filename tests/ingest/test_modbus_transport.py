"""Our Modbus TCP transport against our simulator's server and a scripted raw server
over loopback: framing, the window, answer matching, transaction id wrap, errors."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from zerocarbon.ingest.modbus.tcp_transport import ModbusTcpTransport
from zerocarbon.ingest.modbus.transport import (
    ModbusExceptionResponse,
    ModbusLinkDown,
    ModbusTimeout,
    ModbusTransport,
)
from zerocarbon.metering.profile import RegisterTable, load_profile
from zerocarbon.netutil import free_tcp_port
from zerocarbon.simulators.modbus_server import ModbusTcpServer
from zerocarbon.simulators.register_bank import RegisterBank

# holding registers the battery profile maps: 0, 2-3, 10-13
MAPPED = (10, 11, 12, 13)


def _echo(unit: int, table: RegisterTable, address: int, registers: list[int]) -> list[int]:
    """Registers that say which request they answer: 1000 * unit + address + i."""
    return [1000 * unit + address + i for i in range(len(registers))]


@pytest.fixture
async def server() -> AsyncIterator[ModbusTcpServer]:
    units = {u: RegisterBank(load_profile("battery_controller")) for u in (1, 2, 3)}
    async with ModbusTcpServer("127.0.0.1", 0, units, read_hook=_echo) as srv:
        yield srv


def test_it_is_a_modbus_transport() -> None:
    transport: ModbusTransport = ModbusTcpTransport("127.0.0.1", 502, max_in_flight=4)
    assert transport.max_in_flight == 4 and transport.name == "127.0.0.1:502"
    assert not transport.connected
    with pytest.raises(ValueError):
        ModbusTcpTransport("127.0.0.1", 502, max_in_flight=0)


async def test_reads_and_errors(server: ModbusTcpServer) -> None:
    transport = ModbusTcpTransport("127.0.0.1", server.port)
    await transport.connect()
    try:
        assert await transport.read_registers(2, 3, 10, 4, 2.0) == [2010, 2011, 2012, 2013]
        with pytest.raises(ModbusExceptionResponse) as excinfo:
            await transport.read_registers(1, 4, 0, 2, 2.0)  # no input registers
        assert (excinfo.value.function_code, excinfo.value.exception_code) == (4, 2)
        with pytest.raises(ModbusExceptionResponse) as excinfo:
            await transport.read_registers(9, 3, 10, 1, 2.0)  # no such unit at the endpoint
        assert excinfo.value.exception_code == 0x0B
        server.set_exception(3, 0x06)
        with pytest.raises(ModbusExceptionResponse, match="0x06"):
            await transport.read_registers(3, 3, 10, 1, 2.0)
        server.set_offline(1)
        with pytest.raises(ModbusTimeout, match="unit 1"):
            await transport.read_registers(1, 3, 10, 1, 0.05)
        assert transport.connected  # a timeout does not drop the link
        assert await transport.read_registers(2, 3, 12, 1, 2.0) == [2012]
        with pytest.raises(ValueError):
            await transport.read_registers(1, 3, 0, 126, 1.0)
        with pytest.raises(ValueError):
            await transport.read_registers(1, 6, 0, 1, 1.0)
    finally:
        await transport.close()
    assert not transport.connected
    with pytest.raises(ModbusLinkDown, match="not connected"):
        await transport.read_registers(2, 3, 10, 1, 1.0)


async def test_connect_refused_is_link_down() -> None:
    transport = ModbusTcpTransport("127.0.0.1", free_tcp_port(), connect_timeout_s=1.0)
    with pytest.raises(ModbusLinkDown, match="cannot connect"):
        await transport.connect()
    assert not transport.connected and transport.connects == 0


async def test_the_window_keeps_at_most_max_in_flight_outstanding(
    server: ModbusTcpServer,
) -> None:
    transport = ModbusTcpTransport("127.0.0.1", server.port, max_in_flight=4)
    seen_in_flight: list[int] = []

    def hook(unit: int, table: RegisterTable, address: int, registers: list[int]) -> list[int]:
        seen_in_flight.append(transport.in_flight)
        return _echo(unit, table, address, registers)

    server.read_hook = hook
    await transport.connect()
    try:
        requests = [(1 + i % 3, MAPPED[i % 4]) for i in range(40)]
        answers = await asyncio.gather(
            *(transport.read_registers(u, 3, a, 1, 2.0) for u, a in requests)
        )
    finally:
        await transport.close()
    assert answers == [[1000 * u + a] for u, a in requests]
    assert max(seen_in_flight) == 4  # the window was used, and never exceeded
    assert transport.requests == 40 and transport.unmatched == 0


async def test_transaction_ids_wrap_with_a_window_and_never_mismatch(
    server: ModbusTcpServer,
) -> None:
    """Past 65,536 requests (the 16-bit id space) with 8 outstanding: every answer is
    the one its request asked for."""
    transport = ModbusTcpTransport("127.0.0.1", server.port, max_in_flight=8)
    total = 66_000
    workers = 16
    await transport.connect()

    async def worker(k: int) -> int:
        wrong = 0
        for i in range(k, total, workers):
            unit, address = 1 + i % 3, MAPPED[i % 4]
            count = 1 + i % 2
            registers = await transport.read_registers(unit, 3, address - count + 1, count, 5.0)
            if registers != [1000 * unit + address - count + 1 + j for j in range(count)]:
                wrong += 1
        return wrong

    try:
        transport._next_tid = 0xFFF0  # start near the wrap: it comes twice in the run
        wrong = await asyncio.gather(*(worker(k) for k in range(workers)))
    finally:
        await transport.close()
    assert sum(wrong) == 0
    assert transport.requests == total > 0x10000
    assert transport.unmatched == 0 and transport.malformed == 0


async def test_connection_loss_fails_every_outstanding_request(
    server: ModbusTcpServer,
) -> None:
    transport = ModbusTcpTransport("127.0.0.1", server.port, max_in_flight=4)
    await transport.connect()
    server.set_offline(1)  # unit 1 stays silent: its requests stay outstanding
    reads = [asyncio.create_task(transport.read_registers(1, 3, 10, 1, 30.0)) for _ in range(3)]
    while transport.in_flight < 3:
        await asyncio.sleep(0)
    server.suspend()  # the device is switched off: its connections are aborted
    results = await asyncio.gather(*reads, return_exceptions=True)
    assert all(isinstance(r, ModbusLinkDown) for r in results), results
    assert not transport.connected and transport.in_flight == 0
    await server.resume()
    server.set_offline(1, False)
    await transport.connect()  # a new connection works
    assert await transport.read_registers(1, 3, 11, 1, 2.0) == [1011]
    await transport.close()


async def test_one_connection_at_a_time(server: ModbusTcpServer) -> None:
    server.single_connection = True
    transport = ModbusTcpTransport("127.0.0.1", server.port)
    await transport.connect()
    await transport.connect()  # connected: no second connection
    assert transport.connects == 1
    await transport.close()
    await transport.connect()  # closes the old one before it opens the next
    assert await transport.read_registers(1, 3, 10, 1, 2.0) == [1010]
    await transport.close()
    assert transport.connects == 2 and server.refused_connections == 0


# --- a scripted server: answers as the test says ----------------------------------------


@dataclass
class Request:
    tid: int
    unit: int
    function: int
    address: int
    count: int

    def answer(
        self,
        *,
        tid: int | None = None,
        unit: int | None = None,
        function: int | None = None,
        values: list[int] | None = None,
        byte_count: int | None = None,
    ) -> bytes:
        regs = values if values is not None else [self.address + i for i in range(self.count)]
        fc = self.function if function is None else function
        pdu = struct.pack(f">BB{len(regs)}H", fc, byte_count or 2 * len(regs), *regs)
        return (
            struct.pack(
                ">HHHB",
                self.tid if tid is None else tid,
                0,
                len(pdu) + 1,
                self.unit if unit is None else unit,
            )
            + pdu
        )


@dataclass
class ScriptedServer:
    """Hands each request to ``respond``, which returns the bytes to send."""

    respond: Callable[[Request], bytes]
    requests: list[Request] = field(default_factory=list)
    writer: asyncio.StreamWriter | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        try:
            while True:
                frame = await reader.readexactly(12)
                tid, _, _, unit, function, address, count = struct.unpack(">HHHBBHH", frame)
                request = Request(tid, unit, function, address, count)
                self.requests.append(request)
                writer.write(self.respond(request))
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[ScriptedServer, ModbusTcpTransport]]:
    script = ScriptedServer(lambda r: r.answer())
    server = await asyncio.start_server(script.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = ModbusTcpTransport("127.0.0.1", port, max_in_flight=4)
    await transport.connect()
    yield script, transport
    await transport.close()
    server.close()
    await server.wait_closed()


async def test_duplicate_and_stale_answers_are_discarded_and_counted(
    scripted: tuple[ScriptedServer, ModbusTcpTransport],
) -> None:
    script, transport = scripted
    script.respond = lambda r: r.answer() + r.answer()  # every answer twice
    assert await transport.read_registers(1, 3, 100, 2, 2.0) == [100, 101]
    assert await transport.read_registers(1, 3, 200, 1, 2.0) == [200]  # not the duplicate
    async with asyncio.timeout(5):
        while transport.unmatched < 2:  # the last duplicate may come in a later segment
            await asyncio.sleep(0)
    assert transport.unmatched == 2

    held: list[Request] = []

    def hold_first(request: Request) -> bytes:
        if not held:
            held.append(request)  # no answer now: the request times out
            return b""
        return held[0].answer(values=[0xDEAD]) + request.answer()  # late answer first

    script.respond = hold_first
    with pytest.raises(ModbusTimeout):
        await transport.read_registers(1, 3, 300, 1, 0.05)
    assert await transport.read_registers(1, 3, 400, 1, 2.0) == [400]
    assert transport.unmatched == 3
    # the timed-out request's id is held: not handed out again while its answer may come
    transport._next_tid = held[0].tid
    await transport.read_registers(1, 3, 500, 1, 2.0)
    assert script.requests[-1].tid != held[0].tid


@pytest.mark.parametrize(
    ("change", "counter"),
    [
        ({"unit": 9}, "unmatched"),  # right id, another unit
        ({"function": 4}, "unmatched"),  # right id, another function
        ({"tid": 7777}, "unmatched"),  # an id nobody asked for
        ({"values": [1, 2, 3]}, "malformed"),  # three registers for two
        ({"byte_count": 6}, "malformed"),  # byte count disagrees with the data
    ],
)
async def test_a_wrong_answer_is_never_returned(
    scripted: tuple[ScriptedServer, ModbusTcpTransport], change: dict[str, object], counter: str
) -> None:
    script, transport = scripted
    script.respond = lambda r: r.answer(**change)  # type: ignore[arg-type]
    with pytest.raises(ModbusTimeout):
        await transport.read_registers(1, 3, 100, 2, 0.05)
    assert getattr(transport, counter) == 1
    script.respond = lambda r: r.answer()
    assert await transport.read_registers(1, 3, 100, 2, 2.0) == [100, 101]


async def test_exception_answer_and_framing_loss(
    scripted: tuple[ScriptedServer, ModbusTcpTransport],
) -> None:
    script, transport = scripted
    script.respond = lambda r: struct.pack(">HHHBBB", r.tid, 0, 3, r.unit, 0x83, 0x04)
    with pytest.raises(ModbusExceptionResponse) as excinfo:
        await transport.read_registers(1, 3, 100, 2, 2.0)
    assert excinfo.value.exception_code == 4
    script.respond = lambda r: struct.pack(">HHHB", r.tid, 5, 3, r.unit)  # protocol id 5
    with pytest.raises(ModbusLinkDown):
        await transport.read_registers(1, 3, 100, 2, 2.0)
    assert not transport.connected and transport.malformed == 1
