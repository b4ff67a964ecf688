"""The center's database: every site's readings and results, each row with its site.

One PostgreSQL database (TimescaleDB where the extension can be used) for a group's
sites. ``sites`` names each site once and keeps its uplink status; the other tables
carry ``site_id``, the column a distributed PostgreSQL would shard on
(``docs/center.md`` says how storage grows past one node).

- ``site_series``: (site, device, metric) -> a small integer id.
- ``site_reading_sets``: a site's readings of one instant as one row
  ``(site_id, ts, series_id int4[], value float8[], quality int2[])``, unique per
  (ts, site_id); a gateway stamps all registers of a Modbus request (all metrics of an
  MQTT message) with one ts, so a row holds 5 to 200 readings and its key and tuple
  are paid once for all of them: a bare COPY of 100 sites' sets of 10 readings cost
  PostgreSQL 0.20 CPU-s a million readings and 30 bytes a reading stored, a row per
  reading keyed (ts, site_id, series_id) 1.25 CPU-s and 94 bytes (``docs/center.md``).
  Each (site, ts, series) is stored once: a set that arrives in parts (a message cut
  inside a poll, a replay) is merged exactly (:mod:`zerocarbon.uplink.center_readings`).
  The key leads with the time because live readings arrive newest last, so inserts
  append at the B-tree's right edge.
- ``site_readings``: a view, one row per reading ``(site_id, series_id, ts, value,
  quality)``, the sets unnested; what queries and tools read.
- ``site_hourly_carbon``, ``site_hourly_line``: the gateways' hourly rows
  (:mod:`zerocarbon.rows`), keyed by site and hour (and line), with the gateway's
  ``computed_at`` as revision.
- ``site_alerts``, ``site_device_events``, ``site_accounts``: keyed by the gateway's
  own ids.

The schema is versioned in ``center_migrations`` and applied under an advisory lock, so
that any number of workers starting together create it once.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import asyncpg

from zerocarbon.rows import HourlyCarbon, HourlyLine, sql_columns
from zerocarbon.storage.timescale import enable_timescaledb, is_hypertable, policy_interval

__all__ = [
    "CENTER_SCHEMA_VERSION",
    "apply_center_policies",
    "center_schema_ddl",
    "create_center_schema",
    "readings_hypertable",
]

log = logging.getLogger(__name__)

CENTER_LOCK_KEY = 727_101  # advisory lock of the center's schema changes
CENTER_SCHEMA_VERSION = 2  # 1: a row per reading; 2: a row per (site, ts)
READINGS_TABLE = "site_reading_sets"
READINGS_CHUNK = timedelta(days=1)  # TimescaleDB chunk interval of site_reading_sets


def _row_columns(row_type: type) -> str:
    return ",\n".join(
        f"    {name} {sql_type}{'' if nullable else ' NOT NULL'}"
        for name, sql_type, nullable in sql_columns(row_type)
    )


def center_schema_ddl() -> str:
    """The center's tables (idempotent DDL)."""
    return f"""
CREATE TABLE IF NOT EXISTS sites (
    id serial PRIMARY KEY,
    site text NOT NULL UNIQUE,          -- the uplink site id (a NATS subject token)
    name text NOT NULL DEFAULT '',
    timezone text NOT NULL DEFAULT 'UTC',
    page_url text NOT NULL DEFAULT '',  -- the site's own live page (drill-down)
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen timestamptz,              -- center clock: newest message stored
    last_sent timestamptz,              -- gateway clock: that message's send time
    uplink_lag_s double precision,      -- last_seen - last_sent [s]
    last_reading_ts timestamptz,        -- newest reading stored
    readings bigint NOT NULL DEFAULT 0, -- readings stored (new rows)
    -- highest sequence of the site's own stream stored here: everything up to it is
    -- stored or waits in ZC_CENTER; the gateway may drop it from its stream
    source_seq bigint NOT NULL DEFAULT 0,
    status jsonb NOT NULL DEFAULT '{{}}'::jsonb  -- the gateway's last status message
);

CREATE TABLE IF NOT EXISTS site_series (
    id serial PRIMARY KEY,
    site_id integer NOT NULL REFERENCES sites (id),
    device text NOT NULL,
    metric text NOT NULL,
    UNIQUE (site_id, device, metric)
);

CREATE TABLE IF NOT EXISTS site_reading_sets (
    site_id integer NOT NULL,
    ts timestamptz NOT NULL,
    series_id integer[] NOT NULL,         -- site_series ids, ascending, each once
    value double precision[] NOT NULL,    -- in each series' metric unit
    quality smallint[] NOT NULL,          -- zerocarbon.batch.Quality codes
    -- time first: live data arrives newest last, so inserts append at the index's
    -- right edge
    PRIMARY KEY (ts, site_id)
);

CREATE OR REPLACE VIEW site_readings AS
SELECT r.site_id, u.series_id, r.ts, u.value, u.quality
FROM site_reading_sets r,
     unnest(r.series_id, r.value, r.quality) AS u(series_id, value, quality);

CREATE TABLE IF NOT EXISTS site_hourly_carbon (
    site_id integer NOT NULL REFERENCES sites (id),
{_row_columns(HourlyCarbon)},
    computed_at timestamptz NOT NULL,
    PRIMARY KEY (site_id, hour_start)
);
CREATE INDEX IF NOT EXISTS site_hourly_carbon_hour ON site_hourly_carbon (hour_start);

CREATE TABLE IF NOT EXISTS site_hourly_line (
    site_id integer NOT NULL REFERENCES sites (id),
{_row_columns(HourlyLine)},
    computed_at timestamptz NOT NULL,
    PRIMARY KEY (site_id, hour_start, line)
);

CREATE TABLE IF NOT EXISTS site_alerts (
    site_id integer NOT NULL REFERENCES sites (id),
    alert_id bigint NOT NULL,
    revision bigint NOT NULL,
    rule text NOT NULL,
    kind text NOT NULL,
    subject text NOT NULL,
    episode integer NOT NULL,
    severity text NOT NULL,
    state text NOT NULL,
    since timestamptz NOT NULL,
    fired_at timestamptz NOT NULL,
    resolved_at timestamptz,
    acked_at timestamptz,
    message_en text NOT NULL DEFAULT '',
    message_zh text NOT NULL DEFAULT '',
    PRIMARY KEY (site_id, alert_id)
);
CREATE INDEX IF NOT EXISTS site_alerts_firing ON site_alerts (site_id) WHERE state = 'firing';

CREATE TABLE IF NOT EXISTS site_device_events (
    site_id integer NOT NULL REFERENCES sites (id),
    event_id bigint NOT NULL,
    ts timestamptz NOT NULL,
    device text NOT NULL,
    kind text NOT NULL,
    detail text NOT NULL DEFAULT '',
    PRIMARY KEY (site_id, event_id)
);

CREATE TABLE IF NOT EXISTS site_accounts (
    site_id integer NOT NULL REFERENCES sites (id),
    report_id bigint NOT NULL,
    period text NOT NULL,
    issued_at timestamptz NOT NULL,
    issued_by text NOT NULL,
    supersedes bigint,
    account jsonb NOT NULL,
    PRIMARY KEY (site_id, report_id)
);
"""


async def create_center_schema(conn: asyncpg.Connection) -> bool:
    """Create the center's schema where missing, or bring an older one to
    :data:`CENTER_SCHEMA_VERSION` (once, whoever starts first); True when
    ``site_reading_sets`` is a TimescaleDB hypertable."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", CENTER_LOCK_KEY)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS center_migrations ("
            " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = await conn.fetchval("SELECT max(version) FROM center_migrations")
        if done is None or done < CENTER_SCHEMA_VERSION:
            v1_rows = await _set_aside_v1_readings(conn)
            await conn.execute(center_schema_ddl())
            if await enable_timescaledb(conn):
                await conn.execute(
                    "SELECT create_hypertable('site_reading_sets', "
                    "by_range('ts', $1::interval), if_not_exists => true, "
                    "migrate_data => true)",
                    READINGS_CHUNK,
                )
                await conn.execute(
                    "ALTER TABLE site_reading_sets SET (timescaledb.compress, "
                    "timescaledb.compress_segmentby = 'site_id', "
                    "timescaledb.compress_orderby = 'ts')"
                )
                log.info("site_reading_sets is a TimescaleDB hypertable")
            if v1_rows is not None:
                await _migrate_v1_readings(conn, v1_rows)
            await conn.execute(
                "INSERT INTO center_migrations (version) VALUES ($1) ON CONFLICT DO NOTHING",
                CENTER_SCHEMA_VERSION,
            )
        return await readings_hypertable(conn)


_V1_READINGS = "site_readings_v1"


async def _set_aside_v1_readings(conn: asyncpg.Connection) -> int | None:
    """Rename version 1's ``site_readings`` table (a row per reading) out of the view's
    way; returns its rows, or None when there is no such table."""
    kind = await conn.fetchval(
        "SELECT c.relkind::text FROM pg_class c WHERE c.oid = to_regclass('site_readings')"
    )
    if kind not in ("r", "p"):
        return None
    rows = int(await conn.fetchval("SELECT count(*) FROM site_readings"))
    await conn.execute(f"ALTER TABLE site_readings RENAME TO {_V1_READINGS}")
    return rows


async def _migrate_v1_readings(conn: asyncpg.Connection, rows: int) -> None:
    """Version 1's readings into ``site_reading_sets``, a set per (site, ts) with its
    series ascending; the old table is dropped once every reading is in."""
    log.info("center schema 1 -> 2: regrouping %d readings per (site, ts)", rows)
    await conn.execute(
        f"""
INSERT INTO site_reading_sets (site_id, ts, series_id, value, quality)
SELECT site_id, ts, array_agg(series_id ORDER BY series_id),
       array_agg(value ORDER BY series_id), array_agg(quality ORDER BY series_id)
FROM {_V1_READINGS} GROUP BY ts, site_id ORDER BY ts, site_id
"""
    )
    moved = int(await conn.fetchval("SELECT count(*) FROM site_readings"))
    if moved != rows:
        raise RuntimeError(
            f"center schema 1 -> 2: {moved} readings regrouped of {rows}; "
            f"{_V1_READINGS} is kept and nothing changed"
        )
    await conn.execute(f"DROP TABLE {_V1_READINGS}")


async def readings_hypertable(conn: asyncpg.Connection) -> bool:
    """Whether ``site_reading_sets`` is a TimescaleDB hypertable (the extension's
    catalog is only read where the extension is installed)."""
    installed = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')"
    )
    return bool(installed) and await is_hypertable(conn, "site_reading_sets")


async def apply_center_policies(
    conn: asyncpg.Connection, *, compress_after_days: int | None, retention_days: int | None
) -> list[str]:
    """Make ``site_reading_sets``' TimescaleDB compression and retention policies those
    of the center file (run at each start: the file may have changed): chunks older
    than ``compress_after_days`` [days] compressed, older than ``retention_days``
    [days] dropped, None for neither. Returns what changed. On plain PostgreSQL there
    are no policies: nothing changes, and a retention asked for is logged as not
    applied."""
    if not await readings_hypertable(conn):
        if retention_days is not None:
            log.warning(
                "center.retention_days = %d is not applied: site_reading_sets is a plain "
                "table (no TimescaleDB at the center), so every reading is kept",
                retention_days,
            )
        return []
    changes: list[str] = []
    plans = (
        ("policy_compression", "compress_after", "compression", compress_after_days),
        ("policy_retention", "drop_after", "retention", retention_days),
    )
    for proc, key, what, days in plans:
        want = None if days is None else timedelta(days=days)
        have = await policy_interval(conn, proc, key, READINGS_TABLE)
        if have == want:
            continue
        await conn.execute(f"SELECT remove_{what}_policy('{READINGS_TABLE}', if_exists => true)")
        if want is not None:
            await conn.execute(
                f"SELECT add_{what}_policy('{READINGS_TABLE}', {key} => $1::interval)", want
            )
        changes.append(f"site_reading_sets {what} after {_days(have)} -> {_days(want)}")
    return changes


def _days(interval: timedelta | None) -> str:
    if interval is None:
        return "none"
    return f"{interval.days} days" if interval == timedelta(days=interval.days) else str(interval)
