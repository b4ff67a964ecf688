"""``zerocarbon center``: the group's center (ingest workers, group API and page).

``run`` is what a center host runs: it creates the central schema, the stream that
sources every site and the workers' consumer, starts ``--workers`` ingest worker
processes (restarted if one dies) and serves the group API and page. ``worker`` is
one ingest worker (``run`` starts them; a deployment may also run them on their own
hosts, any number). ``setup`` only creates the schema, stream and consumer;
``add-site`` makes a site's password and the lines for the center file;
``nats-config`` writes the cluster nodes' nats-server configuration from the center
file (the workers' user and each site's, with its permissions). ``docs/center.md``
explains the whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Annotated

import typer

from zerocarbon.uplink.center_config import CenterConfig, CenterConfigError, load_center_config

center_app = typer.Typer(
    help="The group's center: sites uplink over NATS JetStream; workers store; one group view.",
    no_args_is_help=True,
)

log = logging.getLogger(__name__)

ConfigOption = Annotated[
    Path, typer.Option("--config", help="The center file (TOML); see examples/center.toml.")
]
DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Folder of the embedded PostgreSQL used when the database URL variable is unset "
        "(trials only).",
    ),
]
WORKER_RESTART_S = 1.0  # a worker process that exited is started again after this [s]
PROGRESS_EVERY_S = 30.0  # a worker logs what it stored this often [s]
STOP_TIMEOUT_S = 10.0  # a worker asked to stop gets this long to finish its batch [s]


def _load(path: Path) -> CenterConfig:
    try:
        return load_center_config(path)
    except CenterConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _setup_logging(verbose: bool) -> None:
    from zerocarbon.cli import _setup_logging as setup  # the gateway commands' own

    setup(verbose)


@contextlib.asynccontextmanager
async def _database(config: CenterConfig, data_dir: Path | None) -> AsyncIterator[str]:
    """The central database's URL: the variable ``center.database_url_env`` names, else
    an embedded PostgreSQL in ``data_dir``."""
    from zerocarbon.runtime import database
    from zerocarbon.settings import Settings

    url = os.environ.get(config.center.database_url_env)
    updates: dict[str, object] = {"database_url": url, "database_name": "zerocarbon_center"}
    if data_dir is not None:
        updates["data_dir"] = data_dir
    settings = Settings().model_copy(update=updates)
    async with database(settings) as db_url:
        yield db_url


async def _setup(config: CenterConfig, db_url: str) -> None:
    """Schema, stream and consumer (idempotent)."""
    import asyncpg
    import nats

    from zerocarbon.runtime import StartupError
    from zerocarbon.uplink.center_schema import apply_center_policies, create_center_schema
    from zerocarbon.uplink.center_streams import center_nats_options, ensure_center_stream

    try:
        conn = await asyncpg.connect(db_url)
    except (OSError, asyncpg.PostgresError) as exc:
        raise StartupError(f"cannot use the center's database: {exc}") from exc
    try:
        await create_center_schema(conn)
        for change in await apply_center_policies(
            conn,
            compress_after_days=config.center.compress_after_days or None,  # 0: never
            retention_days=config.center.retention_days,
        ):
            log.info("center database: %s", change)
    finally:
        await conn.close()
    errors: list[str] = []

    async def note(exc: Exception) -> None:
        errors.append(f"{type(exc).__name__}: {exc}")

    try:
        options = center_nats_options(config, os.environ)
        nc = await nats.connect(
            **{**options, "allow_reconnect": False, "max_reconnect_attempts": 0},
            error_cb=note,
        )
    except (OSError, ValueError, TimeoutError, nats.errors.Error) as exc:
        why = errors[-1] if errors else f"{type(exc).__name__}: {exc}"
        hint = (
            " (check center.nats_user and the password in the variable "
            f"{config.center.nats_password_env})"
            if "Authorization" in why
            else ""
        )
        raise StartupError(
            f"cannot reach the center's NATS cluster {list(config.center.nats_urls)}: {why}{hint}"
        ) from exc
    try:
        await ensure_center_stream(
            nc.jetstream(),
            config.site_ids,
            replicas=config.center.stream_replicas,
            ack_wait_s=config.center.ack_wait_s,
        )
    finally:
        await nc.close()


def _run(main: object) -> None:
    from zerocarbon.runtime import StartupError

    try:
        asyncio.run(main)  # type: ignore[arg-type]
    except StartupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        sys.exit(130)


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


@center_app.command()
def setup(
    config: ConfigOption,
    data_dir: DataDirOption = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Create the central schema, the stream sourcing every site and the workers'
    consumer (idempotent; a site added to the file is added to the stream)."""
    _setup_logging(verbose)
    center = _load(config)

    async def main() -> None:
        async with _database(center, data_dir) as db_url:
            await _setup(center, db_url)
        typer.echo(f"center ready: {len(center.sites)} sites sourced")

    _run(main())


@center_app.command()
def worker(
    config: ConfigOption,
    data_dir: DataDirOption = None,
    name: Annotated[str, typer.Option("--name", help="Name in the logs.")] = "worker",
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """One ingest worker: pull from the center's stream, store, acknowledge (until
    SIGTERM, which lets it finish the batch in hand)."""
    _setup_logging(verbose)
    center = _load(config)

    # the worker reports NATS errors itself, one line each; nats-py would log a
    # traceback for every reconnect attempt
    logging.getLogger("nats.aio.client").setLevel(logging.CRITICAL)

    async def main() -> None:
        from zerocarbon.runtime import StartupError
        from zerocarbon.storage.database import open_pool
        from zerocarbon.uplink.center_store import CenterStore
        from zerocarbon.uplink.center_streams import center_nats_options
        from zerocarbon.uplink.worker import IngestWorker

        stop = _stop_event()
        async with _database(center, data_dir) as db_url:
            try:
                pool = await open_pool(db_url)
            except OSError as exc:
                raise StartupError(f"cannot use the center's database: {exc}") from exc
            try:
                options = center_nats_options(center, os.environ)
            except ValueError as exc:
                raise StartupError(str(exc)) from exc
            ingest = IngestWorker(
                CenterStore(pool),
                options,
                fetch_batch=center.center.fetch_batch,
                name=name,
            )
            task = asyncio.create_task(ingest.run(), name=name)
            stopper = asyncio.create_task(stop.wait())
            last = 0
            try:
                while not task.done():
                    await asyncio.wait(
                        {task, stopper},
                        timeout=PROGRESS_EVERY_S,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    if stop.is_set():
                        ingest.request_stop()
                        try:  # the batch in hand is finished and acknowledged
                            await asyncio.wait_for(asyncio.shield(task), STOP_TIMEOUT_S)
                        except TimeoutError:  # stuck reaching NATS or the database
                            task.cancel()
                            with contextlib.suppress(asyncio.CancelledError):
                                await task
                        break
                    s = ingest.stats
                    if s.readings_received != last:
                        log.info(
                            "%s: %d messages, %d readings received, %d new, %d duplicates, "
                            "%d rejected",
                            name,
                            s.messages,
                            s.readings_received,
                            s.readings_stored,
                            s.duplicates,
                            s.rejected,
                        )
                        last = s.readings_received
                if not task.cancelled():
                    task.result()
            finally:
                stopper.cancel()
                await pool.close()

    _run(main())


@center_app.command("run")
def run_center(
    config: ConfigOption,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=0, help="Ingest worker processes (default: center.workers)."),
    ] = None,
    http: Annotated[
        bool, typer.Option("--http/--no-http", help="Serve the group API and page.")
    ] = True,
    data_dir: DataDirOption = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Set the center up, run its ingest workers and serve the group API and page."""
    _setup_logging(verbose)
    center = _load(config)
    count = center.center.workers if workers is None else workers

    async def main() -> None:
        stop = _stop_event()
        async with _database(center, data_dir) as db_url:
            setting_up = asyncio.create_task(_setup(center, db_url))
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({setting_up, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if not setting_up.done():  # stopped while the cluster or database was away
                setting_up.cancel()
                return
            setting_up.result()
            env = {**os.environ, center.center.database_url_env: db_url}
            procs: dict[int, asyncio.subprocess.Process] = {}

            async def spawn(i: int) -> None:
                procs[i] = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "zerocarbon",
                    "center",
                    "worker",
                    "--config",
                    str(config),
                    "--name",
                    f"worker-{i}",
                    env=env,
                )

            for i in range(count):
                await spawn(i)
            server_task = None
            if http:
                server_task = asyncio.create_task(_serve(center, db_url, stop))
            typer.echo(
                f"center {center.center.name!r}: {len(center.sites)} sites, {count} workers"
                + (f", http://{center.center.http.host}:{center.center.http.port}/" if http else "")
            )
            try:
                while not stop.is_set():
                    for i, proc in list(procs.items()):
                        if proc.returncode is not None:
                            log.error(
                                "worker-%d exited with %s; starting it again", i, proc.returncode
                            )
                            await spawn(i)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), WORKER_RESTART_S)
            finally:
                for proc in procs.values():
                    if proc.returncode is None:
                        proc.terminate()
                for proc in procs.values():
                    try:
                        await asyncio.wait_for(proc.wait(), 15)
                    except TimeoutError:
                        proc.kill()
                if server_task is not None:
                    await server_task

    _run(main())


async def _serve(center: CenterConfig, db_url: str, stop: asyncio.Event) -> None:
    import uvicorn

    class _QuietServer(uvicorn.Server):
        """Signals are the center's: it stops the server itself."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    from zerocarbon.api.group_app import create_group_app

    app = create_group_app(db_url, stale_after_s=center.center.stale_after_s)
    server = _QuietServer(
        uvicorn.Config(
            app,
            host=center.center.http.host,
            port=center.center.http.port,
            log_level="warning",
        )
    )
    task = asyncio.create_task(server.serve())
    await stop.wait()
    server.should_exit = True
    await task


@center_app.command("nats-config")
def nats_config(
    config: ConfigOption,
    out: Annotated[Path, typer.Option("--out", help="Folder the node configs go to.")],
    node: Annotated[
        list[str] | None,
        typer.Option(
            "--node",
            metavar="NAME=HOST",
            help="A cluster node and the host its peers and the sites reach it by (repeat; "
            "default: hub1=hub1, hub2=hub2, hub3=hub3, as in docker-compose.center.yml).",
        ),
    ] = None,
    advertise: Annotated[
        list[str] | None,
        typer.Option(
            "--advertise",
            metavar="NAME=HOST:PORT",
            help="The leafnode address the sites reach node NAME by (repeat; what nats-server "
            "tells a connected site, beside its hub_urls; default: the node's own address).",
        ),
    ] = None,
    client_port: Annotated[int, typer.Option(min=1, max=65535)] = 4222,
    cluster_port: Annotated[int, typer.Option(min=1, max=65535)] = 6222,
    leaf_port: Annotated[int, typer.Option(min=1, max=65535)] = 7422,
    monitor_port: Annotated[int, typer.Option(min=1, max=65535)] = 8222,
    listen_host: Annotated[str, typer.Option(help="Address the listeners bind.")] = "0.0.0.0",
    store_dir: Annotated[
        str, typer.Option(help="JetStream folder, as the server sees it.")
    ] = "/data/jetstream",
    max_store_gib: Annotated[
        float, typer.Option(min=0.1, help="JetStream disk limit [GiB].")
    ] = 50.0,
    tls_cert: Annotated[
        str | None, typer.Option(help="Server certificate (PEM), as the server sees it.")
    ] = None,
    tls_key: Annotated[str | None, typer.Option(help="Its key (PEM).")] = None,
) -> None:
    """Write each cluster node's nats-server configuration from the center file: the
    workers' user (password from the variable center.nats_password_env names) and one
    user per [[sites]] entry (its password_hash), each allowed its own subjects only."""
    from zerocarbon.uplink.leaf import NatsServerNotFoundError, check_config, find_nats_server
    from zerocarbon.uplink.nats_config import (
        HubNode,
        SiteCredential,
        Tls,
        hash_password,
        hub_config,
    )

    center = _load(config)
    errors = [
        f"{config}: sites[{i}].password_hash: missing (zerocarbon center add-site {s.id})"
        for i, s in enumerate(center.sites)
        if not s.password_hash
    ]
    if (tls_cert is None) != (tls_key is None):
        errors.append("--tls-cert and --tls-key go together")
    try:
        worker_password = center.center.password(os.environ)
    except ValueError as exc:
        errors.append(str(exc))
        worker_password = None
    if worker_password is None and not errors:
        errors.append(f"{config}: center.nats_password_env: name the workers' password variable")
    pairs = [n.split("=", 1) for n in (node or ["hub1=hub1", "hub2=hub2", "hub3=hub3"])]
    if any(len(p) != 2 for p in pairs):
        errors.append("--node: give NAME=HOST")
    advertised = dict(a.split("=", 1) for a in advertise or [] if "=" in a)
    if len(advertised) != len(advertise or []):
        errors.append("--advertise: give NAME=HOST:PORT")
    unknown = set(advertised) - {p[0] for p in pairs if len(p) == 2}
    if unknown:
        errors.append(f"--advertise: no node named {', '.join(sorted(unknown))}")
    if errors:
        typer.echo("error: " + "\nerror: ".join(errors), err=True)
        raise typer.Exit(2)
    assert worker_password is not None
    try:
        nodes = [
            HubNode(
                name,
                host,
                client_port=client_port,
                cluster_port=cluster_port,
                leaf_port=leaf_port,
                monitor_port=monitor_port,
                store_dir=store_dir,
                listen_host=listen_host,
                leaf_advertise=advertised.get(name),
            )
            for name, host in pairs
        ]
        sites = [SiteCredential(s.id, s.password_hash or "") for s in center.sites]
        tls = Tls(tls_cert, tls_key) if tls_cert and tls_key else None
        worker_hash = hash_password(worker_password)
        texts = {
            n.name: hub_config(
                n,
                nodes,
                worker_user=center.center.nats_user,
                worker_password_hash=worker_hash,
                sites=sites,
                tls=tls,
                max_store_bytes=int(max_store_gib * 2**30),
            )
            for n in nodes
        }
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    out.mkdir(parents=True, exist_ok=True)
    try:
        binary = find_nats_server()
    except NatsServerNotFoundError:
        binary = None
    for name, text in texts.items():
        path = out / f"{name}.conf"
        path.write_text(text, encoding="utf-8")
        path.chmod(0o640)
        problem = check_config(path, nats_server=binary) if binary and tls is None else None
        if problem is not None:
            typer.echo(f"error: {path}: nats-server refuses it: {problem}", err=True)
            raise typer.Exit(1)
        typer.echo(f"wrote {path}")
    typer.echo(
        f"{len(nodes)} nodes, {len(sites)} sites; reload the nodes (nats-server --signal "
        "reload) and run `zerocarbon center setup` so the stream sources new sites"
    )


@center_app.command("add-site")
def add_site(
    site: Annotated[str, typer.Argument(help="The site's id (its [uplink] site).")],
    name: Annotated[str, typer.Option("--name", help="The site's name.")] = "",
) -> None:
    """Make a new password for a site; print it once (for the gateway's password
    variable) and the [[sites]] lines (with its bcrypt hash) for the center file."""
    from zerocarbon.config_uplink import check_site_id
    from zerocarbon.uplink.nats_config import hash_password, new_password

    try:
        check_site_id(site)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    password = new_password()
    typer.echo(
        f"# the gateway's password (set it in its uplink.password_env variable):\n# {password}"
    )
    typer.echo("[[sites]]")
    typer.echo(f'id = "{site}"')
    if name:
        typer.echo(f"name = {name!r}".replace("'", '"'))
    typer.echo(f'password_hash = "{hash_password(password)}"')
