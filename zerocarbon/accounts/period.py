"""Period accounts of a site by GB/T 32150-2015: pure computation, no database.

A period (a month ``2026-03``, a quarter ``2026-Q1`` or a year ``2026``, in the site's
time zone) and the stored hourly rows in it give the account: each emission source with
its activity data, the factor used with its source and revision, its emissions and the
quality of its data; then the total

    E = E_combustion + E_process + E_purchased_electricity + E_purchased_heat
        - E_exported_electricity - E_exported_heat

GB/T 32150-2015 clause 6 (formula (1); CO2 recovered for use, E_recovered, is not
modelled here). Scope 2 is location-based (grid import x the MEE grid factor); the
market-based figure (grid import not covered by green-power contracts and certificates,
hour by hour, x the residual-mix factor; GHG Protocol Scope 2 Guidance ch. 6) is given
alongside, without the export deduction, which the GHG Protocol does not make.

Factors carry a *revision*: the grid factor table's ``Version:`` plus the row's data
year (``2026-01/2023``); a fuel's, the fuel table's version or ``site file``. MEE
publishes a year's grid factor years later, so an account issued with a provisional
factor is recomputed when the table is revised, and :func:`compare_accounts` lists what
changed between an issued account and the current one, and why.

Emissions are kept in kg (float64, summed with :func:`math.fsum`: exact to well below a
gram for any plant) and reported in t.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from zerocarbon.carbon_engine.factors import (
    FACTORS_CSV,
    NATIONAL,
    RESIDUAL_SCOPE,
    FactorError,
    _province_key,
    _region_key,
)
from zerocarbon.carbon_engine.fuels import (
    FUEL_FACTORS_CSV,
    FUEL_METRICS,
    _device_metrics,
    fuel_factor,
    fuel_parameters,
)
from zerocarbon.config import DeviceRole, SiteConfig
from zerocarbon.config_accounts import DEFAULT_HEAT_FACTOR_T_PER_GJ
from zerocarbon.metering.metrics import metric
from zerocarbon.rows import HourlyCarbon, HourlyEnergy, HourlyLine

__all__ = [
    "Account",
    "AccountsError",
    "Change",
    "DataQuality",
    "FactorRow",
    "FactorTable",
    "FactorUsed",
    "Period",
    "SourceAccount",
    "compare_accounts",
    "compute_account",
    "load_factor_table",
    "parse_period",
    "shipped_factor_table",
    "site_factor_table",
]

HOUR_S = 3600
_VERSION = re.compile(r"Version:\s*([^\s(]*[^\s(.,;:])")
_PERIOD = re.compile(r"^(\d{4})(?:-(0[1-9]|1[0-2])|-Q([1-4]))?$")
# an activity or emission difference smaller than this is no change (float noise)
_REL_TOL = 1e-9


class AccountsError(ValueError):
    """A period or factor table cannot be used; the message names it."""


# --- periods ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Period:
    """A calendar period in the site's time zone; ``start``/``end`` are aware UTC."""

    label: str  # "2026-03", "2026-Q1" or "2026"
    kind: str  # "month", "quarter" or "year"
    start: datetime  # first instant, UTC
    end: datetime  # first instant after, UTC
    months: int  # calendar months in the period (for figures declared per month)
    year: int

    @property
    def hours(self) -> int:
        """Hours in the period [h] (one hour more or less across a DST change)."""
        return int((self.end - self.start).total_seconds()) // HOUR_S


def parse_period(text: str, timezone: str | ZoneInfo) -> Period:
    """``2026-03`` (month), ``2026-Q1`` (quarter) or ``2026`` (year) in a time zone.

    Raises
    ------
    AccountsError
        The text is none of these.
    """
    m = _PERIOD.match(text.strip())
    if m is None:
        raise AccountsError(
            f"period {text!r}: expected a month (2026-03), a quarter (2026-Q1) or a year (2026)"
        )
    zone = ZoneInfo(timezone) if isinstance(timezone, str) else timezone
    year = int(m.group(1))
    if m.group(2) is not None:
        first, months, kind = int(m.group(2)), 1, "month"
    elif m.group(3) is not None:
        first, months, kind = 3 * (int(m.group(3)) - 1) + 1, 3, "quarter"
    else:
        first, months, kind = 1, 12, "year"
    last = first + months  # month after the period, 13 = January of the next year
    start = datetime(year, first, 1, tzinfo=zone)
    end = datetime(year + (last - 1) // 12, (last - 1) % 12 + 1, 1, tzinfo=zone)
    return Period(text.strip(), kind, start.astimezone(UTC), end.astimezone(UTC), months, year)


# --- factor tables with revisions ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FactorRow:
    """One grid factor of a table [kg CO2/kWh] and its revision."""

    data_year: int
    scope: str
    region: str
    value: float  # [kg CO2/kWh]
    source: str  # e.g. MEE-2023
    revision: str  # "<table version>/<data year>"


@dataclass(frozen=True)
class FactorTable:
    """A grid factor table (the shipped CSV or an override in the same format)."""

    version: str
    path: str
    rows: Mapping[tuple[int, str, str], FactorRow]

    def get(self, data_year: int, scope: str, region: str) -> FactorRow | None:
        return self.rows.get((data_year, scope, region))

    def years_with(self, scope: str, region: str) -> list[int]:
        return sorted(y for (y, s, r) in self.rows if (s, r) == (scope, region))


def _file_version(path: Path) -> str:
    with path.open(encoding="utf-8") as f:
        for line in f:
            if not line.startswith("#"):
                break
            found = _VERSION.search(line)
            if found is not None:
                return found.group(1)
    raise AccountsError(f"{path}: no 'Version:' line in the comment header")


def load_factor_table(path: str | Path) -> FactorTable:
    """Read a grid factor CSV (``data_year,scope,region,factor_kg_per_kwh,source`` after a
    ``#`` comment header holding ``Version: <id>``).

    Raises
    ------
    AccountsError
        The file has no version or a row cannot be read; names the file and the line.
    """
    p = Path(path)
    version = _file_version(p)
    rows: dict[tuple[int, str, str], FactorRow] = {}
    with p.open(encoding="utf-8") as f:
        lines = (line for line in f if not line.startswith("#"))
        for n, row in enumerate(csv.DictReader(lines), start=2):
            try:
                year = int(row["data_year"])
                value = float(row["factor_kg_per_kwh"])
                key = (year, row["scope"].strip(), row["region"].strip())
                source = row["source"].strip()
            except (KeyError, TypeError, ValueError) as exc:
                raise AccountsError(f"{p}: data row {n - 1}: {exc}") from None
            rows[key] = FactorRow(*key, value, source, f"{version}/{year}")
    return FactorTable(version, str(p), rows)


@cache
def shipped_factor_table() -> FactorTable:
    """The grid factor table shipped with the package."""
    return load_factor_table(FACTORS_CSV)


def site_factor_table(site: SiteConfig) -> FactorTable:
    """The grid factor table of a site: ``[accounts] factors_csv`` if set, else the
    shipped one."""
    if site.accounts.factors_csv is None:
        return shipped_factor_table()
    try:
        return load_factor_table(site.resolve_path(site.accounts.factors_csv))
    except OSError as exc:
        raise AccountsError(f"accounts.factors_csv: {exc}") from None


@cache
def _fuel_table_version() -> str:
    return _file_version(FUEL_FACTORS_CSV)


# --- the account -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FactorUsed:
    """An emission factor as applied, with where it came from."""

    key: str  # what it is the factor of: "grid.location", "fuel.natural_gas", ...
    value: float  # in ``unit``
    unit: str  # "kg CO2/kWh", "kg CO2/Nm3", "kg CO2/GJ", "kg CO2/unit", "kg CO2/month"
    source: str
    revision: str
    provisional: bool = False  # a data year before the period's (MEE has not published)


@dataclass(frozen=True, slots=True)
class DataQuality:
    """Where a source's activity data comes from and how much of it was estimated."""

    basis: str  # "measured" (meters) or "declared" (the site file)
    devices: tuple[str, ...] = ()
    metered: float = 0.0  # activity from the meters' channels, in the source's unit
    estimated: float = 0.0  # of which estimated (gaps, meter swaps)
    measured_share: float | None = None  # 1 - estimated/metered; None without activity
    hours_expected: int = 0
    hours_reported: int = 0  # hours with a row of each channel, summed over channels / n
    hours_incomplete: int = 0  # channel-hours the device had not covered
    gaps: int = 0
    resets: int = 0
    rollovers: int = 0
    replacements: int = 0
    rejected: int = 0
    backsteps: int = 0


@dataclass(frozen=True, slots=True)
class SourceAccount:
    """One emission source of the period.

    ``sign`` is -1 for exported electricity and heat (deducted), else +1.
    """

    id: str
    category: str  # combustion | process | purchased_electricity | purchased_heat |
    #               exported_electricity | exported_heat
    description: str
    activity: float  # in activity_unit
    activity_unit: str  # kWh, Nm3, kg, l, GJ, units, months
    factor: FactorUsed
    emissions_kg: float  # activity x factor [kg CO2], positive
    sign: int
    quality: DataQuality

    @property
    def emissions_t(self) -> float:
        return self.emissions_kg / 1000.0


@dataclass(frozen=True)
class Account:
    """The account of one period (GB/T 32150-2015 clause 6 formula (1))."""

    site: str
    organisation: str
    credit_code: str | None
    boundary: str
    sector: str | None
    sector_guide: str | None
    sector_process_sources: tuple[str, ...]
    period: str
    start: datetime
    end: datetime
    base_year: int | None
    sources: tuple[SourceAccount, ...]
    energy: Mapping[str, float]  # the period's balance [kWh]: import, export, pv, load...
    scope2_market_kg: float  # market-based Scope 2 of electricity (+ heat, as location)
    market_factor: FactorUsed  # the residual-mix factor of market-based Scope 2
    hours_expected: int
    hours_with_results: int
    hours_incomplete: int
    factor_table: str  # version of the grid factor table used
    notes: tuple[str, ...] = field(default=())

    def total_kg(self, category: str) -> float:
        return math.fsum(s.emissions_kg for s in self.sources if s.category == category)

    @property
    def scope1_kg(self) -> float:
        """Combustion + process [kg CO2]."""
        return self.total_kg("combustion") + self.total_kg("process")

    @property
    def scope2_location_kg(self) -> float:
        """Purchased electricity and heat, gross [kg CO2]."""
        return self.total_kg("purchased_electricity") + self.total_kg("purchased_heat")

    @property
    def exported_kg(self) -> float:
        return self.total_kg("exported_electricity") + self.total_kg("exported_heat")

    @property
    def total_location_kg(self) -> float:
        """E of GB/T 32150 formula (1) [kg CO2]: sources minus exports."""
        return math.fsum(s.sign * s.emissions_kg for s in self.sources)

    @property
    def total_market_kg(self) -> float:
        """Scope 1 + market-based Scope 2 [kg CO2] (exported heat deducted, not
        exported electricity)."""
        return self.scope1_kg + self.scope2_market_kg - self.total_kg("exported_heat")

    def factor_revisions(self) -> dict[str, dict[str, Any]]:
        """Every factor used: key -> value, unit, source, revision (for the issued report)."""
        used = {s.factor.key: asdict(s.factor) for s in self.sources}
        return used | {self.market_factor.key: asdict(self.market_factor)}

    def to_json(self) -> dict[str, Any]:
        """The account as JSON-ready data: sources, totals in kg and t."""
        sources = []
        for s in self.sources:
            d = asdict(s)
            d["emissions_t"] = s.emissions_t
            sources.append(d)
        totals = {
            "combustion_kg": self.total_kg("combustion"),
            "process_kg": self.total_kg("process"),
            "purchased_electricity_kg": self.total_kg("purchased_electricity"),
            "purchased_heat_kg": self.total_kg("purchased_heat"),
            "exported_electricity_kg": self.total_kg("exported_electricity"),
            "exported_heat_kg": self.total_kg("exported_heat"),
            "scope1_kg": self.scope1_kg,
            "scope2_location_kg": self.scope2_location_kg,
            "scope2_market_kg": self.scope2_market_kg,
            "total_location_kg": self.total_location_kg,
            "total_market_kg": self.total_market_kg,
        }
        totals |= {k[:-3] + "_t": v / 1000.0 for k, v in list(totals.items())}
        return {
            "site": self.site,
            "organisation": self.organisation,
            "credit_code": self.credit_code,
            "boundary": self.boundary,
            "sector": self.sector,
            "sector_guide": self.sector_guide,
            "sector_process_sources": list(self.sector_process_sources),
            "period": self.period,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "base_year": self.base_year,
            "standard": "GB/T 32150-2015",
            "formula": "E = E_combustion + E_process + E_purchased_electricity "
            "+ E_purchased_heat - E_exported_electricity - E_exported_heat",
            "sources": sources,
            "totals": totals,
            "market_factor": asdict(self.market_factor),
            "energy_kwh": dict(self.energy),
            "hours_expected": self.hours_expected,
            "hours_with_results": self.hours_with_results,
            "hours_incomplete": self.hours_incomplete,
            "factor_table": self.factor_table,
            "notes": list(self.notes),
        }


def _quality(
    channels: Sequence[tuple[str, str]],
    energy: Sequence[HourlyEnergy],
    hours_expected: int,
) -> DataQuality:
    """Data quality of the channels (device, metric) from their hourly rows."""
    wanted = set(channels)
    rows = [r for r in energy if (r.device, r.metric) in wanted]
    metered = math.fsum(r.delta for r in rows)
    estimated = math.fsum(r.estimated for r in rows)
    n = max(len(wanted), 1)
    return DataQuality(
        basis="measured",
        devices=tuple(sorted({d for d, _m in wanted})),
        metered=metered,
        estimated=estimated,
        measured_share=None if metered <= 0 else 1.0 - estimated / metered,
        hours_expected=hours_expected,
        hours_reported=len({(r.hour_start, r.device, r.metric) for r in rows}) // n,
        hours_incomplete=sum(not r.complete for r in rows),
        gaps=sum(r.gaps for r in rows),
        resets=sum(r.resets for r in rows),
        rollovers=sum(r.rollovers for r in rows),
        replacements=sum(r.replacements for r in rows),
        rejected=sum(r.rejected for r in rows),
        backsteps=sum(r.backsteps for r in rows),
    )


def _grid_rows(
    site: SiteConfig, table: FactorTable, period: Period
) -> tuple[FactorUsed, FactorUsed]:
    """The location- and market-based grid factors for the period, from ``table``."""
    g = site.grid
    if g.province is not None:
        key = _province_key(g.province)
        if key is None:
            raise FactorError(f"grid.province: unknown province {g.province!r}")
        scope, name, what = "provincial", key, f"provincial {key}"
    else:
        region = _region_key(g.region)
        if region == NATIONAL:
            scope, name, what = "national_average", "CN", "national average"
        else:
            scope, name, what = "regional", region, f"regional {region}"

    def year_of(scope_: str, name_: str) -> int:
        if site.accounts.factor_year == "site":
            return g.data_year
        years = [y for y in table.years_with(scope_, name_) if y <= period.year]
        return years[-1] if years else g.data_year

    def found(scope_: str, name_: str, label: str, key_path: str) -> FactorRow:
        year = year_of(scope_, name_)
        row = table.get(year, scope_, name_)
        if row is None:
            raise FactorError(
                f"{key_path}: no factor {label} for data year {year} in the factor table "
                f"{table.path} (version {table.version}); years: "
                f"{table.years_with(scope_, name_)}"
            )
        return row

    unit = "kg CO2/kWh"
    if g.location_factor_kg_per_kwh is not None:
        loc = FactorUsed(
            "grid.location",
            g.location_factor_kg_per_kwh,
            unit,
            "grid.location_factor_kg_per_kwh (site file)",
            "site file",
        )
    else:
        row = found(scope, name, what, "grid")
        loc = FactorUsed(
            "grid.location",
            row.value,
            unit,
            f"{row.source} {what} (data year {row.data_year})",
            row.revision,
            row.data_year < period.year,
        )
    if g.market_factor_kg_per_kwh is not None:
        mkt = FactorUsed(
            "grid.market",
            g.market_factor_kg_per_kwh,
            unit,
            "grid.market_factor_kg_per_kwh (site file)",
            "site file",
        )
    else:
        row = found(RESIDUAL_SCOPE, "CN", "national excluding market-traded non-fossil", "grid")
        mkt = FactorUsed(
            "grid.market",
            row.value,
            unit,
            f"{row.source} national excluding market-traded non-fossil (data year {row.data_year})",
            row.revision,
            row.data_year < period.year,
        )
    return loc, mkt


def compute_account(
    site: SiteConfig,
    period: Period,
    carbon: Sequence[HourlyCarbon],
    energy: Sequence[HourlyEnergy],
    lines: Sequence[HourlyLine],
    factors: FactorTable | None = None,
) -> Account:
    """The account of ``period`` from its hourly rows, with the current factors.

    Parameters
    ----------
    site : SiteConfig
        The site: devices (fuel meters, grid meters), fuels, ``[grid]`` and ``[accounts]``.
    period : Period
        See :func:`parse_period`.
    carbon, energy, lines : sequences of hourly rows
        The rows of ``hourly_carbon``, ``hourly_energy`` and ``hourly_line``; rows outside
        the period are ignored.
    factors : FactorTable, optional
        The grid factor table; default the site's (``[accounts] factors_csv``, else the
        shipped one).

    Returns
    -------
    Account
        Emissions [kg CO2] per source, with factors, revisions and data quality.

    Raises
    ------
    FactorError, FuelError
        A factor the site needs is missing; the message names the key path.

    References
    ----------
    .. [1] GB/T 32150-2015 clause 6, formula (1) (sum of sources minus exports); fuel
       combustion per its Appendix B (:mod:`zerocarbon.carbon_engine.fuels`).
    .. [2] GHG Protocol Scope 2 Guidance (2015), ch. 6 (location- and market-based).
    """
    table = factors if factors is not None else site_factor_table(site)
    acc = site.accounts

    def inside(ts: datetime) -> bool:
        return period.start <= ts < period.end

    carbon = [r for r in carbon if inside(r.hour_start)]
    energy = [r for r in energy if inside(r.hour_start)]
    lines = [r for r in lines if inside(r.hour_start)]
    hours = period.hours
    sources: list[SourceAccount] = []

    # fuel combustion, per fuel meter channel
    fuel_version = _fuel_table_version()
    for index, device in enumerate(site.devices):
        if device.role is not DeviceRole.FUEL or device.fuel is None:
            continue
        # the meter's fuel counters (configured, or seen in the period's rows)
        seen = {r.metric for r in energy if r.device == device.id}
        metrics = sorted((seen | set(_device_metrics(site, index))) & set(FUEL_METRICS))
        for m in metrics:
            params = fuel_parameters(site, device.fuel, device.id)
            value = fuel_factor(site, device.fuel, m, device.id)
            overridden = device.fuel in site.fuels
            unit = metric(m).unit
            q = _quality([(device.id, m)], energy, hours)
            sources.append(
                SourceAccount(
                    id=f"combustion:{device.id}" + ("" if len(metrics) <= 1 else f":{m}"),
                    category="combustion",
                    description=f"{device.fuel} burnt, meter {device.id}",
                    activity=q.metered,
                    activity_unit=unit,
                    factor=FactorUsed(
                        f"fuel.{device.fuel}.{m}",
                        value,
                        f"kg CO2/{unit}",
                        params.source,
                        "site file" if overridden else f"fuel table {fuel_version}",
                    ),
                    emissions_kg=q.metered * value,
                    sign=1,
                    quality=q,
                )
            )

    # declared process emissions
    for p in acc.process_emissions:
        declared = DataQuality(basis="declared", hours_expected=hours)
        if p.t_co2_per_month is not None:
            activity, unit = float(period.months), "months"
            value, f_unit = p.t_co2_per_month * 1000.0, "kg CO2/month"
            quality = declared
        else:
            assert p.t_co2_per_unit is not None and p.line is not None
            line_rows = [r for r in lines if r.line == p.line]
            activity = math.fsum(r.production_units for r in line_rows)
            unit = next((ln.unit for ln in site.lines if ln.id == p.line), "units")
            value, f_unit = p.t_co2_per_unit * 1000.0, f"kg CO2/{unit}"
            quality = DataQuality(
                basis="measured output x declared factor",
                devices=tuple(
                    d.id
                    for d in site.devices
                    if d.line == p.line and d.role is DeviceRole.PRODUCTION
                ),
                metered=activity,
                measured_share=(
                    1.0 - math.fsum(r.estimated_share for r in line_rows) / len(line_rows)
                    if line_rows
                    else None
                ),
                hours_expected=hours,
                hours_reported=len(line_rows),
            )
        sources.append(
            SourceAccount(
                id=f"process:{p.id}",
                category="process",
                description=p.source,
                activity=activity,
                activity_unit=unit,
                factor=FactorUsed(
                    f"process.{p.id}",
                    value,
                    f_unit,
                    p.method or "declared in the site file",
                    "site file",
                ),
                emissions_kg=activity * value,
                sign=1,
                quality=quality,
            )
        )

    # purchased and exported electricity, location-based
    loc, mkt = _grid_rows(site, table, period)
    grid_ids = [d.id for d in site.devices if d.role is DeviceRole.GRID]
    imp_kwh = math.fsum(r.grid_import_kwh for r in carbon)
    exp_kwh = math.fsum(r.grid_export_kwh for r in carbon)
    for category, kwh, m, desc in (
        ("purchased_electricity", imp_kwh, "energy_import_kwh", "grid electricity imported"),
        ("exported_electricity", exp_kwh, "energy_export_kwh", "electricity exported to grid"),
    ):
        if category == "exported_electricity" and kwh == 0.0:
            continue
        sources.append(
            SourceAccount(
                id=f"{category}:grid",
                category=category,
                description=desc,
                activity=kwh,
                activity_unit="kWh",
                factor=loc,
                emissions_kg=kwh * loc.value,
                sign=1 if category == "purchased_electricity" else -1,
                quality=_quality([(d, m) for d in grid_ids], energy, hours),
            )
        )

    # purchased and exported heat, declared per month
    heat = acc.heat
    if heat is not None:
        h_factor = FactorUsed(
            "heat",
            heat.factor_t_co2_per_gj * 1000.0,
            "kg CO2/GJ",
            heat.factor_source
            or f"default {DEFAULT_HEAT_FACTOR_T_PER_GJ} t CO2/GJ (NDRC enterprise guidelines, "
            "GB/T 32151 sector parts)",
            "site file",
        )
        for category, gj_month, desc in (
            ("purchased_heat", heat.gj_per_month, "heat purchased (declared per month)"),
            ("exported_heat", heat.exported_gj_per_month, "heat exported (declared per month)"),
        ):
            if category == "exported_heat" and gj_month == 0.0:
                continue
            gj = gj_month * period.months
            sources.append(
                SourceAccount(
                    id=f"{category}:declared",
                    category=category,
                    description=desc,
                    activity=gj,
                    activity_unit="GJ",
                    factor=h_factor,
                    emissions_kg=gj * h_factor.value,
                    sign=1 if category == "purchased_heat" else -1,
                    quality=DataQuality(basis="declared", hours_expected=hours),
                )
            )

    # market-based Scope 2: import not covered by instruments, hour by hour
    uncovered_kwh = math.fsum(
        max(r.grid_import_kwh - r.green_contract_kwh - r.certificate_kwh, 0.0) for r in carbon
    )
    market_kg = uncovered_kwh * mkt.value + math.fsum(
        s.emissions_kg for s in sources if s.category == "purchased_heat"
    )
    energy_kwh = {
        "grid_import_kwh": imp_kwh,
        "grid_export_kwh": exp_kwh,
        "pv_kwh": math.fsum(r.pv_kwh for r in carbon),
        "wind_kwh": math.fsum(r.wind_kwh for r in carbon),
        "battery_charge_kwh": math.fsum(r.battery_charge_kwh for r in carbon),
        "battery_discharge_kwh": math.fsum(r.battery_discharge_kwh for r in carbon),
        "load_kwh": math.fsum(r.load_kwh for r in carbon),
        "green_contract_kwh": math.fsum(r.green_contract_kwh for r in carbon),
        "certificate_kwh": math.fsum(r.certificate_kwh for r in carbon),
        "market_uncovered_kwh": uncovered_kwh,
        "cfe_kwh": math.fsum(r.cfe_kwh for r in carbon),
    }
    notes = [f"market-based Scope 2: {mkt.source}, revision {mkt.revision}"]
    if loc.provisional:
        notes.append(
            f"provisional: the grid factor is of an earlier data year ({loc.source}); "
            "re-issue when MEE publishes the period's"
        )
    if site.grid.hourly_factors_csv is not None:
        notes.append(
            "the account uses the annual grid factor; the hourly series applies to hourly figures"
        )
    guide = acc.sector_guide
    org = acc.organisation
    return Account(
        site=site.site.name,
        organisation=org.name if org is not None else site.site.name,
        credit_code=org.credit_code if org is not None else None,
        boundary=acc.boundary,
        sector=acc.sector,
        sector_guide=None if guide is None else f"{guide.standard} {guide.title}",
        sector_process_sources=() if guide is None else guide.process_sources,
        period=period.label,
        start=period.start,
        end=period.end,
        base_year=acc.base_year,
        sources=tuple(sources),
        energy=energy_kwh,
        scope2_market_kg=market_kg,
        market_factor=mkt,
        hours_expected=hours,
        hours_with_results=len({r.hour_start for r in carbon}),
        hours_incomplete=sum(not r.complete for r in carbon),
        factor_table=table.version,
        notes=tuple(notes),
    )


# --- what changed between two issues ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    """One difference between an issued account and the current one."""

    source: str  # source id, or "total"
    kind: str  # "factor", "activity", "added", "removed", "emissions"
    before: float | None
    after: float | None
    why: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _differs(a: float, b: float) -> bool:
    return abs(a - b) > _REL_TOL * max(abs(a), abs(b), 1.0)


def compare_accounts(previous: Mapping[str, Any], current: Mapping[str, Any]) -> list[Change]:
    """What changed from an issued account to the current one, and why.

    Both are :meth:`Account.to_json` data. For each source: a factor whose value or
    revision differs (naming both revisions), activity data that differs (by how much,
    in its unit), and the resulting emissions difference; sources added or removed; the
    change of the location-based total.
    """
    before = {s["id"]: s for s in previous.get("sources", [])}
    after = {s["id"]: s for s in current.get("sources", [])}
    changes: list[Change] = []
    for sid, s in after.items():
        old = before.get(sid)
        if old is None:
            changes.append(
                Change(sid, "added", None, s["emissions_kg"], f"new source: {s['description']}")
            )
            continue
        f_old, f_new = old["factor"], s["factor"]
        if f_old["revision"] != f_new["revision"] or _differs(f_old["value"], f_new["value"]):
            changes.append(
                Change(
                    sid,
                    "factor",
                    f_old["value"],
                    f_new["value"],
                    f"factor {f_new['key']} revised: {f_old['value']} {f_old['unit']} "
                    f"(revision {f_old['revision']}, {f_old['source']}) -> {f_new['value']} "
                    f"{f_new['unit']} (revision {f_new['revision']}, {f_new['source']})",
                )
            )
        if _differs(old["activity"], s["activity"]):
            delta = s["activity"] - old["activity"]
            changes.append(
                Change(
                    sid,
                    "activity",
                    old["activity"],
                    s["activity"],
                    f"activity data changed by {delta:+.6g} {s['activity_unit']} "
                    f"({old['activity']:.6g} -> {s['activity']:.6g}; estimated "
                    f"{old['quality']['estimated']:.6g} -> {s['quality']['estimated']:.6g})",
                )
            )
        if _differs(old["emissions_kg"], s["emissions_kg"]):
            delta = s["emissions_kg"] - old["emissions_kg"]
            changes.append(
                Change(
                    sid,
                    "emissions",
                    old["emissions_kg"],
                    s["emissions_kg"],
                    f"emissions changed by {delta:+.3f} kg CO2",
                )
            )
    for sid, old in before.items():
        if sid not in after:
            changes.append(
                Change(sid, "removed", old["emissions_kg"], None, "source no longer present")
            )
    m_old, m_new = previous.get("market_factor"), current.get("market_factor")
    if m_old is not None and m_new is not None:
        if m_old["revision"] != m_new["revision"] or _differs(m_old["value"], m_new["value"]):
            changes.append(
                Change(
                    "scope2_market",
                    "factor",
                    m_old["value"],
                    m_new["value"],
                    f"factor {m_new['key']} revised: {m_old['value']} {m_old['unit']} "
                    f"(revision {m_old['revision']}) -> {m_new['value']} {m_new['unit']} "
                    f"(revision {m_new['revision']})",
                )
            )
    s_old = previous.get("totals", {}).get("scope2_market_kg")
    s_new = current.get("totals", {}).get("scope2_market_kg")
    if s_old is not None and s_new is not None and _differs(s_old, s_new):
        changes.append(
            Change(
                "scope2_market",
                "emissions",
                s_old,
                s_new,
                f"market-based Scope 2 changed by {s_new - s_old:+.3f} kg",
            )
        )
    t_old = previous.get("totals", {}).get("total_location_kg")
    t_new = current.get("totals", {}).get("total_location_kg")
    if t_old is not None and t_new is not None and _differs(t_old, t_new):
        changes.append(
            Change("total", "emissions", t_old, t_new, f"total changed by {t_new - t_old:+.3f} kg")
        )
    return changes
