"""`zerocarbon demo`: a simulated factory, collected, stored, computed and served.

Everything runs in one process on one injected clock: an embedded PostgreSQL (or the
server of ``ZEROCARBON_DATABASE_URL``) with a fresh ``zerocarbon_demo`` database, a
local MQTT broker, the plant simulators on free local ports, the collectors, the
carbon engine and the web server.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path

from zerocarbon.carbon_service import warm_up_kernels
from zerocarbon.clock import Clock, ScaledClock
from zerocarbon.config import SiteConfig
from zerocarbon.ingest.mqtt.broker import local_broker
from zerocarbon.netutil import free_tcp_port
from zerocarbon.runtime import EnergyCenter, HttpOptions, database
from zerocarbon.settings import Settings
from zerocarbon.simulators.endpoints import on_free_ports
from zerocarbon.simulators.runner import PlantSimulator

log = logging.getLogger(__name__)

DEMO_DATABASE = "zerocarbon_demo"


async def _report_progress(center: EnergyCenter, clock: Clock, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        writer, carbon = center.writer, center.carbon
        stored = writer.stats.rows_written if writer else 0
        newest = carbon.last_hour_start_s if carbon else None
        hour = "none yet" if newest is None else f"{datetime.fromtimestamp(newest, UTC):%H:00} UTC"
        print(
            f"  simulated time {clock.now():%Y-%m-%d %H:%M} UTC | readings stored {stored:,}"
            f" | newest hourly carbon row: {hour}",
            flush=True,
        )


def fresh_spool(settings: Settings) -> Path:
    """The demo's own spool (and uplink outbox beside it), emptied: its database is
    recreated at every start, and readings an earlier demo left spooled belong to that
    one."""
    folder = settings.data_dir / "demo-spool"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(folder.with_name(folder.name + "-uplink"), ignore_errors=True)
    return folder


async def run_demo(
    site: SiteConfig,
    settings: Settings,
    *,
    host: str,
    port: int,
    speed: float,
    start: datetime,
    stop: asyncio.Event,
    truth_path: Path | None = None,
    progress_every_s: float = 10.0,
    uplink_hub_urls: tuple[str, ...] = (),
) -> None:
    """Run the demo until ``stop`` is set, then shut down in order."""
    # Compile the engine's kernels before the clock starts: at high speed a cold
    # compile would otherwise cost the first simulated minutes of data.
    await asyncio.to_thread(warm_up_kernels, site)
    clock = ScaledClock(start, speed)
    where = settings.database_url or f"embedded PostgreSQL in {settings.data_dir / 'pg'}"
    print(f"zerocarbon demo: database {DEMO_DATABASE!r} on {where}", flush=True)
    async with database(settings, name=DEMO_DATABASE, recreate=True) as db_url:
        async with local_broker("127.0.0.1", free_tcp_port()) as mqtt_url:
            local_site = on_free_ports(site, mqtt_url)
            async with (
                PlantSimulator(local_site, clock, mqtt_url=mqtt_url, truth_path=truth_path),
                EnergyCenter(
                    local_site,
                    settings,
                    clock,
                    database_url=db_url,
                    mqtt_url=mqtt_url,
                    http=HttpOptions(host, port),
                    spool_dir=fresh_spool(settings),
                    uplink_hub_urls=uplink_hub_urls,
                ) as center,
            ):
                print(
                    f"simulated factory {site.site.name!r}: {len(site.devices)} devices, "
                    f"clock x{speed:g} from {start.isoformat()}",
                    flush=True,
                )
                print(f"live page: http://{host}:{port}/   (Ctrl-C to stop)", flush=True)
                reporter = asyncio.create_task(_report_progress(center, clock, progress_every_s))
                try:
                    await stop.wait()
                finally:
                    reporter.cancel()
                    print("stopping: draining the pipeline and writing the last hours...")
    print("stopped; data is consistent.", flush=True)
