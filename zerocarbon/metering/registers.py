"""Modbus register codecs: 16-bit registers <-> numbers.

The protocol sends each register high byte first (Modbus Application Protocol v1.1b3,
section 4.2), but devices differ in how a value's bytes are laid out in their registers.
Two choices name the four classic layouts of a 32-bit value with bytes ``A B C D`` (A
the most significant):

=========  ==============  ==============  ======================================
layout     ``word_order``  ``byte_order``  registers sent
=========  ==============  ==============  ======================================
ABCD       big             big             ``AB CD`` (the Modbus default)
CDAB       little          big             ``CD AB`` (many BMS, inverters, meters)
BADC       big             little          ``BA DC``
DCBA       little          little          ``DC BA`` (fully little-endian)
=========  ==============  ==============  ======================================

``word_order`` orders the registers of a multi-register value (for 64-bit values all
four are reversed); ``byte_order`` orders the two bytes inside each register, and so
applies to 16-bit values too.

Values are Python floats: every 16- and 32-bit value and every float64 is exact; 64-bit
integers are exact up to 2**53 in magnitude (9.0e15, e.g. 9.0e12 kWh counted in Wh).

Bit fields (:func:`extract_bits`, :func:`insert_bits`) read and write ``bits`` bits from
bit ``bit`` (0: least significant) of an unsigned register value, e.g. a status word.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from enum import StrEnum


class RegisterType(StrEnum):
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    FLOAT32 = "float32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT64 = "float64"


class WordOrder(StrEnum):
    """Order of the registers of a multi-register value."""

    BIG = "big"  # most significant word first
    LITTLE = "little"  # least significant word first


class ByteOrder(StrEnum):
    """Order of the two bytes inside each register."""

    BIG = "big"  # most significant byte first (the Modbus default)
    LITTLE = "little"  # bytes of every register swapped


LAYOUTS: dict[str, tuple[WordOrder, ByteOrder]] = {
    "ABCD": (WordOrder.BIG, ByteOrder.BIG),
    "CDAB": (WordOrder.LITTLE, ByteOrder.BIG),
    "BADC": (WordOrder.BIG, ByteOrder.LITTLE),
    "DCBA": (WordOrder.LITTLE, ByteOrder.LITTLE),
}


def layout_name(word_order: WordOrder, byte_order: ByteOrder) -> str:
    """The classic name ("ABCD", "CDAB", "BADC", "DCBA") of a word and byte order."""
    for name, orders in LAYOUTS.items():
        if orders == (word_order, byte_order):
            return name
    raise AssertionError("unreachable: every pair of orders has a name")


_FORMATS: dict[RegisterType, tuple[str, int]] = {
    RegisterType.INT16: (">h", 1),
    RegisterType.UINT16: (">H", 1),
    RegisterType.INT32: (">i", 2),
    RegisterType.UINT32: (">I", 2),
    RegisterType.FLOAT32: (">f", 2),
    RegisterType.INT64: (">q", 4),
    RegisterType.UINT64: (">Q", 4),
    RegisterType.FLOAT64: (">d", 4),
}

_UNSIGNED_TYPES = frozenset({RegisterType.UINT16, RegisterType.UINT32, RegisterType.UINT64})

_INTEGER_TYPES = frozenset(
    {
        RegisterType.INT16,
        RegisterType.UINT16,
        RegisterType.INT32,
        RegisterType.UINT32,
        RegisterType.INT64,
        RegisterType.UINT64,
    }
)


def register_count(register_type: RegisterType) -> int:
    """Number of 16-bit registers a value of ``register_type`` occupies."""
    return _FORMATS[register_type][1]


def is_integer(register_type: RegisterType) -> bool:
    return register_type in _INTEGER_TYPES


def is_unsigned(register_type: RegisterType) -> bool:
    """True for the unsigned integer types (the ones bit fields may be read from)."""
    return register_type in _UNSIGNED_TYPES


def _swap_bytes(word: int) -> int:
    return ((word & 0xFF) << 8) | ((word >> 8) & 0xFF)


def decode(
    registers: Sequence[int],
    register_type: RegisterType,
    word_order: WordOrder,
    byte_order: ByteOrder = ByteOrder.BIG,
) -> float:
    """Decode the registers of one value into a number (no scaling)."""
    fmt, count = _FORMATS[register_type]
    if len(registers) != count:
        raise ValueError(f"{register_type} needs {count} registers, got {len(registers)}")
    words = [int(w) & 0xFFFF for w in registers]
    if word_order is WordOrder.LITTLE:
        words.reverse()
    if byte_order is ByteOrder.LITTLE:
        words = [_swap_bytes(w) for w in words]
    raw = b"".join(w.to_bytes(2, "big") for w in words)
    return float(struct.unpack(fmt, raw)[0])


def encode(
    value: float,
    register_type: RegisterType,
    word_order: WordOrder,
    byte_order: ByteOrder = ByteOrder.BIG,
) -> list[int]:
    """Encode a number (already in raw register units) into registers.

    Integer types are rounded to the nearest integer and must fit the type's range.
    The exact inverse of :func:`decode` for every value the type represents.
    """
    fmt, _count = _FORMATS[register_type]
    packed_value: float | int = round(value) if is_integer(register_type) else float(value)
    try:
        raw = struct.pack(fmt, packed_value)
    except (struct.error, OverflowError) as exc:
        raise ValueError(f"value {value!r} does not fit {register_type}: {exc}") from exc
    words = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    if byte_order is ByteOrder.LITTLE:
        words = [_swap_bytes(w) for w in words]
    if word_order is WordOrder.LITTLE:
        words.reverse()
    return words


def _check_field(register_type: RegisterType, bit: int, bits: int) -> None:
    width = 16 * register_count(register_type)
    if not is_unsigned(register_type):
        raise ValueError(f"bit fields need an unsigned register type, not {register_type}")
    if bit < 0 or bits < 1 or bit + bits > width:
        raise ValueError(f"bits {bit}..{bit + bits - 1} do not fit {register_type} ({width} bits)")


def extract_bits(raw: int, register_type: RegisterType, bit: int, bits: int = 1) -> int:
    """The ``bits`` bits of ``raw`` from bit ``bit`` (0: least significant), as an integer."""
    _check_field(register_type, bit, bits)
    return (raw >> bit) & ((1 << bits) - 1)


def insert_bits(raw: int, register_type: RegisterType, bit: int, bits: int, value: int) -> int:
    """``raw`` with bits ``bit .. bit+bits-1`` replaced by ``value``; other bits kept.

    The inverse of :func:`extract_bits`: ``extract_bits(insert_bits(r, t, b, n, v), t, b,
    n) == v`` for every ``0 <= v < 2**n``.
    """
    _check_field(register_type, bit, bits)
    mask = (1 << bits) - 1
    if not 0 <= value <= mask:
        raise ValueError(f"value {value} does not fit {bits} bit(s)")
    return (raw & ~(mask << bit)) | (value << bit)


def counter_wrap(register_type: RegisterType, scale: float) -> float:
    """Value at which a counter read from ``register_type`` x ``scale`` wraps to 0.

    An unsigned register of n bits wraps after ``2**n`` counts; a signed one runs from
    its largest value into negative ones, a step of the same ``2**n`` counts. Floating
    point registers do not wrap (they lose resolution instead): 0.

    Returns
    -------
    float
        Wrap value in the counter's unit (``2**n * scale``), or 0.0 for float types.
    """
    if not is_integer(register_type):
        return 0.0
    return float(2 ** (16 * register_count(register_type))) * scale
