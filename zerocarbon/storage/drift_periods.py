"""``drift_periods``: every period the drift rules evaluated, for SQL readers (Grafana).

One row per (rule, line, period start): the period's energy and output, what the
baseline expected, the residual (in kWh and as a share of the expected energy), the
tabular CUSUM after the period (``cusum_high``/``cusum_low``, in ``chart_unit``: kWh
for the absolute residual model, a share of the expected energy for the relative one),
its decision limit, and whether it signalled. Baseline periods have no expected value.
The gateway writes a period once it is closed (:class:`zerocarbon.alerts.service.
AlertService`); the same period written again (a replay after a restart) replaces the
row, so the table follows the monitor. ``GET /api/v1/lines/{line}/baseline`` computes
the same series from ``hourly_line`` on request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

DRIFT_PERIODS_SQL = """
CREATE TABLE IF NOT EXISTS drift_periods (
    rule text NOT NULL,
    line text NOT NULL,
    period_start timestamptz NOT NULL,
    period_end timestamptz NOT NULL,
    energy_kwh double precision NOT NULL,
    units double precision NOT NULL,
    expected_kwh double precision,
    residual_kwh double precision,
    residual_share double precision,
    cusum_high double precision NOT NULL,
    cusum_low double precision NOT NULL,
    limit_value double precision,
    chart_unit text NOT NULL CHECK (chart_unit IN ('kWh', 'share')),
    signal boolean NOT NULL,
    in_baseline boolean NOT NULL,
    PRIMARY KEY (rule, line, period_start)
);
CREATE INDEX IF NOT EXISTS drift_periods_line_start ON drift_periods (line, period_start);
"""


@dataclass(frozen=True, slots=True)
class DriftPeriodRow:
    rule: str
    line: str
    period_start: datetime  # UTC
    period_end: datetime  # UTC
    energy_kwh: float
    units: float
    expected_kwh: float | None
    residual_kwh: float | None
    residual_share: float | None
    cusum_high: float
    cusum_low: float
    limit_value: float | None
    chart_unit: str  # "kWh" or "share"
    signal: bool
    in_baseline: bool


_COLUMNS = DriftPeriodRow.__dataclass_fields__.keys()


async def upsert_periods(conn: asyncpg.Connection, rows: Sequence[DriftPeriodRow]) -> None:
    """Insert or replace ``rows`` (keyed by rule, line and period start)."""
    if not rows:
        return
    columns = list(_COLUMNS)
    placeholders = ", ".join(f"${i + 1}" for i in range(len(columns)))
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns[3:])
    await conn.executemany(
        f"INSERT INTO drift_periods ({', '.join(columns)}) VALUES ({placeholders}) "
        f"ON CONFLICT (rule, line, period_start) DO UPDATE SET {updates}",
        [tuple(getattr(r, c) for c in columns) for r in rows],
    )
