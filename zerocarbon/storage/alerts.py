"""The ``alerts`` and ``alert_events`` tables (schema migration 9): alerts as they happened.

One ``alerts`` row per *episode* of an alert, named by ``(rule, subject, episode)`` as the
state machine numbers them (:class:`zerocarbon.alerts.state.Transition`): it is created
when the episode fires and updated when it resolves or is acknowledged. ``alert_events``
keeps every change of an episode (``firing``, ``resolved``, ``acknowledged``), at most
one of each, with its evidence: the history.

:func:`record_change` stores a change decided by the evaluator and queues its
notification in the outbox (:mod:`zerocarbon.storage.outbox`) in the same transaction,
only when the change is new: evaluating the same change twice (a replay after a
restart) stores it once and notifies once.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeAlias

import asyncpg

from zerocarbon.alerts.notify import AlertState, Notification
from zerocarbon.storage import outbox

__all__ = [
    "ALERTS_SQL",
    "AlertChange",
    "AlertEvent",
    "AlertStatus",
    "EventWatermark",
    "EventWithAlert",
    "StoredAlert",
    "StoredAlertState",
    "acknowledge",
    "active_alerts",
    "event_watermark",
    "events_after",
    "get_alert",
    "last_event_id",
    "latest_states",
    "list_alerts",
    "record_change",
]

AlertStatus = Literal["active", "resolved", "all"]
Db: TypeAlias = asyncpg.Connection | asyncpg.Pool  # where a read runs
EventState = Literal["firing", "resolved", "acknowledged"]

ALERTS_SQL = """
CREATE TABLE IF NOT EXISTS alerts (
    id bigserial PRIMARY KEY,
    rule text NOT NULL,
    kind text NOT NULL,
    subject text NOT NULL,
    episode integer NOT NULL CHECK (episode >= 1),
    severity text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    state text NOT NULL CHECK (state IN ('firing', 'resolved')),
    since timestamptz NOT NULL,
    fired_at timestamptz NOT NULL,
    resolved_at timestamptz,
    message_en text NOT NULL DEFAULT '',
    message_zh text NOT NULL DEFAULT '',
    evidence jsonb NOT NULL DEFAULT '{}',
    acked_at timestamptz,
    acked_by text,
    ack_comment text,
    UNIQUE (rule, subject, episode)
);
CREATE INDEX IF NOT EXISTS alerts_active ON alerts (fired_at DESC) WHERE state = 'firing';
CREATE INDEX IF NOT EXISTS alerts_fired_at ON alerts (fired_at DESC);
CREATE TABLE IF NOT EXISTS alert_events (
    id bigserial PRIMARY KEY,
    alert_id bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    state text NOT NULL CHECK (state IN ('firing', 'resolved', 'acknowledged')),
    ts timestamptz NOT NULL,
    message_en text NOT NULL DEFAULT '',
    message_zh text NOT NULL DEFAULT '',
    evidence jsonb NOT NULL DEFAULT '{}',
    actor text,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (alert_id, state)
);
CREATE INDEX IF NOT EXISTS alert_events_recorded_at ON alert_events (recorded_at);
"""


@dataclass(frozen=True, slots=True)
class AlertChange:
    """One state change of one alert episode, as the evaluator decided it."""

    rule: str
    kind: str  # rule kind: offline, threshold, demand, data_quality, drift
    subject: str  # what the rule watches: a device, a line, the site
    episode: int  # the state machine's episode number, from 1
    state: Literal["firing", "resolved"]
    severity: str  # info | warning | critical
    ts: datetime  # time of the change (UTC)
    since: datetime  # when the condition began to hold (UTC)
    message_en: str
    message_zh: str
    evidence: dict[str, Any] = field(default_factory=dict)  # JSON: values, limit, parameters

    @property
    def alert_key(self) -> str:
        return f"{self.rule}/{self.subject}"

    def notification(self) -> Notification:
        """What the channels are told of this change; the evidence gains the subject,
        the episode and ``since`` (ISO 8601, UTC)."""
        evidence = {
            **self.evidence,
            "subject": self.subject,
            "episode": self.episode,
            "since": self.since.astimezone(UTC).isoformat(),
        }
        return Notification(
            alert_key=self.alert_key,
            rule=self.rule,
            kind=self.kind,
            state=AlertState(self.state),
            severity=self.severity,
            ts=self.ts,
            message_zh=self.message_zh,
            message_en=self.message_en,
            evidence=evidence,
        )


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One row of ``alert_events``: a change of an episode."""

    id: int
    alert_id: int
    state: str  # firing | resolved | acknowledged
    ts: datetime  # of a change: the data's time (UTC); of an acknowledgement: the wall clock
    message_en: str
    message_zh: str
    evidence: dict[str, Any]  # the change's evidence; of an acknowledgement, its comment
    actor: str | None  # who acknowledged (token name); None for the evaluator's changes
    recorded_at: datetime  # when the row was written


@dataclass(frozen=True, slots=True)
class StoredAlert:
    """One row of ``alerts`` (one episode) with its history in the order it was
    recorded (empty where the history was not asked for)."""

    id: int
    rule: str
    kind: str
    subject: str
    episode: int
    severity: str
    state: str  # firing | resolved
    since: datetime
    fired_at: datetime
    resolved_at: datetime | None
    message_en: str
    message_zh: str
    evidence: dict[str, Any]  # of the latest change
    acked_at: datetime | None
    acked_by: str | None
    ack_comment: str | None
    events: tuple[AlertEvent, ...] = ()

    @property
    def acked(self) -> bool:
        return self.acked_at is not None


@dataclass(frozen=True, slots=True)
class StoredAlertState:
    """The newest episode of one (rule, subject)."""

    rule: str
    subject: str
    episode: int
    state: str  # firing | resolved
    since: datetime
    ts: datetime  # of its latest change: fired_at, or resolved_at once resolved


@dataclass(frozen=True, slots=True)
class EventWithAlert:
    """An ``alert_events`` row and its alert as it is now (without its history)."""

    event: AlertEvent
    alert: StoredAlert


_ALERT_COLUMNS = (
    "a.id, a.rule, a.kind, a.subject, a.episode, a.severity, a.state, a.since, a.fired_at, "
    "a.resolved_at, a.message_en, a.message_zh, a.evidence::text AS evidence, a.acked_at, "
    "a.acked_by, a.ack_comment"
)
_EVENT_COLUMNS = (
    "e.id AS event_id, e.alert_id, e.state AS event_state, e.ts AS event_ts, "
    "e.message_en AS event_message_en, e.message_zh AS event_message_zh, "
    "e.evidence::text AS event_evidence, e.actor, e.recorded_at"
)


def _alert(r: asyncpg.Record, events: tuple[AlertEvent, ...] = ()) -> StoredAlert:
    return StoredAlert(
        id=r["id"],
        rule=r["rule"],
        kind=r["kind"],
        subject=r["subject"],
        episode=r["episode"],
        severity=r["severity"],
        state=r["state"],
        since=r["since"],
        fired_at=r["fired_at"],
        resolved_at=r["resolved_at"],
        message_en=r["message_en"],
        message_zh=r["message_zh"],
        evidence=json.loads(r["evidence"]),
        acked_at=r["acked_at"],
        acked_by=r["acked_by"],
        ack_comment=r["ack_comment"],
        events=events,
    )


def _event(r: asyncpg.Record) -> AlertEvent:
    return AlertEvent(
        id=r["event_id"],
        alert_id=r["alert_id"],
        state=r["event_state"],
        ts=r["event_ts"],
        message_en=r["event_message_en"],
        message_zh=r["event_message_zh"],
        evidence=json.loads(r["event_evidence"]),
        actor=r["actor"],
        recorded_at=r["recorded_at"],
    )


async def record_change(
    conn: asyncpg.Connection, change: AlertChange, channels: Sequence[str], now: datetime
) -> int | None:
    """Store ``change`` and queue its notification for ``channels``, in one transaction.

    The episode's row is created by its first change (a ``resolved`` whose firing was
    never stored, too: its ``fired_at`` is then ``since``); a ``resolved`` sets the
    state, ``resolved_at``, the messages and the evidence. The change's event row is
    written once; only when it is new is the row updated and the notification queued
    (``now``: the outbox rows' creation time). Returns the alert id when the change
    was new, None when it had been recorded already (a replay).
    """
    evidence = json.dumps(change.evidence, ensure_ascii=False)
    firing = change.state == "firing"
    async with conn.transaction():
        alert_id = await conn.fetchval(
            """INSERT INTO alerts (rule, kind, subject, episode, severity, state, since,
                                   fired_at, resolved_at, message_en, message_zh, evidence)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb)
               ON CONFLICT (rule, subject, episode) DO NOTHING
               RETURNING id""",
            change.rule,
            change.kind,
            change.subject,
            change.episode,
            change.severity,
            change.state,
            change.since,
            change.ts if firing else change.since,
            None if firing else change.ts,
            change.message_en,
            change.message_zh,
            evidence,
        )
        created = alert_id is not None
        if not created:
            alert_id = await conn.fetchval(
                "SELECT id FROM alerts WHERE rule = $1 AND subject = $2 AND episode = $3 "
                "FOR UPDATE",
                change.rule,
                change.subject,
                change.episode,
            )
        event_id = await conn.fetchval(
            """INSERT INTO alert_events (alert_id, state, ts, message_en, message_zh, evidence)
               VALUES ($1, $2, $3, $4, $5, $6::jsonb)
               ON CONFLICT (alert_id, state) DO NOTHING
               RETURNING id""",
            alert_id,
            change.state,
            change.ts,
            change.message_en,
            change.message_zh,
            evidence,
        )
        if event_id is None:
            return None  # a replay: stored and queued before
        if not created and firing:
            # the resolution was stored first: the firing gives the episode its start,
            # the row keeps the state, messages and evidence of the later resolution
            await conn.execute(
                "UPDATE alerts SET fired_at = $2, since = $3 WHERE id = $1",
                alert_id,
                change.ts,
                change.since,
            )
        elif not created:
            await conn.execute(
                """UPDATE alerts SET state = 'resolved', resolved_at = $2, message_en = $3,
                          message_zh = $4, evidence = $5::jsonb
                   WHERE id = $1""",
                alert_id,
                change.ts,
                change.message_en,
                change.message_zh,
                evidence,
            )
        await outbox.enqueue(conn, change.notification(), channels, now)
    return int(alert_id)


async def latest_states(conn: Db) -> list[StoredAlertState]:
    """The newest episode of every (rule, subject), ordered by rule and subject: where
    the evaluator continues numbering episodes after a restart."""
    rows = await conn.fetch(
        """SELECT DISTINCT ON (rule, subject) rule, subject, episode, state, since,
                  coalesce(resolved_at, fired_at) AS ts
           FROM alerts ORDER BY rule, subject, episode DESC"""
    )
    return [
        StoredAlertState(r["rule"], r["subject"], r["episode"], r["state"], r["since"], r["ts"])
        for r in rows
    ]


async def _with_events(conn: Db, rows: list[asyncpg.Record]) -> list[StoredAlert]:
    ids = [r["id"] for r in rows]
    events: dict[int, list[AlertEvent]] = {i: [] for i in ids}
    if ids:
        for e in await conn.fetch(
            f"SELECT {_EVENT_COLUMNS} FROM alert_events e WHERE e.alert_id = ANY($1::bigint[]) "
            "ORDER BY e.id",
            ids,
        ):
            events[e["alert_id"]].append(_event(e))
    return [_alert(r, tuple(events[r["id"]])) for r in rows]


async def list_alerts(
    conn: Db,
    *,
    status: AlertStatus = "all",
    rule: str | None = None,
    kind: str | None = None,
    subject: str | None = None,
    severity: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    acked: bool | None = None,
    limit: int = 100,
) -> list[StoredAlert]:
    """Alerts (episodes) with their history, the newest fired first.

    ``status``: ``active`` (firing), ``resolved`` or ``all``. ``since``/``until``
    (UTC): episodes that were firing at some time in ``[since, until)``, i.e. fired
    before ``until`` and not resolved before ``since``. ``acked``: acknowledged or not.
    The other filters are equalities; None leaves a filter out.
    """
    state = {"active": "firing", "resolved": "resolved", "all": None}[status]
    rows = await conn.fetch(
        f"""SELECT {_ALERT_COLUMNS} FROM alerts a
            WHERE ($1::text IS NULL OR a.state = $1)
              AND ($2::text IS NULL OR a.rule = $2)
              AND ($3::text IS NULL OR a.kind = $3)
              AND ($4::text IS NULL OR a.subject = $4)
              AND ($5::text IS NULL OR a.severity = $5)
              AND ($6::timestamptz IS NULL OR a.resolved_at IS NULL OR a.resolved_at >= $6)
              AND ($7::timestamptz IS NULL OR a.fired_at < $7)
              AND ($8::boolean IS NULL OR (a.acked_at IS NOT NULL) = $8)
            ORDER BY a.fired_at DESC, a.id DESC
            LIMIT $9""",
        state,
        rule,
        kind,
        subject,
        severity,
        since,
        until,
        acked,
        limit,
    )
    return await _with_events(conn, rows)


async def get_alert(conn: Db, alert_id: int) -> StoredAlert | None:
    """One alert with its history, or None."""
    row = await conn.fetchrow(f"SELECT {_ALERT_COLUMNS} FROM alerts a WHERE a.id = $1", alert_id)
    if row is None:
        return None
    return (await _with_events(conn, [row]))[0]


async def acknowledge(
    conn: asyncpg.Connection, alert_id: int, actor: str, comment: str | None, now: datetime
) -> StoredAlert | None:
    """Mark the alert acknowledged by ``actor`` at ``now`` with an ``acknowledged``
    event (its evidence holds the comment). Only the first acknowledgement counts: a
    later one changes nothing. Returns the alert as it is then, None if there is none."""
    async with conn.transaction():
        row = await conn.fetchrow(
            "UPDATE alerts SET acked_at = $2, acked_by = $3, ack_comment = $4 "
            "WHERE id = $1 AND acked_at IS NULL RETURNING id",
            alert_id,
            now,
            actor,
            comment,
        )
        if row is not None:
            evidence = {} if comment is None else {"comment": comment}
            await conn.execute(
                """INSERT INTO alert_events (alert_id, state, ts, evidence, actor)
                   VALUES ($1, 'acknowledged', $2, $3::jsonb, $4)
                   ON CONFLICT (alert_id, state) DO NOTHING""",
                alert_id,
                now,
                json.dumps(evidence, ensure_ascii=False),
                actor,
            )
        return await get_alert(conn, alert_id)


async def last_event_id(conn: Db) -> int:
    """The highest ``alert_events`` id (0 when there is none)."""
    return int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM alert_events"))


@dataclass(frozen=True, slots=True)
class EventWatermark:
    """Where a reader of :func:`events_after` starts: the highest event id, the
    database's clock, and the events recorded in the look-back before it (id ->
    recorded_at), which a late commit may still precede."""

    after_id: int
    now: datetime
    recent: dict[int, datetime]


async def event_watermark(conn: Db, lookback: timedelta) -> EventWatermark:
    """The :class:`EventWatermark` now, with events recorded within ``lookback``."""
    head = await conn.fetchrow(
        "SELECT clock_timestamp() AS now, coalesce(max(id), 0) AS after_id FROM alert_events"
    )
    assert head is not None
    now, after_id = head["now"], int(head["after_id"])
    rows = await conn.fetch(
        "SELECT id, recorded_at FROM alert_events WHERE recorded_at >= $1 AND id <= $2",
        now - lookback,
        after_id,
    )
    return EventWatermark(after_id, now, {r["id"]: r["recorded_at"] for r in rows})


async def events_after(
    conn: Db,
    after_id: int,
    limit: int = 500,
    *,
    recorded_since: datetime | None = None,
    seen: Collection[int] = (),
) -> list[EventWithAlert]:
    """Events with an id above ``after_id``, lowest first, each with its alert as it
    is now; at most ``limit``.

    Ids are taken when a transaction writes, not when it commits, so a slow
    transaction can commit an id below one already read: with ``recorded_since``,
    events recorded since then are returned too, except the ids in ``seen`` (those
    the caller has already had).
    """
    rows = await conn.fetch(
        f"""SELECT {_EVENT_COLUMNS}, {_ALERT_COLUMNS}
            FROM alert_events e JOIN alerts a ON a.id = e.alert_id
            WHERE (e.id > $1 OR ($2::timestamptz IS NOT NULL AND e.recorded_at >= $2))
              AND NOT (e.id = ANY($3::bigint[]))
            ORDER BY e.id
            LIMIT $4""",
        after_id,
        recorded_since,
        list(seen),
        limit,
    )
    return [EventWithAlert(_event(r), _alert(r)) for r in rows]


async def active_alerts(conn: Db) -> list[StoredAlert]:
    """Every firing alert, the newest fired first, without history."""
    rows = await conn.fetch(
        f"SELECT {_ALERT_COLUMNS} FROM alerts a WHERE a.state = 'firing' "
        "ORDER BY a.fired_at DESC, a.id DESC"
    )
    return [_alert(r) for r in rows]
