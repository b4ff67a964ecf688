"""``/api/v1/accounts``: the period accounts (GB/T 32150) computed now, the reports issued,
and issuing one.

``GET /api/v1/accounts?period=2026-03`` computes the account of a month, quarter
(``2026-Q1``) or year (``2026``) from the stored hourly rows with the current factors
(:mod:`zerocarbon.accounts.period`). ``GET /api/v1/accounts/reports?period=`` lists the
reports issued for the period, each with its factor revisions and what changed since
the one it supersedes. ``POST /api/v1/accounts/reports`` (operator) issues the account
as it is now, recording the token's name as the issuer. The routes need the site file
(``create_app(site=...)``, as the gateway passes it).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field

from zerocarbon.accounts.period import (
    Account,
    AccountsError,
    compare_accounts,
    compute_account,
    parse_period,
    site_factor_table,
)
from zerocarbon.api.auth import Principal, Role, require_role
from zerocarbon.api.deps import PoolDep
from zerocarbon.api.ranges import UNPROCESSABLE, unprocessable
from zerocarbon.carbon_engine.factors import FactorError
from zerocarbon.carbon_engine.fuels import FuelError
from zerocarbon.config import SiteConfig
from zerocarbon.storage import accounts as stored
from zerocarbon.storage.accounts import AccountReport

router = APIRouter(prefix="/api/v1/accounts", tags=["accounts"])

OperatorDep = Annotated[Principal, Depends(require_role(Role.OPERATOR))]
PeriodQuery = Annotated[
    str,
    Query(
        max_length=16,
        description="A month (2026-03), a quarter (2026-Q1) or a year (2026), site time",
    ),
]
_ERRORS: dict[int | str, dict[str, Any]] = {
    UNPROCESSABLE: {"description": "The period is not a month, quarter or year"},
    status.HTTP_503_SERVICE_UNAVAILABLE: {
        "description": "No site file, or a factor the site needs is missing"
    },
}


def _site(request: Request) -> SiteConfig:
    site = cast(SiteConfig | None, getattr(request.app.state, "site", None))
    if site is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail="the API runs without the site file: accounts need its devices and factors",
        )
    return site


SiteDep = Annotated[SiteConfig, Depends(_site)]


async def _account(pool: Any, site: SiteConfig, period_text: str) -> Account:
    try:
        period = parse_period(period_text, site.site.timezone)
    except AccountsError as exc:
        raise unprocessable(str(exc)) from None
    async with pool.acquire() as conn:
        carbon, energy, lines = await stored.load_period_rows(conn, period.start, period.end)
    try:
        return compute_account(site, period, carbon, energy, lines, site_factor_table(site))
    except (AccountsError, FactorError, FuelError) as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from None


class IssuedReport(BaseModel):
    """An issued account with the factor revisions it used and what changed since the
    report it supersedes."""

    model_config = ConfigDict(frozen=True)

    id: int
    period: str
    issued_at: datetime
    issued_by: str
    supersedes: int | None
    factor_revisions: dict[str, Any]
    changes: list[dict[str, Any]]
    account: dict[str, Any]

    @classmethod
    def of(cls, r: AccountReport) -> IssuedReport:
        return cls(
            id=r.id,
            period=r.period,
            issued_at=r.issued_at,
            issued_by=r.issued_by,
            supersedes=r.supersedes,
            factor_revisions=r.factor_revisions,
            changes=r.changes,
            account=r.account,
        )


class IssueRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    period: str = Field(max_length=16, description="2026-03, 2026-Q1 or 2026")


@router.get("", summary="The account of a period, computed now", responses=_ERRORS)
async def account_now(pool: PoolDep, site: SiteDep, period: PeriodQuery) -> dict[str, Any]:
    """Every emission source of the period with its activity data, factor (value, source,
    revision), emissions [kg and t CO2] and data quality; the totals by GB/T 32150-2015
    formula (1) (exports deducted) and market-based Scope 2 alongside; and the factor
    revisions used."""
    account = await _account(pool, site, period)
    return account.to_json() | {"factor_revisions": account.factor_revisions()}


@router.get(
    "/reports",
    response_model=list[IssuedReport],
    summary="The reports issued for a period",
    responses=_ERRORS,
)
async def reports(pool: PoolDep, site: SiteDep, period: PeriodQuery) -> list[IssuedReport]:
    """Issued reports of the period, the first issued first."""
    try:
        label = parse_period(period, site.site.timezone).label
    except AccountsError as exc:
        raise unprocessable(str(exc)) from None
    async with pool.acquire() as conn:
        found = await stored.list_reports(conn, label)
    return [IssuedReport.of(r) for r in found]


@router.post(
    "/reports",
    response_model=IssuedReport,
    status_code=status.HTTP_201_CREATED,
    summary="Issue the account of a period (operator)",
    responses={
        **_ERRORS,
        status.HTTP_401_UNAUTHORIZED: {"description": "No valid bearer token"},
        status.HTTP_403_FORBIDDEN: {"description": "The token's role is below operator"},
    },
)
async def issue(
    body: IssueRequest, principal: OperatorDep, pool: PoolDep, site: SiteDep
) -> IssuedReport:
    """Compute the account now and store it as issued by the token's name. A re-issue
    supersedes the period's last report and records what changed: factor revisions,
    activity data (by how much), emissions."""
    account = await _account(pool, site, body.period)
    data = account.to_json()

    def changes_since(last: AccountReport | None) -> list[dict[str, Any]]:
        if last is None:
            return []
        return [c.to_json() for c in compare_accounts(last.account, data)]

    async with pool.acquire() as conn:
        report = await stored.issue_report(
            conn,
            account.period,
            principal.name,
            datetime.now(UTC),
            data,
            account.factor_revisions(),
            changes_since,
        )
    return IssuedReport.of(report)
