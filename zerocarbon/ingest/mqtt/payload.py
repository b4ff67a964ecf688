"""JSON payloads of MQTT devices -> Readings.

A payload is a JSON object; the device's ``fields`` table maps its keys to metrics.
The timestamp comes from ``ts_field`` (ISO 8601 with an offset, or POSIX seconds) or,
when the device has none, from the arrival time.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

from zerocarbon.config import MqttDevice
from zerocarbon.ingest.reading import Reading


class PayloadError(ValueError):
    """A payload that cannot be used; the message names the device and topic."""


def parse_ts(raw: object) -> datetime:
    if isinstance(raw, bool):
        raise ValueError(f"timestamp must be ISO 8601 or POSIX seconds, got {raw!r}")
    if isinstance(raw, int | float):
        if not math.isfinite(raw):
            raise ValueError(f"timestamp {raw!r} is not finite")
        return datetime.fromtimestamp(raw, UTC)
    if isinstance(raw, str):
        ts = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        if ts.tzinfo is None:
            raise ValueError(f"timestamp {raw!r} has no UTC offset")
        return ts.astimezone(UTC)
    raise ValueError(f"timestamp must be ISO 8601 or POSIX seconds, got {raw!r}")


def parse_payload(
    device: MqttDevice, payload: bytes, arrival: datetime
) -> tuple[list[Reading], list[str]]:
    """Readings of one message and the problems of single keys.

    Keys not in ``fields`` are ignored. A configured key with a non-numeric value is
    reported in the problem list and skipped; the message's other keys still count.
    A message that is not a JSON object, has a bad timestamp or no usable key raises
    :class:`PayloadError`.
    """
    where = f"device {device.id!r} topic {device.topic!r}"
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"{where}: payload is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise PayloadError(f"{where}: payload must be a JSON object, got {type(doc).__name__}")
    ts = arrival
    if device.ts_field is not None and device.ts_field in doc:
        try:
            ts = parse_ts(doc[device.ts_field])
        except ValueError as exc:
            raise PayloadError(f"{where}: key {device.ts_field!r}: {exc}") from None
    readings: list[Reading] = []
    problems: list[str] = []
    for key in device.fields:
        metric = device.field_metric(key)
        if key not in doc:
            continue
        value = doc[key]
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if not numeric or not math.isfinite(value):
            problems.append(f"{where}: key {key!r} must be a finite number, got {value!r}")
            continue
        readings.append(Reading(ts, device.id, metric, float(value)))
    if not readings:
        detail = "; ".join(problems) or f"none of the keys {sorted(device.fields)} is present"
        raise PayloadError(detail if problems else f"{where}: {detail}")
    return readings, problems
