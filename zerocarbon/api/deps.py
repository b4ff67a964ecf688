"""Typed dependencies shared by the routes.

``create_app`` keeps the settings and the live-stream registry on ``app.state``; the
lifespan adds the database pool. Routes ask for them by type alias.
"""

from __future__ import annotations

from typing import Annotated, cast
from zoneinfo import ZoneInfo

import asyncpg
from fastapi import Depends, FastAPI, Request

from zerocarbon.api.live import LiveStreams
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


SettingsDep = Annotated[Settings, Depends(get_settings)]
SiteTimezoneDep = Annotated[ZoneInfo, Depends(get_site_timezone)]
PoolDep = Annotated[asyncpg.Pool, Depends(get_pool)]
LiveStreamsDep = Annotated[LiveStreams, Depends(get_live_streams)]
