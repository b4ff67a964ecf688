"""Moving a site's simulated devices onto free local ports."""

from __future__ import annotations

from collections.abc import Mapping

from zerocarbon.config import Dlt645Device, ModbusRtuDevice, ModbusTcpDevice, MqttConfig, SiteConfig
from zerocarbon.netutil import free_tcp_port


def on_free_ports(
    site: SiteConfig,
    mqtt_url: str | None = None,
    serial_ports: Mapping[str, str] | None = None,
) -> SiteConfig:
    """``site`` with each Modbus TCP endpoint and each DL/T 645 gateway on its own free
    loopback port (devices that shared one keep sharing one), if given MQTT on
    ``mqtt_url``, and each serial port named in ``serial_ports`` (site file's port ->
    the path the gateway is to use, e.g. one end of a pty pair) replaced."""
    ports: dict[tuple[str, int], int] = {}
    moved = dict(serial_ports or {})
    devices = []
    for device in site.devices:
        if isinstance(device, ModbusTcpDevice):
            port = ports.setdefault(device.endpoint, free_tcp_port())
            device = device.model_copy(update={"host": "127.0.0.1", "port": port})
        elif isinstance(device, Dlt645Device) and device.serial_port is None:
            port = ports.setdefault(device.endpoint, free_tcp_port())
            device = device.model_copy(update={"host": "127.0.0.1", "port": port})
        elif isinstance(device, ModbusRtuDevice | Dlt645Device) and device.serial_port in moved:
            device = device.model_copy(update={"serial_port": moved[device.serial_port]})
        devices.append(device)
    update: dict[str, object] = {"devices": tuple(devices)}
    if mqtt_url is not None:
        update["mqtt"] = (site.mqtt or MqttConfig()).model_copy(update={"url": mqtt_url})
    return site.model_copy(update=update)
