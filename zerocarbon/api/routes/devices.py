"""``/api/v1/devices``: the site's devices, their latest values and their health."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from zerocarbon.api import queries
from zerocarbon.api.deps import PoolDep
from zerocarbon.api.schemas import Device, DeviceLatest
from zerocarbon.api.telemetry import DeviceHealth, Telemetry

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
