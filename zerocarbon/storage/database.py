"""Connecting: pools, database creation, schema and the device/metric registry."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from zerocarbon.config import SiteConfig
from zerocarbon.metering.metrics import METRICS
from zerocarbon.storage.schema import SCHEMA_SQL, SCHEMA_VERSION


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


async def create_schema(conn: asyncpg.Connection) -> None:
    """Create every table (idempotent). Serialised with an advisory lock."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(727001)")
        await conn.execute(SCHEMA_SQL)
        current = await conn.fetchval("SELECT max(version) FROM schema_info")
        if current is None:
            await conn.execute("INSERT INTO schema_info (version) VALUES ($1)", SCHEMA_VERSION)


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
