"""What a link scheduler needs from a Modbus link, whatever carries it.

A *link* is one physical path to one or more units: a TCP endpoint (a device or a
serial-to-Ethernet gateway) or a serial port (an RS-485 bus, Modbus RTU). The
scheduler (:mod:`zerocarbon.ingest.modbus.collector`) owns one transport per link and
sends its read requests through it; the transport frames them (MBAP for TCP, RTU with
CRC-16 for serial; Modbus Messaging on TCP/IP Implementation Guide v1.0b, Modbus over
Serial Line v1.02) and matches each answer to its request.

Errors are three kinds, so that the scheduler can count and react without knowing the
transport: no answer in time (:class:`ModbusTimeout`), an exception response from the
unit (:class:`ModbusExceptionResponse`, the unit is alive), and a link that is down or
broke (:class:`ModbusLinkDown`, reconnect with back-off). A malformed answer (bad CRC,
wrong length, an answer to a different request) is never returned as data: the
transport discards it and the request ends as a :class:`ModbusTimeout` or
:class:`ModbusLinkDown`.
"""

from __future__ import annotations

from typing import Protocol

READ_HOLDING_REGISTERS = 0x03
READ_INPUT_REGISTERS = 0x04


class ModbusTransportError(Exception):
    """A read did not return registers; the message names the link and the request."""


class ModbusTimeout(ModbusTransportError):
    """No valid answer within the request's timeout."""


class ModbusLinkDown(ModbusTransportError):
    """The link could not be opened or broke; the transport is closed and must be
    connected again (the caller decides when: back-off)."""


class ModbusExceptionResponse(ModbusTransportError):
    """The unit answered with a Modbus exception (Application Protocol v1.1b3, 7)."""

    def __init__(self, message: str, function_code: int, exception_code: int) -> None:
        super().__init__(message)
        self.function_code = function_code
        self.exception_code = exception_code


class ModbusTransport(Protocol):
    """One link's framing and request/answer matching.

    ``max_in_flight`` is how many requests may be outstanding at once: 1 for a serial
    bus (one master, one request at a time), more for a TCP gateway that accepts a
    window (answers matched by MBAP transaction id). Concurrent :meth:`read_registers`
    calls beyond the window wait their turn; they are never sent early.
    """

    @property
    def name(self) -> str:
        """The link as a user knows it: ``host:port`` or the serial port's path."""
        ...

    @property
    def max_in_flight(self) -> int: ...

    @property
    def connected(self) -> bool: ...

    async def connect(self) -> None:
        """Open the link; :class:`ModbusLinkDown` when it cannot be opened."""
        ...

    async def read_registers(
        self, unit_id: int, function_code: int, address: int, count: int, timeout_s: float
    ) -> list[int]:
        """``count`` registers from ``address`` of ``unit_id`` with function code 3 or 4.

        Raises :class:`ModbusTimeout`, :class:`ModbusExceptionResponse` or
        :class:`ModbusLinkDown`; never returns an answer meant for another request.
        """
        ...

    async def close(self) -> None:
        """Close the link; outstanding reads end with :class:`ModbusLinkDown`."""
        ...
