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

Device faults change how a device answers or what its messages look like:

* **exception code** (``exception_codes``, Modbus): in [start_s, start_s + duration_s)
  (no ``duration_s``: to the end) the unit answers every request with exception
  ``code`` (default 04 server device failure; 06 server device busy, ...: Modbus
  Application Protocol v1.1b3 section 7), switched at the server's requests;
* **single connection** (``single_connection``, Modbus): the device's endpoint (every
  unit on it) serves one client connection at a time; a second concurrent one is
  accepted and closed at once, as many meters and small gateways do. It is a property
  of the endpoint, not an event: the ground truth does not mark it;
* **word swap** (``word_swaps``, Modbus): in the window the device serves its values
  of two or more registers (or only ``metric``'s) with their words in reverse order,
  as a meter configured for the other word order;
* **stuck value** (``stuck_values``): in the window ``metric`` (or every metric of the
  device) keeps the value the device reported first in the window; a counter jumps to
  its true value when the window ends;
* **spike** (``spikes``): a gauge (``active_power_kw`` by default) reads ``factor`` x
  its value, or ``value``, once at each of ``at_s``: Modbus: the first read that
  covers the point at or after that time; MQTT: the first message at or after it;
* **torn read** (``torn_reads``, Modbus): a counter on a 32-bit integer register is
  written one word at a time; the first read after an update that carries into its
  high word gets the old high word with the new low word (``old_high``, 65,536 counts
  low: 655.36 kWh for uint32 x 0.01 kWh) or the new high word with the old low word
  (``old_low``); see :mod:`.register_bank`. ``below_carry`` starts the counter that far
  below its next carry, so that a short run crosses one;
* **clock skew** (``clock_skews``, MQTT): the timestamps of the messages stamped in
  the window are ``skew_s`` off (+ ahead, - behind); the values are the true ones;
* **malformed** (``malformed``, MQTT): a seeded ``share`` of the messages stamped in
  [start_s, end_s), and the first at or after each of ``at_s``, are replaced by
  malformed JSON of ``kinds`` in turn: ``truncated`` (the first half of the payload),
  ``not_object`` (the payload's values as a JSON list) or ``deep_nesting``
  (:data:`DEEP_NESTING` nested lists, under the collector's size limit).

Plant faults change the physics, not what a device reports, so the ground truth
follows them (they are real energy):

* **line degradation** (``line_degradations``): from ``start_s`` (for ``duration_s``,
  default to the end: a line repaired at the end of it) every load device of
  production line ``line`` draws ``percent`` % more power than the undegraded line,
  while the line's production counter still counts the undegraded line's energy x
  ``simulation.units_per_kwh``: energy per unit rises by exactly that share. A step
  the start falls in gets the share of the step after it;
* **demand peak** (``demand_peaks``): over [start_s, start_s + duration_s) an extra
  unmetered site load of ``extra_kw`` (in the base load), so the load and (without a
  battery or PV to absorb it) the grid import rise by ``extra_kw`` x the window.

Both are marked like faults: a degradation on each load device of its line in every
hour from its start, a peak on the grid meter in the hours of its window.

The plant's ground truth stays the exact physical energy. Each fault that happens is
marked in it (:meth:`~.ground_truth.GroundTruth.mark_fault`) for the device and every
UTC hour it touches: event faults in the hour of their time (a rollover in the hour the
counter wraps; a duplicate in the hour of the message's timestamp; a spike, torn read
or malformed message when it is served), spans in every hour they overlap (a late
window: the hours of the delayed data; exception codes, word swaps, stuck values and
clock skews: their windows).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

from zerocarbon.config import (
    AnyDevice,
    BackwardStepFault,
    DeviceRole,
    Dlt645Device,
    MalformedFault,
    ModbusTcpDevice,
    MqttDevice,
    SiteConfig,
    SpikeFault,
)
from zerocarbon.metering.metrics import METRICS_BY_NAME, MetricKind
from zerocarbon.metering.registers import RegisterType, counter_wrap, is_integer
from zerocarbon.simulators.ground_truth import GroundTruth
from zerocarbon.simulators.noise import seeded_rng
from zerocarbon.simulators.register_bank import (
    WORD,
    RegisterBank,
    ServedFault,
    TornMode,
    raw_limits,
)

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
    EXCEPTION_CODE = "exception_code"
    WORD_SWAP = "word_swap"
    STUCK_VALUE = "stuck_value"
    SPIKE = "spike"
    TORN_READ = "torn_read"
    CLOCK_SKEW = "clock_skew"
    MALFORMED = "malformed"
    LINE_DEGRADATION = "line_degradation"
    DEMAND_PEAK = "demand_peak"


DEEP_NESTING = 100_000
"""Depth of a ``deep_nesting`` malformed payload: 200,000 bytes, below the MQTT
collector's 256 KiB limit, so its parser meets it (Python's json recursion limit)."""


def malformed_payload(kind: str, payload: str) -> str:
    """``payload`` (a JSON object) made malformed in the way ``kind`` names."""
    if kind == "truncated":
        return payload[: max(1, len(payload) // 2)]
    if kind == "not_object":
        return json.dumps(list(json.loads(payload).values()), separators=(",", ":"))
    return "[" * DEEP_NESTING + "]" * DEEP_NESTING


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
class _Occasions:
    """A seeded ``share`` of the messages in ``window`` and the first at or after each
    pending time (duplicates, malformed messages)."""

    share: float
    window: _Window
    pending_s: list[float] = field(default_factory=list)  # absolute, sorted

    def hit(self, rng_key: tuple[int, str, str], ts_s: float) -> bool:
        """Whether the message stamped ``ts_s`` is one (uses up the times it reaches)."""
        hit = False
        if self.pending_s and self.pending_s[0] <= ts_s:
            while self.pending_s and self.pending_s[0] <= ts_s:
                self.pending_s.pop(0)
            hit = True
        if self.share > 0 and ts_s in self.window:
            seed, label, device_id = rng_key
            rng = seeded_rng(seed, label, device_id, f"{ts_s:.6f}")
            hit = rng.random() < self.share or hit
        return hit


@dataclass(slots=True)
class _Malformed:
    occasions: _Occasions
    kinds: tuple[str, ...]
    used: int = 0  # malformed messages made so far (picks the next kind)


@dataclass(slots=True)
class _PendingSpikes:
    fault: SpikeFault
    pending_s: list[float]  # absolute, sorted


def _fraction_in(window: _Window, start_s: float, end_s: float) -> float:
    """Share of [start_s, end_s) inside ``window``; for an empty step 1.0 when
    ``start_s`` is in the window, else 0.0."""
    if end_s <= start_s:
        return 1.0 if start_s in window else 0.0
    span = window.overlap(start_s, end_s)
    return 0.0 if span is None else (span[1] - span[0]) / (end_s - start_s)


def _window(start_s: float, offset_s: float, duration_s: float | None) -> _Window:
    begin = start_s + offset_s
    return _Window(begin, math.inf if duration_s is None else begin + duration_s)


_AnyDevice = AnyDevice


def _exposed_metrics(site: SiteConfig, device: _AnyDevice) -> list[str]:
    if isinstance(device, MqttDevice):
        names = [device.field_metric(key) for key in device.fields]
    elif isinstance(device, Dlt645Device):
        names = list(device.metrics())
    else:
        names = [p.metric for p in site.profile_of(device).metric_points if p.metric is not None]
    return list(dict.fromkeys(names))


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

        def mqtt_only(path: str, device_id: str) -> MqttDevice:
            found = device(path, device_id)
            if not isinstance(found, MqttDevice):
                raise FaultError(f"{path}.device: {device_id!r} is not an MQTT device")
            return found

        def modbus_only(path: str, device_id: str) -> ModbusTcpDevice:
            found = device(path, device_id)
            if not isinstance(found, ModbusTcpDevice):
                raise FaultError(f"{path}.device: {device_id!r} is not a Modbus TCP device")
            return found

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

        self._duplicates: dict[str, list[_Occasions]] = {}
        for i, dup in enumerate(faults.duplicates):
            path = f"simulation.faults.duplicates[{i}]"
            mqtt_only(path, dup.device)
            end_s = math.inf if dup.end_s is None else self.start_s + dup.end_s
            self._duplicates.setdefault(dup.device, []).append(
                _Occasions(
                    dup.share,
                    _Window(self.start_s + dup.start_s, end_s),
                    sorted(self.start_s + t for t in dup.at_s),
                )
            )
        self._init_device_faults(site, device, metrics, mqtt_only, modbus_only)

    def _init_device_faults(
        self,
        site: SiteConfig,
        device: Callable[[str, str], _AnyDevice],
        counters: Callable[[str, str, str | None], list[str]],
        mqtt_only: Callable[[str, str], MqttDevice],
        modbus_only: Callable[[str, str], ModbusTcpDevice],
    ) -> None:
        faults = site.simulation.faults
        # spans marked in the ground truth over their windows: (device, kind, window)
        self._spans: list[tuple[str, FaultKind, _Window]] = []

        self._exceptions: dict[str, list[tuple[_Window, int]]] = {}
        for i, exc in enumerate(faults.exception_codes):
            modbus_only(f"simulation.faults.exception_codes[{i}]", exc.device)
            window = _window(self.start_s, exc.start_s, exc.duration_s)
            self._exceptions.setdefault(exc.device, []).append((window, exc.code))
            self._spans.append((exc.device, FaultKind.EXCEPTION_CODE, window))

        self._single: set[str] = set()
        for i, single in enumerate(faults.single_connection):
            modbus_only(f"simulation.faults.single_connection[{i}]", single.device)
            self._single.add(single.device)

        self._swaps: dict[str, list[tuple[_Window, tuple[str, ...]]]] = {}
        for i, swap in enumerate(faults.word_swaps):
            path = f"simulation.faults.word_swaps[{i}]"
            d = modbus_only(path, swap.device)
            wide = [
                p.metric
                for p in site.profile_of(d).metric_points
                if p.metric is not None and p.register_count >= 2 and not p.is_bit_field
            ]
            if swap.metric is not None and swap.metric not in wide:
                raise FaultError(
                    f"{path}.metric: device {d.id!r} has no value of two or more registers "
                    f"for {swap.metric!r} (those it has: {', '.join(wide) or 'none'})"
                )
            if not wide:
                raise FaultError(f"{path}: device {d.id!r} has no value of two or more registers")
            window = _window(self.start_s, swap.start_s, swap.duration_s)
            chosen = (swap.metric,) if swap.metric is not None else tuple(dict.fromkeys(wide))
            self._swaps.setdefault(d.id, []).append((window, chosen))
            self._spans.append((d.id, FaultKind.WORD_SWAP, window))

        self._stuck: dict[str, list[tuple[_Window, tuple[str, ...]]]] = {}
        self._stuck_values: dict[tuple[str, str, float], float] = {}
        for i, stuck in enumerate(faults.stuck_values):
            path = f"simulation.faults.stuck_values[{i}]"
            exposed = _exposed_metrics(site, device(path, stuck.device))
            if stuck.metric is not None and stuck.metric not in exposed:
                raise FaultError(
                    f"{path}.metric: device {stuck.device!r} has no metric {stuck.metric!r} "
                    f"(its metrics: {', '.join(exposed)})"
                )
            window = _window(self.start_s, stuck.start_s, stuck.duration_s)
            chosen = (stuck.metric,) if stuck.metric is not None else tuple(exposed)
            self._stuck.setdefault(stuck.device, []).append((window, chosen))
            self._spans.append((stuck.device, FaultKind.STUCK_VALUE, window))

        self._spikes: dict[str, list[_PendingSpikes]] = {}
        for i, spike in enumerate(faults.spikes):
            path = f"simulation.faults.spikes[{i}]"
            spiked = device(path, spike.device)
            if isinstance(spiked, Dlt645Device):
                raise FaultError(f"{path}.device: {spiked.id!r}: DL/T 645 spikes are not simulated")
            exposed = _exposed_metrics(site, spiked)
            assert spike.metric is not None  # defaults to active_power_kw
            if spike.metric not in exposed:
                raise FaultError(
                    f"{path}.metric: device {spiked.id!r} has no metric {spike.metric!r} "
                    f"(its metrics: {', '.join(exposed)})"
                )
            if METRICS_BY_NAME[spike.metric].kind is MetricKind.COUNTER:
                raise FaultError(
                    f"{path}.metric: {spike.metric!r} is a counter; spikes are for gauges "
                    "(use backward_steps or meter_replacements for counters)"
                )
            pending = sorted(self.start_s + t for t in spike.at_s)
            self._spikes.setdefault(spiked.id, []).append(_PendingSpikes(spike, pending))

        self._torn: dict[str, list[tuple[_Window, str, TornMode]]] = {}
        self._below_carry: dict[CounterKey, tuple[float, float]] = {}
        for i, torn in enumerate(faults.torn_reads):
            path = f"simulation.faults.torn_reads[{i}]"
            d = modbus_only(path, torn.device)
            bank = RegisterBank(site.profile_of(d))
            window = _window(self.start_s, torn.start_s, torn.duration_s)
            for m in counters(path, d.id, torn.metric):
                point = next(p for p in bank.profile.metric_points if p.metric == m)
                if not (is_integer(point.type) and point.register_count == 2):
                    raise FaultError(
                        f"{path}: device {d.id!r} {m} is a {point.type} register (profile "
                        f"point {point.name!r}); torn reads need a 32-bit integer one"
                    )
                self._torn.setdefault(d.id, []).append((window, m, torn.mode))
                if torn.below_carry is not None:
                    carry = WORD * bank.unit_value(point)
                    if (d.id, m) in self._initial:
                        raise FaultError(f"{path}.below_carry: {d.id} {m} also has a rollover")
                    if torn.below_carry >= carry:
                        raise FaultError(
                            f"{path}.below_carry: {torn.below_carry} is not below one "
                            f"high-word step ({carry:g})"
                        )
                    self._below_carry[(d.id, m)] = (torn.below_carry, carry)

        self._skews: dict[str, list[tuple[_Window, float]]] = {}
        for i, skew in enumerate(faults.clock_skews):
            path = f"simulation.faults.clock_skews[{i}]"
            d_mqtt = mqtt_only(path, skew.device)
            if d_mqtt.ts_field is None:
                raise FaultError(
                    f"{path}.device: {d_mqtt.id!r} has no ts_field: its payloads carry no time "
                    "to skew"
                )
            window = _window(self.start_s, skew.start_s, skew.duration_s)
            self._skews.setdefault(skew.device, []).append((window, skew.skew_s))
            self._spans.append((skew.device, FaultKind.CLOCK_SKEW, window))

        self._malformed: dict[str, list[_Malformed]] = {}
        for i, bad in enumerate(faults.malformed):
            mqtt_only(f"simulation.faults.malformed[{i}]", bad.device)
            self._malformed.setdefault(bad.device, []).append(self._malformed_of(bad))

        self._plant_spans: list[tuple[str, FaultKind, _Window]] = []
        self._degradations: dict[str, list[tuple[_Window, float]]] = {}
        line_ids = list(
            dict.fromkeys(
                [ln.id for ln in site.lines] + [d.line for d in site.devices if d.line is not None]
            )
        )
        for i, deg in enumerate(faults.line_degradations):
            path = f"simulation.faults.line_degradations[{i}]"
            if deg.line not in line_ids:
                raise FaultError(
                    f"{path}.line: no line {deg.line!r} (lines: {', '.join(line_ids) or 'none'})"
                )
            loads = [d.id for d in site.devices_with_role(DeviceRole.LOAD) if d.line == deg.line]
            if not loads:
                raise FaultError(f"{path}.line: line {deg.line!r} has no load device to degrade")
            window = _window(self.start_s, deg.start_s, deg.duration_s)
            for load_id in loads:
                self._degradations.setdefault(load_id, []).append((window, deg.percent / 100.0))
                self._plant_spans.append((load_id, FaultKind.LINE_DEGRADATION, window))
        self._peaks: list[tuple[_Window, float]] = []
        grids = [d.id for d in site.devices_with_role(DeviceRole.GRID)]
        for peak in faults.demand_peaks:
            window = _window(self.start_s, peak.start_s, peak.duration_s)
            self._peaks.append((window, peak.extra_kw))
            for grid_id in grids:
                self._plant_spans.append((grid_id, FaultKind.DEMAND_PEAK, window))

    def _malformed_of(self, bad: MalformedFault) -> _Malformed:
        end_s = math.inf if bad.end_s is None else self.start_s + bad.end_s
        occasions = _Occasions(
            bad.share,
            _Window(self.start_s + bad.start_s, end_s),
            sorted(self.start_s + t for t in bad.at_s),
        )
        return _Malformed(occasions, tuple(bad.kinds))

    # --- plant faults --------------------------------------------------------------------

    def line_factor(self, device_id: str, start_s: float, end_s: float) -> float:
        """Factor on the power of load ``device_id`` held over [start_s, end_s):
        1 + each degradation's share x the fraction of the step after its start (1.0
        for an empty step before the start)."""
        factor = 1.0
        for window, share in self._degradations.get(device_id, ()):
            factor += share * _fraction_in(window, start_s, end_s)
        return factor

    def extra_load_kw(self, start_s: float, end_s: float) -> float:
        """Mean extra site load of the demand peaks over [start_s, end_s) [kW]."""
        return sum(kw * _fraction_in(w, start_s, end_s) for w, kw in self._peaks)

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
            or self._spans
            or self._single
            or self._spikes
            or self._torn
            or self._malformed
        )

    def initial_counter(self, key: CounterKey, default: float) -> float:
        """The counter's value at the start: just below its wrap value for a rollover,
        ``below_carry`` under its next high-word carry for a torn read."""
        carry = self._below_carry.get(key)
        if carry is not None:
            below, step = carry
            return (math.floor(default / step) + 1) * step - below
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
        for device_id, kind, window in self._spans + self._plant_spans:
            span = window.overlap(start_s, end_s)
            if span is not None:
                mark(device_id, kind, *span)

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
            twice = dup.hit((self._seed, "duplicate", device_id), ts_s) or twice
        if twice:
            self.truth.mark_fault(device_id, FaultKind.DUPLICATE_DATA, ts_s)
        return twice

    def shuffled(self, items: Sequence[T], label: float) -> list[T]:
        """``items`` in a seeded order (late messages released together)."""
        out = list(items)
        seeded_rng(self._seed, "late", f"{label:.6f}").shuffle(out)
        return out

    # --- device faults -------------------------------------------------------------------

    def exception_code(self, device_id: str, now_s: float) -> int | None:
        """The exception code the Modbus unit answers with at ``now_s`` (None: normal)."""
        for window, code in self._exceptions.get(device_id, ()):
            if now_s in window:
                return code
        return None

    def single_connection(self, device_id: str) -> bool:
        """Whether the device's endpoint refuses a second concurrent connection."""
        return device_id in self._single

    def word_swaps(self, device_id: str, now_s: float) -> set[str]:
        """The metrics the device serves word-swapped at ``now_s``."""
        return {m for w, metrics in self._swaps.get(device_id, ()) if now_s in w for m in metrics}

    def torn_modes(self, device_id: str, now_s: float) -> dict[str, TornMode]:
        """The counters whose reads are torn at carries at ``now_s`` (metric -> mode)."""
        return {m: mode for w, m, mode in self._torn.get(device_id, ()) if now_s in w}

    def stuck(self, device_id: str, metric: str, now_s: float, value: float) -> float:
        """What the device reports for ``metric`` whose true (faulted) value is ``value``:
        in a stuck window the value it reported first in that window."""
        for window, metrics in self._stuck.get(device_id, ()):
            if now_s in window and metric in metrics:
                return self._stuck_values.setdefault((device_id, metric, window.start_s), value)
        return value

    def due_spikes(self, device_id: str, now_s: float) -> list[SpikeFault]:
        """The spikes due at ``now_s`` (each returned once, at the first call at or after
        its time); the caller serves them and marks them with :meth:`mark_served`."""
        due: list[SpikeFault] = []
        for spikes in self._spikes.get(device_id, ()):
            if spikes.pending_s and spikes.pending_s[0] <= now_s:
                while spikes.pending_s and spikes.pending_s[0] <= now_s:
                    spikes.pending_s.pop(0)
                due.append(spikes.fault)
        return due

    def skew_s(self, device_id: str, ts_s: float) -> float:
        """How far the timestamp of the message stamped ``ts_s`` is off [s] (0: none)."""
        for window, skew_s in self._skews.get(device_id, ()):
            if ts_s in window:
                return skew_s
        return 0.0

    def malformed(self, device_id: str, ts_s: float) -> str | None:
        """The malformed kind replacing the message stamped ``ts_s``, or None (marks it;
        call once per message actually published)."""
        for bad in self._malformed.get(device_id, ()):
            if bad.occasions.hit((self._seed, "malformed", device_id), ts_s):
                kind = bad.kinds[bad.used % len(bad.kinds)]
                bad.used += 1
                self.truth.mark_fault(device_id, FaultKind.MALFORMED, ts_s)
                return kind
        return None

    def mark_served(self, device_id: str, kind: FaultKind, now_s: float) -> None:
        """Record a one-shot fault (spike, torn read) a reader actually got at ``now_s``."""
        self.truth.mark_fault(device_id, kind, now_s)

    def attach_bank(self, device_id: str, bank: RegisterBank, now_s: Callable[[], float]) -> None:
        """Mark in the ground truth each one-shot fault ``bank`` serves (at ``now_s()``)."""

        def served(fault: ServedFault) -> None:
            self.mark_served(device_id, FaultKind(fault.kind), now_s())

        bank.on_served = served

    def apply_to_bank(self, device_id: str, bank: RegisterBank, now_s: float) -> None:
        """Set ``bank``'s word swaps and torn reads for ``now_s`` and arm the spikes due
        (call before encoding the values of ``now_s``)."""
        if device_id in self._swaps:
            bank.set_word_swaps(self.word_swaps(device_id, now_s))
        if device_id in self._torn:
            bank.set_torn_reads(self.torn_modes(device_id, now_s))
        for spike in self.due_spikes(device_id, now_s):
            assert spike.metric is not None
            bank.spike_once(spike.metric, spike.factor, spike.value)
