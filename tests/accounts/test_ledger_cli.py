"""``zerocarbon ledger list|show|retire|history`` through typer's CliRunner, on the run's
real database (ZEROCARBON_DATABASE_URL pointing at it, as an operator sets it)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
from typer.testing import CliRunner

from tests.accounts.test_ledger import clear_ledger
from zerocarbon.cli import app

runner = CliRunner()

SITE_TOML = """
[site]
name = "hand-computed works"
timezone = "Asia/Shanghai"

[grid]
region = "east"
data_year = 2023

[[devices]]
id = "grid_meter"
role = "grid"
protocol = "modbus_tcp"
host = "127.0.0.1"
profile = "eastron_sdm630"

[[green_power]]
id = "green_trade"
monthly_kwh = { "2026-06" = 7200.0 }

[[certificates]]
id = "gec_june"
count = 18
issued = "2026-05"
applies_to = "2026-06"

[[offsets]]
id = "ccer_forest"
kind = "ccer"
serial = "CCER-2025-000123-000001-000100"
project = "CCER-000123 afforestation, Fujian"
vintage = 2025
volume_t = 100.0
registry = "national CCER registry"
"""


async def _clear(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await clear_ledger(conn)
        await conn.execute("TRUNCATE hourly_carbon")
    finally:
        await conn.close()


@pytest.fixture
def site_file(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    asyncio.run(_clear(pg_url))
    monkeypatch.setenv("ZEROCARBON_DATABASE_URL", pg_url)
    path = tmp_path / "site.toml"
    path.write_text(SITE_TOML, encoding="utf-8")
    return path


def test_list_show_retire_history(site_file: Path) -> None:
    site = ["--site", str(site_file)]
    listed = runner.invoke(app, ["ledger", "list", *site])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("certificates.gec_june  gec  18 MWh  retired 0  held  engine: ")
    assert "offsets.ccer_forest  ccer  100 t CO2e  retired 0  held  engine: -" in lines
    # no hourly rows stored: the engine allocated nothing yet, all of it is unused
    assert "2026-06: 0.000 kWh allocated, 18,000.000 kWh unused" in lines[0]

    retired = runner.invoke(
        app,
        [
            "ledger",
            "retire",
            "certificates.gec_june",
            *site,
            "--period",
            "2026-06",
            "--volume",
            "18",
            "--by",
            "shift-lead",
            "--reason",
            "June, market-based Scope 2",
        ],
    )
    assert retired.exit_code == 0, retired.output
    assert "retired 18 MWh of certificates.gec_june against 2026-06 by shift-lead" in (
        retired.output
    )
    assert "0 MWh held (retired)" in retired.output

    again = runner.invoke(
        app,
        [
            "ledger",
            "retire",
            "certificates.gec_june",
            *site,
            "--period",
            "2026-06",
            "--volume",
            "1",
            "--by",
            "auditor",
        ],
    )
    assert again.exit_code == 1
    assert "error: certificates.gec_june: cannot retire 1 MWh against 2026-06" in again.output
    assert "already retired: 18 MWh against 2026-06 by shift-lead at " in again.output

    wrong = runner.invoke(
        app,
        [
            "ledger",
            "retire",
            "certificates.gec_june",
            *site,
            "--period",
            "2026-07",
            "--volume",
            "1",
            "--by",
            "auditor",
        ],
    )
    assert wrong.exit_code == 1 and "applies to 2026-06" in wrong.output

    bad = runner.invoke(
        app,
        ["ledger", "retire", "offsets.ccer_forest", *site, "--period", "Q3", "--volume", "1"],
    )
    assert bad.exit_code == 1 and "period 'Q3'" in bad.output

    ccer = runner.invoke(
        app,
        [
            "ledger",
            "retire",
            "offsets.ccer_forest",
            *site,
            "--period",
            "2026-Q2",
            "--volume",
            "12.5",
            "--reason",
            "residual Scope 1",
        ],
    )
    assert ccer.exit_code == 0, ccer.output
    assert " by cli:" in ccer.output  # the login name by default

    shown = runner.invoke(app, ["ledger", "show", "offsets.ccer_forest", *site])
    assert shown.exit_code == 0, shown.output
    assert "volume 100 t CO2e, retired 12.5, held 87.5; partly_retired" in shown.output
    assert "against 2026-Q2 by cli:" in shown.output and "residual Scope 1" in shown.output

    missing = runner.invoke(app, ["ledger", "show", "offsets.nope", *site])
    assert missing.exit_code == 1 and "no instrument 'offsets.nope'" in missing.output

    history = runner.invoke(app, ["ledger", "history", *site])
    assert history.exit_code == 0, history.output
    actions = [line.split()[2] for line in history.output.splitlines()]
    assert actions == ["declared"] * 3 + ["retired", "refused", "refused", "retired"]
    one = runner.invoke(app, ["ledger", "history", *site, "--instrument", "certificates.gec_june"])
    assert [line.split()[2] for line in one.output.splitlines()] == [
        "declared",
        "retired",
        "refused",
        "refused",
    ]


def test_a_changed_declaration_of_a_retired_instrument_is_refused(site_file: Path) -> None:
    site = ["--site", str(site_file)]
    ok = runner.invoke(
        app,
        ["ledger", "retire", "offsets.ccer_forest", *site, "--period", "2026", "--volume", "1"],
    )
    assert ok.exit_code == 0, ok.output
    site_file.write_text(SITE_TOML.replace("volume_t = 100.0", "volume_t = 90.0"), "utf-8")
    listed = runner.invoke(app, ["ledger", "list", *site])
    assert listed.exit_code == 1
    assert "offsets.ccer_forest: declared differently, but 1 t CO2e of it is retired" in (
        listed.output
    )
