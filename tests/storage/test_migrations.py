"""Schema migrations: a fresh database gets all of them; a database of the releases
before them (``schema_info`` versions 1 to 3) is upgraded with its rows kept; a second
run does nothing; concurrent runs apply each migration once; ``db status``/``db upgrade``."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from typer.testing import CliRunner

from zerocarbon.cli import app
from zerocarbon.config import SiteConfig
from zerocarbon.storage.database import (
    create_schema,
    drop_database,
    ensure_database,
    register_site,
)
from zerocarbon.storage.hourly import upsert_hourly
from zerocarbon.storage.migrations import LATEST_VERSION, MIGRATIONS, SchemaError, migration_status
from zerocarbon.storage.schema import hourly_ddl

from ..api.conftest import hourly_row
from ..conftest import DEMO_SITE

T0 = datetime(2026, 6, 20, 23, 0, tzinfo=UTC)

# What releases with schema_info version 3 created at start (their SCHEMA_SQL), the
# hourly tables aside (the same DDL as today's).
LEGACY_V3_SQL = """
CREATE TABLE schema_info (version integer NOT NULL);
INSERT INTO schema_info VALUES (3);
CREATE TABLE metrics (
    id smallint PRIMARY KEY, name text NOT NULL UNIQUE, unit text NOT NULL,
    kind text NOT NULL, description text NOT NULL DEFAULT '');
CREATE TABLE devices (
    id smallserial PRIMARY KEY, key text NOT NULL UNIQUE, name text NOT NULL DEFAULT '',
    role text NOT NULL, protocol text NOT NULL, line text, rated_power_kw double precision,
    active boolean NOT NULL DEFAULT true, updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE readings (
    ts timestamptz NOT NULL, device_id smallint NOT NULL, metric_id smallint NOT NULL,
    value double precision NOT NULL, quality smallint NOT NULL DEFAULT 0);
CREATE UNIQUE INDEX readings_series_ts_key ON readings (device_id, metric_id, ts);
CREATE TABLE latest_values (
    device_id smallint NOT NULL, metric_id smallint NOT NULL, ts timestamptz NOT NULL,
    value double precision NOT NULL, quality smallint NOT NULL DEFAULT 0,
    PRIMARY KEY (device_id, metric_id));
"""

# Version 1: no `active` column, readings stored twice, fewer hourly columns.
LEGACY_V1_SQL = """
CREATE TABLE schema_info (version integer NOT NULL);
INSERT INTO schema_info VALUES (1);
CREATE TABLE metrics (
    id smallint PRIMARY KEY, name text NOT NULL UNIQUE, unit text NOT NULL,
    kind text NOT NULL, description text NOT NULL DEFAULT '');
CREATE TABLE devices (
    id smallserial PRIMARY KEY, key text NOT NULL UNIQUE, name text NOT NULL DEFAULT '',
    role text NOT NULL, protocol text NOT NULL, line text, rated_power_kw double precision,
    updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE readings (
    ts timestamptz NOT NULL, device_id smallint NOT NULL, metric_id smallint NOT NULL,
    value double precision NOT NULL, quality smallint NOT NULL DEFAULT 0);
CREATE INDEX readings_series_ts ON readings (device_id, metric_id, ts);
CREATE TABLE latest_values (
    device_id smallint NOT NULL, metric_id smallint NOT NULL, ts timestamptz NOT NULL,
    value double precision NOT NULL, quality smallint NOT NULL DEFAULT 0,
    PRIMARY KEY (device_id, metric_id));
CREATE TABLE hourly_carbon (hour_start timestamptz PRIMARY KEY, grid_kwh double precision);
INSERT INTO hourly_carbon VALUES ('2026-06-20T00:00Z', 5.0);
INSERT INTO devices (key, role, protocol) VALUES ('grid_meter', 'grid', 'modbus_tcp');
INSERT INTO readings VALUES ('2026-06-20T00:00Z', 1, 1, 5.0, 0),
    ('2026-06-20T00:00Z', 1, 1, 5.0, 0), ('2026-06-21T00:01Z', 1, 1, 6.0, 0);
"""


@pytest.fixture
async def empty_db(pg_server_url: str) -> AsyncIterator[str]:
    """URL of a new, empty database (dropped after the test)."""
    name = f"zc_migrate_{secrets.token_hex(4)}"
    url = await ensure_database(pg_server_url, name)
    yield url
    await drop_database(pg_server_url, name)


async def _tables(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
        "AND tablename NOT LIKE 'readings\\_p%'"
    )
    return {r["tablename"] for r in rows}


async def _legacy_v3(conn: asyncpg.Connection, site: SiteConfig) -> int:
    """A version-3 database holding readings over three days, latest values and an
    hourly row; returns the number of readings."""
    await conn.execute(LEGACY_V3_SQL + hourly_ddl())
    registry = await register_site(conn, site)
    pv, grid = registry.device_ids["pv_roof"], registry.device_ids["grid_meter"]
    power, energy = registry.metric_ids["active_power_kw"], registry.metric_ids["energy_import_kwh"]
    rows = [
        (T0 + timedelta(seconds=37 * i), device, metric, float(i % 97), 0)
        for i in range(3_000)
        for device, metric in ((pv, power), (grid, energy))
    ]
    await conn.copy_records_to_table(
        "readings", records=rows, columns=("ts", "device_id", "metric_id", "value", "quality")
    )
    await conn.execute(
        "INSERT INTO latest_values SELECT device_id, metric_id, max(ts), 0, 0 FROM readings "
        "GROUP BY device_id, metric_id"
    )
    await upsert_hourly(conn, registry, [hourly_row(T0)], [], [])
    return len(rows)


async def test_a_fresh_database_gets_every_migration(empty_db: str) -> None:
    conn = await asyncpg.connect(empty_db)
    try:
        applied = await create_schema(conn, timescaledb=False)
        assert [m.version for m in applied] == [m.version for m in MIGRATIONS]
        rows = await conn.fetch("SELECT version, name, duration_ms FROM schema_migrations")
        assert [(r["version"], r["name"]) for r in rows] == [
            (m.version, m.name) for m in MIGRATIONS
        ]
        assert all(r["duration_ms"] >= 0 for r in rows)
        assert {
            "metrics", "devices", "readings", "readings_default", "latest_values",
            "hourly_energy", "hourly_carbon", "hourly_line", "power_1min", "power_15min",
            "rollup_state", "schema_migrations",
        } <= await _tables(conn)  # fmt: skip
        assert "schema_info" not in await _tables(conn)
        relkind = await conn.fetchval(
            "SELECT relkind::text FROM pg_class WHERE relname = 'readings'"
        )
        assert relkind == "p"  # partitioned
    finally:
        await conn.close()


async def test_a_version_3_database_is_upgraded_with_its_rows(
    empty_db: str, demo_site: SiteConfig
) -> None:
    conn = await asyncpg.connect(empty_db)
    try:
        count = await _legacy_v3(conn, demo_site)
        before = await conn.fetch("SELECT * FROM readings ORDER BY device_id, metric_id, ts")
        applied = await create_schema(conn, timescaledb=False)
        assert [m.version for m in applied] == [m.version for m in MIGRATIONS]
        after = await conn.fetch("SELECT * FROM readings ORDER BY device_id, metric_id, ts")
        assert len(after) == count and [tuple(r) for r in after] == [tuple(r) for r in before]
        # every reading in its day's partition, none left in the default one
        placed = await conn.fetch(
            "SELECT tableoid::regclass::text AS part, min(ts), max(ts) FROM readings GROUP BY 1"
        )
        days = {f"readings_p{r['ts']:%Y%m%d}" for r in before}
        assert {r["part"] for r in placed} == days and len(days) == 3
        for r in placed:
            assert r["part"] == f"readings_p{r['min']:%Y%m%d}" == f"readings_p{r['max']:%Y%m%d}"
        assert await conn.fetchval("SELECT count(*) FROM hourly_carbon") == 1
        assert await conn.fetchval("SELECT count(*) FROM latest_values") == 2
        assert await conn.fetchval("SELECT max(version) FROM schema_info") == 3
        # the rollups hold what was there: the PV power readings, per minute
        samples = await conn.fetchval("SELECT sum(samples) FROM power_1min")
        assert samples == count // 2
        assert await conn.fetchval("SELECT sum(samples) FROM power_15min") == count // 2
        # the unique index still refuses a duplicate
        first = before[0]
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(
                "INSERT INTO readings VALUES ($1, $2, $3, 0, 0)",
                first["ts"],
                first["device_id"],
                first["metric_id"],
            )
    finally:
        await conn.close()


async def test_a_version_1_database_rebuilds_hourly_tables_and_keeps_one_duplicate(
    empty_db: str,
) -> None:
    conn = await asyncpg.connect(empty_db)
    try:
        await conn.execute(LEGACY_V1_SQL)
        await create_schema(conn, timescaledb=False)
        assert await conn.fetchval("SELECT count(*) FROM readings") == 2
        assert await conn.fetchval("SELECT count(*) FROM hourly_carbon") == 0  # rebuilt
        columns = await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = $1",
            "hourly_carbon",
        )
        assert "scope2_market_kg" in {c["column_name"] for c in columns}
        assert await conn.fetchval("SELECT active FROM devices WHERE key = 'grid_meter'")
        assert await conn.fetchval("SELECT max(version) FROM schema_info") == 3
        indexes = await conn.fetch("SELECT indexname FROM pg_indexes WHERE tablename = 'readings'")
        assert {r["indexname"] for r in indexes} == {"readings_series_ts_key"}
    finally:
        await conn.close()


async def test_a_second_run_is_a_no_op(empty_db: str) -> None:
    conn = await asyncpg.connect(empty_db)
    try:
        await create_schema(conn, timescaledb=False)
        recorded = await conn.fetch("SELECT * FROM schema_migrations ORDER BY version")
        assert await create_schema(conn, timescaledb=False) == []
        assert await conn.fetch("SELECT * FROM schema_migrations ORDER BY version") == recorded
    finally:
        await conn.close()


async def test_concurrent_upgrades_apply_each_migration_once(empty_db: str) -> None:
    """Two gateways starting together: the advisory lock lets one apply everything and
    the other find nothing to do."""
    conns = [await asyncpg.connect(empty_db) for _ in range(3)]
    try:
        results = await asyncio.gather(*(create_schema(c, timescaledb=False) for c in conns))
        assert sorted(m.version for applied in results for m in applied) == [
            m.version for m in MIGRATIONS
        ]
        assert await conns[0].fetchval("SELECT count(*) FROM schema_migrations") == len(MIGRATIONS)
    finally:
        for c in conns:
            await c.close()


async def test_a_database_of_a_newer_release_is_refused(empty_db: str) -> None:
    conn = await asyncpg.connect(empty_db)
    try:
        await create_schema(conn, timescaledb=False)
        await conn.execute(
            "INSERT INTO schema_migrations VALUES ($1, 'from_the_future', now(), 1)",
            LATEST_VERSION + 1,
        )
        with pytest.raises(SchemaError, match=f"migration {LATEST_VERSION + 1}.*newer"):
            await create_schema(conn, timescaledb=False)
    finally:
        await conn.close()


async def test_status_lists_what_is_pending(empty_db: str, demo_site: SiteConfig) -> None:
    conn = await asyncpg.connect(empty_db)
    try:
        await _legacy_v3(conn, demo_site)
        before = await migration_status(conn)
        assert (before.current, before.latest, before.legacy_version) == (0, LATEST_VERSION, 3)
        assert [m.version for m in before.pending] == [m.version for m in MIGRATIONS]
        await create_schema(conn, timescaledb=False)
        after = await migration_status(conn)
        assert after.current == after.latest == LATEST_VERSION and after.pending == ()
        assert [a.name for a in after.applied] == [m.name for m in MIGRATIONS]
    finally:
        await conn.close()


async def test_start_up_logs_each_migration(
    empty_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    conn = await asyncpg.connect(empty_db)
    try:
        with caplog.at_level(logging.INFO, logger="zerocarbon.storage.migrations"):
            await create_schema(conn, timescaledb=False)
    finally:
        await conn.close()
    logged = [r.getMessage() for r in caplog.records if r.name.endswith("migrations")]
    assert len(logged) == len(MIGRATIONS)
    assert logged[3].startswith("schema migration 4 readings_layout applied in")


@pytest.fixture
async def legacy_db(empty_db: str, demo_site: SiteConfig) -> str:
    conn = await asyncpg.connect(empty_db)
    try:
        await _legacy_v3(conn, demo_site)
    finally:
        await conn.close()
    return empty_db


def test_db_status_and_upgrade_commands(legacy_db: str) -> None:
    runner = CliRunner()
    env = {"ZEROCARBON_DATABASE_URL": legacy_db}
    site = ["--site", str(DEMO_SITE)]
    status = runner.invoke(app, ["db", "status", *site], env=env)
    assert status.exit_code == 0, status.output
    assert (
        f"schema: version 0 (latest {LATEST_VERSION}), {len(MIGRATIONS)} pending" in status.output
    )
    assert "pending: 4 readings_layout" in status.output
    assert "layout: not partitioned" in status.output

    upgrade = runner.invoke(app, ["db", "upgrade", *site], env=env)
    assert upgrade.exit_code == 0, upgrade.output
    assert "applied 4 readings_layout" in upgrade.output
    assert f"schema: version {LATEST_VERSION} (latest {LATEST_VERSION}), up to date" in (
        upgrade.output
    )
    assert "partitions: " in upgrade.output  # the layout depends on the server

    again = runner.invoke(app, ["db", "upgrade", *site], env=env)
    assert again.exit_code == 0 and "no migration pending" in again.output


def test_db_status_names_the_database_it_cannot_reach() -> None:
    runner = CliRunner()
    url = "postgresql://zc:s3cret@127.0.0.1:1/zerocarbon"
    result = runner.invoke(
        app, ["db", "status", "--site", str(DEMO_SITE)], env={"ZEROCARBON_DATABASE_URL": url}
    )
    assert result.exit_code == 1
    assert "cannot connect to the database postgresql://zc:***@127.0.0.1:1/zerocarbon" in (
        result.output
    )
    assert "s3cret" not in result.output
