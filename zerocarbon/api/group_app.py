"""The group center's API and page: the application factory.

:func:`create_group_app` serves ``/api/v1/group/*`` (:mod:`zerocarbon.api.routes.group`)
over the center's database (:mod:`zerocarbon.uplink.center_schema`), the probes of
:mod:`zerocarbon.api.routes.health` and the group page at ``/``
(:func:`zerocarbon.dashboards.page.add_group_page`), with the gateway's error handling
(:mod:`zerocarbon.api.errors`) and bearer tokens (:mod:`zerocarbon.api.auth`).

Tokens live in the center database's own ``api_tokens`` table, the gateway's table
(:data:`zerocarbon.storage.schema.API_TOKENS_SQL`), which the app creates at start-up
where missing, next to the center's schema; ``ZEROCARBON_DATABASE_URL=<center>
zerocarbon tokens create ...`` then makes tokens for it. The reads are open unless
``read_role`` names a role.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import asyncpg
from fastapi import Depends, FastAPI

from zerocarbon import __version__
from zerocarbon.api.app import close_pool, redact_url
from zerocarbon.api.auth import (
    Authenticator,
    FailureLimiter,
    FailureMetrics,
    Role,
    check_write_routes,
    read_guard,
)
from zerocarbon.api.docs import add_offline_docs, offline_docs_assets
from zerocarbon.api.errors import add_error_handling
from zerocarbon.api.group_queries import DEFAULT_STALE_AFTER_S
from zerocarbon.api.live import LiveStreams
from zerocarbon.api.routes import group, health
from zerocarbon.api.routes.health import metrics_registry
from zerocarbon.dashboards.page import add_group_page
from zerocarbon.storage.database import open_pool
from zerocarbon.storage.schema import API_TOKENS_SQL
from zerocarbon.uplink.center_schema import create_center_schema

__all__ = ["create_group_app", "create_group_tables"]

log = logging.getLogger(__name__)

TOKENS_LOCK_KEY = 727_102  # advisory lock of creating the center's api_tokens


def _utc_now() -> datetime:
    return datetime.now(UTC)


async def create_group_tables(conn: asyncpg.Connection) -> None:
    """The center's schema and the ``api_tokens`` table where missing (idempotent;
    any number of apps and workers may start together)."""
    await create_center_schema(conn)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", TOKENS_LOCK_KEY)
        await conn.execute(API_TOKENS_SQL)


def create_group_app(
    database: str | asyncpg.Pool,
    *,
    read_role: Role | None = None,
    stale_after_s: float = DEFAULT_STALE_AFTER_S,
    clock: Callable[[], datetime] = _utc_now,
    auth_clock: Callable[[], float] | None = None,
) -> FastAPI:
    """Build the group API and page on the center's database.

    Parameters
    ----------
    database : str or asyncpg.Pool
        The center database's URL (the lifespan opens a pool and closes it) or a pool
        (its owner closes it).
    read_role : Role, optional
        The token role every ``/api/v1/group`` read needs; None: reads are open.
    stale_after_s : float
        A site whose newest message is older than this is ``stale`` [s].
    clock : callable
        Now, as an aware datetime (tests pass a fixed one).
    auth_clock : callable, optional
        Monotonic seconds timing the failed-authentication windows.
    """
    if not stale_after_s > 0:
        raise ValueError(f"stale_after_s: must be positive, got {stale_after_s!r}")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not isinstance(database, str):
            async with database.acquire() as conn:
                await create_group_tables(conn)
            app.state.pool = database
            try:
                yield
            finally:
                app.state.pool = None
            return
        try:
            own = await open_pool(database)
        except Exception as exc:
            raise RuntimeError(f"cannot open the database {redact_url(database)}: {exc}") from exc
        try:
            async with own.acquire() as conn:
                await create_group_tables(conn)
            app.state.pool = own
            yield
        finally:
            app.state.pool = None
            await close_pool(own)

    docs_assets = offline_docs_assets()
    app = FastAPI(
        title="zerocarbon group",
        version=__version__,
        summary="The group's sites as their center stores them: uplink status, hourly "
        "carbon, ranking and issued accounts.",
        lifespan=lifespan,
        docs_url=None if docs_assets else "/docs",
        redoc_url=None if docs_assets else "/redoc",
    )
    app.state.group_clock = clock
    app.state.stale_after_s = stale_after_s
    app.state.telemetry = None  # /readyz: the database only
    # no live stream here; the registry lets zerocarbon.api.server.ApiServer serve the app
    app.state.live_streams = LiveStreams()
    app.state.metrics_registry = metrics_registry(None)
    if docs_assets is not None:
        add_offline_docs(app, docs_assets)
    limiter = FailureLimiter() if auth_clock is None else FailureLimiter(clock=auth_clock)
    app.state.auth = Authenticator(limiter=limiter, read_role=read_role)
    app.state.metrics_registry.register(FailureMetrics(limiter))
    app.include_router(health.router)  # probes and /metrics stay open
    app.include_router(group.router, dependencies=[Depends(read_guard)])
    add_group_page(app)
    add_error_handling(app)
    check_write_routes(app)
    return app
