"""The storage maintenance job, run as a task beside ingest.

Every ``interval_s`` (of the injected clock) one round, each step on its own:

1. partitions of today and ``partitions_ahead_days`` ahead (native layout);
2. retention: partitions wholly older than ``retention_days`` dropped (native; on
   TimescaleDB the retention policy does it);
3. the default partition drained into daily partitions (rows that arrived while their
   day had none);
4. the power rollups (``power_1min``, ``power_15min``) re-aggregated over the times
   the writer reported since the last round (:meth:`StorageMaintenance.note_written`),
   late readings included: their buckets are aggregated again from ``readings``.

A failing step is logged once per kind of failure, counted (``problems.counts``) and
tried again next round; the times not yet rolled up are kept for it. With the database
away, a round fails as a whole and the next one tries again; the loop never ends on an
error.

After a restart, the first round also rolls up from where the last refresh stopped
(``rollup_state.refreshed_through``) to the newest reading, so readings written in
order after the last round before a stop are not missed. A late reading written in
that last interval before a crash is not rolled up until its bucket is written again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
import numpy as np
from numpy.typing import NDArray

from zerocarbon.batch import datetime_to_us
from zerocarbon.clock import Clock
from zerocarbon.storage import rollups
from zerocarbon.storage.faults import database_unavailable
from zerocarbon.storage.partitions import ReadingsLayout
from zerocarbon.storage.problems import ProblemLog

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 60.0  # between rounds [s]
ACQUIRE_TIMEOUT_S = 10.0  # wait for a connection of the pool [s]
MERGE_GAP_US = 15 * 60 * 1_000_000  # noted times closer than this are refreshed together [us]
BUCKET_US = rollups.POWER_1MIN.width_us  # the finest rollup bucket [us]

# a failure of the database rather than of one step (see storage.faults): the round ends
_DATABASE_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # a query on a connection the server closed
    OSError,
    TimeoutError,
)


@dataclass(frozen=True, slots=True)
class MaintenanceReport:
    """What one round did."""

    at: datetime
    created: tuple[str, ...] = ()  # partitions made ahead
    dropped: tuple[str, ...] = ()  # partitions dropped by retention
    moved_rows: int = 0  # rows moved out of the default partition
    refreshed: tuple[rollups.RefreshResult, ...] = ()
    failed: tuple[str, ...] = ()  # steps that failed ("connection" when none could run)


@dataclass(slots=True)
class PendingTimes:
    """Reading times written but not yet rolled up: merged, sorted [lo, hi] ranges [us]."""

    ranges: list[list[int]] = field(default_factory=list)

    def add(self, lo: int, hi: int) -> None:
        if lo > hi:
            lo, hi = hi, lo
        r = self.ranges
        if r and r[-1][0] - MERGE_GAP_US <= lo <= r[-1][1] + MERGE_GAP_US:  # the usual case
            r[-1][0] = min(r[-1][0], lo)
            r[-1][1] = max(r[-1][1], hi)
        else:
            r.append([lo, hi])
            r.sort()
        self._merge()

    def add_times(self, ts_us: NDArray[np.int64]) -> None:
        """Add the 1-minute buckets holding ``ts_us`` [us], runs of adjacent ones as one
        range."""
        if ts_us.shape[0] == 0:
            return
        buckets = np.unique(ts_us // BUCKET_US)
        breaks = np.flatnonzero(np.diff(buckets) > 1)
        starts = buckets[np.concatenate(([0], breaks + 1))]
        ends = buckets[np.concatenate((breaks, [buckets.shape[0] - 1]))]
        for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True):
            self.add(lo * BUCKET_US, (hi + 1) * BUCKET_US - 1)

    def _merge(self) -> None:
        merged: list[list[int]] = []
        for lo, hi in self.ranges:
            if merged and lo <= merged[-1][1] + MERGE_GAP_US:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        self.ranges = merged

    def take(self) -> list[tuple[int, int]]:
        taken = [(lo, hi) for lo, hi in self.ranges]
        self.ranges = []
        return taken

    def __bool__(self) -> bool:
        return bool(self.ranges)


class StorageMaintenance:
    """Partitions ahead, retention and rollup refresh, every ``interval_s``.

    Parameters
    ----------
    pool : asyncpg.Pool
        The process's pool (one connection taken per round).
    layout : ReadingsLayout
        The object the writer calls ``cover`` on (:func:`~zerocarbon.storage.partitions.
        open_layout`), so both know the same partitions.
    clock : Clock
        Time of the rounds (the site's clock; simulated in the demo and in tests).
    interval_s : float
        Between rounds [s of ``clock``].
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        layout: ReadingsLayout,
        clock: Clock,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
    ) -> None:
        self._pool = pool
        self._layout = layout
        self._clock = clock
        self._interval_s = interval_s
        self._pending = PendingTimes()
        self._caught_up = False
        self.problems = ProblemLog(log)
        self.rounds = 0

    def note_written(self, min_ts_us: int, max_ts_us: int) -> None:
        """The writer stored readings with times in ``[min_ts_us, max_ts_us]`` [us]
        (after its transaction committed); their buckets are rolled up next round.

        Everything between the two is aggregated again: for a batch mixing live and late
        readings, :meth:`note_times` is cheaper."""
        self._pending.add(min_ts_us, max_ts_us)

    def note_times(self, ts_us: NDArray[np.int64]) -> None:
        """The writer stored readings at ``ts_us`` [us]: only the 1-minute buckets
        holding them (and their 15-minute buckets) are rolled up next round: a late
        reading of two hours ago in a batch of live ones costs its own minute, not the
        two hours in between (``bench/rollups.py``)."""
        self._pending.add_times(ts_us)

    async def run(self) -> None:
        """Rounds every ``interval_s`` until cancelled; never ends on an error."""
        while True:
            await self.run_once(self._clock.now())
            await self._clock.sleep(self._interval_s)

    async def run_once(self, now: datetime) -> MaintenanceReport:
        """One round at ``now`` (aware UTC). Never raises (but a cancellation)."""
        self.rounds += 1
        try:
            async with self._pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
                report = await self._round(conn, now)
        except _DATABASE_ERRORS as exc:
            self.problems.failed("connection", "storage maintenance (database)", exc)
            return MaintenanceReport(now, failed=("connection",))
        except Exception as exc:  # a bug: logged (once), the loop goes on
            self.problems.failed("round", "storage maintenance", exc)
            return MaintenanceReport(now, failed=("round",))
        self.problems.succeeded("connection", "storage maintenance (database)")
        return report

    async def _round(self, conn: asyncpg.Connection, now: datetime) -> MaintenanceReport:
        failed: list[str] = []
        created: list[str] = []
        dropped: list[str] = []
        moved = 0
        try:
            created = await self._layout.ensure_ahead(conn, now)
            self.problems.succeeded("partitions", "making partitions ahead")
        except Exception as exc:
            self._failed(conn, failed, "partitions", "making partitions ahead", exc)
        try:
            dropped = await self._layout.drop_expired(conn, now)
            self.problems.succeeded("retention", "retention")
        except Exception as exc:
            self._failed(conn, failed, "retention", "retention", exc)
        try:
            moved = await self._layout.drain_default(conn)
            self.problems.succeeded("default", "draining the default partition")
        except Exception as exc:
            self._failed(conn, failed, "default", "draining the default partition", exc)
        refreshed: tuple[rollups.RefreshResult, ...] = ()
        try:
            refreshed = await self._refresh(conn)
            self.problems.succeeded("rollups", "refreshing the power rollups")
        except Exception as exc:
            self._failed(conn, failed, "rollups", "refreshing the power rollups", exc)
        return MaintenanceReport(
            now, tuple(created), tuple(dropped), moved, refreshed, tuple(failed)
        )

    def _failed(
        self, conn: asyncpg.Connection, failed: list[str], kind: str, what: str, exc: Exception
    ) -> None:
        failed.append(kind)
        if database_unavailable(exc) or conn.is_closed():
            raise exc  # the steps after this one would fail too: the round ends
        self.problems.failed(kind, what, exc)

    async def _refresh(self, conn: asyncpg.Connection) -> tuple[rollups.RefreshResult, ...]:
        if not self._caught_up:
            await self._catch_up(conn)
        done = []
        todo = self._pending.take()
        try:
            while todo:
                lo, hi = todo[0]
                done.append(await rollups.refresh_rollups(conn, lo, hi))
                todo.pop(0)
        finally:
            for lo, hi in todo:  # not refreshed: kept for the next round
                self._pending.add(lo, hi)
        return tuple(done)

    async def _catch_up(self, conn: asyncpg.Connection) -> None:
        """At the first round: what was written since the last refresh of an earlier run."""
        through = await rollups.refreshed_through(conn)
        if through is None:
            span = await rollups.gauge_reading_span(conn)
            if span is not None:
                self._pending.add(*span)
        else:
            newest = await rollups.newest_reading_us(conn)
            if newest is not None and newest > datetime_to_us(through):
                self._pending.add(datetime_to_us(through), newest)
        self._caught_up = True
