"""``/api/v1/ledger``: the instruments ledger (green certificates, green-power contracts,
CCER credits, allowances), their retirement against a period, and the audit trail.

Reading needs what the other read routes need; retiring needs the operator role and
records the token's name as ``retired_by``. A unit is retired once: a second retirement
answers 409 with the earlier one's period, author and time
(:mod:`zerocarbon.accounts.ledger`). When the app has the site file (a running gateway),
the ledger is brought in line with it before each request and the engine's allocation
of certificates and contracts is shown; volumes are exact decimals, sent as strings.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, cast

import asyncpg
from fastapi import APIRouter, Depends, HTTPException, Path, Request, status
from pydantic import BaseModel, ConfigDict, Field

from zerocarbon.accounts import ledger
from zerocarbon.accounts.ledger import EngineMonth, InstrumentView, LedgerRefused, PeriodError
from zerocarbon.api.auth import Principal, Role, require_role
from zerocarbon.api.deps import PoolDep
from zerocarbon.api.ranges import UNPROCESSABLE, unprocessable
from zerocarbon.config import SiteConfig
from zerocarbon.storage import ledger as store
from zerocarbon.storage.ledger import LedgerEvent, RetirementRow

router = APIRouter(prefix="/api/v1/ledger", tags=["ledger"])

OperatorDep = Annotated[Principal, Depends(require_role(Role.OPERATOR))]
InstrumentId = Annotated[
    str,
    Path(
        max_length=200,
        description="Ledger id: certificates.<id>, green_power.<id> or offsets.<id>",
    ),
]

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    status.HTTP_404_NOT_FOUND: {"description": "No instrument with that id"}
}


def _site(request: Request) -> SiteConfig | None:
    return cast(SiteConfig | None, getattr(request.app.state, "site", None))


SiteDep = Annotated[SiteConfig | None, Depends(_site)]


def _plain(value: Decimal) -> Decimal:
    """``value`` without trailing zeros and never in exponent form (80, not 8E+1)."""
    normal = value.normalize()
    exponent = normal.as_tuple().exponent
    return normal.quantize(Decimal(1)) if isinstance(exponent, int) and exponent > 0 else normal


class EngineMonthOut(BaseModel):
    """What the carbon engine did with the instrument's volume in one month [kWh]."""

    model_config = ConfigDict(frozen=True)

    month: str
    volume_kwh: float
    allocated_kwh: float = Field(description="This instrument's share of the grid import")
    column_kwh: float = Field(
        description="Sum of the stored hourly column of its kind (certificate_kwh or "
        "green_contract_kwh) over the month"
    )
    unused_kwh: float
    hours: int = Field(description="Hours of the month stored")

    @classmethod
    def of(cls, m: EngineMonth) -> EngineMonthOut:
        return cls(
            month=m.month,
            volume_kwh=m.volume_kwh,
            allocated_kwh=m.allocated_kwh,
            column_kwh=m.column_kwh,
            unused_kwh=m.unused_kwh,
            hours=m.hours,
        )


class InstrumentOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    kind: str = Field(description="gec | green_power | ccer | allowance")
    serial: str
    project: str
    vintage: str
    unit: str = Field(description="MWh or t CO2e")
    volume: Decimal
    retired: Decimal
    held: Decimal
    status: str = Field(description="held | partly_retired | retired | cancelled")
    declared_at: datetime
    declaration: dict[str, Any]
    retired_by_period: dict[str, Decimal]
    engine: list[EngineMonthOut] | None = Field(
        description="Certificates and contracts: the engine's allocation by month "
        "(null for credits and allowances, or when the API runs without the site file)"
    )

    @classmethod
    def of(cls, v: InstrumentView) -> InstrumentOut:
        i = v.instrument
        return cls(
            id=i.id,
            kind=i.kind,
            serial=i.serial,
            project=i.project,
            vintage=i.vintage,
            unit=i.unit,
            volume=_plain(i.volume),
            retired=_plain(i.retired_volume),
            held=_plain(i.held_volume),
            status=i.status,
            declared_at=i.declared_at,
            declaration=dict(i.declaration),
            retired_by_period={p: _plain(x) for p, x in v.retired_by_period.items()},
            engine=None if v.engine is None else [EngineMonthOut.of(m) for m in v.engine],
        )


class RetirementOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    instrument_id: str
    volume: Decimal
    period: str
    retired_by: str
    retired_at: datetime
    reason: str

    @classmethod
    def of(cls, r: RetirementRow) -> RetirementOut:
        return cls(
            id=r.id,
            instrument_id=r.instrument_id,
            volume=_plain(r.volume),
            period=r.period,
            retired_by=r.retired_by,
            retired_at=r.retired_at,
            reason=r.reason,
        )


class EventOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    action: str = Field(description="declared | changed | retired | refused | cancelled")
    actor: str
    at: datetime
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    detail: str

    @classmethod
    def of(cls, e: LedgerEvent) -> EventOut:
        return cls(
            id=e.id,
            action=e.action,
            actor=e.actor,
            at=e.at,
            before=None if e.before is None else dict(e.before),
            after=None if e.after is None else dict(e.after),
            detail=e.detail,
        )


class InstrumentDetailOut(InstrumentOut):
    retirements: list[RetirementOut]
    events: list[EventOut]


class LedgerOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    instruments: list[InstrumentOut]
    offsets_used_t: dict[str, Decimal] = Field(
        description="CCER credits and allowances retired by period [t CO2e]: reported "
        "beside Scope 1 and 2, never subtracted from them"
    )


class RetireRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    period: str = Field(max_length=10, description="Month 2026-03, quarter 2026-Q1, year 2026")
    volume: Decimal = Field(gt=0, max_digits=20, decimal_places=6, description="[unit]")
    reason: str = Field(default="", max_length=500)


async def _sync(conn: asyncpg.Connection, site: SiteConfig | None, *, strict: bool) -> None:
    """Bring the ledger in line with the site file; reads go on when that is refused
    (the gateway refuses to start on it), writes do not."""
    if site is None:
        return
    if strict:
        await ledger.sync_instruments(conn, site)
        return
    with contextlib.suppress(LedgerRefused):
        await ledger.sync_instruments(conn, site)


@router.get("", response_model=LedgerOut, summary="Instruments held and retired")
async def list_ledger(pool: PoolDep, site: SiteDep) -> LedgerOut:
    """Every instrument with its volume, retired and held volumes, retirements by
    period, and for certificates and contracts the engine's allocation by month."""
    async with pool.acquire() as conn:
        await _sync(conn, site, strict=False)
        views = await ledger.ledger_view(conn, site)
        used = ledger.offsets_used(
            [v.instrument for v in views], await store.instrument_retirements(conn)
        )
    return LedgerOut(
        instruments=[InstrumentOut.of(v) for v in views],
        offsets_used_t={p: _plain(x) for p, x in used.items()},
    )


async def _detail(
    conn: asyncpg.Connection, instrument_id: str, site: SiteConfig | None
) -> InstrumentDetailOut:
    try:
        d = await ledger.instrument_detail(conn, instrument_id, site)
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    base = InstrumentOut.of(d.view).model_dump()
    return InstrumentDetailOut(
        **base,
        retirements=[RetirementOut.of(r) for r in d.retirements],
        events=[EventOut.of(e) for e in d.events],
    )


@router.get(
    "/{instrument_id}",
    response_model=InstrumentDetailOut,
    summary="One instrument, its retirements and audit trail",
    responses=_NOT_FOUND,
)
async def get_instrument(
    instrument_id: InstrumentId, pool: PoolDep, site: SiteDep
) -> InstrumentDetailOut:
    """The instrument with its retirements and its audit trail (oldest first)."""
    async with pool.acquire() as conn:
        await _sync(conn, site, strict=False)
        return await _detail(conn, instrument_id, site)


@router.post(
    "/{instrument_id}/retire",
    response_model=InstrumentDetailOut,
    summary="Retire volume of an instrument against a period (operator)",
    responses={
        **_NOT_FOUND,
        status.HTTP_401_UNAUTHORIZED: {"description": "No valid bearer token"},
        status.HTTP_403_FORBIDDEN: {"description": "The token's role is below operator"},
        status.HTTP_409_CONFLICT: {
            "description": "Refused: already retired (the message names the earlier "
            "retirement's period, author and time), not enough left, or a period the "
            "engine did not count the instrument in"
        },
        UNPROCESSABLE: {"description": "A period that is not YYYY-MM, YYYY-Qn or YYYY"},
    },
)
async def retire(
    instrument_id: InstrumentId,
    body: RetireRequest,
    principal: OperatorDep,
    pool: PoolDep,
    site: SiteDep,
) -> InstrumentDetailOut:
    """Retire ``volume`` (the instrument's unit: MWh or t CO2e) against ``period``,
    recorded with the token's name and the time. Answers the instrument as it is
    after."""
    async with pool.acquire() as conn:
        try:
            await _sync(conn, site, strict=True)
            await ledger.retire(
                conn,
                instrument_id,
                period=body.period,
                volume=body.volume,
                retired_by=principal.name,
                reason=body.reason,
            )
        except PeriodError as exc:
            raise unprocessable(str(exc)) from None
        except LookupError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
        except LedgerRefused as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
        return await _detail(conn, instrument_id, site)
