"""Energy cost (zerocarbon.accounts.cost): a month's bill computed by hand to 0.01 CNY,
hour-to-period mapping across midnight and season boundaries in Asia/Shanghai, the
demand floor, rounding, export and PV self-consumption.

The hand-computed month is the one of ``tests/carbon_engine/test_month_by_hand.py``
(Asia/Shanghai, June 2026, 720 hours): grid import 100 kWh every hour, no export, PV
50 kWh in the local hours 08-15 (load 150 kWh then, else 100 kWh: 84,000 kWh), plus two
lines and a TOU tariff with a demand charge (:func:`_tariff`, :func:`_month_rows`).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from tests.api.conftest import hourly_row
from zerocarbon.accounts.cost import (
    DemandPeak,
    LineEnergy,
    basic_charge,
    hourly_cost,
    kwh,
    max_demand,
    month_bounds,
    monthly_bill,
    period_kind,
    round_cny,
)
from zerocarbon.config import SiteConfig, parse_site
from zerocarbon.config_tariff import TariffConfig, check_tariff, hour_ranges
from zerocarbon.rows import HourlyCarbon

ZONE = ZoneInfo("Asia/Shanghai")
D = Decimal


def _tariff(**changes: object) -> TariffConfig:
    """The test tariff (numbers of the test, not of any province):

    prices [CNY/kWh] critical peak 1.2232, peak 1.0193, flat 0.6137, valley 0.2871;
    surcharge 0.02888; export 0.391; demand 38.4 CNY/(kW month), floor 40 %.
    Summer (June-August): valley 00-08, peak 08-10 and 17-22, critical peak 10-11, flat
    the rest (11-17, 22-24). Winter (December-February): valley 22-06 (across midnight),
    peak 18-20, critical peak 20-21. Shoulder (March-May, September-November): valley
    00-08, peak 08-11.
    """
    raw: dict[str, object] = {
        "prices": {
            "critical_peak": "1.2232",
            "peak": 1.0193,
            "flat": 0.6137,
            "valley": 0.2871,
        },
        "surcharge_per_kwh": 0.02888,
        "export_price_per_kwh": 0.391,
        "seasons": [
            {
                "name": "summer",
                "months": [6, 7, 8],
                "valley": ["00-08"],
                "peak": ["08-10", "17-22"],
                "critical_peak": ["10-11"],
            },
            {
                "name": "winter",
                "months": [12, 1, 2],
                "valley": ["22-06"],
                "peak": ["18-20"],
                "critical_peak": ["20-21"],
            },
            {
                "name": "shoulder",
                "months": [3, 4, 5, 9, 10, 11],
                "valley": ["00-08"],
                "peak": ["08-11"],
            },
        ],
        "basis": "demand",
        "demand_price_per_kw_month": 38.4,
    }
    raw.update(changes)
    return TariffConfig.model_validate(raw)


def _local(*args: int) -> datetime:
    return datetime(*args, tzinfo=ZONE).astimezone(UTC)


def _month_rows() -> list[HourlyCarbon]:
    start, end = month_bounds("2026-06", ZONE)
    rows = []
    hour = start
    while hour < end:
        daylight = 8 <= hour.astimezone(ZONE).hour < 16
        rows.append(
            hourly_row(
                hour,
                grid_import_kwh=100.0,
                pv_kwh=50.0 if daylight else 0.0,
                production_units=15.0,
            )
        )
        hour += timedelta(hours=1)
    return rows


def _month_demand() -> list[tuple[datetime, float]]:
    """100 kW in every 15 minutes of June, 180 kW in 10:15-10:30 local on June 15,
    and 500 kW just outside the month on both sides (must be ignored)."""
    start, end = month_bounds("2026-06", ZONE)
    out = [(start - timedelta(minutes=15), 500.0)]
    bucket = start
    while bucket < end:
        out.append((bucket, 100.0))
        bucket += timedelta(minutes=15)
    out.append((end, 500.0))
    peak_at = _local(2026, 6, 15, 10, 15)
    return [(b, 180.0 if b == peak_at else kw) for b, kw in out]


LINES = (
    LineEnergy("line_a", 40.0 * 720, 10.0 * 720),  # 40 kWh, 10 units every hour
    LineEnergy("line_b", 50.0 * 720, 5.0 * 720),  # 50 kWh, 5 units every hour
)


def test_june_2026_bill_matches_the_hand_computation() -> None:
    rows = _month_rows()
    assert len(rows) == 720
    bill = monthly_bill(_tariff(), "2026-06", ZONE, rows, _month_demand(), 400.0, LINES)

    # Import 100 kWh every hour; a June day has 8 valley hours (00-08), 7 peak (08-10,
    # 17-22), 1 critical peak (10-11) and 8 flat (11-17, 22-24); x 30 days:
    #   valley        8 x 100 x 30 = 24,000 kWh x 0.2871 =  6,890.40
    #   peak          7 x 100 x 30 = 21,000 kWh x 1.0193 = 21,405.30
    #   critical peak 1 x 100 x 30 =  3,000 kWh x 1.2232 =  3,669.60
    #   flat          8 x 100 x 30 = 24,000 kWh x 0.6137 = 14,728.80
    #   surcharge                    72,000 kWh x 0.02888 =  2,079.36
    # Max demand 180 kW (June 15 10:15 local); floor 0.4 x 400 = 160 kW < 180:
    #   demand charge                    180 kW x 38.4   =  6,912.00
    #   export credit                      0 kWh x 0.391 =     -0.00
    # total = 6,890.40 + 21,405.30 + 3,669.60 + 14,728.80 + 2,079.36 + 6,912.00 = 55,685.46
    assert [(b.item, b.quantity, b.amount_cny) for b in bill.lines] == [
        ("energy_critical_peak", D("3000"), D("3669.60")),
        ("energy_peak", D("21000"), D("21405.30")),
        ("energy_flat", D("24000"), D("14728.80")),
        ("energy_valley", D("24000"), D("6890.40")),
        ("surcharge", D("72000"), D("2079.36")),
        ("demand_charge", D("180"), D("6912.00")),
        ("export_credit", D("0"), D("0.00")),
    ]
    assert bill.total_cny == D("55685.46")
    assert bill.energy_cost_cny == D("48773.46")  # total - demand charge
    assert bill.hours == 720
    assert bill.peak == DemandPeak(180.0, _local(2026, 6, 15, 10, 15))
    assert bill.basic.floor_kw == D("160.000")
    assert bill.load_kwh == D("84000")

    # PV 50 kWh self-consumed in local hours 08-15: 2 peak, 1 critical peak, 5 flat.
    #   a day: 50 x (2 x 1.0193 + 1.2232 + 5 x 0.6137) = 50 x 6.3303 = 316.515
    #          + 8 x 50 x 0.02888 (surcharge avoided)              =  11.552
    #   30 days: 30 x 328.067 = 9,842.01
    assert bill.pv_self_kwh == D("12000")
    assert bill.pv_savings_cny == D("9842.01")

    # Lines, by share of the load (84,000 kWh):
    #   line_a 28,800 kWh = 12/35: energy 48,773.46 x 12/35 = 16,722.329 -> 16,722.33
    #                               demand  6,912.00 x 12/35 =  2,369.829 ->  2,369.83
    #                               total 19,092.16 / 7,200 units = 2.651689 -> 2.6517
    #   line_b 36,000 kWh = 15/35: energy 48,773.46 x 3/7 = 20,902.911 -> 20,902.91
    #                               demand  6,912.00 x 3/7 =  2,962.286 ->  2,962.29
    #                               total 23,865.20 / 3,600 units = 6.629222 -> 6.6292
    a, b = bill.line_costs
    assert (a.line, a.energy_cost_cny, a.basic_charge_cny, a.total_cny) == (
        "line_a",
        D("16722.33"),
        D("2369.83"),
        D("19092.16"),
    )
    assert a.cost_per_unit_cny == D("2.6517")
    assert (b.line, b.energy_cost_cny, b.basic_charge_cny, b.total_cny) == (
        "line_b",
        D("20902.91"),
        D("2962.29"),
        D("23865.20"),
    )
    assert b.cost_per_unit_cny == D("6.6292")
    # unmetered load's part: 55,685.46 - 19,092.16 - 23,865.20 = 12,728.10
    assert bill.unallocated_cny == D("12728.10")
    # site: 15 units an hour, 10,800 units; 55,685.46 / 10,800 = 5.156061 -> 5.1561
    assert bill.production_units == D("10800")
    assert bill.cost_per_unit_cny == D("5.1561")


def test_hourly_costs_add_up_to_the_energy_lines_of_the_hand_month() -> None:
    hours = hourly_cost(_tariff(), _month_rows(), ZONE)
    assert sum(h.energy_cny for h in hours) == D("46694.10")  # the four energy lines
    # each hour rounded on its own: 100 x 0.02888 = 2.888 -> 2.89, x 720 = 2,080.80, not
    # the bill's 2,079.36 (72,000 kWh priced once): why the bill does not sum the hours
    assert sum(h.surcharge_cny for h in hours) == D("2080.80")
    # PV savings an hour: peak 50 x 1.04818 = 52.409 -> 52.41, critical peak 50 x
    # 1.25208 = 62.604 -> 62.60, flat 50 x 0.64258 = 32.129 -> 32.13; a day 2 x 52.41 +
    # 62.60 + 5 x 32.13 = 328.07, x 30 = 9,842.10 (the bill, rounded once: 9,842.01)
    assert sum(h.pv_savings_cny for h in hours) == D("9842.10")
    ten = next(h for h in hours if h.hour_start == _local(2026, 6, 1, 10))
    assert (ten.period, ten.energy_cny, ten.pv_savings_cny) == (
        "critical_peak",
        D("122.32"),  # 100 x 1.2232
        D("62.60"),  # 50 x (1.2232 + 0.02888) = 62.604 -> 62.60
    )


@pytest.mark.parametrize(
    ("local", "kind"),
    [
        # summer day across midnight: 23:00 flat, 00:00 valley
        ((2026, 6, 30, 23), "flat"),
        ((2026, 7, 1, 0), "valley"),
        ((2026, 7, 1, 7), "valley"),
        ((2026, 7, 1, 8), "peak"),
        ((2026, 7, 1, 10), "critical_peak"),
        ((2026, 7, 1, 21), "peak"),
        ((2026, 7, 1, 22), "flat"),
        # season boundary at local midnight (UTC still on August 31): summer -> shoulder
        ((2026, 8, 31, 10), "critical_peak"),
        ((2026, 9, 1, 10), "peak"),
        ((2026, 9, 1, 11), "flat"),
        # shoulder -> winter, then winter's valley wrapping past midnight (22-06)
        ((2026, 11, 30, 22), "flat"),
        ((2026, 12, 1, 22), "valley"),
        ((2026, 12, 31, 23), "valley"),
        ((2027, 1, 1, 0), "valley"),
        ((2027, 1, 1, 5), "valley"),
        ((2027, 1, 1, 6), "flat"),
        ((2027, 1, 1, 20), "critical_peak"),
        ((2027, 2, 28, 23), "valley"),
        ((2027, 3, 1, 0), "valley"),
        ((2027, 3, 1, 22), "flat"),
    ],
)
def test_period_of_the_local_hour(local: tuple[int, int, int, int], kind: str) -> None:
    assert period_kind(_tariff(), _local(*local), ZONE) == kind


def test_the_utc_date_is_not_the_local_one() -> None:
    # 2026-08-31T16:00Z is 2026-09-01 00:00 in Asia/Shanghai: shoulder's valley
    hour = datetime(2026, 8, 31, 16, tzinfo=UTC)
    assert period_kind(_tariff(), hour, ZONE) == "valley"
    # the same instant read in UTC would be summer's 16:00, flat: the zone matters
    assert period_kind(_tariff(), hour, ZoneInfo("UTC")) == "flat"


def test_month_bounds_are_local_midnights() -> None:
    assert month_bounds("2026-06", ZONE) == (
        datetime(2026, 5, 31, 16, tzinfo=UTC),
        datetime(2026, 6, 30, 16, tzinfo=UTC),
    )
    assert month_bounds("2026-12", ZONE)[1] == datetime(2026, 12, 31, 16, tzinfo=UTC)
    with pytest.raises(ValueError, match="not YYYY-MM"):
        month_bounds("2026-13", ZONE)


def test_demand_floor() -> None:
    tariff = _tariff()
    peak = DemandPeak(180.0, _local(2026, 6, 15, 10, 15))
    # contracted 500 kW: floor 200 kW > 180 measured -> billed 200 x 38.4 = 7,680.00
    low = basic_charge(tariff, peak, 500.0)
    assert (low.measured_kw, low.floor_kw, low.billed, low.amount_cny) == (
        D("180.000"),
        D("200.000"),
        D("200.000"),
        D("7680.00"),
    )
    # contracted 450 kW: floor exactly 180 -> billed 180 (6,912.00)
    assert basic_charge(tariff, peak, 450.0).amount_cny == D("6912.00")
    # a floor share of the contract's own (0.5 of 400 = 200 kW)
    half = basic_charge(_tariff(demand_floor_share="0.5"), peak, 400.0)
    assert half.billed == D("200.000")
    # no demand recorded at all: billed at the floor
    assert basic_charge(tariff, None, 400.0).billed == D("160.000")
    # no contracted demand: no floor, the measured demand
    assert basic_charge(tariff, peak, None).billed == D("180.000")


def test_capacity_basis() -> None:
    tariff = _tariff(
        basis="capacity", capacity_price_per_kva_month="25.6", contracted_capacity_kva=630
    )
    # 630 kVA x 25.6 = 16,128.00, whatever the demand
    charge = basic_charge(tariff, DemandPeak(900.0, _local(2026, 6, 1)), 400.0)
    assert (charge.basis, charge.billed, charge.unit, charge.amount_cny) == (
        "capacity",
        D("630"),
        "kVA",
        D("16128.00"),
    )


def test_max_demand_is_import_only_and_the_earliest_of_equals() -> None:
    t = [_local(2026, 6, 1, 0, 15 * k) for k in range(4)]
    assert max_demand([(t[0], -50.0), (t[1], 80.0), (t[2], 80.0), (t[3], 10.0)]) == DemandPeak(
        80.0, t[1]
    )
    assert max_demand([(t[0], -50.0)]) == DemandPeak(0.0, t[0])
    assert max_demand([]) is None


def test_rounding_is_half_up_to_the_fen() -> None:
    assert round_cny(D("0.125")) == D("0.13")  # banker's rounding would give 0.12
    assert round_cny(D("-0.125")) == D("-0.13")
    assert round_cny(D("2.004999")) == D("2.00")
    assert kwh(0.1 + 0.2) == D("0.300")  # floats read to the watt-hour
    # 1 kWh at 0.6137 + 0.02888 surcharge: amounts of 0.61 and 0.03 (0.6137, 0.02888)
    row = hourly_row(_local(2026, 6, 1, 12), grid_import_kwh=1.0, pv_kwh=0.0)
    (hour,) = hourly_cost(_tariff(), [row], ZONE)
    assert (hour.energy_cny, hour.surcharge_cny, hour.net_cny) == (D("0.61"), D("0.03"), D("0.64"))


def test_export_credit_and_self_consumption() -> None:
    # a flat hour (12:00 in June): PV 50 kWh, 20 kWh of it exported, import 0
    row = replace(
        hourly_row(_local(2026, 6, 1, 12), grid_import_kwh=0.0, pv_kwh=50.0),
        grid_export_kwh=20.0,
        load_kwh=30.0,
    )
    (hour,) = hourly_cost(_tariff(), [row], ZONE)
    assert hour.pv_self_kwh == D("30.000")
    assert hour.export_credit_cny == D("7.82")  # 20 x 0.391
    assert hour.net_cny == D("-7.82")
    assert hour.pv_savings_cny == D("19.28")  # 30 x (0.6137 + 0.02888) = 19.2774
    # exported more than generated (battery discharging into the grid): never negative
    (other,) = hourly_cost(_tariff(), [replace(row, pv_kwh=10.0)], ZONE)
    assert other.pv_self_kwh == D("0")
    bill = monthly_bill(_tariff(), "2026-06", ZONE, [row], [], 400.0)
    assert bill.lines[-1].item == "export_credit"
    assert bill.lines[-1].amount_cny == D("-7.82")
    # a flat kWh only: no energy lines but flat; demand billed at the floor 160 x 38.4
    assert [b.item for b in bill.lines] == [
        "energy_flat",
        "surcharge",
        "demand_charge",
        "export_credit",
    ]
    assert bill.total_cny == D("0.00") + D("0.00") + D("6144.00") - D("7.82")


def test_hour_ranges() -> None:
    assert hour_ranges(("22-06",)) == [22, 23, 0, 1, 2, 3, 4, 5]
    assert hour_ranges(("00-24",)) == list(range(24))
    for bad in ("8-11", "08-25", "08-08", "24-02"):
        with pytest.raises(ValueError):
            hour_ranges((bad,))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"seasons": [{"name": "all", "months": list(range(1, 12))}]}, r"months \[12\]"),
        (
            {
                "seasons": [
                    {"name": "a", "months": list(range(1, 13))},
                    {"name": "b", "months": [3]},
                ]
            },
            "month 3 is already in season 'a'",
        ),
        (
            {
                "seasons": [
                    {
                        "name": "a",
                        "months": list(range(1, 13)),
                        "peak": ["08-12"],
                        "valley": ["11-13"],
                    }
                ]
            },
            "local hour 11 is both peak and valley",
        ),
        ({"demand_price_per_kw_month": None}, "needs demand_price_per_kw_month"),
        ({"basis": "capacity"}, "needs capacity_price_per_kva_month"),
        ({"prices": {"peak": 1, "flat": 0.6, "valley": 0.3}}, "prices.critical_peak is not set"),
        ({"seasons": [{"name": "a", "months": list(range(1, 13)), "peak": ["8-11"]}]}, "HH-HH"),
        ({"surcharge": 0.03}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_tariffs_say_why(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _tariff(**changes)


def test_check_tariff_needs_a_contracted_demand_for_the_demand_basis() -> None:
    def site(grid: dict[str, object]) -> SiteConfig:
        return parse_site(
            {
                "site": {"timezone": "Asia/Shanghai"},
                "grid": grid,
                "mqtt": {},
                "devices": [
                    {
                        "id": "grid_meter",
                        "role": "grid",
                        "protocol": "mqtt",
                        "topic": "works/grid",
                        "fields": {"e": "energy_import_kwh"},
                    }
                ],
                "tariff": _tariff().model_dump(mode="json"),
            }
        )

    check_tariff(site({"contracted_demand_kw": 400}))
    with pytest.raises(ValueError, match="contracted_demand_kw"):
        check_tariff(site({}))
