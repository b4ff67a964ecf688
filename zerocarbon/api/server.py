"""Running the app under uvicorn without wall screens holding shutdown open.

uvicorn's shutdown first waits for every open response to finish and only then runs
the app's lifespan shutdown, so an endless event stream (``/api/v1/live``) would keep
it waiting until ``timeout_graceful_shutdown`` (forever by default). :class:`ApiServer`
ends the live streams as soon as shutdown begins.
"""

from __future__ import annotations

import socket

import uvicorn
from fastapi import FastAPI

from zerocarbon.api.app import stop_live_streams
from zerocarbon.settings import Settings

GRACEFUL_SHUTDOWN_S = 5.0  # then uvicorn cancels requests still running [s]


class ApiServer(uvicorn.Server):
    """A uvicorn server for an app from :func:`~zerocarbon.api.app.create_app`."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        app = self.config.app
        if isinstance(app, FastAPI):
            stop_live_streams(app)
        await super().shutdown(sockets=sockets)


def api_server(app: FastAPI, settings: Settings, **config: object) -> ApiServer:
    """An :class:`ApiServer` on ``settings.http_host:http_port``; ``config`` goes to
    :class:`uvicorn.Config` (e.g. ``log_level``, ``port``)."""
    options: dict[str, object] = {
        "host": settings.http_host,
        "port": settings.http_port,
        "lifespan": "on",
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S,
    }
    options.update(config)
    return ApiServer(uvicorn.Config(app, **options))  # type: ignore[arg-type]
