"""The gateway's publisher (:mod:`zerocarbon.uplink.publisher`) against a real local
nats-server with JetStream (a :class:`~zerocarbon.uplink.leaf.LeafServer` whose hub is
unreachable: a standalone JetStream server in the site's domain) and the gateway's
real database.

The site stream is created as documented; outbox readings decode back to exactly the
kept batches; a republished payload is dropped by its message id; mirror cursors move
only after the stream's acknowledgement; the local server stopped and started again
loses nothing and stores nothing twice; the heartbeat carries the backlog; the purge
removes only what the center's source consumer had been sent a tick earlier.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, StorageType

from tests.uplink.nats_support import NatsLab, require_nats_server, wait_for
from zerocarbon.batch import ReadingBatch, SeriesRegistry
from zerocarbon.config import SiteConfig, parse_site
from zerocarbon.netutil import free_tcp_port
from zerocarbon.rows import HourlyLine
from zerocarbon.storage.database import Registry, open_pool
from zerocarbon.storage.hourly import upsert_hourly
from zerocarbon.storage.uplink_cursors import load_cursors
from zerocarbon.uplink import publisher as publisher_module
from zerocarbon.uplink import wire
from zerocarbon.uplink.leaf import LeafServer
from zerocarbon.uplink.messages import HourlyMessage, ReadingsMessage, StatusMessage
from zerocarbon.uplink.outbox import UplinkOutbox
from zerocarbon.uplink.publisher import UplinkPublisher
from zerocarbon.uplink.subjects import SITE_STREAM, kind_of, progress_subject

SITE = "plant-1"
DEVICES = ("grid", "pv")
T0_US = 1_780_000_000_000_000
Row = tuple[str, str, int, float, int]  # device, metric, ts [us], value, quality


def site_config() -> SiteConfig:
    return parse_site(
        {
            "site": {"name": "Plant One", "timezone": "Asia/Shanghai"},
            "mqtt": {"url": "mqtt://127.0.0.1:1883"},
            "devices": [
                {
                    "id": device,
                    "role": "grid" if device == "grid" else "pv",
                    "protocol": "mqtt",
                    "topic": f"t/{device}",
                    "fields": {"p": "active_power_kw"},
                }
                for device in DEVICES
            ],
            "uplink": {
                "site": SITE,
                "local_url": "nats://127.0.0.1:4222",  # replaced by the test's server
                "max_backlog_mib": 16,
                "page_url": "http://plant-1.example/",
                "status_interval_s": 3600,  # status ticks are driven by the tests
                "mirror_interval_s": 0.05,
                "message_interval_s": 0,  # each record published as soon as kept
            },
        }
    )


def readings(registry: SeriesRegistry, start: int, rows: int) -> ReadingBatch:
    """``rows`` readings alternating between the devices' power and energy."""
    i = np.arange(start, start + rows)
    metric = np.where(i % 2 == 0, "active_power_kw", "energy_import_kwh")
    device = np.where(i % 3 == 0, "pv", "grid")
    series = [registry.id(str(d), str(m)) for d, m in zip(device, metric, strict=True)]
    return ReadingBatch.of(series, T0_US + i * 1_000_000, i * 0.5, i % 2)


def rows_of_batch(batch: ReadingBatch, registry: SeriesRegistry) -> list[Row]:
    return [
        (*registry.key(s), t, v, q)
        for s, t, v, q in zip(
            batch.series.tolist(),
            batch.ts_us.tolist(),
            batch.value.tolist(),
            batch.quality.tolist(),
            strict=True,
        )
    ]


def rows_of_message(msg: ReadingsMessage) -> list[Row]:
    return [
        (*msg.catalog[s], t, v, q)
        for s, t, v, q in zip(
            msg.series.tolist(),
            msg.ts_us.tolist(),
            msg.value.tolist(),
            msg.quality.tolist(),
            strict=True,
        )
    ]


@dataclass(slots=True)
class StoredMessage:
    seq: int
    subject: str
    msg_id: str
    data: bytes


async def stream_messages(js: JetStreamContext) -> list[StoredMessage]:
    """Every message the site stream holds, in order."""
    state = (await js.stream_info(SITE_STREAM)).state
    out: list[StoredMessage] = []
    if not state.messages:
        return out
    for seq in range(state.first_seq, state.last_seq + 1):
        raw = await js.get_msg(SITE_STREAM, seq)
        assert raw.subject is not None and raw.data is not None
        msg_id = (raw.headers or {}).get("Nats-Msg-Id", "")
        out.append(StoredMessage(seq, raw.subject, msg_id, raw.data))
    return out


def published_rows(messages: list[StoredMessage]) -> list[Row]:
    rows: list[Row] = []
    for m in messages:
        if kind_of(m.subject) == "readings":
            decoded = wire.decode("readings", SITE, m.data)
            assert isinstance(decoded, ReadingsMessage)
            rows += rows_of_message(decoded)
    return rows


@pytest.fixture
def publish_timeout(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A publish to a server that went away fails after 1 s, not 10 s."""
    monkeypatch.setattr(publisher_module, "PUBLISH_TIMEOUT_S", 1.0)
    yield


@dataclass(slots=True)
class Gateway:
    leaf: LeafServer
    site: SiteConfig
    registry: SeriesRegistry
    outbox: UplinkOutbox
    pool: asyncpg.Pool
    publisher: UplinkPublisher
    nc: NatsClient
    js: JetStreamContext


@pytest.fixture
async def gateway(
    pg_conn: asyncpg.Connection, pg_url: str, tmp_path: Path, publish_timeout: None
) -> AsyncIterator[Gateway]:
    binary = require_nats_server()
    async with NatsLab(binary) as lab:
        # a hub nobody listens on: the leaf is a JetStream server of its own
        leaf = await lab.leaf(SITE, "unused", [f"nats-leaf://127.0.0.1:{free_tcp_port()}"])
        site = site_config()
        assert site.uplink is not None
        registry = SeriesRegistry.for_site(site)
        outbox = UplinkOutbox(tmp_path / "outbox", registry, quota_bytes=64 << 20)
        pool = await open_pool(pg_url)
        publisher = UplinkPublisher(
            site,
            site.uplink,
            registry,
            outbox,
            pool,
            local_url=leaf.client_url,
            retry_min_s=0.05,
            retry_max_s=0.2,
        )
        nc = await lab.client(leaf.client_url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
        try:
            yield Gateway(leaf, site, registry, outbox, pool, publisher, nc, nc.jetstream())
        finally:
            await publisher.close()
            outbox.close()
            await pool.close()


@contextlib.asynccontextmanager
async def running(loop: Coroutine[Any, Any, None]) -> AsyncIterator[asyncio.Task[None]]:
    """``loop`` as a task, cancelled at the end."""
    task = asyncio.create_task(loop)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_readings_are_published_as_stored_once_each(gateway: Gateway) -> None:
    g = gateway
    batches = [
        readings(g.registry, 0, 10),
        readings(g.registry, 10, 7_000),
        readings(g.registry, 7_010, 3),
    ]
    for b in batches:
        await g.outbox.keep(b)
    async with running(g.publisher.run_readings()):
        await wait_for(lambda: g.outbox.depth_readings == 0, "the outbox published")

    info = await g.js.stream_info(SITE_STREAM)
    assert info.config.subjects == [f"zc.{SITE}.>"]
    assert info.config.storage == StorageType.FILE
    assert info.config.discard == DiscardPolicy.NEW
    assert info.config.max_bytes == 16 << 20
    messages = await stream_messages(g.js)
    # the records are joined, then cut at wire.MAX_ROWS_PER_MESSAGE rows a message
    assert [m.subject for m in messages] == [f"zc.{SITE}.readings"] * 2
    sizes = [len(published_rows([m])) for m in messages]
    assert sizes == [wire.MAX_ROWS_PER_MESSAGE, 7_013 - wire.MAX_ROWS_PER_MESSAGE]
    expected = [row for b in batches for row in rows_of_batch(b, g.registry)]
    assert published_rows(messages) == expected
    assert g.publisher.stats.readings_published == 7_013
    assert g.publisher.stats.messages_published == 2
    assert all(m.msg_id == wire.message_id(SITE, "readings", m.data) for m in messages)

    # the same payloads again (a retry after a lost acknowledgement): dropped by id
    assert await g.publisher._publish("readings", [m.data for m in messages])
    assert g.publisher.stats.duplicates == 2
    assert (await g.js.stream_info(SITE_STREAM)).state.messages == 2


async def test_rows_of_removed_devices_are_left_out(gateway: Gateway, tmp_path: Path) -> None:
    """Outbox records of a device since removed from the site file are not sent."""
    g = gateway
    g.outbox.close()
    old = SeriesRegistry(["boiler", *DEVICES])
    outbox = UplinkOutbox(tmp_path / "old-outbox", old, quota_bytes=16 << 20)
    boiler = ReadingBatch.of([old.id("boiler", "active_power_kw")], [T0_US], [1.0])
    await outbox.keep(boiler)
    await outbox.keep(
        ReadingBatch.of([old.id("pv", "active_power_kw")] * 2, [T0_US, T0_US + 1], [2.0, 3.0])
    )
    outbox.close()
    g.outbox = UplinkOutbox(tmp_path / "old-outbox", g.registry, quota_bytes=16 << 20)
    g.publisher.outbox = g.outbox
    async with running(g.publisher.run_readings()):
        await wait_for(lambda: g.outbox.depth_readings == 0, "the outbox published")
    rows = published_rows(await stream_messages(g.js))
    assert rows == [
        ("pv", "active_power_kw", T0_US, 2.0, 0),
        ("pv", "active_power_kw", T0_US + 1, 3.0, 0),
    ]


def line_row(i: int) -> HourlyLine:
    return HourlyLine(
        hour_start=datetime(2026, 6, 1, tzinfo=UTC) + timedelta(hours=i),
        line="press",
        energy_kwh=40.0 + i,
        production_units=4.0,
        kwh_per_unit=10.0,
        scope2_location_kg=22.0,
        scope2_market_kg=20.0,
        kg_per_unit=None,
        estimated_share=0.0,
    )


async def write_lines(pool: asyncpg.Pool, rows: list[HourlyLine]) -> int:
    """Upsert hourly line rows in one transaction; their computed_at [us]."""
    async with pool.acquire() as conn:
        await upsert_hourly(conn, Registry({}, {}), [], [], rows)
        value: int = await conn.fetchval(
            "SELECT (extract(epoch FROM max(computed_at)) * 1e6)::bigint FROM hourly_line"
        )
    return value


async def test_the_local_server_away_and_back_loses_nothing_and_stores_nothing_twice(
    gateway: Gateway,
) -> None:
    g = gateway
    before = readings(g.registry, 0, 50)
    await g.outbox.keep(before)
    first_hour = await write_lines(g.pool, [line_row(0)])
    async with running(g.publisher.run()):
        await wait_for(lambda: g.outbox.depth_readings == 0, "the first readings published")

        async def hourly_cursor() -> int:
            return (await load_cursors(g.pool)).get("hourly", 0)

        async def hourly_sent(computed_at_us: int) -> bool:
            return await hourly_cursor() == computed_at_us

        await wait_for(lambda: hourly_sent(first_hour), "the first hourly row sent")

        await g.leaf.stop()
        failures = g.publisher.stats.publish_failures
        during = [readings(g.registry, 50, 20), readings(g.registry, 70, 5)]
        for b in during:
            await g.outbox.keep(b)
        second_hour = await write_lines(g.pool, [line_row(1), line_row(2)])
        await wait_for(
            lambda: g.publisher.stats.publish_failures >= failures + 2,
            "publishing fails while the local server is away",
        )
        # held: the outbox keeps the readings, the database cursor stays behind
        assert g.outbox.depth_readings == 25
        assert await hourly_cursor() == first_hour
        assert g.publisher.stats.last_error

        await g.leaf.start()
        await wait_for(lambda: g.outbox.depth_readings == 0, "the held readings published")
        await wait_for(lambda: hourly_sent(second_hour), "the held hourly rows sent")
        await wait_for(lambda: g.publisher.stats.last_error == "", "publishing again")

    messages = await stream_messages(g.js)
    expected = [row for b in (before, *during) for row in rows_of_batch(b, g.registry)]
    assert published_rows(messages) == expected
    # a publish that timed out while the server was away may still have reached it
    # (the client sends it on reconnecting): its retry is dropped by its id
    ids = Counter(m.msg_id for m in messages if kind_of(m.subject) != "status")
    assert all(count == 1 for count in ids.values()), ids
    hourly = [
        wire.decode("hourly", SITE, m.data) for m in messages if kind_of(m.subject) == "hourly"
    ]
    lines = [row for h in hourly if isinstance(h, HourlyMessage) for row in h.lines]
    assert lines == [line_row(0), line_row(1), line_row(2)]


async def test_status_and_purge_follow_what_the_center_holds(gateway: Gateway) -> None:
    """The status tick asks the center (``zcprogress.<site>``) how far it holds the
    site's stream, drops that much from the local stream and reports the rest as the
    backlog; no answer (the WAN down) keeps everything."""
    g = gateway
    p = g.publisher
    for start in (0, 10):  # two messages: each record published before the next is kept
        await g.outbox.keep(readings(g.registry, start, 10))
        async with running(p.run_readings()):
            await wait_for(lambda: g.outbox.depth_readings == 0, "a message published")

    # no center answers: nothing is dropped, both messages are the backlog
    await p.status_once()
    assert not p.stats.center_answered
    assert (p.stats.center_seq, p.stats.purged_to_seq, p.stats.backlog_messages) == (0, 0, 2)
    messages = await stream_messages(g.js)
    assert [m.seq for m in messages] == [1, 2, 3]  # the status message is seq 3
    status = wire.decode("status", SITE, messages[-1].data)
    assert isinstance(status, StatusMessage)
    assert (status.name, status.timezone, status.page_url) == (
        "Plant One",
        "Asia/Shanghai",
        "http://plant-1.example/",
    )
    assert (status.backlog_messages, status.backlog_bytes) == (2, p.stats.backlog_bytes)
    assert status.backlog_bytes > 0
    assert (status.outbox_readings, status.readings_published, status.readings_dropped) == (
        0,
        20,
        0,
    )

    # the center (its workers) answers: it holds the stream up to seq 2
    holds = [2]
    asked: list[str] = []

    async def answer(msg: Msg) -> None:
        asked.append(msg.subject)
        await msg.respond(json.dumps({"site": SITE, "source_seq": holds[0]}).encode())

    await g.nc.subscribe(progress_subject(SITE), cb=answer)
    await g.nc.flush()
    await g.outbox.keep(readings(g.registry, 20, 10))
    async with running(p.run_readings()):
        await wait_for(lambda: g.outbox.depth_readings == 0, "a third message published")
    await p.status_once()
    assert asked == [f"zcprogress.{SITE}"]
    assert p.stats.center_answered and p.stats.center_seq == 2 == p.stats.purged_to_seq
    state = (await g.js.stream_info(SITE_STREAM)).state
    # seq 1-2 dropped; 3 (status), 4 (readings) and 5 (this tick's status) stay
    assert (state.first_seq, state.last_seq, state.messages) == (3, 5, 3)
    assert p.stats.backlog_messages == 2  # seq 3 and 4, as measured before this status

    # an answer behind what was known (another worker, a stale row) moves nothing back
    holds[0] = 1
    await p.status_once()
    assert p.stats.center_seq == 2 == p.stats.purged_to_seq


async def test_closing_with_the_local_server_away(gateway: Gateway) -> None:
    """The gateway stops cleanly while its local NATS server is away."""
    g = gateway
    await g.outbox.keep(readings(g.registry, 0, 5))
    async with running(g.publisher.run_readings()):
        await wait_for(lambda: g.outbox.depth_readings == 0, "published")
    await g.leaf.stop()
    await wait_for(lambda: not g.publisher.stats.connected, "the publisher disconnected")
    await g.outbox.keep(readings(g.registry, 5, 5))
    await g.publisher.flush(timeout_s=0.5)  # cannot publish: kept for the next start
    await g.publisher.close()
    assert g.outbox.depth_readings == 5


async def test_readings_linger_for_a_fuller_message(gateway: Gateway) -> None:
    """With ``message_interval_s``, small records wait to be joined; a full message's
    worth goes at once."""
    g = gateway
    g.publisher._config = g.publisher._config.model_copy(update={"message_interval_s": 30.0})
    await g.outbox.keep(readings(g.registry, 0, 10))
    await g.outbox.keep(readings(g.registry, 10, wire.MAX_ROWS_PER_MESSAGE))
    async with running(g.publisher.run_readings()):
        await wait_for(lambda: g.outbox.depth_readings == 0, "a full message's worth published")
        await g.outbox.keep(readings(g.registry, 20_000, 10))
        assert g.outbox.depth_readings == 10  # lingering (30 s) for more
    sizes = [len(published_rows([m])) for m in await stream_messages(g.js)]
    assert sizes == [wire.MAX_ROWS_PER_MESSAGE, 10]
    await g.publisher.flush(10.0)  # at shutdown nothing lingers
    assert g.outbox.depth_readings == 0
    assert [len(published_rows([m])) for m in await stream_messages(g.js)][-1] == 10
