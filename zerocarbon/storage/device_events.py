"""Keeping device events (:mod:`zerocarbon.ingest.events`) in ``device_events``.

Collectors call :meth:`DeviceEventLog.record` from their own task; it never blocks and
never fails: the event joins a bounded queue (:data:`MAX_PENDING_EVENTS`) that
:meth:`DeviceEventLog.run` writes in small transactions. While the database is away the
events wait and are written when it is back; an event beyond the bound is dropped and
counted (a device flapping for hours while the database is down must not grow memory
without limit), and the oldest are kept, as they say when the trouble began. Every event
is also logged at INFO (offline at WARNING), so nothing is silent.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from zerocarbon.ingest.events import DeviceEvent, DeviceEventKind
from zerocarbon.storage.faults import database_unavailable

log = logging.getLogger(__name__)

MAX_PENDING_EVENTS = 10_000
WRITE_BATCH_EVENTS = 500
RETRY_INTERVAL_S = 5.0  # wait after a failed write before the next attempt [s]

_INSERT_SQL = (
    "INSERT INTO device_events (ts, device_id, kind, detail) "
    "SELECT t.ts, t.device_id, t.kind, t.detail "
    "FROM unnest($1::timestamptz[], $2::smallint[], $3::text[], $4::text[]) "
    "AS t(ts, device_id, kind, detail)"
)


@dataclass(frozen=True, slots=True)
class StoredDeviceEvent:
    """One row of ``device_events`` as the API serves it."""

    ts: datetime
    device: str
    kind: str
    detail: str


def _ts(ts_us: int) -> datetime:
    return datetime.fromtimestamp(ts_us / 1_000_000, tz=UTC)


class DeviceEventLog:
    """Queue of device events and the task that stores them.

    ``device_ids`` maps the site file's device ids to ``devices.id``; an event of a
    device not in it (a programming error) is logged and dropped.
    """

    def __init__(self, pool: asyncpg.Pool, device_ids: dict[str, int]) -> None:
        self._pool = pool
        self._device_ids = device_ids
        self._pending: deque[DeviceEvent] = deque()
        self._wake = asyncio.Event()
        self.recorded = 0  # events accepted into the queue
        self.stored = 0  # events written to the database
        self.dropped = 0  # events refused: queue full or unknown device
        self.write_failures = 0  # failed write attempts (database away)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def record(self, event: DeviceEvent) -> None:
        """Queue ``event`` for storage (never blocks, never raises); log it."""
        level = logging.WARNING if event.kind is DeviceEventKind.OFFLINE else logging.INFO
        log.log(level, "device %s %s%s", event.device_id, event.kind, _detail(event.detail))
        if event.device_id not in self._device_ids:
            log.error("device event for unknown device %r dropped", event.device_id)
            self.dropped += 1
            return
        if len(self._pending) >= MAX_PENDING_EVENTS:
            self.dropped += 1
            return
        self._pending.append(event)
        self.recorded += 1
        self._wake.set()

    async def run(self) -> None:
        """Store queued events until cancelled; a failed write (the database away, or
        refusing them) is logged, counted and tried again, never the end of the task."""
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
            try:
                await self.flush()
            except Exception as exc:
                # never ends: a task nobody awaits would die unheard, and events with it
                self.write_failures += 1
                if database_unavailable(exc):
                    log.warning(
                        "device events: database unavailable (%s); %d waiting",
                        type(exc).__name__,
                        len(self._pending),
                    )
                else:
                    log.exception("device events: writing failed; %d waiting", self.pending)
                await asyncio.sleep(RETRY_INTERVAL_S)

    async def flush(self) -> None:
        """Write every queued event now (raises what the database raises; the events
        that were not written stay queued)."""
        while self._pending:
            chunk = [self._pending[i] for i in range(min(WRITE_BATCH_EVENTS, len(self._pending)))]
            async with self._pool.acquire() as conn:
                await conn.execute(
                    _INSERT_SQL,
                    [_ts(e.ts_us) for e in chunk],
                    [self._device_ids[e.device_id] for e in chunk],
                    [e.kind.value for e in chunk],
                    [e.detail for e in chunk],
                )
            for _ in chunk:
                self._pending.popleft()
            self.stored += len(chunk)


def _detail(detail: str) -> str:
    return f": {detail}" if detail else ""


async def device_events(
    db: asyncpg.Connection | asyncpg.Pool,
    device: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
) -> list[StoredDeviceEvent]:
    """The newest ``limit`` events of ``device`` in [since, until), newest first."""
    rows = await db.fetch(
        "SELECT e.ts, d.key, e.kind, e.detail FROM device_events e "
        "JOIN devices d ON d.id = e.device_id "
        "WHERE d.key = $1 AND ($2::timestamptz IS NULL OR e.ts >= $2) "
        "AND ($3::timestamptz IS NULL OR e.ts < $3) "
        "ORDER BY e.ts DESC LIMIT $4",
        device,
        since,
        until,
        limit,
    )
    return [StoredDeviceEvent(r["ts"], r["key"], r["kind"], r["detail"]) for r in rows]
