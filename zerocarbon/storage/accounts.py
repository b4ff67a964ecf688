"""``account_reports``: the period accounts as issued, and the hourly rows an account is
computed from.

An issued report keeps the account as it was (JSON), the factor revisions it used, who
issued it and when, the report it supersedes (the last one of the same period) and what
changed since that one (:func:`zerocarbon.accounts.period.compare_accounts`). Reports
are never updated: a re-issue adds a row. Issues of one period are serialised by an
advisory transaction lock, so that two issuers at once each supersede the one before.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from zerocarbon.rows import HourlyCarbon, HourlyEnergy, HourlyLine
from zerocarbon.storage.schema import stored_columns

__all__ = [
    "ACCOUNT_REPORTS_SQL",
    "AccountReport",
    "issue_report",
    "last_report",
    "list_reports",
    "load_period_rows",
]

ACCOUNT_REPORTS_SQL = """
CREATE TABLE IF NOT EXISTS account_reports (
    id bigserial PRIMARY KEY,
    period text NOT NULL,
    issued_at timestamptz NOT NULL,
    issued_by text NOT NULL,
    account jsonb NOT NULL,
    factor_revisions jsonb NOT NULL,
    changes jsonb NOT NULL DEFAULT '[]'::jsonb,
    supersedes bigint REFERENCES account_reports (id)
);
CREATE INDEX IF NOT EXISTS account_reports_period ON account_reports (period, id);
"""

_LOCK_CLASS = 727_012  # advisory lock class of issuing a period's report


@dataclass(frozen=True, slots=True)
class AccountReport:
    """One issued account."""

    id: int
    period: str
    issued_at: datetime
    issued_by: str
    account: dict[str, Any]
    factor_revisions: dict[str, Any]
    changes: list[dict[str, Any]]
    supersedes: int | None


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _report(r: asyncpg.Record) -> AccountReport:
    return AccountReport(
        id=r["id"],
        period=r["period"],
        issued_at=r["issued_at"],
        issued_by=r["issued_by"],
        account=_json(r["account"]),
        factor_revisions=_json(r["factor_revisions"]),
        changes=_json(r["changes"]),
        supersedes=r["supersedes"],
    )


_COLUMNS = "id, period, issued_at, issued_by, account, factor_revisions, changes, supersedes"


async def last_report(conn: asyncpg.Connection, period: str) -> AccountReport | None:
    """The last issued report of a period, or None."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM account_reports WHERE period = $1 ORDER BY id DESC LIMIT 1",
        period,
    )
    return None if row is None else _report(row)


async def list_reports(conn: asyncpg.Connection, period: str) -> list[AccountReport]:
    """Every issued report of a period, the first issued first."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM account_reports WHERE period = $1 ORDER BY id", period
    )
    return [_report(r) for r in rows]


async def issue_report(
    conn: asyncpg.Connection,
    period: str,
    issued_by: str,
    issued_at: datetime,
    account: Mapping[str, Any],
    factor_revisions: Mapping[str, Any],
    changes_since: Callable[[AccountReport | None], Sequence[Mapping[str, Any]]],
) -> AccountReport:
    """Store a report of ``period`` that supersedes the last one.

    ``changes_since(last)`` gives what changed since the last issued report of the
    period (None for the first); it runs under the period's lock, so it sees the report
    this one supersedes.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _LOCK_CLASS, period)
        last = await last_report(conn, period)
        changes = list(changes_since(last))
        row = await conn.fetchrow(
            f"""INSERT INTO account_reports
                  (period, issued_at, issued_by, account, factor_revisions, changes, supersedes)
                VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6::jsonb, $7)
                RETURNING {_COLUMNS}""",
            period,
            issued_at,
            issued_by,
            json.dumps(account),
            json.dumps(factor_revisions),
            json.dumps([dict(c) for c in changes]),
            None if last is None else last.id,
        )
    assert row is not None
    return _report(row)


async def load_period_rows(
    conn: asyncpg.Connection, start: datetime, end: datetime
) -> tuple[list[HourlyCarbon], list[HourlyEnergy], list[HourlyLine]]:
    """The hourly carbon, energy (with device and metric names) and line rows of the
    hours starting in ``[start, end)``."""
    carbon_cols = ", ".join(c for c, _t, _n in stored_columns("hourly_carbon"))
    line_cols = ", ".join(c for c, _t, _n in stored_columns("hourly_line"))
    energy_cols = ", ".join("h." + c for c, _t, _n in stored_columns("hourly_energy")[3:])
    carbon = await conn.fetch(
        f"SELECT {carbon_cols} FROM hourly_carbon WHERE hour_start >= $1 AND hour_start < $2 "
        "ORDER BY hour_start",
        start,
        end,
    )
    energy = await conn.fetch(
        f"""SELECT h.hour_start, d.key AS device, m.name AS metric, {energy_cols}
            FROM hourly_energy h
            JOIN devices d ON d.id = h.device_id
            JOIN metrics m ON m.id = h.metric_id
            WHERE h.hour_start >= $1 AND h.hour_start < $2 ORDER BY h.hour_start""",
        start,
        end,
    )
    lines = await conn.fetch(
        f"SELECT {line_cols} FROM hourly_line WHERE hour_start >= $1 AND hour_start < $2 "
        "ORDER BY hour_start, line",
        start,
        end,
    )
    return (
        [HourlyCarbon(*tuple(r)) for r in carbon],
        [HourlyEnergy(*tuple(r)) for r in energy],
        [HourlyLine(*tuple(r)) for r in lines],
    )
