from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.client.mixin import ModbusClientMixin

from tests.simulators.conftest import MIDNIGHT_S
from zerocarbon.clock import ScaledClock
from zerocarbon.config import ModbusTcpDevice, SiteConfig
from zerocarbon.simulators.endpoints import on_free_ports
from zerocarbon.simulators.ground_truth import GroundTruth
from zerocarbon.simulators.runner import PlantSimulator, run_simulator

SPEED = 120.0  # two simulated minutes per real second


def _grid_meter(site: SiteConfig) -> ModbusTcpDevice:
    device = site.device("grid_meter")
    assert isinstance(device, ModbusTcpDevice)
    return device


async def _read_import_kwh(device: ModbusTcpDevice) -> float:
    client = AsyncModbusTcpClient(device.host, port=device.port, timeout=2, retries=0)
    assert await client.connect()
    try:
        response = await client.read_input_registers(72, count=2, device_id=device.device_id)
        assert not response.isError(), response
        value = client.convert_from_registers(
            response.registers, ModbusClientMixin.DATATYPE.FLOAT32
        )
        assert isinstance(value, float)
        return value
    finally:
        client.close()


async def test_simulator_serves_modbus_and_mqtt_and_writes_truth(
    demo_site: SiteConfig, mqtt_url: str, tmp_path: Path
) -> None:
    site = on_free_ports(demo_site, mqtt_url)
    clock = ScaledClock(datetime.fromtimestamp(MIDNIGHT_S + 11 * 3600, UTC), SPEED)
    truth_path = tmp_path / "truth.json"
    meter = _grid_meter(site)
    async with PlantSimulator(site, clock, mqtt_url=mqtt_url, truth_path=truth_path) as sim:
        assert len(sim.servers) == 3
        assert "factory/line_a/meter" in sim.describe()
        await asyncio.sleep(0.5)  # a simulated minute: the counters move by several kWh
        # Served counters are current: between the plant's value before and after the read.
        before = sim.plant.values("grid_meter")["energy_import_kwh"]
        served = await _read_import_kwh(meter)
        after = sim.plant.values("grid_meter")["energy_import_kwh"]
        assert before - 0.125 <= served <= after + 0.125  # float32 resolution at 1.2e6 kWh
        assert served > sim.plant.counter_start("grid_meter", "energy_import_kwh")
        async with aiomqtt.Client(
            "127.0.0.1", port=int(mqtt_url.rsplit(":", 1)[1]), identifier="zc-test-runner"
        ) as sub:
            await sub.subscribe("factory/line_b/meter", qos=1)
            async with asyncio.timeout(10):
                message = await anext(aiter(sub.messages))
        payload = json.loads(message.payload)
        assert set(payload) == {"power_kw", "energy_kwh", "ts"}
        # The plant keeps up with the clock: never more than about a tick behind.
        await asyncio.sleep(0.1)
        assert clock.now_s() - sim.plant.now_s < 5 * sim.plant.tick_s
        assert sim.publisher is not None and sim.publisher.stats.published > 0
        ports = [s.port for s in sim.servers]
    # After exit: servers closed, truth written with everything the plant did.
    for port in ports:
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)
    saved = GroundTruth.load(truth_path)
    assert saved.to_dict() == sim.ground_truth.to_dict()
    assert saved.end_s == sim.plant.now_s
    assert saved.total("load_kwh") > 0.0


async def test_run_simulator_stops_cleanly_on_cancel(local_site: SiteConfig) -> None:
    # No MQTT publishing here: only the Modbus side and the physics loop.
    site = local_site.model_copy(update={"devices": local_site.modbus_devices, "mqtt": None})
    clock = ScaledClock(datetime.fromtimestamp(MIDNIGHT_S, UTC), SPEED)
    task = asyncio.create_task(run_simulator(site, clock))
    meter = _grid_meter(site)
    async with asyncio.timeout(10):
        while True:
            try:
                value = await _read_import_kwh(meter)
                break
            except (ConnectionError, AssertionError):
                await asyncio.sleep(0.02)
    assert value > 1e5
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(OSError):
        await asyncio.open_connection(meter.host, meter.port)
    pending = [t for t in asyncio.all_tasks() if t.get_name().startswith("simulator-")]
    assert pending == []


async def test_port_in_use_names_the_device(local_site: SiteConfig) -> None:
    meter = _grid_meter(local_site)
    blocker = await asyncio.start_server(lambda r, w: None, meter.host, meter.port)
    try:
        clock = ScaledClock(datetime.fromtimestamp(MIDNIGHT_S, UTC), SPEED)
        sim = PlantSimulator(
            local_site.model_copy(update={"mqtt": None, "devices": local_site.modbus_devices}),
            clock,
        )
        with pytest.raises(OSError, match="grid_meter"):
            await sim.start()
        assert sim.servers == []
    finally:
        blocker.close()
        await blocker.wait_closed()
