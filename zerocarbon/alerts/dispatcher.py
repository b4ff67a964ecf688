"""The dispatcher: delivers the outbox's due notifications, retrying with back-off.

Each round takes one due row at a time in its own transaction: the row is locked
(``FOR UPDATE SKIP LOCKED``, so dispatchers running side by side never take the same
row), sent, and then, in that same transaction, marked sent when the channel
confirmed (:mod:`zerocarbon.alerts.channels` says what confirms for each) or given its
next attempt time when it did not. The delay after the n-th failed attempt is
``min(max_backoff_s, base_backoff_s * 2**(n-1))`` times a jitter factor in
[0.5, 1.0) drawn from a seeded generator, so that many rows failing together do not
retry together.

Guarantee: a notification is never lost (the row stays until a channel confirms it) and
in the common case is sent exactly once. It is at-least-once, not exactly-once: if the
process dies, or the database connection breaks, after the channel confirmed but before
the commit, the row is still unsent and is sent again. Every payload therefore carries
the notification's ``change_id`` so that a receiver can drop the duplicate.

The live page is not a channel here: it will read the alert table itself. A hook for
it is :attr:`Dispatcher.on_delivered`, called after each committed delivery.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg

from zerocarbon.alerts.channels import Channel, DeliveryError
from zerocarbon.alerts.notify import Notification
from zerocarbon.clock import Clock
from zerocarbon.storage import outbox

log = logging.getLogger(__name__)

__all__ = ["DispatchStats", "Dispatcher", "backoff_s"]


def backoff_s(attempts: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Delay before the next attempt after ``attempts`` failed ones [s], jittered."""
    exponent = min(max(attempts - 1, 0), 30)
    return min(cap_s, base_s * 2.0**exponent) * (0.5 + 0.5 * rng.random())


@dataclass(slots=True)
class DispatchStats:
    sent: int = 0
    failed_attempts: int = 0
    last_error: str | None = None


@dataclass(slots=True)
class Dispatcher:
    """Delivers due outbox rows over ``channels`` (by channel name)."""

    pool: asyncpg.Pool
    channels: Mapping[str, Channel]
    clock: Clock
    base_backoff_s: float = 10.0
    max_backoff_s: float = 3600.0
    poll_interval_s: float = 5.0
    batch_limit: int = 100  # rows at most per round
    seed: int = 0
    on_delivered: Callable[[Notification, str], None] | None = None
    stats: DispatchStats = field(default_factory=DispatchStats)
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.now_s(), UTC)

    async def run_once(self) -> int:
        """Deliver what is due now; returns the number of rows delivered."""
        delivered = 0
        for _ in range(self.batch_limit):
            async with self.pool.acquire() as conn, conn.transaction():
                rows = await outbox.claim_due(conn, self._now(), 1)
                if not rows:
                    break
                row = rows[0]
                notification = Notification.from_json(row.payload)
                error = await self._send(row, notification)
                if error is None:
                    await outbox.mark_sent(conn, row.id, self._now())
                else:
                    delay_s = backoff_s(
                        row.attempts + 1, self.base_backoff_s, self.max_backoff_s, self._rng
                    )
                    retry_at = self._now() + timedelta(seconds=delay_s)
                    await outbox.mark_failed(conn, row.id, error, retry_at)
            if error is None:
                delivered += 1
                self.stats.sent += 1
                if self.on_delivered is not None:
                    self.on_delivered(notification, row.channel)
        return delivered

    async def _send(self, row: outbox.OutboxRow, notification: Notification) -> str | None:
        channel = self.channels.get(row.channel)
        if channel is None:
            error = f"no channel named {row.channel!r} is configured"
        else:
            try:
                await channel.send(notification, self.clock.now_s())
                return None
            except DeliveryError as exc:
                error = str(exc)
        self.stats.failed_attempts += 1
        self.stats.last_error = error
        log.warning("alert %s to %s not delivered: %s", notification.change_id, row.channel, error)
        return error

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set, a round every ``poll_interval_s`` of the clock."""
        while not stop.is_set():
            try:
                await self.run_once()
            except (asyncpg.PostgresError, OSError) as exc:
                log.warning("alert outbox unavailable: %s", exc)
            await self.clock.sleep(self.poll_interval_s)
