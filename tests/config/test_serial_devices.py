"""Site file: Modbus RTU units and DL/T 645 meters on serial ports."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from zerocarbon.config import (
    Dlt645Device,
    ModbusRtuDevice,
    SiteConfigError,
    parse_site,
)

RTU = {
    "id": "main_meter",
    "role": "grid",
    "protocol": "modbus_rtu",
    "profile": "eastron_sdm630",
    "serial_port": "/dev/ttyUSB0",
    "device_id": 1,
}
DLT = {
    "id": "dlt_meter",
    "role": "load",
    "protocol": "dlt645",
    "serial_port": "/dev/ttyUSB1",
    "address": "000012345678",
}


def _site(*devices: dict[str, Any]) -> dict[str, Any]:
    return {"devices": [copy.deepcopy(d) for d in devices]}


def test_rtu_device_and_its_defaults() -> None:
    site = parse_site(_site(RTU, DLT))
    rtu = site.device("main_meter")
    assert isinstance(rtu, ModbusRtuDevice)
    assert rtu.line_settings == (9600, 8, "E", 1)  # Modbus serial default: even parity
    assert rtu.link == "/dev/ttyUSB0"
    assert site.modbus_rtu_devices == (rtu,)
    assert site.modbus_devices == ()  # the TCP ones
    assert site.profile_of(rtu).points
    dlt = site.device("dlt_meter")
    assert isinstance(dlt, Dlt645Device)
    assert dlt.line_settings == (2400, 8, "E", 1)  # DL/T 645-2007 default rate
    assert dlt.link == "/dev/ttyUSB1"
    with pytest.raises(ValueError, match="serial port"):
        _ = dlt.endpoint


@pytest.mark.parametrize(
    ("update", "where"),
    [
        ({"device_id": 0}, r"devices\[0\]\.device_id"),
        ({"device_id": 248}, r"devices\[0\]\.device_id"),
        ({"parity": "X"}, r"devices\[0\]\.parity"),
        ({"stopbits": 3}, r"devices\[0\]\.stopbits"),
        ({"serial_port": ""}, r"devices\[0\]\.serial_port"),
        ({"profile": "no_such_profile"}, r"devices\[0\]\.profile"),
    ],
)
def test_rtu_errors_name_the_field(update: dict[str, Any], where: str) -> None:
    with pytest.raises(SiteConfigError, match=where):
        parse_site(_site({**RTU, **update}))


def test_units_on_one_port_must_agree_on_the_line() -> None:
    other = {**RTU, "id": "sub_meter", "role": "load", "device_id": 2, "baudrate": 19200}
    with pytest.raises(SiteConfigError) as err:
        parse_site(_site(RTU, other))
    message = str(err.value)
    assert "'main_meter'" in message and "'sub_meter'" in message
    assert "baudrate (9600 and 19200)" in message
    gap = {**other, "baudrate": 9600, "request_gap_s": 0.05}
    with pytest.raises(SiteConfigError, match="request_gap_s"):
        parse_site(_site(RTU, gap))
    same_unit = {**other, "baudrate": 9600, "device_id": 1}
    with pytest.raises(SiteConfigError, match="share /dev/ttyUSB0 unit 1"):
        parse_site(_site(RTU, same_unit))
    elsewhere = {**other, "serial_port": "/dev/ttyUSB2"}
    assert len(parse_site(_site(RTU, elsewhere)).modbus_rtu_devices) == 2


def test_one_protocol_a_serial_port() -> None:
    with pytest.raises(SiteConfigError, match="one protocol a line"):
        parse_site(_site(RTU, {**DLT, "serial_port": RTU["serial_port"]}))


def test_dlt645_takes_a_gateway_or_a_serial_port() -> None:
    both = {**DLT, "host": "10.0.0.5", "port": 8899}
    with pytest.raises(SiteConfigError, match=r"devices\[1\]\.serial_port: give either"):
        parse_site(_site(RTU, both))
    neither = {k: v for k, v in DLT.items() if k != "serial_port"}
    with pytest.raises(SiteConfigError, match=r"devices\[1\]\.serial_port: give host and port"):
        parse_site(_site(RTU, neither))
    no_port = {**neither, "host": "10.0.0.5"}
    with pytest.raises(SiteConfigError, match=r"devices\[1\]\.port: required with host"):
        parse_site(_site(RTU, no_port))
    gateway = parse_site(_site(RTU, {**neither, "host": "10.0.0.5", "port": 8899}))
    meter = gateway.device("dlt_meter")
    assert isinstance(meter, Dlt645Device)
    assert meter.link == "10.0.0.5:8899" and meter.endpoint == ("10.0.0.5", 8899)


def test_dlt645_meters_on_one_port() -> None:
    second = {**DLT, "id": "dlt_2", "address": "000012345679", "baudrate": 9600}
    with pytest.raises(SiteConfigError, match="disagree on baudrate"):
        parse_site(_site(RTU, DLT, second))
    same = {**second, "baudrate": 2400, "address": DLT["address"]}
    with pytest.raises(SiteConfigError, match="share /dev/ttyUSB1 address"):
        parse_site(_site(RTU, DLT, same))
    assert len(parse_site(_site(RTU, DLT, {**second, "baudrate": 2400})).dlt645_devices) == 2
