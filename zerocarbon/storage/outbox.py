"""The ``notification_outbox`` table (schema migration 8): alert notifications to deliver.

One row per (notification, channel), keyed by ``dedup_key`` = the notification's
change id and the channel name: enqueuing the same state change twice stores it once.
A row is due when ``sent_at`` is null and ``next_attempt_at`` has come; the dispatcher
(:mod:`zerocarbon.alerts.dispatcher`) claims due rows with ``FOR UPDATE SKIP LOCKED``,
so two dispatchers never hold the same row, and sets ``sent_at`` in the same
transaction only after the channel confirmed delivery.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from zerocarbon.alerts.notify import Notification

__all__ = ["OutboxRow", "claim_due", "enqueue", "mark_failed", "mark_sent", "pending_count"]


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    dedup_key: str
    channel: str
    payload: dict[str, Any]
    attempts: int  # attempts made before this one


def dedup_key(notification: Notification, channel: str) -> str:
    return f"{notification.change_id}#{channel}"


async def enqueue(
    conn: asyncpg.Connection,
    notification: Notification,
    channels: Iterable[str],
    now: datetime,
) -> int:
    """Store ``notification`` once per channel; returns how many rows were new."""
    payload = json.dumps(notification.to_json(), ensure_ascii=False)
    added = 0
    for channel in channels:
        status = await conn.execute(
            """INSERT INTO notification_outbox
                   (dedup_key, channel, payload, created_at, next_attempt_at)
               VALUES ($1, $2, $3::jsonb, $4, $4)
               ON CONFLICT (dedup_key) DO NOTHING""",
            dedup_key(notification, channel),
            channel,
            payload,
            now,
        )
        added += int(status.split()[-1])
    return added


async def claim_due(conn: asyncpg.Connection, now: datetime, limit: int) -> list[OutboxRow]:
    """Lock up to ``limit`` due rows, oldest first; call inside a transaction."""
    rows = await conn.fetch(
        """SELECT id, dedup_key, channel, payload::text AS payload, attempts
           FROM notification_outbox
           WHERE sent_at IS NULL AND next_attempt_at <= $1
           ORDER BY next_attempt_at, id
           LIMIT $2
           FOR UPDATE SKIP LOCKED""",
        now,
        limit,
    )
    return [
        OutboxRow(r["id"], r["dedup_key"], r["channel"], json.loads(r["payload"]), r["attempts"])
        for r in rows
    ]


async def mark_sent(conn: asyncpg.Connection, row_id: int, now: datetime) -> None:
    await conn.execute(
        "UPDATE notification_outbox SET sent_at = $2, attempts = attempts + 1, "
        "last_error = NULL WHERE id = $1",
        row_id,
        now,
    )


async def mark_failed(
    conn: asyncpg.Connection, row_id: int, error: str, next_attempt_at: datetime
) -> None:
    await conn.execute(
        "UPDATE notification_outbox SET attempts = attempts + 1, last_error = $2, "
        "next_attempt_at = $3 WHERE id = $1",
        row_id,
        error[:2000],
        next_attempt_at,
    )


async def pending_count(conn: asyncpg.Connection) -> int:
    value = await conn.fetchval("SELECT count(*) FROM notification_outbox WHERE sent_at IS NULL")
    return int(value)
