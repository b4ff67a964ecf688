"""GET /api/v1/devices/{id}/health and the per-device metrics of a running gateway: a
real database, broker and Modbus server (our simulator's)."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import aiomqtt
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from zerocarbon.api.app import create_app
from zerocarbon.clock import SystemClock
from zerocarbon.config import ModbusTcpDevice, SiteConfig, parse_site
from zerocarbon.ingest.modbus.collector import LATENCY_EWMA_ALPHA
from zerocarbon.ingest.mqtt.collector import ONLINE_INTERVALS
from zerocarbon.runtime import EnergyCenter
from zerocarbon.settings import Settings
from zerocarbon.simulators.modbus_server import ModbusTcpServer
from zerocarbon.simulators.register_bank import RegisterBank
from zerocarbon.storage.database import drop_database, ensure_database

HEALTH = "/api/v1/devices/{}/health"


def two_device_site(mqtt_url: str, modbus_port: int) -> SiteConfig:
    """A grid meter on MQTT and a battery controller on Modbus TCP."""
    return parse_site(
        {
            "mqtt": {"url": mqtt_url},
            "devices": [
                {
                    "id": "grid",
                    "role": "grid",
                    "protocol": "mqtt",
                    "topic": f"zc-test/{secrets.token_hex(3)}/grid",
                    "fields": {"p": "active_power_kw"},
                    "interval_s": 10.0,
                },
                {
                    "id": "battery",
                    "role": "battery",
                    "protocol": "modbus_tcp",
                    "profile": "battery_controller",
                    "host": "127.0.0.1",
                    "port": modbus_port,
                    "poll_interval_s": 0.1,
                    "timeout_s": 0.5,
                },
            ],
        }
    )


def labelled(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics text, by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def until(condition: Callable[[], object], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.02)


@pytest.fixture
async def own_database(pg_server_url: str) -> AsyncIterator[str]:
    name = f"zc_test_health_{secrets.token_hex(3)}"
    yield await ensure_database(pg_server_url, name)
    await drop_database(pg_server_url, name)


async def test_health_and_metrics_of_a_running_gateway(
    own_database: str, mqtt_url: str, demo_site: SiteConfig, tmp_path: Path
) -> None:
    battery = demo_site.device("battery")
    assert isinstance(battery, ModbusTcpDevice)  # the same profile as the site's below
    bank = RegisterBank(demo_site.profile_of(battery), gap_fill_registers=battery.max_gap_registers)
    bank.update({"state_of_charge_pct": 61.5, "active_power_kw": -120.25})
    async with ModbusTcpServer("127.0.0.1", 0, {1: bank}) as server:
        site = two_device_site(mqtt_url, server.port)
        async with EnergyCenter(
            site, Settings(), SystemClock(), database_url=own_database, spool_dir=tmp_path
        ) as center:
            app = create_app(
                Settings(database_url=own_database), pool=center._pool, telemetry=center.telemetry
            )
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://t"
                ) as client,
            ):
                assert center.mqtt is not None
                await asyncio.wait_for(center.mqtt.subscribed.wait(), 10)
                broker = urlparse(mqtt_url)
                async with aiomqtt.Client(broker.hostname or "", port=broker.port or 1883) as pub:
                    await pub.publish(site.mqtt_devices[0].topic, json.dumps({"p": 42.0}), qos=1)
                modbus = center.modbus[0].stats()["battery"]
                grid = center.mqtt.device_stats["grid"]
                await until(lambda: grid.readings == 1 and modbus.polls >= 3 and modbus.available)

                res = await client.get(HEALTH.format("battery"))
                assert res.status_code == 200, res.text
                b = res.json()
                assert (b["device"], b["protocol"], b["online"]) == ("battery", "modbus_tcp", True)
                assert datetime.fromisoformat(b["last_seen"]).tzinfo is not None
                assert 0 <= b["age_s"] < 5
                assert 0 < b["poll_latency_s"] < 0.5 and 0 < b["poll_latency_avg_s"] < 0.5
                assert b["polls"] >= 3 and b["readings"] >= 4 and b["messages"] is None
                assert (b["timeouts"], b["errors"], b["consecutive_failures"]) == (0, 0, 0)
                assert (b["went_offline"], b["came_online"], b["last_error"]) == (0, 0, "")

                res = await client.get(HEALTH.format("grid"))
                assert res.status_code == 200, res.text
                g = res.json()
                assert (g["device"], g["protocol"], g["online"]) == ("grid", "mqtt", True)
                assert (g["messages"], g["readings"], g["bad_payloads"]) == (1, 1, 0)
                assert g["offline_after_s"] == ONLINE_INTERVALS * 10.0
                assert g["poll_latency_s"] is None and g["polls"] is None
                assert 0 <= g["age_s"] < 10

                m = labelled((await client.get("/metrics")).text)
                b_labels = (("device", "battery"), ("protocol", "modbus_tcp"))
                g_labels = (("device", "grid"), ("protocol", "mqtt"))
                assert m[("zerocarbon_device_online", b_labels)] == 1
                assert m[("zerocarbon_device_online", g_labels)] == 1
                g_seen = m[("zerocarbon_device_last_seen_timestamp_seconds", g_labels)]
                assert g_seen == pytest.approx(datetime.fromisoformat(g["last_seen"]).timestamp())
                assert m[("zerocarbon_device_last_seen_timestamp_seconds", b_labels)] > 0
                assert m[("zerocarbon_device_poll_latency_seconds", (("device", "battery"),))] > 0
                assert m[("zerocarbon_mqtt_device_messages_total", (("device", "grid"),))] == 1
                assert m[("zerocarbon_mqtt_device_readings_total", (("device", "grid"),))] == 1
                assert m[("zerocarbon_mqtt_device_bad_payloads_total", (("device", "grid"),))] == 0
                assert m[("zerocarbon_modbus_went_offline_total", (("device", "battery"),))] == 0
                assert m[("zerocarbon_modbus_polls_total", (("device", "battery"),))] >= 3

                server.suspend()  # the battery controller is switched off
                await until(lambda: not modbus.available)
                b = (await client.get(HEALTH.format("battery"))).json()
                assert not b["online"] and b["went_offline"] == 1
                assert b["consecutive_failures"] >= 1 and b["last_error"]
                m = labelled((await client.get("/metrics")).text)
                assert m[("zerocarbon_device_online", b_labels)] == 0
                assert m[("zerocarbon_modbus_went_offline_total", (("device", "battery"),))] == 1

                await server.resume()
                await until(lambda: modbus.available)
                b = (await client.get(HEALTH.format("battery"))).json()
                assert b["online"] and b["came_online"] == 1 and b["consecutive_failures"] == 0

                res = await client.get(HEALTH.format("no_such_meter"))
                assert res.status_code == 404
                assert "no_such_meter" in res.json()["detail"]


async def test_without_a_gateway_health_is_unavailable(pg_url: str) -> None:
    app = create_app(Settings(database_url=pg_url))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        res = await client.get(HEALTH.format("battery"))
        assert res.status_code == 503
        body = res.json()
        assert body["detail"] == "device health unavailable" and "gateway" in body["reason"]

        schema: dict[str, Any] = (await client.get("/openapi.json")).json()
        route = schema["paths"]["/api/v1/devices/{device_id}/health"]["get"]
        assert {"200", "404", "503"} <= set(route["responses"])
        fields = schema["components"]["schemas"]["DeviceHealth"]["properties"]
        assert all(f.get("description") for f in fields.values())
        for name, field in fields.items():
            if name.endswith("_s"):
                assert "[s]" in field["description"], name
        assert f"weight {LATENCY_EWMA_ALPHA}" in fields["poll_latency_avg_s"]["description"]
        assert f"{ONLINE_INTERVALS} x" in fields["offline_after_s"]["description"]
