"""JSON payloads of MQTT devices -> rows of a :class:`~zerocarbon.batch.BatchBuilder`.

A payload is a JSON object; the device's ``fields`` table maps its keys to metrics
(:func:`parse_payload`), or its rules map JSON paths (:func:`lookup`, used by
:mod:`zerocarbon.ingest.mqtt.mapping`).
The timestamp comes from ``ts_field`` (ISO 8601 with an offset, or POSIX seconds) or,
when the device has none, from the arrival time. Timestamps become POSIX microseconds
without a detour through local time, so any instant from 0001-01-01 to 9999-12-31 UTC
parses; one outside that range (or a number too large for a float or an int64) is a
:class:`PayloadError`, never an ``OverflowError``. Whether a time is *plausible* is
the pipeline's admission step's business (:mod:`zerocarbon.ingest.admission`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from zerocarbon.batch import MAX_TS_US, MIN_TS_US, BatchBuilder, SeriesRegistry, datetime_to_us
from zerocarbon.config import MqttDevice

MAX_PAYLOAD_BYTES = 256 * 1024
"""Largest payload parsed [bytes]. A meter's JSON is a few hundred bytes (a Tasmota or
Shelly status about 1-2 KiB); anything far larger is refused before parsing, so one
runaway publisher cannot stall the collector."""


class PayloadError(ValueError):
    """A payload that cannot be used; the message names the device and topic."""


def parse_ts_us(raw: object, local_zone: tzinfo | None = None) -> int:
    """POSIX time [us] of a payload timestamp: ISO 8601 with an offset, or POSIX
    seconds (int or float). :class:`ValueError` for anything else or out of range.

    An ISO time without an offset is a local time of ``local_zone`` (a Tasmota ``Time``
    in the zone set by its ``Timezone`` command); without a zone it is an error. In the
    hour repeated when daylight saving time ends such a time is ambiguous: the first of
    the two instants is taken (``fold=0``).
    """
    if isinstance(raw, bool):
        raise ValueError(f"timestamp must be ISO 8601 or POSIX seconds, got {raw!r}")
    if isinstance(raw, int):
        ts_us = raw * 1_000_000
    elif isinstance(raw, float):
        if not math.isfinite(raw):
            raise ValueError(f"timestamp {raw!r} is not finite")
        if abs(raw) > MAX_TS_US / 1_000_000 + 1:  # also keeps round() below in range
            raise ValueError(f"timestamp {raw!r} [s] is outside years 1..9999")
        ts_us = round(raw * 1_000_000)
    elif isinstance(raw, str):
        ts = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        if ts.tzinfo is None:
            if local_zone is None:
                raise ValueError(f"timestamp {raw!r} has no UTC offset")
            ts = ts.replace(tzinfo=local_zone)
        ts_us = datetime_to_us(ts)  # offset applied by arithmetic: no overflow at year 1/9999
    else:
        raise ValueError(f"timestamp must be ISO 8601 or POSIX seconds, got {raw!r}")
    if not MIN_TS_US <= ts_us <= MAX_TS_US:
        raise ValueError(f"timestamp {raw!r} is outside years 1..9999 UTC")
    return ts_us


def decode_json(payload: bytes, where: str) -> object:
    """The JSON document of a payload; :class:`PayloadError` (naming ``where``) when it
    is larger than :data:`MAX_PAYLOAD_BYTES`, not JSON or nested too deeply."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError(
            f"{where}: payload of {len(payload):,} bytes is larger than the "
            f"{MAX_PAYLOAD_BYTES:,} bytes accepted"
        )
    try:
        return json.loads(payload)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int digit limit
        raise PayloadError(f"{where}: payload is not JSON: {exc}") from None
    except RecursionError:
        raise PayloadError(f"{where}: payload is nested too deeply") from None


MISSING = object()  # what :func:`lookup` gives for a path that is not in the document


def lookup(doc: object, steps: Sequence[str | int]) -> object:
    """The value at a JSON path (steps from :func:`zerocarbon.config.split_json_path`),
    or :data:`MISSING` when a key or index is absent or the document's shape differs
    (a key into a list, an index into an object)."""
    value = doc
    for step in steps:
        if isinstance(step, str):
            if not isinstance(value, dict):
                return MISSING
            value = value.get(step, MISSING)
        else:
            if not isinstance(value, list) or step >= len(value):
                return MISSING
            value = value[step]
        if value is MISSING:
            return MISSING
    return value


def as_number(value: object) -> float | None:
    """A JSON value as a finite float, or None (strings, booleans, null, objects, lists,
    integers too large for a float, NaN and infinities are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)  # a huge JSON integer overflows a float
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


@dataclass(slots=True)
class DeviceOutcome:
    """What one message gave one device: its readings and its problems (each counts
    as one bad payload; a message the device could not use at all has one)."""

    device_id: str
    readings: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass(slots=True)
class MessageOutcome:
    """What one MQTT message did: per device, and what the collector should do."""

    devices: list[DeviceOutcome] = field(default_factory=list)
    unmapped: str | None = None  # why no device takes it (counted, logged with the topic)
    publish: list[tuple[str, bytes]] = field(default_factory=list)  # e.g. rebirth requests
    offline: list[str] = field(default_factory=list)  # devices a death certificate ended


def field_series(device: MqttDevice, registry: SeriesRegistry) -> dict[str, int]:
    """Series id of each configured JSON key of ``device`` (key -> id), resolved once.

    Raises :class:`zerocarbon.batch.UnknownSeriesError` naming device and metric."""
    return {key: registry.id(device.id, device.field_metric(key)) for key in device.fields}


def parse_payload(
    device: MqttDevice,
    payload: bytes,
    arrival_us: int,
    series: Mapping[str, int],
    out: BatchBuilder,
) -> tuple[int, list[str]]:
    """Append the readings of one message to ``out``; return their number and the
    problems of single keys.

    ``series`` maps the device's JSON keys to series ids (:func:`field_series`);
    ``arrival_us`` [us] stamps the readings when the payload has no timestamp. Keys not
    in ``fields`` are ignored. A configured key with a non-numeric value is reported in
    the problem list and skipped; the message's other keys still count. A message that
    is not a JSON object, has a bad timestamp or no usable key raises
    :class:`PayloadError` and appends nothing.
    """
    where = f"device {device.id!r} topic {device.topic!r}"
    doc = decode_json(payload, where)
    if not isinstance(doc, dict):
        raise PayloadError(f"{where}: payload must be a JSON object, got {type(doc).__name__}")
    ts_us = arrival_us
    if device.ts_field is not None and device.ts_field in doc:
        try:
            ts_us = parse_ts_us(doc[device.ts_field])
        except (ValueError, OverflowError) as exc:
            raise PayloadError(f"{where}: key {device.ts_field!r}: {exc}") from None
    rows: list[tuple[int, float]] = []
    problems: list[str] = []
    for key in device.fields:
        if key not in doc:
            continue
        value = as_number(doc[key])
        if value is None:
            problems.append(f"{where}: key {key!r} must be a finite number, got {doc[key]!r:.80}")
            continue
        rows.append((series[key], value))
    if not rows:
        detail = "; ".join(problems) or f"none of the keys {sorted(device.fields)} is present"
        raise PayloadError(detail if problems else f"{where}: {detail}")
    for series_id, value in rows:
        out.add_id(series_id, ts_us, value)
    return len(rows), problems
