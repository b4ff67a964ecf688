"""The command line as a user meets it: help, version, and clear errors."""

from __future__ import annotations

import asyncio
import socket
import threading
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.serial_support import PtyPair
from zerocarbon import __version__
from zerocarbon.cli import app
from zerocarbon.config import ModbusTcpDevice
from zerocarbon.metering.profile import load_profile, parse_profile
from zerocarbon.simulators.modbus_server import ModbusTcpServer
from zerocarbon.simulators.register_bank import RegisterBank
from zerocarbon.simulators.sunspec_device import sunspec_register_bank

from .conftest import DEMO_SITE

runner = CliRunner()


def test_version_and_help() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"zerocarbon {__version__}"
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("demo", "simulate", "run", "check-config"):
        assert command in result.output


def test_check_config_ok() -> None:
    result = runner.invoke(app, ["check-config", "--site", str(DEMO_SITE)])
    assert result.exit_code == 0, result.output
    assert "6 devices" in result.output and "grid_meter" in result.output
    assert "location 0.55 kg/kWh (MEE 2023 regional east)" in result.output
    assert "certificates gec_2026_q2: 80 GEC" in result.output


def test_check_config_names_an_unknown_factor_region(tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_text(DEMO_SITE.read_text().replace('region = "east"', 'region = "eest"'))
    result = runner.invoke(app, ["check-config", "--site", str(site)])
    assert result.exit_code == 2
    assert "grid.region: no MEE factor for region 'eest'" in result.output


def test_check_config_names_the_bad_key(tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_text(DEMO_SITE.read_text().replace("port = 15021", "port = 70000"))
    result = runner.invoke(app, ["check-config", "--site", str(site)])
    assert result.exit_code == 2
    assert "devices[1].port" in result.output and "70000" in result.output


def test_check_config_lists_alert_rules_and_checks_channel_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    example = DEMO_SITE.parent / "alert-faults-site.toml"
    result = runner.invoke(app, ["check-config", "--site", str(example)])
    assert result.exit_code == 0, result.output
    assert "alert rule max-demand: demand, critical, to every channel" in result.output
    site = tmp_path / "site.toml"
    site.write_text(
        example.read_text("utf-8")
        + '\n[[alerts.channels]]\nname = "robot"\nkind = "wecom"\nkey_env = "ZC_ROBOT_KEY"\n',
        "utf-8",
    )
    monkeypatch.delenv("ZC_ROBOT_KEY", raising=False)
    result = runner.invoke(app, ["check-config", "--site", str(site)])
    assert result.exit_code == 2
    assert "alerts.channels[0].key_env: environment variable ZC_ROBOT_KEY is not set" in (
        result.output
    )
    monkeypatch.setenv("ZC_ROBOT_KEY", "k")
    assert runner.invoke(app, ["check-config", "--site", str(site)]).exit_code == 0


def test_demo_refuses_a_busy_port() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runner.invoke(app, ["demo", "--port", str(port)])
    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.output


def test_run_with_an_unreachable_database_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead_port = closed.getsockname()[1]  # nothing listens once closed
    monkeypatch.setenv(
        "ZEROCARBON_DATABASE_URL", f"postgresql://zc:secret@127.0.0.1:{dead_port}/zc"
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        http_port = probe.getsockname()[1]
    result = runner.invoke(app, ["run", "--site", str(DEMO_SITE), "--port", str(http_port)])
    assert result.exit_code == 1
    assert "cannot use the database" in result.output
    assert "secret" not in result.output  # the password is not printed


@contextmanager
def _gateway_in_thread(units: dict[int, RegisterBank]) -> Iterator[int]:
    """A simulated Modbus TCP gateway on its own event loop (the command runs its own);
    yields its port."""
    ready = threading.Event()
    stop: list[asyncio.Event] = []
    port: list[int] = []

    async def serve() -> None:
        stop.append(asyncio.Event())
        async with ModbusTcpServer("127.0.0.1", 0, units) as server:
            port.append(server.port)
            ready.set()
            await stop[0].wait()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10), "the gateway did not start"
    try:
        yield port[0]
    finally:
        loop.call_soon_threadsafe(stop[0].set)
        thread.join(10)
        loop.close()


def test_devices_scan_end_to_end(tmp_path: Path) -> None:
    """Two units behind one gateway, one SunSpec and one SDM630: the printed profile
    parses back as a valid profile, the [[devices]] entries as site devices."""
    units = {
        3: sunspec_register_bank([1, 103, 160, 802]),
        7: RegisterBank(load_profile("eastron_sdm630")),
    }
    with _gateway_in_thread(units) as port:
        args = ["devices", "scan", "--host", "127.0.0.1", "--port", str(port)]
        printed = runner.invoke(app, [*args, "--units", "1-10", "--timeout-s", "0.3"])
        written = runner.invoke(app, [*args, "--units", "3,7", "--out-dir", str(tmp_path)])
    assert printed.exit_code == 0, printed.output
    assert "probed 10/10 unit ids, 2 answer" in printed.stderr
    sections = printed.stdout.split("\n# ---- ")
    profile_section = next(s for s in sections if s.startswith("profile file "))
    name = profile_section.split()[2].removesuffix(".toml")
    profile = parse_profile(tomllib.loads(profile_section.split("\n", 1)[1]), "printed")
    assert profile.profile.name == name == f"sunspec_127_0_0_1_{port}_u3"
    assert {p.metric for p in profile.metric_points} == {
        "voltage_v", "active_power_kw", "frequency_hz", "energy_generated_kwh",
        "state_of_charge_pct",
    }  # fmt: skip
    entries_section = next(s for s in sections if s.startswith("[[devices]] entries"))
    entries = tomllib.loads(entries_section.split("\n", 1)[1])["devices"]
    assert [(e["device_id"], e["profile"]) for e in entries] == [
        (3, f"{name}.toml"),
        (7, "eastron_sdm630"),
    ]
    (tmp_path / f"{name}.toml").write_text(profile_section.split("\n", 1)[1])
    devices = [ModbusTcpDevice.model_validate(e, context={"base_dir": tmp_path}) for e in entries]
    assert devices[0].load_profile(tmp_path) == profile

    assert written.exit_code == 0, written.output
    files = sorted(tmp_path.glob("*.toml"))
    assert [f.name for f in files] == [f"{name}.toml"]
    assert load_profile(str(files[0])) == profile  # same file content as printed
    written_entries = tomllib.loads(written.stdout)["devices"]
    assert written_entries[0]["profile"] == str(files[0].resolve())


def test_devices_scan_errors_name_the_problem() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens once closed
    result = runner.invoke(app, ["devices", "scan", "--host", "127.0.0.1", "--port", str(port)])
    assert result.exit_code == 1
    assert f"error: cannot reach 127.0.0.1:{port}" in result.stderr
    result = runner.invoke(app, ["devices", "scan", "--host", "x", "--units", "1-300"])
    assert result.exit_code == 2
    assert "'1-300' is not within 0..255" in result.output


def test_check_config_names_where_each_mqtt_device_publishes() -> None:
    examples = Path(__file__).parent.parent / "examples"
    out = runner.invoke(app, ["check-config", "--site", str(examples / "mqtt-tasmota.toml")])
    assert out.exit_code == 0, out.output
    assert "tasmota tele/main/SENSOR" in out.output
    out = runner.invoke(app, ["check-config", "--site", str(examples / "mqtt-sparkplug.toml")])
    assert "sparkplug spBv1.0/plant1/+/substation-gw/chiller-meter" in out.output


def _rtu_site(path: Path, serial_port: str) -> Path:
    site = path / "rtu-site.toml"
    site.write_text(
        "[[devices]]\n"
        'id = "grid_meter"\nrole = "grid"\nprotocol = "modbus_rtu"\n'
        f'profile = "eastron_sdm630"\nserial_port = "{serial_port}"\n'
        "device_id = 7\nbaudrate = 115200\n"
    )
    return site


def test_simulate_refuses_a_serial_option_for_no_port_of_the_site(tmp_path: Path) -> None:
    site = _rtu_site(tmp_path, "/dev/ttyUSB0")
    out = runner.invoke(app, ["simulate", "--site", str(site), "--serial", "/dev/ttyS9=/tmp/x"])
    assert out.exit_code != 0
    assert "'/dev/ttyS9' is no serial port of the site" in out.output
    assert "/dev/ttyUSB0" in out.output
    out = runner.invoke(app, ["simulate", "--site", str(site), "--serial", "/dev/ttyUSB0"])
    assert out.exit_code != 0 and "expected PORT=PATH" in out.output


async def test_simulate_serves_a_serial_port_on_the_given_path(
    pty_pair: PtyPair, tmp_path: Path
) -> None:
    """The command as a user runs it: the gateway's end of a pty pair is the site's
    serial_port; the simulator answers on the other end."""
    import signal
    import subprocess
    import sys

    from zerocarbon.ingest.modbus.rtu_transport import ModbusRtuTransport
    from zerocarbon.ingest.modbus.transport import READ_INPUT_REGISTERS
    from zerocarbon.ingest.serial_link import SerialSettings
    from zerocarbon.metering.profile import load_profile

    site = _rtu_site(tmp_path, str(pty_pair.b))
    command = [sys.executable, "-m", "zerocarbon", "simulate", "--site", str(site)]
    process = subprocess.Popen(
        [*command, "--serial", f"{pty_pair.b}={pty_pair.a}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    transport = ModbusRtuTransport(str(pty_pair.b), SerialSettings(baudrate=115_200))
    try:
        assert process.stdout is not None
        output: list[bytes] = []
        while not output or b"simulating" not in output[-1]:  # after its endpoint list
            output.append(await asyncio.to_thread(process.stdout.readline))
            assert output[-1], b"".join(output)  # ended before it was serving
        assert f"modbus rtu {pty_pair.a}".encode() in b"".join(output)
        await transport.connect()
        voltage = load_profile("eastron_sdm630").point("phase_1_voltage")
        registers = await transport.read_registers(
            7, READ_INPUT_REGISTERS, voltage.address, 2, timeout_s=2.0
        )
        value = load_profile("eastron_sdm630").decode_raw(voltage, registers)
        assert 200.0 < value < 260.0  # the plant's grid voltage, decoded
    finally:
        await transport.close()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
