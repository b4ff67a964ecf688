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
    assert set(services) == {"timescaledb", "mosquitto", "zerocarbon-init", "zerocarbon", "grafana"}
    gateway = services["zerocarbon"]
    # interpolated from .env.example: the database URL carries its password
    assert gateway["environment"]["ZEROCARBON_DATABASE_URL"] == (
        "postgresql://zerocarbon:change-me-database-password@timescaledb:5432/zerocarbon"
    )
    assert _site_mount(gateway) == "deploy/demo/site.toml"
    assert [p["published"] for p in gateway["ports"]] == [8000]
    # $$ in the broker's health check is a literal $ for the container
    assert "$$SYS/broker/version" in services["mosquitto"]["healthcheck"]["test"]


def test_base_with_demo_overlay_is_valid_and_adds_the_simulator(docker_compose: str) -> None:
    config = _valid(docker_compose, [BASE_COMPOSE, DEMO_COMPOSE])
    services = config["services"]
    assert "simulator" in services
    assert services["simulator"]["image"] == services["zerocarbon"]["image"]
    assert services["simulator"]["command"][0] == "simulate"
    assert services["zerocarbon"]["depends_on"]["simulator"]["condition"] == "service_healthy"
    # the overlay's site mount replaces the base's (same target), for both readers
    for name in ("zerocarbon", "zerocarbon-init", "simulator"):
        assert _site_mount(services[name]) == "deploy/demo/site.toml"
        assert sum(":/etc/zerocarbon/site.toml" in v for v in services[name]["volumes"]) == 1


def test_missing_password_is_an_error_not_an_empty_password(
    docker_compose: str, tmp_path: Path
) -> None:
    env = tmp_path / "partial.env"
    lines = ENV_EXAMPLE.read_text().splitlines()
    env.write_text("\n".join(x for x in lines if not x.startswith("ZEROCARBON_DB_PASSWORD=")))
    done = _config(docker_compose, [BASE_COMPOSE], env)
    assert done.returncode != 0
    assert "set ZEROCARBON_DB_PASSWORD in .env" in done.stderr
