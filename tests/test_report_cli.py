"""``zerocarbon report`` on the real PostgreSQL: the hand-computed June 2026
(:mod:`tests.accounts.test_report`) stored as hourly rows, the site's certificates and
green-power contract synced into the instruments ledger; the PDF in both languages, the
workbook and the JSON written by the command, each with the account's figures."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
import pytest
from typer.testing import CliRunner

from tests.accounts.test_period import GRAM, june_rows
from tests.accounts.test_report import artifacts_dir, report_site, report_site_toml
from tests.report_support import ensure_cjk_font, pdf_pages_png, pdf_text, xlsx_sheet
from zerocarbon.accounts.ledger import sync_instruments
from zerocarbon.cli import app
from zerocarbon.storage.database import register_site
from zerocarbon.storage.hourly import upsert_hourly

runner = CliRunner()


@pytest.fixture
def stored_site(pg_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """June 2026 stored, the ledger synced, ZEROCARBON_DATABASE_URL set, the site file
    written."""
    site = report_site()

    async def store() -> None:
        conn = await asyncpg.connect(pg_url)
        try:
            # the month's demand comes from the power tables: other tests' gateways ran
            # in June 2026 too
            await conn.execute(
                "TRUNCATE hourly_energy, hourly_carbon, hourly_line, power_1min, "
                "power_15min, devices RESTART IDENTITY"
            )
            await conn.execute("TRUNCATE instruments CASCADE")
            registry = await register_site(conn, site)
            await upsert_hourly(conn, registry, *june_rows())
            await sync_instruments(conn, site)
        finally:
            await conn.close()

    asyncio.run(store())
    monkeypatch.setenv("ZEROCARBON_DATABASE_URL", pg_url)
    path = tmp_path / "site.toml"
    path.write_text(report_site_toml(), encoding="utf-8")
    return path


def _report(site: Path, *args: str) -> str:
    res = runner.invoke(app, ["report", "--site", str(site), "--period", "2026-06", *args])
    assert res.exit_code == 0, res.output
    return res.output


def test_json_from_the_database(stored_site: Path) -> None:
    data = json.loads(_report(stored_site, "--format", "json"))
    totals = data["account"]["totals"]
    assert totals["total_location_kg"] == pytest.approx(71_937.7594248, abs=GRAM)
    assert totals["scope2_market_kg"] == pytest.approx(41_729.28, abs=GRAM)
    assert data["cost"]["total_cny"] == "54917.46"
    esg = {f["id"]: f["value"] for f in data["esg"]}
    assert esg["GRI 305-1"] == pytest.approx(totals["scope1_t"], abs=1e-12)
    assert esg["GRI 305-2-b"] == pytest.approx(totals["scope2_market_t"], abs=1e-12)
    instruments = {i["id"]: i for i in data["instruments"]}
    # the engine's allocation over the stored month: the whole volumes
    assert instruments["certificates.gec_june"]["allocated_kwh"] == pytest.approx(18_000.0)
    assert instruments["green_power.green_trade"]["allocated_kwh"] == pytest.approx(7_200.0)
    assert data["offsets_used_t"] == "0"


def test_workbook_from_the_database(stored_site: Path, tmp_path: Path) -> None:
    out = tmp_path / "june.xlsx"
    assert "wrote" in _report(stored_site, "--format", "xlsx", "--out", str(out))
    figures = {r[0]: r for r in xlsx_sheet(out.read_bytes(), "summary") if r}
    assert figures["total_location_t"][2] == pytest.approx(71.9377594248, abs=1e-9)
    assert figures["grid_import_kwh"][4] == 72_000.0
    assert figures["cost_total_cny"][2] == 54_917.46
    instruments = xlsx_sheet(out.read_bytes(), "instruments")
    assert {r[0] for r in instruments[1:]} == {"certificates.gec_june", "green_power.green_trade"}


@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_pdf_from_the_database(stored_site: Path, tmp_path: Path, language: str) -> None:
    why = ensure_cjk_font()
    if why is not None:
        pytest.skip(why)
    out = tmp_path / f"june-{language}.pdf"
    _report(stored_site, "--format", "pdf", "--language", language, "--out", str(out))
    pdf = out.read_bytes()
    text = pdf_text(pdf).replace("\n", " ")
    assert "71.937759" in text and "54,917.46" in text
    assert "certificates.gec_june" in text and "green_power.green_trade" in text
    assert "18,000.000" in text  # the batch's allocation
    if language == "zh-CN":
        assert "碳排放与能源报告" in text.replace(" ", "")
    artifacts = artifacts_dir()
    if artifacts is not None:
        pdf_pages_png(pdf, artifacts, f"cli-june-2026-{language}")


def test_bad_period_and_missing_font(stored_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    res = runner.invoke(app, ["report", "--site", str(stored_site), "--period", "2026-13"])
    assert res.exit_code == 2
    assert "expected a month (2026-03), a quarter (2026-Q1) or a year (2026)" in res.output
    monkeypatch.setenv("ZEROCARBON_REPORT_FONT", "/nonexistent/font.ttc")
    res = runner.invoke(
        app, ["report", "--site", str(stored_site), "--period", "2026-06", "--format", "pdf"]
    )
    assert res.exit_code == 1
    assert "ZEROCARBON_REPORT_FONT=/nonexistent/font.ttc: no such font file" in res.output
