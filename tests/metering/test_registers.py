"""Register codecs: every type in every layout, encode and decode exact inverses."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zerocarbon.metering.registers import (
    LAYOUTS,
    ByteOrder,
    RegisterType,
    WordOrder,
    decode,
    encode,
    extract_bits,
    insert_bits,
    layout_name,
    register_count,
)
from zerocarbon.simulators.register_bank import raw_limits

ORDERS = [(word, byte) for word in WordOrder for byte in ByteOrder]
INTEGER_TYPES = [t for t in RegisterType if not t.value.startswith("float")]
WORD = st.integers(min_value=0, max_value=0xFFFF)


EXACT_64 = 2**53  # values decode to floats: 64-bit integers are exact up to 2**53


def _integers(register_type: RegisterType) -> st.SearchStrategy[int]:
    lo, hi = raw_limits(register_type)
    return st.integers(min_value=max(int(lo), -EXACT_64), max_value=min(int(hi), EXACT_64))


def _values(register_type: RegisterType) -> st.SearchStrategy[float]:
    """Every value the type represents exactly (finite floats of its width)."""
    if register_type is RegisterType.FLOAT32:
        return st.floats(width=32, allow_nan=False, allow_infinity=False)
    if register_type is RegisterType.FLOAT64:
        return st.floats(allow_nan=False, allow_infinity=False)
    return _integers(register_type).map(float)


def _registers(register_type: RegisterType) -> st.SearchStrategy[list[int]]:
    """Register contents: any words, except 64-bit integers beyond 2**53 (made from a
    value in range by struct, independently of the codec under test)."""
    count = register_count(register_type)
    if register_type in (RegisterType.INT64, RegisterType.UINT64):
        fmt = ">q" if register_type is RegisterType.INT64 else ">Q"
        return _integers(register_type).map(
            lambda v: [
                int.from_bytes(struct.pack(fmt, v)[i : i + 2], "big") for i in range(0, 8, 2)
            ]
        )
    return st.lists(WORD, min_size=count, max_size=count)


def _in_layout(big_endian: list[int], word_order: WordOrder, byte_order: ByteOrder) -> list[int]:
    words = (
        [((w & 0xFF) << 8) | (w >> 8) for w in big_endian]
        if byte_order is ByteOrder.LITTLE
        else list(big_endian)
    )
    return words[::-1] if word_order is WordOrder.LITTLE else words


@pytest.mark.parametrize("register_type", list(RegisterType))
@pytest.mark.parametrize(("word_order", "byte_order"), ORDERS)
@given(data=st.data())
def test_value_round_trip_in_every_layout(
    register_type: RegisterType, word_order: WordOrder, byte_order: ByteOrder, data: st.DataObject
) -> None:
    value = data.draw(_values(register_type))
    registers = encode(value, register_type, word_order, byte_order)
    assert len(registers) == register_count(register_type)
    assert all(0 <= w <= 0xFFFF for w in registers)
    decoded = decode(registers, register_type, word_order, byte_order)
    assert decoded == value
    assert math.copysign(1.0, decoded) == math.copysign(1.0, value)  # -0.0 stays -0.0


@pytest.mark.parametrize("register_type", list(RegisterType))
@pytest.mark.parametrize(("word_order", "byte_order"), ORDERS)
@given(data=st.data())
def test_register_round_trip_in_every_layout(
    register_type: RegisterType, word_order: WordOrder, byte_order: ByteOrder, data: st.DataObject
) -> None:
    """Any register contents decode to a value that encodes back to the same registers
    (floats: every pattern but NaN, whose payload a float does not carry reliably)."""
    registers = _in_layout(data.draw(_registers(register_type)), word_order, byte_order)
    value = decode(registers, register_type, word_order, byte_order)
    if math.isnan(value):
        return
    assert encode(value, register_type, word_order, byte_order) == registers


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        ("ABCD", [0x1234, 0x5678]),
        ("CDAB", [0x5678, 0x1234]),
        ("BADC", [0x3412, 0x7856]),
        ("DCBA", [0x7856, 0x3412]),
    ],
)
def test_the_four_classic_layouts(layout: str, expected: list[int]) -> None:
    word_order, byte_order = LAYOUTS[layout]
    assert layout_name(word_order, byte_order) == layout
    assert encode(0x12345678, RegisterType.UINT32, word_order, byte_order) == expected
    assert decode(expected, RegisterType.UINT32, word_order, byte_order) == 0x12345678


def test_float32_layouts_match_ieee_754_bytes() -> None:
    a, b, c, d = struct.pack(">f", 230.5)  # 0x43 0x66 0x80 0x00
    want = {
        "ABCD": [a << 8 | b, c << 8 | d],
        "CDAB": [c << 8 | d, a << 8 | b],
        "BADC": [b << 8 | a, d << 8 | c],
        "DCBA": [d << 8 | c, b << 8 | a],
    }
    for layout, registers in want.items():
        word_order, byte_order = LAYOUTS[layout]
        assert encode(230.5, RegisterType.FLOAT32, word_order, byte_order) == registers, layout


def test_byte_order_applies_to_single_registers() -> None:
    assert encode(0x1234, RegisterType.UINT16, WordOrder.BIG, ByteOrder.LITTLE) == [0x3412]
    assert decode([0xFFFE], RegisterType.INT16, WordOrder.LITTLE, ByteOrder.BIG) == -2
    assert decode([0xFEFF], RegisterType.INT16, WordOrder.BIG, ByteOrder.LITTLE) == -2


def test_64_bit_words_reverse_as_a_whole() -> None:
    value = 0x0102030405060708
    assert encode(value, RegisterType.UINT64, WordOrder.LITTLE, ByteOrder.BIG) == [
        0x0708,
        0x0506,
        0x0304,
        0x0102,
    ]
    assert encode(value, RegisterType.UINT64, WordOrder.LITTLE, ByteOrder.LITTLE) == [
        0x0807,
        0x0605,
        0x0403,
        0x0201,
    ]


@pytest.mark.parametrize("register_type", INTEGER_TYPES)
def test_integer_out_of_range_names_the_type(register_type: RegisterType) -> None:
    _lo, hi = raw_limits(register_type)
    with pytest.raises(ValueError, match=register_type.value):
        encode(int(hi) + 1, register_type, WordOrder.BIG)


UNSIGNED_WIDTHS = {RegisterType.UINT16: 16, RegisterType.UINT32: 32, RegisterType.UINT64: 64}


@pytest.mark.parametrize(("register_type", "width"), list(UNSIGNED_WIDTHS.items()))
@given(data=st.data())
def test_bit_fields_insert_then_extract(
    register_type: RegisterType, width: int, data: st.DataObject
) -> None:
    raw = data.draw(st.integers(min_value=0, max_value=2**width - 1))
    bit = data.draw(st.integers(min_value=0, max_value=width - 1))
    bits = data.draw(st.integers(min_value=1, max_value=width - bit))
    value = data.draw(st.integers(min_value=0, max_value=2**bits - 1))
    written = insert_bits(raw, register_type, bit, bits, value)
    assert extract_bits(written, register_type, bit, bits) == value
    outside = ~(((1 << bits) - 1) << bit) & (2**width - 1)
    assert written & outside == raw & outside  # the other bits are kept
    assert (
        insert_bits(written, register_type, bit, bits, extract_bits(raw, register_type, bit, bits))
        == raw
    )


def test_bit_field_errors() -> None:
    with pytest.raises(ValueError, match="unsigned"):
        extract_bits(1, RegisterType.INT16, 0)
    with pytest.raises(ValueError, match="do not fit"):
        extract_bits(1, RegisterType.UINT16, 15, 2)
    with pytest.raises(ValueError, match="does not fit 3 bit"):
        insert_bits(0, RegisterType.UINT16, 4, 3, 8)
    assert extract_bits(0b1010_0000, RegisterType.UINT16, 5, 3) == 0b101
