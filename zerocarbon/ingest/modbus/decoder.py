"""Registers of a device's block reads -> rows of a :class:`~zerocarbon.batch.BatchBuilder`.

``value = raw * scale * 10**sf * ratio`` (see :mod:`zerocarbon.metering.profile`; the raw
value in the point's word and byte order, or its bit field, by the profile's
``decode_raw``, the inverse of what the simulators encode). SunSpec marks unimplemented
values with sentinels (int16 0x8000, uint16 0xFFFF, acc32 0; SunSpec Information Model
Reference, "Not Implemented" values): sentinel integers (whole registers, not bit
fields) and non-finite floats yield no reading and are counted as rejected.

Series ids are resolved once per device (:func:`point_series`), not per reading.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from zerocarbon.batch import BatchBuilder, ReadingBatch, SeriesRegistry
from zerocarbon.ingest.modbus.planner import ReadBlock
from zerocarbon.metering.profile import DeviceProfile, Point
from zerocarbon.metering.registers import ByteOrder, RegisterType, WordOrder

# struct formats of the types, big-endian (Python struct module)
_VALUE_FORMATS: dict[RegisterType, str] = {
    RegisterType.INT16: ">h",
    RegisterType.UINT16: ">H",
    RegisterType.INT32: ">i",
    RegisterType.UINT32: ">I",
    RegisterType.FLOAT32: ">f",
    RegisterType.INT64: ">q",
    RegisterType.UINT64: ">Q",
    RegisterType.FLOAT64: ">d",
}
_NOT_IMPLEMENTED: dict[RegisterType, float] = {
    RegisterType.INT16: -32768.0,
    RegisterType.UINT16: 65535.0,
}


@dataclass(slots=True)
class DecodeResult:
    readings: int = 0  # rows appended to the builder
    rejected: list[str] = field(default_factory=list)  # point names without a usable value


def point_series(
    device_id: str, profile: DeviceProfile, registry: SeriesRegistry
) -> dict[str, int]:
    """Series id of each metric point of ``profile`` for ``device_id`` (point name -> id).

    Raises :class:`zerocarbon.batch.UnknownSeriesError` naming device and metric when
    the site's registry lacks one (a start-up error, not a per-poll one).
    """
    return {p.name: registry.id(device_id, p.metric) for p in profile.metric_points if p.metric}


class PointValue(NamedTuple):
    """A metric point's value in one read: ``raw`` as the registers hold it (before
    scale, sf and ratio) and ``value`` in the metric's unit (None: no usable value)."""

    raw: float
    value: float | None


def decode_points(
    profile: DeviceProfile,
    blocks: Sequence[ReadBlock],
    registers: Mapping[ReadBlock, Sequence[int]],
) -> dict[str, PointValue]:
    """The value of every metric point in the blocks that were read (point name ->
    :class:`PointValue`); blocks missing in ``registers`` (failed reads) give nothing."""
    raw: dict[str, float] = {}
    for block in blocks:
        regs = registers.get(block)
        if regs is None:
            continue
        for point in block.points:
            offset = point.address - block.address
            words = regs[offset : offset + point.register_count]
            raw[point.name] = profile.decode_raw(point, words)
    values: dict[str, PointValue] = {}
    for block in blocks:
        if block not in registers:
            continue
        for point in block.points:
            if point.metric is not None:
                values[point.name] = PointValue(raw[point.name], _scaled(profile, point, raw))
    return values


# A metric point of a block on the fast path: (name, None or the structs that turn
# its words, low word first, into its value; scale; ratio; not-implemented sentinel).
_FastPoint = tuple[str, tuple[struct.Struct, struct.Struct] | None, float, float, float | None]


def _fast_plan(
    profile: DeviceProfile, block: ReadBlock
) -> tuple[struct.Struct, struct.Struct, list[_FastPoint]]:
    """Structs that read every metric point of ``block`` from its registers in one
    unpack: the registers packed big-endian, then each value's format at its offset
    (pad bytes between); a point with its low word first is unpacked as words and
    put together again (its pair of structs)."""
    fmt = ">"
    position = 0  # bytes
    points: list[_FastPoint] = []
    for p in sorted(block.points, key=lambda p: p.address):
        if p.metric is None:
            continue
        offset = 2 * (p.address - block.address)
        if offset > position:
            fmt += f"{offset - position}x"
        n = p.register_count
        value_format = _VALUE_FORMATS[p.type]
        swap = None
        if n > 1 and profile.word_order_of(p) is WordOrder.LITTLE:
            fmt += "H" * n
            swap = (struct.Struct(f">{n}H"), struct.Struct(value_format))
        else:
            fmt += value_format[1:]
        position = offset + 2 * n
        points.append((p.name, swap, p.scale, profile.ratio_of(p), _NOT_IMPLEMENTED.get(p.type)))
    return struct.Struct(f">{block.count}H"), struct.Struct(fmt), points


class DeviceDecoder:
    """:func:`decode_points` for one device's planned blocks, with the per-point work
    (orders, formats, multipliers) done once: the collectors' per-poll path. Blocks are
    given by their index in ``blocks``. Same values as :func:`decode_points`.

    Fast path (points without a scale-factor register or bit field, bytes big-endian
    within the word, as almost every meter): a block's registers are packed to bytes
    once and all its values unpacked by one struct."""

    def __init__(self, profile: DeviceProfile, blocks: Sequence[ReadBlock]) -> None:
        self.profile = profile
        self.blocks = tuple(blocks)
        self._generic = any(
            p.metric is not None
            and (p.bit is not None or p.scale_factor is not None)
            or profile.byte_order_of(p) is not ByteOrder.BIG
            for b in blocks
            for p in b.points
        )
        self._plans = [_fast_plan(profile, b) for b in blocks]

    def decode(self, registers: Sequence[Sequence[int] | None]) -> dict[str, PointValue]:
        """Point name -> value of every metric point of the blocks read
        (``registers[i]``: block ``i``'s registers, None when its read failed)."""
        if self._generic:
            read = {b: r for b, r in zip(self.blocks, registers, strict=True) if r is not None}
            return decode_points(self.profile, self.blocks, read)
        values: dict[str, PointValue] = {}
        isfinite = math.isfinite
        new = tuple.__new__
        for (packer, unpacker, points), regs in zip(self._plans, registers, strict=True):
            if regs is None:
                continue
            fields = unpacker.unpack_from(packer.pack(*regs))
            i = 0
            for name, swap, scale, ratio, sentinel in points:
                if swap is None:
                    raw = float(fields[i])
                    i += 1
                else:  # low word first: the words in big-endian order, then the value
                    words_struct, value_struct = swap
                    n = words_struct.size // 2
                    words = fields[i : i + n]
                    i += n
                    raw = float(value_struct.unpack(words_struct.pack(*words[::-1]))[0])
                if not isfinite(raw) or raw == sentinel:
                    values[name] = new(PointValue, (raw, None))
                else:  # as _scaled with no scale factor
                    values[name] = new(PointValue, (raw, float(raw * scale * ratio)))
        return values

    def decode_block(self, index: int, registers: Sequence[int]) -> dict[str, PointValue]:
        """The metric points of block ``index`` alone (a block read again)."""
        read: list[Sequence[int] | None] = [None] * len(self.blocks)
        read[index] = registers
        return self.decode(read)


def append_rows(
    series: Mapping[str, int],
    values: Mapping[str, PointValue],
    ts_us: int,
    out: BatchBuilder,
    refused: Collection[str] = (),
) -> DecodeResult:
    """One row per usable value at ``ts_us`` [us] into ``out``; values without a usable
    value are counted as rejected; points in ``refused`` are left out (counted by the
    caller)."""
    result = DecodeResult()
    for name, point_value in values.items():
        if name in refused:
            continue
        if point_value.value is None:
            result.rejected.append(name)
        else:
            out.add_id(series[name], ts_us, point_value.value)
            result.readings += 1
    return result


def rows_batch(
    series: Mapping[str, int],
    values: Mapping[str, PointValue],
    ts_us: int,
    refused: Collection[str] = (),
) -> tuple[ReadingBatch, DecodeResult]:
    """The rows :func:`append_rows` would add, as a batch of their own built straight
    from arrays (the collectors' per-poll path: no builder)."""
    ids: list[int] = []
    numbers: list[float] = []
    result = DecodeResult()
    for name, point_value in values.items():
        if name in refused:
            continue
        if point_value.value is None:
            result.rejected.append(name)
        else:
            ids.append(series[name])
            numbers.append(point_value.value)
    n = result.readings = len(ids)
    batch = ReadingBatch(
        np.array(ids, dtype=np.int32),
        np.full(n, ts_us, dtype=np.int64),
        np.array(numbers, dtype=np.float64),
        np.zeros(n, dtype=np.int8),  # Quality.GOOD
    )
    return batch, result


def decode_blocks(
    series: Mapping[str, int],
    profile: DeviceProfile,
    blocks: Sequence[ReadBlock],
    registers: Mapping[ReadBlock, Sequence[int]],
    ts_us: int,
    out: BatchBuilder,
) -> DecodeResult:
    """Decode every point of the blocks that were read and append one row per usable
    metric point to ``out`` (time ``ts_us`` [us], series from ``series``, see
    :func:`point_series`). Blocks missing in ``registers`` (failed reads) contribute
    nothing."""
    return append_rows(series, decode_points(profile, blocks, registers), ts_us, out)


def _scaled(profile: DeviceProfile, point: Point, raw: Mapping[str, float]) -> float | None:
    value = raw[point.name]
    if not math.isfinite(value):
        return None
    if not point.is_bit_field and _NOT_IMPLEMENTED.get(point.type) == value:
        return None
    exponent = 0.0
    if point.scale_factor is not None:
        sf = raw.get(point.scale_factor)
        if sf is None or sf == _NOT_IMPLEMENTED[RegisterType.INT16] or abs(sf) > 10:
            return None
        exponent = sf
    return float(value * point.scale * 10.0**exponent * profile.ratio_of(point))
