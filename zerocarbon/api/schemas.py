"""Response models of the HTTP API and of the live event stream.

Timestamps are timezone-aware UTC and serialise as ISO 8601 (``...Z``). Units are in
the field names (``_kw``, ``_kwh``, ``_kg``). The hourly rows' models are derived from
the row types of :mod:`zerocarbon.rows` (:func:`row_model`) and the roll-ups' from
:mod:`zerocarbon.api.rollup` (:func:`rollup_model`): a column is declared once.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import fields
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Literal, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, create_model

from zerocarbon import rows
from zerocarbon.api.rollup import CARBON_ROLLUP, LINE_ROLLUP, Aggregate


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class Health(_Model):
    status: Literal["ok", "error"]
    database: Literal["ok", "unavailable"]


class Device(_Model):
    id: str = Field(description="The device id of the site file")
    name: str
    role: str = Field(description="grid | pv | battery | load | production")
    protocol: str = Field(description="modbus_tcp | modbus_rtu | mqtt | dlt645")
    line: str | None = Field(description="Production line the device belongs to")
    rated_power_kw: float | None


class LatestValue(_Model):
    metric: str
    unit: str
    ts: datetime
    value: float
    quality: int = Field(description="0 good, 1 estimated, 2 suspect")


class DeviceLatest(_Model):
    device: str
    values: list[LatestValue]


class HourlyRow(_Model):
    """What every hourly row of the API has; :func:`row_model` adds a row type's columns."""

    hour_start: datetime = Field(description="Start of the hour (UTC)")
    computed_at: datetime = Field(description="When the row was last (re)computed")


class Rollup(_Model):
    """What every roll-up row has; :func:`rollup_model` adds its aggregates."""

    period_start: date = Field(description="First day of the period in the site's time zone")
    start_utc: datetime = Field(description="Start of the period (UTC)")
    end_utc: datetime = Field(description="End of the period (UTC), exclusive")


_FIELD_COMMENT = re.compile(r"^\s+(?P<name>\w+)\s*:[^#]*#\s*(?P<comment>.+?)\s*$")


def column_comments(row_type: type) -> dict[str, str]:
    """The trailing comment of each field of a row type (what the column means).

    The row types of :mod:`zerocarbon.rows` document their columns in comments; the
    API shows them as field descriptions. Empty when the source is not available.
    """
    try:
        source = inspect.getsource(row_type)
    except (OSError, TypeError):
        return {}
    names = {f.name for f in fields(row_type)}
    out: dict[str, str] = {}
    for line in source.splitlines():
        m = _FIELD_COMMENT.match(line)
        if m and m["name"] in names:
            out[m["name"]] = m["comment"]
    return out


def row_model(row_type: type, **extra: Any) -> type[HourlyRow]:
    """The response model of a row type of :mod:`zerocarbon.rows`: its fields, in order,
    with their comments as descriptions, plus ``computed_at`` and ``extra`` fields
    (``name=(type, Field(...))``)."""
    hints = get_type_hints(row_type)
    comments = column_comments(row_type)
    definitions: dict[str, Any] = {
        f.name: (hints[f.name], Field(description=comments.get(f.name)))
        for f in fields(row_type)
        if f.name not in HourlyRow.model_fields
    }
    definitions.update(extra)
    return create_model(
        row_type.__name__,
        __base__=HourlyRow,
        __module__=__name__,
        __doc__=row_type.__doc__,
        **definitions,
    )


def rollup_model(
    name: str, doc: str, row_type: type, aggregates: tuple[Aggregate, ...], **keys: Any
) -> type[Rollup]:
    """The response model of a roll-up of ``row_type``: the period, the ``keys``
    (``name=(type, Field(...))``) and one field per aggregate, described by its rule
    and the hourly column's meaning."""
    comments = column_comments(row_type)
    definitions: dict[str, Any] = dict(keys)
    for a in aggregates:
        meaning = comments.get(a.source or "")
        description = a.rule if meaning is None else f"{a.rule} Hourly: {meaning}."
        value_type: Any = a.type | None if a.nullable else a.type
        definitions[a.name] = (value_type, Field(description=description))
    return create_model(name, __base__=Rollup, __module__=__name__, __doc__=doc, **definitions)


_ROLLUP_DOC = (
    "One {what} in one day, month or year of the site's time zone: sums of the hourly "
    "rows, ratios recomputed from the sums (see each field)."
)

if TYPE_CHECKING:  # the columns are added at run time; the type checker sees the base
    HourlyCarbon = HourlyRow
    HourlyEnergy = HourlyRow
    HourlyLine = HourlyRow
    CarbonRollup = Rollup
    LineRollup = Rollup
else:
    HourlyCarbon = row_model(rows.HourlyCarbon)
    HourlyEnergy = row_model(
        rows.HourlyEnergy,
        unit=(str, Field(description="Unit of delta and estimated (the metric's unit)")),
    )
    HourlyLine = row_model(rows.HourlyLine)
    CarbonRollup = rollup_model(
        "CarbonRollup", _ROLLUP_DOC.format(what="site balance"), rows.HourlyCarbon, CARBON_ROLLUP
    )
    LineRollup = rollup_model(
        "LineRollup",
        _ROLLUP_DOC.format(what="production line"),
        rows.HourlyLine,
        LINE_ROLLUP,
        line=(str, Field(description="Production line id")),
    )

HOURLY_COLUMNS: tuple[str, ...] = tuple(HourlyCarbon.model_fields)


class Line(_Model):
    id: str = Field(description="The line id (devices' ``line`` in the site file)")
    devices: list[str] = Field(description="Ids of its devices: sub-meters, output counters")


class DeviceCounts(_Model):
    total: int
    reporting: int = Field(description="Devices with at least one latest value")
    by_role: dict[str, int]


class Status(_Model):
    site_name: str
    site_timezone: str
    newest_reading_ts: datetime | None = Field(
        description="Timestamp of the newest reading: the data's 'now'"
    )
    newest_hour_start: datetime | None = Field(description="Newest hour in hourly_carbon")
    devices: DeviceCounts
    live_clients: int = Field(description="Open /api/v1/live streams")


# --- the live stream (GET /api/v1/live, Server-Sent Events) --------------------------


class LiveValue(_Model):
    value: float
    ts: datetime


LatestByDevice = dict[str, dict[str, LiveValue]]  # device id -> metric name -> value


class LiveSnapshot(_Model):
    """``event: snapshot``: everything the page needs, sent on connect and when the
    site's day changes."""

    site_name: str
    site_timezone: str
    now: datetime | None = Field(description="Newest reading ts: the data's 'now'")
    day_start: datetime = Field(description="Start of the site's local day of 'now' (UTC)")
    day_end: datetime = Field(description="End of that day (UTC), exclusive")
    latest: LatestByDevice
    hourly: list[HourlyCarbon] = Field(description="hourly_carbon rows of that day, oldest first")


class LiveReadings(_Model):
    """``event: readings``: the latest values whose ts changed since the last event."""

    now: datetime | None
    latest: LatestByDevice


class LiveHourly(_Model):
    """``event: hourly``: hourly_carbon rows (re)computed since the last event."""

    rows: list[HourlyCarbon]
