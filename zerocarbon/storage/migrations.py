"""Versioned schema migrations, recorded in ``schema_migrations``.

:data:`MIGRATIONS` is the ordered history of the schema. :func:`upgrade` applies the
ones a database lacks, each in a transaction of its own and recorded with its time
(``version, name, applied_at, duration_ms``), under an advisory lock so that two
gateways (or a gateway and ``zerocarbon db upgrade``) starting together apply each
once. A gateway upgrades its database at start-up and logs each migration applied.

Databases made before this history kept one number in ``schema_info`` (versions 1 to
3, upgraded by SQL run at each start). Their history is folded in: migrations 1 to 3
reproduce what those versions did, written so that they find their work done on such
a database (``IF NOT EXISTS``), and the two steps that changed data run only where
``schema_info`` says they had not run: version 1's hourly tables are rebuilt (their
hours are computed again as data arrives; raw readings are untouched) and duplicates
of readings stored before version 3 are removed, one of each kept. ``schema_info`` is
left at 3, so that an earlier release started on this database finds nothing to do.

Migration 4 gives ``readings`` its layout, once: a TimescaleDB hypertable where the
extension can be used, else native daily partitions (rows kept either way). Migration
5 adds the power views. Migration 9 adds the alert episodes and their history
(:mod:`zerocarbon.storage.alerts`); migration 13 the uplink's cursors and the device
events' ids (:mod:`zerocarbon.storage.uplink_cursors`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from zerocarbon.config import StorageConfig
from zerocarbon.storage import (
    accounts,
    alerts,
    drift_periods,
    ledger,
    partitions,
    rollups,
    schema,
    timescale,
    uplink_cursors,
)

log = logging.getLogger(__name__)

SCHEMA_LOCK_KEY = 727_001  # advisory lock of schema changes (earlier releases use it too)

SCHEMA_MIGRATIONS_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL,
    duration_ms double precision NOT NULL
)"""


class SchemaError(RuntimeError):
    """The database's schema cannot be used by this program; the message says why."""


@dataclass(frozen=True, slots=True)
class MigrationContext:
    """What a migration may depend on besides the database itself."""

    storage: StorageConfig  # the site's [storage]
    timescaledb: bool  # readings is (or is to become) a TimescaleDB hypertable
    rows_per_day: float | None  # expected ingest [rows/day], for the chunk interval
    legacy_version: int | None  # schema_info's version (databases from before migrations)


Apply = Callable[[asyncpg.Connection, MigrationContext], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    apply: Apply


@dataclass(frozen=True, slots=True)
class AppliedMigration:
    version: int
    name: str
    applied_at: datetime
    duration_ms: float  # [ms]


async def _legacy_version(conn: asyncpg.Connection) -> int | None:
    if await conn.fetchval("SELECT to_regclass('schema_info')") is None:
        return None
    value = await conn.fetchval("SELECT max(version) FROM schema_info")
    return None if value is None else int(value)


async def _set_legacy_version(conn: asyncpg.Connection, ctx: MigrationContext, v: int) -> None:
    if ctx.legacy_version is not None and ctx.legacy_version < v:
        await conn.execute("UPDATE schema_info SET version = $1", v)


async def _base_tables(conn: asyncpg.Connection, ctx: MigrationContext) -> None:
    await conn.execute(schema.BASE_TABLES_SQL)


async def _hourly_tables(conn: asyncpg.Connection, ctx: MigrationContext) -> None:
    if ctx.legacy_version is not None and ctx.legacy_version < 2:
        # version 1 kept fewer hourly columns: rebuilt (the engine recomputes them)
        await conn.execute("DROP TABLE IF EXISTS hourly_energy, hourly_carbon")
    await conn.execute(schema.hourly_ddl())
    await _set_legacy_version(conn, ctx, 2)


async def _unique_readings(conn: asyncpg.Connection, ctx: MigrationContext) -> None:
    if await conn.fetchval("SELECT to_regclass('readings_series_ts_key')") is None:
        await conn.execute(schema.DEDUPLICATE_READINGS_SQL)
    await conn.execute(schema.UNIQUE_READINGS_SQL)
    await _set_legacy_version(conn, ctx, 3)


async def _readings_layout(conn: asyncpg.Connection, ctx: MigrationContext) -> None:
    if ctx.timescaledb:
        interval = await timescale.readings_chunk_interval(conn, ctx.storage, ctx.rows_per_day)
        await timescale.make_hypertable(conn, interval)
        await timescale.apply_policies(conn, ctx.storage, interval)
        return
    await conn.execute(
        "ALTER TABLE readings RENAME TO readings_unpartitioned;"
        "ALTER INDEX readings_series_ts_key RENAME TO readings_unpartitioned_key"
    )
    await partitions.create_partitioned_readings(conn)
    days = await conn.fetch(
        "SELECT DISTINCT floor(extract(epoch FROM ts) / 86400)::bigint AS day "
        "FROM readings_unpartitioned"
    )
    for r in days:
        await partitions.create_partition(conn, int(r["day"]), lock_timeout_ms=None)
    await conn.execute(
        "INSERT INTO readings (ts, device_id, metric_id, value, quality) "
        "SELECT ts, device_id, metric_id, value, quality FROM readings_unpartitioned"
    )
    await conn.execute("DROP TABLE readings_unpartitioned")


async def _power_rollups(conn: asyncpg.Connection, ctx: MigrationContext) -> None:
    await conn.execute(rollups.rollup_tables_ddl())
    span = await rollups.gauge_reading_span(conn)
    if span is not None:
        await rollups.refresh_rollups(conn, *span)


async def _device_events(conn: asyncpg.Connection, ctx: MigrationContext) -> None:
    await conn.execute(schema.DEVICE_EVENTS_SQL)


async def _api_tokens(conn: asyncpg.Connection, ctx: MigrationContext) -> None:
    await conn.execute(schema.API_TOKENS_SQL)


async def _notification_outbox(conn: asyncpg.Connection, ctx: MigrationContext) -> None:
    await conn.execute(schema.NOTIFICATION_OUTBOX_SQL)


async def _alerts(conn: asyncpg.Connection, ctx: MigrationContext) -> None:
    await conn.execute(alerts.ALERTS_SQL)


async def _drift_periods(conn: asyncpg.Connection, ctx: MigrationContext) -> None:
    await conn.execute(drift_periods.DRIFT_PERIODS_SQL)


async def _ledger(conn: asyncpg.Connection, ctx: MigrationContext) -> None:
    await conn.execute(ledger.LEDGER_SQL)


async def _account_reports(conn: asyncpg.Connection, ctx: MigrationContext) -> None:
    await conn.execute(accounts.ACCOUNT_REPORTS_SQL)


async def _uplink_cursors(conn: asyncpg.Connection, ctx: MigrationContext) -> None:
    await conn.execute(uplink_cursors.UPLINK_CURSORS_SQL)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "base_tables", _base_tables),
    Migration(2, "hourly_tables", _hourly_tables),
    Migration(3, "unique_readings", _unique_readings),
    Migration(4, "readings_layout", _readings_layout),
    Migration(5, "power_rollups", _power_rollups),
    Migration(6, "device_events", _device_events),
    Migration(7, "api_tokens", _api_tokens),
    Migration(8, "notification_outbox", _notification_outbox),
    Migration(9, "alerts", _alerts),
    Migration(10, "drift_periods", _drift_periods),
    Migration(11, "ledger", _ledger),
    Migration(12, "account_reports", _account_reports),
    Migration(13, "uplink_cursors", _uplink_cursors),
)
LATEST_VERSION = MIGRATIONS[-1].version
_LAYOUT_VERSION = 4  # the migration that decides hypertable or partitions


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    current: int  # highest version applied (0: none)
    latest: int  # highest version this program knows
    applied: tuple[AppliedMigration, ...]
    pending: tuple[Migration, ...]
    legacy_version: int | None  # schema_info's version, if the database has one


async def _applied(conn: asyncpg.Connection) -> list[AppliedMigration]:
    if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
        return []
    rows = await conn.fetch(
        "SELECT version, name, applied_at, duration_ms FROM schema_migrations ORDER BY version"
    )
    return [AppliedMigration(**dict(r)) for r in rows]


async def migration_status(conn: asyncpg.Connection) -> MigrationStatus:
    """What is applied and what is pending (reads only)."""
    applied = await _applied(conn)
    done = {a.version for a in applied}
    return MigrationStatus(
        current=max(done, default=0),
        latest=LATEST_VERSION,
        applied=tuple(applied),
        pending=tuple(m for m in MIGRATIONS if m.version not in done),
        legacy_version=await _legacy_version(conn),
    )


async def _context(
    conn: asyncpg.Connection,
    pending: list[Migration],
    storage: StorageConfig,
    rows_per_day: float | None,
    timescaledb: bool | None,
) -> MigrationContext:
    if any(m.version == _LAYOUT_VERSION for m in pending):
        use_ts = timescaledb is not False and await timescale.enable_timescaledb(conn)
    else:
        use_ts = await timescale.is_hypertable(conn)
    return MigrationContext(storage, use_ts, rows_per_day, await _legacy_version(conn))


async def upgrade(
    conn: asyncpg.Connection,
    storage: StorageConfig | None = None,
    *,
    rows_per_day: float | None = None,
    timescaledb: bool | None = None,
) -> list[AppliedMigration]:
    """Apply the pending migrations in order; returns those applied (none: up to date).

    Parameters
    ----------
    storage : StorageConfig or None
        The site's ``[storage]`` (defaults without).
    rows_per_day : float or None
        Expected readings per day [rows/day]
        (:func:`~zerocarbon.storage.timescale.expected_rows_per_day`), for the
        TimescaleDB chunk interval.
    timescaledb : bool or None
        Whether a database getting its layout may use TimescaleDB: None uses it when
        the server can; False never does (native partitions).

    Raises
    ------
    SchemaError
        The database has migrations this program does not know (a newer release
        upgraded it).
    """
    storage = storage or StorageConfig()
    await conn.execute("SELECT pg_advisory_lock($1)", SCHEMA_LOCK_KEY)
    try:
        await conn.execute(SCHEMA_MIGRATIONS_DDL)
        done = {a.version for a in await _applied(conn)}
        unknown = sorted(v for v in done if v > LATEST_VERSION)
        if unknown:
            raise SchemaError(
                f"the database has schema migration {unknown[-1]}, this program knows up to "
                f"{LATEST_VERSION}: it was upgraded by a newer zerocarbon; run that release"
            )
        pending = [m for m in MIGRATIONS if m.version not in done]
        if not pending:
            return []
        ctx = await _context(conn, pending, storage, rows_per_day, timescaledb)
        applied = []
        for migration in pending:
            applied.append(await _apply(conn, migration, ctx))
        return applied
    finally:
        with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            await conn.execute("SELECT pg_advisory_unlock($1)", SCHEMA_LOCK_KEY)


async def _apply(
    conn: asyncpg.Connection, migration: Migration, ctx: MigrationContext
) -> AppliedMigration:
    start = time.perf_counter()
    async with conn.transaction():
        await migration.apply(conn, ctx)
        duration_ms = (time.perf_counter() - start) * 1000.0
        row = await conn.fetchrow(
            """INSERT INTO schema_migrations (version, name, applied_at, duration_ms)
               VALUES ($1, $2, clock_timestamp(), $3) RETURNING applied_at""",
            migration.version,
            migration.name,
            duration_ms,
        )
    assert row is not None
    log.info(
        "schema migration %d %s applied in %.0f ms%s",
        migration.version,
        migration.name,
        duration_ms,
        " (timescaledb)" if ctx.timescaledb and migration.version == _LAYOUT_VERSION else "",
    )
    return AppliedMigration(migration.version, migration.name, row["applied_at"], duration_ms)
