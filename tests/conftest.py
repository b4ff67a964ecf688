"""Shared fixtures for the real services the tests talk to.

PostgreSQL: the server at ``ZEROCARBON_TEST_DATABASE_URL`` when set, otherwise an
embedded server started for the run; either way each test run gets a database of its
own, dropped at the end. MQTT: the broker at ``ZEROCARBON_TEST_MQTT_URL`` when set,
otherwise a broker started by the tests on a free port: Mosquitto when its binary is
installed (the broker sites run; it resumes persistent sessions), else the bundled
pure-Python amqtt. TimescaleDB (``ts_server_url``, module-scoped):
``ZEROCARBON_TEST_TIMESCALEDB_URL`` (a server with ``shared_preload_libraries =
'timescaledb'``) when set, else a server of the module's own started from an installed
PostgreSQL that has the extension (``pg_config``); skipped, with the reason, when
there is neither.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import hypothesis
import pytest

from tests.e2e.processes import (
    MosquittoProcess,
    PostgresProcess,
    mosquitto_missing,
    remove_tree,
    scratch_dir,
    timescaledb_bin_dir,
)
from tests.serial_support import PtyPair, ensure_socat
from zerocarbon.config import SiteConfig, load_site
from zerocarbon.ingest.mqtt.broker import local_broker
from zerocarbon.netutil import free_tcp_port
from zerocarbon.storage.database import create_schema, drop_database, ensure_database
from zerocarbon.storage.embedded import EmbeddedPostgres
from zerocarbon.storage.timescale import timescaledb_availability

# Property tests check results, never speed: no per-example deadline (a loaded CI
# machine can take half a second for an example that usually takes a millisecond); and
# the same examples every run, so that a run is repeatable.
hypothesis.settings.register_profile("zerocarbon", deadline=None, derandomize=True)
hypothesis.settings.load_profile("zerocarbon")

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


_TRUNCATE_DATA = (
    "TRUNCATE readings, latest_values, hourly_energy, hourly_carbon, hourly_line, devices, "
    "device_events, notification_outbox, alerts, alert_events, drift_periods, instruments, "
    "retirements, ledger_events, account_reports, power_1min, power_15min, uplink_cursors "
    "RESTART IDENTITY CASCADE"
)


@pytest.fixture
async def pg_conn(pg_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the run's database; data tables are emptied first."""
    conn = await asyncpg.connect(pg_url)
    await conn.execute(_TRUNCATE_DATA)
    yield conn
    # and after: the gateways that later tests start on this database sync the
    # instruments ledger from their own site file, which refuses to forget what another
    # test's site retired
    await conn.execute(_TRUNCATE_DATA)
    await conn.close()


@pytest.fixture(scope="session")
def mqtt_broker_kind() -> str:
    """Which broker ``mqtt_url`` points at: "external", "mosquitto" or "amqtt"."""
    if os.environ.get("ZEROCARBON_TEST_MQTT_URL"):
        return "external"
    return "amqtt" if mosquitto_missing() else "mosquitto"


@pytest.fixture(scope="session")
async def mqtt_url(mqtt_broker_kind: str) -> AsyncIterator[str]:
    url = os.environ.get("ZEROCARBON_TEST_MQTT_URL")
    if url:
        yield url
        return
    if mqtt_broker_kind == "amqtt":
        async with local_broker("127.0.0.1", free_tcp_port()) as started:
            yield started
        return
    folder = scratch_dir("zc-test-mqtt-")
    broker = MosquittoProcess(folder)  # the shipped queue limits, see deploy/mosquitto
    try:
        broker.start()
        yield broker.url
    finally:
        broker.close()
        remove_tree(folder)


@pytest.fixture(scope="session")
def demo_site() -> SiteConfig:
    return load_site(DEMO_SITE)


@pytest.fixture(scope="session")
def socat_path() -> str:
    """socat, installed from Debian's packages when missing (see tests/serial_support.py);
    the tests that need it are skipped with the reason when it cannot be had."""
    found = ensure_socat()
    if found.path is None:
        pytest.skip(found.reason)
    if found.install_s is not None:
        print(f"\ninstalled socat in {found.install_s:.1f} s")
    return found.path


@pytest.fixture
def pty_pairs(socat_path: str, tmp_path: Path) -> Iterator[Callable[[str], PtyPair]]:
    """Makes linked pty pairs (``pair.a`` <-> ``pair.b``) named ``name``; all stopped
    at the end of the test."""
    made: list[PtyPair] = []

    def make(name: str = "tty") -> PtyPair:
        pair = PtyPair(socat_path, tmp_path, name).start()
        made.append(pair)
        return pair

    yield make
    for pair in made:
        pair.stop()


@pytest.fixture
def pty_pair(pty_pairs: Callable[[str], PtyPair]) -> PtyPair:
    """One linked pty pair: what is written to ``a`` is read from ``b`` and back."""
    return pty_pairs("tty")


@pytest.fixture(scope="module")
async def ts_server_url() -> AsyncIterator[str]:
    url = os.environ.get("ZEROCARBON_TEST_TIMESCALEDB_URL")
    if url:
        yield await _usable(url)
        return
    bin_dir = timescaledb_bin_dir()
    if bin_dir is None:
        pytest.skip(
            "ZEROCARBON_TEST_TIMESCALEDB_URL is not set and no PostgreSQL with the "
            "timescaledb extension is installed: these tests need a server with it in "
            "shared_preload_libraries"
        )
    base = scratch_dir("zc-tsdb-")
    base.chmod(0o755)
    server = PostgresProcess(
        base,
        bin_dir=bin_dir,
        settings=["shared_preload_libraries=timescaledb", "timescaledb.telemetry_level=off"],
    )
    try:
        server.start()
        yield await _usable(server.url)
    finally:
        server.close()
        remove_tree(base)


async def _usable(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        availability = await timescaledb_availability(conn)
    finally:
        await conn.close()
    if not availability.usable:
        pytest.skip(f"TimescaleDB server {url}: {availability.reason()}")
    return url
