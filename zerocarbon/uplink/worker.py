"""A center ingest worker: pull, decode, store, acknowledge.

Workers are stateless and interchangeable: each binds to the shared durable pull
consumer :data:`~zerocarbon.uplink.subjects.CENTER_CONSUMER` with explicit
acknowledgements, takes up to ``fetch_batch`` messages, stores them in the central
database in one transaction (:class:`~zerocarbon.uplink.center_store.CenterStore`,
idempotent) and only then acknowledges them; it fetches and decodes the next batch
meanwhile, so that the database and the worker work at once. A worker killed mid-batch has
acknowledged nothing of that batch: JetStream redelivers it to another worker after
``ack_wait_s``, and storing it again changes nothing. More workers take more messages
at once (JetStream spreads a pull consumer's messages over its waiting pulls).

A message that cannot be decoded or stored on its own (a malformed payload, a subject
that is not ``zc.<site>.<kind>``) is logged with its subject and terminated (never
redelivered), and counted; the rest of the batch is stored.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import nats
import nats.errors
from nats.aio.msg import Msg
from nats.js.client import JetStreamContext

from zerocarbon.uplink import wire
from zerocarbon.uplink.center_store import CenterStore, InvalidMessage
from zerocarbon.uplink.messages import UplinkMessage
from zerocarbon.uplink.publisher import SENT_HEADER
from zerocarbon.uplink.subjects import (
    CENTER_CONSUMER,
    CENTER_STREAM,
    PROGRESS_PREFIX,
    kind_of,
    site_of,
)

__all__ = ["IngestWorker", "WorkerStats"]

SOURCE_HEADER = "Nats-Stream-Source"
PROGRESS_QUEUE = "center-progress"  # the workers answer a gateway's progress question

log = logging.getLogger(__name__)


@dataclass(slots=True)
class WorkerStats:
    batches: int = 0
    messages: int = 0  # stored and acknowledged
    readings_received: int = 0
    readings_stored: int = 0  # new rows
    duplicates: int = 0  # readings already stored (redeliveries, replays)
    rejected: int = 0  # messages terminated: malformed or not storable
    store_failures: int = 0  # batches the database refused (left for redelivery)


def _source_seq(msg: Msg) -> int | None:
    """The message's sequence in its site's stream: the center's sourcing adds the
    header ``Nats-Stream-Source: <stream>:<hash> <seq> ...``."""
    value = (msg.headers or {}).get(SOURCE_HEADER)
    if value is None:
        return None
    parts = value.split()
    try:
        return int(parts[1]) if len(parts) > 1 else None
    except ValueError:
        return None


def _sent_at(msg: Msg) -> datetime | None:
    value = (msg.headers or {}).get(SENT_HEADER)
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(int(value) / 1e6, UTC)
    except (ValueError, OverflowError, OSError):
        return None


class IngestWorker:
    """One worker's loop over the center's pull consumer."""

    def __init__(
        self,
        store: CenterStore,
        nats_options: Mapping[str, Any],
        *,
        fetch_batch: int = 256,
        fetch_timeout_s: float = 1.0,
        retry_max_s: float = 5.0,
        wall_clock: Callable[[], float] = time.time,
        name: str = "worker",
    ) -> None:
        self._store = store
        self._nats_options = dict(nats_options)
        self._fetch_batch = fetch_batch
        self._fetch_timeout_s = fetch_timeout_s
        self._retry_max_s = retry_max_s
        self._wall_clock = wall_clock
        self.name = name
        self.stats = WorkerStats()
        self._stop = asyncio.Event()
        self._last_error = ""

    def request_stop(self) -> None:
        """Finish the batch in hand, acknowledge it, and return from :meth:`run`."""
        self._stop.set()

    async def run(self) -> None:
        nc = await nats.connect(
            name=f"zerocarbon-center-{self.name}",
            error_cb=self._on_error,
            **self._nats_options,
        )
        try:
            js = nc.jetstream()
            sub = await js.pull_subscribe_bind(CENTER_CONSUMER, CENTER_STREAM)
            await nc.subscribe(f"{PROGRESS_PREFIX}.*", queue=PROGRESS_QUEUE, cb=self._progress)
            # fetching and decoding the next batch overlaps storing this one: the
            # database's transaction and the worker's own work alternate otherwise,
            # each idle while the other runs
            ready: asyncio.Queue[list[tuple[Msg, UplinkMessage]] | None] = asyncio.Queue(1)
            tasks = (
                asyncio.create_task(self._pull(sub, ready)),
                asyncio.create_task(self._store_loop(ready)),
            )
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            finally:
                for task in tasks:
                    task.cancel()  # one failed, or run() itself was cancelled
                outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, Exception):
                    raise outcome
        finally:
            # flush, not drain: the acknowledgements sent must reach the server, and
            # nats-py's drain of a pull subscription waits for its queue to be marked
            # done, which fetch() never does (every stop took the whole timeout)
            try:
                await asyncio.wait_for(nc.flush(), 5)
            except (TimeoutError, nats.errors.Error) as exc:
                log.warning(
                    "%s: the last acknowledgements may not have been sent: %s", self.name, exc
                )
            await nc.close()

    async def _pull(
        self,
        sub: JetStreamContext.PullSubscription,
        ready: asyncio.Queue[list[tuple[Msg, UplinkMessage]] | None],
    ) -> None:
        """Fetch and decode batches into ``ready`` until a stop is asked, then put
        None (the batches in hand are stored and acknowledged first, not left to time
        out)."""
        backoff_s = 0.2
        while not self._stop.is_set():
            try:
                msgs = await sub.fetch(self._fetch_batch, timeout=self._fetch_timeout_s)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except nats.errors.Error as exc:
                log.warning("%s: fetch failed (%s); retrying", self.name, exc)
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, self._retry_max_s)
                continue
            backoff_s = 0.2
            decoded = await self._decode(msgs)
            if decoded:
                await ready.put(decoded)
        await ready.put(None)

    async def _store_loop(
        self, ready: asyncio.Queue[list[tuple[Msg, UplinkMessage]] | None]
    ) -> None:
        """Store and acknowledge the batches in ``ready`` until None; a batch the
        database refused is left unacknowledged (redelivered) and the next waits."""
        backoff_s = 0.2
        while (decoded := await ready.get()) is not None:
            if await self._store_and_ack(decoded):
                backoff_s = 0.2
            else:
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, self._retry_max_s)

    async def _progress(self, msg: Msg) -> None:
        """Answer ``zcprogress.<site>`` with ``{"source_seq": N}``: the highest sequence
        of the site's stream stored here (every message up to it is stored or waits in
        the center's stream), so the gateway may drop what is up to it."""
        if not msg.reply:
            return
        site = msg.subject.split(".", 1)[1]
        try:
            seq = await self._store.source_seq(site)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("%s: progress of %s not answered: %s", self.name, site, exc)
            return
        await msg.respond(json.dumps({"site": site, "source_seq": seq}).encode())

    async def _on_error(self, exc: Exception) -> None:
        """One line per distinct NATS error (not nats-py's traceback per retry)."""
        text = f"{type(exc).__name__}: {exc}"
        if text != self._last_error:
            log.warning("%s: NATS: %s", self.name, text)
        self._last_error = text

    async def _decode(self, msgs: list[Msg]) -> list[tuple[Msg, UplinkMessage]]:
        """The messages decoded; one that does not decode is terminated and left out."""
        decoded: list[tuple[Msg, UplinkMessage]] = []
        for msg in msgs:
            try:
                message = wire.decode(kind_of(msg.subject), site_of(msg.subject), msg.data)
            except ValueError as exc:  # WireError is a ValueError
                await self._reject(msg, str(exc))
                continue
            decoded.append((msg, message))
        return decoded

    async def _store_and_ack(self, decoded: list[tuple[Msg, UplinkMessage]]) -> bool:
        """Store decoded messages in one transaction, then acknowledge them; a message
        the store finds invalid is terminated and the rest stored. False when the
        database failed (nothing acknowledged)."""
        while decoded:
            try:
                result = await self._store.store(
                    [m for _, m in decoded],
                    received_at=datetime.fromtimestamp(self._wall_clock(), UTC),
                    sent_at=[_sent_at(msg) for msg, _ in decoded],
                    source_seq=[_source_seq(msg) for msg, _ in decoded],
                )
            except InvalidMessage as exc:
                msg, _ = decoded.pop(exc.index)
                await self._reject(msg, str(exc))
                continue
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self.stats.store_failures += 1
                log.warning(
                    "%s: storing %d messages failed (%s: %s); they are redelivered",
                    self.name,
                    len(decoded),
                    type(exc).__name__,
                    exc,
                )
                return False
            for msg, _ in decoded:
                await msg.ack()
            self.stats.batches += 1
            self.stats.messages += len(decoded)
            self.stats.readings_received += result.readings_received
            self.stats.readings_stored += result.readings_stored
            self.stats.duplicates += result.duplicates
            break
        return True

    async def _reject(self, msg: Msg, reason: str) -> None:
        self.stats.rejected += 1
        log.error("%s: message on %s rejected: %s", self.name, msg.subject, reason)
        try:
            await msg.term()
        except nats.errors.Error as exc:
            log.warning(
                "%s: could not terminate the message on %s: %s", self.name, msg.subject, exc
            )
