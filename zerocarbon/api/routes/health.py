"""``GET /healthz`` (is the service up and can it reach its database), ``GET /readyz``
(is every part fine: database, broker, spool) and ``GET /metrics`` (Prometheus)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from zerocarbon.api import queries
from zerocarbon.api.deps import PoolDep
from zerocarbon.api.live import DB_ERRORS
from zerocarbon.api.schemas import Health
from zerocarbon.api.telemetry import DatabaseState, Readiness, Telemetry

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])

PING_TIMEOUT_S = 2.0  # a database slower than this counts as unavailable [s]


@router.get(
    "/healthz",
    summary="Health check",
    response_model=Health,
    responses={status.HTTP_503_SERVICE_UNAVAILABLE: {"model": Health}},
)
async def healthz(pool: PoolDep, response: Response) -> Health:
    """``ok`` when ``SELECT 1`` succeeds; 503 with ``database: unavailable`` otherwise."""
    try:
        async with pool.acquire(timeout=PING_TIMEOUT_S) as conn:
            await queries.ping(conn, timeout_s=PING_TIMEOUT_S)
    except DB_ERRORS as exc:
        log.warning("health check: database unavailable: %s", exc)
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return Health(status="error", database="unavailable")
    return Health(status="ok", database="ok")


def metrics_registry(telemetry: Telemetry | None) -> CollectorRegistry:
    """The registry ``/metrics`` exposes: the gateway's counters when there is one."""
    registry = CollectorRegistry(auto_describe=False)
    if telemetry is not None:
        registry.register(telemetry.collector())
    return registry


@router.get(
    "/readyz",
    summary="Readiness: database, broker and spool",
    response_model=Readiness,
    responses={status.HTTP_503_SERVICE_UNAVAILABLE: {"model": Readiness}},
)
async def readyz(pool: PoolDep, request: Request, response: Response) -> Readiness:
    """200 when the database answers, the broker is connected (if the site has MQTT
    devices) and the spool is neither full nor above its alarm level; 503 otherwise.
    Gives the spool's depth and the age of its oldest unreplayed batch, and with
    ``[uplink]`` the uplink's state (shown, never a cause of 503: collection and storage
    go on without the WAN)."""
    ok, detail = True, ""
    try:
        async with pool.acquire(timeout=PING_TIMEOUT_S) as conn:
            await queries.ping(conn, timeout_s=PING_TIMEOUT_S)
    except DB_ERRORS as exc:
        ok, detail = False, f"{type(exc).__name__}: {exc}"
    telemetry: Telemetry | None = request.app.state.telemetry
    if telemetry is None:
        report = Readiness(ready=ok, database=DatabaseState(ok=ok, detail=detail))
    else:
        report = telemetry.readiness(ok, detail)
    if not report.ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return report


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
async def metrics(request: Request) -> Response:
    """The gateway's counters and gauges in Prometheus' text format: readings
    acknowledged, stored, duplicates skipped, spool depth/usage/alarm, database and
    broker state, collector tasks up and restarted, per-device health (online, last
    seen, poll latency), Modbus, MQTT and admission counters, and the uplink's
    (published, dropped, failures, outbox, backlog, connected)."""
    registry: CollectorRegistry = request.app.state.metrics_registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
