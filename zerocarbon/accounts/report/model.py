"""The report of a period: one object assembled from the account, the energy cost, the
instruments ledger and the hourly rows behind them. Pure: no database, no rendering.

:func:`build_report` takes what the database holds for the period (:class:`ReportInputs`)
and computes every figure once; the renderers (:mod:`.pdf`, :mod:`.xlsx`) and the JSON
(:meth:`Report.to_json`) only format them, so the PDF, the workbook and the JSON show
the same numbers.

Sections, each computed by one function from the computed figures:

- the account (GB/T 32150-2015: :func:`zerocarbon.accounts.period.compute_account`);
- the series of the charts: daily (a month) or monthly (a quarter, a year) sums of the
  hourly results (:func:`series`) and the mean hourly profile by local hour
  (:func:`hourly_profile`);
- the energy cost: one bill per month of the period (:func:`cost_section`,
  :func:`zerocarbon.accounts.cost.monthly_bill`), when the site has a ``[tariff]``;
- the instruments: green certificates, green-power contracts and offsets with what was
  retired against the period and what the engine allocated (:func:`instruments_section`);
- the ESG mapping (:func:`zerocarbon.accounts.report.esg.esg_fields`);
- product footprints over the period (GB/T 24067-2024 / ISO 14067:2018,
  :func:`zerocarbon.accounts.footprint.compute_footprints`) and the zero-carbon
  scorecard (:func:`zerocarbon.accounts.scorecard.compute_scorecard`).

Emissions are CO2 (GB/T 32150 accounts CO2; no other gas is metered), reported in t
CO2 as t CO2e.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from zerocarbon.accounts.cost import HourlyCost, LineEnergy, MonthlyBill, hourly_cost, monthly_bill
from zerocarbon.accounts.footprint import Footprint, compute_footprints
from zerocarbon.accounts.ledger import InstrumentView
from zerocarbon.accounts.period import Account, FactorTable, Period, compute_account
from zerocarbon.accounts.report.esg import EsgField, esg_fields
from zerocarbon.accounts.scorecard import Scorecard, compute_scorecard
from zerocarbon.config import SiteConfig
from zerocarbon.config_tariff import PERIOD_KINDS
from zerocarbon.rows import HourlyCarbon, HourlyEnergy, HourlyLine

__all__ = [
    "Bucket",
    "CostSection",
    "Figure",
    "InstrumentLine",
    "ProfileHour",
    "Report",
    "ReportInputs",
    "build_report",
    "cost_section",
    "hourly_profile",
    "instruments_section",
    "period_months",
    "series",
    "summary_figures",
]


@dataclass(frozen=True)
class ReportInputs:
    """What the database holds for a period: its hourly rows, the 15-minute import
    demand of the grid meters (bucket start, kW), the instruments ledger, and the
    account of the same period of the base year (for GRI 305-5), when there is one."""

    site: SiteConfig
    period: Period
    factor_table: FactorTable
    carbon: Sequence[HourlyCarbon]
    energy: Sequence[HourlyEnergy]
    lines: Sequence[HourlyLine]
    demand: Sequence[tuple[datetime, float]] = ()
    instruments: Sequence[InstrumentView] = ()
    base_account: Account | None = None


@dataclass(frozen=True, slots=True)
class Bucket:
    """One bar of the period chart: a local day (a month's report) or a local month
    (a quarter's or a year's), sums of the hourly results."""

    label: str  # "2026-06-01" or "2026-06"
    hours: int
    scope1_kg: float  # hourly Scope 1 (metered fuel combustion) [kg CO2]
    scope2_location_kg: float  # [kg CO2]
    scope2_market_kg: float  # [kg CO2]
    grid_import_kwh: float
    pv_kwh: float
    load_kwh: float


@dataclass(frozen=True, slots=True)
class ProfileHour:
    """Mean over the period's days of one local hour of the day [kWh in the hour]."""

    hour: int  # 0..23, local
    days: int
    load_kwh: float
    grid_import_kwh: float
    pv_kwh: float
    scope2_location_kg: float


@dataclass(frozen=True)
class CostSection:
    """The energy cost of the period: one bill per month (CNY, rounded half up to the
    fen per bill line, :mod:`zerocarbon.accounts.cost`)."""

    bills: tuple[MonthlyBill, ...]
    hourly: tuple[HourlyCost, ...]
    total_cny: Decimal  # sum of the monthly totals
    by_kind_kwh: Mapping[str, Decimal]  # grid import by period kind [kWh]
    by_kind_cny: Mapping[str, Decimal]  # the energy bill lines by period kind [CNY]
    by_item_cny: Mapping[str, Decimal]  # every bill item summed over the months [CNY]
    pv_savings_cny: Decimal


@dataclass(frozen=True, slots=True)
class InstrumentLine:
    """An instrument of the ledger as the period sees it."""

    id: str
    kind: str  # gec | green_power | ccer | allowance
    serial: str
    project: str
    vintage: str
    volume: Decimal  # [unit]
    unit: str  # MWh | t CO2e
    status: str
    retired_in_period: Decimal  # retired against the period or one of its months [unit]
    allocated_kwh: float | None  # the engine's allocation in the period's months [kWh]


@dataclass(frozen=True, slots=True)
class Figure:
    """One figure of the summary: its value, unit, and the sum of the hourly data that
    reproduces it (sheet and column of the workbook), if any."""

    key: str
    value: float | None
    unit: str
    sheet: str | None = None  # the workbook sheet whose column sums to the value
    column: str | None = None


@dataclass(frozen=True)
class Report:
    """Everything a report shows, for one period."""

    site: SiteConfig
    period: Period
    timezone: str
    generated_at: datetime
    account: Account
    buckets: tuple[Bucket, ...]
    bucket_kind: str  # "day" or "month"
    profile: tuple[ProfileHour, ...]
    cost: CostSection | None  # None: the site has no [tariff]
    instruments: tuple[InstrumentLine, ...]
    offsets_t: Decimal  # CCER and allowances retired against the period [t CO2e]
    esg: tuple[EsgField, ...]
    figures: tuple[Figure, ...]
    carbon: Sequence[HourlyCarbon]
    energy: Sequence[HourlyEnergy]
    lines: Sequence[HourlyLine]
    footprints: tuple[Footprint, ...] = ()  # one per product of [accounts.products]
    scorecard: Scorecard | None = None
    notes: tuple[str, ...] = field(default=())

    def figure(self, key: str) -> Figure:
        return next(f for f in self.figures if f.key == key)

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data (no hourly rows: the workbook has them)."""
        cost = None
        if self.cost is not None:
            cost = {
                "total_cny": str(self.cost.total_cny),
                "by_kind_kwh": {k: str(v) for k, v in self.cost.by_kind_kwh.items()},
                "by_kind_cny": {k: str(v) for k, v in self.cost.by_kind_cny.items()},
                "by_item_cny": {k: str(v) for k, v in self.cost.by_item_cny.items()},
                "pv_savings_cny": str(self.cost.pv_savings_cny),
                "bills": [_bill_json(b) for b in self.cost.bills],
            }
        data: dict[str, Any] = _jsonable(
            {
                "report": "zerocarbon period report",
                "site": self.site.site.name,
                "period": self.period.label,
                "period_kind": self.period.kind,
                "timezone": self.timezone,
                "generated_at": self.generated_at.isoformat(),
                "account": self.account.to_json() | {"factor_revisions": _revisions(self.account)},
                "figures": [asdict(f) for f in self.figures],
                "series": {"bucket": self.bucket_kind, "rows": [asdict(b) for b in self.buckets]},
                "hourly_profile": [asdict(p) for p in self.profile],
                "cost": cost,
                "instruments": [_jsonable(asdict(i)) for i in self.instruments],
                "offsets_used_t": str(self.offsets_t),
                "esg": [asdict(f) for f in self.esg],
                "footprints": [f.to_json() for f in self.footprints],
                "scorecard": None if self.scorecard is None else self.scorecard.to_json(),
                "notes": list(self.notes),
            }
        )
        return data


def _revisions(account: Account) -> dict[str, Any]:
    return account.factor_revisions()


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _bill_json(bill: MonthlyBill) -> dict[str, Any]:
    d = _jsonable(asdict(bill))
    assert isinstance(d, dict)
    return d


def period_months(period: Period, zone: ZoneInfo) -> list[str]:
    """The local months ``YYYY-MM`` of a period, in order."""
    local = period.start.astimezone(zone)
    out = []
    y, m = local.year, local.month
    for _ in range(period.months):
        out.append(f"{y}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def series(carbon: Sequence[HourlyCarbon], zone: ZoneInfo, by: str) -> tuple[Bucket, ...]:
    """Sums of the hourly results by local day (``by="day"``) or month (``"month"``)."""
    width = 10 if by == "day" else 7
    acc: dict[str, list[float]] = defaultdict(lambda: [0.0] * 7)
    for r in carbon:
        key = r.hour_start.astimezone(zone).isoformat()[:width]
        a = acc[key]
        a[0] += 1
        a[1] += r.scope1_kg
        a[2] += r.scope2_location_kg
        a[3] += r.scope2_market_kg
        a[4] += r.grid_import_kwh
        a[5] += r.pv_kwh
        a[6] += r.load_kwh
    return tuple(
        Bucket(k, int(a[0]), a[1], a[2], a[3], a[4], a[5], a[6]) for k, a in sorted(acc.items())
    )


def hourly_profile(carbon: Sequence[HourlyCarbon], zone: ZoneInfo) -> tuple[ProfileHour, ...]:
    """The mean of each local hour of the day over the period [kWh/h, kg/h]."""
    acc: dict[int, list[float]] = {h: [0.0] * 5 for h in range(24)}
    for r in carbon:
        a = acc[r.hour_start.astimezone(zone).hour]
        a[0] += 1
        a[1] += r.load_kwh
        a[2] += r.grid_import_kwh
        a[3] += r.pv_kwh
        a[4] += r.scope2_location_kg
    out = []
    for h in range(24):
        n, load, imp, pv, s2 = acc[h]
        d = max(n, 1.0)
        out.append(ProfileHour(h, int(n), load / d, imp / d, pv / d, s2 / d))
    return tuple(out)


def cost_section(
    site: SiteConfig,
    months: Sequence[str],
    carbon: Sequence[HourlyCarbon],
    demand: Sequence[tuple[datetime, float]],
    lines: Sequence[HourlyLine],
) -> CostSection | None:
    """One bill per month of the period (None without a ``[tariff]``); the period's
    totals are sums of the months' rounded bill lines."""
    tariff = site.tariff
    if tariff is None:
        return None
    zone = ZoneInfo(site.site.timezone)
    bills = []
    line_energy = _line_energy(zone, lines)
    for month in months:
        bills.append(
            monthly_bill(
                tariff,
                month,
                zone,
                carbon,
                demand,
                site.grid.contracted_demand_kw,
                line_energy.get(month, []),
            )
        )
    by_kind_kwh: dict[str, Decimal] = {}
    by_kind_cny: dict[str, Decimal] = {}
    by_item: dict[str, Decimal] = {}
    for b in bills:
        for ln in b.lines:
            by_item[ln.item] = by_item.get(ln.item, Decimal(0)) + ln.amount_cny
            if ln.item.startswith("energy_"):
                kind = ln.item.removeprefix("energy_")
                by_kind_kwh[kind] = by_kind_kwh.get(kind, Decimal(0)) + ln.quantity
                by_kind_cny[kind] = by_kind_cny.get(kind, Decimal(0)) + ln.amount_cny
    order: dict[str, int] = {k: i for i, k in enumerate(PERIOD_KINDS)}
    return CostSection(
        bills=tuple(bills),
        hourly=tuple(hourly_cost(tariff, carbon, zone)),
        total_cny=sum((b.total_cny for b in bills), Decimal(0)),
        by_kind_kwh=dict(sorted(by_kind_kwh.items(), key=lambda kv: order[kv[0]])),
        by_kind_cny=dict(sorted(by_kind_cny.items(), key=lambda kv: order[kv[0]])),
        by_item_cny=by_item,
        pv_savings_cny=sum((b.pv_savings_cny for b in bills), Decimal(0)),
    )


def _line_energy(zone: ZoneInfo, lines: Sequence[HourlyLine]) -> dict[str, list[LineEnergy]]:
    """Each local month's lines: energy [kWh] and output [units] summed by line."""
    acc: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0.0]))
    months: dict[datetime, str] = {}
    for r in lines:
        month = months.get(r.hour_start)
        if month is None:
            local = r.hour_start.astimezone(zone)
            month = months[r.hour_start] = f"{local.year}-{local.month:02d}"
        a = acc[month][r.line]
        a[0] += r.energy_kwh
        a[1] += r.production_units
    return {
        m: [LineEnergy(k, v[0], v[1]) for k, v in sorted(by_line.items())]
        for m, by_line in acc.items()
    }


def instruments_section(
    views: Sequence[InstrumentView], period: Period, months: Sequence[str]
) -> tuple[tuple[InstrumentLine, ...], Decimal]:
    """The instruments with what was retired against the period (its label or one of
    its months) and the engine's allocation in its months; and the offsets (CCER,
    allowances) retired against it [t CO2e], reported beside, never subtracted from,
    Scope 1 and 2 (GHG Protocol Corporate Standard, ch. 9)."""
    wanted = {period.label, *months}
    out = []
    offsets = Decimal(0)
    for v in views:
        i = v.instrument
        retired = sum((vol for p, vol in v.retired_by_period.items() if p in wanted), Decimal(0))
        allocated = None
        if v.engine is not None:
            allocated = math.fsum(e.allocated_kwh for e in v.engine if e.month in months)
        if i.kind in ("ccer", "allowance"):
            offsets += retired
        out.append(
            InstrumentLine(
                i.id,
                i.kind,
                i.serial,
                i.project,
                i.vintage,
                i.volume,
                i.unit,
                i.status,
                retired,
                allocated,
            )
        )
    return tuple(out), offsets


def summary_figures(account: Account, cost: CostSection | None) -> tuple[Figure, ...]:
    """The summary's figures; those that are sums of an hourly column name it."""
    e = account.energy
    out = [
        Figure("scope1_t", account.scope1_kg / 1000.0, "t CO2"),
        Figure("combustion_t", account.total_kg("combustion") / 1000.0, "t CO2"),
        Figure("process_t", account.total_kg("process") / 1000.0, "t CO2"),
        Figure(
            "scope2_location_t",
            account.scope2_location_kg / 1000.0,
            "t CO2",
        ),
        Figure(
            "purchased_electricity_t",
            account.total_kg("purchased_electricity") / 1000.0,
            "t CO2",
            "hourly_carbon",
            "scope2_location_kg",
        ),
        Figure("purchased_heat_t", account.total_kg("purchased_heat") / 1000.0, "t CO2"),
        Figure("scope2_market_t", account.scope2_market_kg / 1000.0, "t CO2"),
        Figure("exported_t", account.exported_kg / 1000.0, "t CO2"),
        Figure("total_location_t", account.total_location_kg / 1000.0, "t CO2"),
        Figure("total_market_t", account.total_market_kg / 1000.0, "t CO2"),
        Figure("grid_import_kwh", e["grid_import_kwh"], "kWh", "hourly_carbon", "grid_import_kwh"),
        Figure("grid_export_kwh", e["grid_export_kwh"], "kWh", "hourly_carbon", "grid_export_kwh"),
        Figure("pv_kwh", e["pv_kwh"], "kWh", "hourly_carbon", "pv_kwh"),
        Figure("load_kwh", e["load_kwh"], "kWh", "hourly_carbon", "load_kwh"),
        Figure(
            "green_contract_kwh",
            e["green_contract_kwh"],
            "kWh",
            "hourly_carbon",
            "green_contract_kwh",
        ),
        Figure("certificate_kwh", e["certificate_kwh"], "kWh", "hourly_carbon", "certificate_kwh"),
        Figure("cfe_kwh", e["cfe_kwh"], "kWh", "hourly_carbon", "cfe_kwh"),
    ]
    if cost is not None:
        out.append(Figure("cost_total_cny", float(cost.total_cny), "CNY"))
        out.append(Figure("pv_savings_cny", float(cost.pv_savings_cny), "CNY"))
    return tuple(out)


def build_report(inputs: ReportInputs, generated_at: datetime) -> Report:
    """Assemble the report of ``inputs.period`` (every figure computed here, once)."""
    site, period = inputs.site, inputs.period
    zone = ZoneInfo(site.site.timezone)
    account = compute_account(
        site, period, inputs.carbon, inputs.energy, inputs.lines, inputs.factor_table
    )
    carbon = [r for r in inputs.carbon if period.start <= r.hour_start < period.end]
    energy = [r for r in inputs.energy if period.start <= r.hour_start < period.end]
    lines = [r for r in inputs.lines if period.start <= r.hour_start < period.end]
    months = period_months(period, zone)
    cost = cost_section(site, months, carbon, inputs.demand, lines)
    instruments, offsets = instruments_section(inputs.instruments, period, months)
    by = "day" if period.kind == "month" else "month"
    notes = list(account.notes)
    if cost is None:
        notes.append("no [tariff] in the site file: no energy cost")
    footprints = compute_footprints(
        site, period.label, period.start, period.end, carbon, energy, lines, inputs.factor_table
    )
    scorecard = compute_scorecard(
        site, period, carbon, energy, lines, inputs.factor_table, float(offsets), account
    )
    return Report(
        site=site,
        period=period,
        timezone=site.site.timezone,
        generated_at=generated_at,
        account=account,
        buckets=series(carbon, zone, by),
        bucket_kind=by,
        profile=hourly_profile(carbon, zone),
        cost=cost,
        instruments=instruments,
        offsets_t=offsets,
        esg=esg_fields(
            site, account, math.fsum(r.production_units for r in carbon), inputs.base_account
        ),
        figures=summary_figures(account, cost),
        carbon=carbon,
        energy=energy,
        lines=lines,
        footprints=tuple(footprints),
        scorecard=scorecard,
        notes=tuple(notes),
    )
