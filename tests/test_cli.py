"""The command line as a user meets it: help, version, and clear errors."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zerocarbon import __version__
from zerocarbon.cli import app

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
