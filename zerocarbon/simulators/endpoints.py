"""Moving a site's simulated devices onto free local ports."""

from __future__ import annotations

from zerocarbon.config import ModbusTcpDevice, MqttConfig, SiteConfig
from zerocarbon.netutil import free_tcp_port


def on_free_ports(site: SiteConfig, mqtt_url: str | None = None) -> SiteConfig:
    """``site`` with each Modbus endpoint on its own free loopback port (devices that
    shared an endpoint keep sharing one) and, if given, MQTT on ``mqtt_url``."""
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
