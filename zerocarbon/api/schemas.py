"""Response models of the HTTP API and of the live event stream.

Timestamps are timezone-aware UTC and serialise as ISO 8601 (``...Z``). Units are in
the field names (``_kw``, ``_kwh``, ``_kg``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class Health(_Model):
    status: Literal["ok", "error"]
    database: Literal["ok", "unavailable"]


class Device(_Model):
    id: str = Field(description="The device id of the site file")
    name: str
    role: str = Field(description="grid | pv | battery | load | production")
    protocol: str = Field(description="modbus_tcp | mqtt")
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


class HourlyCarbon(_Model):
    """One row of ``hourly_carbon``: the site's energy balance and Scope 2 of one hour."""

    hour_start: datetime = Field(description="Start of the UTC hour")
    grid_import_kwh: float
    grid_export_kwh: float
    pv_kwh: float
    battery_charge_kwh: float
    battery_discharge_kwh: float
    load_kwh: float
    production_units: float
    scope2_location_kg: float
    scope2_market_kg: float
    location_factor_kg_per_kwh: float
    market_factor_kg_per_kwh: float
    intensity_kg_per_kwh: float | None = Field(
        description="Location-based kg CO2 per kWh consumed; null when nothing was consumed"
    )
    cfe_share: float | None = Field(description="On-site carbon-free share of load, 0..1")
    computed_at: datetime = Field(description="When the row was last (re)computed")


HOURLY_COLUMNS: tuple[str, ...] = tuple(HourlyCarbon.model_fields)


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
