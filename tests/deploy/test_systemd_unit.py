"""The systemd unit for a bare gateway: what it runs and how it is hardened, verified by
``systemd-analyze verify`` (no running systemd needed), its environment file accepted by
the gateway's settings, and its stop signal one that `zerocarbon run` handles in order.

How ``systemd-analyze verify`` behaves here (systemd 252): it exits 1 when ExecStart's
binary does not exist ("Command ... is not executable"), so the unit is verified on a
copy whose ExecStart names an existing binary (the same arguments); and it exits 0 on an
unknown key or a bad value, only printing "Unknown key ..." / "Failed to parse ...", so
the check also requires that it prints nothing."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from zerocarbon.settings import Settings

from .deploy_files import SYSTEMD_ENV, SYSTEMD_UNIT, read_env_file, unit_settings

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
INSTALLED_BINARY = "/opt/zerocarbon/.venv/bin/zerocarbon"
# read from the environment file by something else than the gateway's Settings: numba,
# `db grant-readonly --password-env`, the site file's [mqtt] password_env
OTHER_READERS = {"NUMBA_CACHE_DIR", "ZEROCARBON_GRAFANA_DB_PASSWORD", "ZEROCARBON_MQTT_PASSWORD"}

needs_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (Debian's systemd)"
)


def _verify(unit: Path) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    return subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _copy_with_binary(tmp_path: Path, binary: str, text: str | None = None) -> Path:
    copy = tmp_path / SYSTEMD_UNIT.name
    text = SYSTEMD_UNIT.read_text() if text is None else text
    assert f"ExecStart={INSTALLED_BINARY} " in text
    copy.write_text(text.replace(f"ExecStart={INSTALLED_BINARY} ", f"ExecStart={binary} "))
    return copy


def test_unit_runs_the_gateway_as_its_user_hardened() -> None:
    unit = unit_settings(SYSTEMD_UNIT.read_text())
    service = {key: values[-1] for key, values in unit["Service"].items()}
    assert service["Type"] == "simple"
    assert service["User"] == "zerocarbon"
    assert service["EnvironmentFile"] == "/etc/zerocarbon/zerocarbon.env"
    assert service["ExecStart"] == f"{INSTALLED_BINARY} run --site /etc/zerocarbon/site.toml"
    assert service["Restart"] == "on-failure"
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["PrivateTmp"] == "yes"
    assert service["ReadWritePaths"] == "/var/lib/zerocarbon"
    assert service["StateDirectory"] == "zerocarbon"
    assert service["CapabilityBoundingSet"] == ""
    # numba writes and then executes machine code: this would kill the gateway
    assert "MemoryDenyWriteExecute" not in service
    # the data folder the gateway uses is the one the unit lets it write
    env = read_env_file(SYSTEMD_ENV)
    assert env["ZEROCARBON_DATA_DIR"] == service["ReadWritePaths"]
    assert env["NUMBA_CACHE_DIR"].startswith(service["ReadWritePaths"] + "/")
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


@needs_analyze
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    copy = _copy_with_binary(tmp_path, sys.executable)
    done = _verify(copy)
    assert done.returncode == 0, done.stderr
    assert done.stdout + done.stderr == ""  # no warning either (unknown keys, bad values)


@needs_analyze
def test_systemd_analyze_verify_as_used_here_catches_mistakes(tmp_path: Path) -> None:
    """The two behaviours the check above relies on."""
    if not Path(INSTALLED_BINARY).exists():
        done = _verify(SYSTEMD_UNIT)  # the real path: not installed on this machine
        assert done.returncode == 1 and "is not executable" in done.stderr
    broken = SYSTEMD_UNIT.read_text().replace("ProtectSystem=strict", "ProtectSystem=strictly")
    done = _verify(_copy_with_binary(tmp_path, sys.executable, broken))
    assert done.returncode == 0  # a bad value is only a warning...
    assert "strictly" in done.stderr  # ...which the check above refuses


def test_environment_file_is_accepted_by_the_gateway_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each ZEROCARBON_* line, set or commented out, is a setting the gateway reads,
    with a valid value."""
    set_values = read_env_file(SYSTEMD_ENV)
    commented = {
        m.group(1): m.group(2)
        for m in re.finditer(r"^#([A-Z][A-Z0-9_]*)=(\S*)$", SYSTEMD_ENV.read_text(), re.M)
    }
    fields = {f"ZEROCARBON_{name.upper()}" for name in Settings.model_fields}
    for values in (set_values, {**set_values, **commented}):
        for name in values:
            assert name in fields or name in OTHER_READERS, f"{name}: nobody reads it"
        for name in fields:
            monkeypatch.delenv(name, raising=False)
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        settings = Settings()
        assert str(settings.data_dir) == values["ZEROCARBON_DATA_DIR"]
        assert settings.http_port == int(values["ZEROCARBON_HTTP_PORT"])
    assert "ZEROCARBON_API_READ_ROLE" in commented  # documented, off by default
    assert settings.api_read_role is not None and settings.api_read_role.value == "viewer"


_STOPPABLE = """
import asyncio, sys
from zerocarbon.cli import _run_until_signal

async def main(stop: asyncio.Event) -> None:
    print("ready", flush=True)
    await stop.wait()
    print("stopped in order", flush=True)

_run_until_signal(main)
"""


def test_kill_signal_stops_the_gateway_in_order() -> None:
    """The unit's KillSignal (and docker's SIGTERM) reaches `zerocarbon run`'s orderly
    shutdown: the same runner (cli._run_until_signal) in a child process is sent that
    signal once it runs, and its main returns."""
    unit = unit_settings(SYSTEMD_UNIT.read_text())
    kill_signal = unit["Service"]["KillSignal"][-1]
    for name in dict.fromkeys([kill_signal, "SIGTERM"]):
        child = subprocess.Popen(
            [sys.executable, "-c", _STOPPABLE],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
            child.send_signal(signal.Signals[name])
            out, _ = child.communicate(timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert child.returncode == 0, name
        assert out.strip() == "stopped in order", name
