"""The report of the hand-computed June 2026 (:mod:`tests.accounts.test_period`, with the
TOU tariff of :mod:`tests.accounts.test_cost` and a contracted demand of 400 kW): its
figures equal the account's, the ESG mapping computed by hand, the bill to 0.01 CNY, the
JSON round trip, the workbook's summary and sums, and the PDF in Chinese and English
(its text extracted, its pages drawn as PNG under $ZEROCARBON_TEST_ARTIFACTS).

Hand computation beyond the account (which test_period gives to the gram):

- energy (GRI 302-1): natural gas 7,200 Nm3 x 0.038931 GJ/Nm3 (GB/T 32150 Table B.1,
  389.31 GJ/10^4 Nm3) = 280.3032 GJ; import 72,000 kWh = 259.2 GJ; PV 12,000 kWh =
  43.2 GJ; heat 120 GJ in, 10 GJ out: total 692.7032 GJ; per pressed part (3,600 pcs)
  0.19241755... GJ;
- GHG intensity (305-4): (20.2377594248 + 52.8) t / 3,600 pcs;
- the bill (import 100 kWh every hour; a June day: 8 valley, 7 peak, 1 critical peak,
  8 flat hours): valley 24,000 kWh x 0.2871 = 6,890.40; peak 21,000 x 1.0193 =
  21,405.30; critical peak 3,000 x 1.2232 = 3,669.60; flat 24,000 x 0.6137 = 14,728.80;
  surcharge 72,000 x 0.02888 = 2,079.36; demand: no 15-minute demand stored, so the
  floor 40 % x 400 kW = 160 kW x 38.4 = 6,144.00; total 54,917.46 CNY;
- PV savings: 50 kWh in local hours 08-15, priced at the hour's price + surcharge:
  per day 50 x (2 x 1.04818 + 1.25208 + 5 x 0.64258) = 328.067; x 30 = 9,842.01 CNY.
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from tests.report_support import (
    ensure_cjk_font,
    pdf_pages_png,
    pdf_text,
    xlsx_formulas,
    xlsx_sheet,
)
from zerocarbon.accounts.period import parse_period, site_factor_table
from zerocarbon.accounts.report.model import Report, ReportInputs, build_report
from zerocarbon.accounts.report.pdf import ReportFontError, find_cjk_font, render_pdf
from zerocarbon.accounts.report.text import fmt_cny, fmt_kwh, fmt_t
from zerocarbon.accounts.report.xlsx import render_xlsx
from zerocarbon.config import SiteConfig, parse_site

from .test_period import GRAM, june_rows, site_toml

GENERATED = datetime(2026, 7, 3, 2, 0, tzinfo=UTC)
PRODUCT_TOML = """
[[accounts.products]]
id = "panel"
line = "press"
name = "stamped panel"
unit = "pcs"
mass_kg_per_unit = 8.0
allocation = "units"

[[accounts.products.materials]]
material = "cold-rolled steel sheet"
kg_per_unit = 8.4
factor_kg_co2e_per_kg = 2.0
source = "supplier EPD S-P-01234"
"""
TARIFF_TOML = """
[tariff]
surcharge_per_kwh = 0.02888
export_price_per_kwh = 0.391
basis = "demand"
demand_price_per_kw_month = 38.4
demand_floor_share = 0.4

[tariff.prices]
critical_peak = 1.2232
peak = 1.0193
flat = 0.6137
valley = 0.2871

[[tariff.seasons]]
name = "summer"
months = [6, 7, 8]
valley = ["00-08"]
peak = ["08-10", "17-22"]
critical_peak = ["10-11"]

[[tariff.seasons]]
name = "winter"
months = [12, 1, 2]
valley = ["22-06"]
peak = ["18-20"]
critical_peak = ["20-21"]

[[tariff.seasons]]
name = "shoulder"
months = [3, 4, 5, 9, 10, 11]
valley = ["00-08"]
peak = ["08-11"]
"""


def report_site_toml() -> str:
    """The hand-computed site with a product (8.4 kg of steel sheet at 2.0 kg CO2e/kg a
    part), the tariff and a contracted demand of 400 kW."""
    text = site_toml().replace(
        "data_year = 2023\n", "data_year = 2023\ncontracted_demand_kw = 400.0\n", 1
    )
    return text + PRODUCT_TOML + TARIFF_TOML


def report_site() -> SiteConfig:
    return parse_site(tomllib.loads(report_site_toml()), "site.toml")


def june_report(site: SiteConfig | None = None) -> Report:
    site = site or report_site()
    carbon, energy, lines = june_rows()
    period = parse_period("2026-06", site.site.timezone)
    inputs = ReportInputs(site, period, site_factor_table(site), carbon, energy, lines)
    return build_report(inputs, GENERATED)


def artifacts_dir() -> Path | None:
    value = os.environ.get("ZEROCARBON_TEST_ARTIFACTS")
    return Path(value) / "report" if value else None


@pytest.fixture(scope="module")
def report() -> Report:
    return june_report()


# --- the model ---------------------------------------------------------------------------


def test_figures_are_the_accounts(report: Report) -> None:
    a = report.account
    assert report.figure("total_location_t").value == pytest.approx(71.9377594248, abs=1e-6)
    assert report.figure("scope1_t").value == pytest.approx(a.scope1_kg / 1000, abs=1e-12)
    assert report.figure("scope2_market_t").value == pytest.approx(41.72928, abs=GRAM / 1000)
    assert report.figure("total_market_t").value == pytest.approx(60.8670394248, abs=1e-9)
    assert report.figure("grid_import_kwh").value == 72_000.0
    assert report.figure("pv_kwh").value == 12_000.0
    assert report.figure("certificate_kwh").value == 18_000.0
    # the series sum to the hourly totals
    assert len(report.buckets) == 30 and report.bucket_kind == "day"
    assert math.fsum(b.grid_import_kwh for b in report.buckets) == 72_000.0
    assert math.fsum(b.scope2_location_kg for b in report.buckets) == pytest.approx(39_600.0)
    noon = report.profile[12]
    assert (noon.days, noon.pv_kwh, noon.load_kwh) == (30, 50.0, 150.0)
    assert report.profile[3].pv_kwh == 0.0


def test_bill_to_the_fen(report: Report) -> None:
    cost = report.cost
    assert cost is not None and len(cost.bills) == 1
    assert {k: str(v) for k, v in cost.by_kind_cny.items()} == {
        "critical_peak": "3669.60",
        "peak": "21405.30",
        "flat": "14728.80",
        "valley": "6890.40",
    }
    assert cost.by_item_cny["surcharge"] == Decimal("2079.36")
    assert cost.by_item_cny["demand_charge"] == Decimal("6144.00")
    assert cost.total_cny == Decimal("54917.46")
    assert cost.pv_savings_cny == Decimal("9842.01")
    assert report.figure("cost_total_cny").value == 54_917.46


def test_esg_mapping_by_hand(report: Report) -> None:
    esg = {f.id: f for f in report.esg}
    a = report.account
    assert esg["GRI 302-1-a"].value == pytest.approx(280.3032, abs=1e-9)
    assert esg["GRI 302-1-e"].value == pytest.approx(692.7032, abs=1e-9)
    assert esg["GRI 302-3"].value == pytest.approx(692.7032 / 3600, abs=1e-12)
    assert esg["GRI 305-1"].value == pytest.approx(a.scope1_kg / 1000)
    assert esg["GRI 305-1"].value == pytest.approx(20.2377594248, abs=1e-9)
    assert esg["GRI 305-2-a"].value == pytest.approx(52.8, abs=1e-9)
    assert esg["GRI 305-2-b"].value == pytest.approx(41.72928, abs=1e-9)
    assert esg["GRI 305-4"].value == pytest.approx((20.2377594248 + 52.8) / 3600, abs=1e-12)
    assert esg["GRI 305-5"].value is None  # no base-year account given
    assert esg["IFRS S2 29(a)(i)(1)"].value == esg["GRI 305-1"].value
    assert esg["IFRS S2 29(a)(i)(2)"].value == esg["GRI 305-2-a"].value
    assert esg["IFRS S2 29(a)(i)(3)"].value is None
    assert esg["IFRS S2 29(a)(v)"].value == esg["GRI 305-2-a"].value
    assert esg["IFRS S2 29(a)(v) instruments"].value == 7_200.0 + 18_000.0


def test_reduction_against_the_base_year() -> None:
    """GRI 305-5 with a base-year account: June 2025 with 10 % more grid import would
    be the same rows with a higher activity; here the base account is the same month
    computed from the rows with grid import 110 kWh."""
    from dataclasses import replace

    from zerocarbon.accounts.period import compute_account

    site = report_site()
    carbon, energy, lines = june_rows()
    base_rows = [replace(r, grid_import_kwh=110.0) for r in carbon]
    period = parse_period("2026-06", site.site.timezone)
    base = compute_account(site, period, base_rows, energy, lines, site_factor_table(site))
    inputs = ReportInputs(
        site, period, site_factor_table(site), carbon, energy, lines, base_account=base
    )
    esg = {f.id: f for f in build_report(inputs, GENERATED).esg}
    # 10 kWh x 720 h x 0.55 kg/kWh = 3,960 kg less
    assert esg["GRI 305-5"].value == pytest.approx(3.96, abs=1e-9)


def test_json_round_trip(report: Report) -> None:
    data = report.to_json()
    back = json.loads(json.dumps(data, ensure_ascii=False))
    assert back == data
    assert back["account"]["totals"]["total_location_kg"] == pytest.approx(71_937.7594248, abs=GRAM)
    assert back["cost"]["total_cny"] == "54917.46"
    esg = {f["id"]: f for f in back["esg"]}
    assert esg["GRI 305-1"]["value"] == report.account.scope1_kg / 1000
    assert back["account"]["factor_revisions"]["grid.location"]["revision"] == "2026-01/2023"
    assert [f["product"] for f in back["footprints"]] == ["panel"]
    assert back["scorecard"]["total_location_t"] == pytest.approx(71.9377594248, abs=1e-9)


def test_footprint_and_scorecard_sections(report: Report) -> None:
    (panel,) = report.footprints
    assert panel.units == 3_600.0
    # materials: 8.4 kg x 2.0 kg CO2e/kg = 16.8 kg CO2e a part, upstream of the gate
    upstream = panel.per_unit(panel.cradle_to_gate_kg - panel.gate_to_gate_kg)
    assert upstream == pytest.approx(16.8, abs=1e-9)
    assert report.scorecard is not None
    renewable = report.scorecard.indicator("renewable_share")
    # on-site PV 12,000 + contract 7,200 + certificates 18,000 of 84,000 kWh consumed
    assert renewable.value == pytest.approx(37_200 / 84_000, abs=1e-12)


# --- the workbook ------------------------------------------------------------------------


def test_workbook_summary_equals_the_account(report: Report) -> None:
    data = render_xlsx(report, "en")
    rows = xlsx_sheet(data, "summary")
    figures = {r[0]: r for r in rows if r and isinstance(r[0], str) and len(r) >= 4}
    a = report.account
    assert figures["total_location_t"][2] == pytest.approx(a.total_location_kg / 1000, abs=1e-12)
    assert figures["scope1_t"][2] == pytest.approx(a.scope1_kg / 1000, abs=1e-12)
    assert figures["scope2_market_t"][2] == pytest.approx(a.scope2_market_kg / 1000, abs=1e-12)
    assert figures["grid_import_kwh"][2] == 72_000.0
    assert figures["cost_total_cny"][2] == 54_917.46
    # the sums of the hourly data reproduce the figures (cached values of =SUM(...))
    for key in ("grid_import_kwh", "pv_kwh", "load_kwh", "certificate_kwh"):
        assert figures[key][4] == pytest.approx(figures[key][2], abs=1e-9), key
    assert figures["purchased_electricity_t"][4] == pytest.approx(39.6, abs=1e-9)
    formulas = xlsx_formulas(data, "summary")
    assert "SUM(hourly_carbon!" in " ".join(formulas.values())
    assert any(f.endswith("/1000") for f in formulas.values())
    # the hourly data is there: 720 hours, the channels by column, units in headers
    carbon = xlsx_sheet(data, "hourly_carbon")
    assert carbon[0][2] == "grid_import_kwh [kWh]" and len(carbon) == 1 + 720 + 1
    assert carbon[-1][0] == "sum" and carbon[-1][2] == 72_000.0  # =SUM under the column
    assert sum(float(r[2]) for r in carbon[1:721]) == 72_000.0  # type: ignore[arg-type]
    energy = xlsx_sheet(data, "hourly_energy")
    assert "boiler_gas/gas_volume_nm3 [Nm3]" in energy[0]
    col = energy[0].index("boiler_gas/gas_volume_nm3 [Nm3]")
    assert math.fsum(float(r[col]) for r in energy[1:]) == 7_200.0  # type: ignore[arg-type]
    sources = {r[0]: r for r in xlsx_sheet(data, "sources")[1:]}
    assert sources["combustion:boiler_gas"][5] == 7_200.0  # =SUM over hourly_energy
    assert sources["combustion:boiler_gas"][13] == pytest.approx(15.5677594248, abs=1e-9)
    # the bill's kWh by period kind from SUMIFS over hourly_cost
    bills = xlsx_sheet(data, "bills")
    valley = next(r for r in bills if r[1] == "energy_valley")
    assert (valley[2], valley[5], valley[6]) == (24_000.0, 6_890.40, 24_000.0)
    assert any("SUMIFS(hourly_cost!" in f for f in xlsx_formulas(data, "bills").values())
    hourly_cost = xlsx_sheet(data, "hourly_cost")
    assert len(hourly_cost) == 721 and hourly_cost[0][3] == "period kind"
    lines = xlsx_sheet(data, "hourly_line")
    assert len(lines) == 721 and lines[0][2] == "energy_kwh [kWh]"
    esg = {r[0]: r for r in xlsx_sheet(data, "esg")[1:]}
    assert esg["GRI 302-1-e"][3] == pytest.approx(692.7032, abs=1e-9)
    footprints = xlsx_sheet(data, "footprints")
    material = next(r for r in footprints if str(r[1]).startswith("material:"))
    assert material[4] == pytest.approx(16.8 * 3_600, abs=1e-6)
    scorecard = {r[0]: r for r in xlsx_sheet(data, "scorecard")[1:]}
    assert scorecard["renewable_share"][2] == pytest.approx(37_200 / 84_000, abs=1e-12)


# --- the PDF -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cjk_font() -> None:
    why = ensure_cjk_font()
    if why is not None:
        pytest.skip(why)


@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_pdf_shows_every_figure(report: Report, language: str, cjk_font: None) -> None:
    pdf = render_pdf(report, language)
    assert pdf.startswith(b"%PDF")
    text = pdf_text(pdf)
    flat = text.replace("\n", " ")
    for f in report.figures:
        if f.unit == "t CO2":
            assert fmt_t(f.value) in flat, f.key
        elif f.unit == "CNY":
            assert fmt_cny(f.value) in flat, f.key
        else:
            assert fmt_kwh(f.value) in flat, f.key
    assert "71.937759" in flat and "54,917.46" in flat and "9,842.01" in flat
    for s in report.account.sources:
        assert s.factor.revision in flat
    assert "GRI 305-2-b" in flat and "IFRS S2 29(a)(v)" in flat
    assert "280.303" in flat and "692.703" in flat
    (panel,) = report.footprints
    assert f"{panel.per_unit(panel.cradle_to_gate_kg):,.6f}" in flat
    assert "renewable_share" in flat
    if language == "zh-CN":
        for heading in ("碳排放与能源报告", "关键数据", "排放源", "数据质量", "能源成本",
                        "绿电、绿证与抵销", "ESG 披露对照"):  # fmt: skip
            assert heading.replace(" ", "") in flat.replace(" ", ""), heading
        assert "范围一排放" in flat.replace(" ", "")
    else:
        for heading in ("Carbon and energy report", "Key figures", "Emission sources",
                        "Data quality", "Energy cost", "ESG mapping"):  # fmt: skip
            assert heading in flat, heading
    # the fonts are embedded (a FontFile2/FontFile3 stream per font)
    assert b"/FontFile" in pdf
    out = artifacts_dir()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"june-2026-{language}.pdf").write_bytes(pdf)
        pages = pdf_pages_png(pdf, out, f"june-2026-{language}")
        assert len(pages) >= 2


def test_pdf_is_deterministic(report: Report, cjk_font: None) -> None:
    assert render_pdf(report, "en") == render_pdf(report, "en")


def test_missing_cjk_font_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import zerocarbon.accounts.report.pdf as pdf

    monkeypatch.delenv("ZEROCARBON_REPORT_FONT", raising=False)
    monkeypatch.setattr(pdf, "CJK_FONT_FILES", (((tmp_path / "none.ttc").as_posix(), "X"),))
    monkeypatch.setattr(pdf, "_fc_match", lambda: None)
    with pytest.raises(ReportFontError, match="fonts-noto-cjk or fonts-wqy-microhei"):
        find_cjk_font()
    monkeypatch.setenv("ZEROCARBON_REPORT_FONT", str(tmp_path / "missing.ttf"))
    with pytest.raises(ReportFontError, match="no such font file"):
        find_cjk_font()
