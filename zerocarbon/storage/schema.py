"""The database schema, created (idempotently) at start-up.

Narrow readings table (ts, device_id, metric_id, value, quality), small integer keys
resolved through ``devices`` and ``metrics``; hourly results keyed by ``hour_start``
(UTC) so that recomputing an hour is an upsert.
"""

from __future__ import annotations

from zerocarbon.rows import ROW_TABLES, sql_columns

SCHEMA_VERSION = 3

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


def _hourly_ddl() -> str:
    parts = []
    for table in ROW_TABLES:
        cols = [
            f"    {name} {sql_type}{'' if nullable else ' NOT NULL'}"
            for name, sql_type, nullable in stored_columns(table)
        ]
        cols.append("    computed_at timestamptz NOT NULL DEFAULT now()")
        cols.append(f"    PRIMARY KEY ({', '.join(ROW_KEYS[table])})")
        parts.append(f"CREATE TABLE IF NOT EXISTS {table} (\n" + ",\n".join(cols) + "\n);")
    return "\n".join(parts)


# Version 1 kept fewer hourly columns: its derived tables are rebuilt (the engine
# recomputes what it holds; raw readings are untouched).
UPGRADE_SQL = """
DO $$
DECLARE v integer;
BEGIN
  IF to_regclass('schema_info') IS NOT NULL THEN
    EXECUTE 'SELECT max(version) FROM schema_info' INTO v;
    IF v < 2 THEN
      DROP TABLE IF EXISTS hourly_energy, hourly_carbon;
      EXECUTE 'UPDATE schema_info SET version = 2';
      v := 2;
    END IF;
    IF v < 3 THEN
      -- readings stored twice before ingest was idempotent: keep one of each
      EXECUTE 'DELETE FROM readings a USING readings b WHERE a.ctid < b.ctid '
              'AND a.device_id = b.device_id AND a.metric_id = b.metric_id AND a.ts = b.ts';
      EXECUTE 'DROP INDEX IF EXISTS readings_series_ts';
      EXECUTE 'UPDATE schema_info SET version = 3';
    END IF;
  END IF;
END $$;
"""

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS schema_info (
    version integer NOT NULL
);

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

-- added after the first schema: keep databases created before it working
ALTER TABLE devices ADD COLUMN IF NOT EXISTS active boolean NOT NULL DEFAULT true;

CREATE TABLE IF NOT EXISTS readings (
    ts timestamptz NOT NULL,
    device_id smallint NOT NULL,
    metric_id smallint NOT NULL,
    value double precision NOT NULL,
    quality smallint NOT NULL DEFAULT 0
);
-- one row per (series, time): a reading delivered twice is stored once
CREATE UNIQUE INDEX IF NOT EXISTS readings_series_ts_key ON readings (device_id, metric_id, ts);

CREATE TABLE IF NOT EXISTS latest_values (
    device_id smallint NOT NULL,
    metric_id smallint NOT NULL,
    ts timestamptz NOT NULL,
    value double precision NOT NULL,
    quality smallint NOT NULL DEFAULT 0,
    PRIMARY KEY (device_id, metric_id)
);

"""

SCHEMA_SQL = (
    UPGRADE_SQL
    + SCHEMA_SQL
    + _hourly_ddl()
    + """
CREATE INDEX IF NOT EXISTS hourly_carbon_computed_at ON hourly_carbon (computed_at);
CREATE INDEX IF NOT EXISTS hourly_line_computed_at ON hourly_line (computed_at);
"""
)
