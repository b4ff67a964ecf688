"""Admission: the pipeline's check of every reading before it reaches storage or the engine.

A reading is dropped, and counted against its device, when

- its series id is not one the site's :class:`~zerocarbon.batch.SeriesRegistry` knows;
- its value is not finite (NaN, +-inf);
- its time is outside the accepted window ``[now - accept_past_h, now +
  accept_future_s]`` of the injected clock (``[ingest]`` in the site file), e.g. a
  device clock that says 2099-01-01, 9999-12-31 or 0001-01-01;
- it is a counter (:attr:`~zerocarbon.metering.metrics.MetricKind.COUNTER`) below zero
  or above :data:`MAX_COUNTER_VALUE`.

A reading fails on the first of these reasons, in this order.

A reading that passes but that the device cannot physically have produced — active
power beyond :data:`RATED_MARGIN` times the device's ``rated_power_kw`` (in either
direction) — is kept but flagged :attr:`~zerocarbon.batch.Quality.SUSPECT`, counted
per device (``stats.flagged``) and logged like a drop: it is stored, never as good
(the carbon engine rejects the same readings as spikes). Each (device, reason)
is logged at most once per :data:`LOG_INTERVAL_S` of clock time, naming the device,
the metric, one bad value and time, and how many readings were dropped since the last
line. The check is a few array operations over the whole batch; Python only loops
over the (reason, device) pairs that had drops. A bad device costs only its own
readings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

from zerocarbon.batch import (
    METRIC_SLOTS,
    Quality,
    ReadingBatch,
    SeriesRegistry,
    us_to_datetime,
)
from zerocarbon.clock import Clock
from zerocarbon.config import SiteConfig
from zerocarbon.metering.metrics import METRICS, METRICS_BY_NAME, MetricKind

log = logging.getLogger(__name__)

MAX_COUNTER_VALUE = 1e12
"""Largest counter value accepted [metric unit]. No meter counts that far: 1e12 kWh is
1,000 TWh, about twice Germany's yearly electricity use and ten years of the largest
power station's output; for units, kg, Nm3 and litres it is equally out of reach of a
factory meter. Beyond it float64 also stops resolving 0.001 (a meter's last digit)."""

RATED_MARGIN = 1.5
"""Power beyond this multiple of the rated power is flagged suspect (the carbon engine's
spike limit is the same multiple)."""

LOG_INTERVAL_S = 60.0  # at most one log line per device and reason per this clock time [s]
UNKNOWN_DEVICE = "<no device>"  # stats key of series ids beyond the registry's devices


class DropReason(StrEnum):
    """Why admission dropped a reading; the value is the :class:`DeviceDrops` field."""

    UNKNOWN_SERIES = "unknown_series"
    NOT_FINITE = "not_finite"
    OUT_OF_WINDOW = "out_of_window"
    COUNTER_RANGE = "counter_range"


_DESCRIPTION = {
    DropReason.UNKNOWN_SERIES: "series id not in the site's registry",
    DropReason.NOT_FINITE: "value is not finite",
    DropReason.OUT_OF_WINDOW: "time outside the accepted window",
    DropReason.COUNTER_RANGE: f"counter value below 0 or above {MAX_COUNTER_VALUE:g}",
}
_ORDER = tuple(DropReason)  # reason codes 1..4 in the arrays, 0 = admitted


@dataclass(slots=True)
class DeviceDrops:
    """Readings of one device dropped by admission, per reason."""

    unknown_series: int = 0
    not_finite: int = 0
    out_of_window: int = 0
    counter_range: int = 0

    @property
    def total(self) -> int:
        return self.unknown_series + self.not_finite + self.out_of_window + self.counter_range


@dataclass(slots=True)
class AdmissionStats:
    admitted: int = 0
    dropped: int = 0
    by_device: dict[str, DeviceDrops] = field(default_factory=dict)  # device id -> drops
    flagged: dict[str, int] = field(default_factory=dict)  # device id -> flagged suspect


class Admission:
    """Drops and counts readings that must not be stored (see module docstring)."""

    def __init__(self, site: SiteConfig, registry: SeriesRegistry, clock: Clock) -> None:
        self._registry = registry
        self._clock = clock
        self._past_us = round(site.ingest.accept_past_h * 3600 * 1_000_000)
        self._future_us = round(site.ingest.accept_future_s * 1_000_000)
        counter = np.zeros(METRIC_SLOTS, dtype=np.bool_)
        counter[[m.id for m in METRICS if m.kind is MetricKind.COUNTER]] = True
        self._counter_slot: NDArray[np.bool_] = counter
        self._n_devices = len(registry.device_ids)
        # per series id: largest plausible |active power| [kW] (inf: no rating or no power)
        limit = np.full(max(registry.size, 1), np.inf)
        power_slot = METRICS_BY_NAME["active_power_kw"].id
        for device in site.devices:
            if device.rated_power_kw is not None and device.id in registry.device_ids:
                sid = registry.device_index(device.id) * METRIC_SLOTS + power_slot
                limit[sid] = RATED_MARGIN * device.rated_power_kw
        self._power_limit: NDArray[np.float64] = limit
        self._flag_last_log_s: dict[str, float] = {}
        self._since_log: dict[tuple[str, DropReason], int] = {}
        self._last_log_s: dict[tuple[str, DropReason], float] = {}
        self.stats = AdmissionStats()

    def window_us(self) -> tuple[int, int]:
        """The accepted time window now, as POSIX microseconds [us], both ends included."""
        now_us = round(self._clock.now_s() * 1_000_000)
        return now_us - self._past_us, now_us + self._future_us

    def admit(self, batch: ReadingBatch) -> ReadingBatch:
        """The readings of ``batch`` that pass, in their order (``batch`` itself when all
        pass); the others are counted in :attr:`stats` and logged."""
        n = len(batch)
        if n == 0:
            return batch
        lo_us, hi_us = self.window_us()
        series, ts_us, value = batch.series, batch.ts_us, batch.value
        known = self._registry.is_valid(series)
        finite = np.isfinite(value)
        in_window = (ts_us >= lo_us) & (ts_us <= hi_us)
        slot = np.where(known, series, 0) % METRIC_SLOTS
        with np.errstate(invalid="ignore"):
            counter_bad = self._counter_slot[slot] & ((value < 0.0) | (value > MAX_COUNTER_VALUE))
        ok = known & finite & in_window & ~counter_bad
        admitted = int(np.count_nonzero(ok))
        self.stats.admitted += admitted
        with np.errstate(invalid="ignore"):
            beyond = ok & (np.abs(value) > self._power_limit[np.where(known, series, 0)])
        if beyond.any():
            batch = self._flag(batch, beyond)
        if admitted == n:
            return batch
        self.stats.dropped += n - admitted
        reason = np.select(
            [~known, ~finite, ~in_window, counter_bad], [1, 2, 3, 4], default=0
        ).astype(np.int8)
        self._account(batch, reason)
        return batch.take(ok)

    def _flag(self, batch: ReadingBatch, beyond: NDArray[np.bool_]) -> ReadingBatch:
        """``batch`` with the readings of ``beyond`` marked suspect, counted and logged."""
        quality = batch.quality.copy()
        quality[beyond] = Quality.SUSPECT
        rows = np.flatnonzero(beyond)
        devices, first, counts = np.unique(
            batch.series[rows] // METRIC_SLOTS, return_index=True, return_counts=True
        )
        now_s = self._clock.now_s()
        for d, i, c in zip(devices.tolist(), first.tolist(), counts.tolist(), strict=True):
            name = self._registry.device_ids[d]
            self.stats.flagged[name] = self.stats.flagged.get(name, 0) + c
            last_s = self._flag_last_log_s.get(name)
            if last_s is None or now_s - last_s >= LOG_INTERVAL_S:
                self._flag_last_log_s[name] = now_s
                row = int(rows[i])
                log.warning(
                    "device %s: active power %r kW is beyond %g x its rated power: stored "
                    "as suspect (%d flagged so far)",
                    name,
                    float(batch.value[row]),
                    RATED_MARGIN,
                    self.stats.flagged[name],
                )
        return ReadingBatch(batch.series, batch.ts_us, batch.value, quality)

    def _account(self, batch: ReadingBatch, reason: NDArray[np.int8]) -> None:
        now_s = self._clock.now_s()
        for code, why in enumerate(_ORDER, start=1):
            rows = np.flatnonzero(reason == code)
            if rows.size == 0:
                continue
            device = batch.series[rows] // METRIC_SLOTS
            device = np.where((device >= 0) & (device < self._n_devices), device, self._n_devices)
            devices, first, counts = np.unique(device, return_index=True, return_counts=True)
            for d, i, c in zip(devices.tolist(), first.tolist(), counts.tolist(), strict=True):
                name = self._registry.device_ids[d] if d < self._n_devices else UNKNOWN_DEVICE
                drops = self.stats.by_device.setdefault(name, DeviceDrops())
                setattr(drops, why.value, getattr(drops, why.value) + c)
                self._maybe_log(name, why, int(rows[i]), c, batch, now_s)

    def _maybe_log(
        self, device: str, why: DropReason, row: int, count: int, batch: ReadingBatch, now_s: float
    ) -> None:
        key = (device, why)
        since = self._since_log.get(key, 0) + count
        last_s = self._last_log_s.get(key)
        if last_s is not None and now_s - last_s < LOG_INTERVAL_S:
            self._since_log[key] = since
            return
        self._since_log[key] = 0
        self._last_log_s[key] = now_s
        series_id = int(batch.series[row])
        ts_us = int(batch.ts_us[row])
        log.warning(
            "device %s metric %s: %s; dropped %d reading(s) since the last report, "
            "e.g. value=%r ts=%s",
            device,
            self._metric_name(series_id),
            _DESCRIPTION[why],
            since,
            float(batch.value[row]),
            _format_ts(ts_us),
        )

    def _metric_name(self, series_id: int) -> str:
        if self._registry.is_valid(np.array([series_id], dtype=np.int32))[0]:
            return self._registry.key(series_id)[1]
        return f"<series id {series_id}>"


def _format_ts(ts_us: int) -> str:
    try:
        return us_to_datetime(ts_us).isoformat()
    except (ValueError, OverflowError, OSError):
        return f"{ts_us} us since 1970"
