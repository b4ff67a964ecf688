"""A simulated day of the demo site in a database of its own, for the dashboards' SQL.

The demo site's simulated plant (:class:`PlantModel`) is sampled every 20 s over one
local day (2026-06-15, Asia/Shanghai) and two minutes past it; the readings go through
the gateway's own writer (``readings``, ``latest_values``) and carbon service (hourly
tables), then the power tables are refreshed; device events, alert episodes and drift
periods are stored as the gateway would. Everything the engine computed is kept, so
that the tests know how many rows each panel should return without asking the database.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import asyncpg
import numpy as np
import pytest

from tests.conftest import DEMO_SITE
from zerocarbon.batch import Reading, ReadingBatch, SeriesRegistry, datetime_to_us
from zerocarbon.carbon_engine.engine import CarbonEngine
from zerocarbon.carbon_service import CarbonService
from zerocarbon.config import SiteConfig, load_site
from zerocarbon.rows import HourlyCarbon, HourlyEnergy, HourlyLine
from zerocarbon.simulators.plant import PlantModel
from zerocarbon.storage.alerts import AlertChange, acknowledge, record_change
from zerocarbon.storage.database import (
    create_schema,
    drop_database,
    ensure_database,
    open_pool,
    register_site,
)
from zerocarbon.storage.partitions import open_layout
from zerocarbon.storage.readonly import grant_readonly
from zerocarbon.storage.rollups import refresh_rollups
from zerocarbon.storage.writer import ReadingWriter

ZONE = ZoneInfo("Asia/Shanghai")
DAY_START = datetime(2026, 6, 15, tzinfo=ZONE).astimezone(UTC)
DAY_END = DAY_START + timedelta(days=1)
SAMPLE_S = 20  # [s] between two samples of every device
DRIFT_STEP = 0.25  # extra energy of line A from 16:00 in the drift periods [share]
RUN_PAST_S = 120  # [s] sampled past the day, so that its last hour is complete

# the drift_periods table as the gateway will create it (schema migration 10)
DRIFT_PERIODS_DDL = """
CREATE TABLE IF NOT EXISTS drift_periods (
    line text NOT NULL,
    period_start timestamptz NOT NULL,
    period_end timestamptz NOT NULL,
    energy_kwh float8 NOT NULL,
    units float8 NOT NULL,
    expected_kwh float8 NULL,
    residual_kwh float8 NULL,
    residual_share float8 NULL,
    cusum_high float8 NOT NULL,
    cusum_low float8 NOT NULL,
    limit_value float8 NULL,
    chart_unit text NOT NULL CHECK (chart_unit IN ('kWh', 'share')),
    signal boolean NOT NULL,
    in_baseline boolean NOT NULL,
    rule text NOT NULL,
    PRIMARY KEY (rule, line, period_start)
)"""


def local(hour: int, minute: int = 0) -> datetime:
    """A time of the simulated day, given in the site's local time, as UTC."""
    return DAY_START + timedelta(hours=hour, minutes=minute)


@dataclass(frozen=True, slots=True)
class DriftPeriod:
    rule: str
    line: str
    period_start: datetime
    energy_kwh: float
    units: float
    expected_kwh: float | None
    residual_kwh: float | None
    residual_share: float | None
    cusum_high: float
    cusum_low: float
    limit_value: float | None
    chart_unit: str
    signal: bool
    in_baseline: bool


@dataclass
class SimulatedDay:
    """The database of the simulated day and what was put into it."""

    url: str
    site: SiteConfig
    start: datetime  # first instant of the local day (UTC)
    end: datetime  # first instant of the next day
    readonly_url: str = ""  # the same database as a read-only role (db grant-readonly)
    carbon: dict[datetime, HourlyCarbon] = field(default_factory=dict)
    energy: dict[tuple[datetime, str, str], HourlyEnergy] = field(default_factory=dict)
    lines: dict[tuple[datetime, str], HourlyLine] = field(default_factory=dict)
    power_devices: dict[str, str] = field(default_factory=dict)  # device -> role
    device_events: list[tuple[datetime, str, str]] = field(default_factory=list)
    alerts_fired: int = 0
    alerts_firing: int = 0
    acknowledgements: int = 0
    alert_changes_hours: set[tuple[datetime, str]] = field(default_factory=set)
    drift: list[DriftPeriod] = field(default_factory=list)

    def in_day(self, ts: datetime) -> bool:
        return self.start <= ts < self.end


def _drift_periods(
    rule: str, chart_unit: str, line: str, rows: list[HourlyLine]
) -> list[DriftPeriod]:
    """Hourly periods of ``line``: a straight-line baseline (energy on output) fitted on
    the first eight hours, residuals, and the tabular CUSUM of Page (1954) with
    reference value k = 0.5 sigma and decision limit h = 4 sigma of the baseline's
    residuals (Montgomery, Introduction to Statistical Quality Control, 9.1). The first
    period has no model yet (no expected energy, no limit). From 16:00 the line uses
    :data:`DRIFT_STEP` more energy than it did (a leak), so the CUSUM signals."""
    rows = [
        r if r.hour_start < local(16) else replace(r, energy_kwh=r.energy_kwh * (1 + DRIFT_STEP))
        for r in rows
    ]
    base = rows[:8]
    units = np.array([r.production_units for r in base])
    energy = np.array([r.energy_kwh for r in base])
    slope, intercept = (float(c) for c in np.polyfit(units, energy, 1))
    expected_all = [intercept + slope * r.production_units for r in rows]
    if chart_unit == "share":
        resid = [(r.energy_kwh - e) / e for r, e in zip(rows, expected_all, strict=True)]
    else:
        resid = [r.energy_kwh - e for r, e in zip(rows, expected_all, strict=True)]
    sigma = float(np.std(resid[:8])) or 1.0
    k, h = 0.5 * sigma, 4.0 * sigma
    hi = lo = 0.0
    out = []
    for i, (r, e, x) in enumerate(zip(rows, expected_all, resid, strict=True)):
        first = i == 0
        if not first:
            hi = max(0.0, hi + x - k)
            lo = min(0.0, lo + x + k)
        out.append(
            DriftPeriod(
                rule=rule,
                line=line,
                period_start=r.hour_start,
                energy_kwh=r.energy_kwh,
                units=r.production_units,
                expected_kwh=None if first else e,
                residual_kwh=None if first else r.energy_kwh - e,
                residual_share=None if first else (r.energy_kwh - e) / e,
                cusum_high=hi,
                cusum_low=lo,
                limit_value=None if first else h,
                chart_unit=chart_unit,
                signal=bool(not first and (hi > h or -lo > h)),
                in_baseline=i < 8,
            )
        )
    return out


async def _simulate(conn: asyncpg.Connection, url: str, site: SiteConfig) -> SimulatedDay:
    day = SimulatedDay(url, site, DAY_START, DAY_END)
    registry = await register_site(conn, site)
    series = SeriesRegistry.for_site(site)
    pool = await open_pool(url)
    try:
        layout = await open_layout(conn, site.storage)
        writer = ReadingWriter(pool, registry, series, layout=layout)

        def written(
            carbon: object, energy: object, lines: object, newest_s: float
        ) -> None:  # the service's listener: the rows of each flush
            for c in carbon:  # type: ignore[attr-defined]
                day.carbon[c.hour_start] = c
            for e in energy:  # type: ignore[attr-defined]
                day.energy[(e.hour_start, e.device, e.metric)] = e
            for ln in lines:  # type: ignore[attr-defined]
                day.lines[(ln.hour_start, ln.line)] = ln

        service = CarbonService(
            CarbonEngine(site, series), pool, registry, flush_interval_s=1e9, on_written=written
        )
        plant = PlantModel(site, DAY_START.timestamp())
        for d in site.devices:
            if "active_power_kw" in plant.device_metrics(d.id):
                day.power_devices[d.id] = d.role.value
        t_s = DAY_START.timestamp()
        end_s = DAY_END.timestamp() + RUN_PAST_S
        while t_s <= end_s:
            chunk: list[Reading] = []
            hour_end_s = min(end_s, t_s + 3600 - SAMPLE_S)
            while t_s <= hour_end_s:
                plant.advance(t_s)
                ts = datetime.fromtimestamp(t_s, UTC)
                for d in site.devices:
                    for metric, value in plant.values(d.id).items():
                        chunk.append(Reading(ts, d.id, metric, value))
                t_s += SAMPLE_S
            batch = ReadingBatch.from_readings(chunk, series)
            await writer.write_batch(batch)
            await service.write_batch(batch)
            await service.flush()
        await refresh_rollups(
            conn, datetime_to_us(DAY_START), datetime_to_us(DAY_END) + RUN_PAST_S * 10**6
        )
    finally:
        await pool.close()

    # device events, as the collectors report them
    events = [
        (local(10, 2), "line_b", "offline"),
        (local(10, 9), "line_b", "online"),
        (local(14, 20), "battery", "torn_read"),
    ]
    for ts, device, kind in events:
        await conn.execute(
            "INSERT INTO device_events (ts, device_id, kind, detail) VALUES ($1, $2, $3, $4)",
            ts,
            registry.device_ids[device],
            kind,
            "simulated",
        )
    day.device_events = events

    # alert episodes: one resolved, one firing and acknowledged, one firing
    def change(rule: str, kind: str, subject: str, state: str, ts: datetime) -> AlertChange:
        return AlertChange(
            rule=rule,
            kind=kind,
            subject=subject,
            episode=1,
            state=state,  # type: ignore[arg-type]
            severity="warning",
            ts=ts,
            since=ts - timedelta(minutes=1),
            message_en=f"{rule} {subject} {state}",
            message_zh=f"{rule} {subject} {state}",
            evidence={"value": 1.0},
        )

    await record_change(
        conn,
        change("device-offline", "offline", "line_b", "firing", local(10, 3)),
        [],
        local(10, 3),
    )
    await record_change(
        conn,
        change("device-offline", "offline", "line_b", "resolved", local(10, 10)),
        [],
        local(10, 10),
    )
    demand_id = await record_change(
        conn, change("demand", "demand", "site", "firing", local(13)), [], local(13)
    )
    assert demand_id is not None
    await acknowledge(conn, demand_id, "operator", "load shed on line A", local(13, 20))
    await record_change(
        conn, change("data-quality", "data_quality", "site", "firing", local(20)), [], local(20)
    )
    day.alerts_fired, day.alerts_firing, day.acknowledgements = 3, 2, 1
    day.alert_changes_hours = {
        (local(10), "firing"),
        (local(10), "resolved"),
        (local(13), "firing"),
        (local(13), "acknowledged"),
        (local(20), "firing"),
    }

    # drift periods of line A (output counted there), two rules: kWh and share charts
    await conn.execute(DRIFT_PERIODS_DDL)
    line_rows = sorted(
        (r for (h, ln), r in day.lines.items() if ln == "line_a" and day.in_day(h)),
        key=lambda r: r.hour_start,
    )
    for rule, unit in (("line-drift", "kWh"), ("line-drift-share", "share")):
        day.drift += _drift_periods(rule, unit, "line_a", line_rows)
    assert any(p.signal for p in day.drift), "the simulated drift should signal"
    await conn.executemany(
        """INSERT INTO drift_periods (line, period_start, period_end, energy_kwh, units,
               expected_kwh, residual_kwh, residual_share, cusum_high, cusum_low,
               limit_value, chart_unit, signal, in_baseline, rule)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)""",
        [
            (
                p.line,
                p.period_start,
                p.period_start + timedelta(hours=1),
                p.energy_kwh,
                p.units,
                p.expected_kwh,
                p.residual_kwh,
                p.residual_share,
                p.cusum_high,
                p.cusum_low,
                p.limit_value,
                p.chart_unit,
                p.signal,
                p.in_baseline,
                p.rule,
            )
            for p in day.drift
        ],
    )
    await conn.execute("ANALYZE")
    return day


@pytest.fixture(scope="session")
async def simulated_day(pg_server_url: str) -> AsyncIterator[SimulatedDay]:
    """The demo site's simulated day, in a database made for it (dropped at the end)."""
    site = load_site(DEMO_SITE)
    name = f"zc_grafana_{os.getpid()}_{secrets.token_hex(3)}"
    role = f"{name}_ro"
    url = await ensure_database(pg_server_url, name)
    conn = await asyncpg.connect(url)
    try:
        await create_schema(conn, site.storage)
        day = await _simulate(conn, url, site)
        await grant_readonly(conn, role)
    finally:
        await conn.close()
    parts = urlsplit(url)
    # the same server as the role: host and port as given (empty for the embedded
    # server's Unix socket, which the URL's ?host= names)
    netloc = f"{role}@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    day.readonly_url = urlunsplit(parts._replace(netloc=netloc))
    yield day
    await drop_database(pg_server_url, name)
    admin = await asyncpg.connect(pg_server_url)
    try:
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
    finally:
        await admin.close()
