"""The center's compose file and NATS configs, read as Docker Compose and nats-server
read them: three hub nodes on a pinned official nats image, each with its generated
config and a volume, only the leafnode ports published; the central database; two
worker replicas and the group API on 8100 with real `zerocarbon center run` options;
passwords only from the env file; and the shipped configs valid for `nats-server -t`
and equal to what deploy/nats/generate.py writes (but for the bcrypt hashes)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.uplink.nats_support import make_tls, require_nats_server
from zerocarbon.cli import app
from zerocarbon.uplink.leaf import check_config

from .deploy_files import ROOT, interpolate, interpolated_names, load_yaml, service_mounts

CENTER_COMPOSE = ROOT / "docker-compose.center.yml"
NATS_DIR = ROOT / "deploy" / "nats"
HUBS = ("hub1", "hub2", "hub3")
CENTER_FILE = "/etc/zerocarbon/center.toml"
SHIPPED = [NATS_DIR / f"{hub}.conf" for hub in HUBS] + [NATS_DIR / "leaf-example.conf"]
# made by the operator (docs/deploy.md), never committed
OPERATOR_CREATED = {"deploy/nats/tls", "deploy/nats/tls/ca.pem", "center.toml"}
BCRYPT = re.compile(r"\$2[abxy]\$\d\d\$[./A-Za-z0-9]{53}")
# every variable the file interpolates, with a value a .env would give
ENV = {
    "ZC_CENTER_DB_PASSWORD": "x",
    "ZC_CENTER_NATS_PASSWORD": "y",
    "ZEROCARBON_CENTER_FILE": "./center.toml",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(CENTER_COMPOSE)


def test_three_hubs_on_a_pinned_nats_image_with_their_configs_and_volumes(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    mounts = service_mounts(services, ENV)
    for hub in HUBS:
        service = services[hub]
        assert re.fullmatch(r"nats:2\.15\.\d+-alpine", service["image"])
        assert service["command"] == ["-c", "/etc/nats/hub.conf"]
        own = {m.target: m for m in mounts if m.service == hub}
        assert own["/etc/nats/hub.conf"].source == f"./deploy/nats/{hub}.conf"
        assert own["/etc/nats/hub.conf"].read_only
        assert own["/data"].source == f"{hub}-data" and f"{hub}-data" in compose["volumes"]
        assert own["/etc/nats/tls"].read_only
        # only the leafnode port faces the sites
        targets = [interpolate(p, ENV).rsplit(":", 1)[1] for p in service["ports"]]
        assert targets == ["7422"]
        assert "8222/healthz" in " ".join(service["healthcheck"]["test"])
    # the configs listen where compose and the health check expect them
    for hub in HUBS:
        text = (NATS_DIR / f"{hub}.conf").read_text()
        assert 'listen: "0.0.0.0:7422"' in text and 'http: "0.0.0.0:8222"' in text
        assert 'store_dir: "/data/jetstream"' in text


def test_database_workers_and_group_api(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert re.fullmatch(
        r"timescale/timescaledb:2\.\d+\.\d+-pg1[67]", services["center-db"]["image"]
    )
    assert "ports" not in services["center-db"]
    workers, api = services["center"], services["center-api"]
    assert workers["deploy"]["replicas"] == 2
    assert "ports" not in workers
    for service in (workers, api):
        assert service["command"][:4] == [
            "center",
            "run",
            "--config",
            "/etc/zerocarbon/center.toml",
        ]
        assert service["build"] == "."
        for dependency in ("center-db", *HUBS):
            assert service["depends_on"][dependency]["condition"] == "service_healthy"
    assert [interpolate(p, ENV) for p in api["ports"]] == ["8100:8100"]
    # the options exist in `zerocarbon center run`
    help_text = CliRunner().invoke(app, ["center", "run", "--help"], terminal_width=200).output
    for option in ("--config", "--no-http", "--workers"):
        assert option in help_text


def test_passwords_come_from_the_env_file(compose: dict[str, Any]) -> None:
    text = CENTER_COMPOSE.read_text()
    assert interpolated_names(text) >= set(ENV)
    checked = 0
    for name, service in compose["services"].items():
        environment = service.get("environment", {})
        for key, value in environment.items():
            if "PASSWORD" in key or key.endswith("DATABASE_URL"):
                checked += 1
                assert re.search(r"\$\{[A-Z_]+:\?[^}]+\}", str(value)), f"{name}.{key}"
    assert checked >= 5
    with pytest.raises(KeyError, match="ZC_CENTER_DB_PASSWORD"):
        interpolate(compose["services"]["center-db"]["environment"]["POSTGRES_PASSWORD"], {})


def test_every_mounted_host_path_exists_or_is_the_operators(compose: dict[str, Any]) -> None:
    for mount in service_mounts(compose["services"], ENV):
        if not mount.is_bind:
            assert mount.source in compose["volumes"], mount
            continue
        relative = mount.source.removeprefix("./")
        if relative in OPERATOR_CREATED:
            continue
        assert (ROOT / relative).exists(), mount


def _with_test_files(text: str, tls_dir: Path, store: Path) -> str:
    """A shipped config whose files are made by the test: TLS material and store."""
    text = text.replace("/etc/nats/tls/", f"{tls_dir}/")
    text = text.replace("/etc/zerocarbon/uplink-ca.pem", str(tls_dir / "ca.pem"))
    return text.replace("/data/jetstream", str(store)).replace(
        "/var/lib/zerocarbon/uplink/jetstream", str(store)
    )


def test_shipped_nats_configs_pass_nats_server_t(tmp_path: Path) -> None:
    binary = require_nats_server()
    tls = make_tls(tmp_path / "tls")
    assert {tls.cert_file.name, tls.key_file.name} == {"server.pem", "server-key.pem"}
    for shipped in SHIPPED:
        path = tmp_path / shipped.name
        path.write_text(_with_test_files(shipped.read_text(), tls.cert_file.parent, tmp_path))
        assert check_config(path, nats_server=binary) is None, shipped
        assert "/etc/" not in path.read_text()  # every file it names was made here


def test_shipped_configs_are_what_the_generator_writes(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(NATS_DIR / "generate.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        env={"ZC_CENTER_NATS_PASSWORD": "not-the-shipped-one", "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    for shipped in SHIPPED:
        fresh = BCRYPT.sub("<hash>", (tmp_path / shipped.name).read_text())
        assert BCRYPT.sub("<hash>", shipped.read_text()) == fresh, (
            f"{shipped.name}: run python deploy/nats/generate.py"
        )
