"""Many sites, one center, through faults: nothing lost, nothing stored twice.

Real processes on loopback: a three-node nats-server cluster (the center, JetStream
domain ``center``), three gateways — each a full :class:`~zerocarbon.runtime.EnergyCenter`
with its own PostgreSQL database, collecting MQTT devices fed by a load generator, and
its own nats-server leaf node (started by the gateway, JetStream domain ``zc-<site>``)
reaching the cluster through a link the test can cut — and two ingest worker
processes (``zerocarbon center worker``) writing into the central database.

While the sites publish: site a's WAN link is cut for 60 s and restored; the cluster
node leading the center's stream is killed with SIGKILL (and started again later); one
worker is killed with SIGKILL mid-stream (the other takes its unacknowledged messages
once their ack wait runs out). Afterwards, per site, the central database holds
exactly the readings the gateway stored (every reading the broker acknowledged to the
load generator), each once, and the gateway's hourly carbon rows.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import asyncpg
import httpx
import pytest

from tests.e2e.loadgen import LoadGenerator, LoadPlan
from tests.e2e.processes import mosquitto_missing
from tests.uplink.nats_support import (
    WORKER_USER,
    HubCluster,
    LinkCutter,
    NatsLab,
    ensure_nats_server,
)
from zerocarbon.clock import SystemClock
from zerocarbon.config import load_site
from zerocarbon.netutil import free_tcp_port
from zerocarbon.runtime import EnergyCenter
from zerocarbon.settings import Settings
from zerocarbon.storage.database import drop_database, ensure_database
from zerocarbon.uplink.nats_config import new_password
from zerocarbon.uplink.publisher import UplinkPublisher
from zerocarbon.uplink.subjects import CENTER_CONSUMER, CENTER_STREAM

NATS = ensure_nats_server()
pytestmark = [
    pytest.mark.skipif(NATS.path is None, reason=NATS.reason or "no nats-server"),
    pytest.mark.skipif(mosquitto_missing() is not None, reason=str(mosquitto_missing())),
]

SITES = ("plant-a", "plant-b", "plant-c")
CUT_SITE = "plant-a"
PLAN_DEVICES = 6
PLAN_RATE_HZ = 2.0  # messages per device per second (x 10 readings)
CUT_S = 60.0  # site a's WAN link down [s]
LOAD_S = CUT_S + 12.0  # the load runs through the cut and a little after [s]
ACK_WAIT_S = 8.0  # a killed worker's messages are redelivered after this [s]
SETTLE_TIMEOUT_S = 120.0  # the center catches up after the load [s]
START_TIMEOUT_S = 120.0


def site_toml(
    site: str, plan: LoadPlan, mqtt_url: str, hub_urls: list[str], nats: Path, tls_ca: Path
) -> str:
    lines = [
        "[site]",
        f"name = {json.dumps('Plant ' + site[-1].upper())}",
        'timezone = "Asia/Shanghai"',
        "",
        "[mqtt]",
        f"url = {json.dumps(mqtt_url)}",
        "qos = 1",
        f"client_id = {json.dumps('zc-uplink-e2e-' + site)}",
        "",
        "[uplink]",
        f"site = {json.dumps(site)}",
        f"hub_urls = {json.dumps(hub_urls)}",
        f"password_env = {json.dumps(password_env(site))}",
        f"nats_server = {json.dumps(str(nats))}",
        f"tls_ca = {json.dumps(str(tls_ca))}",
        f"page_url = {json.dumps(f'http://{site}.example/')}",
        "status_interval_s = 2.0",
        "mirror_interval_s = 1.0",
        "message_interval_s = 0.5",
        "max_backlog_mib = 64",
        "",
    ]
    for device in plan.site_devices():
        lines.append("[[devices]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in device.items() if k != "fields"]
        lines.append("[devices.fields]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in device["fields"].items()]
        lines.append("")
    return "\n".join(lines)


def password_env(site: str) -> str:
    return "ZC_TEST_UPLINK_" + site.replace("-", "_").upper()


def center_toml(cluster: HubCluster, tls_ca: Path, http_port: int) -> str:
    return "\n".join(
        [
            "[center]",
            f"tls_ca = {json.dumps(str(tls_ca))}",
            'name = "test group"',
            'database_url_env = "ZC_TEST_CENTER_DATABASE_URL"',
            f"nats_urls = {json.dumps(cluster.client_urls)}",
            f"nats_user = {json.dumps(WORKER_USER)}",
            'nats_password_env = "ZC_TEST_CENTER_NATS_PASSWORD"',
            "stream_replicas = 3",
            "fetch_batch = 64",
            f"ack_wait_s = {ACK_WAIT_S}",
            "workers = 2",
            "",
            "[center.http]",
            'host = "127.0.0.1"',
            f"port = {http_port}",
            "",
            *[f'[[sites]]\nid = "{s}"\n' for s in SITES],
        ]
    )


@dataclass
class Gateway:
    site: str
    plan: LoadPlan
    db_url: str
    cutter: LinkCutter
    center: EnergyCenter | None = None
    generator: LoadGenerator | None = None


@dataclass
class Rig:
    folder: Path
    lab: NatsLab
    cluster: HubCluster
    center_db: str
    center_file: Path
    env: dict[str, str]
    mqtt_url: str
    tls_ca: Path
    http_port: int
    gateways: list[Gateway] = field(default_factory=list)
    center: subprocess.Popen[bytes] | None = None

    @property
    def center_log(self) -> Path:
        return self.folder / "center.log"

    def start_center(self) -> subprocess.Popen[bytes]:
        """``zerocarbon center run``: its workers and the group API."""
        with self.center_log.open("ab") as log_file:
            self.center = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "zerocarbon",
                    "center",
                    "run",
                    "--config",
                    str(self.center_file),
                ],
                env=self.env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        return self.center

    def worker_pids(self) -> list[int]:
        """The center's worker processes (its children)."""
        assert self.center is not None
        path = Path(f"/proc/{self.center.pid}/task/{self.center.pid}/children")
        return [int(p) for p in path.read_text().split()]

    def logs(self) -> str:
        center = self.center_log.read_text()[-4000:] if self.center_log.exists() else ""
        uplinks = "\n".join(
            f"{g.site}: {g.center.uplink.stats}"
            for g in self.gateways
            if g.center is not None and g.center.uplink is not None
        )
        return f"--- uplinks\n{uplinks}\n--- center\n{center}\n{self.cluster.logs()[-4000:]}"


async def eventually(
    condition: Callable[[], Awaitable[bool]], timeout_s: float, what: str, rig: Rig
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"{what}: not within {timeout_s} s\n{rig.logs()}")


@pytest.fixture
async def rig(
    pg_server_url: str, mqtt_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Rig]:
    assert NATS.path is not None
    passwords = {s: new_password() for s in SITES}
    for s, pw in passwords.items():
        monkeypatch.setenv(password_env(s), pw)
    suffix = f"{os.getpid()}"
    center_db = await ensure_database(pg_server_url, f"zc_center_e2e_{suffix}", recreate=True)
    async with NatsLab(NATS.path) as lab:
        tls = await lab.tls()
        cluster = await lab.hub_cluster(passwords, tls=tls)
        await cluster.wait_meta_leader()
        center_file = tmp_path / "center.toml"
        http_port = free_tcp_port()
        center_file.write_text(center_toml(cluster, tls.ca_file, http_port))
        env = {
            **os.environ,
            "ZC_TEST_CENTER_DATABASE_URL": center_db,
            "ZC_TEST_CENTER_NATS_PASSWORD": cluster.worker_password,
        }
        setup = subprocess.run(
            [sys.executable, "-m", "zerocarbon", "center", "setup", "--config", str(center_file)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert setup.returncode == 0, setup.stderr
        rig = Rig(
            tmp_path, lab, cluster, center_db, center_file, env, mqtt_url, tls.ca_file, http_port
        )
        for i, site in enumerate(SITES):
            plan = LoadPlan(
                devices=PLAN_DEVICES, rate_hz=PLAN_RATE_HZ, topic_prefix=f"zc-e2e-{site}", seed=i
            )
            db = await ensure_database(pg_server_url, f"zc_gw_e2e_{suffix}_{i}", recreate=True)
            cutter = await lab.link_cutter(cluster)
            rig.gateways.append(Gateway(site, plan, db, cutter))
        try:
            yield rig
        finally:
            if rig.center is not None and rig.center.poll() is None:
                rig.center.terminate()
                try:
                    rig.center.wait(30)
                except subprocess.TimeoutExpired:
                    rig.center.kill()
            for g in rig.gateways:
                if g.center is not None:
                    await g.center.stop()
    for g in rig.gateways:
        await drop_database(pg_server_url, g.db_url.rsplit("/", 1)[1])
    await drop_database(pg_server_url, center_db.rsplit("/", 1)[1])


async def gateway_readings(db_url: str) -> set[tuple[str, str, int, float, int]]:
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch(
            """SELECT d.key AS device, m.name AS metric,
                      (extract(epoch FROM r.ts) * 1000000)::bigint AS ts_us, r.value, r.quality
                 FROM readings r JOIN devices d ON d.id = r.device_id
                 JOIN metrics m ON m.id = r.metric_id"""
        )
    finally:
        await conn.close()
    return {(r["device"], r["metric"], r["ts_us"], r["value"], r["quality"]) for r in rows}


async def center_readings(db_url: str, site: str) -> list[tuple[str, str, int, float, int]]:
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch(
            """SELECT s.device, s.metric,
                      (extract(epoch FROM r.ts) * 1000000)::bigint AS ts_us, r.value, r.quality
                 FROM site_readings r JOIN site_series s ON s.id = r.series_id
                 JOIN sites t ON t.id = r.site_id
                WHERE t.site = $1""",
            site,
        )
    finally:
        await conn.close()
    return [(r["device"], r["metric"], r["ts_us"], r["value"], r["quality"]) for r in rows]


async def center_count(db_url: str, site: str) -> int:
    conn = await asyncpg.connect(db_url)
    try:
        n = await conn.fetchval(
            "SELECT count(*) FROM site_readings r JOIN sites t ON t.id = r.site_id "
            "WHERE t.site = $1",
            site,
        )
    finally:
        await conn.close()
    return int(n)


async def hourly_rows(db_url: str, sql: str, *args: Any) -> dict[Any, tuple[Any, ...]]:
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch(sql, *args)
    finally:
        await conn.close()
    return {
        r["hour_start"]: (r["grid_import_kwh"], r["load_kwh"], r["scope2_location_kg"])
        for r in rows
    }


async def test_sites_cut_node_and_worker_killed_nothing_lost_nothing_twice(rig: Rig) -> None:
    # the center: two workers and the group API
    rig.start_center()
    # the gateways: each starts its own leaf node through its link
    for g in rig.gateways:
        path = rig.folder / f"{g.site}.toml"
        assert NATS.path is not None
        path.write_text(
            site_toml(g.site, g.plan, rig.mqtt_url, g.cutter.leaf_urls, NATS.path, rig.tls_ca)
        )
        settings = Settings(data_dir=rig.folder / f"data-{g.site}")
        g.center = EnergyCenter(load_site(path), settings, SystemClock(), database_url=g.db_url)
        await asyncio.wait_for(g.center.__aenter__(), START_TIMEOUT_S)
    for g in rig.gateways:
        await eventually(
            lambda g=g: rig.cluster.site_jetstream_answers(g.site),
            30,
            f"{g.site} leaf connected",
            rig,
        )

    stop_load = asyncio.Event()
    parsed = urlparse(rig.mqtt_url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 1883
    load_tasks = []
    for g in rig.gateways:
        g.generator = LoadGenerator(g.plan, host, port)
        load_tasks.append(asyncio.create_task(g.generator.run(stop_load)))

    cut = next(g for g in rig.gateways if g.site == CUT_SITE)
    t0 = time.monotonic()
    await asyncio.sleep(3)
    await cut.cutter.cut()  # site a's WAN is down
    await asyncio.sleep(7)
    # the node leading the center's stream dies mid-stream (the hardest node to lose:
    # another takes the stream over and must find where each source, the cut one
    # included, had stopped)
    nc = await rig.cluster.connect_worker()
    try:
        info = await nc.jetstream().stream_info(CENTER_STREAM)
    finally:
        await nc.close()
    assert info.cluster is not None and info.cluster.leader
    victim = info.cluster.leader
    await rig.cluster.kill(victim)
    await asyncio.sleep(8)
    killed = rig.worker_pids()[0]
    os.kill(killed, signal.SIGKILL)  # a worker dies mid-batch (the center starts another)
    await asyncio.sleep(12)
    await rig.cluster.restart(victim)
    # the cut site keeps collecting and storing; its leaf holds what the center misses
    await asyncio.sleep(max(0.0, CUT_S - (time.monotonic() - t0 - 3)))
    assert cut.center is not None and cut.center.uplink is not None
    held = cut.center.uplink.stats.backlog_messages
    await cut.cutter.restore()
    await asyncio.sleep(max(0.0, LOAD_S - (time.monotonic() - t0)))
    stop_load.set()
    await asyncio.gather(*load_tasks)

    # every acknowledged reading is stored at its gateway, then at the center
    expected: dict[str, set[tuple[str, str, int, float, int]]] = {}
    for g in rig.gateways:
        assert g.generator is not None
        acked = {(d, m, ts, v) for d, m, ts, v in g.generator.acknowledged()}

        async def stored_all(g: Gateway = g, n: int = len(acked)) -> bool:
            return len(await gateway_readings(g.db_url)) >= n

        await eventually(stored_all, 60, f"{g.site}: the gateway stored every reading", rig)
        have = await gateway_readings(g.db_url)
        assert {(d, m, ts, v) for d, m, ts, v, _ in have} == acked, g.site
        expected[g.site] = have

    for site, readings in expected.items():

        async def caught_up(site: str = site, n: int = len(readings)) -> bool:
            return await center_count(rig.center_db, site) >= n

        try:
            await eventually(caught_up, SETTLE_TIMEOUT_S, f"{site}: the center caught up", rig)
        except AssertionError:
            conn = await asyncpg.connect(rig.center_db)
            rows = await conn.fetch("SELECT site, readings, source_seq FROM sites ORDER BY site")
            await conn.close()
            raise AssertionError(f"center sites: {[tuple(r) for r in rows]}") from None
    for site, readings in expected.items():
        central = await center_readings(rig.center_db, site)
        assert len(central) == len(set(central)), f"{site}: a reading stored twice"
        assert set(central) == readings, (
            f"{site}: lost {len(readings - set(central))}, extra {len(set(central) - readings)}"
        )

    print(
        "per site readings:",
        {site: len(r) for site, r in expected.items()},
        f"held by {CUT_SITE}'s leaf at the end of the cut: {held} messages",
    )
    # the cut really held data back, and the center has every gateway's hourly rows
    assert held > 0, "site a's leaf held nothing while its link was cut"
    for g in rig.gateways:
        gateway_hours = await hourly_rows(
            g.db_url,
            "SELECT hour_start, grid_import_kwh, load_kwh, scope2_location_kg FROM hourly_carbon",
        )

        async def hours_arrived(g: Gateway = g, want: dict[Any, Any] = gateway_hours) -> bool:
            got = await hourly_rows(
                rig.center_db,
                "SELECT h.hour_start, h.grid_import_kwh, h.load_kwh, h.scope2_location_kg "
                "FROM site_hourly_carbon h JOIN sites s ON s.id = h.site_id WHERE s.site = $1",
                g.site,
            )
            return got == want and bool(want)

        await eventually(hours_arrived, 30, f"{g.site}: hourly rows at the center", rig)

    # each gateway learns how far the center holds its stream and drops that much
    for g in rig.gateways:
        assert g.center is not None and g.center.uplink is not None
        uplink = g.center.uplink

        async def purged(uplink: UplinkPublisher = uplink) -> bool:
            return uplink.stats.center_answered and uplink.stats.purged_to_seq > 0

        await eventually(purged, 30, f"{g.site}: the local stream purged", rig)

    # the group API sees every site online with all its readings, and the group hours
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{rig.http_port}") as http:
        sites = (await http.get("/api/v1/group/sites")).json()["sites"]
        assert {s["site"]: (s["state"], s["readings"]) for s in sites} == {
            site: ("online", len(readings)) for site, readings in expected.items()
        }
        assert {s["site"]: s["page_url"] for s in sites} == {
            site: f"http://{site}.example/" for site in SITES
        }
        assert (await http.get("/")).status_code == 200  # the group page
    assert killed not in rig.worker_pids()
    assert len(rig.worker_pids()) == 2, "the center did not start a worker again"

    # the center's stream holds nothing unacknowledged once everything is stored
    nc = await rig.cluster.connect_worker()
    try:
        js = nc.jetstream()

        async def drained() -> bool:
            info = await js.consumer_info(CENTER_STREAM, CENTER_CONSUMER)
            return info.num_ack_pending == 0 and info.num_pending == 0

        await eventually(drained, 30, "the center's consumer has nothing pending", rig)
    finally:
        await nc.close()
