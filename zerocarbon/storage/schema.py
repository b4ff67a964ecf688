"""The database schema, created (idempotently) at start-up.

Narrow readings table (ts, device_id, metric_id, value, quality), small integer keys
resolved through ``devices`` and ``metrics``; hourly results keyed by ``hour_start``
(UTC) so that recomputing an hour is an upsert.
"""

from __future__ import annotations

SCHEMA_VERSION = 1

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
CREATE INDEX IF NOT EXISTS readings_series_ts ON readings (device_id, metric_id, ts);

CREATE TABLE IF NOT EXISTS latest_values (
    device_id smallint NOT NULL,
    metric_id smallint NOT NULL,
    ts timestamptz NOT NULL,
    value double precision NOT NULL,
    quality smallint NOT NULL DEFAULT 0,
    PRIMARY KEY (device_id, metric_id)
);

CREATE TABLE IF NOT EXISTS hourly_energy (
    hour_start timestamptz NOT NULL,
    device_id smallint NOT NULL,
    metric_id smallint NOT NULL,
    delta double precision NOT NULL,      -- counter increase in the metric's unit
    resets integer NOT NULL DEFAULT 0,    -- counter resets seen in the hour
    computed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (hour_start, device_id, metric_id)
);

CREATE TABLE IF NOT EXISTS hourly_carbon (
    hour_start timestamptz PRIMARY KEY,
    grid_import_kwh double precision NOT NULL,
    grid_export_kwh double precision NOT NULL,
    pv_kwh double precision NOT NULL,
    battery_charge_kwh double precision NOT NULL,
    battery_discharge_kwh double precision NOT NULL,
    load_kwh double precision NOT NULL,
    production_units double precision NOT NULL,
    scope2_location_kg double precision NOT NULL,
    scope2_market_kg double precision NOT NULL,
    location_factor_kg_per_kwh double precision NOT NULL,
    market_factor_kg_per_kwh double precision NOT NULL,
    intensity_kg_per_kwh double precision,  -- location-based kg CO2 per kWh consumed
    cfe_share double precision,             -- on-site carbon-free share of load, 0..1
    computed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS hourly_carbon_computed_at ON hourly_carbon (computed_at);
"""
