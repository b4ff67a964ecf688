"""A small asyncio Modbus TCP server for the simulated devices.

Our own rather than pymodbus's: pymodbus 3.16's server answers only the first request
of each TCP read (measured), and collectors may pipeline requests. This one parses
every complete frame in its receive buffer, keeps partial frames for the next read, and
answers in order, all replies of one read in one write.

Framing and codes follow the "Modbus Messaging on TCP/IP Implementation Guide v1.0b"
(MBAP header: transaction id, protocol id 0, length = unit id + PDU, unit id) and the
"Modbus Application Protocol Specification v1.1b3" (section 6.3/6.4 read holding/input
registers, quantity 1..125; section 7 exception codes):

* 01 illegal function: any function other than 3 (holding) and 4 (input);
* 02 illegal data address: a register in the range the unit does not map;
* 03 illegal data value: a quantity outside 1..125 or a malformed request;
* 04 server device failure: the test ``read_hook`` (below) failed;
* 0B gateway target device failed to respond: a unit id the endpoint does not serve.

Fault hooks: :meth:`ModbusTcpServer.set_offline` makes a unit silent (requests time
out), as a powered-off device behind a gateway does; :meth:`ModbusTcpServer.suspend`
stops listening and drops every connection (connections are refused) until
:meth:`ModbusTcpServer.resume` listens again on the same port, as a device that is
switched off does.

More hooks for tests and fault injection:

* :meth:`ModbusTcpServer.set_exception` answers every request to a unit with a given
  exception code (e.g. 06 server device busy, 04 server device failure) until cleared;
* :attr:`ModbusTcpServer.single_connection` (constructor keyword, also settable): while
  one client connection is open, a further one is accepted and closed at once and
  counted in :attr:`ModbusTcpServer.refused_connections`, as many meters and small
  gateways that serve one Modbus TCP client at a time do;
* :attr:`ModbusTcpServer.read_hook`, ``hook(unit_id, table, address, registers) ->
  registers``: called for every successful read with the registers the bank gave
  (``address`` is the first register read); what it returns is sent instead (same
  length). A test tears a 32-bit value with it, for instance, by sending an old high
  word with a new low word.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable, Mapping
from types import TracebackType

from zerocarbon.metering.profile import RegisterTable
from zerocarbon.simulators.register_bank import RegisterBank

log = logging.getLogger(__name__)

MBAP_HEADER = struct.Struct(">HHHB")  # transaction id, protocol id, length, unit id
MAX_PDU_BYTES = 253
MAX_READ_REGISTERS = 125

ILLEGAL_FUNCTION = 0x01
ILLEGAL_DATA_ADDRESS = 0x02
ILLEGAL_DATA_VALUE = 0x03
SERVER_DEVICE_FAILURE = 0x04
GATEWAY_TARGET_FAILED = 0x0B

_TABLES = {3: RegisterTable.HOLDING, 4: RegisterTable.INPUT}

ReadHook = Callable[[int, RegisterTable, int, list[int]], list[int]]
"""``(unit_id, table, address, registers) -> registers to send`` (see module docstring)."""


def _exception(function_code: int, code: int) -> bytes:
    return bytes((function_code | 0x80, code))


class ModbusTcpServer:
    """One TCP endpoint serving several units (unit id -> :class:`RegisterBank`).

    Parameters
    ----------
    host, port : str, int
        Where to listen; port 0 lets the OS choose (see :attr:`port`).
    units : Mapping[int, RegisterBank]
        The banks by Modbus unit id.
    before_request : callable, optional
        Called before the requests of each TCP read are answered (the simulator brings
        its banks up to date there). Its errors are logged, never sent to clients.
    single_connection : bool
        Serve one client connection at a time; further ones are closed at once.
    read_hook : callable, optional
        ``(unit_id, table, address, registers) -> registers`` applied to each read.
    """

    def __init__(
        self,
        host: str,
        port: int,
        units: Mapping[int, RegisterBank],
        *,
        before_request: Callable[[], None] | None = None,
        single_connection: bool = False,
        read_hook: ReadHook | None = None,
    ) -> None:
        self.host = host
        self._port = port
        self.units = dict(units)
        self.before_request = before_request
        self.requests = 0  # requests answered (including exception replies)
        self.exceptions = 0  # exception replies sent
        self.framing_errors = 0  # connections closed for a corrupt MBAP header
        self.single_connection = single_connection
        self.refused_connections = 0  # connections closed because one was already open
        self.read_hook = read_hook
        self._offline: set[int] = set()
        self._exceptions: dict[int, int] = {}
        self._server: asyncio.Server | None = None
        self._connections: set[_ModbusTcpProtocol] = set()

    @property
    def port(self) -> int:
        """The port listened on (the OS's choice when created with port 0)."""
        if self._server is not None and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return self._port

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def set_offline(self, unit_id: int, offline: bool = True) -> None:
        """Make ``unit_id`` ignore requests (no reply) or answer again."""
        if offline:
            self._offline.add(unit_id)
        else:
            self._offline.discard(unit_id)

    def set_exception(self, unit_id: int, code: int | None) -> None:
        """Answer every request to ``unit_id`` with exception ``code`` (None: normally)."""
        if code is None:
            self._exceptions.pop(unit_id, None)
        else:
            if not 1 <= code <= 0xFF:
                raise ValueError(f"Modbus exception code must be 1..255, got {code}")
            self._exceptions[unit_id] = code

    @property
    def connections(self) -> int:
        """Client connections open now."""
        return len(self._connections)

    @property
    def listening(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _ModbusTcpProtocol(self), self.host, self._port, reuse_address=True
        )
        self._port = self.port  # keep the OS's choice for a later resume()
        log.debug("Modbus TCP server on %s serving units %s", self.endpoint, sorted(self.units))

    def suspend(self) -> None:
        """Stop listening and abort every connection now (a device switched off)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for connection in list(self._connections):
            connection.abort()
        log.debug("Modbus TCP server on %s suspended", self.endpoint)

    async def resume(self) -> None:
        """Listen again on the same port after :meth:`suspend` (no-op if listening)."""
        if self._server is None:
            await self.start()

    async def close(self) -> None:
        """Stop listening and drop every connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for connection in list(self._connections):
            connection.abort()
        await server.wait_closed()
        await asyncio.sleep(0)  # let the transports run connection_lost

    async def __aenter__(self) -> ModbusTcpServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _refresh(self) -> None:
        if self.before_request is None:
            return
        try:
            self.before_request()
        except Exception:
            log.exception("Modbus server %s: updating the registers failed", self.endpoint)

    def handle(self, unit_id: int, pdu: bytes) -> bytes | None:
        """The response PDU for ``pdu`` addressed to ``unit_id``; None: stay silent."""
        if unit_id in self._offline:
            return None
        self.requests += 1
        reply = self._answer(unit_id, pdu)
        if reply[0] & 0x80:
            self.exceptions += 1
        return reply

    def _answer(self, unit_id: int, pdu: bytes) -> bytes:
        function_code = pdu[0]
        forced = self._exceptions.get(unit_id)
        if forced is not None:
            return _exception(function_code, forced)
        bank = self.units.get(unit_id)
        if bank is None:
            return _exception(function_code, GATEWAY_TARGET_FAILED)
        table = _TABLES.get(function_code)
        if table is None:
            return _exception(function_code, ILLEGAL_FUNCTION)
        if len(pdu) != 5:
            return _exception(function_code, ILLEGAL_DATA_VALUE)
        address, count = struct.unpack_from(">HH", pdu, 1)
        if not 1 <= count <= MAX_READ_REGISTERS:
            return _exception(function_code, ILLEGAL_DATA_VALUE)
        registers = bank.read(table, address, count) if address + count <= 0x10000 else None
        if registers is None:
            return _exception(function_code, ILLEGAL_DATA_ADDRESS)
        if self.read_hook is not None:
            try:
                registers = list(self.read_hook(unit_id, table, address, registers))
                if len(registers) != count:
                    raise ValueError(f"read_hook gave {len(registers)} registers for {count}")
            except Exception:
                log.exception("Modbus server %s: read_hook failed", self.endpoint)
                return _exception(function_code, SERVER_DEVICE_FAILURE)
        return struct.pack(f">BB{count}H", function_code, 2 * count, *registers)


class _ModbusTcpProtocol(asyncio.Protocol):
    """One client connection: MBAP de-framing, in-order replies, flow control."""

    def __init__(self, server: ModbusTcpServer) -> None:
        self._server = server
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        server = self._server
        if server.single_connection and server._connections:
            server.refused_connections += 1
            log.debug("Modbus server %s: a second connection refused", server.endpoint)
            transport.close()
            return
        self._transport = transport
        server._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server._connections.discard(self)
        self._transport = None

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # Stop reading while the client does not read its replies.
    def pause_writing(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        if transport is None:
            return
        buffer = self._buffer
        buffer += data
        replies: list[bytes] = []
        refreshed = False
        offset = 0
        while len(buffer) - offset >= MBAP_HEADER.size:
            transaction_id, protocol_id, length, unit_id = MBAP_HEADER.unpack_from(buffer, offset)
            if not 2 <= length <= MAX_PDU_BYTES + 1:
                # Framing is lost: nothing after this can be trusted.
                self._server.framing_errors += 1
                log.warning(
                    "Modbus server %s: bad MBAP length %d; closing the connection",
                    self._server.endpoint,
                    length,
                )
                offset = len(buffer)
                transport.close()
                break
            frame_end = offset + MBAP_HEADER.size - 1 + length
            if len(buffer) < frame_end:
                break  # partial frame: keep it for the next read
            pdu = bytes(buffer[offset + MBAP_HEADER.size : frame_end])
            offset = frame_end
            if protocol_id != 0:
                continue  # not Modbus: discard the frame
            if not refreshed:
                self._server._refresh()
                refreshed = True
            reply = self._server.handle(unit_id, pdu)
            if reply is not None:
                replies.append(MBAP_HEADER.pack(transaction_id, 0, len(reply) + 1, unit_id) + reply)
        del buffer[:offset]
        if replies:
            transport.write(b"".join(replies))
