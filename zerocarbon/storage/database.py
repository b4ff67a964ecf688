"""Connecting: pools, database creation, schema and the device/metric registry."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from zerocarbon.config import SiteConfig, StorageConfig
from zerocarbon.metering.metrics import METRICS
from zerocarbon.storage import timescale
from zerocarbon.storage.migrations import AppliedMigration, upgrade
from zerocarbon.storage.partitions import DailyPartitions, open_layout

log = logging.getLogger(__name__)


def with_database(url: str, database: str) -> str:
    """Return ``url`` pointing at another database name (query string kept)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


async def ensure_database(url: str, database: str, *, recreate: bool = False) -> str:
    """Create ``database`` on the server of ``url`` if missing; return its URL."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", database):
        raise ValueError(f"database name {database!r} must be lower-case letters, digits, _")
    conn = await asyncpg.connect(url)
    try:
        if recreate:
            await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()
    return with_database(url, database)


async def drop_database(url: str, database: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await conn.close()


@dataclass(frozen=True, slots=True)
class Registry:
    """Small integer keys of the site's devices and of the metric vocabulary."""

    device_ids: dict[str, int]  # config device id -> devices.id
    metric_ids: dict[str, int]  # metric name -> metrics.id


async def create_schema(
    conn: asyncpg.Connection,
    storage: StorageConfig | None = None,
    *,
    rows_per_day: float | None = None,
    timescaledb: bool | None = None,
) -> list[AppliedMigration]:
    """Bring the schema to the latest version and ready ``readings`` for writing;
    returns the migrations applied (each is logged). Idempotent; concurrent callers are
    serialised (:func:`zerocarbon.storage.migrations.upgrade`, which explains
    ``rows_per_day`` and ``timescaledb``).

    Then, with native partitions, today's partition and ``partitions_ahead_days`` after
    it are made (by the database's clock); with TimescaleDB and a ``storage`` given, the
    chunk interval and the compression and retention policies become the site file's
    (without ``storage`` they are left as they are).
    """
    applied = await upgrade(conn, storage, rows_per_day=rows_per_day, timescaledb=timescaledb)
    layout = await open_layout(conn, storage or StorageConfig())
    if isinstance(layout, DailyPartitions):
        await layout.ensure_ahead(conn, await conn.fetchval("SELECT now()"))
    elif storage is not None:
        interval = await timescale.readings_chunk_interval(conn, storage, rows_per_day)
        for change in await timescale.apply_policies(conn, storage, interval):
            log.info("readings hypertable: %s", change)
    return applied


async def register_site(conn: asyncpg.Connection, site: SiteConfig) -> Registry:
    """Upsert the metric vocabulary and the site's devices; return their ids.

    Devices of an earlier site file that this one no longer has keep their rows (their
    readings reference them) but are marked inactive, so the API no longer lists them.
    """
    async with conn.transaction():
        await conn.executemany(
            """INSERT INTO metrics (id, name, unit, kind, description) VALUES ($1,$2,$3,$4,$5)
               ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, unit = EXCLUDED.unit,
               kind = EXCLUDED.kind, description = EXCLUDED.description""",
            [(m.id, m.name, m.unit, m.kind.value, m.description) for m in METRICS],
        )
        device_ids: dict[str, int] = {}
        for d in site.devices:
            device_ids[d.id] = await conn.fetchval(
                """INSERT INTO devices (key, name, role, protocol, line, rated_power_kw)
                   VALUES ($1,$2,$3,$4,$5,$6)
                   ON CONFLICT (key) DO UPDATE SET name = EXCLUDED.name, role = EXCLUDED.role,
                   protocol = EXCLUDED.protocol, line = EXCLUDED.line,
                   rated_power_kw = EXCLUDED.rated_power_kw, active = true, updated_at = now()
                   RETURNING id""",
                d.id,
                d.name,
                d.role.value,
                d.protocol,
                d.line,
                d.rated_power_kw,
            )
        await conn.execute(
            "UPDATE devices SET active = false, updated_at = now() "
            "WHERE active AND NOT (key = ANY($1::text[]))",
            list(device_ids),
        )
    return Registry(device_ids, {m.name: m.id for m in METRICS})


async def open_pool(url: str, *, min_size: int = 1, max_size: int = 4) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size)
    assert pool is not None
    return pool
