"""``zerocarbon report``: the report of a month, quarter or year as PDF (Chinese or
English), an Excel workbook with the hourly data behind every figure, or JSON.

The database is the gateway's (ZEROCARBON_DATABASE_URL, else the embedded PostgreSQL in
ZEROCARBON_DATA_DIR), as for ``zerocarbon accounts``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from zerocarbon.accounts.accounts_cli import PeriodOption, SiteOption, _check_period, _on_database
from zerocarbon.accounts.accounts_cli import _site as load_site_or_exit
from zerocarbon.config import DeviceRole, SiteConfig

if TYPE_CHECKING:
    from zerocarbon.accounts.report.model import Report, ReportInputs

__all__ = ["Format", "Language", "load_report_inputs", "render", "report_command"]


class Format(StrEnum):
    PDF = "pdf"
    XLSX = "xlsx"
    JSON = "json"


class Language(StrEnum):
    ZH_CN = "zh-CN"
    EN = "en"


async def load_report_inputs(conn: Any, site: SiteConfig, period_text: str) -> ReportInputs:
    """Everything the report of a period reads from the database: its hourly rows, the
    15-minute import demand (with a ``[tariff]``), the instruments ledger, and the rows of
    the same period of the base year (``[accounts] base_year``) for GRI 305-5."""
    from zerocarbon.accounts.cost_queries import import_demand_15min
    from zerocarbon.accounts.ledger import ledger_view
    from zerocarbon.accounts.period import compute_account, parse_period, site_factor_table
    from zerocarbon.accounts.report.model import ReportInputs
    from zerocarbon.storage.accounts import load_period_rows

    zone = site.site.timezone
    period = parse_period(period_text, zone)
    table = site_factor_table(site)
    carbon, energy, lines = await load_period_rows(conn, period.start, period.end)
    demand: list[tuple[datetime, float]] = []
    if site.tariff is not None:
        grid = [d.id for d in site.devices if d.role is DeviceRole.GRID]
        demand = await import_demand_15min(conn, period.start, period.end, grid)
    instruments = await ledger_view(conn, site)
    base = None
    base_year = site.accounts.base_year
    if base_year is not None and base_year != period.year:
        base_period = parse_period(str(base_year) + period.label[4:], zone)
        rows = await load_period_rows(conn, base_period.start, base_period.end)
        if rows[0]:
            base = compute_account(site, base_period, *rows, table)
    return ReportInputs(
        site, period, table, carbon, energy, lines, demand, instruments, base_account=base
    )


def render(report: Report, fmt: Format, language: Language) -> bytes:
    """The report in a format, as bytes."""
    if fmt is Format.PDF:
        from zerocarbon.accounts.report.pdf import render_pdf

        return render_pdf(report, language.value)
    if fmt is Format.XLSX:
        from zerocarbon.accounts.report.xlsx import render_xlsx

        return render_xlsx(report, language.value)
    return (json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def report_command(
    site: SiteOption,
    period: PeriodOption,
    fmt: Annotated[Format, typer.Option("--format", help="pdf, xlsx or json.")] = Format.PDF,
    language: Annotated[
        Language, typer.Option("--language", help="Language of the PDF and the labels.")
    ] = Language.ZH_CN,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="File to write (default: zerocarbon-report-<period>[-<language>].<format> "
            "in the current folder; JSON without --out is printed).",
        ),
    ] = None,
) -> None:
    """The report of a period: the account (GB/T 32150) with its sources, factors and
    data quality, the energy cost, the instruments, charts, and the ESG mapping (GRI
    302/305, IFRS S2)."""
    from zerocarbon.accounts.report.model import build_report
    from zerocarbon.accounts.report.pdf import ReportFontError

    site_config = load_site_or_exit(site)
    _check_period(site_config, period)

    async def action(conn: Any) -> ReportInputs:
        return await load_report_inputs(conn, site_config, period)

    inputs = _on_database(action)
    report = build_report(inputs, datetime.now(UTC).replace(microsecond=0))
    try:
        data = render(report, fmt, language)
    except ReportFontError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if out is None and fmt is Format.JSON:
        typer.echo(data.decode("utf-8"), nl=False)
        return
    if out is None:
        suffix = f"-{language.value}" if fmt is Format.PDF else ""
        out = Path(f"zerocarbon-report-{report.period.label}{suffix}.{fmt.value}")
    out.write_bytes(data)
    typer.echo(f"wrote {out} ({len(data)} bytes): {report.period.label}, {fmt.value}")
