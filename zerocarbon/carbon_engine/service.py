"""The engine as a pipeline sink: feed batches, upsert the hours they touched.

Touched hours are written at most every ``flush_interval_s`` (real seconds) and at
shutdown. Because hourly rows are upserts, writing a still-open hour several times is
harmless: its row grows until the hour is complete.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import asyncpg

from zerocarbon.carbon_engine.engine import CarbonEngine
from zerocarbon.ingest.reading import Reading
from zerocarbon.storage.database import Registry
from zerocarbon.storage.hourly import upsert_hourly

log = logging.getLogger(__name__)

KEEP_HOURS = 48  # hours of streaming state kept in memory behind the newest hour


class CarbonService:
    name = "carbon_engine"

    def __init__(
        self,
        engine: CarbonEngine,
        pool: asyncpg.Pool,
        registry: Registry,
        *,
        flush_interval_s: float = 1.0,
    ) -> None:
        self.engine = engine
        self._pool = pool
        self._registry = registry
        self._flush_interval_s = flush_interval_s
        self._dirty: set[int] = set()
        self._last_flush = 0.0
        self.upserts = 0  # hourly carbon rows written (an hour is rewritten as it fills)
        self.last_hour_start_s: int | None = None  # newest hour written
        self.flush_failures = 0

    async def write_batch(self, readings: Sequence[Reading]) -> None:
        self._dirty |= self.engine.ingest(readings)
        if time.monotonic() - self._last_flush >= self._flush_interval_s:
            await self.flush()

    async def flush(self) -> None:
        """Upsert every hour touched since the last flush."""
        self._last_flush = time.monotonic()
        if not self._dirty:
            return
        hours = sorted(self._dirty)
        carbon, energy = self.engine.results(hours)
        try:
            async with self._pool.acquire() as conn:
                await upsert_hourly(conn, self._registry, carbon, energy)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            self.flush_failures += 1
            log.warning("writing %d hourly rows failed (%s); will retry", len(hours), exc)
            return
        self.upserts += len(carbon)
        self.last_hour_start_s = hours[-1]
        self._dirty.clear()
        self.engine.prune(hours[-1] - KEEP_HOURS * 3600)
