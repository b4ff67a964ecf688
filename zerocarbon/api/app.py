"""The FastAPI application factory.

Nothing is built at import time: :func:`create_app` builds an app for the given
settings, and the app's lifespan opens the database pool (and closes it, after ending
the live streams).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
from fastapi import Depends, FastAPI

from zerocarbon import __version__
from zerocarbon.api.auth import (
    Authenticator,
    FailureLimiter,
    FailureMetrics,
    check_write_routes,
    read_guard,
)
from zerocarbon.api.docs import add_offline_docs, offline_docs_assets
from zerocarbon.api.errors import add_error_handling
from zerocarbon.api.live import KEEPALIVE_S, LiveStreams
from zerocarbon.api.routes import (
    accounts,
    alerts,
    baseline,
    carbon,
    cost,
    devices,
    energy,
    footprints,
    health,
    ledger,
    lines,
    live,
    power,
    scorecard,
    status,
)
from zerocarbon.api.routes import auth as auth_routes
from zerocarbon.api.routes.health import metrics_registry
from zerocarbon.api.telemetry import Telemetry
from zerocarbon.config import SiteConfig
from zerocarbon.dashboards.page import add_dashboard
from zerocarbon.settings import Settings
from zerocarbon.storage.database import open_pool

log = logging.getLogger(__name__)

POOL_CLOSE_TIMEOUT_S = 5.0  # then connections still in use are terminated [s]


async def close_pool(pool: asyncpg.Pool) -> None:
    """Close an app's own pool, terminating connections still busy after
    :data:`POOL_CLOSE_TIMEOUT_S`."""
    try:
        await asyncio.wait_for(pool.close(), timeout=POOL_CLOSE_TIMEOUT_S)
    except TimeoutError:
        log.warning("database connections still busy after %ss; closing them", POOL_CLOSE_TIMEOUT_S)
        pool.terminate()


class ApiSettingsError(ValueError):
    """The settings cannot run the API; the message names the setting."""


def redact_url(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def stop_live_streams(app: FastAPI) -> None:
    """End every open ``/api/v1/live`` stream of ``app`` (call when shutdown begins)."""
    streams: LiveStreams = app.state.live_streams
    streams.stop()


def create_app(
    settings: Settings,
    *,
    live_keepalive_s: float = KEEPALIVE_S,
    pool: asyncpg.Pool | None = None,
    telemetry: Telemetry | None = None,
    auth_clock: Callable[[], float] | None = None,
    site: SiteConfig | None = None,
) -> FastAPI:
    """Build the API and the live page for ``settings``.

    ``settings.database_url`` is required (the caller starts an embedded server when
    there is none); ``settings.site_timezone`` must be an IANA name. With ``pool`` the
    app uses that pool (the runtime's: one pool per process) and leaves closing it to
    its owner; without, the lifespan opens and closes one of its own. ``telemetry``
    (the running gateway's) feeds ``/readyz`` and ``/metrics``. ``auth_clock``
    (monotonic seconds) times the failed-authentication windows (tests pass their own).
    ``site`` (the running gateway's site file) gives routes the alert rules, such as
    the drift rule's baseline period for ``/api/v1/lines/{id}/baseline``.

    Access control (:mod:`zerocarbon.api.auth`): the ``/api/v1`` read routers need
    ``settings.api_read_role`` when it is set; every write route must need operator or
    above, else building the app fails.
    """
    database_url = settings.database_url
    if not database_url:
        raise ApiSettingsError(
            "the API needs a database: set ZEROCARBON_DATABASE_URL (settings.database_url); "
            "`zerocarbon run` starts an embedded PostgreSQL and sets it when there is none"
        )
    try:
        site_timezone = ZoneInfo(settings.site_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ApiSettingsError(
            f"site_timezone: unknown IANA timezone {settings.site_timezone!r}"
        ) from None
    streams = LiveStreams(keepalive_s=live_keepalive_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if pool is not None:
            app.state.pool = pool
            streams.open()
            try:
                yield
            finally:
                streams.stop()
                app.state.pool = None
            return
        try:
            own = await open_pool(database_url)
        except Exception as exc:
            raise RuntimeError(
                f"cannot open the database {redact_url(database_url)}: {exc}"
            ) from exc
        app.state.pool = own
        streams.open()
        try:
            yield
        finally:
            streams.stop()
            app.state.pool = None
            await close_pool(own)

    docs_assets = offline_docs_assets()
    app = FastAPI(
        title="zerocarbon",
        version=__version__,
        summary="Real-time energy and carbon of the site: devices, latest values, hourly "
        "Scope 2, live stream.",
        lifespan=lifespan,
        docs_url=None if docs_assets else "/docs",
        redoc_url=None if docs_assets else "/redoc",
    )
    app.state.settings = settings
    app.state.site_timezone = site_timezone
    app.state.live_streams = streams
    app.state.telemetry = telemetry
    app.state.site = site
    app.state.metrics_registry = metrics_registry(telemetry)
    if docs_assets is not None:
        add_offline_docs(app, docs_assets)
    limiter = FailureLimiter() if auth_clock is None else FailureLimiter(clock=auth_clock)
    app.state.auth = Authenticator(limiter=limiter, read_role=settings.api_read_role)
    app.state.metrics_registry.register(FailureMetrics(limiter))
    app.include_router(health.router)  # probes and /metrics stay open
    for module in (
        devices,
        carbon,
        energy,
        baseline,
        lines,
        live,
        status,
        power,
        alerts,
        cost,
        accounts,
        ledger,
        footprints,
        scorecard,
    ):
        app.include_router(module.router, dependencies=[Depends(read_guard)])
    app.include_router(auth_routes.router)
    add_dashboard(app)
    add_error_handling(app)
    check_write_routes(app)
    return app
