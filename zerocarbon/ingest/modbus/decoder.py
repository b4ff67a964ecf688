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
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from zerocarbon.batch import BatchBuilder, SeriesRegistry
from zerocarbon.ingest.modbus.planner import ReadBlock
from zerocarbon.metering.profile import DeviceProfile, Point
from zerocarbon.metering.registers import RegisterType

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


@dataclass(frozen=True, slots=True)
class PointValue:
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
