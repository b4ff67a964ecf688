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
from zerocarbon.storage import alerts


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
    name: str = Field("", description="Its ``[[lines]]`` name; empty when not given")
    product: str = Field("", description="What one unit of its output is")
    unit: str = Field("units", description="The unit of its output (pcs, t, ...)")


class DeviceCounts(_Model):
    total: int
    reporting: int = Field(description="Devices with at least one latest value")
    by_role: dict[str, int]


class Status(_Model):
    site_name: str
    site_timezone: str
    site_language: Literal["zh-CN", "en"] = Field(
        description="The live page's default language (the site file's [site] language)"
    )
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
    alerts: list[AlertSummary] = Field(
        default_factory=list, description="The alerts firing now, the newest fired first"
    )


class LiveReadings(_Model):
    """``event: readings``: the latest values whose ts changed since the last event."""

    now: datetime | None
    latest: LatestByDevice


class LiveHourly(_Model):
    """``event: hourly``: hourly_carbon rows (re)computed since the last event."""

    rows: list[HourlyCarbon]


# --- alerts (GET /api/v1/alerts, event: alert of the live stream) ---------------------


class AlertMessages(_Model):
    en: str = Field(description="The message in English")
    zh: str = Field(description="The message in Chinese")


class AlertEventOut(_Model):
    """One change of an alert episode (its history)."""

    id: int
    state: Literal["firing", "resolved", "acknowledged"]
    ts: datetime = Field(
        description="Time of the change, by the data's clock (UTC); of an acknowledgement, "
        "when it was given"
    )
    messages: AlertMessages
    evidence: dict[str, Any] = Field(
        description="The facts behind the change (values, limit, rule parameters); "
        "of an acknowledgement, its comment"
    )
    actor: str | None = Field(description="Token name of who acknowledged; null otherwise")

    @classmethod
    def of(cls, e: alerts.AlertEvent) -> AlertEventOut:
        return cls(
            id=e.id,
            state=e.state,
            ts=e.ts,
            messages=AlertMessages(en=e.message_en, zh=e.message_zh),
            evidence=e.evidence,
            actor=e.actor,
        )


class AlertSummary(_Model):
    """One episode of an alert (rule + subject + episode), as it is now."""

    id: int
    rule: str = Field(description="Rule name of the site file's [[alerts.rules]]")
    kind: str = Field(description="offline | threshold | demand | data_quality | drift")
    subject: str = Field(description="What the rule watches: a device, a line, the site")
    episode: int = Field(description="1 for the rule's first firing on the subject, then up")
    severity: Literal["info", "warning", "critical"]
    state: Literal["firing", "resolved"]
    since: datetime = Field(description="When the condition began to hold (UTC)")
    fired_at: datetime
    resolved_at: datetime | None
    messages: AlertMessages = Field(description="Of the latest change")
    evidence: dict[str, Any] = Field(description="Of the latest change")
    acked: bool = Field(description="Acknowledged by someone")
    acked_at: datetime | None
    acked_by: str | None = Field(description="Token name of who acknowledged")
    ack_comment: str | None

    @classmethod
    def fields_of(cls, a: alerts.StoredAlert) -> dict[str, Any]:
        return {
            "id": a.id,
            "rule": a.rule,
            "kind": a.kind,
            "subject": a.subject,
            "episode": a.episode,
            "severity": a.severity,
            "state": a.state,
            "since": a.since,
            "fired_at": a.fired_at,
            "resolved_at": a.resolved_at,
            "messages": AlertMessages(en=a.message_en, zh=a.message_zh),
            "evidence": a.evidence,
            "acked": a.acked,
            "acked_at": a.acked_at,
            "acked_by": a.acked_by,
            "ack_comment": a.ack_comment,
        }

    @classmethod
    def of(cls, a: alerts.StoredAlert) -> AlertSummary:
        return cls(**cls.fields_of(a))


class Alert(AlertSummary):
    """An episode with its history."""

    events: list[AlertEventOut] = Field(description="Its changes, in the order recorded")

    @classmethod
    def of(cls, a: alerts.StoredAlert) -> Alert:
        return cls(**cls.fields_of(a), events=[AlertEventOut.of(e) for e in a.events])


class LiveAlertEvent(_Model):
    event: AlertEventOut = Field(description="The change")
    alert: AlertSummary = Field(description="Its alert as it is now")


class LiveAlerts(_Model):
    """``event: alert``: the alert changes recorded since the last event, oldest first."""

    events: list[LiveAlertEvent]
