"""The time ranges of requests: their defaults and their limits.

Hourly routes take ``start``/``end`` as instants (ISO 8601, naive means UTC) on
``hour_start``; roll-up routes take them as local dates of the site on the period's
start. Anything they cannot serve is a 422 whose message says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from fastapi import HTTPException

from zerocarbon.api.rollup import DEFAULT_PERIODS, MAX_PERIODS, Period

UNPROCESSABLE = 422  # named _ENTITY or _CONTENT depending on the Starlette version
HOUR = timedelta(hours=1)
DEFAULT_SPAN = timedelta(hours=24)  # hourly rows returned without start and end
MAX_SPAN = timedelta(days=31)  # most hourly rows per request
PERIOD_NAMES = {Period.daily: "days", Period.monthly: "months", Period.yearly: "years"}

# the 422 answers of the routes' OpenAPI descriptions
HOURLY_RANGE_ERRORS: dict[int | str, dict[str, Any]] = {
    UNPROCESSABLE: {
        "description": f"Not ISO 8601, start >= end, or a span over {MAX_SPAN.days} days"
    }
}
ROLLUP_RANGE_ERRORS: dict[int | str, dict[str, Any]] = {
    UNPROCESSABLE: {
        "description": "A period other than daily, monthly, yearly; a start or end that "
        "is not YYYY-MM-DD; start >= end; or more periods than "
        + ", ".join(f"{MAX_PERIODS[p]} for {p.value}" for p in Period)
    }
}


def as_utc(value: datetime | None) -> datetime | None:
    """``value`` as an aware UTC datetime; naive means UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def unprocessable(detail: str) -> HTTPException:
    return HTTPException(status_code=UNPROCESSABLE, detail=detail)


@dataclass(frozen=True, slots=True)
class HourRange:
    """``start``/``end`` of an hourly route (UTC, either may be missing)."""

    start: datetime | None
    end: datetime | None

    @property
    def open(self) -> bool:
        """Neither bound given: the range ends with the newest row."""
        return self.start is None and self.end is None

    def resolve(self, newest: datetime | None = None) -> tuple[datetime, datetime] | None:
        """``[start, end)`` to query, or None when there is nothing (no rows at all).

        Without both bounds, the 24 hours up to and including ``newest`` (the newest
        hour_start); with one, 24 hours from or before it. 422 when start >= end or the
        range is longer than :data:`MAX_SPAN`.
        """
        open_end = None if newest is None else newest + HOUR
        return resolve_span(self.start, self.end, open_end, default=DEFAULT_SPAN, longest=MAX_SPAN)


def resolve_span(
    start: datetime | None,
    end: datetime | None,
    open_end: datetime | None,
    *,
    default: timedelta,
    longest: timedelta,
    what: str = "",
) -> tuple[datetime, datetime] | None:
    """``[start, end)`` of a request: without both bounds, ``default`` up to
    ``open_end`` (None: nothing to show); with one, ``default`` from or before it. 422
    when start >= end or the range is longer than ``longest`` (``what``: of which rows,
    for the message)."""
    if start is None and end is None:
        if open_end is None:
            return None
        end = open_end
    if start is None:
        assert end is not None
        start = end - default
    if end is None:
        end = start + default
    if start >= end:
        raise unprocessable(f"start ({start.isoformat()}) must be before end ({end.isoformat()})")
    if end - start > longest:
        raise unprocessable(
            f"the range {start.isoformat()} .. {end.isoformat()} spans {end - start}; "
            f"at most {longest.days} days{what} per request"
        )
    return start, end


@dataclass(frozen=True, slots=True)
class PeriodRange:
    """``start``/``end`` of a roll-up route: local dates on the period's start."""

    start: date | None
    end: date | None

    @property
    def open(self) -> bool:
        return self.start is None and self.end is None

    def resolve(self, period: Period, newest: date | None = None) -> tuple[date, date] | None:
        """The first period start on or after ``start`` and the first on or after
        ``end``: the periods in between are those with ``start <= period_start < end``.

        Without both bounds, the :data:`DEFAULT_PERIODS` up to and including the period
        of ``newest`` (the local date of the newest hour); with one, as many from or
        before it. 422 when start >= end or for more than :data:`MAX_PERIODS`.
        """
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise unprocessable(
                f"start ({self.start.isoformat()}) must be before end ({self.end.isoformat()})"
            )
        default, most = DEFAULT_PERIODS[period], MAX_PERIODS[period]
        try:
            lo = None if self.start is None else period.ceil(self.start)
            hi = None if self.end is None else period.ceil(self.end)
            if lo is None and hi is None:
                if newest is None:
                    return None
                hi = period.shift(period.floor(newest), 1)
            if lo is None:
                assert hi is not None
                lo = period.shift(hi, -default)
            if hi is None:
                hi = period.shift(lo, default)
        except (ValueError, OverflowError):
            raise unprocessable(
                f"start/end out of the supported date range (year 1 .. 9999, "
                f"{default} {PERIOD_NAMES[period]} by default)"
            ) from None
        count = period.periods_in(lo, hi)
        if count > most:
            raise unprocessable(
                f"{lo.isoformat()} .. {hi.isoformat()} holds {count} {PERIOD_NAMES[period]}; "
                f"a {period.value} roll-up covers at most {most} {PERIOD_NAMES[period]} "
                "per request"
            )
        return lo, hi
