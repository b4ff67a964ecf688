"""The exact energy the simulated plant produced, per UTC hour.

The plant holds each step's power constant, so a step's energy is split across hour
boundaries in proportion to time (the rule the carbon engine applies to counter
deltas). End-to-end tests compare the engine's hourly figures with
these.

Keys are either a site quantity (:class:`SiteQuantity`) or ``(device_id, metric)`` for
every counter metric a device exposes. The JSON file written by :meth:`GroundTruth.save`
looks like::

    {"format": "zerocarbon.ground_truth/1",
     "start": "2026-06-20T16:00:00+00:00", "end": "...", "start_s": ..., "end_s": ...,
     "site": {"grid_import_kwh": {"2026-06-20T16:00:00+00:00": 512.3, ...}, ...},
     "devices": {"grid_meter": {"energy_import_kwh": {"...": 512.3}}, ...},
     "faults": {"line_a": {"2026-06-20T18:00:00+00:00": ["counter_reset", "gap"]}, ...}}

Faults (:mod:`.faults`) never change these amounts: they change what devices report.
What they did is recorded per device and UTC hour (``faults``: hour -> fault kinds), so
a test can check that the hours the engine flags as estimated are the hours that had a
fault. Documents without ``faults`` (older files) load with none.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

HOUR_S = 3600
FORMAT = "zerocarbon.ground_truth/1"


class SiteQuantity(StrEnum):
    GRID_IMPORT_KWH = "grid_import_kwh"  # from the grid power's sign, per step
    GRID_EXPORT_KWH = "grid_export_kwh"
    PV_KWH = "pv_kwh"
    BATTERY_CHARGE_KWH = "battery_charge_kwh"  # AC side
    BATTERY_DISCHARGE_KWH = "battery_discharge_kwh"  # AC side
    LOAD_KWH = "load_kwh"  # base load + every line
    PRODUCTION_UNITS = "production_units"


_SITE_QUANTITY_NAMES = frozenset(q.value for q in SiteQuantity)

TruthKey = str | tuple[str, str]  # a SiteQuantity (or its name), or (device_id, metric)


def hour_start(hour_index: int) -> datetime:
    """Aware UTC start of the hour ``hour_index`` (hours since the POSIX epoch)."""
    return datetime.fromtimestamp(hour_index * HOUR_S, UTC)


def _hour_index(hour: datetime) -> int:
    ts = hour.timestamp()
    if ts % HOUR_S:
        raise ValueError(f"{hour.isoformat()} is not the start of an hour")
    return int(ts // HOUR_S)


class GroundTruth:
    """Exact amounts per key and UTC hour; also the time span it covers."""

    def __init__(self) -> None:
        self._hours: dict[TruthKey, dict[int, float]] = {}
        self._faults: dict[str, dict[int, set[str]]] = {}
        self.start_s: float | None = None  # earliest time recorded [s]
        self.end_s: float | None = None  # latest time recorded [s]

    def add(self, key: TruthKey, start_s: float, end_s: float, amount: float) -> None:
        """Record ``amount`` (kWh or units) produced evenly over [start_s, end_s).

        The amount is split across the UTC hours the interval touches in proportion to
        the time in each; the parts sum to ``amount`` (the last part is the remainder).
        """
        if end_s < start_s:
            raise ValueError(f"interval ends before it starts: {start_s} .. {end_s}")
        buckets = self._hours.setdefault(key, {})
        self.start_s = start_s if self.start_s is None else min(self.start_s, start_s)
        self.end_s = end_s if self.end_s is None else max(self.end_s, end_s)
        first = math.floor(start_s / HOUR_S)
        last = math.ceil(end_s / HOUR_S) - 1  # an interval ending on a boundary stays before it
        if end_s == start_s:
            if amount != 0.0:
                raise ValueError(f"non-zero amount {amount} over an empty interval at {start_s}")
            buckets.setdefault(first, 0.0)
            return
        if last <= first:
            buckets[first] = buckets.get(first, 0.0) + amount
            return
        duration = end_s - start_s
        given = 0.0
        for hour in range(first, last):
            part = (
                amount * (min(end_s, (hour + 1) * HOUR_S) - max(start_s, hour * HOUR_S)) / duration
            )
            buckets[hour] = buckets.get(hour, 0.0) + part
            given += part
        buckets[last] = buckets.get(last, 0.0) + (amount - given)

    def mark_fault(
        self, device_id: str, kind: str, start_s: float, end_s: float | None = None
    ) -> None:
        """Record that fault ``kind`` affected ``device_id`` at ``start_s`` or, with
        ``end_s``, over [start_s, end_s) (every UTC hour the span touches)."""
        hours = self._faults.setdefault(device_id, {})
        first = math.floor(start_s / HOUR_S)
        last = first if end_s is None else max(first, math.ceil(end_s / HOUR_S) - 1)
        for hour in range(first, last + 1):
            hours.setdefault(hour, set()).add(str(kind))

    def faults(self, device_id: str) -> dict[datetime, frozenset[str]]:
        """Fault kinds per hour (aware UTC ``hour_start``) of ``device_id``, in time order."""
        hours = self._faults.get(device_id, {})
        return {hour_start(h): frozenset(hours[h]) for h in sorted(hours)}

    def fault_hours(self, device_id: str, kind: str | None = None) -> list[datetime]:
        """Hours in which ``device_id`` had a fault (of ``kind``, when given)."""
        return [h for h, kinds in self.faults(device_id).items() if kind is None or kind in kinds]

    def faulty_devices(self) -> list[str]:
        return sorted(self._faults)

    def keys(self) -> Iterator[TruthKey]:
        return iter(self._hours)

    def hourly(self, key: TruthKey) -> dict[datetime, float]:
        """Amount per hour (aware UTC ``hour_start``), in time order; empty if unknown."""
        buckets = self._hours.get(key, {})
        return {hour_start(h): buckets[h] for h in sorted(buckets)}

    def total(self, key: TruthKey) -> float:
        return math.fsum(self._hours.get(key, {}).values())

    def complete_hours(self, now_s: float | None = None) -> list[datetime]:
        """Hours wholly covered by the record (and ended by ``now_s`` when given)."""
        if self.start_s is None or self.end_s is None:
            return []
        end_s = self.end_s if now_s is None else min(self.end_s, now_s)
        first = math.ceil(self.start_s / HOUR_S)
        last = math.floor(end_s / HOUR_S)  # exclusive
        return [hour_start(h) for h in range(first, last)]

    # --- persistence -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        site: dict[str, dict[str, float]] = {}
        devices: dict[str, dict[str, dict[str, float]]] = {}
        for key, buckets in self._hours.items():
            series = {hour_start(h).isoformat(): buckets[h] for h in sorted(buckets)}
            if isinstance(key, tuple):
                device_id, metric = key
                devices.setdefault(device_id, {})[metric] = series
            else:
                site[str(key)] = series
        return {
            "format": FORMAT,
            "start": None
            if self.start_s is None
            else datetime.fromtimestamp(self.start_s, UTC).isoformat(),
            "end": None
            if self.end_s is None
            else datetime.fromtimestamp(self.end_s, UTC).isoformat(),
            "start_s": self.start_s,
            "end_s": self.end_s,
            "site": site,
            "devices": devices,
            "faults": {
                device_id: {hour_start(h).isoformat(): sorted(hours[h]) for h in sorted(hours)}
                for device_id, hours in sorted(self._faults.items())
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GroundTruth:
        if data.get("format") != FORMAT:
            raise ValueError(f"not a ground-truth document (format {data.get('format')!r})")
        truth = cls()
        truth.start_s = data["start_s"]
        truth.end_s = data["end_s"]
        for name, series in data["site"].items():
            key = SiteQuantity(name) if name in _SITE_QUANTITY_NAMES else name
            truth._hours[key] = _parse_series(series)
        for device_id, metrics in data["devices"].items():
            for metric, series in metrics.items():
                truth._hours[(device_id, metric)] = _parse_series(series)
        for device_id, hours in data.get("faults", {}).items():
            truth._faults[device_id] = {
                _hour_index(datetime.fromisoformat(ts)): set(kinds) for ts, kinds in hours.items()
            }
        return truth

    def save(self, path: str | Path) -> None:
        """Write the JSON document atomically (temporary file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.to_dict(), f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | Path) -> GroundTruth:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def _parse_series(series: dict[str, float]) -> dict[int, float]:
    return {_hour_index(datetime.fromisoformat(ts)): float(v) for ts, v in series.items()}
