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

Device faults (set by :class:`~.faults.FaultPlan` through the simulator runner):

* **word swap** (:meth:`RegisterBank.set_word_swaps`): the listed metrics' points of two
  or more registers are stored with their words in reverse order, as a meter set to
  the other word order serves them;
* **torn read** (:meth:`RegisterBank.set_torn_reads`): a counter of two registers is
  written one word at a time. When an update carries into the high word (raw ``H:L``
  -> ``H+1:L'``), the first read that covers the point afterwards gets ``H:L'`` (mode
  ``old_high``, 65,536 counts low) or ``H+1:L`` (``old_low``, up to 65,535 counts high),
  built from the previous image and the current one; later reads get the true value;
* **spike** (:meth:`RegisterBank.spike_once`): the next read that covers the point gets
  ``factor`` x its value (or a given value).

Each served one-shot fault is recorded in :attr:`RegisterBank.served` and passed to
:attr:`RegisterBank.on_served`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Literal

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


TornMode = Literal["old_high", "old_low"]
WORD = 1 << 16  # counts of one high-word step of a 32-bit register


@dataclass(frozen=True, slots=True)
class ServedFault:
    """A one-shot fault a read got: ``kind`` (``"torn_read"`` or ``"spike"``), the
    point's metric, the engineering value served and the true one [metric unit]."""

    kind: str
    metric: str
    served_value: float
    true_value: float


@dataclass(frozen=True, slots=True)
class _Spike:
    factor: float
    value: float | None  # served instead of factor x the true value


def torn_raw(mode: TornMode, old_raw: int, new_raw: int) -> int:
    """The raw value a read gets half-way through a carry from ``old_raw`` to
    ``new_raw`` (a 32-bit register: high word first, then the low word, or the reverse)."""
    if mode == "old_high":
        return (old_raw & ~(WORD - 1)) | (new_raw & (WORD - 1))
    return (new_raw & ~(WORD - 1)) | (old_raw & (WORD - 1))


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
        self._raws: dict[str, int] = {}  # point name -> raw integer last stored
        self._swapped: frozenset[str] = frozenset()  # metrics served word-swapped
        self._torn_modes: dict[str, TornMode] = {}  # metric -> mode of its torn reads
        self._torn_pending: dict[str, int] = {}  # point name -> raw before the carry
        self._spikes: dict[str, _Spike] = {}  # point name -> spike of its next read
        self.served: list[ServedFault] = []  # one-shot faults served, in order
        self.on_served: Callable[[ServedFault], None] | None = None

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
        raw = self._raw(point, value)
        words = self.profile.encode_raw(point, raw, current)
        if point.metric in self._swapped and self._swappable(point):
            words.reverse()
        for offset, word in enumerate(words):
            regs[point.address + offset] = word
        if is_integer(point.type) and not point.is_bit_field:
            new_raw = int(raw)
            old_raw = self._raws.get(point.name)
            self._raws[point.name] = new_raw
            if (
                point.metric in self._torn_modes
                and old_raw is not None
                and new_raw > old_raw
                and new_raw // WORD != old_raw // WORD
                and point.name not in self._torn_pending
            ):
                self._torn_pending[point.name] = old_raw

    @staticmethod
    def _swappable(point: Point) -> bool:
        return point.register_count >= 2 and not point.is_bit_field

    # --- faults ----------------------------------------------------------------------

    def set_word_swaps(self, metrics: Collection[str]) -> None:
        """Serve the points of ``metrics`` (two or more registers) word-swapped from now
        on; the others in their profile's order. Re-encodes the points that change."""
        swapped = frozenset(metrics)
        changed = swapped ^ self._swapped
        self._swapped = swapped
        if changed:
            self.update({m: v for m, v in self.values.items() if m in changed})

    def set_torn_reads(self, modes: Mapping[str, TornMode]) -> None:
        """Tear the first read after each carry of the points of these metrics (metric
        -> mode) from now on; a metric no longer listed stops tearing."""
        self._torn_modes = dict(modes)
        names = {p.name for p in self.profile.metric_points if p.metric in self._torn_modes}
        for name in [n for n in self._torn_pending if n not in names]:
            del self._torn_pending[name]

    def spike_once(self, metric: str, factor: float, value: float | None = None) -> None:
        """Serve ``factor`` x the metric's value (or ``value``) to the next read of it."""
        for point in self.profile.metric_points:
            if point.metric == metric:
                self._spikes[point.name] = _Spike(factor, value)

    def _overlay(self, point: Point) -> tuple[str, float, float] | None:
        """The one-shot fault the next read of ``point`` gets, consumed: (kind, served
        engineering value, raw to serve); None when there is none."""
        spike = self._spikes.pop(point.name, None)
        if spike is not None and point.metric is not None:
            true = self.values.get(point.metric, 0.0)
            served = spike.value if spike.value is not None else spike.factor * true
            return ("spike", served, self._raw(point, served))
        old_raw = self._torn_pending.pop(point.name, None)
        if old_raw is not None and point.metric in self._torn_modes:
            raw = torn_raw(self._torn_modes[point.metric], old_raw, self._raws[point.name])
            return ("torn_read", raw * self.unit_value(point), float(raw))
        return None

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
        """``count`` registers from ``address``, or None if any of them is unmapped.

        A pending torn read or spike of a point the read covers whole is served (once).
        """
        regs = self._registers[table]
        try:
            words = [regs[a] for a in range(address, address + count)]
        except KeyError:
            return None
        if self._spikes or self._torn_pending:
            for point in self.profile.metric_points:
                if (
                    point.table is table
                    and address <= point.address
                    and point.end_address <= address + count
                    and (point.name in self._spikes or point.name in self._torn_pending)
                ):
                    self._serve(point, words, address)
        return words

    def _serve(self, point: Point, words: list[int], address: int) -> None:
        overlay = self._overlay(point)
        if overlay is None or point.metric is None:
            return
        kind, served, raw = overlay
        start = point.address - address
        current = words[start : start + point.register_count]
        encoded = self.profile.encode_raw(point, raw, current)
        if point.metric in self._swapped and self._swappable(point):
            encoded.reverse()
        words[start : start + point.register_count] = encoded
        fault = ServedFault(kind, point.metric, served, self.values.get(point.metric, 0.0))
        self.served.append(fault)
        if self.on_served is not None:
            self.on_served(fault)

    def is_mapped(self, table: RegisterTable, address: int) -> bool:
        return address in self._registers[table]
