"""Fixtures of the simulator tests: the demo site on free ports, a day of the plant."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from zerocarbon.config import ModbusTcpDevice, MqttConfig, SiteConfig
from zerocarbon.netutil import free_tcp_port
from zerocarbon.simulators.plant import PlantModel

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Local midnight of the June solstice at the demo site.
MIDNIGHT_S = datetime(2026, 6, 21, 0, 0, tzinfo=SHANGHAI).timestamp()


def site_on_free_ports(site: SiteConfig, mqtt_url: str | None = None) -> SiteConfig:
    """``site`` with each Modbus endpoint on its own free loopback port (devices that
    shared one keep sharing it) and, if given, MQTT on ``mqtt_url``."""
    ports: dict[tuple[str, int], int] = {}
    devices = []
    for device in site.devices:
        if isinstance(device, ModbusTcpDevice):
            port = ports.setdefault(device.endpoint, free_tcp_port())
            device = device.model_copy(update={"host": "127.0.0.1", "port": port})
        devices.append(device)
    update: dict[str, object] = {"devices": tuple(devices)}
    if mqtt_url is not None:
        update["mqtt"] = (site.mqtt or MqttConfig()).model_copy(update={"url": mqtt_url})
    return site.model_copy(update=update)


@pytest.fixture
def local_site(demo_site: SiteConfig) -> SiteConfig:
    return site_on_free_ports(demo_site)


@pytest.fixture(scope="module")
def demo_day(demo_site: SiteConfig) -> PlantModel:
    """The demo plant after 24 simulated hours from local midnight (read only)."""
    plant = PlantModel(demo_site, MIDNIGHT_S)
    plant.advance(MIDNIGHT_S + 86400)
    return plant
