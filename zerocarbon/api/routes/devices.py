"""``/api/v1/devices``: the site's devices and their latest values."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from zerocarbon.api import queries
from zerocarbon.api.deps import PoolDep
from zerocarbon.api.schemas import Device, DeviceLatest

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
