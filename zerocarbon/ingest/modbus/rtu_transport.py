"""Modbus RTU on a serial line (RS-485): a :class:`~.transport.ModbusTransport`.

One master, one request at a time (``max_in_flight`` = 1; Modbus over Serial Line
V1.02, 2.4.1): each read waits for the bus to have been silent for the inter-frame
time t3.5 of the line settings (and for ``request_gap_s``, a gap some slow units need)
since the last byte sent or received, sends the request frame and reads the answer.

The answer's length follows from its first three bytes (:func:`.rtu_frame.answer_length`).
An answer is taken only when its CRC is right and it comes from the unit asked with
the function asked and the byte count of the registers asked; anything else on the
line is discarded and counted (:class:`RtuLineStats`) and the read goes on waiting, so
that a corrupt answer or a frame meant for another master's request ends as a
:class:`~.transport.ModbusTimeout`. Bytes left over from an earlier, timed-out
exchange are dropped before each request. An exception answer raises
:class:`~.transport.ModbusExceptionResponse`; a port that cannot be opened or that
fails raises :class:`~.transport.ModbusLinkDown` naming it.

Timeouts are real seconds (the line does not run faster on a simulated clock): a read
waits at most its timeout for the line to fall silent (a unit that never stops sending
blocks the bus), then at most its timeout again for the answer once the request has
been handed to the port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from zerocarbon.ingest.modbus.rtu_frame import (
    MAX_FRAME_BYTES,
    Answer,
    answer_length,
    check_crc,
    encode_read_request,
)
from zerocarbon.ingest.modbus.transport import (
    READ_HOLDING_REGISTERS,
    READ_INPUT_REGISTERS,
    ModbusExceptionResponse,
    ModbusLinkDown,
    ModbusTimeout,
)
from zerocarbon.ingest.serial_link import SerialPortError, SerialSettings, open_serial

__all__ = ["ModbusRtuTransport", "RtuLineStats"]

log = logging.getLogger(__name__)

READ_CHUNK_BYTES = 512
MAX_UNIT_ID = 247  # Serial Line V1.02, 2.2: 1..247 individual addresses


@dataclass(slots=True)
class RtuLineStats:
    """Counters of one serial line; read by monitoring and tests."""

    requests: int = 0  # request frames sent
    answers: int = 0  # valid answers taken (normal and exception)
    exceptions: int = 0  # of which exception answers
    timeouts: int = 0  # reads that got no valid answer in time
    bad_crc: int = 0  # frames discarded for a wrong CRC
    foreign_frames: int = 0  # well-formed frames from another unit or for another request
    stale_bytes: int = 0  # bytes found on the line before a request, dropped
    junk_bytes: int = 0  # bytes that start no frame, dropped
    bytes_sent: int = 0
    bytes_received: int = 0


class ModbusRtuTransport:
    """Modbus RTU master on serial ``port`` with line ``settings``.

    Parameters
    ----------
    port : str
        The serial port's path (``/dev/ttyUSB0``, a pty in tests).
    settings : SerialSettings
        Baud rate, data bits, parity, stop bits; give the inter-frame silence.
    request_gap_s : float
        Extra silence before each request beyond t3.5 [s], for units that need time
        between requests; the silence waited is the larger of the two.
    """

    def __init__(self, port: str, settings: SerialSettings, *, request_gap_s: float = 0.0) -> None:
        if request_gap_s < 0:
            raise ValueError(f"request_gap_s must be >= 0, got {request_gap_s}")
        self._port = port
        self.settings = settings
        self.request_gap_s = request_gap_s
        self.stats = RtuLineStats()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pump_task: asyncio.Task[None] | None = None
        self._buffer = bytearray()
        self._arrived = asyncio.Event()
        self._lost: str | None = None  # why the port broke, once it did
        self._bus_busy_until = 0.0  # loop time the last byte left or arrived [s]
        self._lock = asyncio.Lock()

    # --- ModbusTransport ------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._port

    @property
    def max_in_flight(self) -> int:
        return 1

    @property
    def connected(self) -> bool:
        return self._writer is not None and self._lost is None

    @property
    def silence_s(self) -> float:
        """Silence kept before each request [s]: t3.5 or ``request_gap_s``, the larger."""
        return max(self.settings.rtu_interframe_s, self.request_gap_s)

    async def connect(self) -> None:
        if self.connected:
            return
        await self.close()
        try:
            self._reader, self._writer = await open_serial(self._port, self.settings)
        except SerialPortError as exc:
            raise ModbusLinkDown(str(exc)) from None
        self._lost = None
        self._buffer.clear()
        self._bus_busy_until = asyncio.get_running_loop().time()
        self._pump_task = asyncio.create_task(self._pump(self._reader), name=f"rtu-{self._port}")
        log.debug("Modbus RTU on %s (%s)", self._port, self.settings.describe())

    async def read_registers(
        self, unit_id: int, function_code: int, address: int, count: int, timeout_s: float
    ) -> list[int]:
        if function_code not in (READ_HOLDING_REGISTERS, READ_INPUT_REGISTERS):
            raise ValueError(f"function code must be 3 or 4, got {function_code}")
        if not 1 <= unit_id <= MAX_UNIT_ID:
            raise ValueError(f"unit id must be 1..{MAX_UNIT_ID} on a serial line, got {unit_id}")
        request = encode_read_request(unit_id, function_code, address, count)
        what = f"{self._port} unit {unit_id} function {function_code} registers {address}+{count}"
        async with self._lock:
            writer = self._writer
            if writer is None or self._lost is not None:
                raise ModbusLinkDown(f"{self._port}: {self._lost or 'not open'}")
            try:
                async with asyncio.timeout(timeout_s):
                    await self._wait_for_silence()
            except TimeoutError:
                self.stats.timeouts += 1
                raise ModbusTimeout(
                    f"the line was never silent for {self.silence_s * 1000:.2f} ms within "
                    f"{timeout_s} s: {what}"
                ) from None
            if self._buffer:
                self.stats.stale_bytes += len(self._buffer)
                self._buffer.clear()
            self._arrived.clear()
            try:
                writer.write(request)
                await writer.drain()
            except OSError as exc:
                self._link_lost(f"write failed: {exc}")
                raise ModbusLinkDown(f"{what}: {exc}") from None
            loop = asyncio.get_running_loop()
            self._bus_busy_until = loop.time() + self.settings.transmit_time_s(len(request))
            self.stats.requests += 1
            self.stats.bytes_sent += len(request)
            try:
                async with asyncio.timeout(timeout_s):
                    answer = await self._answer(unit_id, function_code, count)
            except TimeoutError:
                self.stats.timeouts += 1
                raise ModbusTimeout(f"no valid answer within {timeout_s} s: {what}") from None
        self.stats.answers += 1
        if answer.exception_code is not None:
            self.stats.exceptions += 1
            raise ModbusExceptionResponse(
                f"exception {answer.exception_code:02X}: {what}",
                function_code,
                answer.exception_code,
            )
        return list(answer.registers)

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        task, self._pump_task = self._pump_task, None
        if self._lost is None:
            self._lost = "closed"
        self._arrived.set()  # a read waiting for bytes sees the link is gone
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    # --- internals ------------------------------------------------------------------

    async def _wait_for_silence(self) -> None:
        """Until the line has been quiet for :attr:`silence_s` (arrivals restart it)."""
        loop = asyncio.get_running_loop()
        while (wait_s := self._bus_busy_until + self.silence_s - loop.time()) > 0:
            await asyncio.sleep(wait_s)

    async def _pump(self, reader: asyncio.StreamReader) -> None:
        """Move received bytes into the buffer, noting when the line was last busy."""
        loop = asyncio.get_running_loop()
        try:
            while data := await reader.read(READ_CHUNK_BYTES):
                self._buffer += data
                self.stats.bytes_received += len(data)
                self._bus_busy_until = loop.time()
                self._arrived.set()
            self._link_lost("the port was closed")
        except OSError as exc:
            self._link_lost(str(exc))

    def _link_lost(self, why: str) -> None:
        if self._lost is None:
            self._lost = why
            log.warning("Modbus RTU %s: %s", self._port, why)
        self._arrived.set()

    async def _answer(self, unit_id: int, function_code: int, count: int) -> Answer:
        """The first valid answer to this request in the received bytes."""
        buffer = self._buffer
        while True:
            while len(buffer) >= 3:
                length = answer_length(buffer, function_code)
                if length is None or length > MAX_FRAME_BYTES:
                    del buffer[0]  # no frame starts here: resynchronise byte by byte
                    self.stats.junk_bytes += 1
                    continue
                if len(buffer) < length:
                    break
                frame = bytes(buffer[:length])
                if not check_crc(frame):
                    del buffer[:length]
                    self.stats.bad_crc += 1
                    log.debug("Modbus RTU %s: bad CRC in %s", self._port, frame.hex(" "))
                    continue
                del buffer[:length]
                answer = Answer.decode(frame)
                expected_bytes = 2 * count
                if answer.unit_id != unit_id or (
                    answer.exception_code is None and len(answer.registers) * 2 != expected_bytes
                ):
                    self.stats.foreign_frames += 1
                    log.debug("Modbus RTU %s: not our answer: %s", self._port, frame.hex(" "))
                    continue
                return answer
            if self._lost is not None:
                raise ModbusLinkDown(f"{self._port}: {self._lost}")
            self._arrived.clear()
            await self._arrived.wait()
