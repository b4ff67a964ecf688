"""Serial lines (RS-485, RS-232) as asyncio streams, and the timing their settings imply.

A serial port is opened with :func:`open_serial` (pyserial for the port and its termios
settings, pyserial-asyncio-fast for the asyncio transport) and used as a
``(StreamReader, StreamWriter)`` pair, the same as a TCP connection, so that a protocol
reads and writes the same way over a transparent TCP gateway and over a local port.

Character timing (:class:`SerialSettings`): one character on an asynchronous serial
line is a start bit, ``bytesize`` data bits, a parity bit unless the parity is none,
and ``stopbits`` stop bits. Modbus RTU delimits frames by silence: at least 3.5
character times between frames and at most 1.5 between the characters of a frame;
above 19,200 baud fixed values of 1.75 ms and 0.75 ms are recommended instead (Modbus
over Serial Line Specification and Implementation Guide V1.02, 2.5.1.1).

Pseudo-terminals (the test benches' serial pairs, made by ``socat``) carry bytes, not
characters on a line: they ignore the baud rate, and Linux refuses parity and 7 data
bits on them (``tcsetattr`` fails with EINVAL; seen on Linux 6.18). A pty is therefore
opened as 8N1 whatever the settings; the timing above still follows the settings, and
a simulator that should behave like a bus paces itself by them.
"""

from __future__ import annotations

import asyncio
import os
import termios
from dataclasses import dataclass
from typing import Literal

import serial
import serial_asyncio_fast

__all__ = [
    "Parity",
    "SerialPortError",
    "SerialSettings",
    "is_pseudo_terminal",
    "open_serial",
]

Parity = Literal["N", "E", "O"]

# Modbus over Serial Line V1.02, 2.5.1.1: fixed timers above 19,200 baud.
_FIXED_TIMERS_ABOVE_BAUD = 19_200
_FIXED_INTERFRAME_S = 1.75e-3
_FIXED_INTERCHAR_S = 0.75e-3

# Linux device numbers: Unix98 pty slaves (/dev/pts/N) have majors 136..143
# (Documentation/admin-guide/devices.txt).
_PTY_SLAVE_MAJORS = range(136, 144)


class SerialPortError(OSError):
    """A serial port could not be opened or configured; the message names the port."""


@dataclass(frozen=True, slots=True)
class SerialSettings:
    """Line settings of one serial port.

    Attributes
    ----------
    baudrate : int
        Line speed [bit/s].
    bytesize : int
        Data bits per character (7 or 8).
    parity : {"N", "E", "O"}
        None, even or odd.
    stopbits : int
        Stop bits per character (1 or 2).
    """

    baudrate: int = 9600
    bytesize: Literal[7, 8] = 8
    parity: Parity = "E"
    stopbits: Literal[1, 2] = 1

    def __post_init__(self) -> None:
        if self.baudrate <= 0:
            raise ValueError(f"baudrate must be > 0, got {self.baudrate}")

    @property
    def bits_per_char(self) -> int:
        """Start bit + data bits + parity bit (if any) + stop bits [bit]."""
        return 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits

    @property
    def char_time_s(self) -> float:
        """Time one character takes on the line [s]."""
        return self.bits_per_char / self.baudrate

    def transmit_time_s(self, n_bytes: int) -> float:
        """Time ``n_bytes`` characters take on the line, back to back [s]."""
        return n_bytes * self.char_time_s

    @property
    def rtu_interframe_s(self) -> float:
        """Modbus RTU silence between frames, t3.5 [s]: 3.5 character times, 1.75 ms
        above 19,200 baud (Modbus over Serial Line V1.02, 2.5.1.1)."""
        if self.baudrate > _FIXED_TIMERS_ABOVE_BAUD:
            return _FIXED_INTERFRAME_S
        return 3.5 * self.char_time_s

    @property
    def rtu_interchar_s(self) -> float:
        """Modbus RTU longest gap inside a frame, t1.5 [s]: 1.5 character times,
        0.75 ms above 19,200 baud (Modbus over Serial Line V1.02, 2.5.1.1)."""
        if self.baudrate > _FIXED_TIMERS_ABOVE_BAUD:
            return _FIXED_INTERCHAR_S
        return 1.5 * self.char_time_s

    def describe(self) -> str:
        """The usual short form, e.g. ``9600 8E1``."""
        return f"{self.baudrate} {self.bytesize}{self.parity}{self.stopbits}"


_PARITY = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}
_BYTESIZE = {7: serial.SEVENBITS, 8: serial.EIGHTBITS}
_STOPBITS = {1: serial.STOPBITS_ONE, 2: serial.STOPBITS_TWO}


def is_pseudo_terminal(port: str) -> bool:
    """Whether ``port`` (a path, symbolic links followed) is a Unix98 pty slave."""
    try:
        rdev = os.stat(port).st_rdev
    except OSError:
        return False
    return rdev != 0 and os.major(rdev) in _PTY_SLAVE_MAJORS


async def open_serial(
    port: str, settings: SerialSettings
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open serial ``port`` (a device path such as ``/dev/ttyUSB0``) with ``settings``.

    Raises :class:`SerialPortError` naming the port when it is missing, busy or refuses
    the settings. Closing the writer closes the port. A pseudo-terminal is opened as
    8N1 (see the module's notes).
    """
    line = SerialSettings(settings.baudrate, 8, "N", 1) if is_pseudo_terminal(port) else settings
    try:
        return await serial_asyncio_fast.open_serial_connection(
            url=port,
            baudrate=line.baudrate,
            bytesize=_BYTESIZE[line.bytesize],
            parity=_PARITY[line.parity],
            stopbits=_STOPBITS[line.stopbits],
            exclusive=True,
        )
    except (OSError, ValueError, termios.error) as exc:  # SerialException is an OSError
        raise SerialPortError(
            f"cannot open serial port {port} ({settings.describe()}): {exc}"
        ) from None
