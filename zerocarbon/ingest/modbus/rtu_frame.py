"""Modbus RTU frames: CRC-16 and the read-registers request and answer.

An RTU frame is ``address, PDU, CRC`` (Modbus over Serial Line Specification and
Implementation Guide V1.02, 2.5.1): the unit address (1..247; 0 is broadcast, which
reads never use), the PDU of the Modbus Application Protocol Specification V1.1b3, and
the CRC-16 of everything before it (polynomial 0xA001 reflected, initial value 0xFFFF,
sent low byte first; V1.02, 6.2.2).

Reads (function 3, read holding registers, and 4, read input registers; V1.1b3 6.3 and
6.4): the request PDU is ``function, address (2), quantity (2)``, quantity 1..125; the
answer PDU ``function, byte count (= 2 x quantity), registers (big-endian)``; an
exception answer ``function | 0x80, exception code`` (V1.1b3, 7).

RTU has no length field: a frame ends at a silence of 3.5 characters. A reader that
knows what it asked for knows the answer's length from its first three bytes, which
:func:`answer_length` gives.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "EXCEPTION_BIT",
    "MAX_READ_REGISTERS",
    "Answer",
    "answer_length",
    "check_crc",
    "crc16",
    "encode_exception",
    "encode_read_answer",
    "encode_read_request",
    "with_crc",
]

EXCEPTION_BIT = 0x80
MAX_READ_REGISTERS = 125  # Application Protocol V1.1b3, 6.3: quantity 1..125
MIN_FRAME_BYTES = 4  # address, function, CRC (2)
MAX_FRAME_BYTES = 256  # Serial Line V1.02, 2.5.1.1

_REQUEST = struct.Struct(">BBHH")  # unit, function, address, quantity


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16(data: bytes | bytearray | memoryview) -> int:
    """Modbus CRC-16 of ``data`` (poly 0xA001 reflected, init 0xFFFF; V1.02, 6.2.2)."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


def with_crc(body: bytes) -> bytes:
    """``body`` followed by its CRC, low byte first."""
    return body + crc16(body).to_bytes(2, "little")


def check_crc(frame: bytes | bytearray | memoryview) -> bool:
    """Whether the last two bytes of ``frame`` are the CRC of the rest."""
    if len(frame) < MIN_FRAME_BYTES:
        return False
    return crc16(frame[:-2]) == int.from_bytes(frame[-2:], "little")


def encode_read_request(unit_id: int, function_code: int, address: int, count: int) -> bytes:
    """A read-registers request frame (function 3 or 4), CRC included."""
    if not 1 <= count <= MAX_READ_REGISTERS:
        raise ValueError(f"register count must be 1..{MAX_READ_REGISTERS}, got {count}")
    if address < 0 or address + count > 0x10000:
        raise ValueError(f"registers {address}+{count} are outside 0..65535")
    return with_crc(_REQUEST.pack(unit_id, function_code, address, count))


def encode_read_answer(unit_id: int, function_code: int, registers: list[int]) -> bytes:
    """A normal answer to a read: byte count and registers, CRC included."""
    body = struct.pack(
        f">BBB{len(registers)}H", unit_id, function_code, 2 * len(registers), *registers
    )
    return with_crc(body)


def encode_exception(unit_id: int, function_code: int, exception_code: int) -> bytes:
    """An exception answer (V1.1b3, 7), CRC included."""
    return with_crc(bytes((unit_id, function_code | EXCEPTION_BIT, exception_code)))


def answer_length(head: bytes | bytearray, function_code: int) -> int | None:
    """Length of the answer frame that starts with ``head`` (at least 3 bytes) to a
    read with ``function_code``: 5 for an exception, 5 + byte count for a normal answer;
    None when ``head`` is neither."""
    if head[1] == function_code | EXCEPTION_BIT:
        return 5
    if head[1] == function_code:
        return 5 + head[2]
    return None


@dataclass(frozen=True, slots=True)
class Answer:
    """A CRC-checked answer frame: normal (``registers``) or exception
    (``exception_code``)."""

    unit_id: int
    function_code: int  # without the exception bit
    registers: tuple[int, ...] = ()
    exception_code: int | None = None

    @classmethod
    def decode(cls, frame: bytes | bytearray) -> Answer:
        """Decode an answer frame whose CRC was checked and whose length
        :func:`answer_length` gave."""
        unit_id, function = frame[0], frame[1]
        if function & EXCEPTION_BIT:
            return cls(unit_id, function & ~EXCEPTION_BIT, exception_code=frame[2])
        count = frame[2] // 2
        registers = struct.unpack_from(f">{count}H", frame, 3)
        return cls(unit_id, function, registers=registers)
