"""The site's alert rules, evaluated as data arrives (``[[alerts.rules]]``).

A :class:`RuleSet` holds one evaluator per rule and one
:class:`~zerocarbon.alerts.state.AlertTracker` per rule and subject (a device, a
metric of a device, a line, the site). It is fed three kinds of input, each in time
order, and answers with the :class:`AlertEvent` s (an alert began firing, or resolved)
they cause:

* :meth:`RuleSet.on_readings`: admitted readings of one series (threshold, demand; the
  arrival of any reading tells the offline rule a device is alive);
* :meth:`RuleSet.on_tick`: the clock moved on (offline: silence is noticed only by
  looking at the clock);
* :meth:`RuleSet.on_hour`: an hour is closed (its hourly rows will not change but for
  late data): data quality and efficiency drift.

Kinds and what they watch:

* ``offline``: no reading from a device for ``intervals`` times its poll interval
  (Modbus, DL/T 645) or expected publish interval (MQTT); never shorter than
  ``min_silence_s`` (the runtime passes a second of real time, which at ``--speed N``
  is N seconds of the simulated clock: a pipeline's normal latency is not silence).
  Resolves when data returns.
* ``threshold``: a metric of a device beyond a limit for ``for_s``, clear once back
  past the limit by the hysteresis (:class:`~zerocarbon.alerts.state.Threshold`).
* ``demand``: the 15-minute sliding demand of grid import (DL/T 614; summed over the
  rule's meters, :mod:`zerocarbon.alerts.demand`), or with ``on_projection`` its
  projected end-of-window value, above ``limit_percent`` of the contracted maximum
  demand (the capacity charge of two-part tariffs is billed on it).
* ``data_quality``: per closed hour, the site's estimated share above the limit, a
  device's counter faults (resets, rollovers, meter replacements, rejected jumps), and
  main meters whose sub-meters do not add up (``submeter_mismatches``).
* ``drift``: per production line, the tabular CUSUM of actual minus baseline energy
  (:mod:`zerocarbon.alerts.drift_monitor`) signals; the alert resolves after
  ``clear_periods`` periods without a new signal.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from zerocarbon.alerts.demand import DemandMeter
from zerocarbon.alerts.drift_monitor import DriftPeriod, LineDriftMonitor
from zerocarbon.alerts.state import AlertState, AlertTracker, Condition, Threshold, Transition
from zerocarbon.config import (
    AnyDevice,
    DataQualityRule,
    DemandRule,
    DeviceRole,
    DriftRule,
    MqttDevice,
    OfflineRule,
    SiteConfig,
    ThresholdRule,
)
from zerocarbon.metering.metrics import METRICS_BY_NAME
from zerocarbon.rows import HourlyCarbon, HourlyEnergy, HourlyLine

HOUR_S = 3600.0

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """A state change of an alert, with what a person needs to act on it."""

    transition: Transition
    kind: str
    severity: str
    channels: tuple[str, ...] | None  # None: every configured channel
    message_en: str
    message_zh: str


@dataclass(frozen=True, slots=True)
class ClosedHour:
    """An hour whose hourly rows are settled, for the hourly rules."""

    hour_start: datetime  # UTC
    carbon: HourlyCarbon | None
    energy: tuple[HourlyEnergy, ...] = ()
    lines: tuple[HourlyLine, ...] = ()
    variables: Mapping[str, float] = field(default_factory=dict)  # "device:metric" -> mean

    @property
    def end_s(self) -> float:
        return self.hour_start.timestamp() + HOUR_S


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def _local(ts_s: float, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(ts_s, tz).strftime("%Y-%m-%d %H:%M")


def expected_interval_s(device: AnyDevice) -> float:
    """How often a device is expected to deliver a reading [s]."""
    if isinstance(device, MqttDevice):
        return device.interval_s
    return device.poll_interval_s


class _Rule:
    """An evaluator: its trackers (one per subject) and the events they raise."""

    def __init__(self, rule: Any) -> None:
        self.config = rule
        self.trackers: dict[str, AlertTracker] = {}

    def tracker(self, subject: str) -> AlertTracker:
        tracker = self.trackers.get(subject)
        if tracker is None:
            tracker = self.trackers[subject] = AlertTracker(
                self.config.name,
                subject,
                for_s=self.config.for_s,
                clear_for_s=self.config.clear_for_s,
            )
        return tracker

    def observe(
        self,
        subject: str,
        ts_s: float,
        condition: Condition,
        evidence: dict[str, Any],
        messages: tuple[str, str] | None = None,
    ) -> AlertEvent | None:
        """Feed one observation; observations older than the subject's last are
        skipped (late data cannot rewrite an alert's past)."""
        tracker = self.tracker(subject)
        last = tracker._last_ts_s  # noqa: SLF001 - the tracker refuses older ones
        if last is not None and ts_s < last:
            return None
        transition = tracker.observe(ts_s, condition, evidence)
        if transition is None:
            return None
        en, zh = self.messages(transition) if messages is None else messages
        if transition.state is AlertState.RESOLVED:
            en, zh = self.resolved_messages(transition)
        return AlertEvent(
            transition, self.config.kind, self.config.severity, self.config.channels, en, zh
        )

    def messages(self, t: Transition) -> tuple[str, str]:
        return (f"{t.rule}: {t.subject} is firing", f"{t.rule}：{t.subject} 告警")

    def resolved_messages(self, t: Transition) -> tuple[str, str]:
        return (f"{t.rule}: {t.subject} is back to normal", f"{t.rule}：{t.subject} 已恢复正常")


class _Offline(_Rule):
    config: OfflineRule

    def __init__(self, rule: OfflineRule, site: SiteConfig, min_silence_s: float) -> None:
        super().__init__(rule)
        devices = rule.devices or tuple(d.id for d in site.devices)
        self.limit_s = {
            d: max(rule.intervals * expected_interval_s(site.device(d)), min_silence_s)
            for d in devices
        }
        self.last_seen_s: dict[str, float] = {}

    def seen(self, device: str, now_s: float) -> None:
        if device in self.limit_s:
            self.last_seen_s[device] = now_s

    def tick(self, now_s: float) -> list[AlertEvent]:
        events = []
        for device, limit_s in self.limit_s.items():
            last = self.last_seen_s.setdefault(device, now_s)  # silence counts from start
            silent_s = now_s - last
            condition = Condition.BREACHED if silent_s > limit_s else Condition.CLEAR
            evidence = {
                "device": device,
                "last_reading_at": datetime.fromtimestamp(last, UTC).isoformat(),
                "silent_s": round(silent_s, 3),
                "limit_s": limit_s,
                "intervals": self.config.intervals,
            }
            event = self.observe(device, now_s, condition, evidence)
            if event is not None:
                events.append(event)
        return events

    def messages(self, t: Transition) -> tuple[str, str]:
        silent = _duration(t.evidence["silent_s"])
        limit = _duration(t.evidence["limit_s"])
        return (
            f"Device {t.subject} sent no data for {silent} (limit {limit})",
            f"设备 {t.subject} 已 {silent} 无数据（限值 {limit}）",
        )

    def resolved_messages(self, t: Transition) -> tuple[str, str]:
        return (f"Device {t.subject} is sending data again", f"设备 {t.subject} 已恢复数据")


class _Threshold(_Rule):
    config: ThresholdRule

    def __init__(self, rule: ThresholdRule) -> None:
        super().__init__(rule)
        above = rule.above is not None
        limit = rule.above if rule.above is not None else rule.below
        assert limit is not None
        self.threshold = Threshold(limit, above=above, hysteresis=rule.hysteresis)
        self.subject = f"{rule.device}:{rule.metric}"
        self.unit = METRICS_BY_NAME[rule.metric].unit

    def readings(
        self, ts_s: npt.NDArray[np.float64], values: npt.NDArray[np.float64]
    ) -> list[AlertEvent]:
        events = []
        t = self.threshold
        for ts, value in zip(ts_s.tolist(), values.tolist(), strict=True):
            evidence = {
                "device": self.config.device,
                "metric": self.config.metric,
                "value": value,
                "unit": self.unit,
                "limit": t.limit,
                "direction": "above" if t.above else "below",
                "hysteresis": t.hysteresis,
                "for_s": self.config.for_s,
            }
            event = self.observe(self.subject, ts, t.judge(value), evidence)
            if event is not None:
                events.append(event)
        return events

    def messages(self, t: Transition) -> tuple[str, str]:
        e = t.evidence
        held = _duration(t.ts_s - t.since_s)
        word_en, word_zh = ("above", "高于") if e["direction"] == "above" else ("below", "低于")
        return (
            f"{e['device']} {e['metric']} = {e['value']:.4g} {e['unit']}, {word_en} "
            f"{e['limit']:g} {e['unit']} for {held}",
            f"{e['device']} {e['metric']} = {e['value']:.4g} {e['unit']}，已 {held} "
            f"{word_zh} {e['limit']:g} {e['unit']}",
        )

    def resolved_messages(self, t: Transition) -> tuple[str, str]:
        e = t.evidence
        return (
            f"{e['device']} {e['metric']} = {e['value']:.4g} {e['unit']}, back within the limit",
            f"{e['device']} {e['metric']} = {e['value']:.4g} {e['unit']}，已回到限值内",
        )


class _Demand(_Rule):
    config: DemandRule
    SUBJECT = "site"

    def __init__(self, rule: DemandRule, site: SiteConfig) -> None:
        super().__init__(rule)
        devices = rule.devices or tuple(d.id for d in site.devices_with_role(DeviceRole.GRID))
        self.meters = {d: DemandMeter(slide_s=rule.slide_s) for d in devices}
        assert site.grid.contracted_demand_kw is not None  # the site file checked
        self.contracted_kw = site.grid.contracted_demand_kw
        limit_kw = self.contracted_kw * rule.limit_percent / 100.0
        self.threshold = Threshold(limit_kw, hysteresis=limit_kw * rule.hysteresis_percent / 100)

    def readings(
        self, device: str, ts_s: npt.NDArray[np.float64], power_kw: npt.NDArray[np.float64]
    ) -> list[AlertEvent]:
        meter = self.meters.get(device)
        if meter is None:
            return []
        events = []
        for ts, p in zip(ts_s.tolist(), power_kw.tolist(), strict=True):
            if meter._samples and ts <= meter._samples[-1][0]:  # noqa: SLF001
                continue  # late or repeated sample: the window has moved on
            meter.add(ts, p)
            average = projected = 0.0
            for m in self.meters.values():
                r = m.reading(ts)
                average += r.average_kw
                projected += r.projected_kw
            watched = max(average, projected) if self.config.on_projection else average
            evidence = {
                "demand_kw": round(average, 3),
                "projected_kw": round(projected, 3),
                "limit_kw": self.threshold.limit,
                "contracted_demand_kw": self.contracted_kw,
                "limit_percent": self.config.limit_percent,
                "window_s": 900,
                "slide_s": self.config.slide_s,
                "meters": list(self.meters),
            }
            event = self.observe(self.SUBJECT, ts, self.threshold.judge(watched), evidence)
            if event is not None:
                events.append(event)
        return events

    def messages(self, t: Transition) -> tuple[str, str]:
        e = t.evidence
        return (
            f"15-min demand {e['demand_kw']:.0f} kW (projected end of window "
            f"{e['projected_kw']:.0f} kW) against a limit of {e['limit_kw']:.0f} kW "
            f"({e['limit_percent']:g} % of the contracted {e['contracted_demand_kw']:.0f} kW)",
            f"15 分钟需量 {e['demand_kw']:.0f} kW（窗口结束预计 {e['projected_kw']:.0f} kW），"
            f"限值 {e['limit_kw']:.0f} kW（合同最大需量 {e['contracted_demand_kw']:.0f} kW 的 "
            f"{e['limit_percent']:g}%）",
        )

    def resolved_messages(self, t: Transition) -> tuple[str, str]:
        e = t.evidence
        return (
            f"15-min demand back to {e['demand_kw']:.0f} kW, under the limit",
            f"15 分钟需量回落至 {e['demand_kw']:.0f} kW，低于限值",
        )


COUNTER_FAULTS = ("resets", "rollovers", "replacements", "rejected")


class _DataQuality(_Rule):
    config: DataQualityRule

    def __init__(self, rule: DataQualityRule, site: SiteConfig, tz: ZoneInfo) -> None:
        super().__init__(rule)
        self.tz = tz
        self.tolerance_pct = site.accounting.submeter_tolerance_pct

    def hour(self, hour: ClosedHour) -> list[AlertEvent]:
        rule, ts, events = self.config, hour.end_s, []
        local = _local(hour.hour_start.timestamp(), self.tz)
        carbon = hour.carbon
        if rule.estimated_share and carbon is not None:
            share = carbon.estimated_share
            estimating = sorted({e.device for e in hour.energy if e.estimated > 0})
            evidence = {
                "hour": local,
                "estimated_share": share,
                "limit": rule.max_estimated_share,
                "devices": estimating,
            }
            cond = Condition.BREACHED if share > rule.max_estimated_share else Condition.CLEAR
            en = (
                f"Hour {local}: {share:.1%} of the metered energy is estimated "
                f"(limit {rule.max_estimated_share:.1%}; {', '.join(estimating) or '-'})"
            )
            zh = (
                f"{local} 时段估算电量占 {share:.1%}（限值 {rule.max_estimated_share:.1%}；"
                f"{'、'.join(estimating) or '-'}）"
            )
            events.append(self.observe("estimated_share", ts, cond, evidence, (en, zh)))
        if rule.counter_faults:
            faults: dict[str, dict[str, int]] = {}
            for e in hour.energy:
                counts = faults.setdefault(e.device, dict.fromkeys(COUNTER_FAULTS, 0))
                for name in COUNTER_FAULTS:
                    counts[name] += int(getattr(e, name))
            watched = set(faults) | {s[len("counter:") :] for s in self.trackers if ":" in s}
            for device in sorted(watched):
                counts = faults.get(device, dict.fromkeys(COUNTER_FAULTS, 0))
                found = {k: v for k, v in counts.items() if v}
                cond = Condition.BREACHED if found else Condition.CLEAR
                what = ", ".join(f"{k} {v}" for k, v in found.items())
                evidence = {"hour": local, "device": device, **counts}
                en = f"{device}: counter faults in hour {local} ({what})"
                zh = f"{device}：{local} 时段计数器异常（{what}）"
                events.append(self.observe(f"counter:{device}", ts, cond, evidence, (en, zh)))
        if rule.submeter_mismatch and carbon is not None:
            n = carbon.submeter_mismatches
            evidence = {
                "hour": local,
                "mismatches": n,
                "tolerance_pct": self.tolerance_pct,
                "submetered_kwh": carbon.submetered_kwh,
                "unmetered_kwh": carbon.unmetered_kwh,
                "load_kwh": carbon.load_kwh,
            }
            en = (
                f"Hour {local}: {n} main meter(s) differ from the sum of their sub-meters "
                f"by more than {self.tolerance_pct:g} %"
            )
            zh = f"{local} 时段 {n} 块总表与其分表之和相差超过 {self.tolerance_pct:g}%"
            cond = Condition.BREACHED if n > 0 else Condition.CLEAR
            events.append(self.observe("submeter", ts, cond, evidence, (en, zh)))
        return [e for e in events if e is not None]

    def resolved_messages(self, t: Transition) -> tuple[str, str]:
        what = {
            "estimated_share": (
                "the estimated share is back under its limit",
                "估算电量占比已恢复正常",
            ),
            "submeter": ("the sub-meters add up to their main meters again", "分表与总表已平衡"),
        }.get(t.subject, ("the counter reads without faults again", "计数器已恢复正常"))
        return (f"{t.subject}: {what[0]}", f"{t.subject}：{what[1]}")


class _Drift(_Rule):
    config: DriftRule

    def __init__(self, rule: DriftRule, site: SiteConfig, tz: ZoneInfo) -> None:
        super().__init__(rule)
        lines = rule.lines or site.line_ids()
        self.monitors = {line: LineDriftMonitor(line, rule, tz) for line in lines}
        self.periods_since_signal: dict[str, int] = {}
        self.tz = tz
        self.periods: list[DriftPeriod] = []  # evaluated since last taken (drift_periods)

    def hour(self, hour: ClosedHour) -> list[AlertEvent]:
        events = []
        rows = {r.line: r for r in hour.lines}
        variables = tuple(hour.variables.get(v, math.nan) for v in self.config.variables)
        for line, monitor in self.monitors.items():
            row = rows.get(line)
            if row is None:
                continue
            for p in monitor.add_hour(
                hour.hour_start, row.energy_kwh, row.production_units, variables
            ):
                self.periods.append(p)
                event = self._period(line, monitor, p)
                if event is not None:
                    events.append(event)
        return events

    def _period(self, line: str, monitor: LineDriftMonitor, p: Any) -> AlertEvent | None:
        tracker = self.tracker(line)
        if p.signal:
            self.periods_since_signal[line] = 0
            condition = Condition.BREACHED
        elif not p.charted:  # baseline period, no baseline, or no relative residual
            condition = Condition.BETWEEN
        else:
            since = self.periods_since_signal.get(line, 0) + 1
            self.periods_since_signal[line] = since
            firing = tracker.state is AlertState.FIRING
            cleared = since >= self.config.clear_periods
            condition = Condition.CLEAR if (cleared or not firing) else Condition.BETWEEN
        baseline = monitor.baseline
        evidence: dict[str, Any] = {
            "line": line,
            "period_start": p.start.isoformat(),
            "period_end": p.end.isoformat(),
            "energy_kwh": p.energy_kwh,
            "units": p.units,
            "expected_kwh": p.expected_kwh,
            "residual_kwh": p.residual_kwh,
            "residual_share": p.residual_share,
            "chart_unit": p.chart_unit,
            "cusum": p.cusum_high,
            "limit": p.limit,
            "reference": p.reference,
            "skipped": p.skipped,
            "residual_model": self.config.residual_model,
            "k": self.config.k,
            "h": self.config.h,
        }
        if baseline is not None:
            evidence["baseline"] = {
                "fixed_kwh": baseline.fixed_kwh,
                "kwh_per_unit": baseline.kwh_per_unit,
                "r_squared": baseline.r_squared,
                "residual_std_kwh": baseline.residual_std_kwh,
                "residual_sd": baseline.residual_sd,
                "n_periods": baseline.n,
            }
        return self.observe(line, p.end.timestamp(), condition, evidence)

    def messages(self, t: Transition) -> tuple[str, str]:
        e = t.evidence
        local = _local(datetime.fromisoformat(e["period_end"]).timestamp(), self.tz)
        expected = e["expected_kwh"] or 0.0
        excess = (e["energy_kwh"] / expected - 1.0) if expected > 0 else math.nan
        if e["chart_unit"] == "share":  # CUSUM of residuals as a share of the expected
            cusum, limit = f"{e['cusum']:.1%}", f"{e['limit']:.1%}"
        else:
            cusum, limit = f"{e['cusum']:.1f} kWh", f"{e['limit']:.1f} kWh"
        return (
            f"Line {t.subject}: energy drifted above its baseline (CUSUM {cusum} over its "
            f"limit {limit}); the period to {local} used {e['energy_kwh']:.1f} kWh "
            f"for {e['units']:.0f} units, {excess:+.1%} against the {expected:.1f} kWh expected",
            f"产线 {t.subject} 能效偏离基线（CUSUM {cusum}，超过限值 {limit}）；"
            f"截至 {local} 的时段用电 {e['energy_kwh']:.1f} kWh、产量 {e['units']:.0f}，"
            f"比基线预期 {expected:.1f} kWh {excess:+.1%}",
        )

    def resolved_messages(self, t: Transition) -> tuple[str, str]:
        n = self.config.clear_periods
        return (
            f"Line {t.subject}: no drift signal for {n} periods, back on its baseline",
            f"产线 {t.subject}：连续 {n} 个时段无偏移信号，已回到基线",
        )


class RuleSet:
    """Every rule of a site; see the module docstring.

    ``min_silence_s``: the shortest silence the offline rule calls offline [s of the
    clock]; ``tz``: the site's time zone (shifts, and local hours in messages).
    """

    def __init__(self, site: SiteConfig, *, min_silence_s: float = 0.0) -> None:
        self.site = site
        self.tz = ZoneInfo(site.site.timezone)
        self.offline: list[_Offline] = []
        self.thresholds: dict[tuple[str, str], list[_Threshold]] = {}
        self.demand: list[_Demand] = []
        self.quality: list[_DataQuality] = []
        self.drift: list[_Drift] = []
        self.errors = 0  # rule evaluations that raised (logged)
        self.last_error: str | None = None
        for rule in site.alerts.rules:
            if isinstance(rule, OfflineRule):
                self.offline.append(_Offline(rule, site, min_silence_s))
            elif isinstance(rule, ThresholdRule):
                self.thresholds.setdefault((rule.device, rule.metric), []).append(_Threshold(rule))
            elif isinstance(rule, DemandRule):
                self.demand.append(_Demand(rule, site))
            elif isinstance(rule, DataQualityRule):
                self.quality.append(_DataQuality(rule, site, self.tz))
            else:
                self.drift.append(_Drift(rule, site, self.tz))

    def rules(self) -> list[_Rule]:
        return [
            *self.offline,
            *(t for ts in self.thresholds.values() for t in ts),
            *self.demand,
            *self.quality,
            *self.drift,
        ]

    def watched_series(self) -> set[tuple[str, str]]:
        """The (device, metric) series the live rules read."""
        watched = set(self.thresholds)
        for d in self.demand:
            watched.update((m, "active_power_kw") for m in d.meters)
        return watched

    def take_periods(self) -> list[tuple[str, DriftPeriod]]:
        """The drift periods evaluated since the last call, with their rule's name."""
        taken = [(d.config.name, p) for d in self.drift for p in d.periods]
        for d in self.drift:
            d.periods.clear()
        return taken

    def variables(self) -> set[str]:
        """The "device:metric" hourly means the drift rules use."""
        return {v for d in self.drift for v in d.config.variables}

    def continue_from(self, stored: Iterable[tuple[str, str, int, str, float]]) -> None:
        """Continue from the alerts stored by an earlier run: ``(rule, subject, newest
        episode, its state, ts_s of that state)``; an alert still firing stays firing
        (its resolution will be reported), and new episodes count on."""
        by_name = {r.config.name: r for r in self.rules()}
        for rule, subject, episode, state, ts_s in stored:
            evaluator = by_name.get(rule)
            if evaluator is None:
                continue  # a rule since removed from the site file
            tracker = evaluator.tracker(subject)
            tracker.episode = episode
            tracker.state = AlertState.FIRING if state == "firing" else AlertState.RESOLVED
            tracker._last_ts_s = ts_s  # noqa: SLF001 - older observations are not news

    def seen(self, devices: Sequence[str], now_s: float) -> None:
        """Readings of ``devices`` arrived at ``now_s`` (the clock's time)."""
        for rule in self.offline:
            for device in devices:
                rule.seen(device, now_s)

    def _run(self, rule: _Rule, evaluate: Callable[[], list[AlertEvent]]) -> list[AlertEvent]:
        """One rule's evaluation; a rule that fails is logged and counted
        (:attr:`errors`) and costs no other rule its alerts."""
        try:
            return evaluate()
        except Exception as exc:
            self.errors += 1
            self.last_error = f"rule {rule.config.name}: {type(exc).__name__}: {exc}"
            log.exception("alert rule %s failed", rule.config.name)
            return []

    def on_readings(
        self,
        device: str,
        metric: str,
        ts_s: npt.NDArray[np.float64],
        values: npt.NDArray[np.float64],
    ) -> list[AlertEvent]:
        """Readings of one series in time order (ts [POSIX s], values in the metric's
        unit)."""
        events: list[AlertEvent] = []
        for rule in self.thresholds.get((device, metric), ()):
            events += self._run(rule, partial(rule.readings, ts_s, values))
        if metric == "active_power_kw":
            for demand in self.demand:
                events += self._run(demand, partial(demand.readings, device, ts_s, values))
        return events

    def on_tick(self, now_s: float) -> list[AlertEvent]:
        events: list[AlertEvent] = []
        for rule in self.offline:
            events += self._run(rule, partial(rule.tick, now_s))
        return events

    def on_hour(self, hour: ClosedHour) -> list[AlertEvent]:
        events: list[AlertEvent] = []
        for quality in self.quality:
            events += self._run(quality, partial(quality.hour, hour))
        for drift in self.drift:
            events += self._run(drift, partial(drift.hour, hour))
        return events
