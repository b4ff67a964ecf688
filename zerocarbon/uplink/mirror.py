"""What the uplink reads back from the gateway's database: hourly rows, alerts, device
events and issued accounts newer than its cursors (:mod:`zerocarbon.storage.uplink_cursors`).

Each function returns the messages to publish and the cursor position reached once
they are acknowledged. Hourly rows follow ``computed_at`` (the carbon service is their
one writer, so their ``computed_at`` grows); alerts follow their newest
``alert_events.id`` (every change of an episode, acknowledgement included, is an
event); device events and issued accounts their row id.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg

from zerocarbon.batch import datetime_to_us, us_to_datetime
from zerocarbon.rows import HourlyCarbon, HourlyLine
from zerocarbon.uplink.messages import (
    AccountsMessage,
    AlertRecord,
    AlertsMessage,
    DeviceEventRecord,
    EventsMessage,
    HourlyMessage,
    IssuedAccount,
)

__all__ = [
    "MIRROR_KINDS",
    "read_accounts",
    "read_alerts",
    "read_events",
    "read_hourly",
]

MIRROR_KINDS = ("hourly", "alerts", "events", "accounts")
# Alert events have two writers (the alert service; an acknowledgement through the
# API), so a lower id may commit after a higher one was read: the episodes changed in
# this last stretch are read again each round, whatever the cursor (the center keeps
# the highest revision, so a repeat changes nothing there).
ALERT_LOOKBACK = timedelta(seconds=30)
HOURLY_ROWS_PER_MESSAGE = 200  # hourly rows (carbon + lines) per message
ALERTS_PER_MESSAGE = 200
EVENTS_PER_MESSAGE = 1_000
ACCOUNTS_PER_MESSAGE = 4  # an issued account is a few tens of kB of JSON
# rows read per round (the rest next round); one flush of the carbon service writes far
# fewer hourly rows than this (50,000 hours are over five years)
READ_LIMIT = 50_000


T = TypeVar("T")


def _chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _row(row_type: type[T], record: asyncpg.Record) -> T:
    return row_type(**{f.name: record[f.name] for f in fields(row_type)})  # type: ignore[arg-type]


async def read_hourly(
    conn: asyncpg.Connection | asyncpg.Pool,
    site: str,
    after_us: int,
    *,
    read_limit: int = READ_LIMIT,
) -> tuple[list[HourlyMessage], int]:
    """Hourly carbon and line rows computed after ``after_us`` [us], oldest first.

    At most about ``read_limit`` rows of each table per call: a full read stops at the
    oldest of the full tables' newest ``computed_at`` (the cut), and takes every row
    computed at the cut whole, however many, so that the cursor never passes a row
    that was not read."""
    after = us_to_datetime(after_us)
    carbon_cols = ", ".join(f.name for f in fields(HourlyCarbon))
    line_cols = ", ".join(f.name for f in fields(HourlyLine))
    carbon_sql = f"SELECT {carbon_cols}, computed_at FROM hourly_carbon WHERE computed_at "
    lines_sql = f"SELECT {line_cols}, computed_at FROM hourly_line WHERE computed_at "
    carbon = await conn.fetch(carbon_sql + "> $1 ORDER BY computed_at LIMIT $2", after, read_limit)
    lines = await conn.fetch(lines_sql + "> $1 ORDER BY computed_at LIMIT $2", after, read_limit)
    if not carbon and not lines:
        return [], after_us
    if len(carbon) == read_limit or len(lines) == read_limit:
        # a full read: rows computed at its newest time may go on past the limit, and
        # the other table's newer rows may leave older ones of this table unread; keep
        # what is older than the cut, and the cut's rows whole
        cut = min(rows[-1]["computed_at"] for rows in (carbon, lines) if len(rows) == read_limit)
        carbon = [r for r in carbon if r["computed_at"] < cut]
        lines = [r for r in lines if r["computed_at"] < cut]
        carbon += await conn.fetch(carbon_sql + "= $1", cut)
        lines += await conn.fetch(lines_sql + "= $1", cut)
    reached = max(r["computed_at"] for r in (*carbon, *lines))
    messages: list[HourlyMessage] = []
    by_time: dict[datetime, tuple[list[HourlyCarbon], list[HourlyLine]]] = {}
    for r in carbon:
        by_time.setdefault(r["computed_at"], ([], []))[0].append(_row(HourlyCarbon, r))
    for r in lines:
        by_time.setdefault(r["computed_at"], ([], []))[1].append(_row(HourlyLine, r))
    for computed_at in sorted(by_time):
        c_rows, l_rows = by_time[computed_at]
        rows: list[HourlyCarbon | HourlyLine] = [*c_rows, *l_rows]
        for chunk in _chunks(rows, HOURLY_ROWS_PER_MESSAGE):
            messages.append(
                HourlyMessage(
                    site=site,
                    computed_at=computed_at,
                    carbon=tuple(r for r in chunk if isinstance(r, HourlyCarbon)),
                    lines=tuple(r for r in chunk if isinstance(r, HourlyLine)),
                )
            )
    return messages, datetime_to_us(reached)


async def read_alerts(
    conn: asyncpg.Connection | asyncpg.Pool,
    site: str,
    after_event_id: int,
    *,
    lookback: timedelta = ALERT_LOOKBACK,
) -> tuple[list[AlertsMessage], int]:
    """Alert episodes changed after ``after_event_id``, or recorded within
    ``lookback`` of now whatever their id, in their current state."""
    rows = await conn.fetch(
        """SELECT a.id, r.revision, a.rule, a.kind, a.subject, a.episode, a.severity,
                  a.state, a.since, a.fired_at, a.resolved_at, a.acked_at,
                  a.message_en, a.message_zh
             FROM (SELECT alert_id, max(id) AS revision FROM alert_events
                    WHERE id > $1 OR recorded_at > now() - $3::interval
                    GROUP BY alert_id) r
             JOIN alerts a ON a.id = r.alert_id
            ORDER BY r.revision LIMIT $2""",
        after_event_id,
        READ_LIMIT,
        lookback,
    )
    if not rows:
        return [], after_event_id
    records = [
        AlertRecord(
            alert_id=r["id"],
            revision=r["revision"],
            rule=r["rule"],
            kind=r["kind"],
            subject=r["subject"],
            episode=r["episode"],
            severity=r["severity"],
            state=r["state"],
            since=r["since"],
            fired_at=r["fired_at"],
            resolved_at=r["resolved_at"],
            acked_at=r["acked_at"],
            message_en=r["message_en"],
            message_zh=r["message_zh"],
        )
        for r in rows
    ]
    messages = [
        AlertsMessage(site=site, alerts=tuple(chunk))
        for chunk in _chunks(records, ALERTS_PER_MESSAGE)
    ]
    return messages, max(after_event_id, *(r.revision for r in records))


async def read_events(
    conn: asyncpg.Connection | asyncpg.Pool, site: str, after_id: int
) -> tuple[list[EventsMessage], int]:
    """Device events stored after id ``after_id``, oldest first."""
    rows = await conn.fetch(
        """SELECT e.id, e.ts, d.key AS device, e.kind, e.detail
             FROM device_events e JOIN devices d ON d.id = e.device_id
            WHERE e.id > $1 ORDER BY e.id LIMIT $2""",
        after_id,
        READ_LIMIT,
    )
    if not rows:
        return [], after_id
    records = [
        DeviceEventRecord(
            event_id=r["id"], ts=r["ts"], device=r["device"], kind=r["kind"], detail=r["detail"]
        )
        for r in rows
    ]
    messages = [
        EventsMessage(site=site, events=tuple(chunk))
        for chunk in _chunks(records, EVENTS_PER_MESSAGE)
    ]
    return messages, records[-1].event_id


def _json(value: Any) -> dict[str, Any]:
    parsed = json.loads(value) if isinstance(value, str) else value
    return dict(parsed)


async def read_accounts(
    conn: asyncpg.Connection | asyncpg.Pool, site: str, after_id: int
) -> tuple[list[AccountsMessage], int]:
    """Period accounts issued after id ``after_id``, oldest first."""
    rows = await conn.fetch(
        "SELECT id, period, issued_at, issued_by, supersedes, account FROM account_reports "
        "WHERE id > $1 ORDER BY id LIMIT 100",
        after_id,
    )
    if not rows:
        return [], after_id
    records = [
        IssuedAccount(
            report_id=r["id"],
            period=r["period"],
            issued_at=r["issued_at"].astimezone(UTC),
            issued_by=r["issued_by"],
            supersedes=r["supersedes"],
            account=_json(r["account"]),
        )
        for r in rows
    ]
    messages = [
        AccountsMessage(site=site, accounts=tuple(chunk))
        for chunk in _chunks(records, ACCOUNTS_PER_MESSAGE)
    ]
    return messages, records[-1].report_id
