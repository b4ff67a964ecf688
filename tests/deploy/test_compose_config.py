"""``docker-compose config`` validates and merges the compose files as Compose itself
does (schema, interpolation, overrides), without a Docker daemon. Debian's
docker-compose 1.29.2 is installed on demand (tests/deploy/tool_support.py); without it
these tests are skipped, saying why."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .deploy_files import BASE_COMPOSE, DEMO_COMPOSE, ENV_EXAMPLE, ROOT
from .tool_support import ensure_docker_compose

TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def docker_compose() -> str:
    found = ensure_docker_compose()
    if found.path is None:
        pytest.skip(found.reason)
    return found.path


def _config(
    docker_compose: str, files: list[Path], env_file: Path
) -> subprocess.CompletedProcess[str]:
    args = [docker_compose, "--project-directory", str(ROOT), "--env-file", str(env_file)]
    for file in files:
        args += ["-f", str(file)]
    return subprocess.run(
        [*args, "config"], capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )


def _valid(docker_compose: str, files: list[Path]) -> dict[str, Any]:
    done = _config(docker_compose, files, ENV_EXAMPLE)
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    assert isinstance(config, dict)
    return config


def _site_mount(service: dict[str, Any]) -> str:
    (source,) = (v.split(":")[0] for v in service["volumes"] if ":/etc/zerocarbon/site.toml" in v)
    return str(Path(source).relative_to(ROOT))


def test_base_file_is_valid(docker_compose: str) -> None:
    config = _valid(docker_compose, [BASE_COMPOSE])
    services = config["services"]
    assert set(services) == {
        "timescaledb",
        "mosquitto-auth",
        "mosquitto",
        "zerocarbon-init",
        "zerocarbon",
        "grafana",
    }
    gateway = services["zerocarbon"]
    # interpolated from .env.example: the database URL carries its password
    assert gateway["environment"]["ZEROCARBON_DATABASE_URL"] == (
        "postgresql://zerocarbon:change-me-database-password@timescaledb:5432/zerocarbon"
    )
    assert _site_mount(gateway) == "deploy/demo/site.toml"
    assert [p["published"] for p in gateway["ports"]] == [8000]
    # the broker password reaches the gateway, the broker and its password-file job
    for name in ("zerocarbon", "mosquitto", "mosquitto-auth"):
        assert services[name]["environment"]["ZEROCARBON_MQTT_PASSWORD"] == (
            "change-me-broker-password"
        )
    assert services["mosquitto"]["depends_on"]["mosquitto-auth"] == {
        "condition": "service_completed_successfully"
    }
    assert "mosquitto-auth" in config["volumes"]
    # $$ in the broker's health check and the job's script is a literal $ for the
    # container's shell: the password is read there, not written into the config
    (check,) = services["mosquitto"]["healthcheck"]["test"][1:]
    assert '-P "$$ZEROCARBON_MQTT_PASSWORD"' in check and "'$$SYS/broker/version'" in check
    assert '"$$ZEROCARBON_MQTT_PASSWORD"' in services["mosquitto-auth"]["command"][0]
    assert "change-me-broker-password" not in check + services["mosquitto-auth"]["command"][0]


def test_base_with_demo_overlay_is_valid_and_adds_the_simulator(docker_compose: str) -> None:
    config = _valid(docker_compose, [BASE_COMPOSE, DEMO_COMPOSE])
    services = config["services"]
    assert "simulator" in services
    assert services["simulator"]["image"] == services["zerocarbon"]["image"]
    assert services["simulator"]["command"][0] == "simulate"
    assert services["zerocarbon"]["depends_on"]["simulator"]["condition"] == "service_healthy"
    assert services["simulator"]["environment"]["ZEROCARBON_MQTT_PASSWORD"] == (
        "change-me-broker-password"
    )
    # the overlay's site mount replaces the base's (same target), for both readers
    for name in ("zerocarbon", "zerocarbon-init", "simulator"):
        assert _site_mount(services[name]) == "deploy/demo/site.toml"
        assert sum(":/etc/zerocarbon/site.toml" in v for v in services[name]["volumes"]) == 1


def test_missing_password_is_an_error_not_an_empty_password(
    docker_compose: str, tmp_path: Path
) -> None:
    lines = ENV_EXAMPLE.read_text().splitlines()
    for variable in ("ZEROCARBON_DB_PASSWORD", "ZEROCARBON_MQTT_PASSWORD"):
        env = tmp_path / f"without-{variable}.env"
        env.write_text("\n".join(x for x in lines if not x.startswith(f"{variable}=")))
        done = _config(docker_compose, [BASE_COMPOSE], env)
        assert done.returncode != 0
        assert f"set {variable} in .env" in done.stderr
