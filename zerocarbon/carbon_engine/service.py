"""The engine as a pipeline sink: feed batches, upsert the hours they touched.

Touched hours are written at most every ``flush_interval_s`` (real seconds) and at
shutdown. Because hourly rows are upserts, writing a still-open hour several times is
harmless: its row grows until the hour is complete.

The engine's CPU work runs in a worker thread so that it never stalls the event loop
the collectors time-stamp their readings on, and :meth:`CarbonService.warm_up` compiles
(or loads from numba's cache) every kernel before collection starts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg

from zerocarbon.carbon_engine.engine import CarbonEngine
from zerocarbon.config import SiteConfig
from zerocarbon.ingest.reading import Reading
from zerocarbon.storage.database import Registry
from zerocarbon.storage.hourly import load_counter_state, upsert_hourly

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

    async def warm_up(self) -> None:
        """Run a throwaway engine over a few synthetic readings so that every kernel is
        compiled before the first real batch (a first compile takes about a second)."""
        await asyncio.to_thread(warm_up_kernels, self.engine.site)

    async def restore(self) -> int:
        """Continue from what an earlier run stored (newest counter values and the
        hourly sums of the last KEEP_HOURS hours), so that a restart extends the open
        hour instead of overwriting it with a partial one. Returns the series restored.
        """
        async with self._pool.acquire() as conn:
            states = await load_counter_state(conn, KEEP_HOURS)
        restored = 0
        for st in states:
            restored += self.engine.restore(
                st.device, st.metric, st.last_ts_s, st.last_value, st.hourly
            )
        if restored:
            log.info("carbon engine: continued %d counter series from the database", restored)
        return restored

    async def write_batch(self, readings: Sequence[Reading]) -> None:
        self._dirty |= await asyncio.to_thread(self.engine.ingest, readings)
        if time.monotonic() - self._last_flush >= self._flush_interval_s:
            await self.flush()

    async def flush(self) -> None:
        """Upsert every hour touched since the last flush."""
        self._last_flush = time.monotonic()
        if not self._dirty:
            return
        hours = sorted(self._dirty)
        carbon, energy = await asyncio.to_thread(self.engine.results, hours)
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


def warm_up_kernels(site: SiteConfig) -> None:
    """Compile (or load from numba's cache) every kernel the engine runs for ``site``."""
    scratch = CarbonEngine(site)
    t0 = datetime(2000, 1, 1, 0, 59, tzinfo=UTC).timestamp()
    readings = [
        Reading(datetime.fromtimestamp(t0 + 60 * i, UTC), d.id, "energy_import_kwh", 10.0 * i)
        for d in site.devices
        for i in range(3)
    ]
    scratch.results(sorted(scratch.ingest(readings)))
