"""The hourly result rows, defined once.

Each row type is a frozen dataclass; its fields, in order, are the columns of the
table of the same name. Storage derives its DDL and upserts from them
(:func:`sql_columns`), the API its response models, so a column is added in one
place. Units are in the names; ``hour_start`` is the aware UTC start of the hour.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Union, get_args, get_origin, get_type_hints

__all__ = [
    "HourlyCarbon",
    "HourlyEnergy",
    "HourlyLine",
    "ROW_TABLES",
    "sql_columns",
]


@dataclass(frozen=True, slots=True)
class HourlyEnergy:
    """One energy channel of one device in one hour (table ``hourly_energy``).

    A channel is a (device, counter metric): a counter's increase, or the energy
    integrated from a power-only device's samples under the counter's name.
    """

    hour_start: datetime
    device: str  # device id of the site file
    metric: str  # counter metric name (zerocarbon.metering.metrics)
    delta: float  # increase in the metric's unit (kWh, units, Nm3, ...)
    estimated: float  # part of delta that is estimated (gaps, meter swaps)
    resets: int  # counter resets (device cleared its counter)
    rollovers: int  # register rollovers
    backsteps: int  # small backward steps ignored
    replacements: int  # meter replacements
    rejected: int  # readings rejected as implausible (beyond rated power)
    gaps: int  # intervals longer than the device's gap threshold
    late: int  # readings that arrived after newer ones (hours recomputed)
    duplicates: int  # readings received twice
    complete: bool  # the device reported past the end of the hour


@dataclass(frozen=True, slots=True)
class HourlyCarbon:
    """The site's energy balance and emissions of one hour (table ``hourly_carbon``)."""

    hour_start: datetime
    grid_import_kwh: float
    grid_export_kwh: float
    pv_kwh: float
    wind_kwh: float
    battery_charge_kwh: float
    battery_discharge_kwh: float
    load_kwh: float  # import - export + pv + wind + discharge - charge
    submetered_kwh: float  # sum of the top-level load sub-meters
    unmetered_kwh: float  # load - submetered (negative: sub-meters exceed the balance)
    production_units: float
    scope1_kg: float  # fuel combustion, GB/T 32150
    scope2_location_kg: float  # import x location factor
    scope2_market_kg: float  # (import - contracts - certificates) x residual factor
    green_contract_kwh: float  # green-power contract volume allocated to the hour
    certificate_kwh: float  # green certificates (GEC) retired against the hour
    cfe_kwh: float  # carbon-free energy consumed in the hour (hourly matched)
    location_factor_kg_per_kwh: float
    market_factor_kg_per_kwh: float
    intensity_kg_per_kwh: float | None  # location-based kg per kWh of load
    market_intensity_kg_per_kwh: float | None  # market-based kg per kWh of load
    cfe_share: float | None  # cfe_kwh / load_kwh, 0..1
    estimated_share: float  # estimated part of the hour's metered energy, 0..1
    missing_devices: int  # devices with energy channels that have not covered the hour
    submeter_mismatches: int  # main meters whose sub-meters differ beyond tolerance
    complete: bool  # every device covered the hour


@dataclass(frozen=True, slots=True)
class HourlyLine:
    """One production line in one hour (table ``hourly_line``)."""

    hour_start: datetime
    line: str
    energy_kwh: float  # sum of the line's sub-meters
    production_units: float  # sum of the line's output counters
    kwh_per_unit: float | None  # EnPI; None without output
    scope2_location_kg: float  # the site's hour allocated by the line's share of load
    scope2_market_kg: float
    kg_per_unit: float | None  # (its fuels' Scope 1 + location-based Scope 2) per unit
    estimated_share: float


ROW_TABLES: dict[str, type] = {
    "hourly_energy": HourlyEnergy,
    "hourly_carbon": HourlyCarbon,
    "hourly_line": HourlyLine,
}

_SQL_TYPES: dict[Any, str] = {
    float: "double precision",
    int: "integer",
    bool: "boolean",
    str: "text",
    datetime: "timestamptz",
}


def sql_columns(row_type: type) -> list[tuple[str, str, bool]]:
    """(column, SQL type, nullable) of a row type, in field order."""
    hints = get_type_hints(row_type)
    out: list[tuple[str, str, bool]] = []
    for f in fields(row_type):
        hint = hints[f.name]
        nullable = False
        if get_origin(hint) in (Union, types.UnionType):
            args = [a for a in get_args(hint) if a is not type(None)]
            nullable = len(args) < len(get_args(hint))
            hint = args[0]
        out.append((f.name, _SQL_TYPES[hint], nullable))
    return out
