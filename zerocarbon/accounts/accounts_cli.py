"""``zerocarbon accounts``: the period accounts (GB/T 32150) of the site, computed now with
the current factors (``show``), issued and stored (``issue``), and the reports issued
for a period with what changed between them (``history``).

The database is the gateway's (ZEROCARBON_DATABASE_URL, else the embedded PostgreSQL in
ZEROCARBON_DATA_DIR), as for ``zerocarbon db status``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from zerocarbon.config import SiteConfig, SiteConfigError, load_site

if TYPE_CHECKING:
    from zerocarbon.accounts.period import Account

accounts_app = typer.Typer(
    help="Period accounts by GB/T 32150: show the account of a month, quarter or year, "
    "issue it, and list the reports issued with what changed between them.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

SiteOption = Annotated[Path, typer.Option("--site", help="Site configuration file (TOML).")]
PeriodOption = Annotated[
    str, typer.Option("--period", help="A month (2026-03), a quarter (2026-Q1) or a year (2026).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

T = TypeVar("T")


def _site(path: Path) -> SiteConfig:
    try:
        return load_site(path)
    except SiteConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _on_database(action: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``action(conn)`` on the gateway's database; errors exit 1 with a message."""
    import asyncpg

    from zerocarbon.api.app import redact_url
    from zerocarbon.runtime import StartupError, database
    from zerocarbon.settings import Settings

    async def main() -> T:
        async with database(Settings()) as url:
            try:
                conn = await asyncpg.connect(url)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                raise StartupError(
                    f"cannot connect to the database {redact_url(url)}: {type(exc).__name__}: {exc}"
                ) from exc
            try:
                return await action(conn)
            except asyncpg.PostgresError as exc:
                raise StartupError(
                    f"database {redact_url(url)}: {type(exc).__name__}: {exc}"
                ) from exc
            finally:
                await conn.close()

    try:
        return asyncio.run(main())
    except (StartupError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


async def _compute(conn: Any, site: SiteConfig, period_text: str) -> Account:
    from zerocarbon.accounts.period import compute_account, parse_period, site_factor_table
    from zerocarbon.storage.accounts import load_period_rows

    period = parse_period(period_text, site.site.timezone)
    carbon, energy, lines = await load_period_rows(conn, period.start, period.end)
    return compute_account(site, period, carbon, energy, lines, site_factor_table(site))


def _check_period(site: SiteConfig, period: str) -> str:
    from zerocarbon.accounts.period import AccountsError, parse_period

    try:
        return parse_period(period, site.site.timezone).label
    except AccountsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def account_lines(data: dict[str, Any]) -> list[str]:
    """The account (:meth:`Account.to_json` data) as text lines for the terminal."""
    out = [
        f"{data['organisation']} - period {data['period']} "
        f"({data['start']} .. {data['end']}), {data['standard']}",
    ]
    if data["boundary"]:
        out.append(f"boundary: {data['boundary']}")
    if data["sector_guide"]:
        out.append(f"sector: {data['sector_guide']}")
    out.append(
        f"{'source':<34} {'activity':>16} {'unit':<7} {'factor':>12} {'unit':<14} "
        f"{'t CO2':>12} {'measured':>8}  revision"
    )
    for s in data["sources"]:
        q = s["quality"]
        share = "declared" if q["measured_share"] is None else f"{q['measured_share']:.2%}"
        sign = "-" if s["sign"] < 0 else ""
        out.append(
            f"{s['id']:<34} {s['activity']:>16.3f} {s['activity_unit']:<7} "
            f"{s['factor']['value']:>12.6g} {s['factor']['unit']:<14} "
            f"{sign + format(s['emissions_t'], '.6f'):>12} {share:>8}  {s['factor']['revision']}"
        )
        faults = ("gaps", "resets", "rollovers", "replacements", "rejected", "estimated")
        if q["basis"] == "measured" and any(q[k] for k in faults):
            out.append(
                f"{'':<4}estimated {q['estimated']:.3f}, gaps {q['gaps']}, resets {q['resets']}, "
                f"rollovers {q['rollovers']}, replacements {q['replacements']}, "
                f"rejected {q['rejected']}"
            )
    t = data["totals"]
    out.append(
        f"total (location-based, exports deducted): {t['total_location_t']:.6f} t CO2; "
        f"scope 1 {t['scope1_t']:.6f} t, scope 2 location {t['scope2_location_t']:.6f} t, "
        f"scope 2 market {t['scope2_market_t']:.6f} t"
    )
    out.append(
        f"hours with results {data['hours_with_results']} of {data['hours_expected']}, "
        f"incomplete {data['hours_incomplete']}; factor table {data['factor_table']}"
    )
    out.extend(f"note: {n}" for n in data["notes"])
    return out


@accounts_app.command("show")
def show_command(site: SiteOption, period: PeriodOption, as_json: JsonOption = False) -> None:
    """Compute the account of a period now, with the current factors (nothing stored)."""
    site_config = _site(site)
    _check_period(site_config, period)

    async def action(conn: Any) -> Account:
        return await _compute(conn, site_config, period)

    account = _on_database(action)
    data = account.to_json()
    if as_json:
        typer.echo(json.dumps(data | {"factor_revisions": account.factor_revisions()}, indent=2))
        return
    for line in account_lines(data):
        typer.echo(line)


@accounts_app.command("issue")
def issue_command(
    site: SiteOption,
    period: PeriodOption,
    by: Annotated[str, typer.Option("--by", help="Who issues the report (recorded).")],
) -> None:
    """Compute the account now and store it as issued; a re-issue supersedes the
    period's last report and records what changed since it."""
    from zerocarbon.accounts.period import compare_accounts
    from zerocarbon.storage.accounts import AccountReport, issue_report

    site_config = _site(site)
    _check_period(site_config, period)

    async def action(conn: Any) -> AccountReport:
        account = await _compute(conn, site_config, period)
        data = account.to_json()

        def changes_since(last: AccountReport | None) -> list[dict[str, Any]]:
            if last is None:
                return []
            return [c.to_json() for c in compare_accounts(last.account, data)]

        return await issue_report(
            conn,
            account.period,
            by,
            datetime.now(UTC),
            data,
            account.factor_revisions(),
            changes_since,
        )

    report = _on_database(action)
    total_t = report.account["totals"]["total_location_t"]
    sup = "" if report.supersedes is None else f", supersedes report {report.supersedes}"
    typer.echo(
        f"issued report {report.id} for {report.period} by {report.issued_by}: "
        f"{total_t:.6f} t CO2{sup}"
    )
    for change in report.changes:
        typer.echo(f"  {change['source']}: {change['why']}")


@accounts_app.command("history")
def history_command(site: SiteOption, period: PeriodOption, as_json: JsonOption = False) -> None:
    """The reports issued for a period, each with its factor revisions and what changed."""
    from zerocarbon.storage.accounts import AccountReport, list_reports

    site_config = _site(site)
    label = _check_period(site_config, period)

    async def action(conn: Any) -> list[AccountReport]:
        return await list_reports(conn, label)

    reports = _on_database(action)
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "id": r.id,
                        "period": r.period,
                        "issued_at": r.issued_at.isoformat(),
                        "issued_by": r.issued_by,
                        "supersedes": r.supersedes,
                        "factor_revisions": r.factor_revisions,
                        "changes": r.changes,
                        "total_location_t": r.account["totals"]["total_location_t"],
                    }
                    for r in reports
                ],
                indent=2,
            )
        )
        return
    if not reports:
        typer.echo(f"no report issued for {label}")
    for r in reports:
        revisions = ", ".join(f"{k} {v['revision']}" for k, v in sorted(r.factor_revisions.items()))
        sup = "" if r.supersedes is None else f", supersedes {r.supersedes}"
        typer.echo(
            f"report {r.id} issued {r.issued_at.isoformat()} by {r.issued_by}{sup}: "
            f"{r.account['totals']['total_location_t']:.6f} t CO2; factors: {revisions}"
        )
        for change in r.changes:
            typer.echo(f"  {change['source']}: {change['why']}")
