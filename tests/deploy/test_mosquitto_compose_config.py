"""The compose deployment's broker settings (deploy/mosquitto/compose.conf) on a real
mosquitto: the LAN listener refuses anonymous clients and wrong passwords and takes a
user from a password file made by mosquitto_passwd; the internal listener takes the
gateway without credentials; QoS 1 messages published through the LAN listener while
the gateway's persistent session is away survive a broker restart, every one of them;
and the compose file's health check command answers. Skipped without mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest

from zerocarbon.netutil import free_tcp_port

from .deploy_files import BASE_COMPOSE, COMPOSE_MOSQUITTO_CONF, load_yaml, mosquitto_listeners

MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
)
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")
MOSQUITTO_SUB = shutil.which("mosquitto_sub")
LAN_PORT, INTERNAL_PORT = 1883, 1884  # in compose.conf
MESSAGES = 3000  # three times Mosquitto's default per-client queue
USER, PASSWORD = "line-a-gateway", "s3cret-for-the-test"
CONNECT_ATTEMPTS = 200

pytestmark = pytest.mark.skipif(
    MOSQUITTO is None or MOSQUITTO_PASSWD is None,
    reason="mosquitto and mosquitto_passwd are not installed (Debian's mosquitto package)",
)


@dataclass
class Broker:
    """compose.conf on two free local ports, its files in a temporary folder."""

    folder: Path
    lan_port: int
    internal_port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.folder / "mosquitto.conf"

    def write_config(self) -> None:
        out = []
        for line in COMPOSE_MOSQUITTO_CONF.read_text().splitlines():
            words = line.split("#", 1)[0].split()
            if words[:2] == ["listener", str(LAN_PORT)]:
                line = f"listener {self.lan_port} 127.0.0.1"
            elif words[:2] == ["listener", str(INTERNAL_PORT)]:
                line = f"listener {self.internal_port} 127.0.0.1"
            elif words[:1] == ["password_file"]:
                line = f"password_file {self.folder}/passwd"
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


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    assert MOSQUITTO_PASSWD is not None
    subprocess.run(
        [MOSQUITTO_PASSWD, "-c", "-b", str(tmp_path / "passwd"), USER, PASSWORD],
        check=True,
        capture_output=True,
        timeout=30,
    )
    found = Broker(tmp_path, free_tcp_port(), free_tcp_port())
    found.write_config()
    found.start()
    try:
        yield found
    finally:
        found.stop()


def test_listener_ports_are_the_ones_the_test_rewrites() -> None:
    assert set(mosquitto_listeners(COMPOSE_MOSQUITTO_CONF.read_text())) == {
        0,
        LAN_PORT,
        INTERNAL_PORT,
    }


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


async def test_lan_listener_needs_a_password_and_internal_listener_does_not(
    broker: Broker,
) -> None:
    async with _client(broker.internal_port, identifier="zc-gateway"):
        pass  # the gateway's way in: no credentials
    async with _client(broker.lan_port, username=USER, password=PASSWORD):
        pass
    with pytest.raises(aiomqtt.MqttCodeError, match="[Nn]ot authori"):
        async with _client(broker.lan_port):
            pass
    with pytest.raises(aiomqtt.MqttCodeError, match="[Nn]ot authori"):
        async with _client(broker.lan_port, username=USER, password="wrong"):
            pass


async def test_queued_readings_survive_the_gateway_away_and_a_broker_restart(
    broker: Broker,
) -> None:
    session = {"identifier": "zc-gateway", "clean_session": False}
    async with _client(broker.internal_port, **session) as gateway:
        await gateway.subscribe("factory/line_a/meter", qos=1)
    # the gateway is away: a device publishes through the LAN listener
    async with _client(broker.lan_port, username=USER, password=PASSWORD) as device:
        for i in range(MESSAGES):
            await device.publish("factory/line_a/meter", str(i).encode(), qos=1)
    broker.stop()
    broker.start()
    got: list[int] = []
    async with _client(broker.internal_port, **session) as gateway:
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
    test = load_yaml(BASE_COMPOSE)["services"]["mosquitto"]["healthcheck"]["test"]
    assert test[0] == "CMD" and test[1] == "mosquitto_sub"
    args = [a.replace("$$", "$") for a in test[2:]]  # compose's escape of $
    args[args.index("-p") + 1] = str(broker.internal_port)
    async with _client(broker.internal_port):  # started
        pass
    assert MOSQUITTO_SUB is not None
    done = subprocess.run([MOSQUITTO_SUB, *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("mosquitto version")


async def test_the_gateway_logs_in_with_the_site_files_user_and_password(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """[mqtt] username and password_env: the collector logs in on the LAN listener and
    gets readings; a wrong password is refused, counted and retried, never fatal."""
    import json
    from datetime import UTC, datetime

    from zerocarbon.batch import ReadingBatch, SeriesRegistry
    from zerocarbon.clock import SystemClock
    from zerocarbon.config import parse_site
    from zerocarbon.ingest.mqtt.collector import mqtt_collector

    site = parse_site(
        {
            "mqtt": {
                "url": f"mqtt://127.0.0.1:{broker.lan_port}",
                "username": USER,
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

    for password, works in ((PASSWORD, True), ("wrong", False)):
        monkeypatch.setenv("ZC_TEST_MQTT_PASSWORD", password)
        collector = mqtt_collector(site, SystemClock(), sink, SeriesRegistry.for_site(site))
        assert collector is not None
        task = asyncio.create_task(collector.run())
        try:
            if works:
                await asyncio.wait_for(collector.subscribed.wait(), 20)
                async with _client(broker.lan_port, username=USER, password=PASSWORD) as pub:
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
