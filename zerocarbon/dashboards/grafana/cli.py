"""``zerocarbon dashboards``: export the Grafana dashboards and their provisioning files,
or push the dashboards to a running Grafana."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zerocarbon.config import SiteConfig, SiteConfigError, load_site

dashboards_app = typer.Typer(
    help="Grafana dashboards generated from the site file: export them with Grafana's "
    "provisioning files, or push them to a Grafana.",
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


@dashboards_app.command("export")
def export_command(
    directory: Annotated[Path, typer.Argument(help="Directory to write into (created).")],
    site: SiteOption,
    db_host: Annotated[
        str, typer.Option("--db-host", help="host:port of PostgreSQL as Grafana reaches it.")
    ] = "timescaledb:5432",
    db_name: Annotated[str, typer.Option("--db-name", help="The gateway's database.")] = (
        "zerocarbon"
    ),
    db_user: Annotated[
        str,
        typer.Option("--db-user", help="The read-only role (zerocarbon db grant-readonly --role)."),
    ] = "grafana",
) -> None:
    """Write DIR/dashboards/<uid>.json and Grafana's provisioning files
    (DIR/provisioning/datasources/zerocarbon.yaml, DIR/provisioning/dashboards/
    zerocarbon.yaml). The data source's password is read by Grafana from
    $ZEROCARBON_GRAFANA_DB_PASSWORD."""
    from zerocarbon.dashboards.grafana.provisioning import DatasourceSettings, export

    settings = DatasourceSettings(host=db_host, database=db_name, user=db_user)
    for path in export(directory, _site(site), settings):
        typer.echo(f"wrote {path}")


@dashboards_app.command("push")
def push_command(
    site: SiteOption,
    grafana_url: Annotated[
        str, typer.Option("--grafana-url", help="Grafana's base URL, e.g. http://grafana:3000.")
    ],
    token: Annotated[
        str,
        typer.Option(
            "--token",
            envvar="ZEROCARBON_GRAFANA_TOKEN",
            help="A service account token with the Editor role (or $ZEROCARBON_GRAFANA_TOKEN).",
        ),
    ],
    timeout_s: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Timeout of each request [s].")
    ] = 10.0,
) -> None:
    """Upload the dashboards into the site's folder (created once, stable uid), each
    with overwrite, so that pushing again changes nothing but their versions."""
    from zerocarbon.dashboards.grafana.push import PushError, push_dashboards

    try:
        result = push_dashboards(_site(site), grafana_url, token, timeout_s=timeout_s)
    except PushError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    what = "created" if result.folder_created else "exists"
    typer.echo(f"folder {result.folder_uid} ({what})")
    for pushed in result.dashboards:
        typer.echo(f"dashboard {pushed.uid} version {pushed.version}: {pushed.url}")
