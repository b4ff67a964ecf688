"""The instruments ledger's tables: ``instruments``, ``retirements``, ``ledger_events``.

``instruments`` holds what the site declared (green certificate batches, green-power
contracts, CCER credits, allowances), each with its volume (``numeric``, MWh or t CO2e,
exact) and how much of it is retired. ``retirements`` records each retirement against a
period; ``ledger_events`` is the audit trail (who did what when, the row before and
after). Both are append-only: a trigger refuses UPDATE and DELETE on them.

A unit is retired at most once, enforced in the database twice over:

- :func:`retire` locks the instrument's row (``SELECT ... FOR UPDATE``) and runs the
  caller's check against the retirements committed so far, in one transaction, so two
  retirements of the same instrument at once are serialised and the second sees the
  first;
- ``instruments.retired_volume <= volume`` is a CHECK constraint, and a serial is held
  once per kind among instruments not cancelled (a unique index).

The rules (which period an instrument may be retired against) are the caller's
(:mod:`zerocarbon.accounts.ledger`): this module knows SQL only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
import numpy as np
from numpy.typing import NDArray

__all__ = [
    "LEDGER_SQL",
    "InstrumentRow",
    "LedgerEvent",
    "LedgerRefused",
    "RetirementRow",
    "get_instrument",
    "instrument_json",
    "hourly_instrument_columns",
    "instrument_events",
    "instrument_retirements",
    "list_instruments",
    "record_event",
    "retire",
    "set_status",
    "status_after",
    "upsert_instrument",
]

LEDGER_SQL = r"""
CREATE TABLE IF NOT EXISTS instruments (
    id text PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('gec', 'green_power', 'ccer', 'allowance')),
    serial text NOT NULL,
    project text NOT NULL DEFAULT '',
    vintage text NOT NULL,
    volume numeric(20, 6) NOT NULL CHECK (volume >= 0),
    unit text NOT NULL CHECK (unit IN ('MWh', 't CO2e')),
    retired_volume numeric(20, 6) NOT NULL DEFAULT 0 CHECK (retired_volume >= 0),
    status text NOT NULL
        CHECK (status IN ('held', 'retired', 'partly_retired', 'cancelled')),
    declaration jsonb NOT NULL,
    declared_at timestamptz NOT NULL,
    CONSTRAINT instruments_retired_within_volume CHECK (retired_volume <= volume)
);
CREATE UNIQUE INDEX IF NOT EXISTS instruments_serial_once ON instruments (kind, serial)
    WHERE status <> 'cancelled';
CREATE TABLE IF NOT EXISTS retirements (
    id bigserial PRIMARY KEY,
    instrument_id text NOT NULL REFERENCES instruments (id),
    volume numeric(20, 6) NOT NULL CHECK (volume > 0),
    period text NOT NULL CHECK (period ~ '^\d{4}(-(0[1-9]|1[0-2])|-Q[1-4])?$'),
    retired_by text NOT NULL CHECK (retired_by <> ''),
    retired_at timestamptz NOT NULL,
    reason text NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS retirements_instrument ON retirements (instrument_id, retired_at);
CREATE INDEX IF NOT EXISTS retirements_period ON retirements (period);
CREATE TABLE IF NOT EXISTS ledger_events (
    id bigserial PRIMARY KEY,
    instrument_id text NOT NULL,
    action text NOT NULL
        CHECK (action IN ('declared', 'changed', 'retired', 'refused', 'cancelled')),
    actor text NOT NULL,
    at timestamptz NOT NULL,
    before jsonb,
    after jsonb,
    detail text NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS ledger_events_instrument ON ledger_events (instrument_id, id);
CREATE OR REPLACE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
DROP TRIGGER IF EXISTS retirements_append_only ON retirements;
CREATE TRIGGER retirements_append_only BEFORE UPDATE OR DELETE ON retirements
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
DROP TRIGGER IF EXISTS ledger_events_append_only ON ledger_events;
CREATE TRIGGER ledger_events_append_only BEFORE UPDATE OR DELETE ON ledger_events
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
"""


class LedgerRefused(Exception):
    """A ledger change refused; the message names the instrument and says why."""


@dataclass(frozen=True, slots=True)
class InstrumentRow:
    """One row of ``instruments``; ``volume`` and ``retired_volume`` in ``unit``."""

    id: str  # "certificates.<id>", "green_power.<id>" or "offsets.<id>"
    kind: str  # gec | green_power | ccer | allowance
    serial: str  # registry serial (CCER, CEA), or the site file's id (GEC batch, contract)
    project: str
    vintage: str  # GEC: issued month "YYYY-MM"; contract: first month; CCER/CEA: year
    volume: Decimal  # [MWh] or [t CO2e]
    unit: str  # "MWh" | "t CO2e"
    retired_volume: Decimal  # [unit]
    status: str  # held | retired | partly_retired | cancelled
    declaration: Mapping[str, Any]  # what the site file said (compared at each sync)
    declared_at: datetime

    @property
    def held_volume(self) -> Decimal:
        """Volume not retired yet [unit]."""
        return self.volume - self.retired_volume


@dataclass(frozen=True, slots=True)
class RetirementRow:
    id: int
    instrument_id: str
    volume: Decimal  # [unit of the instrument]
    period: str  # "2026-03", "2026-Q1" or "2026"
    retired_by: str
    retired_at: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class LedgerEvent:
    id: int
    instrument_id: str
    action: str  # declared | changed | retired | refused | cancelled
    actor: str
    at: datetime
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    detail: str


def _json(value: Any) -> Any:
    return None if value is None else json.loads(value) if isinstance(value, str) else value


def _instrument(r: asyncpg.Record) -> InstrumentRow:
    d = dict(r)
    d["declaration"] = _json(d["declaration"])
    return InstrumentRow(**d)


def _event(r: asyncpg.Record) -> LedgerEvent:
    d = dict(r)
    d["before"], d["after"] = _json(d["before"]), _json(d["after"])
    return LedgerEvent(**d)


_INSTRUMENT_COLUMNS = (
    "id, kind, serial, project, vintage, volume, unit, retired_volume, status, "
    "declaration, declared_at"
)


async def list_instruments(
    conn: asyncpg.Connection, *, for_update: bool = False
) -> list[InstrumentRow]:
    """Every instrument, by id (their rows locked with ``for_update``, in a transaction)."""
    lock = " FOR UPDATE" if for_update else ""
    rows = await conn.fetch(
        f'SELECT {_INSTRUMENT_COLUMNS} FROM instruments ORDER BY id COLLATE "C"{lock}'
    )
    return [_instrument(r) for r in rows]


async def get_instrument(
    conn: asyncpg.Connection, instrument_id: str, *, for_update: bool = False
) -> InstrumentRow | None:
    lock = " FOR UPDATE" if for_update else ""
    r = await conn.fetchrow(
        f"SELECT {_INSTRUMENT_COLUMNS} FROM instruments WHERE id = $1{lock}", instrument_id
    )
    return None if r is None else _instrument(r)


async def instrument_retirements(
    conn: asyncpg.Connection, instrument_id: str | None = None
) -> list[RetirementRow]:
    """Retirements of one instrument (or all), in the order recorded."""
    rows = await conn.fetch(
        "SELECT id, instrument_id, volume, period, retired_by, retired_at, reason "
        "FROM retirements WHERE $1::text IS NULL OR instrument_id = $1 ORDER BY id",
        instrument_id,
    )
    return [RetirementRow(**dict(r)) for r in rows]


async def instrument_events(
    conn: asyncpg.Connection, instrument_id: str | None = None, *, limit: int = 1000
) -> list[LedgerEvent]:
    """The audit trail of one instrument (or all, the newest ``limit``), oldest first."""
    rows = await conn.fetch(
        "SELECT * FROM (SELECT id, instrument_id, action, actor, at, before, after, detail "
        "FROM ledger_events WHERE $1::text IS NULL OR instrument_id = $1 "
        "ORDER BY id DESC LIMIT $2) e ORDER BY id",
        instrument_id,
        limit,
    )
    return [_event(r) for r in rows]


async def record_event(
    conn: asyncpg.Connection,
    instrument_id: str,
    action: str,
    actor: str,
    at: datetime,
    *,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    detail: str = "",
) -> None:
    """Append one event to the audit trail."""
    await conn.execute(
        "INSERT INTO ledger_events (instrument_id, action, actor, at, before, after, detail) "
        "VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7)",
        instrument_id,
        action,
        actor,
        at,
        None if before is None else json.dumps(before, default=str),
        None if after is None else json.dumps(after, default=str),
        detail,
    )


def instrument_json(row: InstrumentRow) -> dict[str, Any]:
    """An instrument row as the audit trail keeps it (volumes as strings: exact)."""
    return {
        "kind": row.kind,
        "serial": row.serial,
        "project": row.project,
        "vintage": row.vintage,
        "volume": str(row.volume),
        "unit": row.unit,
        "retired_volume": str(row.retired_volume),
        "status": row.status,
        "declaration": dict(row.declaration),
    }


async def upsert_instrument(conn: asyncpg.Connection, row: InstrumentRow) -> None:
    """Insert or replace an instrument's declaration (its retired volume is kept)."""
    await conn.execute(
        """INSERT INTO instruments (id, kind, serial, project, vintage, volume, unit,
                                    retired_volume, status, declaration, declared_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11)
           ON CONFLICT (id) DO UPDATE SET kind = EXCLUDED.kind, serial = EXCLUDED.serial,
               project = EXCLUDED.project, vintage = EXCLUDED.vintage,
               volume = EXCLUDED.volume, unit = EXCLUDED.unit, status = EXCLUDED.status,
               declaration = EXCLUDED.declaration, declared_at = EXCLUDED.declared_at""",
        row.id,
        row.kind,
        row.serial,
        row.project,
        row.vintage,
        row.volume,
        row.unit,
        row.retired_volume,
        row.status,
        json.dumps(dict(row.declaration), sort_keys=True),
        row.declared_at,
    )


async def set_status(conn: asyncpg.Connection, instrument_id: str, status: str) -> None:
    await conn.execute("UPDATE instruments SET status = $2 WHERE id = $1", instrument_id, status)


def status_after(volume: Decimal, retired: Decimal) -> str:
    """held (nothing retired), partly_retired or retired (all of it)."""
    if retired <= 0:
        return "held"
    return "retired" if retired >= volume else "partly_retired"


Check = Callable[[InstrumentRow, Sequence[RetirementRow]], None]


async def retire(
    conn: asyncpg.Connection,
    instrument_id: str,
    *,
    volume: Decimal,
    period: str,
    retired_by: str,
    reason: str,
    at: datetime,
    check: Check,
) -> RetirementRow:
    """Retire ``volume`` of an instrument against ``period``, in one transaction.

    The instrument's row is locked first; ``check(instrument, retirements so far)``
    raises :class:`LedgerRefused` to refuse. The retirement, the new retired volume and
    status, and a ``retired`` event are written together. A refusal is recorded as a
    ``refused`` event (after the transaction is rolled back) and raised again.

    Raises
    ------
    LedgerRefused
        No such instrument, the check refused, or the database's constraint did (a
        retirement beyond the volume that got past the check).
    """
    try:
        async with conn.transaction():
            inst = await get_instrument(conn, instrument_id, for_update=True)
            if inst is None:
                raise LookupError(f"no instrument {instrument_id!r} in the ledger")
            check(inst, await instrument_retirements(conn, instrument_id))
            r = await conn.fetchrow(
                "INSERT INTO retirements (instrument_id, volume, period, retired_by, "
                "retired_at, reason) VALUES ($1, $2, $3, $4, $5, $6) "
                "RETURNING id, instrument_id, volume, period, retired_by, retired_at, reason",
                instrument_id,
                volume,
                period,
                retired_by,
                at,
                reason,
            )
            assert r is not None
            retired = inst.retired_volume + volume
            status = status_after(inst.volume, retired)
            await conn.execute(
                "UPDATE instruments SET retired_volume = $2, status = $3 WHERE id = $1",
                instrument_id,
                retired,
                status,
            )
            await record_event(
                conn,
                instrument_id,
                "retired",
                retired_by,
                at,
                before={"retired_volume": str(inst.retired_volume), "status": inst.status},
                after={"retired_volume": str(retired), "status": status},
                detail=f"{volume} {inst.unit} against {period}: {reason}",
            )
            return RetirementRow(**dict(r))
    except asyncpg.CheckViolationError as exc:
        refused = LedgerRefused(
            f"{instrument_id}: the database refused the retirement ({exc.constraint_name}): "
            "it would retire more than the instrument's volume"
        )
        await _record_refusal(conn, instrument_id, retired_by, at, volume, period, str(refused))
        raise refused from exc
    except LedgerRefused as exc:
        await _record_refusal(conn, instrument_id, retired_by, at, volume, period, str(exc))
        raise


async def _record_refusal(
    conn: asyncpg.Connection,
    instrument_id: str,
    actor: str,
    at: datetime,
    volume: Decimal,
    period: str,
    why: str,
) -> None:
    await record_event(
        conn,
        instrument_id,
        "refused",
        actor,
        at,
        after={"volume": str(volume), "period": period},
        detail=why,
    )


async def hourly_instrument_columns(
    conn: asyncpg.Connection, start: datetime, end: datetime
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """``hourly_carbon`` in ``[start, end)``: hour starts (POSIX [s]), grid import,
    contract and certificate coverage [kWh], ascending by hour."""
    rows = await conn.fetch(
        "SELECT extract(epoch FROM hour_start)::bigint AS s, grid_import_kwh, "
        "green_contract_kwh, certificate_kwh FROM hourly_carbon "
        "WHERE hour_start >= $1 AND hour_start < $2 ORDER BY hour_start",
        start,
        end,
    )
    return (
        np.array([r["s"] for r in rows], dtype=np.int64),
        np.array([r["grid_import_kwh"] for r in rows], dtype=np.float64),
        np.array([r["green_contract_kwh"] for r in rows], dtype=np.float64),
        np.array([r["certificate_kwh"] for r in rows], dtype=np.float64),
    )
