"""Energy cost of the site under its ``[tariff]``: pure computation, no database.

From the hourly rows (:class:`~zerocarbon.rows.HourlyCarbon`: grid import and export,
PV), the 15-minute import demand of the grid meters and the lines' monthly energy, it
computes:

- each hour's period kind (by the local month and hour of ``hour_start``), its energy
  cost, surcharge, export credit and PV self-consumption savings (:func:`hourly_cost`);
- the month's maximum demand, the highest 15-minute average import power: the figure a
  two-part tariff's billing meter records (a demand register integrates the power over
  fixed 15-minute intervals, 需量周期 15 min, and keeps the month's highest average);
  ``power_15min``'s average of the grid meters' ``active_power_kw`` (import positive)
  is that same average, summed over the grid meters (:func:`max_demand`);
- the basic charge on the demand or the contracted capacity (:func:`basic_charge`);
- the month's bill, line by line, and the cost per unit of product of each line and of
  the site (:func:`monthly_bill`).

Money is :class:`~decimal.Decimal` CNY. Energy quantities are read to the watt-hour
(0.001 kWh, a billing meter's finest resolution) before they are priced. Every bill
line is rounded half up to the fen (0.01 CNY, 四舍五入 to 分, as Chinese electricity
bills show amounts: :data:`FEN`, :func:`round_cny`); the total is the sum of the
rounded lines, as on a bill. Hourly figures are rounded the same way but are not
summed into the bill: the bill prices each period kind's month kWh once.

Allocation to lines (a declared key, ``docs/cost.md``): a line bears the site's energy
cost (energy lines + surcharge - export credit) and the basic charge in proportion to
its share of the site's load energy (its sub-meters' kWh / ``load_kwh``); the part of
the load no line meters stays with the site as ``unallocated``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from zerocarbon.config_tariff import PERIOD_KINDS, PeriodKind, TariffConfig
from zerocarbon.rows import HourlyCarbon

__all__ = [
    "FEN",
    "BasicCharge",
    "BillLine",
    "DemandPeak",
    "HourlyCost",
    "LineCost",
    "LineEnergy",
    "MonthlyBill",
    "basic_charge",
    "hourly_cost",
    "kwh",
    "max_demand",
    "month_bounds",
    "monthly_bill",
    "period_kind",
    "round_cny",
]

FEN = Decimal("0.01")  # a bill's resolution [CNY]
PER_UNIT = Decimal("0.0001")  # resolution of costs per unit of product [CNY/unit]
WH = Decimal("0.001")  # resolution of priced energy [kWh]


def round_cny(amount: Decimal, step: Decimal = FEN) -> Decimal:
    """``amount`` rounded half up to ``step`` (0.125 -> 0.13, not 0.12 as banker's
    rounding would give)."""
    return amount.quantize(step, rounding=ROUND_HALF_UP)


def kwh(value: float) -> Decimal:
    """A float energy [kWh] as a Decimal to the watt-hour (half up)."""
    return Decimal(repr(value)).quantize(WH, rounding=ROUND_HALF_UP)


def month_bounds(month: str, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """UTC ``[start, end)`` of ``month`` (``YYYY-MM``) in the site's time zone.
    Raises ValueError on anything else."""
    try:
        first = date.fromisoformat(f"{month}-01")
    except ValueError:
        raise ValueError(f"month {month!r} is not YYYY-MM") from None
    after = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return _local_midnight(first, zone), _local_midnight(after, zone)


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


def period_kind(tariff: TariffConfig, hour_start: datetime, zone: ZoneInfo) -> PeriodKind:
    """The period kind of the hour starting at ``hour_start`` (aware): that of its
    local start hour in the season of its local month."""
    local = hour_start.astimezone(zone)
    return tariff.season_of(local.month).kinds_by_hour()[local.hour]


@dataclass(frozen=True, slots=True)
class HourlyCost:
    """One hour's energy cost (CNY, each rounded half up to the fen)."""

    hour_start: datetime
    period: PeriodKind
    price_per_kwh: Decimal  # energy price of the period [CNY/kWh]
    grid_import_kwh: Decimal
    grid_export_kwh: Decimal
    pv_self_kwh: Decimal  # PV consumed on site: max(pv - export, 0)
    energy_cny: Decimal  # import x price
    surcharge_cny: Decimal  # import x surcharge_per_kwh
    export_credit_cny: Decimal  # export x export_price_per_kwh
    net_cny: Decimal  # energy + surcharge - export credit
    pv_savings_cny: Decimal  # pv_self x (price + surcharge)


def hourly_cost(
    tariff: TariffConfig, rows: Iterable[HourlyCarbon], zone: ZoneInfo
) -> list[HourlyCost]:
    """The energy cost of each hourly row (the basic charge is monthly: not here).

    PV self-consumption saves, per kWh, what importing it would have cost: the hour's
    energy price plus the surcharge.
    """
    table = tariff.kind_table()
    out: list[HourlyCost] = []
    for row in rows:
        local = row.hour_start.astimezone(zone)
        kind = table[local.month - 1][local.hour]
        price = tariff.prices.of(kind)
        imp, exp = kwh(row.grid_import_kwh), kwh(row.grid_export_kwh)
        pv_self = max(kwh(row.pv_kwh) - exp, Decimal(0))
        energy = round_cny(imp * price)
        surcharge = round_cny(imp * tariff.surcharge_per_kwh)
        credit = round_cny(exp * tariff.export_price_per_kwh)
        out.append(
            HourlyCost(
                hour_start=row.hour_start,
                period=kind,
                price_per_kwh=price,
                grid_import_kwh=imp,
                grid_export_kwh=exp,
                pv_self_kwh=pv_self,
                energy_cny=energy,
                surcharge_cny=surcharge,
                export_credit_cny=credit,
                net_cny=energy + surcharge - credit,
                pv_savings_cny=round_cny(pv_self * (price + tariff.surcharge_per_kwh)),
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class DemandPeak:
    """The month's maximum demand: the highest 15-minute average import [kW] and the
    start of its interval (UTC)."""

    demand_kw: float
    bucket: datetime


def max_demand(buckets: Iterable[tuple[datetime, float]]) -> DemandPeak | None:
    """The highest of the 15-minute import demands (bucket start, kW), the earliest if
    several are equal; None without any. A negative site demand (net export) counts
    as 0: the demand register records import only."""
    best: DemandPeak | None = None
    for bucket, demand_kw in buckets:
        demand_kw = max(demand_kw, 0.0)
        if best is None or demand_kw > best.demand_kw:
            best = DemandPeak(demand_kw, bucket)
        elif demand_kw == best.demand_kw and bucket < best.bucket:
            best = DemandPeak(demand_kw, bucket)
    return best


@dataclass(frozen=True, slots=True)
class BasicCharge:
    """The month's basic charge (基本电费)."""

    basis: str  # "demand" or "capacity"
    measured_kw: Decimal | None  # the month's maximum demand (demand basis)
    floor_kw: Decimal | None  # demand_floor_share x contracted demand (demand basis)
    billed: Decimal  # billed kW (demand) or kVA (capacity)
    unit: str  # "kW" or "kVA"
    price: Decimal  # [CNY/(kW month)] or [CNY/(kVA month)]
    amount_cny: Decimal


def basic_charge(
    tariff: TariffConfig, peak: DemandPeak | None, contracted_demand_kw: float | None
) -> BasicCharge:
    """The basic charge of a month.

    Demand basis: billed kW = max(measured maximum demand, ``demand_floor_share`` x
    ``contracted_demand_kw``) (no floor without a contracted demand; no measured demand
    counts as 0 kW); capacity basis: ``contracted_capacity_kva``. Demand is read to the
    watt (0.001 kW) before it is priced.
    """
    if tariff.basis == "capacity":
        assert tariff.capacity_price_per_kva_month is not None
        assert tariff.contracted_capacity_kva is not None
        kva = tariff.contracted_capacity_kva
        price = tariff.capacity_price_per_kva_month
        return BasicCharge("capacity", None, None, kva, "kVA", price, round_cny(kva * price))
    assert tariff.demand_price_per_kw_month is not None
    measured = kwh(peak.demand_kw) if peak is not None else Decimal("0.000")
    floor = None
    if contracted_demand_kw is not None:
        floor = round_cny(kwh(contracted_demand_kw) * tariff.demand_floor_share, WH)
    billed = measured if floor is None else max(measured, floor)
    price = tariff.demand_price_per_kw_month
    return BasicCharge("demand", measured, floor, billed, "kW", price, round_cny(billed * price))


@dataclass(frozen=True, slots=True)
class BillLine:
    """One line of the bill: quantity x unit price = amount (rounded to the fen).
    Credits (exported energy) are negative amounts."""

    item: str  # energy_<period kind>, surcharge, demand_charge, capacity_charge, export_credit
    quantity: Decimal
    unit: str  # kWh, kW, kVA
    price: Decimal  # CNY per unit
    amount_cny: Decimal


@dataclass(frozen=True, slots=True)
class LineEnergy:
    """A production line's month: its sub-meters' energy and its output."""

    line: str
    energy_kwh: float
    production_units: float


@dataclass(frozen=True, slots=True)
class LineCost:
    """A line's allocated cost of the month (allocation key: share of load energy)."""

    line: str
    energy_kwh: Decimal
    share: Decimal  # energy_kwh / site load_kwh, to 1e-6 for display (not used rounded)
    energy_cost_cny: Decimal  # share x (energy lines + surcharge - export credit)
    basic_charge_cny: Decimal  # share x basic charge
    total_cny: Decimal
    production_units: Decimal
    cost_per_unit_cny: Decimal | None  # total / production units, to 0.0001 CNY


@dataclass(frozen=True, slots=True)
class MonthlyBill:
    """A month's bill, its figures and its allocation to lines."""

    month: str  # YYYY-MM in the site's time zone
    start: datetime  # UTC, first hour included
    end: datetime  # UTC, first hour excluded
    hours: int  # hourly rows billed
    lines: tuple[BillLine, ...]
    total_cny: Decimal  # sum of the rounded lines
    energy_cost_cny: Decimal  # energy lines + surcharge - export credit
    basic: BasicCharge
    peak: DemandPeak | None
    grid_import_kwh: Decimal
    grid_export_kwh: Decimal
    load_kwh: Decimal
    pv_self_kwh: Decimal
    pv_savings_cny: Decimal  # sum over hours of pv_self x (price + surcharge), rounded once
    production_units: Decimal
    cost_per_unit_cny: Decimal | None  # total / site production units
    line_costs: tuple[LineCost, ...]
    unallocated_cny: Decimal  # total - the lines' totals (unmetered load)


def monthly_bill(
    tariff: TariffConfig,
    month: str,
    zone: ZoneInfo,
    rows: Sequence[HourlyCarbon],
    demand: Iterable[tuple[datetime, float]],
    contracted_demand_kw: float | None,
    lines: Sequence[LineEnergy] = (),
) -> MonthlyBill:
    """The bill of ``month`` (local) from its hourly rows, its 15-minute import demands
    (bucket start, kW) and its lines' energy; rows and buckets outside the month are
    ignored.

    Bill lines: one ``energy_<kind>`` per period kind that has hours in the month
    (month kWh of that kind x its price), ``surcharge`` (import x surcharge), the basic
    charge (``demand_charge`` or ``capacity_charge``), ``export_credit`` (- export x
    export price); each rounded half up to the fen, the total their sum.
    """
    start, end = month_bounds(month, zone)
    rows = [r for r in rows if start <= r.hour_start < end]
    table = tariff.kind_table()
    by_kind: dict[PeriodKind, Decimal] = {}
    imp_total = exp_total = load = pv_self_total = units = Decimal(0)
    savings = Decimal(0)
    for row in rows:
        local = row.hour_start.astimezone(zone)
        kind = table[local.month - 1][local.hour]
        imp, exp = kwh(row.grid_import_kwh), kwh(row.grid_export_kwh)
        pv_self = max(kwh(row.pv_kwh) - exp, Decimal(0))
        by_kind[kind] = by_kind.get(kind, Decimal(0)) + imp
        imp_total += imp
        exp_total += exp
        pv_self_total += pv_self
        load += kwh(row.load_kwh)
        units += Decimal(repr(row.production_units))
        savings += pv_self * (tariff.prices.of(kind) + tariff.surcharge_per_kwh)
    bill: list[BillLine] = []
    for kind in PERIOD_KINDS:
        if kind in by_kind:
            price = tariff.prices.of(kind)
            bill.append(
                BillLine(
                    f"energy_{kind}", by_kind[kind], "kWh", price, round_cny(by_kind[kind] * price)
                )
            )
    sur = tariff.surcharge_per_kwh
    bill.append(BillLine("surcharge", imp_total, "kWh", sur, round_cny(imp_total * sur)))
    peak = max_demand((b, kw) for b, kw in demand if start <= b < end)
    basic = basic_charge(tariff, peak, contracted_demand_kw)
    bill.append(
        BillLine(f"{basic.basis}_charge", basic.billed, basic.unit, basic.price, basic.amount_cny)
    )
    exp_price = tariff.export_price_per_kwh
    bill.append(
        BillLine("export_credit", exp_total, "kWh", exp_price, -round_cny(exp_total * exp_price))
    )
    total = sum((b.amount_cny for b in bill), Decimal(0))
    energy_cost = total - basic.amount_cny
    line_costs = tuple(
        _line_cost(ln, load, energy_cost, basic.amount_cny) for ln in lines if load > 0
    )
    return MonthlyBill(
        month=month,
        start=start,
        end=end,
        hours=len(rows),
        lines=tuple(bill),
        total_cny=total,
        energy_cost_cny=energy_cost,
        basic=basic,
        peak=peak,
        grid_import_kwh=imp_total,
        grid_export_kwh=exp_total,
        load_kwh=load,
        pv_self_kwh=pv_self_total,
        pv_savings_cny=round_cny(savings),
        production_units=units,
        cost_per_unit_cny=round_cny(total / units, PER_UNIT) if units > 0 else None,
        line_costs=line_costs,
        unallocated_cny=total - sum((c.total_cny for c in line_costs), Decimal(0)),
    )


def _line_cost(
    line: LineEnergy, load_kwh: Decimal, energy_cost: Decimal, basic_cny: Decimal
) -> LineCost:
    """A line's part of the month's cost by its share of the load energy; each part
    rounded half up to the fen, the total their sum."""
    energy = kwh(line.energy_kwh)
    units = Decimal(repr(line.production_units))
    energy_part = round_cny(energy_cost * energy / load_kwh)
    basic_part = round_cny(basic_cny * energy / load_kwh)
    total = energy_part + basic_part
    return LineCost(
        line=line.line,
        energy_kwh=energy,
        share=(energy / load_kwh).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP),
        energy_cost_cny=energy_part,
        basic_charge_cny=basic_part,
        total_cny=total,
        production_units=units,
        cost_per_unit_cny=round_cny(total / units, PER_UNIT) if units > 0 else None,
    )
