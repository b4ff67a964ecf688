"""``GET /healthz``: is the service up and can it reach its database."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response, status

from zerocarbon.api import queries
from zerocarbon.api.deps import PoolDep
from zerocarbon.api.live import DB_ERRORS
from zerocarbon.api.schemas import Health

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
