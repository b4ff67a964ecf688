"""The Modbus TCP collector against our simulator's Modbus server over loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from zerocarbon.batch import Reading, ReadingBatch, SeriesRegistry, UnknownSeriesError
from zerocarbon.clock import ScaledClock
from zerocarbon.config import ModbusTcpDevice, SiteConfig
from zerocarbon.ingest.modbus.collector import ModbusLinkCollector
from zerocarbon.simulators.modbus_server import ModbusTcpServer
from zerocarbon.simulators.register_bank import RegisterBank

START = datetime(2026, 6, 21, 2, 0, tzinfo=UTC)


def _battery(demo_site: SiteConfig, **update: object) -> ModbusTcpDevice:
    device = demo_site.device("battery")
    assert isinstance(device, ModbusTcpDevice)
    return device.model_copy(update=update)


VALUES = {
    "state_of_charge_pct": 61.5,
    "active_power_kw": -120.25,
    "energy_charged_kwh": 51_234.5,
    "energy_discharged_kwh": 48_765.4,
}


async def _collect_until(
    collector: ModbusLinkCollector, done: asyncio.Event, timeout_s: float = 10
) -> None:
    task = asyncio.create_task(collector.run())
    try:
        async with asyncio.timeout(timeout_s):
            await done.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_reads_decodes_and_recovers_from_an_offline_device(demo_site: SiteConfig) -> None:
    device = _battery(demo_site, port=0, poll_interval_s=1.0, timeout_s=0.2)
    profile = demo_site.profile_of(device)
    bank = RegisterBank(profile, gap_fill_registers=device.max_gap_registers)
    bank.update(VALUES)
    async with ModbusTcpServer("127.0.0.1", 0, {1: bank}) as server:
        device = device.model_copy(update={"port": server.port})
        clock = ScaledClock(START, speed=50.0)  # 1 s polls every 20 ms of real time
        registry = SeriesRegistry.for_site(demo_site)
        received: list[list[Reading]] = []
        done = asyncio.Event()

        async def sink(batch: ReadingBatch) -> None:
            assert type(batch) is ReadingBatch
            received.append(list(batch.readings(registry)))

        collector = ModbusLinkCollector(
            "127.0.0.1", server.port, [(device, profile)], clock, sink, registry
        )

        async def wait_for(condition: Callable[[], bool]) -> None:
            while not condition():
                await asyncio.sleep(0.005)

        async def script() -> None:
            stats = collector.stats()["battery"]
            await wait_for(lambda: len(received) >= 3)
            server.set_offline(1, True)  # the device goes silent: requests time out
            await wait_for(lambda: stats.timeouts >= 2)
            assert not stats.available
            online_at = len(received)
            server.set_offline(1, False)
            await wait_for(lambda: len(received) >= online_at + 3)
            done.set()

        scripted = asyncio.create_task(script())
        await _collect_until(collector, done)
        await scripted

    stats = collector.stats()["battery"]
    assert stats.timeouts >= 2 and stats.available
    first = {r.metric: r.value for r in received[0]}
    assert first == pytest.approx(VALUES, abs=0.051)  # 0.1 kWh / 0.1 % register steps
    assert all(r.device == "battery" for batch in received for r in batch)
    stamps = [batch[0].ts for batch in received]
    assert stamps == sorted(stamps)


async def test_unreachable_endpoint_is_counted_not_fatal(demo_site: SiteConfig) -> None:
    from zerocarbon.netutil import free_tcp_port

    port = free_tcp_port()  # nothing listens there
    device = _battery(demo_site, port=port, poll_interval_s=1.0, timeout_s=0.2)
    clock = ScaledClock(START, speed=50.0)

    async def sink(batch: ReadingBatch) -> None:
        raise AssertionError("no readings expected")

    collector = ModbusLinkCollector(
        "127.0.0.1",
        port,
        [(device, demo_site.profile_of(device))],
        clock,
        sink,
        SeriesRegistry.for_site(demo_site),
    )
    done = asyncio.Event()

    async def watch() -> None:
        while collector.stats()["battery"].errors < 3:
            await asyncio.sleep(0.01)
        done.set()

    watcher = asyncio.create_task(watch())
    await _collect_until(collector, done)
    await watcher
    stats = collector.stats()["battery"]
    assert stats.errors >= 3 and not stats.available
    assert "cannot connect" in stats.last_error
    assert collector.connect_failures >= 2  # attempts back off: t = 0, 1, 3, ... s


async def test_late_cycles_are_skipped_and_counted(demo_site: SiteConfig) -> None:
    device = _battery(demo_site, port=0, poll_interval_s=1.0, timeout_s=1.0)
    profile = demo_site.profile_of(device)
    bank = RegisterBank(profile, gap_fill_registers=device.max_gap_registers)
    bank.update(VALUES)
    async with ModbusTcpServer("127.0.0.1", 0, {1: bank}) as server:
        clock = ScaledClock(START, speed=10.0)
        done = asyncio.Event()
        poll_times: list[float] = []

        async def slow_sink(batch: ReadingBatch) -> None:
            poll_times.append(clock.now_s())
            await clock.sleep(2.5)  # a stalled consumer makes the link miss ~2 cycles
            if len(poll_times) == 3:
                done.set()

        device = device.model_copy(update={"port": server.port})
        collector = ModbusLinkCollector(
            "127.0.0.1",
            server.port,
            [(device, profile)],
            clock,
            slow_sink,
            SeriesRegistry.for_site(demo_site),
        )
        await _collect_until(collector, done, timeout_s=15)
    stats = collector.stats()["battery"]
    assert stats.skipped_cycles >= 2
    # missed cycles were not made up in a burst: polls stay at least an interval apart
    gaps = [b - a for a, b in zip(poll_times, poll_times[1:], strict=False)]
    assert min(gaps) >= 0.9 * device.poll_interval_s


def test_a_profile_metric_missing_from_the_registry_fails_at_start(demo_site: SiteConfig) -> None:
    device = _battery(demo_site, port=1)

    async def sink(batch: ReadingBatch) -> None:
        raise AssertionError("never called")

    with pytest.raises(UnknownSeriesError, match="battery"):
        ModbusLinkCollector(
            "127.0.0.1",
            1,
            [(device, demo_site.profile_of(device))],
            ScaledClock(START),
            sink,
            SeriesRegistry(["grid_meter"]),
        )
