"""The period account of the hand-computed month (tests/carbon_engine/test_month_by_hand.py)
with a production line, two declared process emissions and declared heat, every source
written by hand to the gram.

The site (Asia/Shanghai): grid region east, MEE data year 2023; a gas boiler; rooftop PV;
a green-power contract (7,200 kWh) and 18 certificates for June 2026; a press line making
5 pcs an hour; [accounts] with a monthly welding-gas emission of 0.35 t, 0.0012 t CO2 per
pressed part, 120 GJ of purchased heat a month and 10 GJ sold on.

Every hour of June 2026 (720 hours): grid import 100 kWh; PV 50 kWh in the local hours
08:00-15:00; contract 10 kWh, certificates 25 kWh; natural gas 10 Nm3; 5 pcs pressed.

By hand (kg CO2):
- combustion: 7,200 Nm3 x 2.162188809 (GB/T 32150 Table B.1, natural gas) = 15,567.7594248
- process, welding gas: 1 month x 350 = 350.000
- process, pressing: 3,600 pcs x 1.2 = 4,320.000
- purchased electricity: 72,000 kWh x 0.5500 (MEE 2023 east) = 39,600.000
- purchased heat: 120 GJ x 110 (0.11 t/GJ) = 13,200.000
- exported heat: 10 GJ x 110 = 1,100.000 (deducted)
- E = 15,567.7594248 + 350 + 4,320 + 39,600 + 13,200 - 1,100 = 71,937.7594248
- market-based Scope 2: (100 - 10 - 25) x 720 = 46,800 kWh x 0.6096 = 28,529.280, plus the
  heat 13,200.000 = 41,729.280; market total 20,237.7594248 + 41,729.28 - 1,100
  = 60,867.0394248
"""

from __future__ import annotations

import tomllib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from zerocarbon.accounts.period import (
    AccountsError,
    compare_accounts,
    compute_account,
    load_factor_table,
    parse_period,
    shipped_factor_table,
    site_factor_table,
)
from zerocarbon.carbon_engine.factors import FACTORS_CSV
from zerocarbon.config import SiteConfig, parse_site
from zerocarbon.rows import HourlyCarbon, HourlyEnergy, HourlyLine

GRAM = 1e-3  # [kg]
ZONE = "Asia/Shanghai"
JUNE_START = datetime(2026, 5, 31, 16, tzinfo=UTC)  # 2026-06-01 00:00 in Shanghai
HOUR = timedelta(hours=1)

SITE_TOML = """
[site]
name = "hand-computed works"
timezone = "Asia/Shanghai"

[grid]
region = "east"
data_year = 2023

[mqtt]

[[devices]]
id = "grid_meter"
role = "grid"
protocol = "modbus_tcp"
host = "127.0.0.1"
profile = "eastron_sdm630"

[[devices]]
id = "pv_roof"
role = "pv"
protocol = "modbus_tcp"
host = "127.0.0.1"
profile = "sunspec_inverter_103"
port = 1502

[[devices]]
id = "boiler_gas"
role = "fuel"
fuel = "natural_gas"
protocol = "mqtt"
topic = "works/boiler"
fields = { volume = "gas_volume_nm3" }

[[devices]]
id = "press_count"
role = "production"
line = "press"
protocol = "mqtt"
topic = "works/press"
fields = { count = "production_count_units" }

[[lines]]
id = "press"
product = "stamped panel"
unit = "pcs"

[[green_power]]
id = "green_trade"
monthly_kwh = { "2026-06" = 7200.0 }

[[certificates]]
id = "gec_june"
count = 18
issued = "2026-05"
applies_to = "2026-06"

[accounts]
boundary = "operational control: the works at 1 Harbour Road"
sector = "machinery"
base_year = 2025

[accounts.organisation]
name = "Hand-Computed Works Co., Ltd."
credit_code = "91310000MA1FL0000X"

[[accounts.process_emissions]]
id = "welding"
source = "CO2 shielding gas used in welding"
t_co2_per_month = 0.35
method = "purchase records of CO2 cylinders"

[[accounts.process_emissions]]
id = "pressing"
source = "lubricant burn-off in the press line"
t_co2_per_unit = 0.0012
line = "press"
method = "engineering estimate, 2025 audit"

[accounts.heat]
gj_per_month = 120.0
exported_gj_per_month = 10.0
"""


def site_toml(factors_csv: Path | None = None) -> str:
    """The site file, optionally with an [accounts] factors_csv."""
    if factors_csv is None:
        return SITE_TOML
    return SITE_TOML.replace(
        "[accounts]\n", f'[accounts]\nfactors_csv = "{factors_csv.as_posix()}"\n', 1
    )


def hand_site(factors_csv: Path | None = None) -> SiteConfig:
    return parse_site(tomllib.loads(site_toml(factors_csv)), "site.toml")


def june_hours() -> list[datetime]:
    return [JUNE_START + i * HOUR for i in range(720)]


def _energy(
    hour: datetime, device: str, metric: str, delta: float, **faults: float
) -> HourlyEnergy:
    row = HourlyEnergy(hour, device, metric, delta, 0.0, 0, 0, 0, 0, 0, 0, 0, 0, True)
    return replace(row, **faults)  # type: ignore[arg-type]


def june_rows() -> tuple[list[HourlyCarbon], list[HourlyEnergy], list[HourlyLine]]:
    """The month's hourly rows, with injected faults: 5 grid hours estimated after gaps,
    a grid counter reset, a gas meter replacement and 2 rejected gas readings, and one
    incomplete gas hour."""
    carbon, energy, lines = [], [], []
    for i, h in enumerate(june_hours()):
        local_hour = i % 24
        pv = 50.0 if 8 <= local_hour < 16 else 0.0
        load = 100.0 + pv
        carbon.append(
            HourlyCarbon(
                hour_start=h,
                grid_import_kwh=100.0,
                grid_export_kwh=0.0,
                pv_kwh=pv,
                wind_kwh=0.0,
                battery_charge_kwh=0.0,
                battery_discharge_kwh=0.0,
                load_kwh=load,
                submetered_kwh=load,
                unmetered_kwh=0.0,
                production_units=5.0,
                scope1_kg=10 * 2.162188809,
                scope2_location_kg=55.0,
                scope2_market_kg=65 * 0.6096,
                green_contract_kwh=10.0,
                certificate_kwh=25.0,
                cfe_kwh=pv + 10.0,
                location_factor_kg_per_kwh=0.55,
                market_factor_kg_per_kwh=0.6096,
                intensity_kg_per_kwh=55.0 / load,
                market_intensity_kg_per_kwh=65 * 0.6096 / load,
                cfe_share=(pv + 10.0) / load,
                estimated_share=0.0,
                missing_devices=0,
                submeter_mismatches=0,
                complete=True,
            )
        )
        grid_faults: dict[str, float] = {}
        if i in (100, 101, 102, 103, 104):
            grid_faults = {"estimated": 100.0, "gaps": 1}
        if i == 300:
            grid_faults = {"resets": 1}
        energy.append(_energy(h, "grid_meter", "energy_import_kwh", 100.0, **grid_faults))
        gas_faults: dict[str, float] = {}
        if i == 200:
            gas_faults = {"replacements": 1, "estimated": 2.0}
        if i == 201:
            gas_faults = {"rejected": 2}
        if i == 719:
            gas_faults = {"complete": False}
        energy.append(_energy(h, "boiler_gas", "gas_volume_nm3", 10.0, **gas_faults))
        energy.append(_energy(h, "pv_roof", "energy_generated_kwh", pv))
        energy.append(_energy(h, "press_count", "production_count_units", 5.0))
        lines.append(HourlyLine(h, "press", 0.0, 5.0, None, 0.0, 0.0, None, 0.0))
    return carbon, energy, lines


def revised_table(tmp_path: Path, east_2023: float = 0.5400, version: str = "2026-09") -> Path:
    """A copy of the shipped table with another version and the 2023 east factor revised."""
    text = FACTORS_CSV.read_text(encoding="utf-8")
    old_version = shipped_factor_table().version
    assert f"Version: {old_version}" in text
    text = text.replace(f"Version: {old_version}", f"Version: {version}", 1)
    assert "2023,regional,east,0.5500,MEE-2023" in text
    text = text.replace(
        "2023,regional,east,0.5500,MEE-2023", f"2023,regional,east,{east_2023:.4f},MEE-2023"
    )
    path = tmp_path / "grid_factors_revised.csv"
    path.write_text(text, encoding="utf-8")
    return path


# --- periods ---------------------------------------------------------------------------


def test_periods_in_the_site_time_zone() -> None:
    june = parse_period("2026-06", ZONE)
    assert (june.start, june.end) == (JUNE_START, datetime(2026, 6, 30, 16, tzinfo=UTC))
    assert (june.kind, june.months, june.hours) == ("month", 1, 720)
    q2 = parse_period("2026-Q2", ZONE)
    assert (q2.start, q2.end) == (
        datetime(2026, 3, 31, 16, tzinfo=UTC),
        datetime(2026, 6, 30, 16, tzinfo=UTC),
    )
    assert (q2.kind, q2.months, q2.hours) == ("quarter", 3, 91 * 24)
    q4 = parse_period("2026-Q4", ZONE)
    assert q4.end == datetime(2026, 12, 31, 16, tzinfo=UTC)
    year = parse_period("2026", ZONE)
    assert (year.start, year.end, year.months, year.hours) == (
        datetime(2025, 12, 31, 16, tzinfo=UTC),
        datetime(2026, 12, 31, 16, tzinfo=UTC),
        12,
        8760,
    )
    # daylight saving: March 2026 in Berlin has one hour less
    assert parse_period("2026-03", "Europe/Berlin").hours == 31 * 24 - 1


@pytest.mark.parametrize("text", ["2026-13", "2026-Q5", "26-01", "2026-1", "June", ""])
def test_bad_periods_are_named(text: str) -> None:
    with pytest.raises(AccountsError, match="expected a month"):
        parse_period(text, ZONE)


# --- the hand-computed month -----------------------------------------------------------


def test_june_account_matches_the_hand_computation() -> None:
    site = hand_site()
    account = compute_account(site, parse_period("2026-06", ZONE), *june_rows())
    by_id = {s.id: s for s in account.sources}
    assert list(by_id) == [
        "combustion:boiler_gas",
        "process:welding",
        "process:pressing",
        "purchased_electricity:grid",
        "purchased_heat:declared",
        "exported_heat:declared",
    ]
    gas = by_id["combustion:boiler_gas"]
    assert (gas.activity, gas.activity_unit) == (7200.0, "Nm3")
    assert gas.factor.value == pytest.approx(2.162188809, abs=1e-9)
    assert gas.factor.unit == "kg CO2/Nm3"
    assert gas.factor.revision == "fuel table 2026-06"
    assert "B.1" in gas.factor.source
    assert gas.emissions_kg == pytest.approx(15_567.7594248, abs=GRAM)
    welding = by_id["process:welding"]
    assert (welding.activity, welding.activity_unit) == (1.0, "months")
    assert welding.emissions_kg == pytest.approx(350.000, abs=GRAM)
    assert welding.factor.source == "purchase records of CO2 cylinders"
    pressing = by_id["process:pressing"]
    assert (pressing.activity, pressing.activity_unit) == (3600.0, "pcs")
    assert pressing.factor.unit == "kg CO2/pcs"
    assert pressing.emissions_kg == pytest.approx(4_320.000, abs=GRAM)
    assert pressing.quality.devices == ("press_count",)
    grid = by_id["purchased_electricity:grid"]
    assert (grid.activity, grid.activity_unit) == (72_000.0, "kWh")
    assert grid.factor.value == 0.55
    assert grid.factor.revision == "2026-01/2023"
    assert grid.factor.provisional  # data year 2023 for a 2026 period
    assert grid.emissions_kg == pytest.approx(39_600.000, abs=GRAM)
    heat = by_id["purchased_heat:declared"]
    assert (heat.activity, heat.activity_unit, heat.factor.value) == (120.0, "GJ", 110.0)
    assert heat.emissions_kg == pytest.approx(13_200.000, abs=GRAM)
    exported = by_id["exported_heat:declared"]
    assert (exported.sign, exported.activity) == (-1, 10.0)
    assert exported.emissions_kg == pytest.approx(1_100.000, abs=GRAM)

    assert account.scope1_kg == pytest.approx(15_567.7594248 + 350 + 4_320, abs=GRAM)
    assert account.scope2_location_kg == pytest.approx(52_800.000, abs=GRAM)
    assert account.exported_kg == pytest.approx(1_100.000, abs=GRAM)
    assert account.total_location_kg == pytest.approx(71_937.7594248, abs=GRAM)
    assert account.scope2_market_kg == pytest.approx(41_729.280, abs=GRAM)
    assert account.total_market_kg == pytest.approx(60_867.0394248, abs=GRAM)
    assert account.energy["market_uncovered_kwh"] == pytest.approx(46_800.0, abs=GRAM)
    assert account.energy["pv_kwh"] == 12_000.0
    assert account.energy["load_kwh"] == 84_000.0
    assert account.market_factor.value == 0.6096

    data = account.to_json()
    assert data["totals"]["total_location_t"] == pytest.approx(71.9377594248, abs=1e-6)
    assert data["organisation"] == "Hand-Computed Works Co., Ltd."
    assert data["credit_code"] == "91310000MA1FL0000X"
    assert data["boundary"].startswith("operational control")
    assert data["sector_guide"].startswith("NDRC guideline for machinery")
    assert "CO2 from gas-shielded welding" in data["sector_process_sources"]
    assert data["base_year"] == 2025
    assert (data["hours_expected"], data["hours_with_results"]) == (720, 720)
    assert set(account.factor_revisions()) == {
        "fuel.natural_gas.gas_volume_nm3",
        "process.welding",
        "process.pressing",
        "grid.location",
        "grid.market",
        "heat",
    }


def test_data_quality_counts_the_injected_faults() -> None:
    account = compute_account(hand_site(), parse_period("2026-06", ZONE), *june_rows())
    by_id = {s.id: s for s in account.sources}
    grid = by_id["purchased_electricity:grid"].quality
    assert (grid.basis, grid.devices) == ("measured", ("grid_meter",))
    assert grid.metered == 72_000.0
    assert grid.estimated == 500.0
    assert grid.measured_share == pytest.approx(1 - 500 / 72_000)
    assert (grid.gaps, grid.resets, grid.rollovers, grid.replacements, grid.rejected) == (
        5,
        1,
        0,
        0,
        0,
    )
    assert (grid.hours_expected, grid.hours_reported, grid.hours_incomplete) == (720, 720, 0)
    gas = by_id["combustion:boiler_gas"].quality
    assert gas.estimated == 2.0
    assert gas.measured_share == pytest.approx(1 - 2 / 7200)
    assert (gas.replacements, gas.rejected, gas.gaps, gas.hours_incomplete) == (1, 2, 0, 1)
    assert by_id["process:welding"].quality.basis == "declared"
    assert by_id["process:welding"].quality.measured_share is None
    assert by_id["purchased_heat:declared"].quality.basis == "declared"


def test_missing_hours_are_counted_not_filled() -> None:
    carbon, energy, lines = june_rows()
    carbon = carbon[:700]  # the last 20 hours not computed yet
    account = compute_account(hand_site(), parse_period("2026-06", ZONE), carbon, energy, lines)
    assert (account.hours_expected, account.hours_with_results) == (720, 700)
    grid = next(s for s in account.sources if s.id == "purchased_electricity:grid")
    assert grid.activity == 70_000.0
    assert grid.emissions_kg == pytest.approx(38_500.000, abs=GRAM)


def test_a_quarter_scales_the_monthly_declarations() -> None:
    """2026-Q2 with only June's rows: 3 months of welding gas and heat, June's meters."""
    account = compute_account(hand_site(), parse_period("2026-Q2", ZONE), *june_rows())
    by_id = {s.id: s for s in account.sources}
    assert by_id["process:welding"].emissions_kg == pytest.approx(1_050.000, abs=GRAM)
    assert by_id["purchased_heat:declared"].activity == 360.0
    assert by_id["exported_heat:declared"].emissions_kg == pytest.approx(3_300.000, abs=GRAM)
    assert by_id["purchased_electricity:grid"].emissions_kg == pytest.approx(39_600.0, abs=GRAM)
    assert account.hours_expected == 2184
    assert by_id["purchased_electricity:grid"].quality.hours_reported == 720


def test_rows_outside_the_period_are_ignored() -> None:
    account = compute_account(hand_site(), parse_period("2026-07", ZONE), *june_rows())
    grid = next(s for s in account.sources if s.id == "purchased_electricity:grid")
    assert grid.activity == 0.0
    assert account.hours_with_results == 0
    # the gas meter is still a source, with nothing reported
    gas = next(s for s in account.sources if s.id == "combustion:boiler_gas")
    assert (gas.activity, gas.quality.hours_reported, gas.quality.measured_share) == (0.0, 0, None)


def test_exported_electricity_is_deducted_with_the_location_factor() -> None:
    """One day with 20 kWh exported every hour: 480 kWh x 0.55 = 264.000 kg deducted."""
    carbon, energy, lines = june_rows()
    day = [replace(r, grid_export_kwh=20.0) for r in carbon[:24]]
    period = parse_period("2026-06", ZONE)
    account = compute_account(hand_site(), period, day, energy[:96], lines[:24])
    by_id = {s.id: s for s in account.sources}
    exported = by_id["exported_electricity:grid"]
    assert (exported.sign, exported.activity) == (-1, 480.0)
    assert exported.emissions_kg == pytest.approx(264.000, abs=GRAM)
    # 2,400 kWh imported x 0.55 = 1,320; gas 240 Nm3; pressing 120 pcs; a month declared
    expected = 240 * 2.162188809 + 350 + 120 * 1.2 + 1_320 + 13_200 - 1_100 - 264
    assert account.total_location_kg == pytest.approx(expected, abs=GRAM)
    # market-based Scope 2 does not deduct exports (GHG Protocol)
    assert account.scope2_market_kg == pytest.approx(24 * 65 * 0.6096 + 13_200, abs=GRAM)


# --- factor revisions ------------------------------------------------------------------


def test_the_shipped_table_has_revisions() -> None:
    table = shipped_factor_table()
    assert table.version == "2026-01"
    row = table.get(2023, "regional", "east")
    assert row is not None and (row.value, row.revision) == (0.55, "2026-01/2023")
    assert table.get(2022, "regional", "east").revision == "2026-01/2022"  # type: ignore[union-attr]


def test_a_revision_changes_location_scope2_and_is_listed(tmp_path: Path) -> None:
    june = parse_period("2026-06", ZONE)
    rows = june_rows()
    issued = compute_account(hand_site(), june, *rows).to_json()
    site = hand_site(revised_table(tmp_path))
    table = site_factor_table(site)
    assert table.version == "2026-09"
    now = compute_account(site, june, *rows, table)
    grid = next(s for s in now.sources if s.id == "purchased_electricity:grid")
    assert grid.factor.revision == "2026-09/2023"
    assert grid.emissions_kg == pytest.approx(38_880.000, abs=GRAM)  # 72,000 x 0.5400
    assert now.total_location_kg == pytest.approx(71_937.7594248 - 720, abs=GRAM)

    changes = compare_accounts(issued, now.to_json())
    factor = [c for c in changes if c.kind == "factor" and c.source == "purchased_electricity:grid"]
    assert len(factor) == 1
    assert (factor[0].before, factor[0].after) == (0.55, 0.54)
    assert "2026-01/2023" in factor[0].why and "2026-09/2023" in factor[0].why
    emissions = [
        c for c in changes if c.kind == "emissions" and c.source == "purchased_electricity:grid"
    ]
    assert emissions[0].before == pytest.approx(39_600.0, abs=GRAM)
    assert emissions[0].after == pytest.approx(38_880.0, abs=GRAM)
    assert "-720.000 kg" in emissions[0].why
    total = [c for c in changes if c.source == "total"]
    assert total and "-720.000 kg" in total[0].why
    # the residual-mix row kept its value; its revision id moved with the file's version
    market = [c for c in changes if c.source == "scope2_market"]
    assert [c.kind for c in market] == ["factor"]
    assert market[0].before == market[0].after == 0.6096
    # nothing else changed: no activity changes, the fuel and heat untouched
    assert not [c for c in changes if c.kind == "activity"]
    assert {c.source for c in changes} == {"purchased_electricity:grid", "scope2_market", "total"}


def test_activity_changes_are_listed_by_how_much() -> None:
    june = parse_period("2026-06", ZONE)
    carbon, energy, lines = june_rows()
    issued = compute_account(hand_site(), june, carbon, energy, lines).to_json()
    carbon[5] = replace(carbon[5], grid_import_kwh=130.0)  # a late reading recomputed the hour
    now = compute_account(hand_site(), june, carbon, energy, lines).to_json()
    changes = compare_accounts(issued, now)
    activity = [c for c in changes if c.kind == "activity"]
    assert [(c.source, c.before, c.after) for c in activity] == [
        ("purchased_electricity:grid", 72_000.0, 72_030.0)
    ]
    assert "+30 kWh" in activity[0].why
    assert not [c for c in changes if c.kind == "factor"]
    assert compare_accounts(now, now) == []


def test_latest_factor_year_uses_a_newer_data_year(tmp_path: Path) -> None:
    """factor_year = "latest": once the table has the period's data year, it is used and
    the factor is no longer provisional."""
    path = revised_table(tmp_path)
    text = path.read_text(encoding="utf-8").rstrip("\n") + "\n2026,regional,east,0.5000,MEE-2026\n"
    path.write_text(text, encoding="utf-8")
    toml = site_toml(path).replace("[accounts]\n", '[accounts]\nfactor_year = "latest"\n', 1)
    site = parse_site(tomllib.loads(toml), "site.toml")
    account = compute_account(
        site, parse_period("2026-06", ZONE), *june_rows(), site_factor_table(site)
    )
    grid = next(s for s in account.sources if s.id == "purchased_electricity:grid")
    assert (grid.factor.value, grid.factor.revision, grid.factor.provisional) == (
        0.5,
        "2026-09/2026",
        False,
    )
    assert grid.emissions_kg == pytest.approx(36_000.000, abs=GRAM)
    # the residual mix has no 2026 row: the newest before the period, provisional
    assert account.market_factor.revision == "2026-09/2023"
    assert account.market_factor.provisional


def test_a_factor_table_without_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("data_year,scope,region,factor_kg_per_kwh,source\n", encoding="utf-8")
    with pytest.raises(AccountsError, match="no 'Version:' line"):
        load_factor_table(path)
    site = hand_site(tmp_path / "missing.csv")
    with pytest.raises(AccountsError, match="accounts.factors_csv"):
        site_factor_table(site)


def test_the_example_section_is_a_valid_accounts_section() -> None:
    """examples/accounts.toml replaces the hand site's [accounts] and gives its figures."""
    example = Path(__file__).resolve().parents[2] / "examples" / "accounts.toml"
    data = tomllib.loads(SITE_TOML)
    data["accounts"] = tomllib.loads(example.read_text(encoding="utf-8"))["accounts"]
    site = parse_site(data, "site.toml")
    assert site.accounts.sector == "machinery" and site.accounts.base_year == 2025
    account = compute_account(site, parse_period("2026-06", ZONE), *june_rows())
    assert account.total_location_kg == pytest.approx(71_937.7594248, abs=GRAM)


@pytest.mark.parametrize(
    ("accounts", "message"),
    [
        ({"sector": "bakery"}, "unknown sector 'bakery'"),
        (
            {"process_emissions": [{"id": "x", "source": "s"}]},
            "x: set exactly one of t_co2_per_month, t_co2_per_unit",
        ),
        (
            {"process_emissions": [{"id": "x", "source": "s", "t_co2_per_unit": 1.0}]},
            "x: t_co2_per_unit needs the line",
        ),
        (
            {"process_emissions": [{"id": "x", "source": "s", "t_co2_per_month": 1, "line": "a"}]},
            "x: line only goes with t_co2_per_unit",
        ),
        ({"organisation": {"name": "A", "credit_code": "123"}}, "credit_code"),
        ({"heat": {"gj_per_month": -1}}, "gj_per_month"),
        ({"base_year": 1990}, "base_year"),
        ({"boundry": "typo"}, "boundry"),
    ],
)
def test_bad_accounts_sections_are_named(accounts: dict[str, object], message: str) -> None:
    data = tomllib.loads(SITE_TOML)
    data["accounts"] = accounts
    with pytest.raises(ValueError, match=message):
        parse_site(data, "site.toml")


def test_check_accounts_names_an_unknown_line() -> None:
    from zerocarbon.config_accounts import check_accounts

    data = tomllib.loads(SITE_TOML)
    data["accounts"]["process_emissions"][1]["line"] = "paint"
    try:
        site = parse_site(data, "site.toml")
    except ValueError as exc:  # SiteConfig calls check_accounts
        assert "accounts.process_emissions[1].line: no production line 'paint'" in str(exc)
        return
    with pytest.raises(ValueError, match=r"process_emissions\[1\]\.line: no production line"):
        check_accounts(site)
