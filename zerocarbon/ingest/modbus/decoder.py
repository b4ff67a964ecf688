"""Registers of a device's block reads -> Readings.

``value = decode(registers) * scale * 10**sf`` (see :mod:`zerocarbon.metering.profile`).
SunSpec marks unimplemented values with sentinels (int16 0x8000, uint16 0xFFFF,
acc32 0; SunSpec Information Model Reference, "Not Implemented" values): sentinel
integers and non-finite floats yield no reading and are counted as rejected.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from zerocarbon.ingest.modbus.planner import ReadBlock
from zerocarbon.ingest.reading import Reading
from zerocarbon.metering.profile import DeviceProfile, Point
from zerocarbon.metering.registers import RegisterType, decode

_NOT_IMPLEMENTED: dict[RegisterType, float] = {
    RegisterType.INT16: -32768.0,
    RegisterType.UINT16: 65535.0,
}


@dataclass(slots=True)
class DecodeResult:
    readings: list[Reading] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # point names without a usable value


def decode_blocks(
    device_id: str,
    profile: DeviceProfile,
    blocks: Sequence[ReadBlock],
    registers: Mapping[ReadBlock, Sequence[int]],
    ts: datetime,
) -> DecodeResult:
    """Decode every point of the blocks that were read; blocks missing in ``registers``
    (failed reads) contribute nothing."""
    raw: dict[str, float] = {}
    for block in blocks:
        regs = registers.get(block)
        if regs is None:
            continue
        for point in block.points:
            offset = point.address - block.address
            words = regs[offset : offset + point.register_count]
            raw[point.name] = decode(words, point.type, profile.word_order_of(point))

    result = DecodeResult()
    for block in blocks:
        if block not in registers:
            continue
        for point in block.points:
            if point.metric is None:
                continue
            value = _scaled(point, raw)
            if value is None:
                result.rejected.append(point.name)
            else:
                result.readings.append(Reading(ts, device_id, point.metric, value))
    return result


def _scaled(point: Point, raw: Mapping[str, float]) -> float | None:
    value = raw[point.name]
    if not math.isfinite(value) or _NOT_IMPLEMENTED.get(point.type) == value:
        return None
    exponent = 0.0
    if point.scale_factor is not None:
        sf = raw.get(point.scale_factor)
        if sf is None or sf == _NOT_IMPLEMENTED[RegisterType.INT16] or abs(sf) > 10:
            return None
        exponent = sf
    return float(value * point.scale * 10.0**exponent)
