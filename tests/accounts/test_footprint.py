"""Product carbon footprints (GB/T 24067-2024 / ISO 14067:2018) of the hand-computed June
2026 (tests/accounts/test_period.py), with two products on two lines, to the gram.

The site of test_period plus two line sub-meters and a second line:
- line ``press`` (product ``panel``, pcs, 8 kg/pc): 40 kWh and 5 pcs every hour;
- line ``weld`` (product ``frame``, pcs, 25 kg/pc): 30 kWh and 2 pcs every hour.
Site load 100 kWh at night (480 h), 150 kWh in the 240 daylight hours (PV 50); grid
import 100 kWh every hour, of which 65 kWh not covered by the contract and certificates.
Grid factors: location 0.5500 (MEE 2023 east), market 0.6096 (residual mix).

By hand (kg CO2), each hour a line carries (line kWh / load kWh) of the grid emissions:
- press, location: 480 x 0.4 x 100 x 0.55 + 240 x (40/150) x 100 x 0.55
  = 10,560 + 3,520 = 14,080.000; market: 480 x 0.4 x 65 x 0.6096 + 240 x (40/150) x 65
  x 0.6096 = 7,607.808 + 2,535.936 = 10,143.744
- weld, location: 480 x 0.3 x 55 + 240 x 0.2 x 55 = 7,920 + 2,640 = 10,560.000; market
  5,705.856 + 1,901.952 = 7,607.808
- unmetered load (30 kWh at night, 80 in daylight: 33,600 kWh): location 480 x 0.3 x 55
  + 240 x (80/150) x 55 = 7,920 + 7,040 = 14,960.000; market 5,705.856 + 5,071.872
  = 10,777.728
- site fuel: 7,200 Nm3 x 2.162188809 = 15,567.7594248; welding gas 350.000 a month; net
  heat (120 - 10) GJ x 110 = 12,100.000
- site-level: location 14,960 + 15,567.7594248 + 350 + 12,100 = 42,977.7594248; market
  10,777.728 + 15,567.7594248 + 350 + 12,100 = 38,795.4874248
- on the press line: pressing 3,600 pcs x 1.2 = 4,320.000
- check: 14,080 + 4,320 + 10,560 + 42,977.7594248 = 71,937.7594248 = the period's E.

Allocation keys (press : weld): units 3,600 : 1,440 = 5/7 : 2/7; mass 28,800 kg :
36,000 kg = 4/9 : 5/9; energy 28,800 kWh : 21,600 kWh = 4/7 : 3/7.
- units: panel 14,080 + 4,320 + 5/7 x 42,977.7594248 = 49,098.3995891 kg, 13.6384443
  kg/pc; market 10,143.744 + 4,320 + 5/7 x 38,795.4874248 = 42,174.8064463;
  frame 10,560 + 2/7 x 42,977.7594248 = 22,839.3598357 kg, 15.8606666 kg/pc
- mass: panel 18,400 + 4/9 x 42,977.7594248 = 37,501.2264110 (10.4170073 kg/pc);
  frame 10,560 + 5/9 x 42,977.7594248 = 34,436.5330138 (23.9142590 kg/pc)
- energy: panel 18,400 + 4/7 x 42,977.7594248 = 42,958.7196713 (11.9329777 kg/pc);
  frame 10,560 + 3/7 x 42,977.7594248 = 28,979.0397535 (20.1243332 kg/pc)
Upstream per unit: panel steel 8.4 x 2.0 + coating 0.1 x 3.5 = 17.15; road 0.504 t km x
0.10650 = 0.053676; frame steel 26 x 2.2 = 57.2; rail 2.6 x 0.02779 + inland waterway
1.0 x 0.030 = 0.102254.
"""

from __future__ import annotations

import tomllib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.accounts.test_period import GRAM, JUNE_START, SITE_TOML, june_hours, june_rows
from zerocarbon.accounts.footprint import (
    Footprint,
    compute_footprints,
    grain_windows,
    window_period,
)
from zerocarbon.accounts.period import AccountsError, compute_account, parse_period
from zerocarbon.config import SiteConfig, SiteConfigError, parse_site
from zerocarbon.rows import HourlyCarbon, HourlyEnergy, HourlyLine

ZONE = "Asia/Shanghai"
JUNE_END = datetime(2026, 6, 30, 16, tzinfo=UTC)

EXTRA_TOML = """
[[devices]]
id = "press_meter"
role = "load"
line = "press"
protocol = "mqtt"
topic = "works/press/meter"
fields = { energy_kwh = "energy_import_kwh" }

[[devices]]
id = "weld_meter"
role = "load"
line = "weld"
protocol = "mqtt"
topic = "works/weld/meter"
fields = { energy_kwh = "energy_import_kwh" }

[[devices]]
id = "weld_count"
role = "production"
line = "weld"
protocol = "mqtt"
topic = "works/weld"
fields = { count = "production_count_units" }

[[lines]]
id = "weld"
product = "welded frame"
unit = "pcs"

[[accounts.products]]
id = "panel"
line = "press"
name = "stamped panel"
unit = "pcs"
mass_kg_per_unit = 8.0
allocation = "KEY"
energy_limit_kgce_per_unit = LIMIT_PANEL
limit_standard = "GB 3xxxx-20xx Level 1 (example)"

[[accounts.products.materials]]
material = "cold-rolled steel sheet"
supplier = "Baoshan"
kg_per_unit = 8.4
factor_kg_co2e_per_kg = 2.0
source = "supplier EPD S-P-01234"

[[accounts.products.materials]]
material = "zinc coating"
kg_per_unit = 0.1
factor_kg_co2e_per_kg = 3.5
source = "database CLCD 0.9"

[[accounts.products.logistics]]
mode = "road"
tonne_km_per_unit = 0.504

[[accounts.products]]
id = "frame"
line = "weld"
name = "welded frame"
unit = "pcs"
mass_kg_per_unit = 25.0
allocation = "KEY"

[[accounts.products.materials]]
material = "steel tube"
kg_per_unit = 26.0
factor_kg_co2e_per_kg = 2.2
source = "estimate from the 2025 purchase mix"

[[accounts.products.logistics]]
mode = "rail"
tonne_km_per_unit = 2.6

[[accounts.products.logistics]]
mode = "inland_waterway"
tonne_km_per_unit = 1.0
factor_kg_co2e_per_tkm = 0.030
source = "carrier's ISO 14083 statement 2025"
"""

SCORECARD_TOML = """
[accounts.scorecard]
renewable_share_min = RENEW
renewable_share_source = "Guiding Opinions on Zero-Carbon Factories (2026), example value"
electrification_share_min = ELEC
electrification_share_source = "Guiding Opinions on Zero-Carbon Factories (2026), example"
base_year = 2025
base_year_t_co2 = 1000.0
reduction_target_share = REDUCTION
reduction_target_source = "the site's zero-carbon plan 2026-2030"
offsets_rule_source = "Guiding Opinions on Zero-Carbon Factories (2026): offsets last"
"""


def two_line_toml(
    key: str = "units",
    limit_panel: float = 5.0,
    renew: float = 0.4,
    elec: float = 0.4,
    reduction: float = 0.1,
) -> str:
    """The site file with two products, their allocation key and the scorecard."""
    body = SITE_TOML.replace("[accounts]\n", "[accounts]\n", 1)
    extra = EXTRA_TOML.replace("KEY", key).replace("LIMIT_PANEL", repr(limit_panel))
    card = (
        SCORECARD_TOML.replace("RENEW", repr(renew))
        .replace("ELEC", repr(elec))
        .replace("REDUCTION", repr(reduction))
    )
    return body + extra + card


def two_line_site(key: str = "units", **thresholds: float) -> SiteConfig:
    return parse_site(tomllib.loads(two_line_toml(key, **thresholds)), "site.toml")


def two_line_rows() -> tuple[list[HourlyCarbon], list[HourlyEnergy], list[HourlyLine]]:
    """test_period's June with the two lines; 20 kWh of the press line estimated once."""
    carbon, energy, _ = june_rows()
    lines = []
    for i, h in enumerate(june_hours()):
        est = 0.5 if i == 100 else 0.0
        lines.append(HourlyLine(h, "press", 40.0, 5.0, 8.0, 0.0, 0.0, None, est))
        lines.append(HourlyLine(h, "weld", 30.0, 2.0, 15.0, 0.0, 0.0, None, 0.0))
    return carbon, energy, lines


def june_prints(key: str) -> dict[str, Footprint]:
    site = two_line_site(key)
    carbon, energy, lines = two_line_rows()
    prints = compute_footprints(site, "2026-06", JUNE_START, JUNE_END, carbon, energy, lines)
    return {fp.product: fp for fp in prints}


def test_components_of_the_panel_by_units() -> None:
    fp = june_prints("units")["panel"]
    c = {x.id: x for x in fp.components}
    assert fp.units == 3600.0
    assert fp.allocation_share == pytest.approx(5 / 7, abs=1e-15)
    el = c["line_electricity"]
    assert el.kg_co2e == pytest.approx(14_080.0, abs=GRAM)
    assert el.kg_co2e_market == pytest.approx(10_143.744, abs=GRAM)
    assert el.data_source == "metered"
    assert el.measured_share == pytest.approx(1 - 20 / 28_800, abs=1e-12)
    assert c["line_process:pressing"].kg_co2e == pytest.approx(4_320.0, abs=GRAM)
    assert c["line_process:pressing"].data_source == "declared"
    # site-level parts, 5/7 each, "allocated by units"
    assert c["site:unmetered_electricity"].kg_co2e == pytest.approx(14_960 * 5 / 7, abs=GRAM)
    assert c["site:unmetered_electricity"].kg_co2e_market == pytest.approx(
        10_777.728 * 5 / 7, abs=GRAM
    )
    assert c["site:fuels"].kg_co2e == pytest.approx(15_567.7594248 * 5 / 7, abs=GRAM)
    assert c["site:fuels"].measured_share == pytest.approx(1 - 2 / 7_200, abs=1e-12)
    assert c["site:process:welding"].kg_co2e == pytest.approx(250.0, abs=GRAM)
    assert c["site:heat"].kg_co2e == pytest.approx(12_100 * 5 / 7, abs=GRAM)
    assert {x.data_source for x in fp.components if x.id.startswith("site:")} == {
        "allocated by units"
    }
    # upstream, each with its data source
    assert c["material:cold-rolled steel sheet"].kg_co2e == pytest.approx(3600 * 16.8, abs=GRAM)
    assert c["material:cold-rolled steel sheet"].data_source == "supplier"
    assert c["material:zinc coating"].data_source == "database"
    assert c["logistics:road"].kg_co2e == pytest.approx(3600 * 0.053676, abs=GRAM)
    assert c["logistics:road"].data_source == "database"

    assert fp.gate_to_gate_kg == pytest.approx(49_098.3995891, abs=GRAM)
    assert fp.gate_to_gate_market_kg == pytest.approx(42_174.8064463, abs=GRAM)
    assert fp.per_unit(fp.gate_to_gate_kg) == pytest.approx(13.638444330, abs=1e-8)
    # cradle to gate: + 3,600 x (17.15 + 0.053676) = 61,933.2336
    assert fp.cradle_to_gate_kg == pytest.approx(49_098.3995891 + 61_933.2336, abs=GRAM)
    assert fp.per_unit(fp.cradle_to_gate_kg) == pytest.approx(13.638444330 + 17.203676, abs=1e-8)


def test_the_frame_and_the_whole_site_add_up() -> None:
    prints = june_prints("units")
    frame = prints["frame"]
    c = {x.id: x for x in frame.components}
    assert c["line_electricity"].kg_co2e == pytest.approx(10_560.0, abs=GRAM)
    assert c["line_electricity"].kg_co2e_market == pytest.approx(7_607.808, abs=GRAM)
    assert frame.gate_to_gate_kg == pytest.approx(22_839.3598357, abs=GRAM)
    assert c["logistics:rail"].kg_co2e == pytest.approx(1440 * 2.6 * 0.02779, abs=GRAM)
    assert c["logistics:inland_waterway"].data_source == "declared"
    assert c["material:steel tube"].data_source == "estimate"
    assert frame.cradle_to_gate_kg == pytest.approx(
        22_839.3598357 + 1440 * (57.2 + 0.102254), abs=GRAM
    )
    # both products' gate-to-gate = the period's GB/T 32150 E (no export deducted here)
    site = two_line_site("units")
    carbon, energy, lines = two_line_rows()
    account = compute_account(site, parse_period("2026-06", ZONE), carbon, energy, lines)
    total = sum(fp.gate_to_gate_kg for fp in prints.values())
    assert total == pytest.approx(account.total_location_kg, abs=GRAM)
    assert total == pytest.approx(71_937.7594248, abs=GRAM)


@pytest.mark.parametrize(
    ("key", "panel_kg", "frame_kg", "panel_share"),
    [
        ("units", 49_098.3995891, 22_839.3598357, 5 / 7),
        ("mass", 37_501.2264110, 34_436.5330138, 4 / 9),
        ("energy", 42_958.7196713, 28_979.0397535, 4 / 7),
    ],
)
def test_allocation_keys_give_different_hand_checked_results(
    key: str, panel_kg: float, frame_kg: float, panel_share: float
) -> None:
    prints = june_prints(key)
    panel, frame = prints["panel"], prints["frame"]
    assert panel.allocation_share == pytest.approx(panel_share, abs=1e-15)
    assert panel.gate_to_gate_kg == pytest.approx(panel_kg, abs=GRAM)
    assert frame.gate_to_gate_kg == pytest.approx(frame_kg, abs=GRAM)
    sources = {x.data_source for x in panel.components if x.id.startswith("site:")}
    assert sources == {f"allocated by {key}"}
    # the metered part does not depend on the key
    el = next(x for x in panel.components if x.id == "line_electricity")
    assert el.kg_co2e == pytest.approx(14_080.0, abs=GRAM)


def test_a_day_and_a_shift_by_hand() -> None:
    """June 1 (local): 16 night hours, 8 daylight hours.
    press 16 x 22 + 8 x 14.6667 = 469.3333; unmetered 16 x 16.5 + 8 x 29.3333 = 498.6667;
    gas 240 Nm3 x 2.162188809 = 518.9253142; welding 350 x 24/720 = 11.6667; heat
    12,100 x 24/720 = 403.3333; site-level 1,432.5919808; panel 469.3333 + 144 + 5/7 x
    1,432.5919808 = 1,636.6133196 kg for 120 pcs (13.6384443 kg/pc).
    Shift S1 (00:00-08:00, all night): press 8 x 22 = 176; site-level 8 x 16.5 + 80 x
    2.162188809 + 350 x 8/720 + 12,100 x 8/720 = 443.3084381; panel 176 + 48 + 5/7 x
    443.3084381 = 540.6488843 kg for 40 pcs."""
    site = two_line_site("units")
    carbon, energy, lines = two_line_rows()
    day = compute_footprints(
        site, "2026-06-01", JUNE_START, JUNE_START + timedelta(days=1), carbon, energy, lines
    )[0]
    assert day.units == 120.0
    assert day.gate_to_gate_kg == pytest.approx(1_636.6133196, abs=GRAM)
    shift = compute_footprints(
        site, "S1", JUNE_START, JUNE_START + timedelta(hours=8), carbon, energy, lines
    )[0]
    assert shift.units == 40.0
    assert shift.gate_to_gate_kg == pytest.approx(540.6488843, abs=GRAM)
    # the 90 shifts of June add up to the month
    windows = grain_windows(JUNE_START, JUNE_END, "shift", ZONE)
    assert len(windows) == 90 and windows[0][0] == "2026-06-01 S1"
    assert windows[2][0] == "2026-06-01 S3" and windows[-1][0] == "2026-06-30 S3"
    total = 0.0
    for label, lo, hi in windows:
        total += compute_footprints(site, label, lo, hi, carbon, energy, lines)[0].gate_to_gate_kg
    assert total == pytest.approx(49_098.3995891, abs=GRAM)


def test_grain_windows_in_local_time() -> None:
    days = grain_windows(JUNE_START, JUNE_END, "day", ZONE)
    assert len(days) == 30 and days[0] == ("2026-06-01", JUNE_START, JUNE_START + timedelta(1))
    months = grain_windows(JUNE_START - timedelta(days=3), JUNE_END, "month", ZONE)
    assert [m[0] for m in months] == ["2026-05", "2026-06"]
    assert months[0][1] == JUNE_START - timedelta(days=3) and months[1][1] == JUNE_START
    with pytest.raises(AccountsError, match="grain 'week'"):
        grain_windows(JUNE_START, JUNE_END, "week", ZONE)


def test_bad_windows_are_refused() -> None:
    with pytest.raises(AccountsError, match="must be after start"):
        window_period("x", JUNE_END, JUNE_START, ZONE)
    with pytest.raises(AccountsError, match="whole hour"):
        window_period("x", JUNE_START + timedelta(minutes=30), JUNE_END, ZONE)
    with pytest.raises(AccountsError, match="time zone"):
        window_period("x", datetime(2026, 6, 1), JUNE_END, ZONE)


def test_no_output_gives_no_per_unit_figure() -> None:
    site = two_line_site("units")
    carbon, energy, lines = two_line_rows()
    lines = [replace(r, production_units=0.0) for r in lines]
    fp = compute_footprints(site, "2026-06", JUNE_START, JUNE_END, carbon, energy, lines)[0]
    assert fp.per_unit(fp.gate_to_gate_kg) is None
    assert fp.allocation_share == 0.0
    assert any("unallocated" in n for n in fp.notes)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('allocation = "units"', 'allocation = "mass"', 1), "same allocation key"),
        (('line = "weld"\nname', 'line = "press"\nname', 1), "one product per line"),
        (('source = "estimate from', 'source = "guess from', 1), "start with one of"),
        (('mode = "rail"', 'mode = "inland_waterway"', 1), "has no default factor"),
        (('limit_standard = "GB 3xxxx-20xx Level 1 (example)"', "", 1), "needs limit_standard"),
        (('line = "weld"\nname', 'line = "paint"\nname', 1), "no production line 'paint'"),
    ],
)
def test_validation_messages(change: tuple[str, str, int], message: str) -> None:
    text = two_line_toml("units")
    old, new, count = change
    assert old in text
    text = text.replace(old, new, count)
    with pytest.raises(SiteConfigError, match=message):
        parse_site(tomllib.loads(text), "site.toml")


def test_mass_key_needs_every_mass() -> None:
    text = two_line_toml("mass").replace("mass_kg_per_unit = 25.0\n", "", 1)
    with pytest.raises(SiteConfigError, match="needs mass_kg_per_unit"):
        parse_site(tomllib.loads(text), "site.toml")


def test_the_example_products_and_scorecard() -> None:
    """examples/accounts.toml's product and scorecard on the hand site (one line)."""
    example = Path(__file__).resolve().parents[2] / "examples" / "accounts.toml"
    data = tomllib.loads(SITE_TOML)
    data["accounts"] = tomllib.loads(example.read_text(encoding="utf-8"))["accounts"]
    site = parse_site(data, "site.toml")
    (panel,) = site.accounts.products
    assert panel.allocation == "energy" and panel.logistics[0].factor[0] == 0.10650
    assert site.accounts.scorecard.base_year_t_co2 == 1000.0
    carbon, energy, lines = june_rows()
    (fp,) = compute_footprints(site, "2026-06", JUNE_START, JUNE_END, carbon, energy, lines)
    # the press line has no sub-meter here: no line energy, so the energy key allocates
    # nothing and the site-level emissions stay unallocated (said in the notes)
    assert fp.allocation_share == 0.0 and fp.units == 3600.0
    assert fp.gate_to_gate_kg == pytest.approx(4_320.0, abs=GRAM)
