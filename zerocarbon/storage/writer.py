"""Readings writer: binary COPY into ``readings`` and an upsert of ``latest_values``.

asyncpg's ``copy_records_to_table`` speaks PostgreSQL's binary COPY format. When the
database is unavailable the batch is kept in memory (bounded by ``max_pending_rows``,
oldest dropped first and counted) and written with the next batch. An on-disk spool
that survives restarts is future work (see docs/architecture.md).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from zerocarbon.ingest.reading import Reading
from zerocarbon.storage.database import Registry

log = logging.getLogger(__name__)

READING_COLUMNS = ("ts", "device_id", "metric_id", "value", "quality")
Record = tuple[datetime, int, int, float, int]


@dataclass(slots=True)
class WriterStats:
    rows_written: int = 0
    batches_written: int = 0
    failures: int = 0
    rows_dropped: int = 0
    unknown_series: int = 0


class ReadingWriter:
    name = "storage"

    def __init__(
        self, pool: asyncpg.Pool, registry: Registry, *, max_pending_rows: int = 1_000_000
    ) -> None:
        self._pool = pool
        self._registry = registry
        self._pending: list[Record] = []
        self._max_pending_rows = max_pending_rows
        self.stats = WriterStats()

    def _records(self, readings: Sequence[Reading]) -> list[Record]:
        devices = self._registry.device_ids
        metrics = self._registry.metric_ids
        records: list[Record] = []
        for r in readings:
            device_id = devices.get(r.device)
            metric_id = metrics.get(r.metric)
            if device_id is None or metric_id is None:
                self.stats.unknown_series += 1
                if self.stats.unknown_series <= 10:
                    log.warning(
                        "reading for unknown device %r / metric %r skipped", r.device, r.metric
                    )
                continue
            records.append((r.ts, device_id, metric_id, r.value, int(r.quality)))
        return records

    async def write_batch(self, readings: Sequence[Reading]) -> None:
        self._pending.extend(self._records(readings))
        overflow = len(self._pending) - self._max_pending_rows
        if overflow > 0:
            del self._pending[:overflow]
            self.stats.rows_dropped += overflow
            log.error("database unavailable too long: dropped %d oldest readings", overflow)
        if not self._pending:
            return
        try:
            await self._write(self._pending)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            self.stats.failures += 1
            log.warning("writing %d readings failed (%s); kept for retry", len(self._pending), exc)
            return
        self.stats.rows_written += len(self._pending)
        self.stats.batches_written += 1
        self._pending = []

    async def _write(self, records: list[Record]) -> None:
        latest: dict[tuple[int, int], Record] = {}
        for rec in records:
            key = (rec[1], rec[2])
            if key not in latest or rec[0] >= latest[key][0]:
                latest[key] = rec
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.copy_records_to_table("readings", records=records, columns=READING_COLUMNS)
            await conn.executemany(
                """INSERT INTO latest_values (ts, device_id, metric_id, value, quality)
                   VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (device_id, metric_id) DO UPDATE
                   SET ts = EXCLUDED.ts, value = EXCLUDED.value, quality = EXCLUDED.quality
                   WHERE latest_values.ts <= EXCLUDED.ts""",
                list(latest.values()),
            )
