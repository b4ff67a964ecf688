"""Modbus register codecs: 16-bit registers <-> numbers.

Within a register the byte order is always big-endian (Modbus Application Protocol
v1.1b3, section 4.2). Multi-register values come in two word orders: ``big`` (high word
first, "ABCD") and ``little`` (low word first, "CDAB", common on Chinese BMS and some
inverters).
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
    BIG = "big"
    LITTLE = "little"


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


def decode(registers: Sequence[int], register_type: RegisterType, word_order: WordOrder) -> float:
    """Decode the registers of one value into a number (no scaling)."""
    fmt, count = _FORMATS[register_type]
    if len(registers) != count:
        raise ValueError(f"{register_type} needs {count} registers, got {len(registers)}")
    words = list(registers)
    if word_order is WordOrder.LITTLE:
        words.reverse()
    raw = b"".join(int(w & 0xFFFF).to_bytes(2, "big") for w in words)
    return float(struct.unpack(fmt, raw)[0])


def encode(value: float, register_type: RegisterType, word_order: WordOrder) -> list[int]:
    """Encode a number (already in raw register units) into registers.

    Integer types are rounded to the nearest integer and must fit the type's range.
    """
    fmt, _count = _FORMATS[register_type]
    packed_value: float | int = round(value) if is_integer(register_type) else float(value)
    try:
        raw = struct.pack(fmt, packed_value)
    except struct.error as exc:
        raise ValueError(f"value {value!r} does not fit {register_type}: {exc}") from exc
    words = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    if word_order is WordOrder.LITTLE:
        words.reverse()
    return words


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
