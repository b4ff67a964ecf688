"""``GET /api/v1/status``: the site, the data's "now" and device counts."""

from __future__ import annotations

from fastapi import APIRouter

from zerocarbon.api import queries
from zerocarbon.api.deps import LiveStreamsDep, PoolDep, SettingsDep
from zerocarbon.api.schemas import Status

router = APIRouter(prefix="/api/v1", tags=["status"])


@router.get("/status", response_model=Status, summary="Site status")
async def site_status(pool: PoolDep, settings: SettingsDep, streams: LiveStreamsDep) -> Status:
    async with pool.acquire() as conn:
        newest_ts = await queries.newest_reading_ts(conn)
        newest_hour = await queries.newest_hour_start(conn)
        counts = await queries.device_counts(conn)
    return Status(
        site_name=settings.site_name,
        site_timezone=settings.site_timezone,
        site_language=settings.site_language,
        newest_reading_ts=newest_ts,
        newest_hour_start=newest_hour,
        devices=counts,
        live_clients=streams.active,
    )
