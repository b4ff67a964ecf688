"""``/api/v1/scorecard``: the zero-carbon factory scorecard computed now
(:mod:`zerocarbon.accounts.scorecard`).

``GET /api/v1/scorecard?period=2026-06`` gives each indicator with its value, threshold,
the document the threshold comes from and whether it is met, for a month, quarter or
year; ``GET /api/v1/scorecard/trend?start=2026-01&end=2026-07`` the same month by month
(both months included). Offsets are the CCER and allowances retired in the ledger
against the period (exactly its label: a month's scorecard counts retirements against
that month). The routes need the site file (``create_app(site=...)``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, HTTPException, Query, status

from zerocarbon.accounts import ledger
from zerocarbon.accounts.period import AccountsError, parse_period, site_factor_table
from zerocarbon.accounts.scorecard import compute_scorecard, month_labels
from zerocarbon.api.deps import PoolDep
from zerocarbon.api.ranges import UNPROCESSABLE, unprocessable
from zerocarbon.api.routes.accounts import SiteDep
from zerocarbon.carbon_engine.factors import FactorError
from zerocarbon.carbon_engine.fuels import FuelError
from zerocarbon.storage import accounts as stored
from zerocarbon.storage import ledger as ledger_store

router = APIRouter(prefix="/api/v1/scorecard", tags=["scorecard"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    UNPROCESSABLE: {"description": "A bad period or month range"},
    status.HTTP_503_SERVICE_UNAVAILABLE: {
        "description": "No site file, or a factor the site needs is missing"
    },
}
MonthQuery = Annotated[str, Query(max_length=7, description="A month, e.g. 2026-01")]


async def _offsets(conn: asyncpg.Connection) -> dict[str, Decimal]:
    """CCER and allowances retired, by the period retired against [t CO2e]."""
    instruments = await ledger_store.list_instruments(conn)
    return ledger.offsets_used(instruments, await ledger_store.instrument_retirements(conn))


@router.get("", summary="The zero-carbon scorecard of a period", responses=_ERRORS)
async def scorecard(
    pool: PoolDep,
    site: SiteDep,
    period: Annotated[
        str, Query(max_length=16, description="2026-06, 2026-Q2 or 2026 (site time)")
    ],
) -> dict[str, Any]:
    """Each indicator: value, unit, threshold, comparison, source document, met (null:
    not assessed), detail; all met; flags such as "offsets before reductions"."""
    try:
        p = parse_period(period, site.site.timezone)
    except AccountsError as exc:
        raise unprocessable(str(exc)) from None
    async with pool.acquire() as conn:
        carbon, energy, lines = await stored.load_period_rows(conn, p.start, p.end)
        offsets = await _offsets(conn)
    try:
        card = compute_scorecard(
            site,
            p,
            carbon,
            energy,
            lines,
            site_factor_table(site),
            offsets_t=float(offsets.get(p.label, Decimal(0))),
        )
    except (AccountsError, FactorError, FuelError) as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from None
    return card.to_json()


@router.get("/trend", summary="The scorecard month by month", responses=_ERRORS)
async def trend(pool: PoolDep, site: SiteDep, start: MonthQuery, end: MonthQuery) -> dict[str, Any]:
    """The scorecard of each month from ``start`` to ``end`` (both included)."""
    zone = site.site.timezone
    try:
        months = [parse_period(m, zone) for m in month_labels(start, end)]
    except AccountsError as exc:
        raise unprocessable(str(exc)) from None
    async with pool.acquire() as conn:
        carbon, energy, lines = await stored.load_period_rows(conn, months[0].start, months[-1].end)
        offsets = await _offsets(conn)
    out = []
    try:
        table = site_factor_table(site)
        for p in months:
            card = compute_scorecard(
                site,
                p,
                carbon,
                energy,
                lines,
                table,
                offsets_t=float(offsets.get(p.label, Decimal(0))),
            )
            out.append(card.to_json())
    except (AccountsError, FactorError, FuelError) as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from None
    return {"start": start, "end": end, "months": out}
