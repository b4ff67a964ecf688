"""``/api/v1/carbon``: hourly energy balance and Scope 2 emissions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from zerocarbon.api import queries
from zerocarbon.api.deps import PoolDep
from zerocarbon.api.schemas import HourlyCarbon

router = APIRouter(prefix="/api/v1/carbon", tags=["carbon"])

DEFAULT_SPAN = timedelta(hours=24)
MAX_SPAN = timedelta(days=31)
HOUR = timedelta(hours=1)
UNPROCESSABLE = 422  # named _ENTITY or _CONTENT depending on the Starlette version


def _as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


@router.get(
    "/hourly",
    summary="Hourly energy and Scope 2 carbon",
    response_model=list[HourlyCarbon],
    responses={
        UNPROCESSABLE: {"description": "Not ISO 8601, start >= end, or a span over 31 days"}
    },
)
async def hourly_carbon(
    pool: PoolDep,
    start: Annotated[
        datetime | None,
        Query(description="ISO 8601; first hour_start included. Naive means UTC."),
    ] = None,
    end: Annotated[
        datetime | None,
        Query(description="ISO 8601; first hour_start excluded. Naive means UTC."),
    ] = None,
) -> list[HourlyCarbon]:
    """Hourly rows with ``start <= hour_start < end``, oldest first.

    Defaults: without both, the 24 hours up to and including the newest row; with only
    ``start``, 24 hours from it; with only ``end``, the 24 hours before it. A ``+`` in an
    offset must be sent as ``%2B``. At most 31 days per request.
    """
    start_utc, end_utc = _as_utc(start), _as_utc(end)
    if start_utc is None and end_utc is None:
        newest = await queries.newest_hour_start(pool)
        if newest is None:
            return []
        end_utc = newest + HOUR
    if start_utc is None:
        assert end_utc is not None
        start_utc = end_utc - DEFAULT_SPAN
    if end_utc is None:
        end_utc = start_utc + DEFAULT_SPAN
    if start_utc >= end_utc:
        raise HTTPException(
            status_code=UNPROCESSABLE,
            detail=f"start ({start_utc.isoformat()}) must be before end ({end_utc.isoformat()})",
        )
    if end_utc - start_utc > MAX_SPAN:
        raise HTTPException(
            status_code=UNPROCESSABLE,
            detail=f"the range {start_utc.isoformat()} .. {end_utc.isoformat()} spans "
            f"{end_utc - start_utc}; at most {MAX_SPAN.days} days per request",
        )
    return await queries.hourly(pool, start_utc, end_utc)
