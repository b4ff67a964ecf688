"""Serial line settings, their timing, and opening ports (a socat pty pair)."""

from __future__ import annotations

import pytest

from tests.serial_support import PtyPair
from zerocarbon.ingest.serial_link import (
    SerialPortError,
    SerialSettings,
    is_pseudo_terminal,
    open_serial,
)


@pytest.mark.parametrize(
    ("settings", "bits"),
    [
        (SerialSettings(9600, 8, "E", 1), 11),  # the Modbus RTU default: 11 bits
        (SerialSettings(9600, 8, "N", 2), 11),  # no parity, 2 stop bits: 11 too
        (SerialSettings(9600, 8, "N", 1), 10),
        (SerialSettings(2400, 7, "O", 1), 10),
    ],
)
def test_bits_per_character(settings: SerialSettings, bits: int) -> None:
    assert settings.bits_per_char == bits
    assert settings.char_time_s == pytest.approx(bits / settings.baudrate)
    assert settings.transmit_time_s(125) == pytest.approx(125 * bits / settings.baudrate)


def test_rtu_timers() -> None:
    # Modbus over Serial Line V1.02, 2.5.1.1: 3.5 and 1.5 characters up to 19,200 baud,
    # 1.75 ms and 0.75 ms above.
    at_9600 = SerialSettings(9600)
    assert at_9600.rtu_interframe_s == pytest.approx(3.5 * 11 / 9600)  # 4.01 ms
    assert at_9600.rtu_interchar_s == pytest.approx(1.5 * 11 / 9600)
    at_19200 = SerialSettings(19_200)
    assert at_19200.rtu_interframe_s == pytest.approx(3.5 * 11 / 19_200)
    at_38400 = SerialSettings(38_400)
    assert at_38400.rtu_interframe_s == 1.75e-3
    assert at_38400.rtu_interchar_s == 0.75e-3
    assert SerialSettings(9600, 8, "E", 1).describe() == "9600 8E1"


def test_bad_baudrate() -> None:
    with pytest.raises(ValueError, match="baudrate"):
        SerialSettings(0)


async def test_pty_pair_carries_every_byte_value_with_parity_settings(pty_pair: PtyPair) -> None:
    assert is_pseudo_terminal(pty_pair.a) and is_pseudo_terminal(pty_pair.b)
    settings = SerialSettings(9600, 7, "E", 2)  # a pty refuses these; opened 8N1
    reader_a, writer_a = await open_serial(pty_pair.a, settings)
    reader_b, writer_b = await open_serial(pty_pair.b, settings)
    try:
        payload = bytes(range(256)) * 2
        writer_a.write(payload)
        await writer_a.drain()
        assert await reader_b.readexactly(len(payload)) == payload
        writer_b.write(b"\x11\x13\x00\xff")  # XON/XOFF bytes pass: raw, no flow control
        await writer_b.drain()
        assert await reader_a.readexactly(4) == b"\x11\x13\x00\xff"
    finally:
        writer_a.close()
        writer_b.close()


async def test_missing_and_busy_ports_name_the_port(pty_pair: PtyPair) -> None:
    assert not is_pseudo_terminal("/dev/null")
    with pytest.raises(SerialPortError, match="/dev/no-such-tty"):
        await open_serial("/dev/no-such-tty", SerialSettings())
    _reader, writer = await open_serial(pty_pair.a, SerialSettings())
    try:
        with pytest.raises(SerialPortError, match=f"{pty_pair.a}.*9600 8E1"):
            await open_serial(pty_pair.a, SerialSettings())  # opened exclusively
    finally:
        writer.close()
