"""``devices scan`` against a simulated gateway over real Modbus TCP: which units answer
(silent units and the gateway's no-target exception are none), SunSpec models, bundled
profiles that fit, a device that answers every unit id, an unreachable endpoint, and the
rendered profiles and [[devices]] entries loading back."""

from __future__ import annotations

import socket
import tomllib
from pathlib import Path

import pytest

from zerocarbon.config import ModbusTcpDevice
from zerocarbon.devices_scan import ScanError, parse_unit_ids, render, scan
from zerocarbon.metering.profile import load_profile, parse_profile
from zerocarbon.simulators.modbus_server import ModbusTcpServer
from zerocarbon.simulators.register_bank import RegisterBank
from zerocarbon.simulators.sunspec_device import sunspec_register_bank

TIMEOUT_S = 0.3


def _odd_unit() -> RegisterBank:
    """A unit with one holding register at 7: answers, fits no bundled profile."""
    profile = parse_profile(
        {"profile": {"name": "odd"}, "points": [{"name": "x", "address": 7, "type": "uint16"}]},
        "test",
    )
    return RegisterBank(profile)


def _gateway_units() -> dict[int, RegisterBank]:
    return {
        1: sunspec_register_bank([1, 103, 160]),
        2: RegisterBank(load_profile("eastron_sdm630")),
        4: RegisterBank(load_profile("eastron_sdm630")),  # switched off below: silent
        9: _odd_unit(),
    }


def test_parse_unit_ids() -> None:
    assert parse_unit_ids("1-3,5,3") == (1, 2, 3, 5)
    assert parse_unit_ids(" 255 ") == (255,)
    assert len(parse_unit_ids("1-247")) == 247
    for bad in ("0-300", "a", "5-2", "1,,2"):
        with pytest.raises(ValueError, match="unit ids"):
            parse_unit_ids(bad)


@pytest.mark.parametrize("connections", [1, 4])
async def test_scan_finds_the_units_and_what_they_are(connections: int) -> None:
    async with ModbusTcpServer("127.0.0.1", 0, _gateway_units()) as server:
        server.set_offline(4)
        lines: list[str] = []
        report = await scan(
            "127.0.0.1",
            server.port,
            parse_unit_ids("1-12"),
            timeout_s=TIMEOUT_S,
            connections=connections,
            progress=lines.append,
        )
    assert [u.unit_id for u in report.units] == [1, 2, 9]
    assert not report.every_unit_answers
    sunspec, meter, odd = report.units
    assert sunspec.sunspec is not None and sunspec.sunspec.model_ids == (1, 103, 160)
    assert sunspec.common is not None and sunspec.common.manufacturer == "zerocarbon"
    assert meter.sunspec is None and meter.candidates == ("eastron_sdm630",)
    assert odd.sunspec is None and odd.candidates == ()
    assert "probed 12/12 unit ids, 3 answer" in lines
    assert any(line.startswith("unit 1: SunSpec at 40000, models 1 (Common)") for line in lines)


async def test_a_device_answering_every_unit_id_is_reported_once() -> None:
    bank = RegisterBank(load_profile("eastron_sdm630"))
    async with ModbusTcpServer("127.0.0.1", 0, dict.fromkeys(range(1, 6), bank)) as server:
        report = await scan("127.0.0.1", server.port, range(1, 6), timeout_s=TIMEOUT_S)
    assert report.every_unit_answers
    assert [u.unit_id for u in report.units] == [1]
    assert "Every unit id answers" in render(report).text


async def test_an_unreachable_endpoint_is_named() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens once closed
    with pytest.raises(ScanError, match=f"cannot reach 127.0.0.1:{port}"):
        await scan("127.0.0.1", port, [1], timeout_s=TIMEOUT_S)


async def test_rendered_profiles_and_entries_load_back(tmp_path: Path) -> None:
    async with ModbusTcpServer("127.0.0.1", 0, _gateway_units()) as server:
        server.set_offline(4)
        report = await scan("127.0.0.1", server.port, [1, 2, 4, 9], timeout_s=TIMEOUT_S)
    rendered = render(report, tmp_path)
    assert list(rendered.files) == [tmp_path.resolve() / f"sunspec_127_0_0_1_{server.port}_u1.toml"]
    for path, text in rendered.files.items():
        path.write_text(text)
    entries = tomllib.loads(rendered.text)["devices"]
    assert [e["device_id"] for e in entries] == [1, 2]  # unit 9: a commented-out entry
    devices = [ModbusTcpDevice.model_validate(e) for e in entries]
    assert [d.role.value for d in devices] == ["pv", "load"]
    profile = devices[0].load_profile()
    assert {p.metric for p in profile.metric_points} == {
        "voltage_v", "active_power_kw", "frequency_hz", "energy_generated_kwh",
    }  # fmt: skip
    assert devices[1].load_profile() == load_profile("eastron_sdm630")
    # The printed profile serves the scale factors the device served: a simulator fed
    # the file scales every point as the device does.
    device = _gateway_units()[1]
    copy = RegisterBank(profile)
    for point in profile.points:
        assert copy.unit_value(point) == device.unit_value(device.profile.point(point.name))
    assert "# unit 9 answers, but shows no SunSpec map" in rendered.text


async def test_a_link_lost_for_good_stops_the_scan_with_its_endpoint() -> None:
    """The gateway switches off after its tenth request: the scan reconnects once, is
    refused, and says which endpoint it lost."""
    units = {1: RegisterBank(load_profile("eastron_sdm630"))}
    server = ModbusTcpServer("127.0.0.1", 0, units)

    def switch_off_after_ten() -> None:
        if server.requests >= 10:
            server.suspend()

    server.before_request = switch_off_after_ten
    async with server:
        with pytest.raises(ScanError, match=f"lost the link to 127.0.0.1:{server.port}"):
            await scan("127.0.0.1", server.port, range(1, 40), timeout_s=TIMEOUT_S)
