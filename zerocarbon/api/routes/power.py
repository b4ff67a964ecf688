"""``/api/v1/devices/{device_id}/power``: a device's power (or another gauge metric) in
1-minute or 15-minute buckets, from the ``power_1min`` / ``power_15min`` views
(:mod:`zerocarbon.storage.rollups`). The views have the same columns on plain
PostgreSQL and on TimescaleDB, so this one query serves both."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field

from zerocarbon.api.deps import PoolDep
from zerocarbon.api.ranges import UNPROCESSABLE, as_utc, resolve_span, unprocessable
from zerocarbon.batch import datetime_to_us, us_to_datetime
from zerocarbon.metering.metrics import METRICS_BY_NAME, MetricKind
from zerocarbon.storage.rollups import VIEWS, Step

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])

DEFAULT_SPAN = timedelta(hours=24)  # returned without start and end
MAX_SPAN: dict[Step, timedelta] = {"1min": timedelta(days=7), "15min": timedelta(days=31)}
GAUGES = tuple(m.name for m in METRICS_BY_NAME.values() if m.kind is MetricKind.GAUGE)

POWER_ERRORS: dict[int | str, dict[str, Any]] = {
    status.HTTP_404_NOT_FOUND: {"description": "No device with that id"},
    UNPROCESSABLE: {
        "description": "A step other than 1min or 15min, a metric that is not a gauge, "
        "a start or end that is not ISO 8601, start >= end, or a span over "
        + " / ".join(f"{span.days} days for {step}" for step, span in MAX_SPAN.items())
    },
}


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class PowerPoint(_Model):
    bucket: datetime = Field(description="Start of the bucket (UTC)")
    avg: float = Field(description="Mean of the readings in the bucket, in the metric's unit")
    min: float
    max: float
    samples: int = Field(description="Readings in the bucket")


class PowerSeries(_Model):
    device: str
    metric: str
    unit: str
    step: Step
    start: datetime | None = Field(
        description="First bucket start included (UTC); null: no reading of the metric yet"
    )
    end: datetime | None = Field(description="First bucket start excluded (UTC)")
    points: list[PowerPoint] = Field(description="Buckets with readings, oldest first")


_SELECT = """SELECT bucket, avg_value, min_value, max_value, samples FROM {table}
WHERE device_id = $1 AND metric_id = $2 AND bucket >= $3 AND bucket < $4
ORDER BY bucket"""


def _range(
    start: datetime | None, end: datetime | None, newest: datetime | None, step: Step
) -> tuple[datetime, datetime] | None:
    """``[start, end)``: without both, the 24 hours up to the end of the newest reading's
    bucket; with one, 24 hours from or before it. None when there is nothing to show."""
    open_end = None
    if newest is not None:  # the end of the newest reading's bucket
        view = VIEWS[step]
        open_end = us_to_datetime(view.floor_us(datetime_to_us(newest)) + view.width_us)
    return resolve_span(
        start,
        end,
        open_end,
        default=DEFAULT_SPAN,
        longest=MAX_SPAN[step],
        what=f" of {step} buckets",
    )


@router.get(
    "/{device_id}/power",
    response_model=PowerSeries,
    summary="Power of a device in 1-minute or 15-minute buckets",
    responses=POWER_ERRORS,
)
async def device_power(
    device_id: str,
    pool: PoolDep,
    step: Annotated[Step, Query(description="Bucket width: 1min or 15min")] = "1min",
    start: Annotated[
        datetime | None, Query(description="ISO 8601; first bucket included. Naive means UTC.")
    ] = None,
    end: Annotated[
        datetime | None, Query(description="ISO 8601; first bucket excluded. Naive means UTC.")
    ] = None,
    metric: Annotated[
        str, Query(description="A gauge metric: " + ", ".join(GAUGES))
    ] = "active_power_kw",
) -> PowerSeries:
    """Mean, minimum and maximum of the device's readings of ``metric`` per bucket, with
    ``start <= bucket < end`` (buckets aligned on UTC). Without ``start`` and ``end``,
    the 24 hours up to the end of the bucket of the device's newest reading of the
    metric; with one of them, 24 hours from or before it. At most 7 days of 1-minute or
    31 days of 15-minute buckets per request. Buckets without readings are left out."""
    if metric not in GAUGES:
        raise unprocessable(f"metric {metric!r} is not a gauge; gauges: {', '.join(GAUGES)}")
    m = METRICS_BY_NAME[metric]
    async with pool.acquire() as conn:
        device = await conn.fetchval("SELECT id FROM devices WHERE key = $1", device_id)
        if device is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown device {device_id!r}")
        newest = None
        if start is None and end is None:
            newest = await conn.fetchval(
                "SELECT ts FROM latest_values WHERE device_id = $1 AND metric_id = $2",
                device,
                m.id,
            )
        span = _range(as_utc(start), as_utc(end), newest, step)
        if span is None:
            return PowerSeries(
                device=device_id,
                metric=metric,
                unit=m.unit,
                step=step,
                start=None,
                end=None,
                points=[],
            )
        rows = await conn.fetch(_SELECT.format(table=VIEWS[step].table), device, m.id, *span)
    return PowerSeries(
        device=device_id,
        metric=metric,
        unit=m.unit,
        step=step,
        start=span[0],
        end=span[1],
        points=[
            PowerPoint(
                bucket=r["bucket"],
                avg=r["avg_value"],
                min=r["min_value"],
                max=r["max_value"],
                samples=r["samples"],
            )
            for r in rows
        ],
    )
