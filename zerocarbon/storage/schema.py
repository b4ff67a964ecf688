"""The tables' DDL, as the schema migrations (:mod:`zerocarbon.storage.migrations`)
create them.

Narrow readings table (ts, device_id, metric_id, value, quality), small integer keys
resolved through ``devices`` and ``metrics``; hourly results keyed by ``hour_start``
(UTC) so that recomputing an hour is an upsert. The hourly tables' columns are the row
types' fields (:mod:`zerocarbon.rows`): a change of a row type needs a migration of its
own that alters the table (written with ``IF NOT EXISTS``, since a fresh database gets
the new shape from :func:`hourly_ddl` already).
"""

from __future__ import annotations

from zerocarbon.rows import ROW_TABLES, sql_columns

# primary keys of the hourly tables (their columns are the row types' fields)
ROW_KEYS: dict[str, tuple[str, ...]] = {
    "hourly_energy": ("hour_start", "device_id", "metric_id"),
    "hourly_carbon": ("hour_start",),
    "hourly_line": ("hour_start", "line"),
}
# columns stored as small integer keys instead of the row's names
_KEY_COLUMNS = {"device": ("device_id", "smallint"), "metric": ("metric_id", "smallint")}


def stored_columns(table: str) -> list[tuple[str, str, bool]]:
    """(column, SQL type, nullable) of an hourly table as stored."""
    out = []
    for name, sql_type, nullable in sql_columns(ROW_TABLES[table]):
        if table == "hourly_energy" and name in _KEY_COLUMNS:
            name, sql_type = _KEY_COLUMNS[name]
        out.append((name, sql_type, nullable))
    return out


def hourly_ddl() -> str:
    """The hourly tables and their ``computed_at`` indexes (idempotent)."""
    parts = []
    for table in ROW_TABLES:
        cols = [
            f"    {name} {sql_type}{'' if nullable else ' NOT NULL'}"
            for name, sql_type, nullable in stored_columns(table)
        ]
        cols.append("    computed_at timestamptz NOT NULL DEFAULT now()")
        cols.append(f"    PRIMARY KEY ({', '.join(ROW_KEYS[table])})")
        parts.append(f"CREATE TABLE IF NOT EXISTS {table} (\n" + ",\n".join(cols) + "\n);")
    parts.append(
        "CREATE INDEX IF NOT EXISTS hourly_carbon_computed_at ON hourly_carbon (computed_at);\n"
        "CREATE INDEX IF NOT EXISTS hourly_line_computed_at ON hourly_line (computed_at);"
    )
    return "\n".join(parts)


# Version 1 of the schema: the registry, raw readings and latest values. Idempotent, as
# databases made before the migrations existed have these tables already.
BASE_TABLES_SQL = """
CREATE TABLE IF NOT EXISTS metrics (
    id smallint PRIMARY KEY,
    name text NOT NULL UNIQUE,
    unit text NOT NULL,
    kind text NOT NULL,
    description text NOT NULL DEFAULT ''
);

CREATE TABLE IF NOT EXISTS devices (
    id smallserial PRIMARY KEY,
    key text NOT NULL UNIQUE,
    name text NOT NULL DEFAULT '',
    role text NOT NULL,
    protocol text NOT NULL,
    line text,
    rated_power_kw double precision,
    active boolean NOT NULL DEFAULT true,  -- false: no longer in the site file
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- added after the first release: databases of that release lack it
ALTER TABLE devices ADD COLUMN IF NOT EXISTS active boolean NOT NULL DEFAULT true;

CREATE TABLE IF NOT EXISTS readings (
    ts timestamptz NOT NULL,
    device_id smallint NOT NULL,
    metric_id smallint NOT NULL,
    value double precision NOT NULL,
    quality smallint NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS latest_values (
    device_id smallint NOT NULL,
    metric_id smallint NOT NULL,
    ts timestamptz NOT NULL,
    value double precision NOT NULL,
    quality smallint NOT NULL DEFAULT 0,
    PRIMARY KEY (device_id, metric_id)
);
"""

# Readings stored twice before ingest was idempotent (schema_info version < 3): keep
# one of each, then make (device, metric, ts) unique.
DEDUPLICATE_READINGS_SQL = """
DELETE FROM readings a USING readings b
WHERE a.ctid < b.ctid
  AND a.device_id = b.device_id AND a.metric_id = b.metric_id AND a.ts = b.ts;
"""
UNIQUE_READINGS_SQL = """
DROP INDEX IF EXISTS readings_series_ts;
-- one row per (series, time): a reading delivered twice is stored once
CREATE UNIQUE INDEX IF NOT EXISTS readings_series_ts_key ON readings (device_id, metric_id, ts);
"""

# Device state changes (online, offline, torn read) as collectors report them
# (:mod:`zerocarbon.ingest.events`); small, kept as long as the readings' retention.
DEVICE_EVENTS_SQL = """
CREATE TABLE IF NOT EXISTS device_events (
    ts timestamptz NOT NULL,
    device_id smallint NOT NULL,
    kind text NOT NULL,
    detail text NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS device_events_device_ts ON device_events (device_id, ts);
"""

# API tokens (:mod:`zerocarbon.storage.tokens`): only a SHA-256 of each token is kept.
# The table's privileges are revoked from every role but its owner, so that a read-only
# role given SELECT on the schema's tables (``zerocarbon db grant-readonly``, default
# privileges included) cannot read the hashes.
API_TOKENS_SQL = """
CREATE TABLE IF NOT EXISTS api_tokens (
    id serial PRIMARY KEY,
    name text NOT NULL UNIQUE,
    prefix text NOT NULL UNIQUE,
    role text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    site text,
    token_hash bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at timestamptz
);
REVOKE ALL ON api_tokens FROM PUBLIC;
DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT DISTINCT grantee FROM information_schema.role_table_grants
             WHERE table_schema = current_schema() AND table_name = 'api_tokens'
               AND grantee NOT IN (current_user, 'PUBLIC')
    LOOP
        EXECUTE format('REVOKE ALL ON api_tokens FROM %I', r.grantee);
    END LOOP;
END $$;
"""

# Alert notifications waiting for or done with delivery (:mod:`zerocarbon.storage.outbox`):
# one row per (notification, channel); ``dedup_key`` makes enqueuing twice store once.
NOTIFICATION_OUTBOX_SQL = """
CREATE TABLE IF NOT EXISTS notification_outbox (
    id bigserial PRIMARY KEY,
    dedup_key text NOT NULL UNIQUE,
    channel text NOT NULL,
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    sent_at timestamptz,
    last_error text
);
CREATE INDEX IF NOT EXISTS notification_outbox_due
    ON notification_outbox (next_attempt_at) WHERE sent_at IS NULL;
"""
