"""``/api/v1/cost``: the site's energy cost under its ``[tariff]``, hourly and as a
month's bill (:mod:`zerocarbon.accounts.cost`). Amounts are CNY as decimal strings
(``"1234.56"``), never floats."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from pydantic import BaseModel

from zerocarbon.accounts import cost, cost_queries
from zerocarbon.api.deps import HourRangeDep, PoolDep, SiteTimezoneDep
from zerocarbon.api.ranges import HOURLY_RANGE_ERRORS, UNPROCESSABLE, unprocessable
from zerocarbon.config import DeviceRole, SiteConfig
from zerocarbon.config_tariff import PeriodKind, TariffConfig

router = APIRouter(prefix="/api/v1/cost", tags=["cost"])

NO_TARIFF: dict[int | str, dict[str, Any]] = {
    status.HTTP_404_NOT_FOUND: {
        "description": "The site file has no [tariff] (or the API runs without the site file)"
    }
}


class HourlyCost(BaseModel):
    """One hour's energy cost [CNY, rounded half up to the fen]."""

    hour_start: datetime
    period: PeriodKind
    price_per_kwh: Decimal
    grid_import_kwh: Decimal
    grid_export_kwh: Decimal
    pv_self_kwh: Decimal
    energy_cny: Decimal
    surcharge_cny: Decimal
    export_credit_cny: Decimal
    net_cny: Decimal
    pv_savings_cny: Decimal


class BillLine(BaseModel):
    item: str
    quantity: Decimal
    unit: str
    price: Decimal
    amount_cny: Decimal


class MaxDemand(BaseModel):
    demand_kw: float  # highest 15-minute average import
    bucket: datetime  # start of its 15 minutes (UTC)


class BasicCharge(BaseModel):
    basis: str
    measured_kw: Decimal | None
    floor_kw: Decimal | None
    billed: Decimal
    unit: str
    price: Decimal
    amount_cny: Decimal


class LineCost(BaseModel):
    line: str
    energy_kwh: Decimal
    share: Decimal
    energy_cost_cny: Decimal
    basic_charge_cny: Decimal
    total_cny: Decimal
    production_units: Decimal
    cost_per_unit_cny: Decimal | None


class MonthlyBill(BaseModel):
    month: str
    currency: str
    start: datetime
    end: datetime
    hours: int
    lines: list[BillLine]
    total_cny: Decimal
    energy_cost_cny: Decimal
    basic_charge: BasicCharge
    max_demand: MaxDemand | None
    grid_import_kwh: Decimal
    grid_export_kwh: Decimal
    load_kwh: Decimal
    pv_self_kwh: Decimal
    pv_savings_cny: Decimal
    production_units: Decimal
    cost_per_unit_cny: Decimal | None
    line_costs: list[LineCost]
    unallocated_cny: Decimal


def _site_tariff(request: Request) -> tuple[SiteConfig, TariffConfig]:
    site: SiteConfig | None = getattr(request.app.state, "site", None)
    if site is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            "energy cost needs the site file's [tariff]: this API runs without a site file",
        )
    if site.tariff is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            "the site file has no [tariff]: add one (examples/tariff.toml) to see energy cost",
        )
    return site, site.tariff


@router.get(
    "/hourly",
    summary="Hourly energy cost",
    response_model=list[HourlyCost],
    responses={**NO_TARIFF, **HOURLY_RANGE_ERRORS},
)
async def hourly_cost(
    request: Request, pool: PoolDep, tz: SiteTimezoneDep, span: HourRangeDep
) -> list[HourlyCost]:
    """Each hourly row's period kind, energy cost, surcharge, export credit and PV
    self-consumption savings, ``start <= hour_start < end``, oldest first (the monthly
    basic charge is in ``/monthly``). ``start``/``end`` and their defaults as for
    ``/api/v1/carbon/hourly``; at most 31 days."""
    _site, tariff = _site_tariff(request)
    newest = await cost_queries.newest_hour_start(pool) if span.open else None
    bounds = span.resolve(newest)
    if bounds is None:
        return []
    rows = await cost_queries.hourly_carbon_rows(pool, *bounds)
    return [
        HourlyCost.model_validate(h, from_attributes=True)
        for h in cost.hourly_cost(tariff, rows, tz)
    ]


@router.get(
    "/monthly",
    summary="A month's electricity bill and cost per unit of product",
    response_model=MonthlyBill,
    responses={
        **NO_TARIFF,
        UNPROCESSABLE: {"description": "month is not YYYY-MM"},
    },
)
async def monthly_cost(
    request: Request,
    pool: PoolDep,
    tz: SiteTimezoneDep,
    month: Annotated[
        str | None,
        Query(description="YYYY-MM in the site's time zone; the newest row's month without"),
    ] = None,
) -> MonthlyBill:
    """The bill of a local month: energy by period kind, surcharge, the demand or
    capacity charge, the export credit (each rounded half up to the fen; the total is
    their sum), the maximum 15-minute demand and its time, PV self-consumption savings,
    and the cost per unit of product of each line (allocated by its share of the load
    energy) and of the site. A month without rows bills nothing but the basic charge."""
    site, tariff = _site_tariff(request)
    if month is None:
        newest = await cost_queries.newest_hour_start(pool)
        if newest is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no hourly rows yet: give ?month=")
        month = newest.astimezone(tz).strftime("%Y-%m")
    try:
        start, end = cost.month_bounds(month, tz)
    except ValueError as exc:
        raise unprocessable(str(exc)) from None
    grid = [d.id for d in site.devices if d.role is DeviceRole.GRID]
    async with pool.acquire() as conn:
        rows = await cost_queries.hourly_carbon_rows(conn, start, end)
        demand = await cost_queries.import_demand_15min(conn, start, end, grid)
        lines = await cost_queries.line_energy(conn, start, end)
    bill = cost.monthly_bill(tariff, month, tz, rows, demand, site.grid.contracted_demand_kw, lines)
    return MonthlyBill(
        month=bill.month,
        currency=tariff.currency,
        start=bill.start,
        end=bill.end,
        hours=bill.hours,
        lines=[BillLine.model_validate(b, from_attributes=True) for b in bill.lines],
        total_cny=bill.total_cny,
        energy_cost_cny=bill.energy_cost_cny,
        basic_charge=BasicCharge.model_validate(bill.basic, from_attributes=True),
        max_demand=None
        if bill.peak is None
        else MaxDemand(demand_kw=bill.peak.demand_kw, bucket=bill.peak.bucket),
        grid_import_kwh=bill.grid_import_kwh,
        grid_export_kwh=bill.grid_export_kwh,
        load_kwh=bill.load_kwh,
        pv_self_kwh=bill.pv_self_kwh,
        pv_savings_cny=bill.pv_savings_cny,
        production_units=bill.production_units,
        cost_per_unit_cny=bill.cost_per_unit_cny,
        line_costs=[LineCost.model_validate(c, from_attributes=True) for c in bill.line_costs],
        unallocated_cny=bill.unallocated_cny,
    )
