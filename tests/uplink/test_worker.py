"""A center ingest worker (:mod:`zerocarbon.uplink.worker`) against a real single-node
nats-server with JetStream and a real center database.

The stream ``ZC_CENTER`` takes ``zc.>`` itself here (a deployment sources it from the
sites), with the workers' durable consumer from :mod:`zerocarbon.uplink.center_streams`.
Valid messages are stored and acknowledged; a malformed one is terminated and counted
while the rest of its batch is stored; with the database away nothing is acknowledged,
and the messages, redelivered, are stored once.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import nats
import nats.errors
import numpy as np
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig

from tests.uplink.nats_support import NatsLab, NatsProcess, require_nats_server, wait_for
from zerocarbon.netutil import free_tcp_port
from zerocarbon.storage.database import drop_database, ensure_database, open_pool
from zerocarbon.uplink import wire
from zerocarbon.uplink.center_schema import create_center_schema
from zerocarbon.uplink.center_store import CenterStore
from zerocarbon.uplink.center_streams import ensure_center_stream
from zerocarbon.uplink.messages import ReadingsMessage, StatusMessage
from zerocarbon.uplink.publisher import SENT_HEADER
from zerocarbon.uplink.subjects import CENTER_CONSUMER, CENTER_STREAM, subject
from zerocarbon.uplink.worker import IngestWorker

SITE = "plant-1"
ACK_WAIT_S = 1.0  # unacknowledged this long: redelivered [s]
T0_US = 1_780_000_000_000_000


def readings_payload(start: int, rows: int) -> bytes:
    i = np.arange(start, start + rows)
    message = ReadingsMessage(
        site=SITE,
        catalog=(("grid", "active_power_kw"), ("pv", "active_power_kw")),
        series=(i % 2).astype(np.uint16),
        ts_us=(T0_US + i * 1_000_000).astype(np.int64),
        value=i.astype(np.float64),
        quality=np.zeros(rows, np.uint8),
    )
    return wire.encode(message)


def status_payload(site: str = SITE) -> bytes:
    return wire.encode(
        StatusMessage(
            site=site,
            sent_at=datetime(2026, 6, 1, 8, tzinfo=UTC),
            name="Plant One",
            timezone="Asia/Shanghai",
            page_url="",
            backlog_messages=0,
            backlog_bytes=0,
            outbox_readings=0,
            readings_published=30,
            readings_dropped=0,
            version="test",
        )
    )


@dataclass(slots=True)
class Center:
    url: str  # nats://
    nc: NatsClient
    js: JetStreamContext
    db_url: str
    pool: asyncpg.Pool

    def worker(self, store: CenterStore | None = None, name: str = "worker") -> IngestWorker:
        return IngestWorker(
            store or CenterStore(self.pool),
            {"servers": [self.url], "max_reconnect_attempts": -1},
            fetch_batch=16,
            fetch_timeout_s=0.2,
            retry_max_s=0.2,
            name=name,
        )

    async def publish(self, kind_subject: str, payload: bytes) -> None:
        await self.js.publish(kind_subject, payload, headers={SENT_HEADER: str(T0_US)})

    async def readings_stored(self) -> int:
        count: int = await self.pool.fetchval("SELECT count(*) FROM site_readings")
        return count

    async def pending(self) -> tuple[int, int, int]:
        """(messages in the stream, unacknowledged, redelivered) of the workers' consumer."""
        stream = await self.js.stream_info(CENTER_STREAM)
        consumer = await self.js.consumer_info(CENTER_STREAM, CENTER_CONSUMER)
        return stream.state.messages, consumer.num_ack_pending, consumer.num_redelivered


async def start_jetstream(lab: NatsLab, binary: Path) -> tuple[NatsProcess, str]:
    """A single nats-server with JetStream on a free port, and its URL."""
    port = free_tcp_port()
    folder = lab.folder / "center"
    folder.mkdir()
    config = folder / "nats.conf"
    config.write_text(f'listen: "127.0.0.1:{port}"\njetstream {{ store_dir: "{folder / "js"}" }}\n')
    process = NatsProcess("center", binary, config)
    process.start()
    url = f"nats://127.0.0.1:{port}"

    async def answers() -> bool:
        process.check_alive()
        try:
            nc = await nats.connect(url, allow_reconnect=False, connect_timeout=0.5)
        except (OSError, TimeoutError, nats.errors.Error):
            return False
        try:
            await nc.jetstream(timeout=0.5).account_info()
        except (TimeoutError, nats.errors.Error):
            return False
        finally:
            await nc.close()
        return True

    try:
        await wait_for(answers, "the center's nats-server", details=process.log_text)
    except BaseException:
        process.stop()
        raise
    return process, url


@pytest.fixture
async def center(pg_server_url: str) -> AsyncIterator[Center]:
    binary = require_nats_server()
    name = f"zc_test_worker_{secrets.token_hex(3)}"
    db_url = await ensure_database(pg_server_url, name, recreate=True)
    conn = await asyncpg.connect(db_url)
    try:
        await create_center_schema(conn)
    finally:
        await conn.close()
    pool = await open_pool(db_url)
    process: NatsProcess | None = None
    async with NatsLab(binary) as lab:
        try:
            process, url = await start_jetstream(lab, binary)
            nc = await lab.client(url)
            js = nc.jetstream()
            await js.add_stream(
                StreamConfig(
                    name=CENTER_STREAM,
                    subjects=["zc.>"],
                    retention=RetentionPolicy.WORK_QUEUE,
                    storage=StorageType.FILE,
                )
            )
            await ensure_center_stream(js, (), replicas=1, ack_wait_s=ACK_WAIT_S)
            yield Center(url, nc, js, db_url, pool)
        finally:
            await pool.close()
            if process is not None:
                process.stop()
            await drop_database(pg_server_url, name)


@contextlib.asynccontextmanager
async def running(worker: IngestWorker) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(worker.run())
    try:
        yield task
    finally:
        worker.request_stop()
        try:
            await asyncio.wait_for(task, 10)
        finally:
            task.cancel()


async def test_messages_are_stored_then_acknowledged(center: Center) -> None:
    for i in range(3):
        await center.publish(subject(SITE, "readings"), readings_payload(i * 100, 100))
    await center.publish(subject(SITE, "status"), status_payload())
    worker = center.worker()
    async with running(worker):
        await wait_for(lambda: worker.stats.messages == 4, "four messages stored")

        async def all_acknowledged() -> bool:
            return await center.pending() == (0, 0, 0)

        await wait_for(all_acknowledged, "the stream emptied by acknowledgements")
    assert await center.readings_stored() == 300
    assert (worker.stats.readings_received, worker.stats.readings_stored) == (300, 300)
    assert worker.stats.rejected == worker.stats.store_failures == 0
    row = await center.pool.fetchrow("SELECT name, readings, last_sent FROM sites")
    assert row is not None and (row["name"], row["readings"]) == ("Plant One", 300)
    assert row["last_sent"] == datetime.fromtimestamp(T0_US / 1e6, UTC)


async def test_a_malformed_message_is_terminated_and_the_rest_stored(center: Center) -> None:
    await center.publish(subject(SITE, "readings"), readings_payload(0, 10))
    await center.publish(subject(SITE, "readings"), b"ZCRD not a readings message")
    await center.publish(subject(SITE, "hourly"), b'{"v": 1, "computed_at": 17}')
    await center.publish("zc.plant-1.weather", b"{}")  # not a kind of the uplink
    await center.publish("zc.Plant_One.status", status_payload("Plant_One"))  # bad site id
    await center.publish(subject(SITE, "readings"), readings_payload(10, 10))
    worker = center.worker()
    async with running(worker):
        await wait_for(lambda: worker.stats.messages == 2, "the two good messages stored")
        await wait_for(lambda: worker.stats.rejected == 4, "the four bad ones rejected")

        async def nothing_pending() -> bool:
            return (await center.pending())[:2] == (0, 0)

        # terminated: not waiting for an acknowledgement, never redelivered
        await wait_for(nothing_pending, "nothing left unacknowledged")
    assert await center.readings_stored() == 20
    assert (await center.pending())[2] == 0
    assert worker.stats.rejected == 4 and worker.stats.store_failures == 0
    assert await center.pool.fetchval("SELECT count(*) FROM sites") == 1


async def test_with_the_database_away_nothing_is_acknowledged_and_all_is_stored_once(
    center: Center, pg_server_url: str
) -> None:
    for i in range(5):
        await center.publish(subject(SITE, "readings"), readings_payload(i * 50, 50))
    # a store whose database is gone (dropped under its pool)
    name = f"zc_test_gone_{secrets.token_hex(3)}"
    gone_url = await ensure_database(pg_server_url, name, recreate=True)
    conn = await asyncpg.connect(gone_url)
    try:
        await create_center_schema(conn)
    finally:
        await conn.close()
    gone_pool = await open_pool(gone_url)
    await drop_database(pg_server_url, name)
    try:
        broken = center.worker(CenterStore(gone_pool), name="broken")
        async with running(broken):
            await wait_for(lambda: broken.stats.store_failures >= 2, "storing fails twice")
        assert broken.stats.messages == 0 and broken.stats.rejected == 0
        stream_messages, _, _ = await center.pending()
        assert stream_messages == 5  # nothing acknowledged
    finally:
        await gone_pool.close()

    worker = center.worker(name="healthy")
    async with running(worker):
        # the broken worker's messages come back once their ack wait has run out
        await wait_for(lambda: worker.stats.messages == 5, "the redelivered messages stored")

        async def all_acknowledged() -> bool:
            messages, unacknowledged, _ = await center.pending()
            return (messages, unacknowledged) == (0, 0)

        await wait_for(all_acknowledged, "the stream emptied")
    assert await center.readings_stored() == 250
    assert worker.stats.readings_stored == 250 and worker.stats.duplicates == 0
