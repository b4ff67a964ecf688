"""Store and forward: the spool between the pipeline and the database.

:class:`SpoolForwarder` is the pipeline's storage sink. ``write_batch`` appends the
batch to the on-disk :class:`~zerocarbon.storage.spool.Spool` (fsync per the site's
policy) and returns: from then on the readings are *acknowledged* — the pipeline
acknowledges their source (an MQTT PUBACK) — and they survive a database outage, a
process kill and, with ``fsync = "always"``, a power cut.

``run`` forwards the spool to the database in order: it reads the oldest records (up to
``max_rows`` readings), stores them with the idempotent
:class:`~zerocarbon.storage.writer.ReadingWriter` (a record stored before a crash but
not yet marked done is simply skipped as a duplicate), hands them to the durable consumers
(the uplink's outbox, which must see every stored reading even across a crash), commits
them in the spool, then hands them to the consumers (the carbon engine), which thus see
exactly the stored stream, in order, also what an earlier run left in the spool.

When the database is away the spool fills; the log says once that the database is down
and once that it is back, each time with the spool's depth. Only when the spool is full
does back-pressure reach the collectors: ``write_batch`` waits for space (counted, and
alarmed in the log, in ``/readyz`` and in the metrics), and the pipeline's queue, then
the collectors, wait behind it: Modbus cycles are skipped and counted, MQTT messages
stay unacknowledged at the broker. A batch the database refuses for a reason other
than being away (it would block everything behind it) is set aside after
``poison_attempts`` tries in ``quarantine/`` beside the spool, with the error, and
counted; nothing is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zerocarbon.batch import ReadingBatch
from zerocarbon.storage.faults import database_unavailable
from zerocarbon.storage.spool import Spool, SpoolError, SpoolFull, SpoolRecord
from zerocarbon.storage.spool_series import SpoolSeries
from zerocarbon.storage.writer import ReadingWriter

log = logging.getLogger(__name__)

StoredConsumer = Callable[[ReadingBatch], Awaitable[None]]
"""Given each batch once it is stored (the carbon engine's ``write_batch``)."""

DurableConsumer = Callable[[ReadingBatch], Awaitable[None]]
"""Given each stored batch *before* the spool forgets it (the uplink's outbox): a crash
between the two hands the batch over again at the next start, so such a consumer sees
every stored reading at least once. It must be quick and must not wait on the network."""


@dataclass(slots=True)
class ForwarderStats:
    readings_acknowledged: int = 0  # appended to the spool (the collectors' acknowledgement)
    batches_acknowledged: int = 0
    readings_forwarded: int = 0  # taken out of the spool once stored (new or duplicate)
    readings_stored: int = 0  # new rows in readings
    duplicates_skipped: int = 0  # already stored (a redelivery, a replay after a crash)
    replayed_readings: int = 0  # forwarded from what an earlier run left in the spool
    write_failures: int = 0  # database writes that failed (retried)
    outages: int = 0  # times the database went away
    full_waits: int = 0  # appends that found the spool full (back-pressure)
    full_wait_s: float = 0.0  # time the pipeline waited for spool space [s]
    spool_errors: int = 0  # appends or reads that failed for another reason (disk), retried
    quarantined_readings: int = 0  # set aside: the database refused them repeatedly
    consumer_failures: int = 0  # consumers (carbon engine) that raised on a stored batch


@dataclass(frozen=True, slots=True)
class StoreHealth:
    """The database and spool as ``/readyz`` and the metrics report them."""

    database_up: bool
    database_down_s: float | None  # how long the database has been away [s]
    last_error: str
    spool_depth_readings: int
    spool_depth_batches: int
    spool_used_bytes: int
    spool_quota_bytes: int
    spool_alarm: bool  # use above the alarm threshold
    spool_full: bool  # the pipeline is waiting for space right now
    oldest_unreplayed_age_s: float | None  # how long the oldest spooled batch waited [s]


class SpoolForwarder:
    """The pipeline's storage sink: spool first, database behind it."""

    name = "storage"

    def __init__(
        self,
        spool: Spool,
        writer: ReadingWriter,
        *,
        consumers: Sequence[StoredConsumer] = (),
        durable_consumers: Sequence[DurableConsumer] = (),
        series: SpoolSeries | None = None,
        max_rows: int = 50_000,
        retry_min_s: float = 0.2,
        retry_max_s: float = 5.0,
        full_retry_s: float = 0.1,
        write_timeout_s: float = 60.0,
        poison_attempts: int = 5,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.spool = spool
        self._writer = writer
        self._consumers = list(consumers)
        self._durable_consumers = list(durable_consumers)
        self._series = series
        self._max_rows = max_rows
        self._retry_min_s = retry_min_s
        self._retry_max_s = retry_max_s
        self._full_retry_s = full_retry_s
        self._write_timeout_s = write_timeout_s
        self._poison_attempts = poison_attempts
        self._wall_clock = wall_clock
        self._wake = asyncio.Event()  # set by an append or a stop request
        self._stop_requested = asyncio.Event()
        self._stopping = False
        self._cursor = spool.committed_seq
        self._replay_until = spool.last_seq  # records of an earlier run
        self._database_up = True
        self._down_since: float | None = None
        self._last_error = ""
        self._full = False
        self._full_since: float | None = None
        self._alarm_logged = False
        self._failures_on_head = 0
        self.stats = ForwarderStats()
        if spool.depth_records:
            log.info(
                "spool %s holds %d readings (%d batches) from an earlier run: replaying them",
                spool.directory,
                spool.depth_rows,
                spool.depth_records,
            )

    # -- the pipeline side -------------------------------------------------------------

    async def write_batch(self, batch: ReadingBatch) -> None:
        """Append ``batch`` to the spool; returns once it is there (durable per the fsync
        policy). While the spool is full, waits (back-pressure, counted and alarmed)."""
        if not len(batch):
            return
        waited_since: float | None = None
        while True:
            try:
                await asyncio.to_thread(self.spool.append, batch)
                break
            except SpoolFull:
                if waited_since is None:
                    waited_since = self._full_since = time.monotonic()
                    self.stats.full_waits += 1
                    if not self._full:
                        log.error(
                            "spool full (%.1f of %.1f MiB, %d readings waiting): collection "
                            "is held back until the database takes readings again",
                            self.spool.used_bytes / 2**20,
                            self.spool.quota_bytes / 2**20,
                            self.spool.depth_rows,
                        )
                    self._full = True
            except (SpoolError, OSError) as exc:
                self.stats.spool_errors += 1
                if self.stats.spool_errors <= 10 or self.stats.spool_errors % 1000 == 0:
                    log.error("spool %s: append failed: %s; retrying", self.spool.directory, exc)
            await asyncio.sleep(self._full_retry_s)
        if waited_since is not None:
            self.stats.full_wait_s += time.monotonic() - waited_since
            self._full_since = None
            if self._full:
                self._full = False
                log.warning("spool has room again: collection goes on")
        self.stats.readings_acknowledged += len(batch)
        self.stats.batches_acknowledged += 1
        self._wake.set()
        self._check_alarm()

    def _check_alarm(self) -> None:
        alarm = self.spool.alarm
        if alarm and not self._alarm_logged:
            log.error(
                "spool %s above its alarm level: %.1f of %.1f MiB used, %d readings waiting",
                self.spool.directory,
                self.spool.used_bytes / 2**20,
                self.spool.quota_bytes / 2**20,
                self.spool.depth_rows,
            )
        elif not alarm and self._alarm_logged:
            log.warning(
                "spool back below its alarm level (%.1f MiB)", self.spool.used_bytes / 2**20
            )
        self._alarm_logged = alarm

    # -- the database side -------------------------------------------------------------

    async def run(self) -> None:
        """Forward the spool to the database until :meth:`request_stop`: then forward
        what is left and return — or return at the first failure, leaving the rest
        spooled for the next start."""
        backoff_s = self._retry_min_s
        while True:
            try:
                records = await asyncio.to_thread(self.spool.read, self._cursor, self._max_rows)
            except (SpoolError, OSError) as exc:  # a disk error: try again, never stop
                self.stats.spool_errors += 1
                log.error("spool %s: read failed: %s; retrying", self.spool.directory, exc)
                if self._stopping:
                    return
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, self._retry_max_s)
                continue
            if not records:
                if self._stopping:
                    return
                self._wake.clear()
                if self.spool.last_seq > self._cursor:
                    continue  # appended between the read and the clear
                await self._wake.wait()
                continue
            if await self._forward(records):
                backoff_s = self._retry_min_s
                continue
            if self._stopping:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_requested.wait(), backoff_s)
            backoff_s = min(backoff_s * 2, self._retry_max_s)

    def request_stop(self) -> None:
        """Ask :meth:`run` to forward what is spooled and return (no new appends come)."""
        self._stopping = True
        self._stop_requested.set()
        self._wake.set()

    async def _forward(self, records: list[SpoolRecord]) -> bool:
        """Store ``records``, commit them in the spool, hand them to the consumers."""
        if self._series is not None and records[0].seq <= self._replay_until:
            series = self._series
            batch = ReadingBatch.concat([series.map(r.seq, r.batch) for r in records])
        else:
            batch = ReadingBatch.concat([r.batch for r in records])
        try:
            inserted = await asyncio.wait_for(self._writer.store(batch), self._write_timeout_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.stats.write_failures += 1
            if database_unavailable(exc):
                self._failures_on_head = 0
                self._went_down(exc)
            else:
                self._failures_on_head += 1
                self._last_error = f"{type(exc).__name__}: {exc}"
                log.error(
                    "the database refused spooled batches %d..%d (%d readings): %s",
                    records[0].seq,
                    records[-1].seq,
                    len(batch),
                    self._last_error,
                )
                if self._failures_on_head >= self._poison_attempts:
                    await self._quarantine(records, batch)
                    return True
            return False
        self._came_back()
        self._failures_on_head = 0
        for durable in self._durable_consumers:
            try:
                await durable(batch)
            except Exception:
                self.stats.consumer_failures += 1
                log.exception("a consumer failed on %d stored readings", len(batch))
        last = records[-1].seq
        await asyncio.to_thread(self.spool.commit, last)
        self._cursor = last
        self.stats.readings_forwarded += len(batch)
        self.stats.readings_stored += inserted
        self.stats.duplicates_skipped += len(batch) - inserted
        if records[0].seq <= self._replay_until:
            self.stats.replayed_readings += sum(
                len(r.batch) for r in records if r.seq <= self._replay_until
            )
            if self._series is not None and last >= self._replay_until:
                self._series.forget_before(last)
        self._check_alarm()
        for consumer in self._consumers:
            try:
                await consumer(batch)
            except Exception:
                self.stats.consumer_failures += 1
                log.exception("a consumer failed on %d stored readings", len(batch))
        return True

    async def _quarantine(self, records: list[SpoolRecord], batch: ReadingBatch) -> None:
        """Set aside records the database keeps refusing, so the rest can flow."""
        folder = Path(self.spool.directory) / "quarantine"
        path = folder / f"{records[0].seq:020d}-{records[-1].seq:020d}.npz"

        def save() -> None:
            folder.mkdir(parents=True, exist_ok=True)
            np.savez(
                path,
                series=batch.series,
                ts_us=batch.ts_us,
                value=batch.value,
                quality=batch.quality,
                error=np.array(self._last_error),
            )

        await asyncio.to_thread(save)
        last = records[-1].seq
        await asyncio.to_thread(self.spool.commit, last)
        self._cursor = last
        self._failures_on_head = 0
        self.stats.quarantined_readings += len(batch)
        log.error(
            "set %d readings aside in %s after %d refusals (%s); forwarding goes on",
            len(batch),
            path,
            self._poison_attempts,
            self._last_error,
        )

    def _went_down(self, exc: BaseException) -> None:
        self._last_error = f"{type(exc).__name__}: {exc}"
        if self._database_up:
            self._database_up = False
            self._down_since = time.monotonic()
            self.stats.outages += 1
            log.warning(
                "database unavailable (%s): readings wait in the spool (%d waiting)",
                self._last_error,
                self.spool.depth_rows,
            )

    def _came_back(self) -> None:
        if self._database_up:
            return
        down_s = time.monotonic() - (self._down_since or time.monotonic())
        self._database_up = True
        self._down_since = None
        log.warning(
            "database back after %.1f s: forwarding %d spooled readings",
            down_s,
            self.spool.depth_rows,
        )

    # -- reporting ---------------------------------------------------------------------

    @property
    def database_up(self) -> bool:
        return self._database_up

    def full_wait_s(self) -> float:
        """Time collection has waited for spool space, the wait in progress included [s]."""
        ongoing = 0.0 if self._full_since is None else time.monotonic() - self._full_since
        return self.stats.full_wait_s + ongoing

    def health(self) -> StoreHealth:
        spool = self.spool
        oldest = spool.oldest_pending_appended_us
        age_s = None if oldest is None else max(0.0, self._wall_clock() - oldest / 1e6)
        return StoreHealth(
            database_up=self._database_up,
            database_down_s=None
            if self._down_since is None
            else time.monotonic() - self._down_since,
            last_error=self._last_error,
            spool_depth_readings=spool.depth_rows,
            spool_depth_batches=spool.depth_records,
            spool_used_bytes=spool.used_bytes,
            spool_quota_bytes=spool.quota_bytes,
            spool_alarm=spool.alarm,
            spool_full=self._full,
            oldest_unreplayed_age_s=age_s,
        )
