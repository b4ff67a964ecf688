"""The register image of one simulated Modbus unit, built from its device profile.

The profile is the same file the collectors decode with, so both always agree. A
point's engineering value ``v`` becomes raw ``v / scale / 10**sf / ratio`` (``sf``: the
value the unit serves in the point's ``scale_factor`` register, SunSpec ``sunssf``;
``ratio``: the profile's PT, CT or PT x CT multiplier of the point), encoded by
:meth:`zerocarbon.metering.profile.DeviceProfile.encode_raw` in the point's word and
byte order (a bit field is written into its register, the other bits kept), the exact
inverse of the collectors' ``decode_raw``. Static blocks are served as given.

Out-of-range values: counters on integer registers (and bit fields) roll over modulo
the register (field) width, as real energy accumulators do; gauges saturate at the
type's limits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from zerocarbon.metering.metrics import METRICS_BY_NAME, MetricKind
from zerocarbon.metering.profile import DeviceProfile, Point, RegisterTable
from zerocarbon.metering.registers import RegisterType, WordOrder, decode, is_integer

_INTEGER_LIMITS: dict[RegisterType, tuple[int, int]] = {
    RegisterType.INT16: (-(2**15), 2**15 - 1),
    RegisterType.UINT16: (0, 2**16 - 1),
    RegisterType.INT32: (-(2**31), 2**31 - 1),
    RegisterType.UINT32: (0, 2**32 - 1),
    RegisterType.INT64: (-(2**63), 2**63 - 1),
    RegisterType.UINT64: (0, 2**64 - 1),
}
_FLOAT_LIMITS: dict[RegisterType, float] = {
    RegisterType.FLOAT32: 3.4028234663852886e38,
    RegisterType.FLOAT64: 1.7976931348623157e308,
}
_FLOAT_MANTISSA_BITS: dict[RegisterType, int] = {RegisterType.FLOAT32: 24, RegisterType.FLOAT64: 53}


def raw_limits(register_type: RegisterType) -> tuple[float, float]:
    """Smallest and largest raw value a register type holds."""
    if is_integer(register_type):
        lo, hi = _INTEGER_LIMITS[register_type]
        return (float(lo), float(hi))
    limit = _FLOAT_LIMITS[register_type]
    return (-limit, limit)


def point_raw_limits(point: Point) -> tuple[float, float]:
    """Smallest and largest raw value of ``point`` (a bit field: 0 .. 2**bits - 1)."""
    if point.is_bit_field:
        return (0.0, float(2**point.bit_count - 1))
    return raw_limits(point.type)


def _wrap(raw: int, lo: int, hi: int) -> int:
    span = hi - lo + 1
    return (raw - lo) % span + lo


class RegisterBank:
    """Registers of one unit: ``read(table, address, count)`` and ``update(values)``.

    Parameters
    ----------
    profile : DeviceProfile
        The unit's register map.
    gap_fill_registers : int
        Unmapped runs of at most this many registers *between* mapped registers are
        served as zeros, like devices that tolerate a read planner's gap filling; any
        other unmapped register makes a read fail (Modbus exception 02). 0: strict.
    """

    def __init__(self, profile: DeviceProfile, gap_fill_registers: int = 0) -> None:
        self.profile = profile
        self._registers: dict[RegisterTable, dict[int, int]] = {t: {} for t in RegisterTable}
        for point in profile.points:
            regs = self._registers[point.table]
            for address in range(point.address, point.end_address):
                regs[address] = 0
        for block in profile.static:
            regs = self._registers[block.table]
            for offset, value in enumerate(block.registers):
                regs[block.address + offset] = value & 0xFFFF
        if gap_fill_registers > 0:
            for regs in self._registers.values():
                mapped = sorted(regs)
                for a, b in zip(mapped, mapped[1:], strict=False):
                    if 1 < b - a <= gap_fill_registers + 1:
                        for address in range(a + 1, b):
                            regs[address] = 0
        self._exponents = {
            p.name: self._served_exponent(p) for p in profile.points if p.scale_factor is not None
        }
        self.values: dict[str, float] = {}  # the engineering values last encoded

    def _served_exponent(self, point: Point) -> int:
        assert point.scale_factor is not None
        sf_point = self.profile.point(point.scale_factor)
        word = self._registers[sf_point.table].get(sf_point.address, 0)
        return int(decode([word], RegisterType.INT16, WordOrder.BIG))

    def exponent(self, point: Point) -> int:
        """The power-of-ten exponent the unit serves for ``point`` (0 without one)."""
        return self._exponents.get(point.name, 0)

    def unit_value(self, point: Point) -> float:
        """Engineering value of one raw count of ``point`` (``scale * 10**sf * ratio``)."""
        return point.scale * 10.0 ** self.exponent(point) * self.profile.ratio_of(point)

    def value_range(self, point: Point) -> tuple[float, float]:
        """Smallest and largest engineering value ``point`` can represent."""
        lo, hi = point_raw_limits(point)
        unit = self.unit_value(point)
        return (min(lo * unit, hi * unit), max(lo * unit, hi * unit))

    def resolution(self, point: Point, value: float) -> float:
        """Step between representable values of ``point`` near ``value`` (engineering units)."""
        unit = abs(self.unit_value(point))
        if is_integer(point.type):
            return unit
        raw = abs(value / self.unit_value(point))
        bits = _FLOAT_MANTISSA_BITS[point.type]
        return unit * (2.0 ** (math.frexp(raw)[1] - bits) if raw > 0 else 0.0)

    def update(self, values: Mapping[str, float]) -> None:
        """Encode the metric points whose metric is in ``values`` (metric name -> value)."""
        for point in self.profile.metric_points:
            assert point.metric is not None
            value = values.get(point.metric)
            if value is None:
                continue
            self.values[point.metric] = value
            self._store(point, value)

    def set_points(self, values: Mapping[str, float]) -> None:
        """Encode points by point name (engineering values), e.g. status bit fields and
        other points without a metric."""
        for name, value in values.items():
            self._store(self.profile.point(name), value)

    def _store(self, point: Point, value: float) -> None:
        regs = self._registers[point.table]
        current = [regs[a] for a in range(point.address, point.end_address)]
        words = self.profile.encode_raw(point, self._raw(point, value), current)
        for offset, word in enumerate(words):
            regs[point.address + offset] = word

    def _raw(self, point: Point, value: float) -> float:
        """Raw register value of engineering ``value``: wrapped or saturated to fit."""
        raw = value / self.unit_value(point)
        lo, hi = point_raw_limits(point)
        if is_integer(point.type):
            metric = METRICS_BY_NAME.get(point.metric or "")
            counter = metric is not None and metric.kind is MetricKind.COUNTER
            raw_int = round(raw)
            if counter:
                return float(_wrap(raw_int, int(lo), int(hi)))
            return float(max(lo, min(hi, raw_int)))
        return max(lo, min(hi, raw))

    def read(self, table: RegisterTable, address: int, count: int) -> list[int] | None:
        """``count`` registers from ``address``, or None if any of them is unmapped."""
        regs = self._registers[table]
        try:
            return [regs[a] for a in range(address, address + count)]
        except KeyError:
            return None

    def is_mapped(self, table: RegisterTable, address: int) -> bool:
        return address in self._registers[table]
