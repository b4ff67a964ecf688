"""``/api/v1/group``: the group's sites as the center stores them
(:mod:`zerocarbon.api.group_queries`).

``/sites`` each site's uplink status and state; ``/hourly`` the sites' hourly carbon
summed per hour; ``/ranking`` each site's totals over a range, ranked; ``/scorecard``
the newest issued account of a period per site and their sum. "Now" is the app's clock
(:func:`zerocarbon.api.group_app.create_group_app` takes one).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from zerocarbon.accounts.period import AccountsError, parse_period
from zerocarbon.api import group_queries as gq
from zerocarbon.api.deps import PoolDep
from zerocarbon.api.ranges import UNPROCESSABLE, as_utc, resolve_span, unprocessable

router = APIRouter(prefix="/api/v1/group", tags=["group"])

HOUR = timedelta(hours=1)
DEFAULT_SPAN = timedelta(hours=24)  # without start and end: the last 24 hours
MAX_HOURLY_SPAN = timedelta(days=31)  # most hours per /hourly request
MAX_RANKING_SPAN = timedelta(days=366)  # longest range of a /ranking request

_RANGE_ERRORS: dict[int | str, dict[str, Any]] = {
    UNPROCESSABLE: {"description": "Not ISO 8601, start >= end, or a range too long"}
}


def get_now(request: Request) -> datetime:
    """The app's "now" (aware UTC)."""
    clock = cast(Callable[[], datetime], cast(FastAPI, request.app).state.group_clock)
    return cast(datetime, as_utc(clock()))


def get_stale_after_s(request: Request) -> float:
    return cast(float, cast(FastAPI, request.app).state.stale_after_s)


NowDep = Annotated[datetime, Depends(get_now)]
StartQuery = Annotated[
    datetime | None, Query(description="ISO 8601; first hour_start included. Naive means UTC.")
]
EndQuery = Annotated[
    datetime | None, Query(description="ISO 8601; first hour_start excluded. Naive means UTC.")
]


def _span(
    start: datetime | None, end: datetime | None, now: datetime, longest: timedelta
) -> tuple[datetime, datetime]:
    """``[start, end)``: without both, the 24 hours up to the end of the hour of ``now``;
    with one, 24 hours from or before it; 422 when start >= end or longer than
    ``longest``."""
    open_end = now.replace(minute=0, second=0, microsecond=0) + HOUR
    bounds = resolve_span(
        as_utc(start), as_utc(end), open_end, default=DEFAULT_SPAN, longest=longest
    )
    assert bounds is not None  # open_end is given
    return bounds


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class GroupSites(_Frozen):
    now: datetime = Field(description="the center's now the states are judged at")
    stale_after_s: float = Field(description="silent longer than this: stale [s]")
    sites: list[gq.SiteStatus]


class GroupHourly(_Frozen):
    start: datetime
    end: datetime
    hours: list[gq.GroupHour] = Field(description="hours any site reported, oldest first")
    total: gq.CarbonSums = Field(description="the range's sums and their ratios")


class GroupRanking(_Frozen):
    start: datetime
    end: datetime
    by: gq.RankBy
    sites: list[gq.SiteTotals] = Field(description="best first; sites with no load last")
    total: gq.CarbonSums = Field(description="the sites' sums and their ratios")


@router.get("/sites", summary="The sites and their uplink", response_model=GroupSites)
async def sites(
    pool: PoolDep,
    now: NowDep,
    stale_after_s: Annotated[float, Depends(get_stale_after_s)],
) -> GroupSites:
    """Each site with its uplink status: last message stored, uplink lag, newest
    reading, readings stored, the gateway's backlog, alerts firing, and its state:
    ``online`` (a message within ``stale_after_s`` of now), ``stale`` or ``never``."""
    found = await gq.site_statuses(pool, now, stale_after_s)
    return GroupSites(now=now, stale_after_s=stale_after_s, sites=found)


@router.get(
    "/hourly",
    summary="The group's hourly energy and carbon",
    response_model=GroupHourly,
    responses=_RANGE_ERRORS,
)
async def hourly(
    pool: PoolDep, now: NowDep, start: StartQuery = None, end: EndQuery = None
) -> GroupHourly:
    """Per hour with ``start <= hour_start < end``, the sites' rows summed; ratios
    (``cfe_share``, intensities) from the sums. Defaults: the 24 hours up to the end
    of the current hour. At most 31 days."""
    lo, hi = _span(start, end, now, MAX_HOURLY_SPAN)
    hours = await gq.group_hourly(pool, lo, hi)
    return GroupHourly(start=lo, end=hi, hours=hours, total=gq.combine(hours))


@router.get(
    "/ranking",
    summary="The sites' totals, ranked",
    response_model=GroupRanking,
    responses=_RANGE_ERRORS,
)
async def ranking(
    pool: PoolDep,
    now: NowDep,
    start: StartQuery = None,
    end: EndQuery = None,
    by: Annotated[
        gq.RankBy,
        Query(
            description="intensity (lowest first), cfe_share (highest first) or emissions "
            "(Scope 1 + location-based Scope 2, lowest first)"
        ),
    ] = gq.RankBy.intensity,
) -> GroupRanking:
    """Each site's sums over ``[start, end)`` and its rank by ``by`` (equal values share
    a rank); sites with no load have null ratios, no rank and come last. Defaults: the
    24 hours up to the end of the current hour. At most 366 days."""
    lo, hi = _span(start, end, now, MAX_RANKING_SPAN)
    totals = await gq.site_totals(pool, lo, hi)
    return GroupRanking(
        start=lo, end=hi, by=by, sites=gq.rank_sites(totals, by), total=gq.combine(totals)
    )


@router.get(
    "/scorecard",
    summary="The group's issued accounts of a period",
    response_model=gq.GroupScorecard,
    responses={UNPROCESSABLE: {"description": "Not a month, quarter or year"}},
)
async def scorecard(
    pool: PoolDep,
    period: Annotated[
        str, Query(max_length=16, description="2026-06, 2026-Q2 or 2026, as the sites issue")
    ],
) -> gq.GroupScorecard:
    """Per site the newest issued account of ``period`` that no stored account of the
    site supersedes, with its figures; the group's totals summed from them (shares and
    intensities from the sums); the sites without an account of the period."""
    try:
        label = parse_period(period, "UTC").label
    except AccountsError as exc:
        raise unprocessable(str(exc)) from None
    return await gq.group_scorecard(pool, label)
