"""How hourly rows roll up into days, months and years of the site's time zone.

Each column of a roll-up is an SQL aggregate over the hourly rows ``h`` of one period
(:class:`Aggregate`); :mod:`zerocarbon.api.schemas` builds the response models and
:mod:`zerocarbon.api.queries` the SQL from the same tuples, so a column and its rule
are written once. The rules:

- energy, mass and output columns (names ending ``_kwh``, ``_kg``, ``_units``, without
  ``_per_``) are the sums of the hourly rows;
- ratios are recomputed from the sums, never averaged: ``intensity_kg_per_kwh =
  Σ scope2_location_kg / Σ load_kwh``, ``kwh_per_unit = Σ energy_kwh / Σ
  production_units``, ...; null where the denominator's sum is not positive;
- factors are averages weighted by grid import, ``Σ (factor x grid_import_kwh) /
  Σ grid_import_kwh`` (so the location factor is ``Σ scope2_location_kg / Σ import``);
  null without import;
- ``estimated_share`` is weighted by the energy it is a share of: for the site, the
  hour's metered flows (grid import + export, PV, wind, battery charge + discharge and
  the top-level sub-meters), exact when sub-meters are not nested; for a line, its
  ``energy_kwh`` (exact);
- counts of devices per hour become device-hours (``missing_device_hours``), and
  ``complete`` becomes ``complete_hours`` next to ``hours``, the number of hourly rows.

A column added to a row type that is not such a sum (a ratio, a factor, a count) has no
rule yet: importing this module then fails and names it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date, timedelta
from enum import StrEnum
from typing import get_type_hints

from zerocarbon import rows


class Period(StrEnum):
    """A roll-up period, in the site's time zone."""

    daily = "daily"
    monthly = "monthly"
    yearly = "yearly"

    @property
    def sql_unit(self) -> str:
        """The ``date_trunc`` unit."""
        return {"daily": "day", "monthly": "month", "yearly": "year"}[self.value]

    @property
    def sql_interval(self) -> str:
        """The length of one period as an SQL interval literal."""
        return f"1 {self.sql_unit}"

    def ceil(self, day: date) -> date:
        """The first period start on or after ``day`` (a local date)."""
        if self is Period.daily:
            return day
        if self is Period.monthly:
            return day if day.day == 1 else self.shift(day.replace(day=1), 1)
        return day if (day.month, day.day) == (1, 1) else date(day.year + 1, 1, 1)

    def floor(self, day: date) -> date:
        """The start of the period that contains ``day``."""
        if self is Period.daily:
            return day
        if self is Period.monthly:
            return day.replace(day=1)
        return date(day.year, 1, 1)

    def shift(self, start: date, n: int) -> date:
        """The period start ``n`` periods after the period start ``start``."""
        if self is Period.daily:
            return start + timedelta(days=n)
        if self is Period.monthly:
            months = start.year * 12 + start.month - 1 + n
            return date(months // 12, months % 12 + 1, 1)
        return date(start.year + n, 1, 1)

    def periods_in(self, start: date, end: date) -> int:
        """How many periods start in ``[start, end)`` (local dates)."""
        lo, hi = self.ceil(start), self.ceil(end)
        if self is Period.daily:
            return (hi - lo).days
        if self is Period.monthly:
            return (hi.year - lo.year) * 12 + hi.month - lo.month
        return hi.year - lo.year


# periods returned when the request gives neither start nor end, and the most per request
DEFAULT_PERIODS: dict[Period, int] = {Period.daily: 31, Period.monthly: 12, Period.yearly: 10}
MAX_PERIODS: dict[Period, int] = {Period.daily: 366, Period.monthly: 120, Period.yearly: 30}


@dataclass(frozen=True, slots=True)
class Aggregate:
    """One column of a roll-up."""

    name: str
    sql: str  # aggregate expression over the hourly rows ``h`` of one period
    type: type  # Python type of the value (float, int)
    nullable: bool
    rule: str  # how it is computed, for the API documentation
    source: str | None = None  # the hourly column whose meaning it keeps


def total(column: str) -> Aggregate:
    return Aggregate(column, f"sum(h.{column})", float, False, "Sum of the hourly rows.", column)


def ratio(name: str, numerator: str, denominator: str) -> Aggregate:
    return Aggregate(
        name,
        f"CASE WHEN sum(h.{denominator}) > 0 THEN sum(h.{numerator}) / sum(h.{denominator}) END",
        float,
        True,
        f"Σ {numerator} / Σ {denominator} of the hourly rows; null where Σ {denominator} <= 0.",
        name,
    )


def weighted(column: str, weight_sql: str, weight: str) -> Aggregate:
    return Aggregate(
        column,
        f"CASE WHEN sum({weight_sql}) > 0 "
        f"THEN sum(h.{column} * ({weight_sql})) / sum({weight_sql}) END",
        float,
        True,
        f"Average of the hourly values weighted by {weight}; null where that sums to 0.",
        column,
    )


def count_hours(name: str, condition: str, meaning: str) -> Aggregate:
    return Aggregate(name, f"count(*) FILTER (WHERE {condition})", int, False, meaning)


def _summed(column: str) -> bool:
    """Energy, mass and output columns (``_kwh``, ``_kg``, ``_units``), not ratios
    (``_kg_per_kwh``, ``_per_unit``)."""
    return column.endswith(("_kwh", "_kg", "_units")) and "_per_" not in column


_IMPORT_WEIGHT = "h.grid_import_kwh"
_METERED_KWH = (
    "h.grid_import_kwh + h.grid_export_kwh + h.pv_kwh + h.wind_kwh"
    " + h.battery_charge_kwh + h.battery_discharge_kwh + h.submetered_kwh"
)
HOURS = Aggregate("hours", "count(*)", int, False, "Hourly rows in the period.")
COMPLETE_HOURS = count_hours(
    "complete_hours", "h.complete", "Hours whose site row (hourly_carbon) is complete."
)


def _device_hours(column: str, name: str) -> Aggregate:
    return Aggregate(
        name,
        f"sum(h.{column})",
        int,
        False,
        f"Σ {column} of the hourly rows (device-hours).",
        column,
    )


def _rollup(
    row_type: type, keys: tuple[str, ...], rules: dict[str, tuple[Aggregate, ...]]
) -> tuple[Aggregate, ...]:
    """Aggregates of ``row_type``'s columns in field order, then ``hours`` and
    ``complete_hours``: ``rules`` for the columns named there, sums for energy, mass
    and output columns; the ``keys`` are grouped on, not aggregated."""
    hints = get_type_hints(row_type)
    out: list[Aggregate] = []
    for f in fields(row_type):
        if f.name in keys:
            continue
        if f.name in rules:
            out.extend(rules[f.name])
        elif _summed(f.name) and hints[f.name] is float:
            out.append(total(f.name))
        else:
            raise TypeError(
                f"{row_type.__name__}.{f.name} has no roll-up rule: add one in {__name__}"
            )
    return (*out, HOURS, COMPLETE_HOURS)


CARBON_ROLLUP: tuple[Aggregate, ...] = _rollup(
    rows.HourlyCarbon,
    ("hour_start",),
    {
        "location_factor_kg_per_kwh": (
            weighted("location_factor_kg_per_kwh", _IMPORT_WEIGHT, "grid_import_kwh"),
        ),
        "market_factor_kg_per_kwh": (
            weighted("market_factor_kg_per_kwh", _IMPORT_WEIGHT, "grid_import_kwh"),
        ),
        "intensity_kg_per_kwh": (ratio("intensity_kg_per_kwh", "scope2_location_kg", "load_kwh"),),
        "market_intensity_kg_per_kwh": (
            ratio("market_intensity_kg_per_kwh", "scope2_market_kg", "load_kwh"),
        ),
        "cfe_share": (ratio("cfe_share", "cfe_kwh", "load_kwh"),),
        "estimated_share": (
            weighted(
                "estimated_share",
                _METERED_KWH,
                "the hour's metered energy (grid import + export, PV, wind, battery "
                "charge + discharge, top-level sub-meters [kWh])",
            ),
        ),
        "missing_devices": (_device_hours("missing_devices", "missing_device_hours"),),
        "submeter_mismatches": (_device_hours("submeter_mismatches", "submeter_mismatch_hours"),),
        "complete": (),  # complete_hours
    },
)

LINE_ROLLUP: tuple[Aggregate, ...] = _rollup(
    rows.HourlyLine,
    ("hour_start", "line"),
    {
        "kwh_per_unit": (ratio("kwh_per_unit", "energy_kwh", "production_units"),),
        "kg_per_unit": (ratio("kg_per_unit", "scope2_location_kg", "production_units"),),
        "estimated_share": (weighted("estimated_share", "h.energy_kwh", "energy_kwh"),),
    },
)
