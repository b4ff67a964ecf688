"""``GET /api/v1/live``: latest values, hourly results and alert changes as Server-Sent
Events."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import StreamingResponse

from zerocarbon.api.deps import LiveStreamsDep, PoolDep, SettingsDep, SiteTimezoneDep
from zerocarbon.api.live import DB_ERRORS, LiveSession, live_events

router = APIRouter(prefix="/api/v1", tags=["live"])

_DESCRIPTION = """\
A `text/event-stream`. First `event: snapshot` (data: LiveSnapshot: latest values per
device and metric, the hourly rows of the site's current day, whose "now" is the newest
reading), then `event: readings` (LiveReadings: values whose ts changed), `event: hourly`
(LiveHourly: rows recomputed), `event: alert` (LiveAlerts: alert changes recorded
since the last poll, each with its alert as it is then) as they happen, a new `snapshot`
when the data's day changes, and `: keepalive` comments during silence. The snapshot's
`alerts` are the alerts firing now.
"""


@router.get(
    "/live",
    summary="Live event stream (Server-Sent Events)",
    response_class=StreamingResponse,
    description=_DESCRIPTION,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "The event stream"},
        503: {"description": "Database unavailable or server shutting down"},
    },
)
async def live(
    pool: PoolDep, settings: SettingsDep, tz: SiteTimezoneDep, streams: LiveStreamsDep
) -> StreamingResponse:
    if streams.stopping:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the server is shutting down")
    session = LiveSession(settings.site_name, tz)
    try:
        async with pool.acquire() as conn:
            first = await session.snapshot(conn)
    except DB_ERRORS as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"database unavailable: {exc}"
        ) from exc
    return StreamingResponse(
        live_events(session, first, pool, streams, interval_s=settings.live_interval_s),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
