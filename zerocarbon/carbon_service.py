"""The carbon engine as a pipeline sink: the runtime's glue between engine and storage.

The engine is pure (arrays in, rows out); this service owns the storage side: it
feeds each batch to the engine in a worker thread (the event loop the collectors
stamp readings on never stalls), recomputes the hours late readings touch from the
readings already stored (the storage sink runs before it in the pipeline), upserts
the touched hours at most every ``flush_interval_s`` and at shutdown, and at start
continues from what an earlier run stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np
from numpy.typing import NDArray

from zerocarbon.batch import ReadingBatch, SeriesRegistry, datetime_to_us, us_to_datetime
from zerocarbon.carbon_engine.engine import CarbonEngine, HourlyResults
from zerocarbon.carbon_engine.stream import HOUR_US
from zerocarbon.config import SiteConfig
from zerocarbon.rows import HourlyCarbon, HourlyEnergy, HourlyLine
from zerocarbon.storage.database import Registry
from zerocarbon.storage.hourly import (
    load_hourly_energy,
    load_latest_points,
    readings_around,
    upsert_hourly,
)

log = logging.getLogger(__name__)

HOUR_S = 3600

HourlyListener = Callable[
    [Sequence[HourlyCarbon], Sequence[HourlyEnergy], Sequence[HourlyLine], float], None
]
"""Told of the hourly rows of each flush, and of the newest reading's time [POSIX s]
(the alert service closes hours with it); must not raise."""
_DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


class CarbonService:
    name = "carbon_engine"

    def __init__(
        self,
        engine: CarbonEngine,
        pool: asyncpg.Pool,
        registry: Registry,
        *,
        flush_interval_s: float = 1.0,
        on_written: HourlyListener | None = None,
    ) -> None:
        self.engine = engine
        self.on_written = on_written
        self._pool = pool
        self._registry = registry
        self._flush_interval_s = flush_interval_s
        self._dirty: set[int] = set()
        self._late: list[ReadingBatch] = []
        self._last_flush = 0.0
        self.upserts = 0  # hourly carbon rows written (an hour is rewritten as it fills)
        self.last_hour_start_s: int | None = None  # newest hour written
        self.last_flush_at: datetime | None = None
        self.flush_failures = 0
        self.recomputes = 0
        # rows as last written: a month's allocations recompute all its hours, and only
        # the rows that changed are written again
        self._written_carbon: dict[datetime, HourlyCarbon] = {}
        self._written_lines: dict[tuple[datetime, str], HourlyLine] = {}

    async def warm_up(self) -> None:
        """Compile (or load from numba's cache) every kernel before collection starts."""
        await asyncio.to_thread(warm_up_kernels, self.engine.site)

    async def restore(self) -> int:
        """Continue from what an earlier run stored: the newest point of every series
        and the hourly rows of the hours the engine holds. Returns series restored."""
        engine = self.engine
        async with self._pool.acquire() as conn:
            points = await load_latest_points(conn)
            if not points:
                return 0
            newest = max(p[2] for p in points)
            since = newest - timedelta(hours=engine.n_slots - 2)
            rows = await load_hourly_energy(conn, since)
        restored = 0
        for device, metric, ts, value in points:
            try:
                sid = engine.registry.id(device, metric)
            except KeyError:
                continue  # a device since removed from the site file
            engine.restore_series(sid, datetime_to_us(ts), value)
            restored += 1
        for row in rows:
            engine.restore_hour(row)
        engine.take_dirty()
        if restored:
            log.info("carbon engine: continued %d series from the database", restored)
        return restored

    async def write_batch(self, batch: ReadingBatch) -> None:
        result = await asyncio.to_thread(self.engine.ingest, batch)
        self._dirty.update(result.changed_hours_s)
        if len(result.late):
            self._late.append(result.late)
        if time.monotonic() - self._last_flush >= self._flush_interval_s:
            await self.flush()

    async def _recompute_late(self, conn: asyncpg.Connection) -> None:
        """Rebuild the hours late readings touch, per series, from stored readings."""
        late = ReadingBatch.concat(self._late)
        reg = self.engine.registry

        async def fetch(
            sid: int, start_us: int, end_us: int
        ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
            device, metric = reg.key(sid)
            device_id = self._registry.device_ids.get(device)
            metric_id = self._registry.metric_ids.get(metric)
            if device_id is None or metric_id is None:
                return np.empty(0, np.int64), np.empty(0, np.float64)
            return await readings_around(
                conn, device_id, metric_id, us_to_datetime(start_us), us_to_datetime(end_us)
            )

        self._dirty.update(await recompute_late(self.engine, late, fetch))
        self.recomputes += len(np.unique(late.series))
        self._late.clear()

    async def flush(self) -> None:
        """Recompute late data, then upsert every hour touched since the last flush."""
        self._last_flush = time.monotonic()
        if not self._dirty and not self._late:
            return
        try:
            async with self._pool.acquire() as conn:
                if self._late:
                    await self._recompute_late(conn)
                hours = sorted(self._dirty)
                results: HourlyResults = await asyncio.to_thread(self.engine.results, hours)
                carbon = [r for r in results.carbon if self._written_carbon.get(r.hour_start) != r]
                lines = [
                    r for r in results.lines if self._written_lines.get((r.hour_start, r.line)) != r
                ]
                await upsert_hourly(conn, self._registry, carbon, results.energy, lines)
        except _DB_ERRORS as exc:
            self.flush_failures += 1
            log.warning("writing hourly rows failed (%s); will retry", exc)
            return
        if self.on_written is not None:
            newest_us = int(self.engine.last_ts.max()) if len(self.engine.last_ts) else 0
            self.on_written(results.carbon, results.energy, results.lines, newest_us / 1e6)
        self._written_carbon.update((r.hour_start, r) for r in carbon)
        self._written_lines.update(((r.hour_start, r.line), r) for r in lines)
        self._forget_written_before(self.engine.hours())
        self.upserts += len(carbon)
        if hours:
            self.last_hour_start_s = hours[-1]
        self.last_flush_at = datetime.now(UTC)
        self._dirty.clear()

    def _forget_written_before(self, held_hours_s: list[int]) -> None:
        """Drop the remembered rows of hours the engine no longer holds."""
        if not held_hours_s or len(self._written_carbon) <= len(held_hours_s):
            return
        oldest = datetime.fromtimestamp(held_hours_s[0], UTC)
        self._written_carbon = {h: r for h, r in self._written_carbon.items() if h >= oldest}
        self._written_lines = {k: r for k, r in self._written_lines.items() if k[0] >= oldest}


Fetch = Callable[[int, int, int], Awaitable[tuple[NDArray[np.int64], NDArray[np.float64]]]]
"""``fetch(series_id, start_us, end_us)``: a series' stored readings in [start, end) plus
the last one before and the first one after, as (ts_us, values)."""


async def recompute_late(engine: CarbonEngine, late: ReadingBatch, fetch: Fetch) -> set[int]:
    """Rebuild, from stored readings, the hours that late readings touch.

    Per series: the hours the late points' enclosing intervals cover run from the
    stored reading before the earliest late point to the one after the latest; the
    series' readings from those hours to its newest point (plus one on each side, and
    back to where its counter last moved when it stood still across their start) are
    fed to :meth:`CarbonEngine.recompute`. Returns the changed hour starts [s].
    """
    changed: set[int] = set()
    for sid in np.unique(late.series).tolist():
        ts = late.ts_us[late.series == sid]
        t, _v = await fetch(sid, int(ts.min()), int(ts.max()) + 1)
        if t.size == 0:
            continue
        first_hour_s = int(t.min() // HOUR_US) * HOUR_S
        last_hour_s = int((t.max() - 1) // HOUR_US) * HOUR_S
        # the readings after the hours up to the series' newest point too: a candidate
        # or a stuck counter's catch-up after them settles what the hours get, as it
        # did when streaming (parts outside the hours are not added)
        end_us = max((last_hour_s + HOUR_S) * 1_000_000, int(engine.last_ts[sid]) + 1)
        start_us = first_hour_s * 1_000_000
        t, v = await fetch(sid, start_us, end_us)
        # a counter standing still across the start: back, an hour at a time, to where
        # it last moved (not beyond the hours held), so that a catch-up is judged over
        # the same still time as when streaming
        held = engine.hours()
        oldest_us = held[0] * 1_000_000 if held else start_us
        while start_us > oldest_us:
            _, first = np.unique(t, return_index=True)
            if first.size < 2 or v[first[0]] != v[first[1]]:
                break
            earlier_t, earlier_v = await fetch(sid, start_us - HOUR_US, start_us)
            start_us -= HOUR_US
            t, v = np.concatenate([earlier_t, t]), np.concatenate([earlier_v, v])
        changed.update(
            await asyncio.to_thread(engine.recompute, sid, t, v, first_hour_s, last_hour_s)
        )
    return changed


def warm_up_kernels(site: SiteConfig) -> None:
    """Compile (or load from numba's cache) every kernel the engine runs for ``site``."""
    registry = SeriesRegistry.for_site(site)
    scratch = CarbonEngine(site, registry, n_slots=4)
    t0 = datetime_to_us(datetime(2000, 1, 1, 0, 59, tzinfo=UTC))
    series, ts, values = [], [], []
    for d in site.devices:
        for metric in ("energy_import_kwh", "active_power_kw"):
            sid = registry.id(d.id, metric)
            for i in range(3):
                series.append(sid)
                ts.append(t0 + 60_000_000 * i)
                values.append(10.0 * i)
    batch = ReadingBatch.of(series, ts, values)
    result = scratch.ingest(batch)
    scratch.recompute(series[0], batch.ts_us[:3], batch.value[:3], 946_684_800, 946_688_400)
    scratch.results(result.changed_hours_s)
