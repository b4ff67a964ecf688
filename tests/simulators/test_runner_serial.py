"""The plant simulator serving DL/T 645-2007 meters (behind a TCP gateway and on a
serial line) and Modbus RTU units (on a serial line), with the plant's values and its
silent gaps; time driven by hand."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.serial_support import PtyPair
from tests.simulators.clocks import ManualClock
from tests.simulators.conftest import MIDNIGHT_S
from zerocarbon.config import Dlt645Device, parse_site
from zerocarbon.ingest.dlt645.frame import decode_read_reply, encode_read_request, parse_frame
from zerocarbon.ingest.modbus.rtu_transport import ModbusRtuTransport
from zerocarbon.ingest.modbus.transport import READ_INPUT_REGISTERS, ModbusTimeout
from zerocarbon.ingest.serial_link import SerialSettings, open_serial
from zerocarbon.metering.dlt645 import FORWARD_ACTIVE_ENERGY, PHASE_A_VOLTAGE
from zerocarbon.metering.registers import RegisterType, WordOrder, decode
from zerocarbon.simulators.endpoints import on_free_ports
from zerocarbon.simulators.runner import PlantSimulator

START_S = MIDNIGHT_S + 11 * 3600
GAP_START_S = 600.0


def _site(devices: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "devices": devices,
        "simulation": {
            "faults": {
                "gaps": [{"device": devices[0]["id"], "start_s": GAP_START_S, "duration_s": 300}]
            }
        },
    }


DLT_TCP = {
    "id": "grid_meter",
    "role": "grid",
    "protocol": "dlt645",
    "host": "10.1.2.3",
    "port": 8899,
    "address": "000012345678",
}
RTU = {
    "id": "grid_meter",
    "role": "grid",
    "protocol": "modbus_rtu",
    "profile": "eastron_sdm630",
    "serial_port": "/dev/ttyS4",
    "device_id": 7,
}


async def _read(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, address: str, data_id: int
) -> float | None:
    """One DL/T 645 read; None when the meter stays silent for 0.3 s."""
    writer.write(encode_read_request(address, data_id))
    await writer.drain()
    buffer = bytearray()
    try:
        async with asyncio.timeout(0.3):
            while (found := parse_frame(buffer)) is None:
                buffer += await reader.read(256)
    except TimeoutError:
        return None
    return decode_read_reply(found[0], address, data_id)


async def test_dlt645_gateway_served_with_the_plant_values() -> None:
    site = on_free_ports(parse_site(_site([DLT_TCP])))
    meter = site.device("grid_meter")
    assert isinstance(meter, Dlt645Device) and meter.host == "127.0.0.1" and meter.port != 8899
    clock = ManualClock(START_S)
    async with PlantSimulator(site, clock) as sim:
        assert len(sim.dlt645_servers) == 1
        assert f"dl/t 645 127.0.0.1:{meter.port}: 000012345678 grid_meter" in sim.describe()
        reader, writer = await asyncio.open_connection(*meter.endpoint)
        try:
            await clock.advance(START_S + 120)
            served = await _read(reader, writer, meter.address, FORWARD_ACTIVE_ENERGY)
            truth = sim.plant.values("grid_meter")["energy_import_kwh"]
            assert truth > 1e6  # a grid meter's counter: the register has rolled over
            assert served == pytest.approx(truth % 1e6, abs=0.005)  # XXXXXX.XX kWh
            await clock.advance(START_S + GAP_START_S + 10)
            assert await _read(reader, writer, meter.address, PHASE_A_VOLTAGE) is None
            await clock.advance(START_S + GAP_START_S + 400)
            voltage = await _read(reader, writer, meter.address, PHASE_A_VOLTAGE)
            assert voltage == pytest.approx(sim.plant.values("grid_meter")["voltage_v"], abs=0.05)
        finally:
            writer.close()


async def test_rtu_and_dlt645_lines_served_on_given_paths(pty_pairs: Any) -> None:
    rtu: PtyPair = pty_pairs("rtu")
    dlt: PtyPair = pty_pairs("dlt")
    dlt_serial = {**DLT_TCP, "id": "sub_meter", "role": "load", "serial_port": "/dev/ttyS5"}
    del dlt_serial["host"], dlt_serial["port"]
    site = parse_site(_site([RTU, dlt_serial]))
    clock = ManualClock(START_S)
    paths = {"/dev/ttyS4": rtu.a, "/dev/ttyS5": dlt.a}
    async with PlantSimulator(site, clock, serial_ports=paths) as sim:
        assert f"modbus rtu {rtu.a} (9600 8E1): unit 7 grid_meter" in sim.describe()
        await clock.advance(START_S + 120)
        transport = ModbusRtuTransport(rtu.b, SerialSettings())
        await transport.connect()
        try:
            words = await transport.read_registers(7, READ_INPUT_REGISTERS, 72, 2, 2.0)
            served = decode(words, RegisterType.FLOAT32, WordOrder.BIG)
            truth = sim.plant.values("grid_meter")["energy_import_kwh"]
            assert served == pytest.approx(truth, abs=0.125)  # float32 at ~1e6 kWh
            await clock.advance(START_S + GAP_START_S + 10)
            with pytest.raises(ModbusTimeout):
                await transport.read_registers(7, READ_INPUT_REGISTERS, 72, 2, 0.3)
        finally:
            await transport.close()
        reader, writer = await open_serial(dlt.b, SerialSettings(2400))
        try:
            energy = await _read(reader, writer, "000012345678", FORWARD_ACTIVE_ENERGY)
            truth = sim.plant.values("sub_meter")["energy_import_kwh"]
            assert energy == pytest.approx(truth % 1e6, abs=0.005)
        finally:
            writer.close()
        assert sim.rtu_servers[0].paced_s > 0 and sim.dlt645_servers[0].replies == 1


async def test_a_serial_port_without_a_path_is_not_served(caplog: pytest.LogCaptureFixture) -> None:
    site = parse_site(_site([RTU]))
    async with PlantSimulator(site, ManualClock(START_S)) as sim:
        assert sim.rtu_servers == []
    assert "no path to serve serial port /dev/ttyS4 on: grid_meter" in caplog.text
