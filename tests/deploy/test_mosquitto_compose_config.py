"""The compose deployment's broker (deploy/mosquitto/compose.conf and the services
`mosquitto-auth` and `mosquitto` of docker-compose.yml) on a real mosquitto: the
`mosquitto-auth` command, run with the real mosquitto_passwd, makes a password file of
the operator's device users and the gateway's user `zerocarbon` that mosquitto
accepts; its one listener takes both users and refuses anonymous clients and wrong
passwords; QoS 1 messages a device publishes while the gateway's persistent session is
away survive a broker restart, every one of them; and the compose file's health check
command answers. Skipped without mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from zerocarbon.netutil import free_tcp_port

from .deploy_files import (
    BASE_COMPOSE,
    COMPOSE_MOSQUITTO_CONF,
    ENV_EXAMPLE,
    Mount,
    load_yaml,
    mosquitto_listeners,
    read_env_file,
    service_mounts,
)

MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
)
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")
MOSQUITTO_SUB = shutil.which("mosquitto_sub")
LISTENER_PORT = 1883  # the one listener of compose.conf
MESSAGES = 3000  # three times Mosquitto's default per-client queue
PASSWORD_VARIABLE = "ZEROCARBON_MQTT_PASSWORD"
GATEWAY_USER = "zerocarbon"  # the user mosquitto-auth makes
# quotes, a space and a $: the commands must pass it through the shell untouched
GATEWAY_PASSWORD = "gw s3cret $HOME 'q'"
USER, PASSWORD = "line-a-gateway", "s3cret-for-the-test"  # an operator's device user
CONNECT_ATTEMPTS = 200

pytestmark = pytest.mark.skipif(
    MOSQUITTO is None or MOSQUITTO_PASSWD is None,
    reason="mosquitto and mosquitto_passwd are not installed (Debian's mosquitto package)",
)


def _services() -> dict[str, Any]:
    services = load_yaml(BASE_COMPOSE)["services"]
    assert isinstance(services, dict)
    return services


def _mounts(service: str) -> list[Mount]:
    return service_mounts({service: _services()[service]}, read_env_file(ENV_EXAMPLE))


def _host_folder(mount: Mount, tmp: Path) -> Path:
    """Where a mount's source lives in the test: a named volume is one folder shared by
    every service that mounts it; a bind-mounted folder is a folder of its own."""
    name = f"volume-{mount.source}" if not mount.is_bind else f"bind-{Path(mount.source).name}"
    return tmp / name


def _host_path(container_path: str, service: str, tmp: Path) -> Path:
    """``container_path`` of ``service`` as the test's path, through its mounts."""
    for mount in sorted(_mounts(service), key=lambda m: len(m.target), reverse=True):
        if container_path == mount.target or container_path.startswith(mount.target + "/"):
            rest = container_path[len(mount.target) :].lstrip("/")
            return _host_folder(mount, tmp) / rest
    raise AssertionError(f"{service}: {container_path} is on no mount")


def _mosquitto_user_exists() -> bool:
    try:
        pwd.getpwnam("mosquitto")
    except KeyError:
        return False
    return True


# root with a mosquitto user: the command's chown runs for real; otherwise it is skipped
REAL_CHOWN = os.geteuid() == 0 and _mosquitto_user_exists()


def run_password_file_job(
    tmp: Path, environ: dict[str, str]
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """The `mosquitto-auth` service's shell command, run here: its mounts' paths
    rewritten to folders under ``tmp`` (compose's ``$$`` unescaped), ``chown`` a no-op
    unless :data:`REAL_CHOWN`. The password file as the broker sees it, and the run."""
    service = _services()["mosquitto-auth"]
    assert service["entrypoint"] == ["sh", "-c"]
    (script,) = service["command"]
    script = script.replace("$$", "$")
    for mount in sorted(_mounts("mosquitto-auth"), key=lambda m: len(m.target), reverse=True):
        folder = _host_folder(mount, tmp)
        folder.mkdir(exist_ok=True)
        assert mount.target in script, f"mosquitto-auth: {mount.target} is not used"
        script = script.replace(mount.target, str(folder))
    assert "/mosquitto/" not in script, "a container path the test did not rewrite"
    if not REAL_CHOWN:
        script = 'chown() { echo "chown $* skipped" >&2; }\n' + script
    done = subprocess.run(
        ["sh", "-c", script],
        env={"PATH": os.environ["PATH"], **environ},
        capture_output=True,
        text=True,
        timeout=60,
    )
    broker_conf = mosquitto_listeners(COMPOSE_MOSQUITTO_CONF.read_text())
    return _host_path(broker_conf[LISTENER_PORT]["password_file"], "mosquitto", tmp), done


def operator_file(tmp: Path, *users: tuple[str, str]) -> Path:
    """deploy/mosquitto/passwd as the operator makes it (mosquitto_passwd), in the
    folder the test mounts as `./deploy/mosquitto`."""
    (mount,) = (m for m in _mounts("mosquitto-auth") if m.is_bind)
    assert os.path.normpath(mount.source) == "deploy/mosquitto" and mount.read_only
    path = _host_folder(mount, tmp) / "passwd"
    path.parent.mkdir(exist_ok=True)
    assert MOSQUITTO_PASSWD is not None
    for number, (user, password) in enumerate(users):
        create = ["-c"] if number == 0 else []
        subprocess.run(
            [MOSQUITTO_PASSWD, *create, "-b", str(path), user, password],
            check=True,
            capture_output=True,
            timeout=30,
        )
    return path


def _users(password_file: Path) -> list[str]:
    return [line.split(":", 1)[0] for line in password_file.read_text().splitlines() if line]


@dataclass
class Broker:
    """compose.conf on a free local port, its files in a temporary folder, the password
    file where the `mosquitto-auth` job wrote it."""

    folder: Path
    port: int
    password_file: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.folder / "mosquitto.conf"

    def write_config(self) -> None:
        out = []
        for line in COMPOSE_MOSQUITTO_CONF.read_text().splitlines():
            words = line.split("#", 1)[0].split()
            if words[:1] == ["listener"]:
                assert words[1:] == [str(LISTENER_PORT)], line
                line = f"listener {self.port} 127.0.0.1"
            elif words[:1] == ["password_file"]:
                line = f"password_file {self.password_file}"
            elif words[:1] == ["persistence_location"]:
                line = f"persistence_location {self.folder}/"
            out.append(line)
        if os.geteuid() == 0:  # stay root: user mosquitto could not read the test's folder
            out.append("user root")
        self.config.write_text("\n".join(out) + "\n")

    def start(self) -> None:
        assert MOSQUITTO is not None
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        """SIGTERM: the broker saves its sessions and queues, then exits."""
        process, self.process = self.process, None
        if process is not None:
            process.terminate()
            process.wait(timeout=30)


@contextlib.contextmanager
def started_broker(tmp: Path, *device_users: tuple[str, str]) -> Iterator[Broker]:
    """The operator's file with ``device_users`` (none: no file), the `mosquitto-auth`
    job, then mosquitto on its output."""
    if device_users:
        operator_file(tmp, *device_users)
    password_file, done = run_password_file_job(tmp, {PASSWORD_VARIABLE: GATEWAY_PASSWORD})
    assert done.returncode == 0, done.stderr
    found = Broker(tmp, free_tcp_port(), password_file)
    found.write_config()
    found.start()
    try:
        yield found
    finally:
        found.stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with started_broker(tmp_path, (USER, PASSWORD)) as found:
        yield found


def test_one_listener_the_one_the_test_rewrites_and_no_anonymous_access() -> None:
    text = COMPOSE_MOSQUITTO_CONF.read_text()
    listeners = mosquitto_listeners(text)
    assert set(listeners) == {0, LISTENER_PORT}
    assert not re.search(r"^\s*allow_anonymous\s+true", text, re.M)
    assert not re.search(r"^\s*listener\s+(?!1883\b)", text, re.M)
    assert listeners[LISTENER_PORT]["allow_anonymous"] == "false"
    assert listeners[LISTENER_PORT]["password_file"] == "/mosquitto/auth/passwd"
    # without per_listener_settings the password file guards every listener
    assert listeners[0].get("per_listener_settings", "false") == "false"


def test_password_file_job_makes_the_gateway_user_and_keeps_the_operators(
    tmp_path: Path,
) -> None:
    """The operator's users are kept, a `zerocarbon` of theirs is replaced by the
    gateway's; owned by mosquitto (when the test may chown), mode 0600, written whole."""
    operator_file(tmp_path, (USER, PASSWORD), (GATEWAY_USER, "the-operators-own"))
    password_file, done = run_password_file_job(tmp_path, {PASSWORD_VARIABLE: GATEWAY_PASSWORD})
    assert done.returncode == 0, done.stderr
    assert _users(password_file) == [USER, GATEWAY_USER]
    assert [p.name for p in password_file.parent.iterdir()] == [password_file.name]
    info = password_file.stat()
    assert info.st_mode & 0o777 == 0o600
    if REAL_CHOWN:
        assert info.st_uid == pwd.getpwnam("mosquitto").pw_uid
    # a second run (every `up`) makes the same users again, not a second `zerocarbon`
    password_file, done = run_password_file_job(tmp_path, {PASSWORD_VARIABLE: "changed"})
    assert done.returncode == 0, done.stderr
    assert _users(password_file) == [USER, GATEWAY_USER]


def test_password_file_job_without_the_operators_file_and_without_a_password(
    tmp_path: Path,
) -> None:
    password_file, done = run_password_file_job(tmp_path, {PASSWORD_VARIABLE: GATEWAY_PASSWORD})
    assert done.returncode == 0, done.stderr
    assert _users(password_file) == [GATEWAY_USER]
    password_file.unlink()
    password_file, done = run_password_file_job(tmp_path, {})
    assert done.returncode != 0 and PASSWORD_VARIABLE in done.stderr
    assert not password_file.exists()


def test_broker_reads_the_password_file_from_the_volume_the_job_writes() -> None:
    services = _services()
    job = {m.target: m for m in _mounts("mosquitto-auth")}
    broker = {m.target: m for m in _mounts("mosquitto")}
    conf = mosquitto_listeners(COMPOSE_MOSQUITTO_CONF.read_text())
    folder = str(Path(conf[LISTENER_PORT]["password_file"]).parent)
    assert job[folder].source == broker[folder].source == "mosquitto-auth"
    assert not job[folder].read_only and broker[folder].read_only
    assert services["mosquitto"]["depends_on"]["mosquitto-auth"] == {
        "condition": "service_completed_successfully"
    }
    assert services["mosquitto-auth"]["restart"] == "no"
    assert services["mosquitto-auth"]["image"] == services["mosquitto"]["image"]


@contextlib.asynccontextmanager
async def _client(port: int, **kwargs: object) -> AsyncIterator[aiomqtt.Client]:
    """A connected client; retried while the broker is still starting (connection
    refused), not when it answers with a refusal."""
    for _ in range(CONNECT_ATTEMPTS):
        client = aiomqtt.Client("127.0.0.1", port=port, **kwargs)  # type: ignore[arg-type]
        try:
            await client.__aenter__()
        except aiomqtt.MqttCodeError:
            raise
        except aiomqtt.MqttError:
            await asyncio.sleep(0.05)
            continue
        try:
            yield client
        finally:
            await client.__aexit__(None, None, None)
        return
    raise AssertionError(f"broker on port {port} did not start")


async def test_gateway_and_device_users_log_in_and_nobody_else(broker: Broker) -> None:
    async with _client(broker.port, username=GATEWAY_USER, password=GATEWAY_PASSWORD):
        pass
    async with _client(broker.port, username=USER, password=PASSWORD):
        pass
    for credentials in (
        {},
        {"username": GATEWAY_USER},
        {"username": GATEWAY_USER, "password": "wrong"},
        {"username": GATEWAY_USER, "password": PASSWORD},
        {"username": USER, "password": "wrong"},
    ):
        with pytest.raises(aiomqtt.MqttCodeError, match="[Nn]ot authori"):
            async with _client(broker.port, **credentials):
                pass


async def test_without_the_operators_file_only_the_gateway_logs_in(tmp_path: Path) -> None:
    with started_broker(tmp_path) as broker:
        async with _client(broker.port, username=GATEWAY_USER, password=GATEWAY_PASSWORD):
            pass
        with pytest.raises(aiomqtt.MqttCodeError, match="[Nn]ot authori"):
            async with _client(broker.port, username=USER, password=PASSWORD):
                pass


async def test_queued_readings_survive_the_gateway_away_and_a_broker_restart(
    broker: Broker,
) -> None:
    session = {
        "identifier": "zc-gateway",
        "clean_session": False,
        "username": GATEWAY_USER,
        "password": GATEWAY_PASSWORD,
    }
    async with _client(broker.port, **session) as gateway:
        await gateway.subscribe("factory/line_a/meter", qos=1)
    # the gateway is away: a device publishes on the same listener with its own user
    async with _client(broker.port, username=USER, password=PASSWORD) as device:
        for i in range(MESSAGES):
            await device.publish("factory/line_a/meter", str(i).encode(), qos=1)
    broker.stop()
    broker.start()
    got: list[int] = []
    async with _client(broker.port, **session) as gateway:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                async for message in gateway.messages:
                    assert isinstance(message.payload, bytes)
                    got.append(int(message.payload))
                    if len(got) == MESSAGES:
                        break
    assert sorted(got) == list(range(MESSAGES))


@pytest.mark.skipif(MOSQUITTO_SUB is None, reason="mosquitto_sub is not installed")
async def test_compose_health_check_command_answers(broker: Broker) -> None:
    """The health check logs in as the gateway's user with the password from the
    container's environment: it answers with it and fails with a wrong one."""
    mosquitto = _services()["mosquitto"]
    test = mosquitto["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL" and len(test) == 2
    assert PASSWORD_VARIABLE in mosquitto["environment"]
    command = test[1].replace("$$", "$")  # compose's escape of $
    command, count = re.subn(rf"-p {LISTENER_PORT}\b", f"-p {broker.port}", command)
    assert count == 1 and command.split()[0] == "mosquitto_sub"
    async with _client(broker.port, username=USER, password=PASSWORD):  # started
        pass
    results = []
    for password in (GATEWAY_PASSWORD, "wrong"):
        done = subprocess.run(
            ["sh", "-c", command],
            env={"PATH": os.environ["PATH"], PASSWORD_VARIABLE: password},
            capture_output=True,
            text=True,
            timeout=30,
        )
        results.append((done.returncode, done.stdout))
    assert results[0][0] == 0 and results[0][1].startswith("mosquitto version"), results
    assert results[1][0] != 0 and results[1][1] == ""


async def test_the_gateway_logs_in_with_the_site_files_user_and_password(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """[mqtt] username and password_env: the collector logs in as the gateway's user
    and gets a device's readings; a wrong password is refused, counted and retried,
    never fatal."""
    import json
    from datetime import UTC, datetime

    from zerocarbon.batch import ReadingBatch, SeriesRegistry
    from zerocarbon.clock import SystemClock
    from zerocarbon.config import parse_site
    from zerocarbon.ingest.mqtt.collector import mqtt_collector

    site = parse_site(
        {
            "mqtt": {
                "url": f"mqtt://127.0.0.1:{broker.port}",
                "username": GATEWAY_USER,
                "password_env": "ZC_TEST_MQTT_PASSWORD",
            },
            "devices": [
                {
                    "id": "grid",
                    "role": "grid",
                    "protocol": "mqtt",
                    "topic": "factory/grid",
                    "fields": {"p": "active_power_kw"},
                }
            ],
        }
    )
    batches: list[ReadingBatch] = []

    async def sink(batch: ReadingBatch, ack: object = None) -> None:
        batches.append(batch)
        if callable(ack):
            ack()

    for password, works in ((GATEWAY_PASSWORD, True), (PASSWORD, False)):
        monkeypatch.setenv("ZC_TEST_MQTT_PASSWORD", password)
        collector = mqtt_collector(site, SystemClock(), sink, SeriesRegistry.for_site(site))
        assert collector is not None
        task = asyncio.create_task(collector.run())
        try:
            if works:
                await asyncio.wait_for(collector.subscribed.wait(), 20)
                async with _client(broker.port, username=USER, password=PASSWORD) as pub:
                    ts = datetime.now(UTC).timestamp()
                    await pub.publish("factory/grid", json.dumps({"ts": ts, "p": 42.0}), qos=1)
                async with asyncio.timeout(10):
                    while not batches:
                        await asyncio.sleep(0.02)
                assert batches[0].value.tolist() == [42.0]
            else:
                async with asyncio.timeout(20):
                    while collector.stats.connection_failures < 2:
                        await asyncio.sleep(0.02)
                assert not collector.subscribed.is_set()
                assert "authori" in (collector.stats.last_error or "").lower()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    monkeypatch.delenv("ZC_TEST_MQTT_PASSWORD")
    with pytest.raises(ValueError, match="ZC_TEST_MQTT_PASSWORD is not set"):
        assert site.mqtt is not None
        site.mqtt.password(os.environ)
