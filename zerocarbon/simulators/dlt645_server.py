"""Simulated DL/T 645-2007 meters on one RS-485 line, over TCP or a serial port.

:class:`Dlt645Line` is the line: one or more meters, each answering read-data requests
(C = 0x11) for its address from a value source, a callable returning the meter's
current metric values (names of :mod:`zerocarbon.metering.metrics`). Identifiers map to
metrics as in :mod:`zerocarbon.metering.dlt645`; the combined active energy (00000000)
is served as forward + reverse energy. The unsigned energy counters (XXXXXX.XX kWh) roll
over at 1,000,000 kWh as a meter's register does. It serves any pair of asyncio streams; two
front ends give it one:

* :class:`Dlt645Server`, a TCP server standing for a transparent serial gateway, which
  passes the bytes of the line to a TCP connection and back (no header of its own, just
  DL/T 645-2007 frames);
* :class:`Dlt645SerialServer`, the line on a serial port (one end of a pty pair in
  tests), pacing its replies at the line's baud rate, since a pty does not.

Every complete frame in the receive buffer is answered, in order, so a client may send
its next request as soon as it has the previous answer (or before). Frames for
addresses the line does not have are ignored, as the meters on a bus ignore them; a
request with a bad checksum is ignored too (a meter answers no corrupt frame). A request
for an identifier the meter does not serve gets an abnormal reply "no requested data"
(DL/T 645-2007 错误信息字 bit 1).

Faults, per meter (:meth:`Dlt645Server.set_fault`), optionally for a number of
requests only:

* :attr:`FaultKind.NO_ANSWER`: the meter stays silent (the client times out);
* :attr:`FaultKind.ABNORMAL`: an abnormal reply (C = 0xD1) with a chosen error byte;
* :attr:`FaultKind.BAD_CHECKSUM`: the normal reply with its CS byte off by one;
* :attr:`FaultKind.SPLIT`: the normal reply in several TCP writes with short pauses,
  as a gateway forwarding a slow serial line does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType

from zerocarbon.ingest.dlt645.frame import (
    READ_DATA,
    Dlt645Error,
    ErrorFlags,
    Frame,
    FrameError,
    address_matches,
    address_to_wire,
    data_id_from_wire,
    data_item,
    encode_abnormal_reply,
    encode_read_reply,
    parse_frame,
)
from zerocarbon.ingest.serial_link import SerialSettings
from zerocarbon.metering.dlt645 import (
    COMBINED_ACTIVE_ENERGY,
    METRIC_OF_IDENTIFIER,
)
from zerocarbon.simulators.serial_endpoint import SerialEndpoint

__all__ = [
    "Dlt645Line",
    "Dlt645SerialServer",
    "Dlt645Server",
    "FaultKind",
    "MeterFault",
    "ValueSource",
]

log = logging.getLogger(__name__)

ValueSource = Callable[[], Mapping[str, float]]
"""Returns a meter's current values by metric name, in the metrics' units."""

READ_BUFFER_BYTES = 4096


class FaultKind(StrEnum):
    NO_ANSWER = "no_answer"
    ABNORMAL = "abnormal"
    BAD_CHECKSUM = "bad_checksum"
    SPLIT = "split"


@dataclass(slots=True)
class MeterFault:
    """A fault of one meter; ``remaining`` requests to apply it to (None: until
    cleared)."""

    kind: FaultKind
    error: int = ErrorFlags.OTHER
    remaining: int | None = None


class Dlt645Line:
    """Meters on one line, answering the requests read from a stream.

    Parameters
    ----------
    meters : Mapping[str, ValueSource]
        Value source by meter address (12 digits, as printed on the meter).
    preamble : bool
        Whether replies start with the FE FE FE FE wake-up preamble.
    split_pieces : int
        Writes a reply is cut into under :attr:`FaultKind.SPLIT`.
    split_gap_s : float
        Real-time pause between those writes [s].
    """

    def __init__(
        self,
        meters: Mapping[str, ValueSource],
        *,
        preamble: bool = True,
        split_pieces: int = 3,
        split_gap_s: float = 0.005,
    ) -> None:
        for address in meters:
            address_to_wire(address)  # AddressError names a bad one
        if split_pieces < 2:
            raise ValueError(f"split_pieces must be >= 2, got {split_pieces}")
        self.meters = {a.upper(): source for a, source in meters.items()}
        self.preamble = preamble
        self.split_pieces = split_pieces
        self.split_gap_s = split_gap_s
        self.requests = 0  # read requests for a meter on the line
        self.replies = 0  # replies sent (normal and abnormal)
        self.bad_requests = 0  # corrupt frames received
        self.faults_applied: dict[FaultKind, int] = dict.fromkeys(FaultKind, 0)
        self._faults: dict[str, MeterFault] = {}

    @property
    def name(self) -> str:
        """Where the line is served (in messages)."""
        return "DL/T 645 line"

    def set_fault(
        self,
        address: str,
        kind: FaultKind | None,
        *,
        error: int = ErrorFlags.OTHER,
        times: int | None = None,
    ) -> None:
        """Give meter ``address`` a fault (None clears it); ``error`` is the error byte
        of :attr:`FaultKind.ABNORMAL`; ``times`` limits it to that many requests."""
        address = address.upper()
        if address not in self.meters:
            raise KeyError(f"no meter {address} on {self.name}")
        if kind is None:
            self._faults.pop(address, None)
        else:
            self._faults[address] = MeterFault(kind, error, times)

    async def serve_stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Answer the requests read from ``reader`` on ``writer`` until end of stream."""
        buffer = bytearray()
        while data := await reader.read(READ_BUFFER_BYTES):
            buffer += data
            while True:
                try:
                    found = parse_frame(buffer)
                except FrameError as exc:
                    self.bad_requests += 1
                    log.debug("DL/T 645 server %s: %s", self.name, exc)
                    del buffer[: exc.end]
                    continue
                if found is None:
                    break
                frame, end = found
                del buffer[:end]
                await self._answer(frame, end, writer)

    async def _pace(self, request_bytes: int, reply_bytes: int) -> None:
        """Wait as the line would before a reply is complete (no wait here)."""

    def _meter_for(self, frame: Frame) -> str | None:
        """The one meter a request selects (wildcards must select exactly one)."""
        chosen = [a for a in self.meters if address_matches(frame.address, a)]
        return chosen[0] if len(chosen) == 1 else None

    def _take_fault(self, address: str) -> MeterFault | None:
        fault = self._faults.get(address)
        if fault is None:
            return None
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                del self._faults[address]
        self.faults_applied[fault.kind] += 1
        return fault

    async def _answer(self, frame: Frame, request_bytes: int, writer: asyncio.StreamWriter) -> None:
        if frame.from_meter or frame.control != READ_DATA:
            return  # only read-data requests are served
        address = self._meter_for(frame)
        if address is None:
            return
        self.requests += 1
        fault = self._take_fault(address)
        if fault is not None and fault.kind is FaultKind.NO_ANSWER:
            return
        if fault is not None and fault.kind is FaultKind.ABNORMAL:
            reply = encode_abnormal_reply(address, fault.error, preamble=self.preamble)
        else:
            reply = self._reply(address, frame)
        if fault is not None and fault.kind is FaultKind.BAD_CHECKSUM:
            corrupt = bytearray(reply)
            corrupt[-2] = (corrupt[-2] + 1) & 0xFF
            reply = bytes(corrupt)
        await self._pace(request_bytes, len(reply))
        self.replies += 1
        if fault is not None and fault.kind is FaultKind.SPLIT:
            step = -(-len(reply) // self.split_pieces)
            for offset in range(0, len(reply), step):
                if offset:
                    await asyncio.sleep(self.split_gap_s)
                writer.write(reply[offset : offset + step])
                await writer.drain()
        else:
            writer.write(reply)
            await writer.drain()

    def _reply(self, address: str, frame: Frame) -> bytes:
        if len(frame.data) < 4:
            return encode_abnormal_reply(address, ErrorFlags.OTHER, preamble=self.preamble)
        data_id = data_id_from_wire(frame.data)
        try:
            values = self.meters[address]()
        except Exception:
            log.exception("DL/T 645 server %s: value source of %s failed", self.name, address)
            return encode_abnormal_reply(address, ErrorFlags.OTHER, preamble=self.preamble)
        value: float | None
        if data_id == COMBINED_ACTIVE_ENERGY:
            forward = values.get("energy_import_kwh")
            reverse = values.get("energy_export_kwh")
            value = None if forward is None or reverse is None else forward + reverse
        else:
            metric = METRIC_OF_IDENTIFIER.get(data_id)
            value = None if metric is None else values.get(metric)
        if value is None:
            return encode_abnormal_reply(address, ErrorFlags.NO_DATA, preamble=self.preamble)
        value = _rolled_over(data_id, value)
        try:
            return encode_read_reply(address, data_id, value, preamble=self.preamble)
        except Dlt645Error as exc:
            log.warning("DL/T 645 server %s, meter %s: %s", self.name, address, exc)
            return encode_abnormal_reply(address, ErrorFlags.OTHER, preamble=self.preamble)


class Dlt645Server(Dlt645Line):
    """One TCP endpoint (a transparent gateway) with meters on its line.

    Parameters
    ----------
    host, port : str, int
        Where to listen; port 0 lets the OS choose (see :attr:`port`).
    meters, preamble, split_pieces, split_gap_s
        As for :class:`Dlt645Line`.
    """

    def __init__(
        self,
        host: str,
        port: int,
        meters: Mapping[str, ValueSource],
        *,
        preamble: bool = True,
        split_pieces: int = 3,
        split_gap_s: float = 0.005,
    ) -> None:
        super().__init__(
            meters, preamble=preamble, split_pieces=split_pieces, split_gap_s=split_gap_s
        )
        self.host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    @property
    def port(self) -> int:
        """The port listened on (the OS's choice when created with port 0)."""
        if self._server is not None and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return self._port

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def name(self) -> str:
        return self.endpoint

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self.host, self._port, reuse_address=True
        )
        self._port = self.port
        log.debug("DL/T 645 server on %s, meters %s", self.endpoint, sorted(self.meters))

    async def close(self) -> None:
        """Stop listening and drop every connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        # Abort rather than cancel: each connection's task then ends on its own (the
        # stream machinery reports a cancelled handler task as an error).
        for writer in self._connections.values():
            writer.transport.abort()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await server.wait_closed()

    async def __aenter__(self) -> Dlt645Server:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            await self.serve_stream(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections.pop(task, None)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


class Dlt645SerialServer(Dlt645Line, SerialEndpoint):
    """The meters of one line on a serial port (a real one, or a pty end in tests).

    Parameters
    ----------
    port : str
        The serial port to serve on.
    meters, preamble, split_pieces, split_gap_s
        As for :class:`Dlt645Line`.
    settings : SerialSettings
        The line's settings (DL/T 645-2007 default 2400 baud 8E1); replies are paced
        by them: request and reply transmission times.
    pace : callable or None
        ``await pace(seconds)`` before each reply; default :func:`asyncio.sleep`; None:
        reply at once.
    """

    def __init__(
        self,
        port: str,
        meters: Mapping[str, ValueSource],
        settings: SerialSettings,
        *,
        pace: Callable[[float], Awaitable[None]] | None = asyncio.sleep,
        preamble: bool = True,
        split_pieces: int = 3,
        split_gap_s: float = 0.005,
    ) -> None:
        super().__init__(
            meters, preamble=preamble, split_pieces=split_pieces, split_gap_s=split_gap_s
        )
        self.port = port
        self.settings = settings
        self.pace = pace
        self.paced_s = 0.0  # line time waited before replies [s]

    @property
    def name(self) -> str:
        return self.port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self.serve_stream(reader, writer)
        except OSError as exc:
            log.warning("DL/T 645 serial server %s: %s", self.port, exc)

    async def _pace(self, request_bytes: int, reply_bytes: int) -> None:
        if self.pace is None:
            return
        line_s = self.settings.transmit_time_s(request_bytes + reply_bytes)
        self.paced_s += line_s
        await self.pace(line_s)


def _rolled_over(data_id: int, value: float) -> float:
    """``value`` as an unsigned energy register of ``data_id`` holds it: modulo the
    register's range (XXXXXX.XX kWh: 1,000,000 kWh); other items unchanged."""
    try:
        fmt = data_item(data_id).format
    except KeyError:
        return value
    if fmt.signed or fmt.unit != "kWh" or value < 0:
        return value
    return math.fmod(value, (fmt.max_magnitude + 1) / 10**fmt.decimals)
