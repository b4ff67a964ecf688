"""Shared fixtures for the real services the tests talk to.

PostgreSQL: the server at ``ZEROCARBON_TEST_DATABASE_URL`` when set, otherwise an
embedded server started for the run; either way each test run gets a database of its
own, dropped at the end. MQTT: the broker at ``ZEROCARBON_TEST_MQTT_URL`` when set,
otherwise a broker started by the tests on a free port: Mosquitto when its binary is
installed (the broker sites run; it resumes persistent sessions), else the bundled
pure-Python amqtt.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from zerocarbon.config import SiteConfig, load_site
from zerocarbon.ingest.mqtt.broker import local_broker
from zerocarbon.netutil import free_tcp_port
from zerocarbon.storage.database import create_schema, drop_database, ensure_database
from zerocarbon.storage.embedded import EmbeddedPostgres

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_SITE = REPO_ROOT / "examples" / "demo-site.toml"


@pytest.fixture(autouse=True)
def _own_data_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test its own ZEROCARBON_DATA_DIR: a spool left by one test (a gateway that
    stopped with the database away) is never replayed into another test's database."""
    monkeypatch.setenv("ZEROCARBON_DATA_DIR", str(tmp_path_factory.mktemp("data")))


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """URL of a PostgreSQL server's maintenance database."""
    url = os.environ.get("ZEROCARBON_TEST_DATABASE_URL")
    if url:
        yield url
        return
    base = Path(tempfile.mkdtemp(prefix="zc-test-pg-", dir="/tmp" if os.name == "posix" else None))
    server = EmbeddedPostgres(base / "pg")
    yield server.start()
    server.stop()


@pytest.fixture(scope="session")
async def pg_url(pg_server_url: str) -> AsyncIterator[str]:
    """URL of a fresh database for this test run, with the schema created."""
    name = f"zc_test_{os.getpid()}_{secrets.token_hex(3)}"
    url = await ensure_database(pg_server_url, name)
    conn = await asyncpg.connect(url)
    try:
        await create_schema(conn)
    finally:
        await conn.close()
    yield url
    await drop_database(pg_server_url, name)


@pytest.fixture
async def pg_conn(pg_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the run's database; data tables are emptied first."""
    conn = await asyncpg.connect(pg_url)
    await conn.execute(
        "TRUNCATE readings, latest_values, hourly_energy, hourly_carbon, hourly_line, devices "
        "RESTART IDENTITY"
    )
    yield conn
    await conn.close()


MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
)


@pytest.fixture(scope="session")
def mqtt_broker_kind() -> str:
    """Which broker ``mqtt_url`` points at: "external", "mosquitto" or "amqtt"."""
    if os.environ.get("ZEROCARBON_TEST_MQTT_URL"):
        return "external"
    return "mosquitto" if MOSQUITTO else "amqtt"


@pytest.fixture(scope="session")
async def mqtt_url(mqtt_broker_kind: str) -> AsyncIterator[str]:
    url = os.environ.get("ZEROCARBON_TEST_MQTT_URL")
    if url:
        yield url
        return
    port = free_tcp_port()
    if MOSQUITTO is None:
        async with local_broker("127.0.0.1", port) as started:
            yield started
        return
    folder = Path(tempfile.mkdtemp(prefix="zc-test-mqtt-"))
    conf = folder / "mosquitto.conf"
    # the queue limits of deploy/mosquitto/zerocarbon.conf; no persistence file
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n"
        "max_queued_bytes 536870912\nmax_inflight_messages 100\n"
    )
    with open(folder / "mosquitto.log", "wb") as log_file:
        proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(conf)], stdout=log_file, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 10
        while not _listening(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"mosquitto did not start: {(folder / 'mosquitto.log').read_text()}"
                )
            time.sleep(0.02)
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="session")
def demo_site() -> SiteConfig:
    return load_site(DEMO_SITE)
