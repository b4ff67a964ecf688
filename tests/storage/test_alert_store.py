"""Alert episodes and their history in ``alerts`` / ``alert_events`` on real PostgreSQL:
each change stored and notified once, replays and concurrent writers included; the
listing's filters; acknowledgement kept once; events read in id order without losing
one committed late."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg
import pytest

from zerocarbon.alerts.notify import AlertState
from zerocarbon.storage import alerts
from zerocarbon.storage.alerts import AlertChange

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)  # the outbox rows' creation time
M = timedelta(minutes=1)
CHANNELS = ("hook", "wecom")


def change(
    state: Literal["firing", "resolved"] = "firing",
    *,
    rule: str = "grid_demand",
    subject: str = "site",
    episode: int = 1,
    at_min: int = 0,
    **fields: Any,
) -> AlertChange:
    base = AlertChange(
        rule=rule,
        kind="demand",
        subject=subject,
        episode=episode,
        state=state,
        severity="warning",
        ts=T0 + at_min * M,
        since=T0 + (at_min - 2) * M,
        message_en=f"{rule} {state}",
        message_zh=f"{rule} {'告警' if state == 'firing' else '恢复'}",
        evidence={"demand_kw": 520.0 if state == "firing" else 470.0, "limit_kw": 500.0},
    )
    return replace(base, **fields)


@pytest.fixture
async def conn(pg_conn: asyncpg.Connection) -> asyncpg.Connection:
    await pg_conn.execute("TRUNCATE alerts, alert_events RESTART IDENTITY CASCADE")
    return pg_conn


async def outbox_keys(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch("SELECT dedup_key FROM notification_outbox ORDER BY id")
    return [r["dedup_key"] for r in rows]


def test_notification_carries_the_subject_episode_and_since() -> None:
    n = change(episode=3).notification()
    assert n.alert_key == "grid_demand/site"
    assert (n.rule, n.kind, n.state, n.severity, n.ts) == (
        "grid_demand",
        "demand",
        AlertState.FIRING,
        "warning",
        T0,
    )
    assert n.evidence == {
        "demand_kw": 520.0,
        "limit_kw": 500.0,
        "subject": "site",
        "episode": 3,
        "since": "2026-05-01T07:58:00+00:00",
    }
    assert (n.message_en, n.message_zh) == ("grid_demand firing", "grid_demand 告警")


async def test_firing_then_resolved_is_one_episode_notified_once_each(
    conn: asyncpg.Connection,
) -> None:
    fired = change("firing", at_min=0)
    resolved = change("resolved", at_min=30)
    alert_id = await alerts.record_change(conn, fired, CHANNELS, NOW)
    assert alert_id is not None
    assert await alerts.record_change(conn, fired, CHANNELS, NOW) is None  # a replay
    assert await alerts.record_change(conn, resolved, CHANNELS, NOW) == alert_id
    assert await alerts.record_change(conn, resolved, CHANNELS, NOW) is None
    assert await alerts.record_change(conn, fired, CHANNELS, NOW) is None  # late replay

    keys = await outbox_keys(conn)
    assert keys == [
        f"{fired.notification().change_id}#hook",
        f"{fired.notification().change_id}#wecom",
        f"{resolved.notification().change_id}#hook",
        f"{resolved.notification().change_id}#wecom",
    ]
    payload = json.loads(
        await conn.fetchval("SELECT payload::text FROM notification_outbox ORDER BY id LIMIT 1")
    )
    assert payload["evidence"]["episode"] == 1 and payload["state"] == "firing"

    a = await alerts.get_alert(conn, alert_id)
    assert a is not None
    assert (a.rule, a.kind, a.subject, a.episode, a.severity, a.state) == (
        "grid_demand",
        "demand",
        "site",
        1,
        "warning",
        "resolved",
    )
    assert (a.since, a.fired_at, a.resolved_at) == (T0 - 2 * M, T0, T0 + 30 * M)
    assert a.evidence == {"demand_kw": 470.0, "limit_kw": 500.0}  # the latest change's
    assert a.message_en == "grid_demand resolved"
    assert [(e.state, e.ts, e.evidence["demand_kw"]) for e in a.events] == [
        ("firing", T0, 520.0),
        ("resolved", T0 + 30 * M, 470.0),
    ]
    assert [e.message_zh for e in a.events] == ["grid_demand 告警", "grid_demand 恢复"]
    assert not a.acked


async def test_concurrent_writers_of_one_change_notify_once(
    pg_url: str, conn: asyncpg.Connection
) -> None:
    others = [await asyncpg.connect(pg_url) for _ in range(4)]
    try:
        fired = change()
        ids = await asyncio.gather(*(alerts.record_change(c, fired, CHANNELS, NOW) for c in others))
    finally:
        for c in others:
            await c.close()
    winners = [i for i in ids if i is not None]
    assert len(winners) == 1 and ids.count(None) == 3
    assert await conn.fetchval("SELECT id FROM alerts") == winners[0]
    assert len(await outbox_keys(conn)) == len(CHANNELS)
    assert await conn.fetchval("SELECT count(*) FROM alert_events") == 1


async def test_a_resolution_without_its_firing_is_kept(conn: asyncpg.Connection) -> None:
    resolved = change("resolved", at_min=30)
    alert_id = await alerts.record_change(conn, resolved, ["hook"], NOW)
    assert alert_id is not None
    a = await alerts.get_alert(conn, alert_id)
    assert a is not None
    assert (a.state, a.fired_at, a.resolved_at) == ("resolved", resolved.since, T0 + 30 * M)

    # the firing stored afterwards gives the episode its start, the state stays resolved
    fired = change("firing", at_min=0)
    assert await alerts.record_change(conn, fired, ["hook"], NOW) == alert_id
    a = await alerts.get_alert(conn, alert_id)
    assert a is not None
    assert (a.state, a.since, a.fired_at, a.resolved_at) == (
        "resolved",
        T0 - 2 * M,
        T0,
        T0 + 30 * M,
    )
    assert a.evidence["demand_kw"] == 470.0
    assert [e.state for e in a.events] == ["resolved", "firing"]  # as recorded
    assert len(await outbox_keys(conn)) == 2


async def test_latest_states_give_the_newest_episode(conn: asyncpg.Connection) -> None:
    assert await alerts.latest_states(conn) == []
    await alerts.record_change(conn, change(episode=1, at_min=0), [], NOW)
    await alerts.record_change(conn, change("resolved", episode=1, at_min=10), [], NOW)
    await alerts.record_change(conn, change(episode=2, at_min=20), [], NOW)
    await alerts.record_change(conn, change(subject="line_a", at_min=5), [], NOW)
    await alerts.record_change(conn, change("resolved", subject="line_a", at_min=9), [], NOW)
    assert await alerts.latest_states(conn) == [
        alerts.StoredAlertState("grid_demand", "line_a", 1, "resolved", T0 + 3 * M, T0 + 9 * M),
        alerts.StoredAlertState("grid_demand", "site", 2, "firing", T0 + 18 * M, T0 + 20 * M),
    ]


@pytest.fixture
async def three(conn: asyncpg.Connection) -> dict[str, int]:
    """demand/site episode 1 (resolved at 30), episode 2 (firing since 60, acked), and
    offline/meter_1 critical (firing since 45)."""
    ids: dict[str, int | None] = {}
    ids["old"] = await alerts.record_change(conn, change(at_min=0), [], NOW)
    await alerts.record_change(conn, change("resolved", at_min=30), [], NOW)
    ids["new"] = await alerts.record_change(conn, change(episode=2, at_min=60), [], NOW)
    ids["meter"] = await alerts.record_change(
        conn,
        change(
            rule="meter_offline", kind="offline", subject="meter_1", severity="critical", at_min=45
        ),
        [],
        NOW,
    )
    assert ids["new"] is not None
    await alerts.acknowledge(conn, ids["new"], "ops", None, T0 + 61 * M)
    return {k: v for k, v in ids.items() if v is not None}


async def listed(conn: asyncpg.Connection, **filters: Any) -> list[int]:
    return [a.id for a in await alerts.list_alerts(conn, **filters)]


async def test_list_filters(conn: asyncpg.Connection, three: dict[str, int]) -> None:
    old, new, meter = three["old"], three["new"], three["meter"]
    assert await listed(conn) == [new, meter, old]  # newest fired first
    assert await listed(conn, status="active") == [new, meter]
    assert await listed(conn, status="resolved") == [old]
    assert await listed(conn, rule="meter_offline") == [meter]
    assert await listed(conn, kind="demand") == [new, old]
    assert await listed(conn, subject="site") == [new, old]
    assert await listed(conn, severity="critical") == [meter]
    assert await listed(conn, acked=True) == [new]
    assert await listed(conn, acked=False) == [meter, old]
    assert await listed(conn, limit=1) == [new]
    # firing at some time in [since, until)
    assert await listed(conn, since=T0 + 31 * M) == [new, meter]
    assert await listed(conn, since=T0 + 30 * M) == [new, meter, old]
    assert await listed(conn, until=T0 + 45 * M) == [old]
    assert await listed(conn, since=T0 + 40 * M, until=T0 + 50 * M) == [meter]
    assert await listed(conn, rule="nope") == []
    full = await alerts.list_alerts(conn, status="resolved")
    assert [e.state for e in full[0].events] == ["firing", "resolved"]
    assert [a.id for a in await alerts.active_alerts(conn)] == [new, meter]


async def test_acknowledge_once(conn: asyncpg.Connection) -> None:
    alert_id = await alerts.record_change(conn, change(), [], NOW)
    assert alert_id is not None
    first = await alerts.acknowledge(conn, alert_id, "alice", "looking at it", T0 + M)
    assert first is not None and first.acked
    assert (first.acked_at, first.acked_by, first.ack_comment) == (T0 + M, "alice", "looking at it")
    again = await alerts.acknowledge(conn, alert_id, "bob", "me too", T0 + 2 * M)
    assert again == first
    assert [(e.state, e.actor, e.evidence) for e in again.events] == [
        ("firing", None, change().evidence),
        ("acknowledged", "alice", {"comment": "looking at it"}),
    ]
    assert await alerts.acknowledge(conn, alert_id + 1, "alice", None, T0) is None
    assert await outbox_keys(conn) == []  # an acknowledgement is not notified


async def test_events_after_in_id_order_with_the_alert(conn: asyncpg.Connection) -> None:
    assert await alerts.last_event_id(conn) == 0
    alert_id = await alerts.record_change(conn, change(), [], NOW)
    assert alert_id is not None
    await alerts.acknowledge(conn, alert_id, "alice", None, T0 + M)
    await alerts.record_change(conn, change("resolved", at_min=5), [], NOW)
    got = await alerts.events_after(conn, 0)
    assert [(g.event.state, g.event.alert_id) for g in got] == [
        ("firing", alert_id),
        ("acknowledged", alert_id),
        ("resolved", alert_id),
    ]
    # each with the alert as it is now
    assert {(g.alert.state, g.alert.acked_by) for g in got} == {("resolved", "alice")}
    assert got[0].alert.events == ()
    last = await alerts.last_event_id(conn)
    assert last == got[-1].event.id
    assert await alerts.events_after(conn, last) == []
    assert [g.event.state for g in await alerts.events_after(conn, 0, limit=2)] == [
        "firing",
        "acknowledged",
    ]


async def test_an_event_committed_late_is_found_by_recorded_since(
    pg_url: str, conn: asyncpg.Connection
) -> None:
    slow = await asyncpg.connect(pg_url)
    try:
        tx = slow.transaction()
        await tx.start()
        await alerts.record_change(slow, change(subject="slow"), [], NOW)  # takes id 1
        await alerts.record_change(conn, change(subject="fast"), [], NOW)  # id 2, committed
        first = await alerts.events_after(conn, 0)
        assert [g.alert.subject for g in first] == ["fast"]
        await tx.commit()
    finally:
        await slow.close()
    watermark = first[-1].event.id
    assert await alerts.events_after(conn, watermark) == []  # by id alone: missed
    since = first[-1].event.recorded_at - timedelta(seconds=30)
    late = await alerts.events_after(conn, watermark, recorded_since=since, seen={watermark})
    assert [g.alert.subject for g in late] == ["slow"]
