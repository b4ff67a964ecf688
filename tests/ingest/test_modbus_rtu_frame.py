"""Modbus RTU framing: CRC-16 against published frames, answers and lengths."""

from __future__ import annotations

import pytest

from zerocarbon.ingest.modbus.rtu_frame import (
    Answer,
    answer_length,
    check_crc,
    crc16,
    encode_exception,
    encode_read_answer,
    encode_read_request,
)


def test_crc_of_the_specification_example() -> None:
    # Modbus over Serial Line V1.02, 6.2.2: the CRC of 02 07 is 0x1241, sent 41 12.
    assert crc16(bytes((0x02, 0x07))) == 0x1241


def test_read_request_matches_a_known_frame() -> None:
    # Read 2 input registers from 0 of unit 1: the widely published SDM630 voltage
    # request 01 04 00 00 00 02 71 CB.
    assert encode_read_request(1, 4, 0, 2) == bytes.fromhex("010400000002 71CB")


def test_holding_request_known_frame() -> None:
    # Read 3 holding registers from 0x006B of unit 0x11: 11 03 00 6B 00 03 76 87, the
    # example frame of many Modbus RTU tutorials.
    assert encode_read_request(0x11, 3, 0x6B, 3) == bytes.fromhex("1103006B0003 7687")


def test_answer_round_trip_and_length() -> None:
    frame = encode_read_answer(7, 3, [0x1234, 0xABCD, 0])
    assert check_crc(frame)
    assert answer_length(frame[:3], 3) == len(frame) == 5 + 6
    assert Answer.decode(frame) == Answer(7, 3, registers=(0x1234, 0xABCD, 0))


def test_exception_answer() -> None:
    frame = encode_exception(7, 4, 2)
    assert frame[:3] == bytes((7, 0x84, 2))
    assert check_crc(frame)
    assert answer_length(frame[:3], 4) == 5
    assert Answer.decode(frame) == Answer(7, 4, exception_code=2)


def test_a_flipped_bit_fails_the_crc() -> None:
    frame = bytearray(encode_read_answer(1, 4, [1, 2]))
    for i in range(len(frame) * 8):
        corrupt = bytearray(frame)
        corrupt[i // 8] ^= 1 << (i % 8)
        assert not check_crc(corrupt)


def test_answer_length_of_other_functions_is_none() -> None:
    assert answer_length(bytes((1, 0x03, 4)), 4) is None


@pytest.mark.parametrize(("address", "count"), [(0, 0), (0, 126), (65535, 2)])
def test_bad_reads_are_refused(address: int, count: int) -> None:
    with pytest.raises(ValueError):
        encode_read_request(1, 3, address, count)
