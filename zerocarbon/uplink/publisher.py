"""The gateway's side of the uplink: publish into the local JetStream, in order.

:class:`UplinkPublisher` connects to the gateway's own NATS server (a leaf node of the
center's cluster with its own JetStream domain, :mod:`zerocarbon.uplink.leaf`), makes
sure the site's stream :data:`~zerocarbon.uplink.subjects.SITE_STREAM` exists, and
runs three loops:

- readings: the outbox (:mod:`zerocarbon.uplink.outbox`) in order, each record
  encoded (:mod:`zerocarbon.uplink.wire`, in a worker thread so the event loop keeps
  collecting) and published with a content-derived ``Nats-Msg-Id``; the outbox is
  committed once every message of a read is acknowledged by the local stream;
- mirror: hourly rows, alerts, device events and issued accounts newer than the
  cursors in the gateway's database (:mod:`zerocarbon.uplink.mirror`);
- status: a heartbeat every ``status_interval_s`` with the backlog, after asking the
  center how far it holds the site's stream (``zcprogress.<site>``, answered by its
  workers from what they stored; the center's sourcing consumer is internal to
  JetStream and not listed on the gateway) and purging the local stream up to there.

Everything is published to the *local* server only: when the WAN is down the local
stream keeps it (up to ``max_backlog_mib``), and the center's stream sources it, in
order, when the link is back. The local server away is survived: the loops retry with
back-off while the outbox and the database cursors keep what is not yet published.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from zerocarbon import __version__
from zerocarbon.batch import ReadingBatch, SeriesRegistry
from zerocarbon.config import SiteConfig
from zerocarbon.config_uplink import UplinkConfig
from zerocarbon.storage.uplink_cursors import load_cursors, save_cursor
from zerocarbon.uplink import mirror, wire
from zerocarbon.uplink.messages import StatusMessage, UplinkMessage
from zerocarbon.uplink.outbox import UplinkOutbox
from zerocarbon.uplink.subjects import (
    SITE_STREAM,
    Kind,
    progress_subject,
    site_inbox,
    site_subjects,
    subject,
)

__all__ = ["SENT_HEADER", "UplinkPublisher", "UplinkStats"]

log = logging.getLogger(__name__)

MirrorRead = Callable[[asyncpg.Pool, str, int], Awaitable[tuple[Sequence[UplinkMessage], int]]]
# what the mirror reads back from the gateway's database, each with its cursor
MIRRORED: tuple[tuple[Kind, MirrorRead], ...] = (
    ("hourly", mirror.read_hourly),
    ("alerts", mirror.read_alerts),
    ("events", mirror.read_events),
    ("accounts", mirror.read_accounts),
)
SENT_HEADER = "Zc-Sent-Us"  # the gateway's wall clock at publish [POSIX us]
READ_ROWS = 100_000  # readings read from the outbox per round
LINGER_POLL_S = 0.2  # while lingering for a fuller message, the outbox is read this often [s]
PUBLISH_TIMEOUT_S = 10.0
PROGRESS_TIMEOUT_S = 2.0  # the center's answer to the progress question [s]
DUPLICATE_WINDOW_S = 120.0  # the local stream drops a repeated Nats-Msg-Id within this


@dataclass(slots=True)
class UplinkStats:
    connected: bool = False
    readings_published: int = 0  # acknowledged by the local stream
    messages_published: int = 0
    duplicates: int = 0  # acknowledged as duplicates (a retry after a lost ack)
    publish_failures: int = 0  # rounds that failed and were retried
    mirror_messages: int = 0  # hourly, alerts, events, accounts messages published
    statuses: int = 0
    backlog_messages: int = 0  # in the local stream, not yet sourced by the center
    backlog_bytes: int = 0
    center_seq: int = 0  # the center holds the local stream up to this sequence
    center_answered: bool = False  # the center answered the last progress question
    purged_to_seq: int = 0
    last_error: str = ""


class UplinkPublisher:
    """Publish one site's data into its local JetStream stream."""

    def __init__(
        self,
        site: SiteConfig,
        config: UplinkConfig,
        series: SeriesRegistry,
        outbox: UplinkOutbox,
        pool: asyncpg.Pool,
        *,
        local_url: str,
        retry_min_s: float = 0.2,
        retry_max_s: float = 5.0,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.site_id = config.site
        self._site = site
        self._config = config
        self._series = series
        self.outbox = outbox
        self._pool = pool
        self.local_url = local_url
        self._retry_min_s = retry_min_s
        self._retry_max_s = retry_max_s
        self._wall_clock = wall_clock
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._stream_ready = False
        self.stats = UplinkStats()

    # -- connection ----------------------------------------------------------------

    async def _connect(self) -> JetStreamContext:
        backoff_s = self._retry_min_s
        while self._js is None:
            try:
                self._nc = await nats.connect(
                    servers=[self.local_url],
                    inbox_prefix=site_inbox(self.site_id),  # the center's answers pass
                    name=f"zerocarbon-uplink-{self.site_id}",
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=1.0,
                    connect_timeout=2.0,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                )
                self._js = self._nc.jetstream(timeout=PUBLISH_TIMEOUT_S)
                self.stats.connected = True
                log.info("uplink: connected to the local NATS server %s", self.local_url)
            except (OSError, nats.errors.Error) as exc:
                self._failed(f"cannot reach the local NATS server {self.local_url}: {exc}")
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, self._retry_max_s)
        return self._js

    async def _on_error(self, exc: Exception) -> None:
        self.stats.last_error = f"{type(exc).__name__}: {exc}"

    async def _on_disconnected(self) -> None:
        self.stats.connected = False

    async def _on_reconnected(self) -> None:
        self.stats.connected = True

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        """The site's local stream: its subjects, on disk, refusing new messages when
        full (so nothing unsent is dropped), duplicates dropped by message id."""
        if self._stream_ready:
            return
        config = StreamConfig(
            name=SITE_STREAM,
            subjects=[site_subjects(self.site_id)],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.NEW,
            max_bytes=self._config.max_backlog_mib << 20,
            duplicate_window=DUPLICATE_WINDOW_S,
            num_replicas=1,
        )
        try:
            await js.stream_info(SITE_STREAM)
        except nats.js.errors.NotFoundError:
            await js.add_stream(config)
            log.info("uplink: created the local stream %s", SITE_STREAM)
        else:
            await js.update_stream(config)
        self._stream_ready = True

    def _failed(self, error: str) -> None:
        if error != self.stats.last_error:
            log.warning("uplink: %s; retrying", error)
        self.stats.last_error = error
        self.stats.publish_failures += 1

    # -- publishing ----------------------------------------------------------------

    async def _publish(self, kind: Kind, payloads: Sequence[bytes]) -> bool:
        """Publish ``payloads`` on the site's ``kind`` subject; True when the local
        stream acknowledged every one."""
        js = await self._connect()
        try:
            await self._ensure_stream(js)
            sent_us = str(int(self._wall_clock() * 1e6))
            name = subject(self.site_id, kind)
            acks = await asyncio.gather(
                *(
                    js.publish(
                        name,
                        payload,
                        timeout=PUBLISH_TIMEOUT_S,
                        headers={
                            "Nats-Msg-Id": wire.message_id(self.site_id, kind, payload),
                            SENT_HEADER: sent_us,
                        },
                    )
                    for payload in payloads
                )
            )
        except (OSError, TimeoutError, nats.errors.Error) as exc:
            if isinstance(exc, nats.js.errors.NotFoundError | nats.errors.NoRespondersError):
                self._stream_ready = False
            self._failed(
                f"publishing {kind} to the local stream failed: {type(exc).__name__}: {exc}"
            )
            return False
        self.stats.messages_published += len(acks)
        self.stats.duplicates += sum(1 for a in acks if a.duplicate)
        if self.stats.last_error:
            log.info("uplink: publishing to the local stream again")
            self.stats.last_error = ""
        return True

    async def _publish_messages(self, kind: Kind, messages: Sequence[UplinkMessage]) -> bool:
        payloads = [wire.encode(m) for m in messages]
        return await self._publish(kind, payloads)

    def _encode_readings(self, records: list[tuple[int, ReadingBatch]]) -> tuple[list[bytes], int]:
        """The records' readings as messages of at most ``MAX_ROWS_PER_MESSAGE`` rows:
        records are joined, so a site sends few messages however its readings were
        batched on the way (a message's fixed costs, in JetStream and at the center,
        are paid per message)."""
        batches = []
        for _, batch in records:
            valid = self._series.is_valid(batch.series)
            if not bool(valid.all()):
                batch = batch.take(valid)  # devices gone from the site file
            if len(batch):
                batches.append(batch)
        if not batches:
            return [], 0
        message = wire.readings_message(self.site_id, ReadingBatch.concat(batches), self._series)
        parts = wire.split_readings(message, wire.MAX_ROWS_PER_MESSAGE)
        return [wire.encode(part) for part in parts], sum(len(part) for part in parts)

    async def run_readings(self) -> None:
        """Publish the outbox in order, forever: what it holds once a full message's
        worth is there, or once the oldest reading waited ``message_interval_s``."""
        backoff_s = self._retry_min_s
        waiting_since: float | None = None  # monotonic time the oldest record was seen
        while True:
            records = await self.outbox.read(READ_ROWS)
            if not records:
                await self.outbox.wait(1.0)
                continue
            rows = sum(len(b) for _, b in records)
            now = time.monotonic()
            if waiting_since is None:
                waiting_since = now
            linger_s = self._config.message_interval_s - (now - waiting_since)
            if rows < wire.MAX_ROWS_PER_MESSAGE and linger_s > 0:
                await asyncio.sleep(min(linger_s, LINGER_POLL_S))
                continue
            if not await self._publish_records(records):
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, self._retry_max_s)
                continue
            backoff_s = self._retry_min_s
            waiting_since = None

    async def _publish_records(self, records: list[tuple[int, ReadingBatch]]) -> bool:
        """Publish outbox records and commit them; False (nothing committed) when the
        local stream did not acknowledge every message."""
        payloads, rows = await asyncio.to_thread(self._encode_readings, records)
        if payloads and not await self._publish("readings", payloads):
            return False
        await self.outbox.commit(records[-1][0])
        self.stats.readings_published += rows
        return True

    async def mirror_once(self) -> int:
        """Publish what changed in the database since the cursors; messages sent."""
        cursors = await load_cursors(self._pool)
        sent = 0
        for kind, read in MIRRORED:
            messages, reached = await read(self._pool, self.site_id, cursors.get(kind, 0))
            if not messages:
                continue
            if not await self._publish_messages(kind, messages):
                break  # the rest waits for the next round, in order
            await save_cursor(self._pool, kind, reached)
            sent += len(messages)
            self.stats.mirror_messages += len(messages)
        return sent

    async def run_mirror(self) -> None:
        while True:
            try:
                await self.mirror_once()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self._failed(f"reading the database for the uplink failed: {exc}")
            await asyncio.sleep(self._config.mirror_interval_s)

    async def status_once(self) -> None:
        """Measure the backlog, purge what the center has, send the heartbeat."""
        js = await self._connect()
        await self._ensure_stream(js)
        info = await js.stream_info(SITE_STREAM)
        await self._ask_progress()
        last_seq = info.state.last_seq or 0
        backlog = max(0, last_seq - self.stats.center_seq)
        self.stats.backlog_messages = backlog
        messages = info.state.messages or 0
        self.stats.backlog_bytes = (
            (info.state.bytes or 0) * min(backlog, messages) // max(1, messages)
        )
        if self.stats.center_seq > self.stats.purged_to_seq:
            # what the center holds (stored, or in its own replicated stream) is dropped
            # here; the rest stays for the source to take when the link is up
            await js.purge_stream(SITE_STREAM, seq=self.stats.center_seq + 1)
            self.stats.purged_to_seq = self.stats.center_seq
        status = StatusMessage(
            site=self.site_id,
            sent_at=_utc(self._wall_clock()),
            name=self._site.site.name,
            timezone=self._site.site.timezone,
            page_url=self._config.page_url,
            backlog_messages=self.stats.backlog_messages,
            backlog_bytes=self.stats.backlog_bytes,
            outbox_readings=self.outbox.depth_readings,
            readings_published=self.stats.readings_published,
            readings_dropped=self.outbox.stats.readings_dropped,
            version=__version__,
        )
        if await self._publish_messages("status", [status]):
            self.stats.statuses += 1

    async def _ask_progress(self) -> None:
        """Ask the center how far it has this site's stream (``zcprogress.<site>``; its
        workers answer). No answer (the WAN down, no worker up) keeps what is known."""
        nc = self._nc
        if nc is None:
            return
        try:
            reply = await nc.request(
                progress_subject(self.site_id), b"", timeout=PROGRESS_TIMEOUT_S
            )
            seq = int(json.loads(reply.data)["source_seq"])
        except (TimeoutError, nats.errors.Error, ValueError, KeyError, TypeError):
            self.stats.center_answered = False
            return
        self.stats.center_answered = True
        self.stats.center_seq = max(self.stats.center_seq, seq)

    async def run_status(self) -> None:
        while True:
            try:
                await self.status_once()
            except (OSError, TimeoutError, nats.errors.Error) as exc:
                self._failed(f"uplink status failed: {type(exc).__name__}: {exc}")
            await asyncio.sleep(self._config.status_interval_s)

    async def run(self) -> None:
        """All loops until cancelled."""
        await self._connect()
        await asyncio.gather(self.run_readings(), self.run_mirror(), self.run_status())

    async def flush(self, timeout_s: float = 10.0) -> None:
        """At shutdown: publish what the outbox and the database still hold, if the local
        server takes it within ``timeout_s`` [s] (what it does not stays for the next
        start)."""

        async def drain() -> None:
            while True:
                records = await self.outbox.read(READ_ROWS)
                if not records:
                    break
                if not await self._publish_records(records):
                    return
            await self.mirror_once()

        try:
            await asyncio.wait_for(drain(), timeout_s)
        except (TimeoutError, OSError, asyncpg.PostgresError, nats.errors.Error) as exc:
            log.warning("uplink: not everything was published at shutdown (%s): it is kept", exc)

    async def close(self) -> None:
        if self._nc is not None:
            try:
                await asyncio.wait_for(self._nc.close(), 5)
            except (TimeoutError, OSError, nats.errors.Error):
                # the local server away: closing its half-open connection may raise
                # ConnectionResetError, which must not stop the gateway's shutdown
                pass
            self._nc = None
            self._js = None


def _utc(posix_s: float) -> datetime:
    return datetime.fromtimestamp(posix_s, UTC)
