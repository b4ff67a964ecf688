"""Wiring: database, collectors, pipeline, carbon engine and the web server.

:class:`EnergyCenter` runs one site: it opens the database (creating the schema and
registering the devices), opens the store-and-forward spool, starts a collector task
per Modbus link and one MQTT subscriber, the pipeline that feeds the spool, the
forwarder that moves the spool into the database and hands stored readings to the
carbon engine, and optionally the HTTP server. Leaving the context stops collection
first, then drains the pipeline into the spool and the spool into the database (what
the database cannot take stays spooled for the next start), writes the last hourly
rows and closes the database, so the data stays consistent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import asyncpg
import uvicorn

from zerocarbon.accounts.ledger import sync_instruments
from zerocarbon.alerts.channel_setup import ChannelSetupError, build_channels
from zerocarbon.alerts.channels import Channel
from zerocarbon.alerts.dispatcher import Dispatcher
from zerocarbon.alerts.service import AlertService
from zerocarbon.api.app import create_app, redact_url
from zerocarbon.api.server import GRACEFUL_SHUTDOWN_S, ApiServer
from zerocarbon.batch import SeriesRegistry
from zerocarbon.carbon_engine.engine import CarbonEngine
from zerocarbon.carbon_engine.factors import site_factor_errors
from zerocarbon.carbon_service import CarbonService
from zerocarbon.clock import Clock
from zerocarbon.config import Dlt645Device, ModbusRtuDevice, SiteConfig
from zerocarbon.ingest.admission import Admission
from zerocarbon.ingest.dlt645.collector import Dlt645LinkCollector, Dlt645Meter
from zerocarbon.ingest.dlt645.link import Dlt645Link, SerialPort, TcpGateway
from zerocarbon.ingest.events import DeviceEventSink, discard_events
from zerocarbon.ingest.modbus.collector import ModbusLinkScheduler, link_collectors
from zerocarbon.ingest.modbus.rtu_transport import ModbusRtuTransport
from zerocarbon.ingest.mqtt.collector import MqttCollector, mqtt_collector
from zerocarbon.ingest.pipeline import Pipeline, PipelineSink
from zerocarbon.ingest.reading import BatchSink
from zerocarbon.ingest.serial_link import SerialSettings
from zerocarbon.metering.profile import DeviceProfile
from zerocarbon.settings import Settings
from zerocarbon.storage.database import create_schema, ensure_database, open_pool, register_site
from zerocarbon.storage.device_events import DeviceEventLog
from zerocarbon.storage.embedded import EmbeddedPostgres, EmbeddedPostgresError
from zerocarbon.storage.forwarder import SpoolForwarder
from zerocarbon.storage.ledger import LedgerRefused
from zerocarbon.storage.maintenance import StorageMaintenance
from zerocarbon.storage.partitions import open_layout
from zerocarbon.storage.spool import Spool, SpoolError
from zerocarbon.storage.spool_series import SpoolSeries
from zerocarbon.storage.timescale import expected_rows_per_day
from zerocarbon.storage.writer import ReadingWriter
from zerocarbon.tasks import SupervisedState, cancel_and_wait, supervise
from zerocarbon.telemetry import GatewayTelemetry
from zerocarbon.uplink.leaf import LeafServer, NatsServerError, find_nats_server
from zerocarbon.uplink.outbox import UplinkOutbox
from zerocarbon.uplink.publisher import UplinkPublisher

log = logging.getLogger(__name__)

PIPELINE_DRAIN_TIMEOUT_S = 60.0  # at shutdown, time allowed to spool what is queued [s]
SPOOL_DRAIN_TIMEOUT_S = 30.0  # at shutdown, time allowed to forward the spool [s]
UPLINK_FLUSH_TIMEOUT_S = 10.0  # at shutdown, time allowed to publish what waits [s]
DISPATCH_POLL_REAL_S = 1.0  # the notification outbox is looked at this often [real s]


def spool_directory(site: SiteConfig, settings: Settings) -> Path:
    """``[storage.spool] dir`` (relative to the site file), else ``<data dir>/spool``."""
    configured = site.storage.spool.dir
    return site.resolve_path(configured) if configured else settings.data_dir / "spool"


def open_spool(site: SiteConfig, directory: Path) -> Spool:
    """The site's spool in ``directory``, per ``[storage.spool]``."""
    cfg = site.storage.spool
    try:
        return Spool(
            directory,
            segment_bytes=cfg.segment_mib << 20,
            quota_bytes=cfg.quota_mib << 20,
            alarm_fraction=cfg.alarm_percent / 100,
            fsync=cfg.fsync,
            fsync_interval_s=cfg.fsync_interval_s,
        )
    except (SpoolError, OSError) as exc:
        raise StartupError(f"storage.spool: cannot open the spool in {directory}: {exc}") from exc


@contextlib.asynccontextmanager
async def database(
    settings: Settings, *, name: str | None = None, recreate: bool = False
) -> AsyncIterator[str]:
    """Yield the URL of the database to use.

    With ``settings.database_url`` and no ``name``, that database is used as it is;
    with a ``name``, that database on the same server (created if missing, dropped
    first if ``recreate``). Without a URL, an embedded PostgreSQL is started in
    ``settings.data_dir / "pg"`` and ``name`` (default ``settings.database_name``)
    created on it; the embedded server is stopped on exit.
    """
    if settings.database_url:
        if name is None:
            yield settings.database_url
        else:
            yield await _ensure(settings.database_url, name, recreate)
        return
    server = EmbeddedPostgres(settings.data_dir / "pg")
    try:
        server_url = await asyncio.to_thread(server.start)
    except EmbeddedPostgresError as exc:
        raise StartupError(str(exc)) from exc
    try:
        yield await _ensure(server_url, name or settings.database_name, recreate)
    finally:
        await asyncio.to_thread(server.stop)


async def _ensure(server_url: str, name: str, recreate: bool) -> str:
    try:
        return await ensure_database(server_url, name, recreate=recreate)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StartupError(
            f"cannot create database {name!r} on {redact_url(server_url)}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def serial_settings(device: ModbusRtuDevice | Dlt645Device) -> SerialSettings:
    """The line settings of a device on a serial port."""
    return SerialSettings(device.baudrate, device.bytesize, device.parity, device.stopbits)


def modbus_rtu_links(
    site: SiteConfig,
    clock: Clock,
    sink: BatchSink,
    registry: SeriesRegistry,
    events: DeviceEventSink = discard_events,
) -> list[ModbusLinkScheduler]:
    """One link scheduler per serial port of the site's Modbus RTU units, over the RTU
    transport; the line's request gap is kept by the transport, in real seconds (a bus
    does not run faster on a simulated clock)."""
    links: dict[str, list[tuple[ModbusRtuDevice, DeviceProfile]]] = {}
    for d in site.modbus_rtu_devices:
        links.setdefault(d.serial_port, []).append((d, site.profile_of(d)))
    schedulers = []
    for port, devices in links.items():
        first = devices[0][0]  # the site file checked that they agree on the line
        transport = ModbusRtuTransport(
            port, serial_settings(first), request_gap_s=first.request_gap_s
        )
        schedulers.append(
            ModbusLinkScheduler(transport, devices, clock, sink, registry, events=events)
        )
    return schedulers


def dlt645_collectors(
    site: SiteConfig,
    clock: Clock,
    sink: BatchSink,
    registry: SeriesRegistry,
    events: DeviceEventSink = discard_events,
) -> list[Dlt645LinkCollector]:
    """One collector per DL/T 645 line (gateway ``host:port`` or serial port), its meters
    in site order."""
    links: dict[Dlt645Link, list[Dlt645Meter]] = {}
    for d in site.dlt645_devices:
        meter = Dlt645Meter(
            device_id=d.id,
            address=d.address,
            poll_interval_s=d.poll_interval_s,
            timeout_s=d.timeout_s,
            identifiers=d.data_ids(),
        )
        link: Dlt645Link
        if d.serial_port is not None:
            link = SerialPort(d.serial_port, serial_settings(d))
        else:
            link = TcpGateway(*d.endpoint)
        links.setdefault(link, []).append(meter)
    return [
        Dlt645LinkCollector(link, meters, clock, sink, registry, events=events)
        for link, meters in links.items()
    ]


class StartupError(RuntimeError):
    """Something the site needs could not be started; the message says what and why."""


class _EmbeddedApiServer(ApiServer):
    """The API server, leaving signal handling to the program that embeds it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@dataclass(frozen=True, slots=True)
class HttpOptions:
    host: str
    port: int


class EnergyCenter:
    """Collect, store, compute and serve one site until the context is left."""

    def __init__(
        self,
        site: SiteConfig,
        settings: Settings,
        clock: Clock,
        *,
        database_url: str,
        mqtt_url: str | None = None,
        http: HttpOptions | None = None,
        carbon_flush_interval_s: float = 1.0,
        spool_dir: Path | None = None,
        uplink_hub_urls: tuple[str, ...] = (),
    ) -> None:
        self.site = site
        self.settings = settings.model_copy(
            update={
                "database_url": database_url,
                "site_timezone": site.site.timezone,
                "site_name": site.site.name,
                "site_language": site.site.language,
            }
        )
        self.clock = clock
        self._mqtt_url = mqtt_url
        self._http = http
        self._carbon_flush_interval_s = carbon_flush_interval_s
        self.spool_dir = spool_dir or spool_directory(site, self.settings)
        self._uplink_hub_urls = uplink_hub_urls or (site.uplink.hub_urls if site.uplink else ())
        self.leaf: LeafServer | None = None  # the gateway's own NATS leaf node
        self.uplink: UplinkPublisher | None = None  # None: no [uplink]
        self._uplink_outbox: UplinkOutbox | None = None
        self._uplink_task: asyncio.Task[None] | None = None
        self.uplink_state: SupervisedState | None = None
        self._pool: asyncpg.Pool | None = None
        self._spool: Spool | None = None
        self._forwarder_task: asyncio.Task[None] | None = None
        self._maintenance_task: asyncio.Task[None] | None = None
        self.forwarder: SpoolForwarder | None = None
        self.maintenance: StorageMaintenance | None = None
        self.events: DeviceEventLog | None = None  # device events -> device_events
        self._events_task: asyncio.Task[None] | None = None
        self._collector_tasks: list[asyncio.Task[None]] = []
        self.collectors: dict[str, SupervisedState] = {}  # each collector task's state
        self._pipeline_task: asyncio.Task[None] | None = None
        self._http_server: uvicorn.Server | None = None
        self._http_task: asyncio.Task[None] | None = None
        self.modbus: list[ModbusLinkScheduler] = []  # TCP endpoints, then serial ports
        self.dlt645: list[Dlt645LinkCollector] = []
        self.mqtt: MqttCollector | None = None
        self.writer: ReadingWriter | None = None
        self.carbon: CarbonService | None = None
        self.pipeline: Pipeline | None = None
        self.admission: Admission | None = None
        self.alerts: AlertService | None = None  # None: the site has no alert rules
        self.dispatcher: Dispatcher | None = None  # None: no alert channels
        self._alert_tasks: list[asyncio.Task[None]] = []
        self._dispatch_stop = asyncio.Event()
        self.telemetry = GatewayTelemetry(self)

    @property
    def mqtt_url(self) -> str | None:
        """The broker the MQTT collector uses (None: no MQTT devices)."""
        if self.site.mqtt is None or not self.site.mqtt_devices:
            return None
        return self._mqtt_url or self.site.mqtt.url

    @property
    def forwarder_running(self) -> bool:
        task = self._forwarder_task
        return task is not None and not task.done()

    async def __aenter__(self) -> EnergyCenter:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def _start(self) -> None:
        url = self.settings.database_url
        assert url is not None
        try:
            self._pool = pool = await open_pool(url)
            async with pool.acquire() as conn:
                await create_schema(
                    conn, self.site.storage, rows_per_day=expected_rows_per_day(self.site)
                )
                registry = await register_site(conn, self.site)
                layout = await open_layout(conn, self.site.storage)
                await sync_instruments(conn, self.site)
        except LedgerRefused as exc:
            raise StartupError(f"the instruments ledger refuses the site file: {exc}") from exc
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StartupError(
                f"cannot use the database {redact_url(url)}: {type(exc).__name__}: {exc}"
            ) from exc
        errors = site_factor_errors(self.site)
        if errors:
            raise StartupError("the site's emission factors:\n" + "\n".join(errors))
        try:
            channels: dict[str, Channel] = build_channels(self.site.alerts, os.environ)
        except ChannelSetupError as exc:
            raise StartupError(str(exc)) from exc
        if self.site.mqtt is not None and self.site.mqtt_devices:
            try:
                self.site.mqtt.password(os.environ)
            except ValueError as exc:
                raise StartupError(str(exc)) from exc
        self.series = series = SeriesRegistry.for_site(self.site)
        self.events = DeviceEventLog(pool, registry.device_ids)
        self._events_task = asyncio.create_task(self.events.run(), name="device events")
        self.maintenance = StorageMaintenance(pool, layout, self.clock)
        self.writer = ReadingWriter(
            pool, registry, series, layout=layout, on_written=self.maintenance.note_times
        )
        self._maintenance_task = asyncio.create_task(
            self.maintenance.run(), name="storage maintenance"
        )
        self.carbon = CarbonService(
            CarbonEngine(self.site, series),
            pool,
            registry,
            flush_interval_s=self._carbon_flush_interval_s,
        )
        await self.carbon.restore()
        await self.carbon.warm_up()
        await self._start_alerts(pool, series, channels)
        await self._start_uplink(pool, series)
        self._spool = spool = open_spool(self.site, self.spool_dir)
        self.forwarder = SpoolForwarder(
            spool,
            self.writer,
            consumers=[self.carbon.write_batch],
            durable_consumers=[self._uplink_outbox.keep] if self._uplink_outbox else [],
            series=SpoolSeries(self.spool_dir, series, spool.last_seq + 1),
        )
        self._forwarder_task = asyncio.create_task(self.forwarder.run(), name="forwarder")
        self.admission = Admission(self.site, series, self.clock)
        sinks: list[PipelineSink] = [self.forwarder]
        if self.alerts is not None:
            sinks.append(self.alerts)
        self.pipeline = Pipeline(sinks, admission=self.admission)
        self._pipeline_task = asyncio.create_task(self.pipeline.run(), name="pipeline")
        self.modbus = [
            *link_collectors(
                self.site, self.clock, self.pipeline.put, series, events=self.events.record
            ),
            *modbus_rtu_links(
                self.site, self.clock, self.pipeline.put, series, events=self.events.record
            ),
        ]
        self.mqtt = mqtt_collector(
            self.site,
            self.clock,
            self.pipeline.put,
            series,
            url=self._mqtt_url,
            events=self.events.record,
        )
        self.dlt645 = dlt645_collectors(
            self.site, self.clock, self.pipeline.put, series, events=self.events.record
        )
        runs: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            (f"modbus collector {c.name}", c.run) for c in self.modbus
        ]
        runs += [(f"dlt645 collector {c.name}", c.run) for c in self.dlt645]
        if self.mqtt is not None:
            runs.append(("mqtt collector", self.mqtt.run))
        for name, run in runs:
            state = self.collectors[name] = SupervisedState(name)
            self._collector_tasks.append(
                asyncio.create_task(supervise(name, run, state), name=name)
            )
        if self._http is not None:
            await self._start_http(self._http)

    async def _start_alerts(
        self, pool: asyncpg.Pool, series: SeriesRegistry, channels: dict[str, Channel]
    ) -> None:
        """The alert rules (when the site has any) and the notification dispatcher (when
        it has channels); both continue from what the database holds."""
        cfg = self.site.alerts
        if cfg.rules:
            self.alerts = alerts = AlertService(
                self.site, pool, series, self.clock, channels=tuple(channels)
            )
            try:
                await alerts.restore()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                raise StartupError(f"cannot read the stored alerts: {exc}") from exc
            assert self.carbon is not None
            self.carbon.on_written = alerts.hourly_written
            self._alert_tasks.append(asyncio.create_task(alerts.run(), name="alerts"))
        if channels:
            speed = self.clock.speed  # poll and back off in real seconds, whatever the speed
            self.dispatcher = Dispatcher(
                pool,
                channels,
                self.clock,
                base_backoff_s=cfg.retry_base_s * speed,
                max_backoff_s=cfg.retry_max_s * speed,
                poll_interval_s=DISPATCH_POLL_REAL_S * speed,
            )
            self._alert_tasks.append(
                asyncio.create_task(self.dispatcher.run(self._dispatch_stop), name="dispatcher")
            )

    @property
    def uplink_outbox_dir(self) -> Path:
        """The uplink's outbox, beside the spool (``<spool>-uplink``)."""
        return self.spool_dir.with_name(self.spool_dir.name + "-uplink")

    async def _start_uplink(self, pool: asyncpg.Pool, series: SeriesRegistry) -> None:
        """With ``[uplink]``: the gateway's leaf node (unless ``local_url`` names a NATS
        server to use), the outbox and the publisher."""
        cfg = self.site.uplink
        if cfg is None:
            return
        local_url = cfg.local_url
        if local_url is None:
            if not self._uplink_hub_urls:
                raise StartupError(
                    "uplink: no center to connect to: give uplink.hub_urls in the site file, "
                    "or zerocarbon run --uplink nats-leaf://host:7422"
                )
            try:
                password = cfg.password(os.environ)
            except ValueError as exc:
                raise StartupError(str(exc)) from exc
            if password is None:
                raise StartupError(
                    "uplink.password_env: the site's password at the center is needed "
                    "(the name of the environment variable that holds it)"
                )
            try:
                binary = find_nats_server(cfg.nats_server)
            except FileNotFoundError as exc:
                raise StartupError(f"uplink: {exc}") from exc
            self.leaf = LeafServer(
                cfg.site,
                data_dir=self.settings.data_dir / "nats",
                hub_leaf_urls=self._uplink_hub_urls,
                password=password,
                max_store_bytes=(cfg.max_backlog_mib << 20) * 5 // 4,
                tls_ca=self.site.resolve_path(cfg.tls_ca) if cfg.tls_ca else None,
                nats_server=binary,
            )
            try:
                await self.leaf.start()
            except (NatsServerError, OSError) as exc:
                raise StartupError(
                    f"uplink: the local NATS leaf node did not start: {exc}"
                ) from exc
            local_url = self.leaf.client_url
        try:
            self._uplink_outbox = outbox = UplinkOutbox(
                self.uplink_outbox_dir, series, quota_bytes=cfg.outbox_quota_mib << 20
            )
        except (SpoolError, OSError) as exc:
            raise StartupError(
                f"uplink: cannot open the outbox {self.uplink_outbox_dir}: {exc}"
            ) from exc
        self.uplink = UplinkPublisher(self.site, cfg, series, outbox, pool, local_url=local_url)
        state = self.uplink_state = SupervisedState("uplink")
        self._uplink_task = asyncio.create_task(
            supervise("uplink", self.uplink.run, state), name="uplink"
        )

    async def _stop_uplink(self) -> None:
        """Publish what the outbox holds (briefly), then stop the publisher and the leaf."""
        if self._uplink_task is not None:
            await cancel_and_wait([self._uplink_task])
            self._uplink_task = None
        if self.uplink is not None:
            await self.uplink.flush(UPLINK_FLUSH_TIMEOUT_S)
            await self.uplink.close()
        if self._uplink_outbox is not None:
            await asyncio.to_thread(self._uplink_outbox.close)
            self._uplink_outbox = None
        if self.leaf is not None:
            await self.leaf.stop()

    async def _start_http(self, http: HttpOptions) -> None:
        app = create_app(self.settings, pool=self._pool, telemetry=self.telemetry, site=self.site)
        config = uvicorn.Config(
            app,
            host=http.host,
            port=http.port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=int(GRACEFUL_SHUTDOWN_S),
        )
        self._http_server = server = _EmbeddedApiServer(config)
        self._http_task = asyncio.create_task(server.serve(), name="http")
        while not server.started:
            if self._http_task.done():
                # serve() returns early when it cannot bind; surface that.
                self._http_task.result()
                raise RuntimeError(f"HTTP server could not listen on {http.host}:{http.port}")
            await asyncio.sleep(0.02)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Stop collection, drain the pipeline, write the last hours, close everything."""
        await cancel_and_wait(self._collector_tasks)
        self._collector_tasks = []
        if self._pipeline_task is not None and self.pipeline is not None:
            task = self._pipeline_task
            try:
                if not task.done():  # a dead pipeline would never take the close marker
                    await asyncio.wait_for(self.pipeline.close(), PIPELINE_DRAIN_TIMEOUT_S)
                await asyncio.wait_for(task, timeout=PIPELINE_DRAIN_TIMEOUT_S)
            except TimeoutError:
                log.error("pipeline did not drain in %s s; stopped", PIPELINE_DRAIN_TIMEOUT_S)
                task.cancel()
            except Exception:
                log.exception("the pipeline had stopped with an error")
            self._pipeline_task = None
        if self._forwarder_task is not None and self.forwarder is not None:
            task = self._forwarder_task
            self.forwarder.request_stop()
            try:
                await asyncio.wait_for(task, SPOOL_DRAIN_TIMEOUT_S)
            except TimeoutError:
                log.error("forwarding the spool at shutdown took over %s s", SPOOL_DRAIN_TIMEOUT_S)
            except Exception:
                log.exception("the spool forwarder had stopped with an error")
            self._forwarder_task = None
            if self.forwarder.spool.depth_records:
                log.warning(
                    "%d readings stay in the spool %s: they are stored at the next start",
                    self.forwarder.spool.depth_rows,
                    self.spool_dir,
                )
        if self._maintenance_task is not None:
            await cancel_and_wait([self._maintenance_task])
            self._maintenance_task = None
        if self._events_task is not None and self.events is not None:
            await cancel_and_wait([self._events_task])
            self._events_task = None
            try:
                await asyncio.wait_for(self.events.flush(), timeout=5)
            except Exception as exc:
                log.warning("%d device events not stored at shutdown: %s", self.events.pending, exc)
        if self._spool is not None:
            await asyncio.to_thread(self._spool.close)
            self._spool = None
        if self.carbon is not None:
            await self.carbon.flush()
        await self._stop_uplink()
        self._dispatch_stop.set()
        await cancel_and_wait(self._alert_tasks)
        self._alert_tasks = []
        if self.alerts is not None and self.alerts.pending:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.alerts.flush(), timeout=5)
            if self.alerts.pending:
                log.warning("%d alert changes not stored at shutdown", self.alerts.pending)
        if self._http_server is not None and self._http_task is not None:
            self._http_server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._http_task, timeout=10)
            self._http_server = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
