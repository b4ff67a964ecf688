"""Where a DL/T 645-2007 line is reached: a transparent TCP gateway or a serial port.

Either way the collector gets a pair of asyncio streams carrying the line's raw frames
(:mod:`zerocarbon.ingest.dlt645.frame`): a transparent gateway adds no header of its
own, and a local port (:mod:`zerocarbon.ingest.serial_link`) is the line itself.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from zerocarbon.ingest.serial_link import SerialSettings, open_serial

__all__ = ["Dlt645Link", "SerialPort", "TcpGateway"]


@dataclass(frozen=True, slots=True)
class TcpGateway:
    """A transparent serial-to-TCP gateway at ``host:port``."""

    host: str
    port: int

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connect; :class:`OSError` when refused or unreachable."""
        return await asyncio.open_connection(self.host, self.port)


@dataclass(frozen=True, slots=True)
class SerialPort:
    """A local serial port (RS-485 adapter) with the line's settings (DL/T 645-2007
    default 2400 baud, 8 data bits, even parity, 1 stop bit)."""

    port: str
    settings: SerialSettings = SerialSettings(baudrate=2400, parity="E")

    @property
    def name(self) -> str:
        return self.port

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Open the port; :class:`~zerocarbon.ingest.serial_link.SerialPortError` (an
        :class:`OSError`) naming it when it is missing or busy."""
        return await open_serial(self.port, self.settings)


Dlt645Link = TcpGateway | SerialPort
