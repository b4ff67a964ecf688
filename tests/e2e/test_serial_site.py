"""A site with devices on serial lines, end to end: Modbus RTU units and a DL/T 645-2007
meter on two RS-485 lines (socat pty pairs), served by the plant simulator at the lines'
baud rates, read by the gateway's collectors and stored in PostgreSQL."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from tests.serial_support import PtyPair
from zerocarbon.carbon_service import warm_up_kernels
from zerocarbon.clock import ScaledClock
from zerocarbon.config import Dlt645Device, ModbusRtuDevice, parse_site
from zerocarbon.runtime import EnergyCenter
from zerocarbon.settings import Settings
from zerocarbon.simulators.endpoints import on_free_ports
from zerocarbon.simulators.runner import PlantSimulator
from zerocarbon.storage.database import drop_database, ensure_database

START = datetime(2026, 6, 21, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai: PV and shifts on
SPEED = 10.0
RTU_PORT = "/dev/ttyRS485-1"  # as in a site file; moved onto a pty end by the test
DLT_PORT = "/dev/ttyRS485-2"
DLT_ADDRESS = "000012345678"


def site_file() -> dict[str, Any]:
    return {
        "site": {"name": "serial lines", "timezone": "Asia/Shanghai"},
        "devices": [
            {
                "id": "grid_meter",
                "role": "grid",
                "protocol": "modbus_rtu",
                "profile": "eastron_sdm630",
                "serial_port": RTU_PORT,
                "device_id": 1,
                "poll_interval_s": 10.0,
            },
            {
                "id": "line_a_meter",
                "role": "load",
                "line": "line_a",
                "parent": "grid_meter",
                "protocol": "modbus_rtu",
                "profile": "eastron_sdm630",
                "serial_port": RTU_PORT,
                "device_id": 2,
                "poll_interval_s": 10.0,
            },
            {
                "id": "line_b_meter",
                "role": "load",
                "line": "line_b",
                "parent": "grid_meter",
                "protocol": "dlt645",
                "serial_port": DLT_PORT,
                "address": DLT_ADDRESS,
                "poll_interval_s": 10.0,
                "timeout_s": 2.0,
                # forward energy, voltage, frequency: not the total power, whose format
                # (XX.XXXX kW, 附录A 表A.3) ends below 80 kW and the line draws more
                "identifiers": ["00010000", "02010100", "02800002"],
            },
        ],
    }


async def _until(condition: Callable[[], bool], timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.05)


async def test_serial_devices_are_collected_and_stored(
    pg_server_url: str, pty_pairs: Callable[[str], PtyPair], tmp_path: Path
) -> None:
    rtu, dlt = pty_pairs("rtu"), pty_pairs("dlt")
    # the gateway uses the b ends, the simulator serves on the a ends
    site = on_free_ports(parse_site(site_file()), serial_ports={RTU_PORT: rtu.b, DLT_PORT: dlt.b})
    serial = [d for d in site.devices if isinstance(d, ModbusRtuDevice | Dlt645Device)]
    assert [d.serial_port for d in serial] == [rtu.b, rtu.b, dlt.b]
    warm_up_kernels(site)
    name = f"zc_test_serial_{secrets.token_hex(3)}"
    url = await ensure_database(pg_server_url, name)
    clock = ScaledClock(START, SPEED)
    try:
        async with (
            asyncio.timeout(60),
            PlantSimulator(site, clock, serial_ports={rtu.b: rtu.a, dlt.b: dlt.a}) as sim,
            EnergyCenter(
                site, Settings(), clock, database_url=url, spool_dir=tmp_path / "spool"
            ) as center,
        ):
            assert "modbus rtu" in sim.describe() and "dl/t 645" in sim.describe()
            assert center.forwarder is not None
            health = center.telemetry.device_health
            devices = ("grid_meter", "line_a_meter", "line_b_meter")

            def polled_twice() -> bool:
                return all((h := health(d)) is not None and (h.polls or 0) >= 2 for d in devices)

            await _until(polled_twice, 40)
            forwarder = center.forwarder
            per_round = 5 + 5 + 3  # SDM630 metric points twice, three identifiers
            await _until(lambda: forwarder.stats.readings_stored >= 2 * per_round, 20)
            reports = {d: health(d) for d in devices}
            plant_import = {
                d: sim.plant.values(d)["energy_import_kwh"] for d in devices
            }  # the plant's counters now, at least as far as any stored reading
            assert center.collectors[f"modbus collector {rtu.b}"].running
            assert center.collectors[f"dlt645 collector {dlt.b}"].running
            rtu_server = sim.rtu_servers[0]
            assert rtu_server.paced_s > 0 and rtu_server.answers >= 2 * 2
    finally:
        rows = await _stored(url)
        await drop_database(pg_server_url, name)
    protocols = {}
    for device, report in reports.items():
        assert report is not None and report.online, (device, report)
        assert report.errors == 0 and report.timeouts == 0, (device, report)
        protocols[device] = report.protocol
    assert protocols == {
        "grid_meter": "modbus_rtu",
        "line_a_meter": "modbus_rtu",
        "line_b_meter": "dlt645",
    }
    sdm630 = {"voltage_v", "active_power_kw", "frequency_hz", "energy_import_kwh"}
    assert sdm630 <= set(rows["grid_meter"]) and sdm630 <= set(rows["line_a_meter"])
    assert set(rows["line_b_meter"]) == {"voltage_v", "frequency_hz", "energy_import_kwh"}
    for device, metrics in rows.items():
        imports = metrics["energy_import_kwh"]
        assert imports == sorted(imports), device  # a counter read in order never drops
        assert 0 < imports[-1] <= plant_import[device] + 1e-6, device
        assert all(200.0 < v < 260.0 for v in metrics["voltage_v"]), device


async def _stored(url: str) -> dict[str, dict[str, list[float]]]:
    """Stored readings: device -> metric -> values in time order."""
    conn = await asyncpg.connect(url)
    try:
        records = await conn.fetch(
            "SELECT d.key AS device, m.name AS metric, r.value FROM readings r "
            "JOIN metrics m ON m.id = r.metric_id JOIN devices d ON d.id = r.device_id "
            "ORDER BY r.ts"
        )
    finally:
        await conn.close()
    out: dict[str, dict[str, list[float]]] = {}
    for r in records:
        out.setdefault(r["device"], {}).setdefault(r["metric"], []).append(r["value"])
    return out
