"""Readings as columnar batches, and the one registry of series ids.

Every reading travels from collector to sinks inside a :class:`ReadingBatch`: four
numpy arrays of equal length (series id, time, value, quality). Collectors fill a
:class:`BatchBuilder`; the pipeline concatenates batches; the storage writer turns a
batch into PostgreSQL binary COPY with array operations and the carbon engine reads
the arrays in compiled kernels: no Python object per reading on the way.

A *series* is one metric of one device. :class:`SeriesRegistry`, built once from the
site file, gives each (device, metric) a small integer id:
``series_id = device_index * METRIC_SLOTS + metric.id``, so the writer and the engine
map ids with array lookups. :class:`Reading` is a per-reading view for tests and the
API, where one object reads better than four arrays.

Why numpy and not Arrow: the engine's numba kernels and the COPY encoder take numpy
arrays directly; building a batch of a few hundred readings and concatenating them is
what the pipeline does most, and ``bench/batch_format.py`` measures that path for
both (numpy kept: no conversion at either end, no extra dependency).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum

import numpy as np
from numpy.typing import NDArray

from zerocarbon.config import SiteConfig
from zerocarbon.metering.metrics import METRICS, METRICS_BY_ID, METRICS_BY_NAME, Metric

__all__ = [
    "MAX_TS_US",
    "METRIC_SLOTS",
    "MIN_TS_US",
    "BatchBuilder",
    "Quality",
    "Reading",
    "ReadingBatch",
    "SeriesRegistry",
    "UnknownSeriesError",
    "datetime_to_us",
    "us_to_datetime",
]

METRIC_SLOTS = 64  # series ids reserved per device; metric ids are < this
US_PER_S = 1_000_000
# The instants a Python datetime holds (and the API can show):
# 0001-01-01T00:00Z .. 9999-12-31T23:59:59.999999Z as POSIX microseconds [us].
MIN_TS_US = -62_135_596_800_000_000
MAX_TS_US = 253_402_300_799_999_999


class Quality(IntEnum):
    """Data quality flag stored with each reading."""

    GOOD = 0
    ESTIMATED = 1
    SUSPECT = 2


def datetime_to_us(ts: datetime) -> int:
    """POSIX time of an aware datetime in whole microseconds [us]."""
    if ts.tzinfo is None:
        raise ValueError(f"timestamp {ts.isoformat()} has no time zone")
    delta = ts - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * US_PER_S + delta.microseconds


def us_to_datetime(ts_us: int) -> datetime:
    """Aware UTC datetime of a POSIX time in microseconds [us]."""
    return datetime.fromtimestamp(ts_us // US_PER_S, UTC).replace(microsecond=ts_us % US_PER_S)


@dataclass(frozen=True, slots=True)
class Reading:
    """One value of one metric of one device at one instant (a view of a batch row).

    ``ts`` is timezone-aware UTC; ``device`` is the site config's device id; ``metric``
    a name from :mod:`zerocarbon.metering.metrics`; ``value`` in that metric's unit.
    """

    ts: datetime
    device: str
    metric: str
    value: float
    quality: Quality = Quality.GOOD


class UnknownSeriesError(KeyError):
    """A (device, metric) the site file does not have."""


class SeriesRegistry:
    """(device id, metric name) <-> series id, for one site file.

    Ids are dense per device (``device_index * METRIC_SLOTS + metric.id``), stable as
    long as the order of the site's devices is. Every metric of every device has an id;
    whether a device really reports it is the collectors' business.
    """

    def __init__(self, device_ids: Sequence[str]) -> None:
        if len(set(device_ids)) != len(device_ids):
            raise ValueError("device ids must be unique")
        self.device_ids: tuple[str, ...] = tuple(device_ids)
        self._index = {d: i for i, d in enumerate(self.device_ids)}
        self.size = len(self.device_ids) * METRIC_SLOTS  # one past the largest id
        ids = np.arange(self.size, dtype=np.int32)
        self.device_index_of: NDArray[np.int32] = ids // METRIC_SLOTS  # per series id
        self.metric_id_of: NDArray[np.int16] = (ids % METRIC_SLOTS).astype(np.int16)
        self._known_slot = np.zeros(METRIC_SLOTS, dtype=np.bool_)  # slots that are metrics
        self._known_slot[[m.id for m in METRICS]] = True

    @classmethod
    def for_site(cls, site: SiteConfig) -> SeriesRegistry:
        return cls([d.id for d in site.devices])

    def id(self, device: str, metric: str) -> int:
        """Series id of ``device``/``metric``; :class:`UnknownSeriesError` names both."""
        index = self._index.get(device)
        if index is None:
            raise UnknownSeriesError(f"no device {device!r} in the site file")
        m = METRICS_BY_NAME.get(metric)
        if m is None:
            raise UnknownSeriesError(f"device {device!r}: unknown metric {metric!r}")
        return index * METRIC_SLOTS + m.id

    def device_index(self, device: str) -> int:
        return self._index[device]

    def key(self, series_id: int) -> tuple[str, str]:
        """(device id, metric name) of a series id."""
        return self.device_ids[series_id // METRIC_SLOTS], self.metric(series_id).name

    def metric(self, series_id: int) -> Metric:
        if not 0 <= series_id < self.size:
            raise UnknownSeriesError(f"series id {series_id} is not in this registry")
        return METRICS_BY_ID[series_id % METRIC_SLOTS]

    def is_valid(self, series: NDArray[np.int32]) -> NDArray[np.bool_]:
        """Which ids name a metric of a device of this site."""
        ok = (series >= 0) & (series < self.size)
        out = np.zeros(series.shape, dtype=np.bool_)
        out[ok] = self._known_slot[series[ok] % METRIC_SLOTS]
        return out


@dataclass(frozen=True, slots=True)
class ReadingBatch:
    """Readings as four aligned arrays.

    Attributes
    ----------
    series : ndarray of int32, shape (n,)
        Series id (:class:`SeriesRegistry`).
    ts_us : ndarray of int64, shape (n,)
        Reading time, POSIX time in microseconds, UTC [us] (PostgreSQL's resolution).
    value : ndarray of float64, shape (n,)
        Value in the metric's unit.
    quality : ndarray of int8, shape (n,)
        :class:`Quality` code.
    """

    series: NDArray[np.int32]
    ts_us: NDArray[np.int64]
    value: NDArray[np.float64]
    quality: NDArray[np.int8]

    def __post_init__(self) -> None:
        n = self.series.shape[0]
        for name in ("ts_us", "value", "quality"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"batch column {name} has shape {getattr(self, name).shape}")

    def __len__(self) -> int:
        return int(self.series.shape[0])

    @staticmethod
    def empty() -> ReadingBatch:
        return ReadingBatch(
            np.empty(0, np.int32),
            np.empty(0, np.int64),
            np.empty(0, np.float64),
            np.empty(0, np.int8),
        )

    @staticmethod
    def of(
        series: Iterable[int] | NDArray[np.int32],
        ts_us: Iterable[int] | NDArray[np.int64],
        value: Iterable[float] | NDArray[np.float64],
        quality: Iterable[int] | NDArray[np.int8] | None = None,
    ) -> ReadingBatch:
        """A batch from array-likes (copied into the right dtypes)."""
        s = np.ascontiguousarray(np.asarray(series, dtype=np.int32).ravel())
        t = np.ascontiguousarray(np.asarray(ts_us, dtype=np.int64).ravel())
        v = np.ascontiguousarray(np.asarray(value, dtype=np.float64).ravel())
        q = (
            np.zeros(s.shape, np.int8)
            if quality is None
            else np.ascontiguousarray(np.asarray(quality, dtype=np.int8).ravel())
        )
        return ReadingBatch(s, t, v, q)

    @staticmethod
    def concat(batches: Sequence[ReadingBatch]) -> ReadingBatch:
        if not batches:
            return ReadingBatch.empty()
        if len(batches) == 1:
            return batches[0]
        return ReadingBatch(
            np.concatenate([b.series for b in batches]),
            np.concatenate([b.ts_us for b in batches]),
            np.concatenate([b.value for b in batches]),
            np.concatenate([b.quality for b in batches]),
        )

    def take(self, index: NDArray[np.bool_] | NDArray[np.intp]) -> ReadingBatch:
        """The rows selected by a boolean mask or an index array."""
        return ReadingBatch(
            self.series[index], self.ts_us[index], self.value[index], self.quality[index]
        )

    @staticmethod
    def from_readings(readings: Iterable[Reading], registry: SeriesRegistry) -> ReadingBatch:
        """A batch of Reading objects (tests, small callers); unknown series raise."""
        b = BatchBuilder(registry)
        for r in readings:
            b.add(r.device, r.metric, r.ts, r.value, r.quality)
        return b.build()

    def readings(self, registry: SeriesRegistry) -> Iterator[Reading]:
        """The per-reading view, in batch order."""
        for s, t, v, q in zip(
            self.series.tolist(),
            self.ts_us.tolist(),
            self.value.tolist(),
            self.quality.tolist(),
            strict=True,
        ):
            device, metric = registry.key(s)
            yield Reading(us_to_datetime(t), device, metric, v, Quality(q))


class BatchBuilder:
    """Collects the readings of one poll or message into a :class:`ReadingBatch`.

    Resolves (device, metric) to a series id once per call of :meth:`add` (collectors
    with a fixed set of points resolve once at start and use :meth:`add_id`).
    """

    __slots__ = ("_q", "_registry", "_s", "_t", "_v")

    def __init__(self, registry: SeriesRegistry) -> None:
        self._registry = registry
        self._s: list[int] = []
        self._t: list[int] = []
        self._v: list[float] = []
        self._q: list[int] = []

    def __len__(self) -> int:
        return len(self._s)

    def add(
        self, device: str, metric: str, ts: datetime, value: float, quality: int = Quality.GOOD
    ) -> None:
        self.add_id(self._registry.id(device, metric), datetime_to_us(ts), value, quality)

    def add_id(self, series_id: int, ts_us: int, value: float, quality: int = 0) -> None:
        self._s.append(series_id)
        self._t.append(ts_us)
        self._v.append(value)
        self._q.append(int(quality))

    def build(self) -> ReadingBatch:
        """The batch so far; the builder starts empty again."""
        batch = ReadingBatch(
            np.array(self._s, dtype=np.int32),
            np.array(self._t, dtype=np.int64),
            np.array(self._v, dtype=np.float64),
            np.array(self._q, dtype=np.int8),
        )
        self._s, self._t, self._v, self._q = [], [], [], []
        return batch
