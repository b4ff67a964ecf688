"""The compose deployment read as Docker Compose would, without Docker: every variable
has its line in .env.example, images are pinned, every service has a health check,
every host path mounted exists and parses, no password is written into a compose file,
the gateway's commands are real options of `zerocarbon`, the demo site file is the
example's plant wired to the compose services, and the image runs as a non-root user
with a health check that really tells 200 from 503."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import typer
import yaml

from zerocarbon.cli import app
from zerocarbon.config import ModbusTcpDevice, load_site

from .deploy_files import (
    BASE_COMPOSE,
    COMPOSE_MOSQUITTO_CONF,
    DEMO_COMPOSE,
    DEMO_SITE_FILE,
    DEPLOY_DOC,
    DOCKERFILE,
    DOCKERIGNORE,
    ENV_EXAMPLE,
    EXAMPLE_DEMO_SITE,
    OPERATOR_CREATED,
    ROOT,
    Mount,
    interpolate,
    interpolated_names,
    load_yaml,
    mosquitto_listeners,
    read_env_file,
    service_mounts,
)

BUILT_IMAGE = "zerocarbon"  # the image docker-compose builds from the Dockerfile
# pinned tags: TimescaleDB 2.x on PostgreSQL 16 or 17, Mosquitto 2.x, Grafana 11.6.x
PINNED = {
    "timescale/timescaledb": r"2\.\d+\.\d+-pg1[67]",
    "eclipse-mosquitto": r"2\.\d+\.\d+",
    "grafana/grafana-oss": r"11\.6\.\d+",
}


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    return load_yaml(BASE_COMPOSE)


@pytest.fixture(scope="module")
def demo() -> dict[str, Any]:
    return load_yaml(DEMO_COMPOSE)


def _all_services(base: dict[str, Any], demo: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services of both files; an overlay entry that only extends a base service counts
    under the base's name."""
    services = dict(base["services"])
    for name, service in demo["services"].items():
        services[name] = {**services.get(name, {}), **service}
    return services


def test_every_variable_has_a_line_in_env_example_and_every_line_is_used(
    env: dict[str, str],
) -> None:
    used = interpolated_names(BASE_COMPOSE.read_text() + DEMO_COMPOSE.read_text())
    assert used, "the compose files interpolate nothing?"
    assert sorted(used - env.keys()) == []
    assert sorted(env.keys() - used) == []


def test_passwords_come_from_the_env_file_never_literals(
    base: dict[str, Any], demo: dict[str, Any], env: dict[str, str]
) -> None:
    checked = 0
    for name, service in _all_services(base, demo).items():
        environment = service.get("environment", {})
        assert isinstance(environment, dict), f"{name}: environment as a mapping"
        for key, value in environment.items():
            if "PASSWORD" in key or key.endswith("DATABASE_URL"):
                checked += 1
                text = str(value)
                assert re.search(r"\$\{[A-Z_]+:\?[^}]+\}", text), (
                    f"{name}.{key}: a required ${{VAR:?...}} from .env, not a literal"
                )
    assert checked >= 5
    for key, value in env.items():
        if "PASSWORD" in key:
            assert value.startswith("change-me"), f".env.example {key}: a placeholder"
    # and a missing password stops interpolation instead of becoming an empty password
    with pytest.raises(KeyError, match="ZEROCARBON_DB_PASSWORD"):
        interpolate(base["services"]["timescaledb"]["environment"]["POSTGRES_PASSWORD"], {})


def test_images_are_pinned(base: dict[str, Any], demo: dict[str, Any], env: dict[str, str]) -> None:
    seen = set()
    for name, service in _all_services(base, demo).items():
        image = interpolate(service["image"], env)
        repo, _, tag = image.rpartition(":")
        assert tag and tag != "latest" and "latest" not in tag, f"{name}: {image} not pinned"
        if repo == BUILT_IMAGE:
            assert service.get("build") == ".", f"{name}: built from the Dockerfile"
            continue
        assert repo in PINNED, f"{name}: unexpected image {image}"
        assert re.fullmatch(PINNED[repo], tag), f"{name}: {image}: want {PINNED[repo]}"
        seen.add(repo)
    assert seen == set(PINNED)


def test_every_long_running_service_has_a_health_check(
    base: dict[str, Any], demo: dict[str, Any]
) -> None:
    services = _all_services(base, demo)
    for name, service in services.items():
        check = service.get("healthcheck")
        assert check, f"{name}: no healthcheck"
        if check.get("disable"):
            # only a one-shot job may go without: it exits, it is not restarted
            assert service.get("restart") == "no", f"{name}: health check disabled"
            continue
        assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) > 1
    tsdb = services["timescaledb"]["healthcheck"]["test"]
    assert "pg_isready" in " ".join(tsdb)
    # what waits for what: the gateway starts on a healthy database and broker, after
    # the migrations; the demo's gateway after its simulated plant
    gateway = base["services"]["zerocarbon"]["depends_on"]
    assert gateway["timescaledb"]["condition"] == "service_healthy"
    assert gateway["mosquitto"]["condition"] == "service_healthy"
    assert gateway["zerocarbon-init"]["condition"] == "service_completed_successfully"
    assert demo["services"]["zerocarbon"]["depends_on"]["simulator"] == {
        "condition": "service_healthy"
    }


def _parse_file(path: Path) -> None:
    """Parse ``path`` by its kind; raises when it does not parse."""
    suffix = path.suffix
    if suffix in (".yaml", ".yml"):
        assert yaml.safe_load(path.read_text()) is not None, f"{path}: empty YAML"
    elif suffix == ".json":
        json.loads(path.read_text())
    elif suffix == ".conf":
        assert mosquitto_listeners(path.read_text())
    elif suffix == ".toml":
        load_site(path)
    else:
        raise AssertionError(f"{path}: no parser for {suffix!r} files")


def _mounts(base: dict[str, Any], demo: dict[str, Any], env: dict[str, str]) -> list[Mount]:
    return service_mounts(base["services"], env) + service_mounts(demo["services"], env)


def test_every_mounted_host_path_exists_and_parses(
    base: dict[str, Any], demo: dict[str, Any], env: dict[str, str]
) -> None:
    """Bind mounts: each is read-only and exists, each file parses and each folder holds
    files that parse; the operator's secrets (optional files in a mounted folder) are
    left out, and docs/deploy.md says how to make them. The Grafana folders are written
    by `zerocarbon dashboards export deploy/grafana`: this fails until they are
    committed."""
    for relative in OPERATOR_CREATED:
        assert relative in DEPLOY_DOC.read_text(), f"docs/deploy.md: how to make {relative}"
    missing, parsed = [], []
    for mount in _mounts(base, demo, env):
        if not mount.is_bind:
            assert mount.source in base["volumes"], f"{mount}: undeclared named volume"
            continue
        assert mount.read_only, f"{mount.service}: mount {mount.source} read-only"
        relative = os.path.normpath(mount.source)
        path = ROOT / relative
        assert relative not in OPERATOR_CREATED, f"{mount.service}: mount its folder instead"
        if not path.exists():
            missing.append(relative)
            continue
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        files = [f for f in files if f.relative_to(ROOT).as_posix() not in OPERATOR_CREATED]
        assert files, f"{relative}: an empty folder"
        for file in files:
            _parse_file(file)
            parsed.append(file.relative_to(ROOT).as_posix())
    assert missing == [], f"mounted but not in the repository: {missing}"
    assert "deploy/mosquitto/compose.conf" in parsed and "deploy/demo/site.toml" in parsed
    # the operator's device users are read from their folder, mounted read-only
    folders = {os.path.normpath(m.source) for m in _mounts(base, demo, env) if m.is_bind}
    assert {os.path.dirname(relative) for relative in OPERATOR_CREATED} <= folders


def test_grafana_datasource_uses_the_readonly_role_and_its_password_variable(
    base: dict[str, Any], env: dict[str, str]
) -> None:
    grafana = base["services"]["grafana"]
    mounts = {m.target: ROOT / m.source for m in service_mounts({"grafana": grafana}, env)}
    assert set(mounts) >= {"/etc/grafana/provisioning", "/var/lib/grafana/dashboards"}
    datasources = mounts["/etc/grafana/provisioning"] / "datasources"
    files = sorted(datasources.glob("*.yaml")) if datasources.is_dir() else []
    assert files, f"{datasources.relative_to(ROOT)}: not exported yet"
    text = "\n".join(f.read_text() for f in files)
    passed_in = set(grafana["environment"])
    # Grafana expands $VAR and ${VAR} in provisioning files from its environment
    referenced = set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", text))
    assert referenced and referenced <= passed_in, referenced - passed_in
    assert "timescaledb:5432" in text
    init = " ".join(base["services"]["zerocarbon-init"]["command"])
    role = re.search(r"grant-readonly --role (\S+)", init)
    assert role is not None and re.search(rf"\buser: {role.group(1)}\b", text)


def _click_parse(args: list[str]) -> Any:
    """Parse ``zerocarbon ARGS`` as the real command line does (unknown options and
    missing required ones raise); the leaf command's context (Typer's click)."""
    command: Any = typer.main.get_command(app)
    words, name = list(args), "zerocarbon"
    while hasattr(command, "commands"):  # a group: its next word names a subcommand
        assert words, f"zerocarbon {' '.join(args)}: no command"
        name = words.pop(0)
        assert name in command.commands, f"zerocarbon has no command {name!r}"
        command = command.commands[name]
    return command.make_context(name, words)


def test_service_commands_are_real_zerocarbon_commands(
    base: dict[str, Any], demo: dict[str, Any], env: dict[str, str]
) -> None:
    services = _all_services(base, demo)
    site_targets = {m.target for m in _mounts(base, demo, env) if m.source.endswith("site.toml")}
    run = _click_parse(services["zerocarbon"]["command"])
    assert run.info_name == "run" and str(run.params["site"]) in site_targets
    simulate = _click_parse(services["simulator"]["command"])
    assert simulate.info_name == "simulate" and str(simulate.params["site"]) in site_targets
    init = services["zerocarbon-init"]
    assert init["entrypoint"] == ["sh", "-c"]
    steps = [shlex.split(step) for step in " ".join(init["command"]).split("&&")]
    assert [s[0] for s in steps] == ["zerocarbon", "zerocarbon"]
    upgrade, grant = (_click_parse(s[1:]) for s in steps)
    assert upgrade.info_name == "upgrade" and str(upgrade.params["site"]) in site_targets
    assert grant.info_name == "grant-readonly"
    assert grant.params["password_env"] in init["environment"]
    # the parse is strict: a wrong option or a missing required one fails
    with pytest.raises(Exception, match="No such option"):
        _click_parse(["run", "--site", "x.toml", "--no-such-option"])
    with pytest.raises(Exception, match="Missing (option|parameter)"):
        _click_parse(["run"])


def test_gateway_reaches_the_database_and_the_broker_of_the_compose_network(
    base: dict[str, Any], env: dict[str, str]
) -> None:
    services = base["services"]
    tsdb_env = services["timescaledb"]["environment"]
    for name in ("zerocarbon", "zerocarbon-init"):
        url = urlparse(interpolate(services[name]["environment"]["ZEROCARBON_DATABASE_URL"], env))
        assert url.hostname == "timescaledb" and url.port == 5432
        assert url.username == tsdb_env["POSTGRES_USER"]
        assert url.password == interpolate(tsdb_env["POSTGRES_PASSWORD"], env)
        assert url.path == "/" + tsdb_env["POSTGRES_DB"]
    gateway = services["zerocarbon"]
    assert gateway["environment"]["ZEROCARBON_HTTP_HOST"] == "0.0.0.0"
    port = gateway["environment"]["ZEROCARBON_HTTP_PORT"]
    assert [p.split(":")[-1] for p in gateway["ports"]] == [port]
    mounts = {m.target: m for m in service_mounts({"zerocarbon": gateway}, env)}
    assert mounts["/var/lib/zerocarbon"].source in base["volumes"]  # the data dir persists


def test_broker_config_keeps_queued_messages_and_needs_passwords_from_everyone(
    base: dict[str, Any], env: dict[str, str]
) -> None:
    """One listener, the published one, with passwords; no anonymous listener anywhere;
    the password file in the volume the one-shot `mosquitto-auth` fills first."""
    text = COMPOSE_MOSQUITTO_CONF.read_text()
    listeners = mosquitto_listeners(text)
    general = listeners.pop(0)
    assert general.get("per_listener_settings", "false") == "false"
    assert general["persistence"] == "true"
    assert general["max_queued_messages"] == "0"  # no count limit: bounded by bytes
    assert int(general["max_queued_bytes"]) >= 256 * 2**20
    assert general["persistent_client_expiration"] == "7d"
    assert "allow_anonymous" not in general
    assert not re.search(r"^\s*allow_anonymous\s+true\b", text, re.M)
    services = base["services"]
    mosquitto = services["mosquitto"]
    mounts = {m.target: m for m in service_mounts({"mosquitto": mosquitto}, env)}
    assert mounts[general["persistence_location"].rstrip("/")].source in base["volumes"]
    published = {int(p.split(":")[-1]) for p in mosquitto["ports"]}
    assert published == set(listeners) == {1883}
    (settings,) = listeners.values()
    assert settings["allow_anonymous"] == "false"
    auth = mounts[os.path.dirname(settings["password_file"])]
    assert auth.source == "mosquitto-auth" and auth.source in base["volumes"]
    assert auth.read_only
    job = services["mosquitto-auth"]
    assert job["restart"] == "no" and job["image"] == mosquitto["image"]
    assert mosquitto["depends_on"]["mosquitto-auth"] == {
        "condition": "service_completed_successfully"
    }
    job_mounts = {m.target: m for m in service_mounts({"mosquitto-auth": job}, env)}
    assert job_mounts[auth.target].source == auth.source and not job_mounts[auth.target].read_only
    # the health check logs in as the gateway's user, its password from its environment
    check = mosquitto["healthcheck"]["test"]
    assert check[0] == "CMD-SHELL"
    assert re.search(r"-u zerocarbon -P \"\$\$ZEROCARBON_MQTT_PASSWORD\"", check[1])
    assert "ZEROCARBON_MQTT_PASSWORD" in mosquitto["environment"]


def test_demo_site_is_the_example_plant_on_the_compose_hosts(env: dict[str, str]) -> None:
    """deploy/demo/site.toml loads with the project's own loader; its Modbus devices
    are served by the `simulator` service, its broker is mosquitto's one listener where
    it logs in as the user `mosquitto-auth` makes, with the password the gateway and the
    simulator get from .env, and the rest is examples/demo-site.toml unchanged."""
    site = load_site(DEMO_SITE_FILE)
    example = load_site(EXAMPLE_DEMO_SITE)
    demo = load_yaml(DEMO_COMPOSE)
    base = load_yaml(BASE_COMPOSE)
    modbus = [d for d in site.devices if isinstance(d, ModbusTcpDevice)]
    assert modbus and {d.host for d in modbus} == {"simulator"}
    assert "simulator" in demo["services"]
    assert site.mqtt is not None
    assert site.mqtt.host == "mosquitto" and site.mqtt.host in base["services"]
    listeners = mosquitto_listeners(COMPOSE_MOSQUITTO_CONF.read_text())
    assert listeners[site.mqtt.port]["allow_anonymous"] == "false"  # the one listener
    assert site.mqtt.client_id and site.mqtt.qos == 1  # a persistent session
    # the broker login: the user the password-file job makes, its password from .env
    assert site.mqtt.username == "zerocarbon"
    variable = site.mqtt.password_env
    assert variable == "ZEROCARBON_MQTT_PASSWORD"
    job = " ".join(base["services"]["mosquitto-auth"]["command"])
    assert re.search(rf'mosquitto_passwd -b "\S+" {site.mqtt.username} "\$\${variable}"', job)
    assert variable in env
    for name, service in (
        ("zerocarbon", base["services"]["zerocarbon"]),
        ("simulator", demo["services"]["simulator"]),
        ("mosquitto-auth", base["services"]["mosquitto-auth"]),
    ):
        value = service["environment"][variable]
        assert value == f"${{{variable}:?set {variable} in .env}}", name
        assert site.mqtt.password({variable: interpolate(value, env)}) == env[variable]
    # the simulator's health check knocks on the first Modbus device's port
    check = " ".join(demo["services"]["simulator"]["healthcheck"]["test"])
    assert f"('simulator', {modbus[0].port})" in check
    as_example = site.model_copy(
        update={
            "devices": tuple(
                d.model_copy(update={"host": "127.0.0.1"}) if isinstance(d, ModbusTcpDevice) else d
                for d in site.devices
            ),
            "mqtt": example.mqtt,
        }
    )
    assert as_example.model_dump() == example.model_dump()


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_runs_unprivileged_with_a_readiness_health_check() -> None:
    steps = _dockerfile()
    args = {w: r for w, r in steps if w == "ARG"}
    base_image = re.search(r"PYTHON_IMAGE=(\S+)", args["ARG"])
    assert base_image and re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base_image.group(1))
    users = [r for w, r in steps if w == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    healthchecks = [r for w, r in steps if w == "HEALTHCHECK"]
    assert len(healthchecks) == 1 and "/readyz" in healthchecks[0]
    installs = [r for w, r in steps if w == "RUN" and "pip install" in r]
    assert installs and not any("[test]" in r or "-e " in r for r in installs)
    assert [r for w, r in steps if w == "ENTRYPOINT"] == ['["zerocarbon"]']
    env_text = " ".join(r for w, r in steps if w == "ENV")
    assert "ZEROCARBON_DATA_DIR=/var/lib/zerocarbon" in env_text
    port = re.search(r"ZEROCARBON_HTTP_PORT=(\d+)", env_text)
    assert port and [r for w, r in steps if w == "EXPOSE"] == [port.group(1)]


def test_dockerignore_admits_what_the_dockerfile_copies_and_no_secrets() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"  # an allow-list: everything else stays out
    allowed = [p[1:].rstrip("/") for p in patterns if p.startswith("!")]
    copied = []
    for word, rest in _dockerfile():
        if word == "COPY":
            copied += rest.split()[:-1]
    assert copied
    for source in copied:
        assert (ROOT / source).exists(), source
        assert any(source == a or source.startswith(a + "/") for a in allowed), source
    for secret in (".env", "deploy/mosquitto/passwd"):
        assert not any(secret == a or secret.startswith(a + "/") for a in allowed)


class _Readyz(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(type(self).status if self.path == "/readyz" else 404)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def readyz_server() -> Iterator[tuple[int, type[_Readyz]]]:
    handler = type("Readyz", (_Readyz,), {})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler
    finally:
        server.shutdown()
        server.server_close()


def test_health_check_commands_tell_ready_from_not_ready(
    readyz_server: tuple[int, type[_Readyz]], base: dict[str, Any]
) -> None:
    """The image's HEALTHCHECK and the compose file's run for real against a server
    answering 200, then 503, on /readyz."""
    port, handler = readyz_server
    exec_form = next(r for w, r in _dockerfile() if w == "HEALTHCHECK").split(" CMD ", 1)[1]
    from_image = json.loads(exec_form)
    from_compose = base["services"]["zerocarbon"]["healthcheck"]["test"][1:]
    assert from_compose == from_image  # one check, the same in both places
    assert from_image[:2] == ["python", "-c"]
    environ = {**os.environ, "ZEROCARBON_HTTP_PORT": str(port)}
    results = []
    for status in (200, 503):
        handler.status = status
        done = subprocess.run(
            [sys.executable, "-c", from_image[2]], env=environ, capture_output=True, timeout=30
        )
        results.append(done.returncode)
    assert results[0] == 0 and results[1] != 0


def test_env_example_is_read_by_compose_as_a_dotenv_file() -> None:
    """Every value is plain (no quotes, no spaces): the same in compose's .env, a shell
    and systemd's EnvironmentFile."""
    for name, value in read_env_file(ENV_EXAMPLE).items():
        assert value and not re.search(r"[\s'\"$#]", value), f"{name}={value!r}"
    assert tomllib.loads(DEMO_SITE_FILE.read_text())  # and the demo site is TOML
