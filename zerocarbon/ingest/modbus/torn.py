"""Torn-read guard: counters of several registers whose words came from different
moments must not land as readings.

A Modbus read returns registers as the device holds them when it builds the answer. A
device that updates a 32- or 64-bit value one word at a time (common in meters whose
firmware copies words from a measuring chip) can answer with the old high word and
the new low word, or the reverse, at a carry: ``0x0001_FFFF -> 0x0002_0000`` reads as
``0x0001_0000`` (65535 counts back) or ``0x0002_FFFF`` (65536 counts ahead). A counter
stored that way becomes a reset or a huge step in the carbon accounts.

The rule, for each counter point (metric kind counter) of two or more registers, whole
registers (not a bit field), integer or float, against the last value accepted from
that point (``last``, first read ``elapsed_s`` seconds of clock time earlier: the time
since the value last moved, as a meter's register moves in steps of its resolution):

1. A new value is *implausible* when it is
   a. lower than ``last`` (backwards), or
   b. on an integer point, ``last`` plus a non-zero multiple of 65536 raw counts
      (low word unchanged, high word moved: one word of another moment), or
   c. on an energy counter (unit kWh) of a device with ``rated_power_kw``, ahead of
      ``last`` by more than the device could deliver at :data:`RATED_MARGIN` times its
      rating over ``elapsed_s`` (plus two raw steps).
   The first value of a point is accepted as it is (nothing to compare with).
2. The scheduler reads the block of an implausible value again at once (one extra
   request), and the re-read decides:
   a. plausible against ``last``: the re-read's value is accepted (the first was torn);
   b. *consistent* with the first read: the same value, or a step on from it that is
      plausible by rule 1 with the first read as ``last`` and small for two reads in a
      row (integers: fewer than 65536 counts, so the upper words agree; floats: at
      most :data:`REREAD_RELATIVE_STEP` of the value). The device really shows it (a
      reset, a rollover, a meter exchanged); accepted. The carbon engine handles
      resets and rollovers from what is stored.
   c. otherwise (or the re-read failed): the value is refused, counted in
      ``DeviceStats.torn_reads``, reported as a ``TORN_READ`` device event and never
      handed to the sink; ``last`` stays as it was, so the next poll is judged
      against the last accepted value.

Gauges are not guarded: a torn gauge is one wrong sample, caught by admission's range
checks; a torn counter is a wrong total forever after.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from zerocarbon.ingest.admission import RATED_MARGIN
from zerocarbon.ingest.modbus.decoder import PointValue
from zerocarbon.metering.metrics import METRICS_BY_NAME, MetricKind
from zerocarbon.metering.profile import DeviceProfile, Point
from zerocarbon.metering.registers import is_integer

__all__ = ["REREAD_RELATIVE_STEP", "WORD_COUNTS", "CounterGuard"]

WORD_COUNTS = 0x10000  # raw counts of one step of the second word
# A float counter's re-read, taken right after the first read, may be ahead of it by
# this fraction at most; one step of a float32's upper word is 2**-7 (0.8 %) or more.
REREAD_RELATIVE_STEP = 1e-3
S_PER_H = 3600.0


@dataclass(slots=True)
class _Accepted:
    raw: float
    value: float
    at_s: float  # clock time of the read [s]


class CounterGuard:
    """The last accepted value of each guarded counter point of one device, and the
    plausibility test of the module docstring.

    Parameters
    ----------
    profile : DeviceProfile
        The device's register map.
    rated_power_kw : float, optional
        The device's rating [kW] (rule 1c); None: no rate limit.
    """

    def __init__(self, profile: DeviceProfile, rated_power_kw: float | None) -> None:
        self.points: dict[str, Point] = {
            p.name: p
            for p in profile.metric_points
            if p.metric is not None
            and METRICS_BY_NAME[p.metric].kind is MetricKind.COUNTER
            and p.register_count >= 2
            and not p.is_bit_field
        }
        self._max_rate_per_s: dict[str, float] = {}
        if rated_power_kw is not None:
            for name, point in self.points.items():
                if point.metric is not None and METRICS_BY_NAME[point.metric].unit == "kWh":
                    self._max_rate_per_s[name] = RATED_MARGIN * rated_power_kw / S_PER_H
        self._last: dict[str, _Accepted] = {}

    def suspects(self, values: Mapping[str, PointValue], at_s: float) -> list[str]:
        """The guarded points among ``values`` whose value is implausible (rule 1)."""
        out: list[str] = []
        for name in self.points:
            new = values.get(name)
            if new is None or new.value is None:
                continue
            last = self._last.get(name)
            if last is None or new.raw == last.raw:
                continue  # the first value, or no change: plausible
            if self._check(name, last, new, at_s) is not None:
                out.append(name)
        return out

    def implausible(self, name: str, new: PointValue, at_s: float) -> str | None:
        """Why ``new`` is implausible for point ``name`` read at ``at_s`` [s]; None:
        plausible (or not guarded, or no value)."""
        last = self._last.get(name)
        if last is None or name not in self.points or new.value is None:
            return None
        return self._check(name, last, new, at_s)

    def resolve(self, name: str, first: PointValue, again: PointValue, at_s: float) -> bool:
        """Rule 2 for a suspect point: True to accept ``again``, the re-read at ``at_s``
        [s]: plausible against the last accepted value, or consistent with ``first``
        (the same value, or a plausible step on from it)."""
        if again.value is None:
            return False
        if self.implausible(name, again, at_s) is None:
            return True
        if first.value is None or again.value < first.value:
            return False
        if is_integer(self.points[name].type):
            immediate = again.raw - first.raw < WORD_COUNTS  # the upper words agree
        else:
            limit = REREAD_RELATIVE_STEP * abs(first.value)
            immediate = again.value - first.value <= limit
        first_read = _Accepted(first.raw, first.value, at_s)
        return immediate and self._check(name, first_read, again, at_s) is None

    def _check(self, name: str, last: _Accepted, new: PointValue, at_s: float) -> str | None:
        point = self.points[name]
        assert new.value is not None
        if new.value < last.value:
            return f"backwards from {last.value:g} to {new.value:g}"
        step_raw = new.raw - last.raw
        if is_integer(point.type) and step_raw != 0 and step_raw % WORD_COUNTS == 0:
            words = int(step_raw // WORD_COUNTS)
            return f"{new.value:g} is {words} x 65536 counts off {last.value:g}"
        rate = self._max_rate_per_s.get(name)
        if rate is not None:
            count_value = abs(new.value / new.raw) if new.raw else 0.0
            limit = rate * max(at_s - last.at_s, 0.0) + 2 * count_value
            if new.value - last.value > limit:
                return (
                    f"{new.value - last.value:g} ahead of {last.value:g} in "
                    f"{at_s - last.at_s:g} s, more than the rating allows ({limit:g})"
                )
        return None

    def accept(
        self, values: Mapping[str, PointValue], at_s: float, refused: Collection[str] = ()
    ) -> None:
        """Remember the guarded values of a poll read at ``at_s`` [s] that changed, except
        the ``refused`` ones (an unchanged value keeps the time it was first read: the
        rating bounds the step over the time since the value last moved)."""
        for name in self.points:
            new = values.get(name)
            if new is None or new.value is None or name in refused:
                continue
            last = self._last.get(name)
            if last is None or new.raw != last.raw:
                self._last[name] = _Accepted(new.raw, new.value, at_s)
