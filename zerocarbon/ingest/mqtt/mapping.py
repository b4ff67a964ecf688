"""MQTT messages -> devices and metrics: the site's mapping rules compiled once.

Every MQTT device's rules (:meth:`zerocarbon.config.MqttDevice.message_rules`: its
``fields``, ``rules`` or ``preset``) are grouped by topic filter into one
:class:`RuleSet` per device and filter, each value's series id resolved in the
:class:`~zerocarbon.batch.SeriesRegistry` here. Topic filters follow MQTT 3.1.1 §4.7:
``+`` matches one level, ``#`` the rest (zero or more levels), and neither matches a
first level starting with ``$``. A ``{device}`` level is a ``+`` whose text must be the
id of a device with that filter; any other text makes the message unmapped.

Matching: exact topics are one dict look-up (with the rule sets of any pattern that
also matches them, found at start); other topics are checked against the patterns,
and their answer is cached. Sparkplug B topics (``spBv1.0/...``) go to
:class:`~zerocarbon.ingest.mqtt.sparkplug.SparkplugDecoder`.

A message that no rule takes, or whose ``{device}`` names no such device, is
*unmapped*; one that a device cannot use gives that device a problem. Either is
reported in the :class:`~zerocarbon.ingest.mqtt.payload.MessageOutcome`, never raised.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from zerocarbon.batch import BatchBuilder, SeriesRegistry
from zerocarbon.config import DEVICE_CAPTURE, MqttDevice, split_json_path
from zerocarbon.ingest.mqtt.payload import (
    MISSING,
    DeviceOutcome,
    MessageOutcome,
    PayloadError,
    as_number,
    decode_json,
    lookup,
    parse_ts_us,
)
from zerocarbon.ingest.mqtt.sparkplug import SPARKPLUG_PREFIX, SparkplugDecoder

ROUTE_CACHE_SIZE = 4096  # pattern answers kept per topic (cleared when full)


@dataclass(frozen=True, slots=True)
class ValueRule:
    """One value: where it is in the JSON document, its series and its scale."""

    label: str  # the path (or key) as configured, for messages
    steps: tuple[str | int, ...]
    series_id: int
    scale: float  # series value = payload value x scale


@dataclass(frozen=True, slots=True)
class RuleSet:
    """The values one device takes from messages on one topic filter."""

    device_id: str
    topic_filter: str
    values: tuple[ValueRule, ...]
    ts_label: str | None  # where the time is (None: arrival time)
    ts_steps: tuple[str | int, ...] | None
    local_zone: ZoneInfo | None  # zone of times without an offset (None: an error)


def _split_filter(topic_filter: str) -> tuple[str, ...]:
    return tuple(topic_filter.split("/"))


def filter_matches(levels: Sequence[str], topic_levels: Sequence[str]) -> bool:
    """Whether a topic filter (its levels; ``{device}`` counts as ``+``) matches a topic
    (MQTT 3.1.1 §4.7.1-§4.7.2)."""
    if topic_levels and topic_levels[0].startswith("$") and levels and levels[0] in "+#":
        return False
    for i, level in enumerate(levels):
        if level == "#":
            return True
        if i >= len(topic_levels):
            return False
        if level not in ("+", DEVICE_CAPTURE) and level != topic_levels[i]:
            return False
    return len(levels) == len(topic_levels)


@dataclass(frozen=True, slots=True)
class _Pattern:
    levels: tuple[str, ...]
    capture: int | None  # index of the {device} level
    plain: tuple[RuleSet, ...]  # rule sets without a capture
    by_device: dict[str, tuple[RuleSet, ...]]  # capture text -> rule sets


@dataclass(frozen=True, slots=True)
class Route:
    """The rule sets a topic goes to, or why none."""

    rule_sets: tuple[RuleSet, ...]
    unmapped: str | None = None


def _compile_device(
    device: MqttDevice, registry: SeriesRegistry, site_timezone: str
) -> list[RuleSet]:
    """The rule sets of one JSON device, one per topic filter (in rule order)."""
    ts_text = device.ts_path()
    ts_steps: tuple[str | int, ...] | None = None
    if ts_text is not None:
        ts_steps = split_json_path(ts_text) if device.uses_paths else (ts_text,)
    zone_name = device.local_time_zone(site_timezone)
    zone = ZoneInfo(zone_name) if zone_name is not None else None
    by_filter: dict[str, list[ValueRule]] = {}
    for rule in device.message_rules():
        assert rule.topic is not None and rule.path is not None  # config validated them
        steps = split_json_path(rule.path) if device.uses_paths else (rule.path,)
        value = ValueRule(rule.path, steps, registry.id(device.id, rule.metric), rule.scale)
        by_filter.setdefault(rule.topic, []).append(value)
    return [
        RuleSet(device.id, topic_filter, tuple(values), ts_text, ts_steps, zone)
        for topic_filter, values in by_filter.items()
    ]


class MqttMapping:
    """The site's MQTT rules, compiled: which topics to subscribe, where a message goes
    and what readings it gives.

    Raises :class:`zerocarbon.batch.UnknownSeriesError` when a rule names a device or
    metric the registry does not know.
    """

    def __init__(
        self,
        devices: Sequence[MqttDevice],
        registry: SeriesRegistry,
        *,
        site_timezone: str = "UTC",
    ) -> None:
        self.registry = registry
        exact: dict[str, list[RuleSet]] = {}
        plain: dict[str, list[RuleSet]] = {}
        captured: dict[str, dict[str, list[RuleSet]]] = {}
        json_devices = [d for d in devices if d.sparkplug is None]
        for device in json_devices:
            for rule_set in _compile_device(device, registry, site_timezone):
                levels = _split_filter(rule_set.topic_filter)
                if DEVICE_CAPTURE in levels:
                    by_device = captured.setdefault(rule_set.topic_filter, {})
                    by_device.setdefault(device.id, []).append(rule_set)
                elif "+" in levels or "#" in levels:
                    plain.setdefault(rule_set.topic_filter, []).append(rule_set)
                else:
                    exact.setdefault(rule_set.topic_filter, []).append(rule_set)
        patterns: list[_Pattern] = []
        for topic_filter in dict.fromkeys([*plain, *captured]):
            levels = _split_filter(topic_filter)
            patterns.append(
                _Pattern(
                    levels,
                    levels.index(DEVICE_CAPTURE) if DEVICE_CAPTURE in levels else None,
                    tuple(plain.get(topic_filter, ())),
                    {k: tuple(v) for k, v in captured.get(topic_filter, {}).items()},
                )
            )
        self._patterns = tuple(patterns)
        # an exact topic's route is complete: the patterns that also match it are in it
        self._exact = {
            topic: Route((*sets, *self._pattern_route(topic).rule_sets))
            for topic, sets in exact.items()
        }
        self._cache: dict[str, Route] = {}
        sparkplug_devices = [d for d in devices if d.sparkplug is not None]
        self.sparkplug = (
            SparkplugDecoder(sparkplug_devices, registry) if sparkplug_devices else None
        )
        filters = [*exact, *(p.replace(DEVICE_CAPTURE, "+") for p in [*plain, *captured])]
        if self.sparkplug is not None:
            filters.extend(self.sparkplug.subscriptions)
        self.subscriptions: tuple[str, ...] = tuple(dict.fromkeys(filters))
        self.device_ids: tuple[str, ...] = tuple(d.id for d in devices)

    def route(self, topic: str) -> Route:
        """The rule sets that take a message on ``topic`` (JSON devices)."""
        route = self._exact.get(topic)
        if route is not None:
            return route
        route = self._cache.get(topic)
        if route is None:
            route = self._pattern_route(topic)
            if len(self._cache) >= ROUTE_CACHE_SIZE:
                self._cache.clear()  # a flood of distinct topics must not grow memory
            self._cache[topic] = route
        return route

    def _pattern_route(self, topic: str) -> Route:
        levels = topic.split("/")
        found: list[RuleSet] = []
        unknown: list[str] = []
        for pattern in self._patterns:
            if not filter_matches(pattern.levels, levels):
                continue
            found.extend(pattern.plain)
            if pattern.capture is not None:
                text = levels[pattern.capture]
                sets = pattern.by_device.get(text)
                if sets is None:
                    unknown.append(f"{'/'.join(pattern.levels)}: no device {text!r}")
                else:
                    found.extend(sets)
        if found:
            return Route(tuple(found))
        if unknown:
            return Route((), f"topic {topic!r}: " + "; ".join(unknown))
        return Route((), f"topic {topic!r}: no device is mapped to it")

    def decode(
        self, topic: str, payload: bytes, arrival_us: int, out: BatchBuilder
    ) -> MessageOutcome:
        """Append the readings of one message to ``out``; say what it gave each device.

        ``arrival_us`` [POSIX us] stamps values whose message has no time. Nothing of a
        device whose message is unusable (not JSON, bad time, no usable value) is
        appended; a single bad value costs only that value.
        """
        if topic.startswith(SPARKPLUG_PREFIX) and self.sparkplug is not None:
            return self.sparkplug.decode(topic, payload, arrival_us, out)
        route = self.route(topic)
        if not route.rule_sets:
            return MessageOutcome(unmapped=route.unmapped)
        outcome = MessageOutcome()
        doc: object = MISSING
        error: str | None = None
        for rule_set in route.rule_sets:
            device = _device_outcome(outcome, rule_set.device_id)
            if doc is MISSING and error is None:
                try:
                    doc = decode_json(payload, f"topic {topic!r}")
                except PayloadError as exc:
                    error = str(exc)
            if error is not None:
                device.problems.append(f"device {rule_set.device_id!r} {error}")
                continue
            if not isinstance(doc, dict):
                device.problems.append(
                    f"device {rule_set.device_id!r} topic {topic!r}: payload must be a JSON "
                    f"object, got {type(doc).__name__}"
                )
                continue
            device.readings += _apply(rule_set, doc, arrival_us, out, topic, device.problems)
        return outcome


def _device_outcome(outcome: MessageOutcome, device_id: str) -> DeviceOutcome:
    for device in outcome.devices:
        if device.device_id == device_id:
            return device
    device = DeviceOutcome(device_id)
    outcome.devices.append(device)
    return device


def _apply(
    rule_set: RuleSet,
    doc: dict[str, object],
    arrival_us: int,
    out: BatchBuilder,
    topic: str,
    problems: list[str],
) -> int:
    """Append one rule set's readings from ``doc``; return how many (0 with a problem
    added when the document gives it nothing usable)."""
    ts_us = arrival_us
    if rule_set.ts_steps is not None:
        raw_ts = lookup(doc, rule_set.ts_steps)
        if raw_ts is not MISSING:
            try:
                ts_us = parse_ts_us(raw_ts, rule_set.local_zone)
            except (ValueError, OverflowError) as exc:
                where = f"device {rule_set.device_id!r} topic {topic!r}"
                problems.append(f"{where}: key {rule_set.ts_label!r}: {exc}")
                return 0
    rows: list[tuple[int, float]] = []
    bad: list[str] = []
    for value_rule in rule_set.values:
        raw = lookup(doc, value_rule.steps)
        if raw is MISSING:
            continue
        number = as_number(raw)
        if number is not None:
            number *= value_rule.scale
        if number is None or not math.isfinite(number):  # a huge scale can overflow
            bad.append(
                f"device {rule_set.device_id!r} topic {topic!r}: key {value_rule.label!r} "
                f"must be a finite number, got {raw!r:.80}"
            )
            continue
        rows.append((value_rule.series_id, number))
    if not rows:  # the message is of no use to the device: one problem
        labels = sorted(v.label for v in rule_set.values)
        where = f"device {rule_set.device_id!r} topic {topic!r}"
        problems.append("; ".join(bad) or f"{where}: none of the keys {labels} is present")
        return 0
    problems.extend(bad)
    for series_id, number in rows:
        out.add_id(series_id, ts_us, number)
    return len(rows)
