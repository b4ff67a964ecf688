"""What the uplink reads back from the gateway's database (:mod:`zerocarbon.uplink.mirror`),
on the real schema: hourly rows after their ``computed_at`` cursor, alert episodes
after their newest event, device events and issued accounts after their id, and the
messages they are cut into.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import asyncpg

from zerocarbon.batch import datetime_to_us
from zerocarbon.rows import HourlyCarbon, HourlyLine
from zerocarbon.storage.alerts import AlertChange, acknowledge, record_change
from zerocarbon.storage.database import Registry
from zerocarbon.storage.hourly import upsert_hourly
from zerocarbon.storage.uplink_cursors import load_cursors, save_cursor
from zerocarbon.uplink import mirror
from zerocarbon.uplink.messages import HourlyMessage

NO_LOOKBACK = timedelta(0)  # read strictly after the cursor
SITE = "plant-1"
H0 = datetime(2026, 6, 1, tzinfo=UTC)
NO_REGISTRY = Registry(device_ids={}, metric_ids={})  # no energy rows are written


def carbon_row(i: int) -> HourlyCarbon:
    return HourlyCarbon(
        hour_start=H0 + timedelta(hours=i),
        grid_import_kwh=100.0 + i,
        grid_export_kwh=0.0,
        pv_kwh=10.0,
        wind_kwh=0.0,
        battery_charge_kwh=0.0,
        battery_discharge_kwh=0.0,
        load_kwh=110.0 + i,
        submetered_kwh=100.0,
        unmetered_kwh=10.0 + i,
        production_units=5.0,
        scope1_kg=0.0,
        scope2_location_kg=55.0,
        scope2_market_kg=50.0,
        green_contract_kwh=0.0,
        certificate_kwh=0.0,
        cfe_kwh=10.0,
        location_factor_kg_per_kwh=0.55,
        market_factor_kg_per_kwh=0.5,
        intensity_kg_per_kwh=0.5,
        market_intensity_kg_per_kwh=None,
        cfe_share=0.09,
        estimated_share=0.0,
        missing_devices=0,
        submeter_mismatches=0,
        complete=True,
    )


def line_row(i: int, line: str = "press") -> HourlyLine:
    return HourlyLine(
        hour_start=H0 + timedelta(hours=i),
        line=line,
        energy_kwh=40.0 + i,
        production_units=4.0,
        kwh_per_unit=10.0,
        scope2_location_kg=22.0,
        scope2_market_kg=20.0,
        kg_per_unit=None,
        estimated_share=0.0,
    )


async def write_hourly(
    conn: asyncpg.Connection, carbon: Sequence[HourlyCarbon], lines: Sequence[HourlyLine] = ()
) -> datetime:
    """Upsert the rows in one transaction (as the carbon service does); their
    ``computed_at``."""
    await upsert_hourly(conn, NO_REGISTRY, carbon, [], lines)
    computed_at: datetime = await conn.fetchval(
        "SELECT max(computed_at) FROM (SELECT computed_at FROM hourly_carbon "
        "UNION ALL SELECT computed_at FROM hourly_line) t"
    )
    return computed_at


def rows_of(messages: list[HourlyMessage]) -> tuple[list[HourlyCarbon], list[HourlyLine]]:
    return [c for m in messages for c in m.carbon], [li for m in messages for li in m.lines]


async def test_hourly_rows_after_the_cursor(pg_conn: asyncpg.Connection) -> None:
    assert await mirror.read_hourly(pg_conn, SITE, 0) == ([], 0)
    first = await write_hourly(pg_conn, [carbon_row(0), carbon_row(1)], [line_row(0)])
    messages, reached = await mirror.read_hourly(pg_conn, SITE, 0)
    assert reached == datetime_to_us(first)
    assert [(m.site, m.computed_at) for m in messages] == [(SITE, first)]
    assert rows_of(messages) == ([carbon_row(0), carbon_row(1)], [line_row(0)])
    # nothing new after the cursor: nothing to send, the cursor stays
    assert await mirror.read_hourly(pg_conn, SITE, reached) == ([], reached)

    # hour 1 recomputed (late data), hour 2 new: only those, at their new computed_at
    changed = replace(carbon_row(1), grid_import_kwh=999.0)
    second = await write_hourly(pg_conn, [changed, carbon_row(2)])
    assert second > first
    messages, reached2 = await mirror.read_hourly(pg_conn, SITE, reached)
    assert reached2 == datetime_to_us(second)
    assert [m.computed_at for m in messages] == [second]
    assert rows_of(messages) == ([changed, carbon_row(2)], [])

    # read from the start: one message per computed_at, oldest first
    messages, _ = await mirror.read_hourly(pg_conn, SITE, 0)
    assert [m.computed_at for m in messages] == [first, second]
    assert rows_of(messages) == ([carbon_row(0), changed, carbon_row(2)], [line_row(0)])


async def test_hourly_rows_are_cut_into_messages_of_200(pg_conn: asyncpg.Connection) -> None:
    carbon = [carbon_row(i) for i in range(300)]
    lines = [line_row(i, line) for i in range(75) for line in ("press", "paint")]
    computed_at = await write_hourly(pg_conn, carbon, lines)
    messages, reached = await mirror.read_hourly(pg_conn, SITE, 0)
    assert reached == datetime_to_us(computed_at)
    sizes = [len(m.carbon) + len(m.lines) for m in messages]
    assert sizes == [mirror.HOURLY_ROWS_PER_MESSAGE] * 2 + [50]
    got_carbon, got_lines = rows_of(messages)
    assert sorted(r.hour_start for r in got_carbon) == [r.hour_start for r in carbon]
    assert sorted((r.hour_start, r.line) for r in got_lines) == sorted(
        (r.hour_start, r.line) for r in lines
    )


async def test_a_full_read_never_moves_the_cursor_past_unread_rows(
    pg_conn: asyncpg.Connection,
) -> None:
    """With more rows than a read takes: rows computed together are read whole, and
    the other table's newer rows do not carry the cursor past this table's unread ones."""
    times = [await write_hourly(pg_conn, [carbon_row(i)]) for i in range(5)]
    together = await write_hourly(pg_conn, [], [line_row(i) for i in range(4)])
    seen_carbon: list[HourlyCarbon] = []
    seen_lines: list[HourlyLine] = []
    cursor, rounds = 0, 0
    while True:
        messages, cursor_next = await mirror.read_hourly(pg_conn, SITE, cursor, read_limit=3)
        if not messages:
            assert cursor_next == cursor
            break
        assert cursor_next > cursor
        carbon, lines = rows_of(messages)
        seen_carbon += carbon
        seen_lines += lines
        cursor, rounds = cursor_next, rounds + 1
    assert seen_carbon == [carbon_row(i) for i in range(5)]
    assert seen_lines == [line_row(i) for i in range(4)]  # four of one time, limit three
    assert cursor == datetime_to_us(together) and together > times[-1]
    assert rounds > 1


def change(state: str, ts: datetime, subject: str = "grid", episode: int = 1) -> AlertChange:
    return AlertChange(
        rule="high-demand",
        kind="threshold",
        subject=subject,
        episode=episode,
        state=state,  # type: ignore[arg-type]
        severity="warning",
        ts=ts,
        since=ts - timedelta(minutes=5),
        message_en=f"demand {state}",
        message_zh=f"需量 {state}",
        evidence={"value": 812.5},
    )


async def test_an_alert_episode_is_sent_again_when_it_changes(pg_conn: asyncpg.Connection) -> None:
    t = datetime(2026, 6, 1, 8, tzinfo=UTC)
    alert_id = await record_change(pg_conn, change("firing", t), [], t)
    assert alert_id is not None
    messages, cursor = await mirror.read_alerts(pg_conn, SITE, 0)
    [message] = messages
    [fired] = message.alerts
    assert message.site == SITE and cursor == fired.revision
    assert (fired.alert_id, fired.state, fired.fired_at, fired.resolved_at) == (
        alert_id,
        "firing",
        t,
        None,
    )
    assert fired.message_zh == "需量 firing" and fired.acked_at is None
    assert await mirror.read_alerts(pg_conn, SITE, cursor, lookback=NO_LOOKBACK) == ([], cursor)

    # acknowledged: the same episode again, a newer revision
    acked_at = t + timedelta(minutes=3)
    await acknowledge(pg_conn, alert_id, "operator", "on it", acked_at)
    [message], cursor2 = await mirror.read_alerts(pg_conn, SITE, cursor, lookback=NO_LOOKBACK)
    [acked] = message.alerts
    assert acked.alert_id == alert_id and acked.revision == cursor2 > cursor
    assert acked.acked_at == acked_at and acked.state == "firing"

    # resolved, and another alert fires: each once, in the order of their change
    await record_change(pg_conn, change("resolved", t + timedelta(minutes=10)), [], t)
    other = await record_change(pg_conn, change("firing", t, subject="pv"), [], t)
    [message], cursor3 = await mirror.read_alerts(pg_conn, SITE, cursor2, lookback=NO_LOOKBACK)
    assert [(a.alert_id, a.state) for a in message.alerts] == [
        (alert_id, "resolved"),
        (other, "firing"),
    ]
    assert message.alerts[0].resolved_at == t + timedelta(minutes=10)
    assert cursor3 == message.alerts[-1].revision
    # from the start: each episode once, in its current state
    [message], _ = await mirror.read_alerts(pg_conn, SITE, 0)
    assert [(a.alert_id, a.state, a.revision) for a in message.alerts] == [
        (alert_id, "resolved", message.alerts[0].revision),
        (other, "firing", cursor3),
    ]
    assert message.alerts[0].acked_at == acked_at


async def test_an_alert_change_committed_late_is_still_sent(pg_conn: asyncpg.Connection) -> None:
    """An event id below the cursor (another writer's transaction committed after a
    higher id was read) is read again within the lookback, not skipped."""
    t = datetime(2026, 6, 1, 8, tzinfo=UTC)
    alert_id = await record_change(pg_conn, change("firing", t), [], t)
    assert alert_id is not None
    _, cursor = await mirror.read_alerts(pg_conn, SITE, 0)
    ahead = cursor + 10  # as if ids up to here had been read already
    await acknowledge(pg_conn, alert_id, "operator", "late", t + timedelta(minutes=1))
    assert await mirror.read_alerts(pg_conn, SITE, ahead, lookback=NO_LOOKBACK) == ([], ahead)
    [message], reached = await mirror.read_alerts(pg_conn, SITE, ahead)
    [late] = message.alerts
    assert late.alert_id == alert_id and late.acked_at is not None
    assert reached == ahead  # the cursor never moves back


async def test_alerts_are_cut_into_messages_of_200(pg_conn: asyncpg.Connection) -> None:
    t = datetime(2026, 6, 1, 8, tzinfo=UTC)
    for i in range(450):
        await record_change(pg_conn, change("firing", t, subject=f"meter-{i:03d}"), [], t)
    messages, cursor = await mirror.read_alerts(pg_conn, SITE, 0)
    assert [len(m.alerts) for m in messages] == [200, 200, 50]
    revisions = [a.revision for m in messages for a in m.alerts]
    assert revisions == sorted(revisions) and cursor == revisions[-1]
    assert len({a.alert_id for m in messages for a in m.alerts}) == 450


async def add_devices(conn: asyncpg.Connection, *keys: str) -> dict[str, int]:
    ids = {}
    for key in keys:
        ids[key] = await conn.fetchval(
            "INSERT INTO devices (key, role, protocol) VALUES ($1, 'grid', 'mqtt') RETURNING id",
            key,
        )
    return ids


async def add_events(
    conn: asyncpg.Connection, device_id: int, count: int, kind: str = "offline"
) -> None:
    await conn.execute(
        "INSERT INTO device_events (ts, device_id, kind, detail) "
        "SELECT $1::timestamptz + make_interval(secs => i), $2, $3, 'detail ' || i "
        "FROM generate_series(1, $4) i",
        H0,
        device_id,
        kind,
        count,
    )


async def test_device_events_by_id_with_device_keys(pg_conn: asyncpg.Connection) -> None:
    devices = await add_devices(pg_conn, "grid_meter", "pv_inverter")
    await add_events(pg_conn, devices["grid_meter"], 2, "offline")
    await add_events(pg_conn, devices["pv_inverter"], 1, "online")
    [message], cursor = await mirror.read_events(pg_conn, SITE, 0)
    assert message.site == SITE
    assert [(e.device, e.kind, e.detail) for e in message.events] == [
        ("grid_meter", "offline", "detail 1"),
        ("grid_meter", "offline", "detail 2"),
        ("pv_inverter", "online", "detail 1"),
    ]
    ids = [e.event_id for e in message.events]
    assert ids == sorted(ids) and cursor == ids[-1]
    assert message.events[0].ts == H0 + timedelta(seconds=1)
    assert await mirror.read_events(pg_conn, SITE, cursor) == ([], cursor)

    await add_events(pg_conn, devices["pv_inverter"], 2_500, "exception")
    messages, cursor2 = await mirror.read_events(pg_conn, SITE, cursor)
    assert [len(m.events) for m in messages] == [1_000, 1_000, 500]
    new_ids = [e.event_id for m in messages for e in m.events]
    assert new_ids[0] > cursor and new_ids == sorted(new_ids) and cursor2 == new_ids[-1]
    assert {e.device for m in messages for e in m.events} == {"pv_inverter"}


async def add_report(conn: asyncpg.Connection, period: str, supersedes: int | None) -> int:
    report_id: int = await conn.fetchval(
        "INSERT INTO account_reports (period, issued_at, issued_by, account, factor_revisions, "
        "supersedes) VALUES ($1, $2, 'energy manager', $3::jsonb, '{}'::jsonb, $4) RETURNING id",
        period,
        datetime(2026, 7, 1, 9, tzinfo=UTC),
        json.dumps({"period": period, "scope2_location_kg": 1234.5, "lines": ["press"]}),
        supersedes,
    )
    return report_id


async def test_issued_accounts_by_id(pg_conn: asyncpg.Connection) -> None:
    first = await add_report(pg_conn, "2026-06", None)
    second = await add_report(pg_conn, "2026-06", first)
    [message], cursor = await mirror.read_accounts(pg_conn, SITE, 0)
    assert cursor == second
    assert [(a.report_id, a.period, a.supersedes) for a in message.accounts] == [
        (first, "2026-06", None),
        (second, "2026-06", first),
    ]
    account = message.accounts[0]
    assert account.issued_at == datetime(2026, 7, 1, 9, tzinfo=UTC)
    assert account.issued_at.tzinfo == UTC and account.issued_by == "energy manager"
    assert account.account == {
        "period": "2026-06",
        "scope2_location_kg": 1234.5,
        "lines": ["press"],
    }
    assert await mirror.read_accounts(pg_conn, SITE, cursor) == ([], cursor)

    ids = [await add_report(pg_conn, f"2026-{m:02d}", None) for m in range(1, 10)]
    messages, cursor2 = await mirror.read_accounts(pg_conn, SITE, cursor)
    assert [len(m.accounts) for m in messages] == [mirror.ACCOUNTS_PER_MESSAGE] * 2 + [1]
    assert [a.report_id for m in messages for a in m.accounts] == ids and cursor2 == ids[-1]


async def test_cursors_only_move_forward(pg_conn: asyncpg.Connection) -> None:
    assert await load_cursors(pg_conn) == {}
    await save_cursor(pg_conn, "events", 10)
    await save_cursor(pg_conn, "events", 7)  # an older round's save, late
    await save_cursor(pg_conn, "hourly", 1_780_000_000_000_000)
    assert await load_cursors(pg_conn) == {"events": 10, "hourly": 1_780_000_000_000_000}
