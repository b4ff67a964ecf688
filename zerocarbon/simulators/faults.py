"""Fault injection: what the simulated devices report, not what the plant uses.

A :class:`FaultPlan` is built from ``site.simulation.faults``
(:class:`zerocarbon.config.SimulatorFaults`) and the plant's start time; every time in
it is an offset from that start in simulated seconds, and its only randomness is
seeded by ``simulation.seed``, so a run is repeatable. All faults are off by default.

Counter faults change the value a device reports for a counter (Modbus registers and
MQTT payloads alike):

* **counter reset** (``counter_resets``): at ``at_s`` the device restarts and the
  counter starts again from 0, then counts the true energy;
* **meter replacement** (``meter_replacements``): at ``at_s`` the counter jumps to
  ``new_value`` (the new meter's reading) and counts on from there;
* **register rollover** (``rollovers``): the counter starts ``below_wrap`` under the
  wrap value of its register and wraps to the bottom of the register's range once
  that much has been counted. The wrap value follows from the register type and the
  engineering value of one count: ``2**bits x scale x 10**sf`` (e.g. uint32 with scale
  0.01 -> 42,949,672.96 kWh); for an MQTT device from its field's ``type`` and
  ``scale``. Floating-point registers cannot wrap (an error says so). Counters on
  integer registers wrap whether or not a rollover is configured, as real ones do;
* **backward step** (``backward_steps``): in [at_s, at_s + duration_s) the counter
  reads ``step`` (12 kWh by default) below its true value, as a meter restarted near
  its old reading; afterwards it reads the true value again. By default the window is
  one MQTT publish interval (exactly one message; Modbus reads see it as long).

Transport faults change whether and when a device's data arrives:

* **gap** (``gaps``): the device is silent over [start_s, start_s + duration_s) and
  comes back with its counters having kept counting. Modbus: ``silent`` units get no
  reply (requests time out); ``closed`` stops the device's endpoint from listening and
  drops its connections (only for a device alone on its endpoint), switched at the
  runner's physics ticks. MQTT devices publish nothing;
* **late data** (``late_data``, MQTT): messages stamped in the window are held back
  and published ``delay_s`` after it ends, in seeded shuffled order, after that cycle's
  live messages and with their original timestamps;
* **duplicate data** (``duplicates``, MQTT): a seeded ``share`` of the messages stamped
  in [start_s, end_s), and the first message at or after each of ``at_s``, are
  published twice (same payload, same timestamp).

The plant's ground truth stays the exact physical energy. Each fault that happens is
marked in it (:meth:`~.ground_truth.GroundTruth.mark_fault`) for the device and every
UTC hour it touches: event faults in the hour of their time (a rollover in the hour the
counter wraps; a duplicate in the hour of the message's timestamp), spans in every
hour they overlap (a late window: the hours of the delayed data).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

from zerocarbon.config import (
    BackwardStepFault,
    Dlt645Device,
    ModbusTcpDevice,
    MqttDevice,
    SiteConfig,
)
from zerocarbon.metering.metrics import METRICS_BY_NAME, MetricKind
from zerocarbon.metering.registers import RegisterType, counter_wrap, is_integer
from zerocarbon.simulators.ground_truth import GroundTruth
from zerocarbon.simulators.noise import seeded_rng
from zerocarbon.simulators.register_bank import RegisterBank, raw_limits

CounterKey = tuple[str, str]  # (device_id, metric)
T = TypeVar("T")


class FaultKind(StrEnum):
    COUNTER_RESET = "counter_reset"
    METER_REPLACEMENT = "meter_replacement"
    ROLLOVER = "rollover"
    GAP = "gap"
    LATE_DATA = "late_data"
    DUPLICATE_DATA = "duplicate_data"
    BACKWARD_STEP = "backward_step"


class FaultError(ValueError):
    """A configured fault cannot happen; the message names its path in the site file."""


@dataclass(frozen=True, slots=True)
class CounterRegister:
    """The range of a counter's register in engineering units (kWh, units).

    ``span`` is the wrap value: a counter at ``low + span`` reads ``low``.
    """

    register_type: RegisterType
    low: float  # smallest value the register holds [counter unit]
    span: float  # wrap value: 2**bits x value of one count [counter unit]

    @property
    def top(self) -> float:
        """Where the counter wraps (one count above the largest value)."""
        return self.low + self.span

    def wrap(self, value: float) -> float:
        return (value - self.low) % self.span + self.low

    def turns(self, value: float) -> int:
        """How many times ``value`` (unwrapped) has wrapped."""
        return math.floor((value - self.low) / self.span)


def counter_register(register_type: RegisterType, unit: float, what: str) -> CounterRegister:
    """The wrap of a counter on ``register_type`` whose one count is worth ``unit``.

    Raises :class:`FaultError` (naming ``what``) for floating-point registers, which
    do not wrap, and for a non-positive ``unit``.
    """
    if not is_integer(register_type):
        raise FaultError(
            f"{what}: a {register_type} register cannot wrap (only integer registers roll over)"
        )
    if unit <= 0:
        raise FaultError(f"{what}: one count is worth {unit}, must be > 0 to wrap")
    lo, _hi = raw_limits(register_type)
    return CounterRegister(register_type, lo * unit, counter_wrap(register_type, unit))


@dataclass(slots=True)
class _Rebase:
    """A counter restarting from ``base`` at ``at_s`` (reset or new meter)."""

    at_s: float  # absolute [s]
    kind: FaultKind
    base: float
    anchor: float | None = None  # the counter's true integral at ``at_s``, once passed


@dataclass(frozen=True, slots=True)
class _Window:
    start_s: float  # absolute [s]
    end_s: float  # absolute [s], exclusive

    def __contains__(self, t_s: object) -> bool:
        return isinstance(t_s, int | float) and self.start_s <= t_s < self.end_s

    def overlap(self, start_s: float, end_s: float) -> tuple[float, float] | None:
        lo, hi = max(start_s, self.start_s), min(end_s, self.end_s)
        return (lo, hi) if lo < hi else None


@dataclass(slots=True)
class _Duplicates:
    share: float
    window: _Window
    pending_s: list[float] = field(default_factory=list)  # absolute, sorted


_AnyDevice = ModbusTcpDevice | MqttDevice | Dlt645Device


def _exposed_counters(site: SiteConfig, device: _AnyDevice) -> list[str]:
    if isinstance(device, MqttDevice):
        names = [device.field_metric(key) for key in device.fields]
    elif isinstance(device, Dlt645Device):
        names = list(device.metrics())
    else:
        names = [p.metric for p in site.profile_of(device).metric_points if p.metric is not None]
    return [m for m in dict.fromkeys(names) if METRICS_BY_NAME[m].kind is MetricKind.COUNTER]


def _register_of(
    site: SiteConfig, device: _AnyDevice, metric: str, what: str
) -> CounterRegister | None:
    """The integer register behind a counter, or None when it is a float or unknown."""
    if isinstance(device, Dlt645Device):
        return None  # BCD digits, not a binary register
    if isinstance(device, MqttDevice):
        spec = device.counter_register(metric)
        if spec is None:
            return None
        register_type, scale = spec
        if not is_integer(register_type):
            return None
        return counter_register(register_type, scale, what)
    bank = RegisterBank(site.profile_of(device))
    for point in bank.profile.metric_points:
        if point.metric == metric and is_integer(point.type):
            return counter_register(point.type, bank.unit_value(point), what)
    return None


def _rollover_register(
    site: SiteConfig, device: _AnyDevice, metric: str, what: str
) -> CounterRegister:
    if isinstance(device, Dlt645Device):
        raise FaultError(f"{what}: device {device.id!r}: DL/T 645 rollovers are not simulated")
    if isinstance(device, MqttDevice):
        spec = device.counter_register(metric)
        if spec is None:
            keys = [k for k in device.fields if device.field_metric(k) == metric]
            raise FaultError(
                f"{what}: device {device.id!r} field {keys[0]!r} ({metric}) gives no register "
                f'type; map it as {{ metric = "{metric}", type = "uint32", scale = 0.01 }}'
            )
        return counter_register(spec[0], spec[1], f"{what} ({device.id} {metric})")
    bank = RegisterBank(site.profile_of(device))
    for point in bank.profile.metric_points:
        if point.metric == metric:
            return counter_register(
                point.type,
                bank.unit_value(point),
                f"{what} ({device.id} {metric}, profile point {point.name!r})",
            )
    raise FaultError(f"{what}: device {device.id!r} has no {metric} point")  # pragma: no cover


class FaultPlan:
    """The faults of ``site`` for a plant started at ``start_s`` [s], resolved.

    Validates every fault (unknown device or metric, a fault its protocol cannot have,
    a register that cannot wrap) and raises :class:`FaultError` naming its path, e.g.
    ``simulation.faults.rollovers[0]``. Records what happens in ``truth``.
    """

    def __init__(self, site: SiteConfig, start_s: float, truth: GroundTruth) -> None:
        self.start_s = float(start_s)
        self.truth = truth
        self._seed = site.simulation.seed
        faults = site.simulation.faults
        devices = {d.id: d for d in site.devices}
        counters = {d.id: _exposed_counters(site, d) for d in site.devices}

        def device(path: str, device_id: str) -> _AnyDevice:
            found = devices.get(device_id)
            if found is None:
                raise FaultError(f"{path}.device: no device {device_id!r}")
            return found

        def metrics(path: str, device_id: str, metric: str | None) -> list[str]:
            device(path, device_id)
            if metric is None:
                if not counters[device_id]:
                    raise FaultError(f"{path}: device {device_id!r} has no counter")
                return counters[device_id]
            if metric not in counters[device_id]:
                raise FaultError(
                    f"{path}.metric: device {device_id!r} has no counter {metric!r} "
                    f"(its counters: {', '.join(counters[device_id]) or 'none'})"
                )
            return [metric]

        def mqtt_only(path: str, device_id: str) -> None:
            if not isinstance(device(path, device_id), MqttDevice):
                raise FaultError(f"{path}.device: {device_id!r} is not an MQTT device")

        self.registers: dict[CounterKey, CounterRegister] = {}
        for d in site.devices:
            for m in counters[d.id]:
                register = _register_of(site, d, m, f"devices {d.id!r} {m}")
                if register is not None:
                    self.registers[(d.id, m)] = register

        self._initial: dict[CounterKey, float] = {}
        for i, roll in enumerate(faults.rollovers):
            path = f"simulation.faults.rollovers[{i}]"
            for m in metrics(path, roll.device, roll.metric):
                register = _rollover_register(site, device(path, roll.device), m, path)
                if roll.below_wrap >= register.span:
                    raise FaultError(
                        f"{path}.below_wrap: {roll.below_wrap} is not below the wrap value "
                        f"{register.span}"
                    )
                self.registers[(roll.device, m)] = register
                self._initial[(roll.device, m)] = register.top - roll.below_wrap

        self._rebases: dict[CounterKey, list[_Rebase]] = {}
        rebases: list[tuple[str, str, str | None, float, FaultKind, float]] = [
            (f"counter_resets[{i}]", f.device, f.metric, f.at_s, FaultKind.COUNTER_RESET, 0.0)
            for i, f in enumerate(faults.counter_resets)
        ]
        rebases += [
            (
                f"meter_replacements[{i}]",
                f.device,
                f.metric,
                f.at_s,
                FaultKind.METER_REPLACEMENT,
                f.new_value,
            )
            for i, f in enumerate(faults.meter_replacements)
        ]
        for name, device_id, metric, at_s, kind, base in rebases:
            for m in metrics(f"simulation.faults.{name}", device_id, metric):
                rebase = _Rebase(self.start_s + at_s, kind, base)
                self._rebases.setdefault((device_id, m), []).append(rebase)
        for events in self._rebases.values():
            events.sort(key=lambda e: e.at_s)

        self._steps: dict[CounterKey, list[tuple[_Window, BackwardStepFault]]] = {}
        for i, back in enumerate(faults.backward_steps):
            path = f"simulation.faults.backward_steps[{i}]"
            duration_s = back.duration_s or site.simulation.publish_interval_s
            window = _Window(self.start_s + back.at_s, self.start_s + back.at_s + duration_s)
            for m in metrics(path, back.device, back.metric):
                self._steps.setdefault((back.device, m), []).append((window, back))

        self._gaps: dict[str, list[tuple[_Window, str]]] = {}
        for i, gap in enumerate(faults.gaps):
            path = f"simulation.faults.gaps[{i}]"
            d = device(path, gap.device)
            if gap.mode == "closed" and isinstance(d, ModbusTcpDevice):
                sharing = [
                    x.id for x in site.modbus_devices if x.endpoint == d.endpoint and x.id != d.id
                ]
                if sharing:
                    raise FaultError(
                        f"{path}.mode: 'closed' would silence {', '.join(sharing)} too "
                        f"(same endpoint {d.host}:{d.port}); use 'silent'"
                    )
            start = self.start_s + gap.start_s
            self._gaps.setdefault(gap.device, []).append(
                (_Window(start, start + gap.duration_s), gap.mode)
            )

        self._late: dict[str, list[tuple[_Window, float]]] = {}
        for i, late in enumerate(faults.late_data):
            path = f"simulation.faults.late_data[{i}]"
            mqtt_only(path, late.device)
            start = self.start_s + late.start_s
            window = _Window(start, start + late.duration_s)
            self._late.setdefault(late.device, []).append((window, window.end_s + late.delay_s))

        self._duplicates: dict[str, list[_Duplicates]] = {}
        for i, dup in enumerate(faults.duplicates):
            path = f"simulation.faults.duplicates[{i}]"
            mqtt_only(path, dup.device)
            end_s = math.inf if dup.end_s is None else self.start_s + dup.end_s
            self._duplicates.setdefault(dup.device, []).append(
                _Duplicates(
                    dup.share,
                    _Window(self.start_s + dup.start_s, end_s),
                    sorted(self.start_s + t for t in dup.at_s),
                )
            )

    # --- counters ----------------------------------------------------------------------

    @property
    def active(self) -> bool:
        """Whether any fault is configured."""
        return bool(
            self._initial
            or self._rebases
            or self._steps
            or self._gaps
            or self._late
            or self._duplicates
        )

    def initial_counter(self, key: CounterKey, default: float) -> float:
        """The counter's value at the start: just below its wrap value for a rollover."""
        return self._initial.get(key, default)

    def _unwrapped(self, key: CounterKey, start_value: float, integral: float, t_s: float) -> float:
        value = start_value + integral
        for event in self._rebases.get(key, ()):
            if event.at_s > t_s:
                break
            anchor = integral if event.anchor is None else event.anchor
            value = event.base + (integral - anchor)
        return value

    def report(self, key: CounterKey, start_value: float, integral: float, now_s: float) -> float:
        """The counter value the device reports at ``now_s`` when it has truly counted
        ``integral`` since the start, where it stood at ``start_value``."""
        value = self._unwrapped(key, start_value, integral, now_s)
        for window, back in self._steps.get(key, ()):
            if now_s in window:
                value -= back.step
        register = self.registers.get(key)
        return value if register is None else register.wrap(value)

    def on_counter_step(
        self,
        key: CounterKey,
        start_value: float,
        start_s: float,
        end_s: float,
        integral_before: float,
        amount: float,
    ) -> None:
        """Called by the plant for every counter step: pins resets and replacements to
        the true count at their time, and marks a wrap of the register."""
        duration_s = end_s - start_s
        latest: _Rebase | None = None
        for event in self._rebases.get(key, ()):
            if start_s <= event.at_s < end_s:
                if event.anchor is None:
                    share = (event.at_s - start_s) / duration_s if duration_s > 0 else 0.0
                    event.anchor = integral_before + amount * share
                latest = event
        register = self.registers.get(key)
        if register is None or amount == 0.0:
            return
        if latest is None:
            t0 = start_s
            v0 = self._unwrapped(key, start_value, integral_before, start_s)
        else:
            t0, v0 = latest.at_s, latest.base
        v1 = self._unwrapped(key, start_value, integral_before + amount, end_s)
        if register.turns(v1) != register.turns(v0) and v1 > v0:
            boundary = register.low + register.span * register.turns(v1)
            t_wrap = t0 + (end_s - t0) * (boundary - v0) / (v1 - v0)
            self.truth.mark_fault(key[0], FaultKind.ROLLOVER, min(max(t_wrap, t0), end_s))

    def mark_step(self, start_s: float, end_s: float) -> None:
        """Mark the faults of the step [start_s, end_s) in the ground truth."""
        mark = self.truth.mark_fault
        for (device_id, _metric), events in self._rebases.items():
            for event in events:
                if start_s <= event.at_s < end_s:
                    mark(device_id, event.kind, event.at_s)
        for (device_id, _metric), steps in self._steps.items():
            for window, _back in steps:
                if start_s <= window.start_s < end_s:
                    mark(device_id, FaultKind.BACKWARD_STEP, window.start_s)
        for device_id, gaps in self._gaps.items():
            for window, _mode in gaps:
                span = window.overlap(start_s, end_s)
                if span is not None:
                    mark(device_id, FaultKind.GAP, *span)
        for device_id, lates in self._late.items():
            for window, _release_s in lates:
                span = window.overlap(start_s, end_s)
                if span is not None:
                    mark(device_id, FaultKind.LATE_DATA, *span)

    # --- transport -----------------------------------------------------------------------

    def silent(self, device_id: str, now_s: float) -> bool:
        """Whether the device is in a gap (of either mode) at ``now_s``."""
        return any(now_s in window for window, _mode in self._gaps.get(device_id, ()))

    def closed(self, device_id: str, now_s: float) -> bool:
        """Whether the device's endpoint should be closed at ``now_s``."""
        return any(
            now_s in window and mode == "closed" for window, mode in self._gaps.get(device_id, ())
        )

    @property
    def closes_endpoints(self) -> bool:
        return any(mode == "closed" for gaps in self._gaps.values() for _w, mode in gaps)

    def late_release_s(self, device_id: str, ts_s: float) -> float | None:
        """When a message stamped ``ts_s`` is to be published, if it is held back."""
        for window, release_s in self._late.get(device_id, ()):
            if ts_s in window:
                return release_s
        return None

    def duplicate(self, device_id: str, ts_s: float) -> bool:
        """Whether the message stamped ``ts_s`` is published twice (and mark it so).

        Call once per message actually published: a given time is used up by the
        first message at or after it.
        """
        twice = False
        for dup in self._duplicates.get(device_id, ()):
            if dup.pending_s and dup.pending_s[0] <= ts_s:
                while dup.pending_s and dup.pending_s[0] <= ts_s:
                    dup.pending_s.pop(0)
                twice = True
            if dup.share > 0 and ts_s in dup.window:
                rng = seeded_rng(self._seed, "duplicate", device_id, f"{ts_s:.6f}")
                twice = twice or rng.random() < dup.share
        if twice:
            self.truth.mark_fault(device_id, FaultKind.DUPLICATE_DATA, ts_s)
        return twice

    def shuffled(self, items: Sequence[T], label: float) -> list[T]:
        """``items`` in a seeded order (late messages released together)."""
        out = list(items)
        seeded_rng(self._seed, "late", f"{label:.6f}").shuffle(out)
        return out
