"""The outbox and its dispatcher on real PostgreSQL and a real HTTP receiver: a
notification is stored once, retried with back-off while its channel is down, and
delivered once when it comes back; rows survive a dispatcher restart."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta

import aiomqtt
import asyncpg
import pytest

from tests.alerts.receivers import HttpReceiver, SmtpReceiver
from tests.ingest.clocks import ManualClock
from zerocarbon.alerts.channels import (
    Channel,
    EmailChannel,
    MqttChannel,
    WebhookChannel,
    WeComChannel,
)
from zerocarbon.alerts.dispatcher import Dispatcher, backoff_s
from zerocarbon.alerts.notify import AlertState, Notification
from zerocarbon.ingest.mqtt.broker import local_broker
from zerocarbon.netutil import free_tcp_port
from zerocarbon.storage import outbox

START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
CAP_S = 600.0


def _alert(n: int = 0, state: AlertState = AlertState.FIRING) -> Notification:
    return Notification(
        alert_key=f"offline/meter-{n}",
        rule="meter-offline",
        kind="offline",
        state=state,
        severity="critical",
        ts=START - timedelta(seconds=30),
        message_zh=f"电表 {n} 离线",
        evidence={"device_id": n},
    )


@pytest.fixture
async def pool(pg_url: str, pg_conn: asyncpg.Connection) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(pg_url, min_size=1, max_size=4) as made:
        yield made


def _dispatcher(
    pool: asyncpg.Pool, channels: Mapping[str, Channel], clock: ManualClock
) -> Dispatcher:
    return Dispatcher(pool, channels, clock, base_backoff_s=10.0, max_backoff_s=CAP_S, seed=7)


async def _row(conn: asyncpg.Connection) -> asyncpg.Record:
    row = await conn.fetchrow(
        "SELECT attempts, next_attempt_at, sent_at, last_error FROM notification_outbox"
    )
    assert row is not None
    return row


def test_backoff_doubles_is_capped_and_jittered() -> None:
    rng = random.Random(1)
    delays = [backoff_s(n, 10.0, 100.0, rng) for n in range(1, 8)]
    for n, d in enumerate(delays, start=1):
        full = min(100.0, 10.0 * 2 ** (n - 1))
        assert 0.5 * full <= d < full
    assert len(set(delays)) == len(delays)  # jitter: no two equal
    again = random.Random(1)
    assert [backoff_s(n, 10.0, 100.0, again) for n in range(1, 8)] == delays  # seeded


async def test_enqueue_twice_stores_once(pg_conn: asyncpg.Connection) -> None:
    alert = _alert()
    assert await outbox.enqueue(pg_conn, alert, ["hook", "wecom"], START) == 2
    assert await outbox.enqueue(pg_conn, alert, ["hook", "wecom"], START) == 0
    resolved = _alert(state=AlertState.RESOLVED)
    assert await outbox.enqueue(pg_conn, resolved, ["hook"], START) == 1
    assert await outbox.pending_count(pg_conn) == 3


async def test_delivered_once_after_the_channel_was_down(
    pool: asyncpg.Pool, pg_conn: asyncpg.Connection
) -> None:
    """Connection refused for several rounds, then 503 twice, then accepted: one
    delivery, no request while a retry is not due, none after it was delivered."""
    clock = ManualClock(START)
    port = free_tcp_port()
    dispatcher = _dispatcher(
        pool, {"hook": WebhookChannel("hook", f"http://127.0.0.1:{port}/a")}, clock
    )
    alert = _alert()
    await outbox.enqueue(pg_conn, alert, ["hook"], clock.now())
    await outbox.enqueue(pg_conn, alert, ["hook"], clock.now())  # a second enqueue: ignored

    for attempt in range(1, 4):  # nobody listens
        assert await dispatcher.run_once() == 0
        row = await _row(pg_conn)
        assert row["attempts"] == attempt and row["sent_at"] is None
        assert "Connect" in row["last_error"]
        wait_s = (row["next_attempt_at"] - clock.now()).total_seconds()
        full_s = 10.0 * 2 ** (attempt - 1)
        assert 0.5 * full_s <= wait_s <= full_s
        clock.advance(wait_s - 1.0)
        assert await dispatcher.run_once() == 0  # not yet due: not tried
        assert (await _row(pg_conn))["attempts"] == attempt
        clock.advance(1.0)

    async with HttpReceiver([(503, {}), (503, {}), (200, {})], port=port) as rx:
        for _ in range(10):
            await dispatcher.run_once()
            clock.advance(CAP_S)
        assert len(rx.requests) == 3
    assert {r.json()["change_id"] for r in rx.requests} == {alert.change_id}
    row = await _row(pg_conn)
    assert row["attempts"] == 6 and row["sent_at"] is not None and row["last_error"] is None
    assert dispatcher.stats.sent == 1 and dispatcher.stats.failed_attempts == 5
    assert await outbox.pending_count(pg_conn) == 0


async def test_wecom_errcode_is_retried_until_zero(
    pool: asyncpg.Pool, pg_conn: asyncpg.Connection
) -> None:
    clock = ManualClock(START)
    answers = [(200, {"errcode": -1, "errmsg": "system busy"})] * 2 + [
        (200, {"errcode": 0, "errmsg": "ok"})
    ]
    async with HttpReceiver(answers) as rx:
        channel = WeComChannel("wecom", "k", base_url=rx.url)
        dispatcher = _dispatcher(pool, {"wecom": channel}, clock)
        await outbox.enqueue(pg_conn, _alert(), ["wecom"], clock.now())
        delivered = 0
        for _ in range(6):
            delivered += await dispatcher.run_once()
            clock.advance(CAP_S)
    assert delivered == 1 and len(rx.requests) == 3


async def test_rows_survive_a_dispatcher_restart(
    pg_url: str, pool: asyncpg.Pool, pg_conn: asyncpg.Connection
) -> None:
    clock = ManualClock(START)
    port = free_tcp_port()
    channels: dict[str, Channel] = {"hook": WebhookChannel("hook", f"http://127.0.0.1:{port}/")}
    for n in range(3):
        await outbox.enqueue(pg_conn, _alert(n), ["hook"], clock.now())
    first = _dispatcher(pool, channels, clock)
    assert await first.run_once() == 0  # channel down: all three wait
    assert await outbox.pending_count(pg_conn) == 3

    # a new process: a pool and a dispatcher of its own, the same table
    clock.advance(CAP_S)
    async with (
        asyncpg.create_pool(pg_url, min_size=1, max_size=2) as pool2,
        HttpReceiver([(200, {})], port=port) as rx,
    ):
        second = _dispatcher(pool2, channels, clock)
        assert await second.run_once() == 3
        assert await second.run_once() == 0
    assert sorted(r.json()["evidence"]["device_id"] for r in rx.requests) == [0, 1, 2]
    assert await outbox.pending_count(pg_conn) == 0


async def test_two_dispatchers_never_send_a_row_twice(
    pool: asyncpg.Pool, pg_conn: asyncpg.Connection
) -> None:
    clock = ManualClock(START)
    async with HttpReceiver([(200, {})]) as rx:
        channels: dict[str, Channel] = {"hook": WebhookChannel("hook", rx.url)}
        for n in range(8):
            await outbox.enqueue(pg_conn, _alert(n), ["hook"], clock.now())
        a, b = _dispatcher(pool, channels, clock), _dispatcher(pool, channels, clock)
        counts = await asyncio.gather(a.run_once(), b.run_once())
    assert sum(counts) == 8
    ids = [r.json()["change_id"] for r in rx.requests]
    assert len(ids) == 8 and len(set(ids)) == 8


async def test_unknown_channel_waits_with_an_error(
    pool: asyncpg.Pool, pg_conn: asyncpg.Connection
) -> None:
    clock = ManualClock(START)
    await outbox.enqueue(pg_conn, _alert(), ["gone"], clock.now())
    assert await _dispatcher(pool, {}, clock).run_once() == 0
    row = await _row(pg_conn)
    assert row["sent_at"] is None and "no channel named 'gone'" in row["last_error"]


async def test_run_delivers_until_stopped_and_calls_the_hook(
    pool: asyncpg.Pool, pg_conn: asyncpg.Connection
) -> None:
    clock = ManualClock(START)
    delivered: list[tuple[str, str]] = []
    done = asyncio.Event()

    def hook(notification: Notification, channel: str) -> None:
        delivered.append((notification.change_id, channel))
        done.set()

    async with HttpReceiver([(503, {}), (200, {})]) as rx:
        dispatcher = _dispatcher(pool, {"hook": WebhookChannel("hook", rx.url)}, clock)
        dispatcher.on_delivered = hook
        dispatcher.poll_interval_s = CAP_S  # each round's sleep moves the clock past a retry
        await outbox.enqueue(pg_conn, _alert(), ["hook"], clock.now())
        stop = asyncio.Event()
        task = asyncio.create_task(dispatcher.run(stop))
        await asyncio.wait_for(done.wait(), 10.0)
        stop.set()
        await asyncio.wait_for(task, 10.0)
    assert delivered == [(_alert().change_id, "hook")] and len(rx.requests) == 2


async def test_email_refused_then_accepted_is_sent_once(
    pool: asyncpg.Pool, pg_conn: asyncpg.Connection
) -> None:
    clock = ManualClock(START)
    async with SmtpReceiver(fail_first=2) as rx:
        mail = EmailChannel(
            "mail", "127.0.0.1", rx.port, "zc@plant.example", ("ops@plant.example",)
        )
        dispatcher = _dispatcher(pool, {"mail": mail}, clock)
        await outbox.enqueue(pg_conn, _alert(), ["mail"], clock.now())
        for _ in range(5):
            await dispatcher.run_once()
            clock.advance(CAP_S)
    assert len(rx.messages) == 1 and dispatcher.stats.failed_attempts == 2
    assert "451" in (dispatcher.stats.last_error or "")
    assert (await _row(pg_conn))["attempts"] == 3


async def test_mqtt_broker_down_then_up_is_published_once(
    pool: asyncpg.Pool, pg_conn: asyncpg.Connection
) -> None:
    clock = ManualClock(START)
    port = free_tcp_port()
    channel = MqttChannel("mqtt", "127.0.0.1", port, "zc/alerts", timeout_s=5.0)
    dispatcher = _dispatcher(pool, {"mqtt": channel}, clock)
    await outbox.enqueue(pg_conn, _alert(), ["mqtt"], clock.now())
    for _ in range(2):  # no broker yet
        assert await dispatcher.run_once() == 0
        clock.advance(CAP_S)
    async with (
        local_broker("127.0.0.1", port),
        aiomqtt.Client("127.0.0.1", port=port) as sub,
    ):
        await sub.subscribe("zc/alerts", qos=1)
        assert await dispatcher.run_once() == 1
        clock.advance(CAP_S)
        assert await dispatcher.run_once() == 0
        message = await asyncio.wait_for(anext(sub.messages), 10.0)
    assert isinstance(message.payload, bytes)
    assert json.loads(message.payload)["change_id"] == _alert().change_id
    assert (await _row(pg_conn))["attempts"] == 3
