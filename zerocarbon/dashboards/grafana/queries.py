"""The dashboards' SQL, written for Grafana's PostgreSQL data source.

Every query reads the tables the gateway keeps for this purpose: the power tables
``power_1min`` and ``power_15min`` (:mod:`zerocarbon.storage.rollups`), the hourly
results (``hourly_energy``, ``hourly_carbon``, ``hourly_line``: :mod:`zerocarbon.rows`),
``device_events``, ``latest_values``, the alerts (:mod:`zerocarbon.storage.alerts`) and
the drift periods; never raw ``readings``.

They use the data source's macros (Grafana documentation, "PostgreSQL data source",
section *Macros*): ``$__timeFilter(col)`` for the dashboard's range,
``$__timeGroupAlias(col, $__interval)`` for time buckets and ``$__interval_ms`` (the
panel's bucket width [ms]) to choose the 1-minute table for bucket widths under 15
minutes and the 15-minute table otherwise, so that a month shows 2 880 points a series
rather than 43 200. Template variables ``$device`` and ``$line`` are multi-value and
appear as ``IN ($device)`` (Grafana quotes and joins the values for SQL data sources).

Time series queries return ``time``, ``metric`` and ``value`` sorted by time (Grafana's
long format) or ``time`` and one column per series; table queries any columns.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "FIFTEEN_MIN_MS",
    "power_by_device",
    "power_by_role",
    "sql_text_list",
]

FIFTEEN_MIN_MS = 900_000  # [ms] bucket width from which the 15-minute table is read


def sql_text_list(values: Sequence[str]) -> str:
    """``'a', 'b'``: SQL string literals (quotes doubled) for an ``IN (...)`` list."""
    if not values:
        raise ValueError("an IN list needs at least one value")
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def _power_rows(devices_cte: str, metric: str) -> str:
    """CTEs ``d`` (the devices charted: ``id``, ``label``) and ``p`` (their rows of the
    power table that fits the panel's bucket width: ``bucket``, ``device_id``,
    ``avg_value`` in the metric's unit). The device list comes first so that the power
    tables are read through their key (device_id, metric_id, bucket)."""
    parts = []
    for table, cond in (
        ("power_1min", f"$__interval_ms < {FIFTEEN_MIN_MS}"),
        ("power_15min", f"$__interval_ms >= {FIFTEEN_MIN_MS}"),
    ):
        parts.append(
            f"""  SELECT r.bucket, r.device_id, r.avg_value
  FROM {table} r
  WHERE r.device_id IN (SELECT id FROM d)
    AND r.metric_id = (SELECT id FROM metrics WHERE name = '{metric}')
    AND $__timeFilter(r.bucket)
    AND {cond}"""
        )
    return f"""WITH d AS (
{devices_cte}
), p AS (
{parts[0]}
  UNION ALL
{parts[1]}
)"""


def power_by_role(roles: Sequence[tuple[str, str]]) -> str:
    """Active power [kW] summed by device role (grid, PV, battery, load...), long format.

    Each device's 1-minute or 15-minute averages are averaged over the panel's bucket,
    then the devices of a role are summed, so that a bucket wider than the table's
    rows gives the mean power, not a sum of means.

    Parameters
    ----------
    roles : sequence of (role, label)
        The roles to chart and their series names.
    """
    values = ", ".join(f"({sql_text_list([r])}, {sql_text_list([lb])})" for r, lb in roles)
    devices = f"""  SELECT dv.id, x.label
  FROM devices dv
  JOIN (VALUES {values}) AS x (role, label) ON x.role = dv.role
  WHERE dv.active"""
    return f"""{_power_rows(devices, "active_power_kw")}
SELECT time, metric, sum(value) AS value
FROM (
  SELECT $__timeGroupAlias(p.bucket, $__interval), d.label AS metric, p.device_id,
         avg(p.avg_value) AS value
  FROM p JOIN d ON d.id = p.device_id
  GROUP BY 1, 2, 3
) AS per_device
GROUP BY 1, 2
ORDER BY 1, 2"""


def power_by_device() -> str:
    """Active power [kW] of each device chosen in ``$device``, long format."""
    devices = """  SELECT id, key AS label FROM devices WHERE key IN ($device)"""
    return f"""{_power_rows(devices, "active_power_kw")}
SELECT $__timeGroupAlias(p.bucket, $__interval), d.label AS metric, avg(p.avg_value) AS value
FROM p JOIN d ON d.id = p.device_id
GROUP BY 1, 2
ORDER BY 1, 2"""


# --- site overview ----------------------------------------------------------------------

SCOPE2_HOURLY = """SELECT hour_start AS time,
       scope2_location_kg AS "Scope 2 location-based",
       scope2_market_kg AS "Scope 2 market-based"
FROM hourly_carbon
WHERE $__timeFilter(hour_start)
ORDER BY 1"""

CFE_SHARE_HOURLY = """SELECT hour_start AS time, cfe_share AS "carbon-free energy share"
FROM hourly_carbon
WHERE $__timeFilter(hour_start) AND cfe_share IS NOT NULL
ORDER BY 1"""

INTENSITY_HOURLY = """SELECT hour_start AS time,
       intensity_kg_per_kwh AS "location-based",
       market_intensity_kg_per_kwh AS "market-based",
       location_factor_kg_per_kwh AS "grid factor (location)"
FROM hourly_carbon
WHERE $__timeFilter(hour_start)
ORDER BY 1"""

ENERGY_BALANCE_HOURLY = """SELECT hour_start AS time,
       grid_import_kwh AS "grid import", grid_export_kwh AS "grid export",
       pv_kwh AS "PV", wind_kwh AS "wind",
       battery_discharge_kwh AS "battery discharge", battery_charge_kwh AS "battery charge",
       load_kwh AS "load"
FROM hourly_carbon
WHERE $__timeFilter(hour_start)
ORDER BY 1"""

LOAD_TOTAL = """SELECT coalesce(sum(load_kwh), 0) AS "load"
FROM hourly_carbon
WHERE $__timeFilter(hour_start)"""

SCOPE2_TOTAL = """SELECT coalesce(sum(scope2_location_kg), 0) AS "location-based",
       coalesce(sum(scope2_market_kg), 0) AS "market-based"
FROM hourly_carbon
WHERE $__timeFilter(hour_start)"""

CFE_SHARE_TOTAL = """SELECT sum(cfe_kwh) / nullif(sum(load_kwh), 0) AS "carbon-free energy share"
FROM hourly_carbon
WHERE $__timeFilter(hour_start)"""

# --- devices ----------------------------------------------------------------------------

DEVICE_ENERGY_HOURLY = """SELECT e.hour_start AS time, d.key || ' ' || m.name AS metric,
       e.delta AS value
FROM hourly_energy e
JOIN devices d ON d.id = e.device_id
JOIN metrics m ON m.id = e.metric_id
WHERE $__timeFilter(e.hour_start) AND d.key IN ($device) AND m.unit = 'kWh'
ORDER BY 1, 2"""

DEVICE_EVENTS_HOURLY = """SELECT $__timeGroupAlias(ev.ts, '1h'), d.key || ' ' || ev.kind AS metric,
       count(*) AS value
FROM device_events ev
JOIN devices d ON d.id = ev.device_id
WHERE $__timeFilter(ev.ts) AND d.key IN ($device)
GROUP BY 1, 2
ORDER BY 1, 2"""

DEVICE_HEALTH = """SELECT d.key AS device, d.role,
       (SELECT ev.kind FROM device_events ev
        WHERE ev.device_id = d.id AND ev.kind IN ('online', 'offline')
        ORDER BY ev.ts DESC LIMIT 1) AS state,
       (SELECT count(*) FROM device_events ev
        WHERE ev.device_id = d.id AND ev.kind = 'offline' AND $__timeFilter(ev.ts))
         AS offline_events,
       max(lv.ts) AS last_seen,
       extract(epoch FROM now() - max(lv.ts)) AS silent_s
FROM devices d
LEFT JOIN latest_values lv ON lv.device_id = d.id
WHERE d.key IN ($device)
GROUP BY d.id, d.key, d.role
ORDER BY d.key"""

DEVICE_EVENTS = """SELECT ev.ts AS time, d.key AS device, ev.kind, ev.detail
FROM device_events ev
JOIN devices d ON d.id = ev.device_id
WHERE $__timeFilter(ev.ts) AND d.key IN ($device)
ORDER BY ev.ts DESC
LIMIT 500"""

# --- lines and products -----------------------------------------------------------------

LINE_KWH_PER_UNIT = """SELECT hour_start AS time, line AS metric, kwh_per_unit AS value
FROM hourly_line
WHERE $__timeFilter(hour_start) AND line IN ($line) AND kwh_per_unit IS NOT NULL
ORDER BY 1, 2"""

LINE_ENERGY_HOURLY = """SELECT hour_start AS time, line AS metric, energy_kwh AS value
FROM hourly_line
WHERE $__timeFilter(hour_start) AND line IN ($line)
ORDER BY 1, 2"""

LINE_PRODUCTION_HOURLY = """SELECT hour_start AS time, line AS metric, production_units AS value
FROM hourly_line
WHERE $__timeFilter(hour_start) AND line IN ($line)
ORDER BY 1, 2"""

LINE_ENERGY_TOTAL = """SELECT line AS metric, sum(energy_kwh) AS value
FROM hourly_line
WHERE $__timeFilter(hour_start) AND line IN ($line)
GROUP BY 1
ORDER BY 1"""

# the drift periods (ISO 50006 EnPI against its energy baseline; CUSUM after Page 1954)
LINE_ENPI_BASELINE = """SELECT time, metric, value FROM (
  SELECT period_start AS time, rule || ' ' || line || ' actual' AS metric, energy_kwh AS value
  FROM drift_periods
  WHERE $__timeFilter(period_start) AND line IN ($line)
  UNION ALL
  SELECT period_start, rule || ' ' || line || ' expected', expected_kwh
  FROM drift_periods
  WHERE $__timeFilter(period_start) AND line IN ($line) AND expected_kwh IS NOT NULL
) AS series
ORDER BY 1, 2"""

LINE_CUSUM = """SELECT time, metric, value FROM (
  SELECT period_start AS time, rule || ' ' || line || ' CUSUM+ (' || chart_unit || ')' AS metric,
         cusum_high AS value
  FROM drift_periods
  WHERE $__timeFilter(period_start) AND line IN ($line)
  UNION ALL
  SELECT period_start, rule || ' ' || line || ' CUSUM- (' || chart_unit || ')', cusum_low
  FROM drift_periods
  WHERE $__timeFilter(period_start) AND line IN ($line)
  UNION ALL
  SELECT period_start, rule || ' ' || line || ' limit (' || chart_unit || ')', limit_value
  FROM drift_periods
  WHERE $__timeFilter(period_start) AND line IN ($line) AND limit_value IS NOT NULL
) AS series
ORDER BY 1, 2"""

LINE_DRIFT_SIGNALS = """SELECT period_start, period_end, rule, line, energy_kwh, expected_kwh,
       residual_kwh, residual_share, cusum_high, cusum_low, limit_value, chart_unit
FROM drift_periods
WHERE $__timeFilter(period_start) AND line IN ($line) AND signal
ORDER BY period_start DESC
LIMIT 500"""

# --- data quality -----------------------------------------------------------------------

ESTIMATED_SHARE_HOURLY = """SELECT hour_start AS time, estimated_share AS "site"
FROM hourly_carbon
WHERE $__timeFilter(hour_start)
ORDER BY 1"""

COUNTER_FAULTS_HOURLY = """SELECT hour_start AS time,
       sum(gaps) AS gaps, sum(resets) AS resets, sum(rollovers) AS rollovers,
       sum(backsteps) AS backsteps, sum(replacements) AS replacements,
       sum(rejected) AS rejected, sum(late) AS late, sum(duplicates) AS duplicates
FROM hourly_energy
WHERE $__timeFilter(hour_start)
GROUP BY 1
ORDER BY 1"""

COVERAGE_HOURLY = """SELECT hour_start AS time,
       missing_devices AS "missing devices", submeter_mismatches AS "sub-meter mismatches"
FROM hourly_carbon
WHERE $__timeFilter(hour_start)
ORDER BY 1"""

QUALITY_BY_DEVICE = """SELECT d.key AS device, m.name AS metric,
       count(*) AS hours, count(*) FILTER (WHERE NOT e.complete) AS incomplete_hours,
       sum(e.estimated) AS estimated, sum(e.delta) AS delta,
       sum(e.gaps) AS gaps, sum(e.resets) AS resets, sum(e.rollovers) AS rollovers,
       sum(e.backsteps) AS backsteps, sum(e.replacements) AS replacements,
       sum(e.rejected) AS rejected, sum(e.late) AS late, sum(e.duplicates) AS duplicates
FROM hourly_energy e
JOIN devices d ON d.id = e.device_id
JOIN metrics m ON m.id = e.metric_id
WHERE $__timeFilter(e.hour_start)
GROUP BY d.key, m.name
ORDER BY d.key, m.name"""

# --- alerts -----------------------------------------------------------------------------

ACTIVE_ALERTS = """SELECT fired_at, severity, rule, kind, subject, message_en AS message,
       acked_at, acked_by
FROM alerts
WHERE state = 'firing'
ORDER BY fired_at DESC"""

ACTIVE_ALERT_COUNT = """SELECT count(*) AS "firing" FROM alerts WHERE state = 'firing'"""

ALERT_CHANGES_HOURLY = """SELECT $__timeGroupAlias(ts, '1h'), state AS metric, count(*) AS value
FROM alert_events
WHERE $__timeFilter(ts)
GROUP BY 1, 2
ORDER BY 1, 2"""

ALERT_HISTORY = """SELECT fired_at, resolved_at,
       extract(epoch FROM coalesce(resolved_at, now()) - fired_at) AS duration_s,
       severity, rule, subject, state, message_en AS message
FROM alerts
WHERE $__timeFilter(fired_at)
ORDER BY fired_at DESC
LIMIT 500"""

ACKNOWLEDGEMENTS = """SELECT ev.ts AS time, ev.actor, a.rule, a.subject, a.severity,
       a.ack_comment AS comment,
       extract(epoch FROM ev.ts - a.fired_at) AS after_s
FROM alert_events ev
JOIN alerts a ON a.id = ev.alert_id
WHERE ev.state = 'acknowledged' AND $__timeFilter(ev.ts)
ORDER BY ev.ts DESC
LIMIT 500"""

# --- template variables -----------------------------------------------------------------

DEVICE_VARIABLE = """SELECT key AS __value,
       CASE WHEN name = '' THEN key ELSE key || ' (' || name || ')' END AS __text
FROM devices
WHERE active
ORDER BY key"""

LINE_VARIABLE = """SELECT DISTINCT line FROM hourly_line ORDER BY 1"""
