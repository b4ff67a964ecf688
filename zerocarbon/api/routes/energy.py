"""``/api/v1/energy``: hourly energy of each device's channels."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from zerocarbon.api import queries
from zerocarbon.api.deps import HourRangeDep, PoolDep
from zerocarbon.api.ranges import HOURLY_RANGE_ERRORS
from zerocarbon.api.schemas import HourlyEnergy

router = APIRouter(prefix="/api/v1/energy", tags=["energy"])


@router.get(
    "/hourly",
    summary="Hourly energy per device channel",
    response_model=list[HourlyEnergy],
    responses={
        status.HTTP_404_NOT_FOUND: {"description": "No device with that id"},
        **HOURLY_RANGE_ERRORS,
    },
)
async def hourly_energy(
    pool: PoolDep,
    span: HourRangeDep,
    device: Annotated[
        str | None, Query(description="A device id of the site file; all devices without")
    ] = None,
) -> list[HourlyEnergy]:
    """Per-channel rows (a device's counter metric in one hour: its increase ``delta``
    in ``unit``, the estimated part, event counts, ``complete``) with ``start <=
    hour_start < end``, by hour, then device and metric.

    ``start``/``end`` and their defaults as for ``/api/v1/carbon/hourly`` (the newest
    row here is the newest of ``hourly_energy``). At most 31 days per request.
    """
    async with pool.acquire() as conn:
        if device is not None and not await queries.device_known(conn, device):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown device {device!r}")
        newest = await queries.newest_hour_start(conn, "hourly_energy") if span.open else None
        bounds = span.resolve(newest)
        if bounds is None:
            return []
        return await queries.hourly_energy(conn, *bounds, device)
