"""``/api/v1/devices``: the site's devices, their latest values, their health and their
events (online, offline, torn reads)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from zerocarbon.api import queries
from zerocarbon.api.deps import PoolDep
from zerocarbon.api.ranges import UNPROCESSABLE, as_utc, unprocessable
from zerocarbon.api.schemas import Device, DeviceLatest
from zerocarbon.api.telemetry import DeviceHealth, Telemetry
from zerocarbon.ingest.events import DeviceEventKind
from zerocarbon.storage.device_events import device_events

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])


@router.get("", response_model=list[Device], summary="Devices")
async def list_devices(pool: PoolDep) -> list[Device]:
    """Every device of the site file, in the file's order."""
    return await queries.devices(pool)


@router.get(
    "/{device_id}/latest",
    response_model=DeviceLatest,
    summary="Latest values of a device",
    responses={status.HTTP_404_NOT_FOUND: {"description": "No device with that id"}},
)
async def device_latest(device_id: str, pool: PoolDep) -> DeviceLatest:
    """The newest value of each metric of one device (empty before its first reading)."""
    async with pool.acquire() as conn:
        if not await queries.device_exists(conn, device_id):
            raise HTTPException(
                status_code=status.HTTP_404_NOT_FOUND, detail=f"unknown device {device_id!r}"
            )
        values = await queries.latest_of_device(conn, device_id)
    return DeviceLatest(device=device_id, values=values)


class Unavailable(BaseModel):
    detail: str
    reason: str


@router.get(
    "/{device_id}/health",
    response_model=DeviceHealth,
    summary="Health of a device's link",
    responses={
        status.HTTP_404_NOT_FOUND: {"description": "No device with that id in the site"},
        status.HTTP_503_SERVICE_UNAVAILABLE: {
            "model": Unavailable,
            "description": "The API runs without a gateway: no device is being collected",
        },
    },
)
async def device_health(device_id: str, request: Request) -> DeviceHealth | JSONResponse:
    """Whether the device answers, when it last gave readings, its poll latency (Modbus)
    and its counters since the gateway started (polls or messages, readings, timeouts,
    errors, bad payloads, skipped cycles, consecutive failures, the last error)."""
    telemetry: Telemetry | None = request.app.state.telemetry
    if telemetry is None:
        return JSONResponse(
            Unavailable(
                detail="device health unavailable",
                reason="the API runs without a gateway: no collector reports device health",
            ).model_dump(),
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    health = telemetry.device_health(device_id)
    if health is None:
        raise HTTPException(
            status_code=status.HTTP_404_NOT_FOUND, detail=f"unknown device {device_id!r}"
        )
    return health


class DeviceEventOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    ts: datetime = Field(description="When the collector saw the change (UTC)")
    kind: DeviceEventKind = Field(
        description="online, offline or torn_read (a multi-register value refused because "
        "its registers were not read at one moment)"
    )
    detail: str = Field(description="Why: the error that took the device offline, the link")


class DeviceEvents(BaseModel):
    model_config = ConfigDict(frozen=True)

    device: str
    events: list[DeviceEventOut] = Field(description="Newest first")


@router.get(
    "/{device_id}/events",
    response_model=DeviceEvents,
    summary="A device's online/offline changes and refused torn reads",
    responses={
        status.HTTP_404_NOT_FOUND: {"description": "No device with that id"},
        UNPROCESSABLE: {"description": "start or end not ISO 8601, or start >= end"},
    },
)
async def device_events_route(
    device_id: str,
    pool: PoolDep,
    start: Annotated[
        datetime | None, Query(description="ISO 8601, included. Naive means UTC.")
    ] = None,
    end: Annotated[
        datetime | None, Query(description="ISO 8601, excluded. Naive means UTC.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Most events returned")] = 100,
) -> DeviceEvents:
    """The device's newest events in ``[start, end)`` (newest first), as its collector
    reported them: each time it came online or went offline (with the error), and each
    value refused as a torn read. Kept in the database, so they outlive restarts."""
    since, until = as_utc(start), as_utc(end)
    if since is not None and until is not None and since >= until:
        raise unprocessable(f"start {since.isoformat()} is not before end {until.isoformat()}")
    async with pool.acquire() as conn:
        if not await queries.device_exists(conn, device_id):
            raise HTTPException(
                status_code=status.HTTP_404_NOT_FOUND, detail=f"unknown device {device_id!r}"
            )
        rows = await device_events(conn, device_id, since=since, until=until, limit=limit)
    return DeviceEvents(
        device=device_id,
        events=[
            DeviceEventOut(ts=r.ts, kind=DeviceEventKind(r.kind), detail=r.detail) for r in rows
        ],
    )
