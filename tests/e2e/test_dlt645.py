"""A DL/T 645-2007 meter from the site file to the database: the site file's
``protocol = "dlt645"`` device, the gateway's collector, the simulated transparent
serial gateway over TCP, the pipeline, the spool, the readings table and device health."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping
from pathlib import Path

import asyncpg
import pytest

from zerocarbon.clock import SystemClock
from zerocarbon.config import SiteConfigError, parse_site
from zerocarbon.runtime import EnergyCenter
from zerocarbon.settings import Settings
from zerocarbon.simulators.dlt645_server import Dlt645Server, FaultKind
from zerocarbon.storage.database import drop_database, ensure_database

ADDRESS = "000012345678"
VALUES = {
    "energy_import_kwh": 123456.78,
    "energy_export_kwh": 12.34,
    "active_power_kw": -12.3456,
    "voltage_v": 230.4,
    "frequency_hz": 50.01,
}


def site_on(port: int) -> dict[str, object]:
    return {
        "devices": [
            {
                "id": "grid_meter",
                "role": "grid",
                "protocol": "dlt645",
                "host": "127.0.0.1",
                "port": port,
                "address": ADDRESS,
                "poll_interval_s": 0.2,
            }
        ]
    }


def values() -> Mapping[str, float]:
    return VALUES


async def test_a_dlt645_meter_is_collected_stored_and_reported(
    pg_server_url: str, tmp_path: Path
) -> None:
    name = f"zc_test_dlt_{secrets.token_hex(3)}"
    url = await ensure_database(pg_server_url, name)
    try:
        async with Dlt645Server("127.0.0.1", 0, {ADDRESS: values}) as server:
            site = parse_site(site_on(server.port))
            async with EnergyCenter(
                site, Settings(), SystemClock(), database_url=url, spool_dir=tmp_path / "spool"
            ) as center:
                assert center.forwarder is not None
                fwd = center.forwarder
                async with asyncio.timeout(20):
                    while fwd.stats.readings_stored < 2 * len(VALUES):
                        await asyncio.sleep(0.05)
                health = center.telemetry.device_health("grid_meter")
                assert health is not None and health.protocol == "dlt645" and health.online
                assert health.readings >= 2 * len(VALUES) and health.errors == 0
                assert center.collectors[f"dlt645 collector 127.0.0.1:{server.port}"].running
                # the meter stops answering, then answers again: offline, online events
                server.set_fault(ADDRESS, FaultKind.ABNORMAL)
                async with asyncio.timeout(20):
                    while center.telemetry.device_health("grid_meter").online:  # type: ignore[union-attr]
                        await asyncio.sleep(0.05)
                server.set_fault(ADDRESS, None)
                async with asyncio.timeout(20):
                    while not center.telemetry.device_health("grid_meter").online:  # type: ignore[union-attr]
                        await asyncio.sleep(0.05)
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch(
                "SELECT DISTINCT m.name, r.value FROM readings r "
                "JOIN metrics m ON m.id = r.metric_id JOIN devices d ON d.id = r.device_id "
                "WHERE d.key = 'grid_meter'"
            )
            events = await conn.fetch(
                "SELECT e.kind, e.detail FROM device_events e "
                "JOIN devices d ON d.id = e.device_id WHERE d.key = 'grid_meter' ORDER BY e.ts"
            )
        finally:
            await conn.close()
        assert {r["name"]: r["value"] for r in rows} == VALUES
        assert [e["kind"] for e in events] == ["online", "offline", "online"]
        assert f"meter {ADDRESS}: abnormal reply" in events[1]["detail"]
    finally:
        await drop_database(pg_server_url, name)


def test_site_file_errors_name_the_dlt645_field() -> None:
    bad = site_on(1)
    device = bad["devices"][0]  # type: ignore[index]
    device["address"] = "12345"
    with pytest.raises(SiteConfigError, match=r"devices\[0\]\.address"):
        parse_site(bad)
    device["address"] = ADDRESS
    device["identifiers"] = ["02030000", "99999999"]
    with pytest.raises(SiteConfigError, match="unknown data identifiers"):
        parse_site(bad)
    del device["identifiers"]
    del device["port"]
    with pytest.raises(SiteConfigError, match=r"devices\[0\]\.port"):
        parse_site(bad)
