"""Issued period accounts on the real PostgreSQL: the hand-computed June 2026
(:mod:`tests.accounts.test_period`) stored as hourly rows, issued, re-issued after a grid
factor revision and after a recomputed hour, each re-issue superseding the last and
listing what changed; and ``zerocarbon accounts show|issue|history``."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from typer.testing import CliRunner

from zerocarbon.accounts.period import (
    compare_accounts,
    compute_account,
    parse_period,
    site_factor_table,
)
from zerocarbon.cli import app
from zerocarbon.config import SiteConfig
from zerocarbon.storage.accounts import (
    AccountReport,
    issue_report,
    last_report,
    list_reports,
    load_period_rows,
)
from zerocarbon.storage.database import register_site
from zerocarbon.storage.hourly import upsert_hourly
from zerocarbon.storage.migrations import MIGRATIONS

from .test_period import GRAM, ZONE, hand_site, june_rows, revised_table, site_toml

ISSUED_AT = datetime(2026, 7, 3, 2, 0, tzinfo=UTC)
runner = CliRunner()


async def _store_june(conn: asyncpg.Connection, site: SiteConfig) -> None:
    await conn.execute("TRUNCATE account_reports RESTART IDENTITY")
    registry = await register_site(conn, site)
    carbon, energy, lines = june_rows()
    await upsert_hourly(conn, registry, carbon, energy, lines)


async def _issue(
    conn: asyncpg.Connection, site: SiteConfig, by: str, at: datetime = ISSUED_AT
) -> AccountReport:
    """What the API and the CLI do: compute from the stored rows, compare, store."""
    period = parse_period("2026-06", ZONE)
    rows = await load_period_rows(conn, period.start, period.end)
    account = compute_account(site, period, *rows, site_factor_table(site))
    data = account.to_json()

    def changes_since(last: AccountReport | None) -> list[dict[str, Any]]:
        return [] if last is None else [c.to_json() for c in compare_accounts(last.account, data)]

    return await issue_report(
        conn, "2026-06", by, at, data, account.factor_revisions(), changes_since
    )


def test_migration_12_creates_account_reports() -> None:
    assert {m.version: m.name for m in MIGRATIONS}[12] == "account_reports"


async def test_stored_rows_give_the_hand_computed_month(pg_conn: asyncpg.Connection) -> None:
    site = hand_site()
    await _store_june(pg_conn, site)
    period = parse_period("2026-06", ZONE)
    carbon, energy, lines = await load_period_rows(pg_conn, period.start, period.end)
    assert (len(carbon), len(energy), len(lines)) == (720, 4 * 720, 720)
    account = compute_account(site, period, carbon, energy, lines)
    assert account.total_location_kg == pytest.approx(71_937.7594248, abs=GRAM)
    assert account.scope2_market_kg == pytest.approx(41_729.280, abs=GRAM)
    grid = next(s for s in account.sources if s.id == "purchased_electricity:grid")
    assert (grid.quality.estimated, grid.quality.gaps, grid.quality.resets) == (500.0, 5, 1)
    # the hours of May and July stay out
    none = await load_period_rows(pg_conn, parse_period("2026-07", ZONE).start, period.start)
    assert none == ([], [], [])


async def test_reissue_after_a_factor_revision(pg_conn: asyncpg.Connection, tmp_path: Path) -> None:
    await _store_june(pg_conn, hand_site())
    first = await _issue(pg_conn, hand_site(), "ana")
    assert (first.id, first.supersedes, first.changes) == (1, None, [])
    assert first.factor_revisions["grid.location"]["revision"] == "2026-01/2023"
    assert first.factor_revisions["grid.location"]["provisional"] is True
    assert first.account["totals"]["scope2_location_kg"] == pytest.approx(52_800.0, abs=GRAM)

    revised = hand_site(revised_table(tmp_path))
    second = await _issue(pg_conn, revised, "ben", ISSUED_AT.replace(month=10))
    assert (second.id, second.supersedes, second.issued_by) == (2, 1, "ben")
    assert second.factor_revisions["grid.location"]["revision"] == "2026-09/2023"
    assert second.account["totals"]["scope2_location_kg"] == pytest.approx(52_080.0, abs=GRAM)
    grid_changes = {
        c["kind"]: c for c in second.changes if c["source"] == "purchased_electricity:grid"
    }
    assert set(grid_changes) == {"factor", "emissions"}
    assert "2026-01/2023" in grid_changes["factor"]["why"]
    assert "2026-09/2023" in grid_changes["factor"]["why"]
    assert grid_changes["emissions"]["after"] - grid_changes["emissions"]["before"] == (
        pytest.approx(-720.0, abs=GRAM)
    )

    reports = await list_reports(pg_conn, "2026-06")
    assert [r.id for r in reports] == [1, 2]
    assert reports[0].account == first.account  # the first issue is kept as it was
    last = await last_report(pg_conn, "2026-06")
    assert last is not None and last.id == 2
    assert await last_report(pg_conn, "2026-05") is None


async def test_reissue_after_a_recomputed_hour_lists_the_activity_change(
    pg_conn: asyncpg.Connection,
) -> None:
    site = hand_site()
    await _store_june(pg_conn, site)
    await _issue(pg_conn, site, "ana")
    registry = await register_site(pg_conn, site)
    carbon, _energy, _lines = june_rows()
    await upsert_hourly(pg_conn, registry, [replace(carbon[5], grid_import_kwh=130.0)], [])
    second = await _issue(pg_conn, site, "ana")
    activity = [c for c in second.changes if c["kind"] == "activity"]
    assert [(c["source"], c["before"], c["after"]) for c in activity] == [
        ("purchased_electricity:grid", 72_000.0, 72_030.0)
    ]
    assert not [c for c in second.changes if c["kind"] == "factor"]


async def test_concurrent_issues_each_supersede_the_one_before(
    pg_url: str, pg_conn: asyncpg.Connection
) -> None:
    site = hand_site()
    await _store_june(pg_conn, site)
    conns = [await asyncpg.connect(pg_url) for _ in range(4)]
    try:
        issued = await asyncio.gather(*(_issue(c, site, f"issuer{i}") for i, c in enumerate(conns)))
    finally:
        for c in conns:
            await c.close()
    chain = sorted((r.id, r.supersedes) for r in issued)
    assert chain == [(1, None), (2, 1), (3, 2), (4, 3)]


# --- the CLI -----------------------------------------------------------------------------


@pytest.fixture
def cli_site(pg_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The hand-computed month stored, ZEROCARBON_DATABASE_URL set, the site file written."""

    async def store() -> None:
        conn = await asyncpg.connect(pg_url)
        try:
            await conn.execute(
                "TRUNCATE hourly_energy, hourly_carbon, hourly_line, account_reports "
                "RESTART IDENTITY"
            )
            await _store_june(conn, hand_site())
        finally:
            await conn.close()

    asyncio.run(store())
    monkeypatch.setenv("ZEROCARBON_DATABASE_URL", pg_url)
    path = tmp_path / "site.toml"
    path.write_text(site_toml(), encoding="utf-8")
    return path


def test_cli_show_issue_history(cli_site: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["accounts", "show", "--site", str(cli_site), "--period", "2026-06"])
    assert res.exit_code == 0, res.output
    assert "Hand-Computed Works Co., Ltd. - period 2026-06" in res.output
    assert "purchased_electricity:grid" in res.output and "39.600000" in res.output
    assert "-1.100000" in res.output  # exported heat, deducted
    assert "total (location-based, exports deducted): 71.937759 t CO2" in res.output
    assert "estimated 500.000, gaps 5, resets 1" in res.output

    res = runner.invoke(
        app, ["accounts", "show", "--site", str(cli_site), "--period", "2026-06", "--json"]
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["totals"]["total_location_kg"] == pytest.approx(71_937.7594248, abs=GRAM)
    assert data["factor_revisions"]["grid.location"]["revision"] == "2026-01/2023"

    res = runner.invoke(
        app, ["accounts", "issue", "--site", str(cli_site), "--period", "2026-06", "--by", "ana"]
    )
    assert res.exit_code == 0, res.output
    assert "issued report 1 for 2026-06 by ana: 71.937759 t CO2" in res.output

    revised_site = tmp_path / "revised.toml"
    revised_site.write_text(site_toml(revised_table(tmp_path)), encoding="utf-8")
    res = runner.invoke(
        app,
        ["accounts", "issue", "--site", str(revised_site), "--period", "2026-06", "--by", "ben"],
    )
    assert res.exit_code == 0, res.output
    assert "issued report 2 for 2026-06 by ben: 71.217759 t CO2, supersedes report 1" in (
        res.output
    )
    assert "purchased_electricity:grid: factor grid.location revised: 0.55" in res.output

    res = runner.invoke(
        app, ["accounts", "history", "--site", str(cli_site), "--period", "2026-06"]
    )
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].startswith("report 1 issued") and "by ana: 71.937759 t CO2" in lines[0]
    assert "grid.location 2026-01/2023" in lines[0]
    report2 = next(i for i, ln in enumerate(lines) if ln.startswith("report 2"))
    assert "supersedes 1" in lines[report2] and "grid.location 2026-09/2023" in lines[report2]
    assert any("emissions changed by -720.000 kg CO2" in ln for ln in lines[report2:])

    res = runner.invoke(
        app, ["accounts", "history", "--site", str(cli_site), "--period", "2026-06", "--json"]
    )
    history = json.loads(res.output)
    assert [(h["id"], h["supersedes"]) for h in history] == [(1, None), (2, 1)]


def test_cli_refuses_a_bad_period(cli_site: Path) -> None:
    res = runner.invoke(app, ["accounts", "show", "--site", str(cli_site), "--period", "2026-13"])
    assert res.exit_code == 2
    assert "expected a month (2026-03), a quarter (2026-Q1) or a year (2026)" in res.output
