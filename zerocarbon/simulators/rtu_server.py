"""Simulated Modbus RTU units on a serial line (RS-485), served on a serial stream.

:class:`RtuServer` holds the units of one line (unit id -> :class:`RegisterBank`, the
same banks the Modbus TCP simulator serves) and answers the master's requests on one
end of a serial pair (a pty in tests, a real port on a bench):

* functions 3 and 4 (read holding / input registers, Modbus Application Protocol
  V1.1b3, 6.3 and 6.4) are answered from the bank;
* exception 01 for any other function, 02 for unmapped registers, 03 for a quantity
  outside 1..125 or a malformed read (V1.1b3, 7);
* a frame for a unit the line does not have, a broadcast (unit 0) and a frame with a
  wrong CRC get no answer, as on a real bus (Modbus over Serial Line V1.02, 2.4.1).

Frames are delimited by their CRC: bytes are collected until a prefix of at least four
bytes carries its own CRC; bytes that form no frame are dropped after a silence of
``idle_discard_s`` (a real receiver drops them at the end of the frame, t3.5).

A pty carries bytes at memory speed whatever its baud rate (NOTES.md), so the server
paces itself like the bus: before each answer it waits for the request's and the
answer's transmission times at the line settings (``pace``: a sleep function, injected
so tests can count what was waited). ``pace=None`` answers at once.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Callable, Mapping

from zerocarbon.ingest.modbus.rtu_frame import (
    MAX_FRAME_BYTES,
    MAX_READ_REGISTERS,
    MIN_FRAME_BYTES,
    check_crc,
    encode_exception,
    encode_read_answer,
)
from zerocarbon.ingest.serial_link import SerialSettings
from zerocarbon.metering.profile import RegisterTable
from zerocarbon.simulators.register_bank import RegisterBank
from zerocarbon.simulators.serial_endpoint import SerialEndpoint

__all__ = ["RtuServer"]

log = logging.getLogger(__name__)

ILLEGAL_FUNCTION = 0x01
ILLEGAL_DATA_ADDRESS = 0x02
ILLEGAL_DATA_VALUE = 0x03

_TABLES = {3: RegisterTable.HOLDING, 4: RegisterTable.INPUT}
READ_CHUNK_BYTES = 512

Pace = Callable[[float], Awaitable[None]]


class RtuServer(SerialEndpoint):
    """The units of one serial line, answering on one serial stream.

    Parameters
    ----------
    port : str
        The serial port (or pty end) to serve on.
    units : Mapping[int, RegisterBank]
        The banks by unit id (1..247).
    settings : SerialSettings
        Line settings: the pacing follows them.
    pace : callable or None
        ``await pace(seconds)`` before each answer for the bus time of the request
        and the answer; default :func:`asyncio.sleep`; None: no pacing.
    before_request : callable, optional
        Called before each request is answered (the plant simulator brings its banks
        up to date there). Its errors are logged, never sent.
    idle_discard_s : float
        Silence after which bytes that form no frame are dropped [s].
    """

    def __init__(
        self,
        port: str,
        units: Mapping[int, RegisterBank],
        settings: SerialSettings,
        *,
        pace: Pace | None = asyncio.sleep,
        before_request: Callable[[], None] | None = None,
        idle_discard_s: float = 0.05,
    ) -> None:
        bad = [u for u in units if not 1 <= u <= 247]
        if bad:
            raise ValueError(f"unit ids must be 1..247 on a serial line, got {bad}")
        self.port = port
        self.units = dict(units)
        self.settings = settings
        self.pace = pace
        self.before_request = before_request
        self.idle_discard_s = idle_discard_s
        self.requests = 0  # requests for a unit of the line (answered or not)
        self.answers = 0  # answers sent (including exceptions)
        self.exceptions = 0  # exception answers sent
        self.ignored_frames = 0  # valid frames for other units or broadcast
        self.discarded_bytes = 0  # bytes that formed no valid frame
        self.bytes_sent = 0
        self.paced_s = 0.0  # bus time waited before answers [s]
        self._offline: set[int] = set()
        self._exceptions: dict[int, int] = {}

    def set_offline(self, unit_id: int, offline: bool = True) -> None:
        """Make ``unit_id`` ignore requests (a unit powered off) or answer again."""
        if offline:
            self._offline.add(unit_id)
        else:
            self._offline.discard(unit_id)

    def set_exception(self, unit_id: int, code: int | None) -> None:
        """Answer every request to ``unit_id`` with exception ``code`` (None: normally)."""
        if code is None:
            self._exceptions.pop(unit_id, None)
        elif not 1 <= code <= 0xFF:
            raise ValueError(f"Modbus exception code must be 1..255, got {code}")
        else:
            self._exceptions[unit_id] = code

    # --- serving --------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buffer = bytearray()
        try:
            while True:
                if buffer:
                    try:
                        async with asyncio.timeout(self.idle_discard_s):
                            data = await reader.read(READ_CHUNK_BYTES)
                    except TimeoutError:
                        self.discarded_bytes += len(buffer)
                        log.debug("RTU server %s: dropped %s", self.port, buffer.hex(" "))
                        buffer.clear()
                        continue
                else:
                    data = await reader.read(READ_CHUNK_BYTES)
                if not data:
                    return
                buffer += data
                while (end := _frame_end(buffer)) is not None:
                    frame = bytes(buffer[:end])
                    del buffer[:end]
                    answer = self.handle(frame)
                    if answer is not None:
                        await self._send(writer, len(frame), answer)
                if len(buffer) > MAX_FRAME_BYTES:
                    self.discarded_bytes += len(buffer)
                    buffer.clear()
        except OSError as exc:
            log.warning("RTU server %s: %s", self.port, exc)

    async def _send(self, writer: asyncio.StreamWriter, request_bytes: int, answer: bytes) -> None:
        if self.pace is not None:
            bus_s = (
                self.settings.transmit_time_s(request_bytes + len(answer))
                + self.settings.rtu_interframe_s
            )
            self.paced_s += bus_s
            await self.pace(bus_s)
        writer.write(answer)
        await writer.drain()
        self.answers += 1
        self.bytes_sent += len(answer)

    def handle(self, frame: bytes) -> bytes | None:
        """The answer frame to a CRC-checked request ``frame``; None: stay silent."""
        unit_id, function_code = frame[0], frame[1]
        if unit_id not in self.units:
            self.ignored_frames += 1
            return None
        self.requests += 1
        if unit_id in self._offline:
            return None
        if self.before_request is not None:
            try:
                self.before_request()
            except Exception:
                log.exception("RTU server %s: updating the registers failed", self.port)
        code = self._exceptions.get(unit_id)
        answer = (
            encode_exception(unit_id, function_code, code)
            if code is not None
            else self._answer(unit_id, function_code, frame[2:-2])
        )
        if answer[1] & 0x80:
            self.exceptions += 1
        return answer

    def _answer(self, unit_id: int, function_code: int, data: bytes) -> bytes:
        table = _TABLES.get(function_code)
        if table is None:
            return encode_exception(unit_id, function_code, ILLEGAL_FUNCTION)
        if len(data) != 4:
            return encode_exception(unit_id, function_code, ILLEGAL_DATA_VALUE)
        address, count = struct.unpack(">HH", data)
        if not 1 <= count <= MAX_READ_REGISTERS:
            return encode_exception(unit_id, function_code, ILLEGAL_DATA_VALUE)
        bank = self.units[unit_id]
        registers = bank.read(table, address, count) if address + count <= 0x10000 else None
        if registers is None:
            return encode_exception(unit_id, function_code, ILLEGAL_DATA_ADDRESS)
        return encode_read_answer(unit_id, function_code, registers)


def _frame_end(buffer: bytearray) -> int | None:
    """Length of the shortest prefix of ``buffer`` that is a CRC-valid frame."""
    for end in range(MIN_FRAME_BYTES, min(len(buffer), MAX_FRAME_BYTES) + 1):
        if check_crc(buffer[:end]):
            return end
    return None
