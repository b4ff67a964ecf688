"""``/api/v1/carbon``: the site's energy balance and emissions, hourly and rolled up."""

from __future__ import annotations

from fastapi import APIRouter

from zerocarbon.api import queries
from zerocarbon.api.deps import HourRangeDep, PeriodRangeDep, PoolDep, SiteTimezoneDep
from zerocarbon.api.ranges import HOURLY_RANGE_ERRORS, ROLLUP_RANGE_ERRORS
from zerocarbon.api.rollup import Period
from zerocarbon.api.schemas import CarbonRollup, HourlyCarbon

router = APIRouter(prefix="/api/v1/carbon", tags=["carbon"])


@router.get(
    "/hourly",
    summary="Hourly energy and carbon",
    response_model=list[HourlyCarbon],
    responses=HOURLY_RANGE_ERRORS,
)
async def hourly_carbon(pool: PoolDep, span: HourRangeDep) -> list[HourlyCarbon]:
    """Hourly rows with ``start <= hour_start < end``, oldest first.

    Defaults: without both, the 24 hours up to and including the newest row; with only
    ``start``, 24 hours from it; with only ``end``, the 24 hours before it. A ``+`` in an
    offset must be sent as ``%2B``. At most 31 days per request.
    """
    newest = await queries.newest_hour_start(pool) if span.open else None
    bounds = span.resolve(newest)
    if bounds is None:
        return []
    return await queries.hourly(pool, *bounds)


@router.get(
    "/{period}",
    summary="Daily, monthly or yearly energy and carbon",
    response_model=list[CarbonRollup],
    responses=ROLLUP_RANGE_ERRORS,
)
async def carbon_rollup(
    period: Period, pool: PoolDep, tz: SiteTimezoneDep, span: PeriodRangeDep
) -> list[CarbonRollup]:
    """The hourly rows summed per day, month or year of the site's time zone, oldest
    first; periods without rows are left out.

    ``start``/``end`` are local dates on the period start (``start <= period_start <
    end``). Sums of the hourly rows; ratios (intensities, ``cfe_share``) recomputed from
    the sums, factors and ``estimated_share`` weighted averages (each field says how);
    ``hours`` and ``complete_hours`` count the hourly rows. Defaults: without both, the
    31 days, 12 months or 10 years up to and including the period of the newest row;
    with one, as many from or before it. At most 366 days, 120 months or 30 years.
    """
    newest = await queries.newest_hour_start(pool) if span.open else None
    bounds = span.resolve(period, None if newest is None else newest.astimezone(tz).date())
    if bounds is None:
        return []
    return await queries.carbon_rollup(pool, period, *bounds, tz)
