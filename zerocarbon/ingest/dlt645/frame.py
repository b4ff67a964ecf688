"""DL/T 645-2007 frame codec: frames, addresses, data identifiers and BCD values.

A frame on the wire (DL/T 645-2007, clause 4 "帧格式")::

    [FE FE FE FE]  68  A0 A1 A2 A3 A4 A5  68  C  L  DATA(L bytes)  CS  16

* ``FE`` x4: wake-up preamble a sender may put in front; a receiver skips it (and any
  other bytes) up to the first ``68`` that starts a well-formed header.
* ``A0..A5``: the meter address, 12 BCD digits, low byte first. ``AA`` in a byte is a
  wildcard (the all-``AA`` address reaches whichever meter is on the line);
  ``99`` x6 is the broadcast address (time sync only).
* ``C``: control code. Bit 7 direction (1: reply from the meter), bit 6 abnormal reply,
  bit 5 follow-up frame exists, bits 4..0 the function (``11`` read data).
* ``L``: length of the data field [bytes]; at most 200 for reads.
* ``DATA``: every byte is sent as ``(byte + 0x33) mod 256`` and taken back by
  subtracting ``0x33``. A read request carries the 4-byte data identifier (DI0 first);
  a normal reply the identifier followed by the value; an abnormal reply one error
  byte.
* ``CS``: the sum of every byte from the first ``68`` to the end of the data field,
  modulo 256.
* ``16``: end of frame.

Values are BCD, low byte first, in the formats of DL/T 645-2007 附录A (e.g.
``XXXXXX.XX`` kWh in 4 bytes). Where a format has a sign, it is the most significant
bit of the highest byte (1: negative), the rest is the magnitude in BCD.

Everything here is a pure function of bytes; errors are :class:`Dlt645Error`
subclasses that name what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, IntFlag

from zerocarbon.metering.dlt645 import DataId

__all__ = [
    "ABNORMAL_READ_REPLY",
    "BROADCAST_ADDRESS",
    "DATA_ITEMS",
    "DATA_OFFSET",
    "MAX_DATA_BYTES",
    "PREAMBLE",
    "READ_DATA",
    "READ_REPLY",
    "READ_REPLY_FOLLOW_UP",
    "WILDCARD_ADDRESS",
    "AbnormalReplyError",
    "AddressError",
    "BcdError",
    "ChecksumError",
    "Control",
    "DataFormat",
    "DataId",
    "DataItem",
    "Dlt645Error",
    "ErrorFlags",
    "Frame",
    "FrameError",
    "LengthError",
    "TerminatorError",
    "TruncatedFrameError",
    "UnexpectedReplyError",
    "UnknownDataIdError",
    "ValueRangeError",
    "address_from_wire",
    "address_matches",
    "address_to_wire",
    "checksum",
    "data_id_from_wire",
    "data_id_to_wire",
    "data_item",
    "decode_bcd",
    "decode_frame",
    "decode_read_reply",
    "decode_value",
    "encode_abnormal_reply",
    "encode_bcd",
    "encode_frame",
    "encode_read_reply",
    "encode_read_request",
    "encode_value",
    "parse_frame",
]

START = 0x68
END = 0x16
PREAMBLE = b"\xfe\xfe\xfe\xfe"
DATA_OFFSET = 0x33  # added to every data byte on the wire
MAX_DATA_BYTES = 200  # L of a read frame, DL/T 645-2007 clause 4
HEADER_BYTES = 10  # 68, six address bytes, 68, C, L
TRAILER_BYTES = 2  # CS, 16
WILDCARD_ADDRESS = "AAAAAAAAAAAA"
BROADCAST_ADDRESS = "999999999999"


class Control(IntEnum):
    """Control-code bits and the function codes used here (DL/T 645-2007, 4.2.3)."""

    DIRECTION = 0x80  # 1: frame sent by the meter
    ABNORMAL = 0x40  # 1: abnormal reply
    FOLLOW_UP = 0x20  # 1: more frames follow
    FUNCTION = 0x1F  # mask of the function code
    READ = 0x11  # function code: read data


READ_DATA = 0x11  # master -> meter: read data
READ_REPLY = 0x91  # meter -> master: normal reply, no follow-up frame
READ_REPLY_FOLLOW_UP = 0xB1  # normal reply with follow-up frames
ABNORMAL_READ_REPLY = 0xD1  # abnormal reply: one error byte


class ErrorFlags(IntFlag):
    """Error byte of an abnormal reply (DL/T 645-2007, 错误信息字 SERR)."""

    OTHER = 0x01  # 其他错误
    NO_DATA = 0x02  # 无请求数据
    UNAUTHORIZED = 0x04  # 密码错/未授权
    BAUD_RATE = 0x08  # 通信速率不能更改
    YEAR_ZONES = 0x10  # 年时区数超
    DAY_SLOTS = 0x20  # 日时段数超
    TARIFFS = 0x40  # 费率数超


# --------------------------------------------------------------------------- errors


class Dlt645Error(Exception):
    """Any DL/T 645 protocol error."""


class FrameError(Dlt645Error):
    """A frame that cannot be taken from the bytes.

    ``end`` is the index in the scanned buffer just past the bytes this error accounts
    for: a stream reader drops ``buffer[:end]`` and scans on.
    """

    def __init__(self, message: str, end: int = 0) -> None:
        super().__init__(message)
        self.end = end


class TruncatedFrameError(FrameError):
    """The bytes end before the frame does (or hold no frame start at all)."""


class LengthError(FrameError):
    """The length byte L is out of range, or bytes follow the end of the frame."""


class ChecksumError(FrameError):
    """The CS byte is not the sum of the frame's bytes modulo 256."""

    def __init__(self, expected: int, received: int, end: int = 0) -> None:
        super().__init__(
            f"checksum error: frame sums to 0x{expected:02X}, CS byte is 0x{received:02X}", end
        )
        self.expected = expected
        self.received = received


class TerminatorError(FrameError):
    """The byte after CS is not 0x16."""


class AddressError(Dlt645Error, ValueError):
    """A meter address that is not 12 BCD digits (or AA wildcard bytes)."""


class BcdError(Dlt645Error):
    """A value field with a nibble above 9."""


class ValueRangeError(Dlt645Error, ValueError):
    """A value that the data item's format cannot hold."""


class UnknownDataIdError(Dlt645Error, KeyError):
    """A data identifier this codec has no format for."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class AbnormalReplyError(Dlt645Error):
    """The meter answered with an abnormal reply; ``error`` is its error byte."""

    def __init__(self, address: str, error: int) -> None:
        flags = [f.name for f in ErrorFlags if f & error and f.name is not None]
        names = "|".join(flags) if flags else "no flag"
        super().__init__(f"meter {address}: abnormal reply, error byte 0x{error:02X} ({names})")
        self.address = address
        self.error = error


class UnexpectedReplyError(Dlt645Error):
    """A well-formed frame that is not the reply to the request (address, control, DI)."""


# --------------------------------------------------------------------------- data


@dataclass(frozen=True, slots=True)
class DataFormat:
    """A BCD value format of DL/T 645-2007 附录A.

    Attributes
    ----------
    length : int
        Bytes on the wire [bytes].
    decimals : int
        Digits after the decimal point (``XXXXXX.XX``: 2).
    signed : bool
        Whether the top bit of the highest byte is a sign bit (1: negative).
    unit : str
        Unit of the decoded value.
    """

    length: int
    decimals: int
    signed: bool
    unit: str

    @property
    def max_magnitude(self) -> int:
        """Largest scaled magnitude the field holds (the sign bit leaves 0..7 on top)."""
        digits = 2 * self.length
        return 8 * _pow10(digits - 1) - 1 if self.signed else _pow10(digits) - 1

    @property
    def scale(self) -> int:
        """Scaled units per unit (``10 ** decimals``)."""
        return _pow10(self.decimals)


def _pow10(n: int) -> int:
    return int(10**n)


@dataclass(frozen=True, slots=True)
class DataItem:
    """A data identifier with its format and meaning (DL/T 645-2007 附录A)."""

    data_id: DataId
    name: str
    format: DataFormat


ENERGY_KWH = DataFormat(4, 2, False, "kWh")  # XXXXXX.XX
ENERGY_SIGNED_KWH = DataFormat(4, 2, True, "kWh")  # XXXXXX.XX, sign bit
POWER_KW = DataFormat(3, 4, True, "kW")  # XX.XXXX, sign bit
VOLTAGE_V = DataFormat(2, 1, False, "V")  # XXX.X
FREQUENCY_HZ = DataFormat(2, 2, False, "Hz")  # XX.XX

DATA_ITEMS: dict[DataId, DataItem] = {
    item.data_id: item
    for item in (
        # DL/T 645-2007 附录A 表A.1 电能量: (当前)组合有功总电能. The combined energy's
        # top bit is a sign (the combination may subtract reverse energy).
        DataItem(0x0000_0000, "combined active energy, total", ENERGY_SIGNED_KWH),
        # 表A.1: (当前)正向有功总电能
        DataItem(0x0001_0000, "forward active energy, total", ENERGY_KWH),
        # 表A.1: (当前)反向有功总电能
        DataItem(0x0002_0000, "reverse active energy, total", ENERGY_KWH),
        # 附录A 表A.3 变量数据: A相电压
        DataItem(0x0201_0100, "phase A voltage", VOLTAGE_V),
        # 表A.3: 瞬时总有功功率; the top bit gives the direction (1: reverse)
        DataItem(0x0203_0000, "instantaneous total active power", POWER_KW),
        # 表A.3: 电网频率
        DataItem(0x0280_0002, "grid frequency", FREQUENCY_HZ),
    )
}


def data_item(data_id: DataId) -> DataItem:
    """The item of ``data_id``; :class:`UnknownDataIdError` names it."""
    try:
        return DATA_ITEMS[data_id]
    except KeyError:
        raise UnknownDataIdError(f"no format for data identifier {data_id:08X}") from None


# --------------------------------------------------------------------------- BCD


def encode_bcd(number: int, length: int) -> bytes:
    """``number`` >= 0 as ``length`` bytes of BCD, low byte first."""
    if number < 0 or number >= 10 ** (2 * length):
        raise ValueRangeError(f"{number} does not fit in {length} BCD bytes")
    out = bytearray()
    for _ in range(length):
        number, low = divmod(number, 10)
        number, high = divmod(number, 10)
        out.append(high << 4 | low)
    return bytes(out)


def decode_bcd(data: bytes) -> int:
    """The number in BCD bytes, low byte first; :class:`BcdError` on a nibble > 9."""
    number = 0
    for index in range(len(data) - 1, -1, -1):
        byte = data[index]
        high, low = byte >> 4, byte & 0x0F
        if high > 9 or low > 9:
            raise BcdError(f"byte {index} (0x{byte:02X}) of {data.hex(' ').upper()} is not BCD")
        number = number * 100 + high * 10 + low
    return number


def encode_value(data_id: DataId, value: float) -> bytes:
    """``value`` [the item's unit] in the item's BCD format, rounded to its decimals."""
    fmt = data_item(data_id).format
    scaled = round(value * fmt.scale)
    negative = scaled < 0
    if negative and not fmt.signed:
        raise ValueRangeError(f"{data_id:08X}: {value} is negative; the format has no sign")
    if abs(scaled) > fmt.max_magnitude:
        raise ValueRangeError(
            f"{data_id:08X}: {value} {fmt.unit} is out of range "
            f"(at most {fmt.max_magnitude / fmt.scale} {fmt.unit})"
        )
    raw = bytearray(encode_bcd(abs(scaled), fmt.length))
    if negative:
        raw[-1] |= 0x80
    return bytes(raw)


def decode_value(data_id: DataId, raw: bytes) -> float:
    """The value [the item's unit] of the item's BCD bytes (sign bit where it has one)."""
    fmt = data_item(data_id).format
    if len(raw) != fmt.length:
        raise LengthError(f"{data_id:08X}: value has {len(raw)} bytes, the format {fmt.length}")
    negative = False
    if fmt.signed:
        negative = bool(raw[-1] & 0x80)
        raw = raw[:-1] + bytes((raw[-1] & 0x7F,))
    try:
        magnitude = decode_bcd(raw)
    except BcdError as exc:
        raise BcdError(f"{data_id:08X}: {exc}") from None
    value = magnitude / fmt.scale
    return -value if negative else value


# --------------------------------------------------------------------------- addresses


def address_to_wire(address: str) -> bytes:
    """A 12-digit address (highest byte first, as printed on the meter) in wire order.

    Each digit pair is BCD or ``AA`` (wildcard). ``"123456789012"`` -> ``12 90 78 56 34
    12``.
    """
    text = address.upper()
    if len(text) != 12:
        raise AddressError(f"meter address {address!r} must have 12 digits")
    out = bytearray()
    for i in range(10, -1, -2):
        pair = text[i : i + 2]
        if pair == "AA":
            out.append(0xAA)
        elif pair.isdigit() and pair.isascii():
            out.append(int(pair, 16))
        else:
            raise AddressError(f"meter address {address!r}: {pair!r} is neither BCD nor AA")
    return bytes(out)


def address_from_wire(raw: bytes) -> str:
    """The printed address (highest byte first) of 6 wire-order bytes."""
    if len(raw) != 6:
        raise AddressError(f"an address has 6 bytes, got {len(raw)}")
    for byte in raw:
        if byte != 0xAA and (byte >> 4 > 9 or byte & 0x0F > 9):
            raise AddressError(f"address byte 0x{byte:02X} is neither BCD nor AA")
    return raw[::-1].hex().upper()


def address_matches(pattern: str, address: str) -> bool:
    """Whether ``pattern`` (``AA`` bytes are wildcards) selects the meter ``address``."""
    p, a = address_to_wire(pattern), address_to_wire(address)
    return all(x == 0xAA or x == y for x, y in zip(p, a, strict=True))


def data_id_to_wire(data_id: DataId) -> bytes:
    """DI0 DI1 DI2 DI3 (low byte first), before the +0x33 of the data field."""
    if not 0 <= data_id <= 0xFFFF_FFFF:
        raise ValueRangeError(f"data identifier {data_id:#x} is not 4 bytes")
    return data_id.to_bytes(4, "little")


def data_id_from_wire(raw: bytes) -> DataId:
    return int.from_bytes(raw[:4], "little")


# --------------------------------------------------------------------------- frames


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame.

    Attributes
    ----------
    address : str
        Printed meter address (12 characters, highest byte first).
    control : int
        Control code C.
    data : bytes
        Data field with the 0x33 offset removed.
    """

    address: str
    control: int
    data: bytes

    @property
    def from_meter(self) -> bool:
        return bool(self.control & Control.DIRECTION)

    @property
    def abnormal(self) -> bool:
        return bool(self.control & Control.ABNORMAL)

    @property
    def follow_up(self) -> bool:
        return bool(self.control & Control.FOLLOW_UP)

    @property
    def function(self) -> int:
        return self.control & Control.FUNCTION


def checksum(frame_bytes: bytes | bytearray) -> int:
    """CS: the sum of the bytes from the first 0x68 to the end of the data, mod 256."""
    return sum(frame_bytes) & 0xFF


def encode_frame(address: str, control: int, data: bytes = b"", *, preamble: bool = True) -> bytes:
    """The wire bytes of a frame; ``data`` without the 0x33 offset (added here)."""
    if not 0 <= control <= 0xFF:
        raise ValueRangeError(f"control code {control:#x} is not one byte")
    if len(data) > MAX_DATA_BYTES:
        raise ValueRangeError(f"data field of {len(data)} bytes; at most {MAX_DATA_BYTES}")
    wire_address = address_to_wire(address)
    body = bytearray((START,))
    body += wire_address
    body += bytes((START, control, len(data)))
    body += bytes((b + DATA_OFFSET) & 0xFF for b in data)
    body += bytes((checksum(body), END))
    return (PREAMBLE if preamble else b"") + bytes(body)


def encode_read_request(address: str, data_id: DataId, *, preamble: bool = True) -> bytes:
    """Read-data request (C = 0x11, L = 4) for one data identifier."""
    return encode_frame(address, READ_DATA, data_id_to_wire(data_id), preamble=preamble)


def encode_read_reply(
    address: str,
    data_id: DataId,
    value: float,
    *,
    follow_up: bool = False,
    preamble: bool = True,
) -> bytes:
    """Normal read reply (C = 0x91, or 0xB1 with ``follow_up``): DI then the value."""
    control = READ_REPLY_FOLLOW_UP if follow_up else READ_REPLY
    payload = data_id_to_wire(data_id) + encode_value(data_id, value)
    return encode_frame(address, control, payload, preamble=preamble)


def encode_abnormal_reply(address: str, error: int, *, preamble: bool = True) -> bytes:
    """Abnormal read reply (C = 0xD1, L = 1): the error byte (:class:`ErrorFlags`)."""
    return encode_frame(address, ABNORMAL_READ_REPLY, bytes((error & 0xFF,)), preamble=preamble)


def _header_at(buffer: bytes | bytearray, start: int) -> bool:
    return (
        len(buffer) - start >= HEADER_BYTES
        and buffer[start] == START
        and buffer[start + 7] == START
        and buffer[start + 9] <= MAX_DATA_BYTES
    )


def parse_frame(buffer: bytes | bytearray) -> tuple[Frame, int] | None:
    """The first frame in ``buffer`` and the index just past it; None: need more bytes.

    Bytes before a frame (the FE preamble, noise, the tail of an earlier frame) are
    skipped: a frame starts at a 0x68 followed seven bytes later by a second 0x68 and a
    length byte of at most 200. A complete but corrupt frame raises a
    :class:`FrameError` subclass whose ``end`` tells how much of ``buffer`` to drop.
    """
    start = buffer.find(START)
    while start >= 0:
        if len(buffer) - start < HEADER_BYTES:
            # Could still become a header; a 0x68 whose 8th byte is known not to be
            # 0x68 is noise.
            if len(buffer) - start > 7 and buffer[start + 7] != START:
                start = buffer.find(START, start + 1)
                continue
            return None
        if _header_at(buffer, start):
            break
        start = buffer.find(START, start + 1)
    if start < 0:
        return None
    length = buffer[start + 9]
    end = start + HEADER_BYTES + length + TRAILER_BYTES
    if len(buffer) < end:
        return None
    cs_index = end - 2
    expected = checksum(buffer[start:cs_index])
    if buffer[cs_index] != expected:
        raise ChecksumError(expected, buffer[cs_index], end)
    if buffer[end - 1] != END:
        raise TerminatorError(
            f"frame ends with 0x{buffer[end - 1]:02X} where 0x16 belongs (L = {length})", end
        )
    try:
        address = address_from_wire(bytes(buffer[start + 1 : start + 7]))
    except AddressError as exc:
        raise FrameError(f"bad address field: {exc}", end) from None
    data = bytes((b - DATA_OFFSET) & 0xFF for b in buffer[start + HEADER_BYTES : cs_index])
    return Frame(address, buffer[start + 8], data), end


def decode_frame(raw: bytes | bytearray) -> Frame:
    """The one frame in ``raw`` (anything before it is skipped, nothing may follow)."""
    found = parse_frame(raw)
    if found is None:
        start = raw.find(START)
        if start < 0:
            raise TruncatedFrameError(f"no frame start (0x68) in {len(raw)} bytes", len(raw))
        if len(raw) - start > 9 and raw[start + 9] > MAX_DATA_BYTES and raw[start + 7] == START:
            raise LengthError(
                f"length byte L = {raw[start + 9]} exceeds {MAX_DATA_BYTES}", len(raw)
            )
        raise TruncatedFrameError(
            f"frame incomplete: {len(raw) - start} bytes from its 0x68", len(raw)
        )
    frame, end = found
    if end != len(raw):
        raise LengthError(f"{len(raw) - end} bytes follow the end of the frame", len(raw))
    return frame


def decode_read_reply(frame: Frame, address: str, data_id: DataId) -> float:
    """The value [the item's unit] a reply carries for a read of ``data_id`` from
    ``address``.

    Raises :class:`AbnormalReplyError` for an abnormal reply and
    :class:`UnexpectedReplyError` for a frame that answers something else.
    """
    if not frame.from_meter or frame.function != Control.READ:
        raise UnexpectedReplyError(
            f"control code 0x{frame.control:02X} is not a reply to a read (0x11)"
        )
    if not address_matches(address, frame.address):
        raise UnexpectedReplyError(f"reply from meter {frame.address}, expected {address}")
    if frame.abnormal:
        if len(frame.data) != 1:
            raise LengthError(f"abnormal reply with {len(frame.data)} data bytes, expected 1")
        raise AbnormalReplyError(frame.address, frame.data[0])
    if len(frame.data) < 4:
        raise LengthError(f"read reply with {len(frame.data)} data bytes, no identifier")
    replied = data_id_from_wire(frame.data)
    if replied != data_id:
        raise UnexpectedReplyError(f"reply for identifier {replied:08X}, expected {data_id:08X}")
    return decode_value(data_id, frame.data[4:])
