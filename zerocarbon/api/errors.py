"""What the API answers when the database is away or a request holds text it cannot
store: a short JSON reason and the right status, never a traceback.

* The database unreachable, refusing connections or shutting down (SQLSTATE classes 08
  connection exception, 53 insufficient resources, 57 operator intervention, 55000
  object not in prerequisite state, e.g. "database is not accepting connections"; or
  the connection failing at the socket): **503** ``{"detail": "database unavailable",
  "reason": ...}``. The log says once that the database is down and once that it is
  back (the next successful answer), not once per request.
* A NUL character in the path or query (PostgreSQL text cannot hold one): **400**,
  refused before any query runs; a value the database still rejects as invalid data
  (SQLSTATE class 22): **400** with its message.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from urllib.parse import unquote

import asyncpg
from fastapi import FastAPI, Request, Response, status
from fastapi.responses import JSONResponse

from zerocarbon.storage.faults import database_unavailable

log = logging.getLogger(__name__)

__all__ = ["DatabaseState", "add_error_handling"]


class DatabaseState:
    """Whether the database answered last time; logs each change once."""

    def __init__(self) -> None:
        self.available = True
        self.failures = 0  # requests answered 503 since start

    def down(self, exc: BaseException) -> None:
        self.failures += 1
        if self.available:
            log.warning("database unavailable: %s: %s (answering 503)", type(exc).__name__, exc)
        self.available = False

    def up(self) -> None:
        if not self.available:
            log.info("database is back (%d requests were answered 503)", self.failures)
        self.available = True


def add_error_handling(app: FastAPI) -> None:
    """Install the handlers and the NUL check on ``app``; keeps a DatabaseState on
    ``app.state.database_state``."""
    state = DatabaseState()
    app.state.database_state = state

    async def on_postgres_error(request: Request, exc: Exception) -> Response:
        if database_unavailable(exc):
            state.down(exc)
            return JSONResponse(
                {"detail": "database unavailable", "reason": str(exc)},
                status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            )
        sqlstate = getattr(exc, "sqlstate", None) or ""
        if sqlstate.startswith("22"):  # data exception: the request's value
            return JSONResponse(
                {"detail": f"the database cannot store this value: {exc}"},
                status_code=status.HTTP_400_BAD_REQUEST,
            )
        raise exc

    async def on_connection_error(request: Request, exc: Exception) -> Response:
        state.down(exc)
        return JSONResponse(
            {"detail": "database unavailable", "reason": f"{type(exc).__name__}: {exc}"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        )

    app.add_exception_handler(asyncpg.PostgresError, on_postgres_error)
    app.add_exception_handler(asyncpg.InterfaceError, on_connection_error)
    app.add_exception_handler(OSError, on_connection_error)
    app.add_exception_handler(TimeoutError, on_connection_error)

    @app.middleware("http")
    async def refuse_nul_and_note_recovery(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        raw = request.scope.get("raw_path", b"") or b""
        query = request.scope.get("query_string", b"") or b""
        if "\x00" in unquote(raw.decode("latin-1")) or "\x00" in unquote(query.decode("latin-1")):
            return JSONResponse(
                {"detail": "NUL characters are not allowed in the path or query"},
                status_code=status.HTTP_400_BAD_REQUEST,
            )
        response = await call_next(request)
        if response.status_code < 500 and not state.available:
            path = request.url.path
            if path.startswith("/api/") or path == "/healthz":
                state.up()
        return response
