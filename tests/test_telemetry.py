"""GET /readyz and GET /metrics of a running gateway: a real database, broker and spool."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import aiomqtt
import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from zerocarbon.api.app import create_app
from zerocarbon.clock import SystemClock
from zerocarbon.config import SiteConfig, parse_site
from zerocarbon.runtime import EnergyCenter
from zerocarbon.settings import Settings
from zerocarbon.storage.database import drop_database, ensure_database


def tiny_site(mqtt_url: str) -> SiteConfig:
    return parse_site(
        {
            "mqtt": {"url": mqtt_url, "client_id": f"zc-readyz-{secrets.token_hex(3)}"},
            "devices": [
                {
                    "id": "grid",
                    "role": "grid",
                    "protocol": "mqtt",
                    "topic": f"zc-test/{secrets.token_hex(3)}/grid",
                    "fields": {"p": "active_power_kw"},
                }
            ],
        }
    )


def metric_values(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.labels:
                out[sample.name] = sample.value
    return out


async def until(condition: Callable[[], object], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.02)


@pytest.fixture
async def own_database(pg_server_url: str) -> AsyncIterator[tuple[str, str]]:
    name = f"zc_test_ready_{secrets.token_hex(3)}"
    url = await ensure_database(pg_server_url, name)
    yield url, name
    admin = await asyncpg.connect(pg_server_url)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    finally:
        await admin.close()
    await drop_database(pg_server_url, name)


async def test_readyz_and_metrics_follow_the_database_and_the_spool(
    own_database: tuple[str, str], pg_server_url: str, mqtt_url: str, tmp_path: Path
) -> None:
    url, name = own_database
    site = tiny_site(mqtt_url)
    device = site.mqtt_devices[0]
    broker = urlparse(mqtt_url)

    async def publish(values: list[float]) -> None:
        async with aiomqtt.Client(broker.hostname or "", port=broker.port or 1883) as pub:
            for i, v in enumerate(values):
                ts = datetime.now(UTC).timestamp() - 10 + i * 0.001
                await pub.publish(device.topic, json.dumps({"ts": ts, "p": v}), qos=1)

    async with EnergyCenter(
        site, Settings(), SystemClock(), database_url=url, spool_dir=tmp_path / "spool"
    ) as center:
        app = create_app(Settings(database_url=url), pool=center._pool, telemetry=center.telemetry)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                assert center.mqtt is not None
                await asyncio.wait_for(center.mqtt.subscribed.wait(), 10)
                res = await client.get("/readyz")
                assert res.status_code == 200, res.text
                body = res.json()
                assert body["ready"] and body["database"]["ok"] and body["broker"]["ok"]
                assert body["spool"]["depth_readings"] == 0
                assert body["spool"]["oldest_unreplayed_age_s"] is None
                assert body["collectors"] == [
                    {"name": "mqtt collector", "ok": True, "detail": "", "restarts": 0}
                ]

                await publish([1.0, 2.0, 3.0])
                fwd = center.forwarder
                assert fwd is not None
                await until(lambda: fwd.stats.readings_stored == 3)
                res = await client.get("/metrics")
                assert res.status_code == 200
                assert res.headers["content-type"].startswith("text/plain")
                m = metric_values(res.text)
                assert m["zerocarbon_readings_acknowledged_total"] == 3
                assert m["zerocarbon_readings_stored_total"] == 3
                assert m["zerocarbon_mqtt_acknowledged_total"] == 3
                assert m["zerocarbon_database_up"] == 1 and m["zerocarbon_mqtt_connected"] == 1
                assert 'zerocarbon_collector_up{collector="mqtt collector"} 1.0' in res.text

                admin = await asyncpg.connect(pg_server_url)
                try:
                    await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                    await admin.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                        name,
                    )
                    await publish([4.0, 5.0])
                    await until(lambda: not fwd.database_up)
                    await until(lambda: fwd.health().spool_depth_readings == 2)
                    res = await client.get("/readyz")
                    assert res.status_code == 503
                    body = res.json()
                    assert not body["ready"] and not body["database"]["ok"]
                    assert "accepting connections" in body["database"]["detail"]
                    assert body["spool"]["depth_readings"] == 2
                    assert body["spool"]["oldest_unreplayed_age_s"] >= 0
                    m = metric_values((await client.get("/metrics")).text)
                    assert m["zerocarbon_database_up"] == 0
                    assert m["zerocarbon_spool_depth_readings"] == 2
                    assert m["zerocarbon_readings_acknowledged_total"] == 5
                finally:
                    await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
                    await admin.close()
                await until(lambda: fwd.stats.readings_stored == 5)
                res = await client.get("/readyz")
                assert res.status_code == 200 and res.json()["spool"]["depth_readings"] == 0
                m = metric_values((await client.get("/metrics")).text)
                assert m["zerocarbon_database_outages_total"] == 1
                assert m["zerocarbon_database_up"] == 1


async def test_readyz_without_a_gateway_checks_the_database(pg_url: str) -> None:
    app = create_app(Settings(database_url=pg_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            res = await client.get("/readyz")
            assert res.status_code == 200
            assert res.json() == {
                "ready": True,
                "database": {"ok": True, "detail": "", "down_s": None},
                "broker": None,
                "spool": None,
                "collectors": [],
                "uplink": None,
            }
            assert (await client.get("/metrics")).status_code == 200


async def test_a_dead_collector_shows_in_readyz_and_metrics(
    own_database: tuple[str, str], mqtt_url: str, tmp_path: Path
) -> None:
    """While a collector task is down (it died; its supervisor waits to restart it),
    /readyz says so with the cause and /metrics has it at 0 with its restarts."""
    url, _ = own_database
    site = tiny_site(mqtt_url)
    async with EnergyCenter(
        site, Settings(), SystemClock(), database_url=url, spool_dir=tmp_path / "spool"
    ) as center:
        app = create_app(Settings(database_url=url), pool=center._pool, telemetry=center.telemetry)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                assert center.mqtt is not None
                await asyncio.wait_for(center.mqtt.subscribed.wait(), 10)
                state = center.collectors["mqtt collector"]
                # what supervise() records when the task dies, until it restarts it
                state.running, state.restarts = False, 1
                state.last_error = "RecursionError: maximum recursion depth exceeded"
                res = await client.get("/readyz")
                assert res.status_code == 503
                collectors = res.json()["collectors"]
                assert collectors == [
                    {
                        "name": "mqtt collector",
                        "ok": False,
                        "detail": "restarting after: RecursionError: maximum recursion "
                        "depth exceeded",
                        "restarts": 1,
                    }
                ]
                text = (await client.get("/metrics")).text
                assert 'zerocarbon_collector_up{collector="mqtt collector"} 0.0' in text
                assert 'zerocarbon_collector_restarts_total{collector="mqtt collector"} 1.0' in text
                state.running = True
                assert (await client.get("/readyz")).status_code == 200


async def test_alert_counters_in_metrics(
    own_database: tuple[str, str], mqtt_url: str, tmp_path: Path
) -> None:
    """A threshold alert fired by published readings shows in /metrics, stored and sent."""
    from tests.alerts.receivers import HttpReceiver

    url, _ = own_database
    async with HttpReceiver(answers=[(200, {})]) as receiver:
        data = tiny_site(mqtt_url).model_dump(mode="json", exclude_none=True)
        data["alerts"] = {
            "channels": [{"name": "hook", "kind": "webhook", "url": receiver.url}],
            "rules": [
                {
                    "name": "high",
                    "kind": "threshold",
                    "device": "grid",
                    "metric": "active_power_kw",
                    "above": 10.0,
                }
            ],
        }
        site = parse_site(data)
        device = site.mqtt_devices[0]
        broker = urlparse(mqtt_url)
        async with EnergyCenter(
            site, Settings(), SystemClock(), database_url=url, spool_dir=tmp_path / "spool"
        ) as center:
            app = create_app(
                Settings(database_url=url), pool=center._pool, telemetry=center.telemetry
            )
            assert center.mqtt is not None and center.alerts is not None
            await asyncio.wait_for(center.mqtt.subscribed.wait(), 10)
            async with aiomqtt.Client(broker.hostname or "", port=broker.port or 1883) as pub:
                now = datetime.now(UTC).timestamp()
                for i, v in enumerate([1.0, 20.0]):
                    payload = json.dumps({"ts": now - 5 + i, "p": v})
                    await pub.publish(device.topic, payload, qos=1)
            dispatcher = center.dispatcher
            assert dispatcher is not None
            # delivered, and its outbox row marked sent (the count follows the commit)
            await until(lambda: dispatcher.stats.sent == 1)
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                    m = metric_values((await client.get("/metrics")).text)
    assert m["zerocarbon_alerts_firing"] == 1
    assert m["zerocarbon_alert_changes_recorded_total"] == 1
    assert m["zerocarbon_alert_changes_pending"] == 0
    assert m["zerocarbon_notifications_sent_total"] == 1
    assert m["zerocarbon_notification_failed_attempts_total"] == 0
    assert receiver.requests[0].json()["rule"] == "high"


async def test_the_uplink_shows_in_readyz_and_metrics_and_never_makes_it_not_ready(
    own_database: tuple[str, str], mqtt_url: str, tmp_path: Path
) -> None:
    """With [uplink] (here publishing to a standalone JetStream server via local_url):
    /readyz has an uplink section and /metrics its counters; the local NATS server away,
    or readings the outbox could not keep, show there but the gateway stays ready."""
    from tests.uplink.nats_support import NatsLab, require_nats_server, wait_for
    from zerocarbon.netutil import free_tcp_port

    url, _ = own_database
    async with NatsLab(require_nats_server()) as lab:
        server = await lab.leaf("plant-1", "unused", [f"nats-leaf://127.0.0.1:{free_tcp_port()}"])
        data = tiny_site(mqtt_url).model_dump(mode="json", exclude_none=True)
        data["uplink"] = {
            "site": "plant-1",
            "local_url": server.client_url,
            "max_backlog_mib": 16,  # the test server stores 64 MiB at most
        }
        site = parse_site(data)
        device = site.mqtt_devices[0]
        broker = urlparse(mqtt_url)
        async with EnergyCenter(
            site, Settings(), SystemClock(), database_url=url, spool_dir=tmp_path / "spool"
        ) as center:
            app = create_app(
                Settings(database_url=url), pool=center._pool, telemetry=center.telemetry
            )
            assert center.mqtt is not None and center.uplink is not None
            uplink = center.uplink
            await asyncio.wait_for(center.mqtt.subscribed.wait(), 10)
            async with aiomqtt.Client(broker.hostname or "", port=broker.port or 1883) as pub:
                now = datetime.now(UTC).timestamp()
                for i, v in enumerate([1.0, 2.0, 3.0]):
                    await pub.publish(device.topic, json.dumps({"ts": now - 5 + i, "p": v}), qos=1)
            await wait_for(lambda: uplink.stats.readings_published == 3, "3 readings uplinked")
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                    res = await client.get("/readyz")
                    assert res.status_code == 200, res.text
                    section = res.json()["uplink"]
                    assert section["ok"] and section["connected"], section
                    assert section["readings_published"] == 3
                    assert (section["outbox_readings"], section["readings_dropped"]) == (0, 0)
                    assert section["leaf_running"] is None  # local_url: no leaf of its own
                    assert {"backlog_messages", "backlog_bytes", "center_seq"} <= set(section)
                    m = metric_values((await client.get("/metrics")).text)
                    assert m["zerocarbon_uplink_readings_published_total"] == 3
                    assert m["zerocarbon_uplink_readings_dropped_total"] == 0
                    assert m["zerocarbon_uplink_outbox_readings"] == 0
                    assert m["zerocarbon_uplink_connected"] == 1
                    assert "zerocarbon_uplink_publish_failures_total" in m
                    assert "zerocarbon_uplink_backlog_messages" in m

                    await server.stop()  # the local NATS server away: still ready
                    await wait_for(lambda: not uplink.stats.connected, "the uplink disconnected")
                    res = await client.get("/readyz")
                    assert res.status_code == 200 and res.json()["ready"]
                    section = res.json()["uplink"]
                    assert not section["ok"] and not section["connected"]
                    assert "not connected to the local NATS server" in section["detail"]
                    m = metric_values((await client.get("/metrics")).text)
                    assert m["zerocarbon_uplink_connected"] == 0

                    # what the outbox records when it is full (see tests/uplink/test_outbox.py)
                    uplink.outbox.stats.readings_dropped = 7
                    res = await client.get("/readyz")
                    assert res.status_code == 200
                    section = res.json()["uplink"]
                    assert section["readings_dropped"] == 7
                    assert "7 stored readings could not be kept" in section["detail"]
                    m = metric_values((await client.get("/metrics")).text)
                    assert m["zerocarbon_uplink_readings_dropped_total"] == 7
