"""Readings writer: binary COPY of whole batches into ``readings``, and an upsert of
``latest_values``.

A batch's series ids become ``(devices.id, metrics.id)`` through two lookup arrays
(built once from the :class:`~zerocarbon.batch.SeriesRegistry` and the database's
:class:`~zerocarbon.storage.database.Registry`); :mod:`zerocarbon.storage.copy_binary`
turns the arrays into PostgreSQL's binary COPY format in one vectorised pass. The
newest row per series (found with a sort, not a loop over readings) updates
``latest_values`` in the same transaction.

Ingest is idempotent: ``readings`` is unique on (device, metric, ts). A batch of new
rows is one binary COPY; when the unique index refuses it (some rows were stored
before: an MQTT QoS 1 redelivery, a replay, a collector restart), the batch goes
through a session-local staging table and ``INSERT ... ON CONFLICT DO NOTHING``, so
each reading is stored once and the skipped ones are counted (``bench/ingest.py``
measures both paths).

The writer itself keeps nothing: a failed write raises, and the caller (the spool's
:class:`~zerocarbon.storage.forwarder.SpoolForwarder`) keeps the rows on disk and
tries again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import asyncpg
import numpy as np
from numpy.typing import NDArray

from zerocarbon.batch import MAX_TS_US, MIN_TS_US, ReadingBatch, SeriesRegistry, us_to_datetime
from zerocarbon.metering.metrics import METRICS
from zerocarbon.storage.copy_binary import READING_COLUMNS, encode_readings
from zerocarbon.storage.database import Registry

log = logging.getLogger(__name__)

__all__ = [
    "READING_COLUMNS",
    "ReadingLayout",
    "ReadingWriter",
    "WriterStats",
    "latest_rows",
]


class ReadingLayout(Protocol):
    """The table layout's part in a write: make sure a time range can be stored (daily
    partitions on plain PostgreSQL; nothing to do on a TimescaleDB hypertable)."""

    async def cover(self, conn: asyncpg.Connection, min_ts_us: int, max_ts_us: int) -> None: ...


WrittenHook = Callable[[NDArray[np.int64]], None]
"""Told the reading times [us] of each committed write (the rollups' refresh)."""


_STAGING_DDL = """
CREATE TEMP TABLE IF NOT EXISTS readings_in (LIKE readings INCLUDING DEFAULTS)
ON COMMIT DELETE ROWS
"""
_INSERT_NEW = f"""
INSERT INTO readings ({", ".join(READING_COLUMNS)})
SELECT {", ".join(READING_COLUMNS)} FROM readings_in
ON CONFLICT (device_id, metric_id, ts) DO NOTHING
"""

_UPSERT_LATEST = """
INSERT INTO latest_values (ts, device_id, metric_id, value, quality)
SELECT * FROM unnest($1::timestamptz[], $2::int2[], $3::int2[], $4::float8[], $5::int2[])
ON CONFLICT (device_id, metric_id) DO UPDATE
SET ts = EXCLUDED.ts, value = EXCLUDED.value, quality = EXCLUDED.quality
WHERE latest_values.ts <= EXCLUDED.ts
"""


@dataclass(slots=True)
class WriterStats:
    rows_written: int = 0  # new rows stored
    batches_written: int = 0
    failures: int = 0  # writes that raised (the caller keeps the rows and retries)
    unknown_series: int = 0  # series without a devices/metrics row
    out_of_range: int = 0  # times outside 0001..9999 (admission normally drops them first)
    duplicates_skipped: int = 0  # readings already stored (redelivered, replayed)
    replayed_batches: int = 0  # batches that took the insert-only-new path


def latest_rows(series: NDArray[np.int32], ts_us: NDArray[np.int64]) -> NDArray[np.intp]:
    """Index of the newest row of each series (ties: the later row in batch order),
    in ascending series order."""
    if series.shape[0] == 0:
        return np.empty(0, dtype=np.intp)
    order = np.lexsort((ts_us, series))  # stable: equal times keep batch order
    s = series[order]
    last = np.empty(s.shape, dtype=np.bool_)
    last[:-1] = s[1:] != s[:-1]
    last[-1] = True
    return order[last]


class ReadingWriter:
    """Stores batches in ``readings`` (``store(batch)``; also a pipeline sink)."""

    name = "storage"

    def __init__(
        self,
        pool: asyncpg.Pool,
        registry: Registry,
        series: SeriesRegistry,
        *,
        layout: ReadingLayout | None = None,
        on_written: WrittenHook | None = None,
    ) -> None:
        self._pool = pool
        self._series = series
        self._layout = layout
        self._on_written = on_written
        # series id -> devices.id / metrics.id; -1 where the database has no row
        device_db = np.array(
            [registry.device_ids.get(d, -1) for d in series.device_ids], dtype=np.int32
        )
        metric_db = np.full(int(series.metric_id_of.max(initial=0)) + 1, -1, dtype=np.int32)
        for m in METRICS:
            if m.id < metric_db.shape[0]:
                metric_db[m.id] = registry.metric_ids.get(m.name, -1)
        self._device_of: NDArray[np.int32] = device_db[series.device_index_of]
        self._metric_of: NDArray[np.int32] = metric_db[series.metric_id_of]
        self._unknown_reports = 0
        self.stats = WriterStats()

    async def write_batch(self, batch: ReadingBatch) -> None:
        """Pipeline sink: :meth:`store` (a failure raises)."""
        await self.store(batch)

    async def store(self, batch: ReadingBatch) -> int:
        """Store ``batch`` in one transaction, each reading once; returns the rows that
        were new. Raises the database's error (nothing is kept here)."""
        rows = self._storable(batch)
        if not len(rows):
            return 0
        try:
            inserted = await self._write(rows)
        except BaseException:
            self.stats.failures += 1
            raise
        self.stats.rows_written += inserted
        self.stats.batches_written += 1
        if self._on_written is not None:
            self._on_written(rows.ts_us)
        return inserted

    def _storable(self, batch: ReadingBatch) -> ReadingBatch:
        """The rows with a devices/metrics row and a representable time; counts the rest."""
        s = batch.series
        in_range = (s >= 0) & (s < self._series.size)
        safe = np.where(in_range, s, 0)
        known = in_range & (self._device_of[safe] >= 0) & (self._metric_of[safe] >= 0)
        ts_ok = (batch.ts_us >= MIN_TS_US) & (batch.ts_us <= MAX_TS_US)
        keep = known & ts_ok
        kept = int(np.count_nonzero(keep))
        if kept == len(batch):
            return batch
        unknown = int(np.count_nonzero(~known))
        if unknown:
            first = int(s[np.argmax(~known)])
            self.stats.unknown_series += unknown
            self._unknown_reports += 1
            if self._unknown_reports <= 10:  # the first few batches only
                log.warning(
                    "%d reading(s) of series without a database row skipped (e.g. %s)",
                    unknown,
                    self._describe(first),
                )
        bad_ts = int(np.count_nonzero(known & ~ts_ok))
        if bad_ts:
            self.stats.out_of_range += bad_ts
            log.warning("%d reading(s) with a time outside years 1..9999 skipped", bad_ts)
        return batch.take(keep)

    def _describe(self, series_id: int) -> str:
        if 0 <= series_id < self._series.size:
            device, metric = self._series.key(series_id)
            return f"device {device!r} metric {metric!r}"
        return f"series id {series_id}"

    async def _write(self, rows: ReadingBatch) -> int:
        """Store ``rows`` once each; returns how many were new. Binary COPY straight into
        ``readings`` is the path taken; only when the unique index refuses it (some rows
        are already stored) is the batch inserted through a staging table, skipping what
        exists (``ON CONFLICT DO NOTHING``); see ``bench/ingest.py`` for the rates."""
        device_id = self._device_of[rows.series]
        metric_id = self._metric_of[rows.series]
        data = encode_readings(rows.ts_us, device_id, metric_id, rows.value, rows.quality)
        newest = latest_rows(rows.series, rows.ts_us)
        latest = (
            [us_to_datetime(t) for t in rows.ts_us[newest].tolist()],
            device_id[newest].tolist(),
            metric_id[newest].tolist(),
            rows.value[newest].tolist(),
            rows.quality[newest].tolist(),
        )
        async with self._pool.acquire() as conn, conn.transaction():
            if self._layout is not None:
                await self._layout.cover(conn, int(rows.ts_us.min()), int(rows.ts_us.max()))
            try:
                async with conn.transaction():  # a savepoint: the fast path may fail
                    await conn.copy_to_table(
                        "readings", source=data, columns=READING_COLUMNS, format="binary"
                    )
                inserted = len(rows)
            except asyncpg.UniqueViolationError:
                inserted = await self._insert_new(conn, data)
                self.stats.replayed_batches += 1
            await conn.execute(_UPSERT_LATEST, *latest)
        self.stats.duplicates_skipped += len(rows) - inserted
        return inserted

    async def _insert_new(self, conn: asyncpg.Connection, data: bytearray) -> int:
        """The slow path of a batch holding readings already stored (a redelivery or a
        replay): COPY into a session-local staging table, then insert only the new rows."""
        await conn.execute(_STAGING_DDL)
        await conn.copy_to_table(
            "readings_in", source=data, columns=READING_COLUMNS, format="binary"
        )
        status = await conn.execute(_INSERT_NEW)
        return int(status.split()[-1])  # "INSERT 0 <rows>"
