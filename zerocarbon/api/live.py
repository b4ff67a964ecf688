"""The live stream behind ``GET /api/v1/live`` (Server-Sent Events).

On connect a client gets ``event: snapshot`` (all latest values and the hourly rows of
the site's current local day). Then the database is polled every interval:
``event: readings`` carries the latest values whose ts changed, ``event: hourly`` the
hourly_carbon rows (re)computed since the last poll, ``event: alert`` the alert changes
(fired, acknowledged, resolved) recorded since the last poll, each with its alert as it
is then, and a ``: keepalive`` comment is sent after ~15 s of silence. When the data's
day changes, a new snapshot is sent. The snapshot holds the alerts firing now.

"Now" is the newest reading's ts, never the wall clock: the demo runs on a simulated
clock faster than real time, and a site replaying old data has its own "today".

Every app has one :class:`LiveStreams`; stopping it ends every open stream, so that a
server shutting down is not held open by wall screens (see :mod:`zerocarbon.api.server`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from zoneinfo import ZoneInfo

import asyncpg
from pydantic import BaseModel

from zerocarbon.api import queries
from zerocarbon.api.schemas import (
    AlertEventOut,
    AlertSummary,
    HourlyCarbon,
    LatestByDevice,
    LiveAlertEvent,
    LiveAlerts,
    LiveHourly,
    LiveReadings,
    LiveSnapshot,
    LiveValue,
)
from zerocarbon.storage import alerts

log = logging.getLogger(__name__)

KEEPALIVE_S = 15.0  # a comment after this much silence keeps proxies from closing [s]
RETRY_MS = 3000  # reconnection delay the browser's EventSource should use [ms]
# hourly_carbon.computed_at is the writer's transaction start time, so a row can be
# committed with a computed_at slightly older than one already seen; look back this far.
RECOMPUTE_LOOKBACK = timedelta(seconds=30)
# alert_events ids are likewise taken before their transaction commits: events recorded
# this long before the newest one seen are looked for again
ALERT_EVENT_LOOKBACK = timedelta(seconds=30)

DB_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
)


class LiveStreams:
    """The open live streams of one app, and the signal that ends them all."""

    def __init__(self, *, keepalive_s: float = KEEPALIVE_S) -> None:
        self.keepalive_s = keepalive_s
        self.active = 0
        self._stop = asyncio.Event()

    def open(self) -> None:
        """Accept streams again (called when the app's lifespan starts)."""
        self._stop = asyncio.Event()

    def stop(self) -> None:
        """End every open stream at its next wait (shutdown)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def wait_stop(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s``; True if the streams were stopped meanwhile."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._stop.wait()
        except TimeoutError:
            return False
        return True


def site_day(now: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """UTC bounds [start, end) of the local day in ``tz`` that contains ``now``.

    Handles days of 23 and 25 hours (DST) and midnights that do not exist.
    """
    day = now.astimezone(tz).date()
    start = datetime.combine(day, dtime(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), dtime(0), tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def format_event(event: str, payload: BaseModel) -> str:
    """One SSE message; the JSON is on one line, as ``data:`` requires."""
    return f"event: {event}\ndata: {payload.model_dump_json()}\n\n"


class LiveSession:
    """What one client has been sent, so that each poll sends only what changed."""

    def __init__(self, site_name: str, tz: ZoneInfo) -> None:
        self.site_name = site_name
        self.tz = tz
        self._seen_ts: dict[tuple[str, str], datetime] = {}
        self._seen_hours: dict[datetime, datetime] = {}  # hour_start -> computed_at sent
        self._watermark: datetime | None = None  # newest computed_at sent
        self._day: tuple[datetime, datetime] | None = None
        self._alert_after = 0  # highest alert_events id sent
        self._alert_recorded: datetime | None = None  # newest recorded_at known
        self._alert_seen: dict[int, datetime] = {}  # ids in the look-back -> recorded_at

    async def snapshot(self, db: queries.Db) -> LiveSnapshot:
        """Everything for a fresh page; resets what this session has sent."""
        latest = await queries.latest_all(db)
        now = max((v.ts for _, v in latest), default=None)
        anchor = now or await queries.newest_hour_start(db) or datetime.now(UTC)
        day_start, day_end = site_day(anchor, self.tz)
        rows = await queries.hourly(db, day_start, day_end)
        self._seen_hours = await queries.hourly_versions_since(db, RECOMPUTE_LOOKBACK)
        self._watermark = max(self._seen_hours.values(), default=None)
        self._seen_ts = {(device, v.metric): v.ts for device, v in latest}
        self._day = (day_start, day_end)
        mark = await alerts.event_watermark(db, ALERT_EVENT_LOOKBACK)
        self._alert_after, self._alert_recorded = mark.after_id, mark.now
        self._alert_seen = dict(mark.recent)
        firing = await alerts.active_alerts(db)  # after the mark: nothing falls between
        grouped: LatestByDevice = {}
        for device, v in latest:
            grouped.setdefault(device, {})[v.metric] = LiveValue(value=v.value, ts=v.ts)
        return LiveSnapshot(
            site_name=self.site_name,
            site_timezone=self.tz.key,
            now=now,
            day_start=day_start,
            day_end=day_end,
            latest=grouped,
            hourly=rows,
            alerts=[AlertSummary.of(a) for a in firing],
        )

    async def poll(self, db: queries.Db) -> list[tuple[str, BaseModel]]:
        """The events to send now: a new snapshot if the day changed, else readings,
        hourly rows and alert changes that are new since the last poll."""
        latest = await queries.latest_all(db)
        now = max((v.ts for _, v in latest), default=None)
        if now is not None and self._day is not None:
            day_start, day_end = self._day
            if not day_start <= now < day_end:
                return [("snapshot", await self.snapshot(db))]
        events: list[tuple[str, BaseModel]] = []
        changed: LatestByDevice = {}
        for device, v in latest:
            key = (device, v.metric)
            if self._seen_ts.get(key) != v.ts:
                self._seen_ts[key] = v.ts
                changed.setdefault(device, {})[v.metric] = LiveValue(value=v.value, ts=v.ts)
        if changed:
            events.append(("readings", LiveReadings(now=now, latest=changed)))
        rows = await self._new_hourly_rows(db)
        if rows:
            events.append(("hourly", LiveHourly(rows=rows)))
        changes = await self._new_alert_events(db)
        if changes:
            events.append(("alert", LiveAlerts(events=changes)))
        return events

    async def _new_alert_events(self, db: queries.Db) -> list[LiveAlertEvent]:
        since = None
        if self._alert_recorded is not None:
            since = self._alert_recorded - ALERT_EVENT_LOOKBACK
        found = await alerts.events_after(
            db, self._alert_after, recorded_since=since, seen=self._alert_seen.keys()
        )
        for f in found:
            self._alert_seen[f.event.id] = f.event.recorded_at
            self._alert_after = max(self._alert_after, f.event.id)
            if self._alert_recorded is None or f.event.recorded_at > self._alert_recorded:
                self._alert_recorded = f.event.recorded_at
        if found and self._alert_recorded is not None:  # forget what cannot come back
            horizon = self._alert_recorded - 2 * ALERT_EVENT_LOOKBACK
            self._alert_seen = {i: t for i, t in self._alert_seen.items() if t >= horizon}
        return [
            LiveAlertEvent(event=AlertEventOut.of(f.event), alert=AlertSummary.of(f.alert))
            for f in found
        ]

    async def _new_hourly_rows(self, db: queries.Db) -> list[HourlyCarbon]:
        since = (
            self._watermark - RECOMPUTE_LOOKBACK
            if self._watermark is not None
            else datetime(1970, 1, 1, tzinfo=UTC)
        )
        rows = await queries.hourly_computed_since(db, since)
        fresh = [r for r in rows if self._seen_hours.get(r.hour_start) != r.computed_at]
        for r in fresh:
            self._seen_hours[r.hour_start] = r.computed_at
            if self._watermark is None or r.computed_at > self._watermark:
                self._watermark = r.computed_at
        if self._watermark is not None:  # forget rows that can no longer come back unchanged
            horizon = self._watermark - 2 * RECOMPUTE_LOOKBACK
            self._seen_hours = {h: c for h, c in self._seen_hours.items() if c >= horizon}
        return fresh


async def live_events(
    session: LiveSession,
    first: LiveSnapshot,
    pool: asyncpg.Pool,
    streams: LiveStreams,
    *,
    interval_s: float,
) -> AsyncIterator[str]:
    """The SSE text of one client's stream, until it disconnects or ``streams`` stop.

    A client that disconnects cancels this generator at its current wait.
    """
    streams.active += 1
    try:
        yield f"retry: {RETRY_MS}\n" + format_event("snapshot", first)
        last_sent = time.monotonic()
        failing = False
        while not await streams.wait_stop(interval_s):
            try:
                async with pool.acquire() as conn:
                    events = await session.poll(conn)
            except DB_ERRORS as exc:
                if not failing:
                    log.warning("live stream: database poll failed, retrying: %s", exc)
                failing = True
                events = []
            else:
                if failing:
                    log.info("live stream: database poll works again")
                failing = False
            for name, payload in events:
                yield format_event(name, payload)
                last_sent = time.monotonic()
            if time.monotonic() - last_sent >= streams.keepalive_s:
                yield ": keepalive\n\n"
                last_sent = time.monotonic()
    finally:
        streams.active -= 1
