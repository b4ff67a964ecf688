"""Device health kept by the collectors: the Modbus collector against our simulator's
Modbus server over loopback, the MQTT collector through a real broker; both on a clock
the test drives, so last-seen times and online state are exact."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from urllib.parse import urlparse

import aiomqtt
import pytest

from tests.ingest.clocks import ManualClock
from zerocarbon.batch import ReadingBatch, SeriesRegistry
from zerocarbon.config import ModbusTcpDevice, SiteConfig
from zerocarbon.ingest.modbus.collector import (
    LATENCY_EWMA_ALPHA,
    DeviceStats,
    ModbusLinkCollector,
)
from zerocarbon.ingest.mqtt.collector import ONLINE_INTERVALS, MqttCollector
from zerocarbon.ingest.reading import Ack
from zerocarbon.simulators.modbus_server import ModbusTcpServer
from zerocarbon.simulators.register_bank import RegisterBank

START = datetime(2026, 6, 21, 2, 0, tzinfo=UTC)
VALUES = {
    "state_of_charge_pct": 61.5,
    "active_power_kw": -120.25,
    "energy_charged_kwh": 51_234.5,
    "energy_discharged_kwh": 48_765.4,
}


async def until(condition: Callable[[], object], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def running(collector: ModbusLinkCollector | MqttCollector) -> AsyncIterator[None]:
    task = asyncio.create_task(collector.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_the_first_outcome_sets_the_state_and_later_changes_are_counted() -> None:
    failing_first = DeviceStats()
    failing_first.record_failed_poll()
    assert (failing_first.went_offline, failing_first.consecutive_failures) == (0, 1)
    failing_first.record_good_poll(100.0, 0.010)
    assert failing_first.available and failing_first.came_online == 1

    good_first = DeviceStats()
    good_first.record_good_poll(100.0, 0.010)
    assert good_first.available and good_first.came_online == 0
    good_first.record_failed_poll()
    good_first.record_failed_poll()
    assert not good_first.available
    assert (good_first.went_offline, good_first.consecutive_failures) == (1, 2)
    assert good_first.last_seen_s == 100.0  # the last good poll's time stays
    good_first.record_good_poll(105.0, 0.030)
    assert (good_first.came_online, good_first.consecutive_failures) == (1, 0)
    assert good_first.latency_last_s == 0.030
    assert good_first.latency_avg_s == pytest.approx(0.010 + LATENCY_EWMA_ALPHA * 0.020)


async def test_modbus_device_goes_offline_and_comes_back(demo_site: SiteConfig) -> None:
    """Poll latency and last-seen on good polls; the server switched off: offline,
    counted once, one consecutive failure per poll; switched on again: online."""
    device = demo_site.device("battery")
    assert isinstance(device, ModbusTcpDevice)
    profile = demo_site.profile_of(device)
    bank = RegisterBank(profile, gap_fill_registers=device.max_gap_registers)
    bank.update(VALUES)
    clock = ManualClock(START)  # each poll waits for its due time on this clock only
    registry = SeriesRegistry.for_site(demo_site)
    # (clock time, last_seen_s, latency_last_s, polls) at each good poll: the battery
    # profile reads in one block, so every batch comes from a good poll
    good_polls: list[tuple[float, float | None, float | None, int]] = []

    async with ModbusTcpServer("127.0.0.1", 0, {1: bank}) as server:
        device = device.model_copy(
            update={"port": server.port, "poll_interval_s": 1.0, "timeout_s": 0.2}
        )

        async def sink(batch: ReadingBatch, ack: Ack | None = None) -> None:
            s = stats
            good_polls.append((clock.now_s(), s.last_seen_s, s.latency_last_s, s.polls))

        collector = ModbusLinkCollector(
            "127.0.0.1", server.port, [(device, profile)], clock, sink, registry
        )
        stats = collector.stats()["battery"]
        async with running(collector):
            await until(lambda: len(good_polls) >= 5)
            assert stats.available and stats.came_online == 0 and stats.went_offline == 0
            server.suspend()  # the device is switched off: connections refused
            await until(lambda: stats.consecutive_failures >= 3)
            assert not stats.available and stats.went_offline == 1
            offline_seen_s = stats.last_seen_s
            assert offline_seen_s == good_polls[-1][0]
            # one consecutive failure per poll since the last good one (the poll under
            # way, if any, is in polls but has no outcome yet)
            polls_since = stats.polls - good_polls[-1][3]
            assert polls_since - stats.consecutive_failures in (0, 1)
            assert stats.errors + stats.timeouts >= 3
            assert stats.last_error
            await server.resume()
            await until(lambda: stats.available)
            back_at = len(good_polls)
            await until(lambda: len(good_polls) >= back_at + 2)

    assert stats.came_online == 1 and stats.went_offline == 1
    assert stats.consecutive_failures == 0
    assert offline_seen_s is not None and stats.last_seen_s is not None
    assert stats.last_seen_s > offline_seen_s
    # last_seen is the injected clock's time of the good poll, on the 1 s poll grid
    for now_s, seen_s, latency_s, _ in good_polls:
        assert seen_s == now_s
        assert (now_s - START.timestamp()) % 1.0 == pytest.approx(0.0, abs=1e-6)
        assert latency_s is not None and 0 < latency_s < 1.0
    # the average is the EWMA of the good polls' latencies
    expected = good_polls[0][2]
    assert expected is not None
    for _, _, latency_s, _ in good_polls[1:]:
        assert latency_s is not None
        expected += LATENCY_EWMA_ALPHA * (latency_s - expected)
    assert stats.latency_avg_s == pytest.approx(expected)


async def test_mqtt_device_online_follows_its_interval(
    mqtt_url: str, demo_site: SiteConfig
) -> None:
    """A message with readings sets last-seen (arrival on the injected clock); the
    device stays online for ONLINE_INTERVALS x interval_s, then is offline. A broken
    payload is counted for its device without making it seen."""
    assert demo_site.mqtt is not None
    prefix = f"zc-test/{secrets.token_hex(3)}"
    devices = tuple(
        d.model_copy(update={"topic": f"{prefix}/{d.id}"}) for d in demo_site.mqtt_devices
    )
    line_a, line_b = (next(d for d in devices if d.id == i) for i in ("line_a", "line_b"))
    registry = SeriesRegistry.for_site(demo_site)
    clock = ManualClock(START)

    async def sink(batch: ReadingBatch, ack: Ack | None = None) -> None:
        if ack is not None:
            ack()

    collector = MqttCollector(demo_site.mqtt, devices, clock, sink, registry, url=mqtt_url)
    a, b = collector.device_stats["line_a"], collector.device_stats["line_b"]
    assert b.offline_after_s == ONLINE_INTERVALS * line_b.interval_s
    assert not b.online(clock.now_s()) and b.last_seen_s is None
    broker = urlparse(mqtt_url)
    async with running(collector):
        async with asyncio.timeout(10):
            await collector.subscribed.wait()
        async with aiomqtt.Client(broker.hostname or "", port=broker.port or 1883) as pub:
            await pub.publish(line_a.topic, b"{broken", qos=1)
            await pub.publish(line_b.topic, json.dumps({"power_kw": 12.5}), qos=1)
            await until(lambda: b.readings == 1 and a.bad_payloads == 1)
            arrived_s = clock.now_s()
            assert b.last_seen_s == arrived_s and b.online(arrived_s)
            assert (b.messages, b.bad_payloads, b.last_error) == (1, 0, "")
            assert (a.messages, a.readings, a.last_seen_s) == (1, 0, None)
            assert a.last_error and not a.online(arrived_s)

            clock.advance(b.offline_after_s)
            assert b.online(clock.now_s())  # exactly ONLINE_INTERVALS intervals: still
            clock.advance(0.001)
            assert not b.online(clock.now_s())

            await pub.publish(line_b.topic, json.dumps({"power_kw": 13.0}), qos=1)
            await until(lambda: b.readings == 2)
            assert b.last_seen_s == clock.now_s() and b.online(clock.now_s())
    assert collector.stats.messages == 3 and collector.stats.bad_payloads == 1
