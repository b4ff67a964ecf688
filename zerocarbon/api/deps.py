"""Typed dependencies shared by the routes.

``create_app`` keeps the settings and the live-stream registry on ``app.state``; the
lifespan adds the database pool. Routes ask for them, and for the ``start``/``end`` query
of hourly and roll-up routes (:mod:`zerocarbon.api.ranges`), by type alias.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, cast
from zoneinfo import ZoneInfo

import asyncpg
from fastapi import Depends, FastAPI, Query, Request

from zerocarbon.api.live import LiveStreams
from zerocarbon.api.ranges import HourRange, PeriodRange, as_utc
from zerocarbon.settings import Settings


def _app(request: Request) -> FastAPI:
    return cast(FastAPI, request.app)


def get_settings(request: Request) -> Settings:
    return cast(Settings, _app(request).state.settings)


def get_site_timezone(request: Request) -> ZoneInfo:
    return cast(ZoneInfo, _app(request).state.site_timezone)


def get_pool(request: Request) -> asyncpg.Pool:
    pool = getattr(_app(request).state, "pool", None)
    if pool is None:
        raise RuntimeError("the database pool is not open: the app's lifespan has not run")
    return pool


def get_live_streams(request: Request) -> LiveStreams:
    return cast(LiveStreams, _app(request).state.live_streams)


def get_hour_range(
    start: Annotated[
        datetime | None,
        Query(description="ISO 8601; first hour_start included. Naive means UTC."),
    ] = None,
    end: Annotated[
        datetime | None,
        Query(description="ISO 8601; first hour_start excluded. Naive means UTC."),
    ] = None,
) -> HourRange:
    return HourRange(as_utc(start), as_utc(end))


def get_period_range(
    start: Annotated[
        date | None,
        Query(description="YYYY-MM-DD in the site's time zone: periods starting on or after it"),
    ] = None,
    end: Annotated[
        date | None,
        Query(description="YYYY-MM-DD in the site's time zone: periods starting before it"),
    ] = None,
) -> PeriodRange:
    return PeriodRange(start, end)


SettingsDep = Annotated[Settings, Depends(get_settings)]
SiteTimezoneDep = Annotated[ZoneInfo, Depends(get_site_timezone)]
PoolDep = Annotated[asyncpg.Pool, Depends(get_pool)]
LiveStreamsDep = Annotated[LiveStreams, Depends(get_live_streams)]
HourRangeDep = Annotated[HourRange, Depends(get_hour_range)]
PeriodRangeDep = Annotated[PeriodRange, Depends(get_period_range)]
