"""``zerocarbon ledger``: the instruments held (green certificates, green-power contracts,
CCER credits, allowances), their retirement against a period, and the audit trail.

Every command first brings the ledger in line with the site file (``--site``), as the
gateway does at start; the database is the gateway's (ZEROCARBON_DATABASE_URL, else the
embedded PostgreSQL in ZEROCARBON_DATA_DIR).
"""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import asyncpg
import typer

from zerocarbon.accounts import ledger
from zerocarbon.accounts.ledger import InstrumentView, LedgerRefused, PeriodError
from zerocarbon.config import SiteConfig, SiteConfigError, load_site
from zerocarbon.settings import Settings
from zerocarbon.storage import ledger as store

__all__ = ["ledger_app"]

ledger_app = typer.Typer(
    help="The instruments ledger: green certificates, green-power contracts, CCER "
    "credits and allowances; retire them against a period, once; the audit trail.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

SiteOption = Annotated[Path, typer.Option("--site", help="Site configuration file (TOML).")]


def _site(path: Path) -> SiteConfig:
    try:
        return load_site(path)
    except SiteConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _on_ledger(site: SiteConfig, action: Callable[[asyncpg.Connection], Awaitable[None]]) -> None:
    """Sync the ledger from ``site``, then run ``action(conn)``; a refusal exits 1."""
    from zerocarbon.api.app import redact_url
    from zerocarbon.runtime import StartupError, database

    async def main() -> None:
        async with database(Settings()) as url:
            try:
                conn = await asyncpg.connect(url)
            except (OSError, asyncpg.PostgresError) as exc:
                raise StartupError(
                    f"cannot connect to the database {redact_url(url)}: {exc}"
                ) from exc
            try:
                await ledger.sync_instruments(conn, site)
                await action(conn)
            finally:
                await conn.close()

    try:
        asyncio.run(main())
    except (StartupError, LedgerRefused, PeriodError, LookupError, asyncpg.PostgresError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _fmt(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _when(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _engine_text(view: InstrumentView) -> str:
    if view.engine is None:
        return "-"
    return "; ".join(
        f"{m.month}: {m.allocated_kwh:,.3f} kWh allocated, {m.unused_kwh:,.3f} kWh unused"
        for m in view.engine
    )


@ledger_app.command("list")
def list_command(site: SiteOption) -> None:
    """One line per instrument: id, kind, volume, retired, status, and for green
    certificates and contracts what the carbon engine allocated and left unused."""
    site_config = _site(site)

    async def action(conn: asyncpg.Connection) -> None:
        views = await ledger.ledger_view(conn, site_config)
        if not views:
            typer.echo("no instruments: the site file declares none")
        for v in views:
            i = v.instrument
            typer.echo(
                f"{i.id}  {i.kind}  {_fmt(i.volume)} {i.unit}  retired {_fmt(i.retired_volume)}"
                f"  {i.status}  engine: {_engine_text(v)}"
            )

    _on_ledger(site_config, action)


@ledger_app.command("show")
def show_command(
    instrument: Annotated[str, typer.Argument(help="Ledger id, e.g. certificates.gec_june.")],
    site: SiteOption,
) -> None:
    """An instrument: its declaration, the engine's allocation, its retirements and its
    audit trail."""
    site_config = _site(site)

    async def action(conn: asyncpg.Connection) -> None:
        d = await ledger.instrument_detail(conn, instrument, site_config)
        i = d.view.instrument
        typer.echo(f"{i.id} ({i.kind}, serial {i.serial}, vintage {i.vintage})")
        if i.project:
            typer.echo(f"  project: {i.project}")
        typer.echo(
            f"  volume {_fmt(i.volume)} {i.unit}, retired {_fmt(i.retired_volume)}, "
            f"held {_fmt(i.held_volume)}; {i.status}"
        )
        for m in d.view.engine or ():
            typer.echo(
                f"  engine {m.month}: volume {m.volume_kwh:,.3f} kWh, allocated "
                f"{m.allocated_kwh:,.3f} kWh (hourly column {m.column_kwh:,.3f} kWh over "
                f"{m.hours} h), unused {m.unused_kwh:,.3f} kWh"
            )
        for r in d.retirements:
            typer.echo(
                f"  retired {_fmt(r.volume)} {i.unit} against {r.period} by {r.retired_by} "
                f"at {_when(r.retired_at)}: {r.reason}"
            )
        for e in d.events:
            detail = f": {e.detail}" if e.detail else ""
            typer.echo(f"  {_when(e.at)} {e.action} by {e.actor}{detail}")

    _on_ledger(site_config, action)


@ledger_app.command("retire")
def retire_command(
    instrument: Annotated[str, typer.Argument(help="Ledger id, e.g. offsets.ccer_forest.")],
    site: SiteOption,
    period: Annotated[
        str, typer.Option("--period", help="Month 2026-03, quarter 2026-Q1 or year 2026.")
    ],
    volume: Annotated[
        str, typer.Option("--volume", help="How much, in the instrument's unit (MWh, t CO2e).")
    ],
    by: Annotated[
        str | None, typer.Option("--by", help="Who retires it (default: the login name).")
    ] = None,
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the ledger).")] = "",
) -> None:
    """Retire VOLUME of an instrument against PERIOD. A unit is retired once: a second
    retirement is refused with the first one's period, author and time; a green
    certificate batch only against its applies_to month, a contract against its months."""
    site_config = _site(site)
    who = by if by is not None else f"cli:{getpass.getuser()}"

    async def action(conn: asyncpg.Connection) -> None:
        r = await ledger.retire(
            conn, instrument, period=period, volume=volume, retired_by=who, reason=reason
        )
        inst = await store.get_instrument(conn, instrument)
        assert inst is not None
        typer.echo(
            f"retired {_fmt(r.volume)} {inst.unit} of {instrument} against {r.period} by "
            f"{r.retired_by} at {_when(r.retired_at)}; {_fmt(inst.held_volume)} {inst.unit} "
            f"held ({inst.status})"
        )

    _on_ledger(site_config, action)


@ledger_app.command("history")
def history_command(
    site: SiteOption,
    instrument: Annotated[
        str | None, typer.Option("--instrument", help="Only this instrument's events.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Newest events shown.")] = 200,
) -> None:
    """The audit trail, oldest first: declared, changed, retired, refused, cancelled;
    who, when, and what."""
    site_config = _site(site)

    async def action(conn: asyncpg.Connection) -> None:
        for e in await store.instrument_events(conn, instrument, limit=limit):
            typer.echo(
                f"{_when(e.at)}  {e.instrument_id}  {e.action}  by {e.actor}"
                + (f"  {e.detail}" if e.detail else "")
            )

    _on_ledger(site_config, action)
