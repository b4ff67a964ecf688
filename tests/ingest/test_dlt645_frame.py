"""The DL/T 645-2007 frame codec: byte vectors built by hand, round trips, errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zerocarbon.ingest.dlt645.frame import (
    DATA_ITEMS,
    AbnormalReplyError,
    AddressError,
    BcdError,
    ChecksumError,
    ErrorFlags,
    Frame,
    LengthError,
    TerminatorError,
    TruncatedFrameError,
    UnexpectedReplyError,
    UnknownDataIdError,
    ValueRangeError,
    address_from_wire,
    address_matches,
    address_to_wire,
    decode_bcd,
    decode_frame,
    decode_read_reply,
    decode_value,
    encode_abnormal_reply,
    encode_bcd,
    encode_frame,
    encode_read_reply,
    encode_read_request,
    encode_value,
    parse_frame,
)

ADDRESS = "123456789012"  # printed on the meter; on the wire 12 90 78 56 34 12

# Read forward active energy (DI 00 01 00 00) from meter 123456789012:
#   68 | 12 90 78 56 34 12 | 68 | C=11 | L=04 | DI0..DI3 00 00 01 00 +33 = 33 33 34 33
#   CS = 68+12+90+78+56+34+12+68+11+04+33+33+34+33 = 0x368 -> 0x68
READ_FORWARD_ENERGY = bytes.fromhex("FEFEFEFE 68 129078563412 68 11 04 33333433 68 16")

# Its reply, 12345.67 kWh (XXXXXX.XX -> 01234567 -> low byte first 67 45 23 01, +33):
#   68 | address | 68 | C=91 | L=08 | 33 33 34 33 | 9A 78 56 34 | CS | 16
#   CS = 0x286 (header up to 68) + 91 + 08 + CD (DI) + 9A+78+56+34 = 0x588 -> 0x88
REPLY_FORWARD_ENERGY = bytes.fromhex("FEFEFEFE 68 129078563412 68 91 08 33333433 9A785634 88 16")

# Abnormal reply, error byte 02 (no requested data) -> +33 = 35:
#   CS = 0x286 + D1 + 01 + 35 = 0x38D -> 0x8D
ABNORMAL_NO_DATA = bytes.fromhex("FEFEFEFE 68 129078563412 68 D1 01 35 8D 16")


# --------------------------------------------------------------------- hand-built vectors


def test_read_request_matches_the_hand_built_bytes() -> None:
    assert encode_read_request(ADDRESS, 0x0001_0000) == READ_FORWARD_ENERGY
    assert encode_read_request(ADDRESS, 0x0001_0000, preamble=False) == READ_FORWARD_ENERGY[4:]


def test_read_reply_matches_the_hand_built_bytes() -> None:
    assert encode_read_reply(ADDRESS, 0x0001_0000, 12345.67) == REPLY_FORWARD_ENERGY
    frame = decode_frame(REPLY_FORWARD_ENERGY)
    assert frame == Frame(ADDRESS, 0x91, bytes.fromhex("00000100 67452301"))
    assert frame.from_meter and not frame.abnormal and not frame.follow_up
    assert decode_read_reply(frame, ADDRESS, 0x0001_0000) == 12345.67


def test_abnormal_reply_matches_the_hand_built_bytes() -> None:
    assert encode_abnormal_reply(ADDRESS, ErrorFlags.NO_DATA) == ABNORMAL_NO_DATA
    frame = decode_frame(ABNORMAL_NO_DATA)
    assert frame.abnormal and frame.data == b"\x02"
    with pytest.raises(AbnormalReplyError, match=r"0x02 \(NO_DATA\)") as info:
        decode_read_reply(frame, ADDRESS, 0x0001_0000)
    assert info.value.error == ErrorFlags.NO_DATA


@pytest.mark.parametrize(
    ("data_id", "value", "raw"),
    [
        # XXXXXX.XX kWh: 12345.67 -> digits 00 01 23 45 67, low byte first
        (0x0001_0000, 12345.67, "67452301"),
        (0x0002_0000, 0.01, "01000000"),
        (0x0002_0000, 999999.99, "99999999"),
        # combined energy has a sign bit: -12.34 -> 00 00 12 34 | 80 on the top byte
        (0x0000_0000, -12.34, "34120080"),
        # XX.XXXX kW with sign bit: 1.2345 -> 01 23 45; -1.2345 sets bit 7 of 01
        (0x0203_0000, 1.2345, "452301"),
        (0x0203_0000, -1.2345, "452381"),
        (0x0203_0000, -79.9999, "9999F9"),  # 79 99 99 -> 99 99 79 | 80
        # XXX.X V: 230.1 -> 23 01
        (0x0201_0100, 230.1, "0123"),
        # XX.XX Hz: 49.98 -> 49 98
        (0x0280_0002, 49.98, "9849"),
    ],
)
def test_value_formats_match_hand_built_bytes(data_id: int, value: float, raw: str) -> None:
    assert encode_value(data_id, value) == bytes.fromhex(raw)
    assert decode_value(data_id, bytes.fromhex(raw)) == value


def test_follow_up_reply_is_a_normal_reply() -> None:
    raw = encode_read_reply(ADDRESS, 0x0203_0000, -3.5, follow_up=True)
    frame = decode_frame(raw)
    assert frame.control == 0xB1 and frame.follow_up
    assert decode_read_reply(frame, ADDRESS, 0x0203_0000) == -3.5


# --------------------------------------------------------------------- addresses


def test_address_is_bcd_low_byte_first_and_aa_is_a_wildcard() -> None:
    assert address_to_wire(ADDRESS) == bytes.fromhex("129078563412")
    assert address_from_wire(bytes.fromhex("129078563412")) == ADDRESS
    assert address_to_wire("AAAAAAAAAAAA") == b"\xaa" * 6
    assert address_matches("AAAAAAAAAAAA", ADDRESS)
    assert address_matches("AAAAAA789012", ADDRESS)
    assert not address_matches("AAAAAA789013", ADDRESS)
    wildcard_request = encode_read_request("aaaaaaaaaaaa", 0x0280_0002)
    assert decode_frame(wildcard_request).address == "AAAAAAAAAAAA"


@pytest.mark.parametrize("bad", ["12345678901", "1234567890123", "12345678901F", "12345678A012"])
def test_bad_addresses_are_named(bad: str) -> None:
    with pytest.raises(AddressError, match=bad):
        address_to_wire(bad)


# --------------------------------------------------------------------- round trips


@given(st.integers(min_value=0, max_value=10**12 - 1), st.integers(min_value=6, max_value=8))
def test_bcd_round_trip(number: int, length: int) -> None:
    raw = encode_bcd(number, length)
    assert len(raw) == length
    assert all(b >> 4 <= 9 and b & 0x0F <= 9 for b in raw)
    assert decode_bcd(raw) == number


@given(st.sampled_from(sorted(DATA_ITEMS)), st.data())
def test_value_round_trip_every_item(data_id: int, data: st.DataObject) -> None:
    fmt = DATA_ITEMS[data_id].format
    low = -fmt.max_magnitude if fmt.signed else 0
    scaled = data.draw(st.integers(min_value=low, max_value=fmt.max_magnitude))
    value = scaled / fmt.scale
    raw = encode_value(data_id, value)
    assert len(raw) == fmt.length
    assert decode_value(data_id, raw) == value


@given(
    st.text(alphabet="0123456789", min_size=12, max_size=12),
    st.sampled_from([0x11, 0x91, 0xB1, 0xD1]),
    st.binary(max_size=200),
    st.booleans(),
)
def test_frame_round_trip(address: str, control: int, data: bytes, preamble: bool) -> None:
    raw = encode_frame(address, control, data, preamble=preamble)
    assert decode_frame(raw) == Frame(address, control, data)


# --------------------------------------------------------------------- streams


def test_junk_before_a_frame_is_skipped() -> None:
    # Noise, a stray 0x68 that starts no header, the FE preamble, then the frame.
    junk = bytes.fromhex("00 FF 68 01 02 16 FE FE")
    stream = junk + REPLY_FORWARD_ENERGY + READ_FORWARD_ENERGY[:7]
    found = parse_frame(stream)
    assert found is not None
    frame, end = found
    assert decode_read_reply(frame, ADDRESS, 0x0001_0000) == 12345.67
    assert end == len(junk) + len(REPLY_FORWARD_ENERGY)
    assert parse_frame(stream[end:]) is None  # the next frame is incomplete


def test_a_frame_arriving_in_pieces_is_found_once_complete() -> None:
    buffer = bytearray()
    for i, byte in enumerate(REPLY_FORWARD_ENERGY):
        assert parse_frame(buffer) is None, f"frame reported after {i} bytes"
        buffer.append(byte)
    assert parse_frame(buffer) == (decode_frame(REPLY_FORWARD_ENERGY), len(buffer))


def test_two_frames_back_to_back() -> None:
    second = encode_read_reply(ADDRESS, 0x0280_0002, 50.01, preamble=False)
    stream = REPLY_FORWARD_ENERGY + second
    first = parse_frame(stream)
    assert first is not None
    rest = parse_frame(stream[first[1] :])
    assert rest is not None and rest[1] == len(second)
    assert decode_read_reply(rest[0], ADDRESS, 0x0280_0002) == 50.01


# --------------------------------------------------------------------- errors


def test_bad_checksum() -> None:
    raw = bytearray(REPLY_FORWARD_ENERGY)
    raw[-2] ^= 0x01
    with pytest.raises(ChecksumError, match="sums to 0x88, CS byte is 0x89") as info:
        parse_frame(b"\x00" + raw)
    assert info.value.end == 1 + len(raw)  # what a stream reader drops


def test_bad_terminator() -> None:
    raw = bytearray(REPLY_FORWARD_ENERGY)
    raw[-1] = 0x17
    with pytest.raises(TerminatorError, match="0x17 where 0x16 belongs"):
        decode_frame(raw)


def test_truncated_frame() -> None:
    with pytest.raises(TruncatedFrameError, match="incomplete"):
        decode_frame(REPLY_FORWARD_ENERGY[:-1])
    with pytest.raises(TruncatedFrameError, match="no frame start"):
        decode_frame(b"\xfe\xfe\xfe\xfe")


def test_length_errors() -> None:
    with pytest.raises(LengthError, match="2 bytes follow"):
        decode_frame(REPLY_FORWARD_ENERGY + b"\x00\x00")
    too_long = bytearray(READ_FORWARD_ENERGY[4:14])
    too_long[9] = 201
    with pytest.raises(LengthError, match="L = 201 exceeds 200"):
        decode_frame(bytes(too_long) + bytes(203))
    with pytest.raises(ValueRangeError, match="at most 200"):
        encode_frame(ADDRESS, 0x91, bytes(201))
    with pytest.raises(LengthError, match="value has 3 bytes"):
        decode_value(0x0001_0000, b"\x00\x00\x00")


def test_value_that_is_not_bcd() -> None:
    with pytest.raises(BcdError, match=r"00010000: byte 1 \(0x4A\)"):
        decode_value(0x0001_0000, bytes.fromhex("67 4A 23 01"))


def test_values_out_of_range() -> None:
    with pytest.raises(ValueRangeError, match="negative"):
        encode_value(0x0001_0000, -1.0)
    with pytest.raises(ValueRangeError, match="out of range"):
        encode_value(0x0203_0000, 80.0)  # the sign bit leaves 79.9999 kW
    with pytest.raises(ValueRangeError, match="out of range"):
        encode_value(0x0001_0000, 1_000_000.0)


def test_unknown_identifier() -> None:
    with pytest.raises(UnknownDataIdError, match="02020100"):
        encode_value(0x0202_0100, 1.0)


def test_replies_to_something_else() -> None:
    frame = decode_frame(REPLY_FORWARD_ENERGY)
    with pytest.raises(UnexpectedReplyError, match="from meter 123456789012, expected"):
        decode_read_reply(frame, "000000000001", 0x0001_0000)
    with pytest.raises(UnexpectedReplyError, match="identifier 00010000, expected 00020000"):
        decode_read_reply(frame, ADDRESS, 0x0002_0000)
    with pytest.raises(UnexpectedReplyError, match="control code 0x11"):
        decode_read_reply(decode_frame(READ_FORWARD_ENERGY), ADDRESS, 0x0001_0000)
