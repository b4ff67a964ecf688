"""The Modbus TCP collector against our simulator's Modbus server over loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from tests.ingest.clocks import ManualClock
from zerocarbon.batch import Reading, ReadingBatch, SeriesRegistry, UnknownSeriesError
from zerocarbon.clock import ScaledClock
from zerocarbon.config import ModbusTcpDevice, SiteConfig, SiteConfigError, parse_site
from zerocarbon.ingest.events import DeviceEvent, DeviceEventKind, DeviceEventSink
from zerocarbon.ingest.modbus.collector import ModbusLinkCollector, ModbusLinkScheduler
from zerocarbon.ingest.modbus.tcp_transport import ModbusTcpTransport
from zerocarbon.ingest.reading import Ack
from zerocarbon.metering.profile import RegisterTable
from zerocarbon.netutil import free_tcp_port
from zerocarbon.simulators.modbus_server import ModbusTcpServer
from zerocarbon.simulators.register_bank import RegisterBank

START = datetime(2026, 6, 21, 2, 0, tzinfo=UTC)
GAP_FILL = 10  # the battery's max_gap_registers: its points read in one block


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

        async def sink(batch: ReadingBatch, ack: Ack | None = None) -> None:
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
    port = free_tcp_port()  # nothing listens there
    device = _battery(demo_site, port=port, poll_interval_s=1.0, timeout_s=0.2)
    clock = ScaledClock(START, speed=50.0)

    async def sink(batch: ReadingBatch, ack: Ack | None = None) -> None:
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

        async def slow_sink(batch: ReadingBatch, ack: Ack | None = None) -> None:
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

    async def sink(batch: ReadingBatch, ack: Ack | None = None) -> None:
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


# --- with a clock the test drives: every step happens between two given polls ----------


def _tearing_hook(
    overrides: list[list[int]],
) -> Callable[[int, RegisterTable, int, list[int]], list[int]]:
    """A read hook that serves the next of ``overrides`` (raw words, low word first as
    the battery profile's CDAB order has it) for energy_charged (registers 10-11)."""

    def hook(unit: int, table: RegisterTable, address: int, registers: list[int]) -> list[int]:
        if overrides and address <= 10 and address + len(registers) >= 12:
            low, high = overrides.pop(0)
            registers = list(registers)
            registers[10 - address : 12 - address] = [low, high]
        return registers

    return hook


class Steps:
    """A sink that runs step k right after batch k arrives (so before the next poll)
    and sets ``done`` after the last step."""

    def __init__(self, registry: SeriesRegistry, steps: list[Callable[[], None]]) -> None:
        self.registry = registry
        self.steps = steps
        self.batches: list[dict[str, float]] = []
        self.done = asyncio.Event()

    async def sink(self, batch: ReadingBatch, ack: Ack | None = None) -> None:
        self.batches.append({r.metric: r.value for r in batch.readings(self.registry)})
        self.steps[len(self.batches) - 1]()
        if len(self.batches) == len(self.steps):
            self.done.set()


def _scheduler(
    demo_site: SiteConfig,
    server: ModbusTcpServer,
    steps: Steps,
    events: DeviceEventSink,
    **update: object,
) -> ModbusLinkCollector:
    """The battery on ``server``, polled every 1 s of a manual clock."""
    device = _battery(demo_site, port=server.port, poll_interval_s=1.0, timeout_s=0.05, **update)
    return ModbusLinkCollector(
        "127.0.0.1",
        server.port,
        [(device, demo_site.profile_of(device))],
        ManualClock(START),
        steps.sink,
        steps.registry,
        events=events,
    )


async def test_a_torn_counter_is_read_again_and_refused_while_a_reset_is_accepted(
    demo_site: SiteConfig,
) -> None:
    profile = demo_site.profile_of(_battery(demo_site))
    bank = RegisterBank(profile, gap_fill_registers=GAP_FILL)
    bank.update({**VALUES, "energy_charged_kwh": 13_107.1})  # raw 0x0001FFFF: at a carry
    overrides: list[list[int]] = []
    events: list[DeviceEvent] = []
    async with ModbusTcpServer(
        "127.0.0.1", 0, {1: bank}, read_hook=_tearing_hook(overrides)
    ) as srv:

        def carry_torn_once() -> None:
            bank.update({"energy_charged_kwh": 13_107.2})  # raw 0x00020000
            overrides.append([0x0000, 0x0001])  # new low word, old high word: 6553.6

        def torn_twice() -> None:
            bank.update({"energy_charged_kwh": 13_107.3})
            # old high + new low (backwards), then new high + old low (65536 counts on)
            overrides.extend([[0x0001, 0x0001], [0x0001, 0x0003]])

        def genuine_reset() -> None:
            bank.update({"energy_charged_kwh": 5.0})  # the meter was reset: 5.0 twice

        steps = Steps(
            SeriesRegistry.for_site(demo_site),
            [carry_torn_once, torn_twice, genuine_reset, lambda: None],
        )
        collector = _scheduler(demo_site, srv, steps, events.append)
        await _collect_until(collector, steps.done)

    stats = collector.stats()["battery"]
    batches = steps.batches
    charged = [b.get("energy_charged_kwh") for b in batches]
    assert charged == pytest.approx([13_107.1, 13_107.2, None, 5.0])
    assert batches[2]["energy_discharged_kwh"] == pytest.approx(48_765.4)  # the rest lands
    assert (stats.torn_rereads, stats.torn_reads) == (3, 1)
    torn = [e for e in events if e.kind is DeviceEventKind.TORN_READ]
    assert len(torn) == 1 and torn[0].device_id == "battery"
    assert "charged_energy" in torn[0].detail
    assert not overrides  # every torn answer was served


@pytest.mark.parametrize("retries", [0, 2])
async def test_offline_and_online_events_with_retries(demo_site: SiteConfig, retries: int) -> None:
    profile = demo_site.profile_of(_battery(demo_site))
    bank = RegisterBank(profile, gap_fill_registers=GAP_FILL)
    bank.update(VALUES)
    events: list[DeviceEvent] = []
    async with ModbusTcpServer("127.0.0.1", 0, {1: bank}) as server:

        def back_when_offline(event: DeviceEvent) -> None:
            events.append(event)
            if event.kind is DeviceEventKind.OFFLINE:
                server.set_offline(1, False)
                server.set_exception(1, None)

        steps = Steps(
            SeriesRegistry.for_site(demo_site),
            [lambda: server.set_offline(1), lambda: server.set_exception(1, 0x06), lambda: None],
        )
        collector = _scheduler(demo_site, server, steps, back_when_offline, retries=retries)
        await _collect_until(collector, steps.done)
    stats = collector.stats()["battery"]
    kinds = [e.kind for e in events]
    online, offline = DeviceEventKind.ONLINE, DeviceEventKind.OFFLINE
    assert kinds == [online, offline, online, offline, online]
    assert "timeout" in events[1].detail and "0x06" in events[3].detail
    assert (stats.went_offline, stats.came_online) == (2, 2)
    # one silent poll: the request and its retries timed out; one exception answer,
    # which is final (no retry)
    assert stats.timeouts == retries + 1 and stats.retried_requests == retries
    assert (stats.errors, stats.exception_responses) == (1, 1)
    assert all(e.ts_us > 0 for e in events)


async def test_never_two_connections_to_a_single_connection_device(
    demo_site: SiteConfig,
) -> None:
    """Silent timeouts make the link reconnect; the server switched off and on makes it
    reconnect: each time the old connection is closed before the next opens."""
    profile = demo_site.profile_of(_battery(demo_site))
    bank = RegisterBank(profile, gap_fill_registers=GAP_FILL)
    bank.update(VALUES)
    async with ModbusTcpServer("127.0.0.1", 0, {1: bank}, single_connection=True) as server:
        resumed: list[asyncio.Task[None]] = []

        def switch_off() -> None:
            server.suspend()  # connections aborted and refused until resumed
            resumed.append(asyncio.create_task(server.resume()))

        def back_when_offline(event: DeviceEvent) -> None:
            if event.kind is DeviceEventKind.OFFLINE:
                server.set_offline(1, False)

        steps = Steps(
            SeriesRegistry.for_site(demo_site),
            [lambda: server.set_offline(1), switch_off, lambda: None, lambda: None],
        )
        collector = _scheduler(demo_site, server, steps, back_when_offline, retries=2)
        collector.reconnect_min_s = 0.5
        await _collect_until(collector, steps.done)
        await asyncio.gather(*resumed)
        collector_connects = collector.tcp.connects
        batches = steps.batches
    assert collector.link_resets >= 1  # three silent timeouts in a row
    assert collector_connects >= 3
    assert server.refused_connections == 0
    assert len(batches) == 4


async def _poll_gateway(
    site: SiteConfig, units: dict[int, RegisterBank], window: int, gap_s: float
) -> tuple[ModbusLinkCollector, dict[str, list[float]], list[tuple[float, int]]]:
    """Poll ``units`` behind one endpoint until each gave 3 readings; the state of
    charge read per device, and (clock time, requests outstanding) per request."""
    registry = SeriesRegistry.for_site(site)
    clock = ManualClock(START)
    seen: list[tuple[float, int]] = []
    soc: dict[str, list[float]] = {}
    done = asyncio.Event()

    async def sink(batch: ReadingBatch, ack: Ack | None = None) -> None:
        for r in batch.readings(registry):
            if r.metric == "state_of_charge_pct":
                soc.setdefault(r.device, []).append(r.value)
        if len(soc) == len(units) and all(len(v) >= 3 for v in soc.values()):
            done.set()

    async with ModbusTcpServer("127.0.0.1", 0, units) as server:
        link = {"port": server.port, "max_in_flight": window, "request_gap_s": gap_s}
        devices = [(d.model_copy(update=link), site.profile_of(d)) for d in site.modbus_devices]
        collector = ModbusLinkCollector("127.0.0.1", server.port, devices, clock, sink, registry)

        def hook(unit: int, table: RegisterTable, address: int, regs: list[int]) -> list[int]:
            seen.append((clock.now_s(), collector.tcp.in_flight))
            return regs

        server.read_hook = hook
        await _collect_until(collector, done)
    return collector, soc, seen


async def test_request_gap_and_window_on_one_link(demo_site: SiteConfig) -> None:
    """Twelve units behind one gateway: with a window of 4 the scheduler keeps up to 4
    requests outstanding; with a request gap they go one at a time, spaced."""
    base = _battery(demo_site, poll_interval_s=1.0)
    profile = demo_site.profile_of(base)
    units = {u: RegisterBank(profile, gap_fill_registers=GAP_FILL) for u in range(1, 13)}
    for u, bank in units.items():
        bank.update({**VALUES, "state_of_charge_pct": float(u)})
    devices = tuple(base.model_copy(update={"id": f"b{u}", "device_id": u}) for u in units)
    site = demo_site.model_copy(update={"devices": devices})

    collector, soc, seen = await _poll_gateway(site, units, window=4, gap_s=0.0)
    assert soc == {f"b{u}": [float(u)] * len(soc[f"b{u}"]) for u in units}  # no mix-up
    assert max(n for _, n in seen) == 4 and collector.gap_waits == 0  # all due at start

    collector, soc, seen = await _poll_gateway(site, units, window=4, gap_s=0.25)
    assert soc == {f"b{u}": [float(u)] * len(soc[f"b{u}"]) for u in units}
    assert max(n for _, n in seen) == 1
    times = [t for t, _ in seen]
    assert min(b - a for a, b in zip(times, times[1:], strict=False)) >= 0.25
    assert collector.gap_waits >= 1  # (the clock may have moved on by other waits)


def test_link_properties_must_agree(demo_site: SiteConfig) -> None:
    one = _battery(demo_site)
    two = one.model_copy(update={"id": "battery2", "device_id": 2, "max_in_flight": 4})

    async def sink(batch: ReadingBatch, ack: Ack | None = None) -> None:
        raise AssertionError("never called")

    profile = demo_site.profile_of(one)
    with pytest.raises(ValueError, match="'battery' and 'battery2'.*max_in_flight"):
        ModbusLinkCollector(
            one.host,
            one.port,
            [(one, profile), (two, profile)],
            ScaledClock(START),
            sink,
            SeriesRegistry(["battery", "battery2"]),
        )
    data = demo_site.model_dump(exclude={"base_dir"})
    data["devices"] = [
        *data["devices"],
        {**one.model_dump(), "id": "battery2", "device_id": 2, "request_gap_s": 0.1},
    ]
    with pytest.raises(SiteConfigError, match="'battery' and 'battery2'.*request_gap_s"):
        parse_site(data, base_dir=demo_site.base_dir)


async def test_one_absent_unit_is_not_a_silent_link(demo_site: SiteConfig) -> None:
    """A unit that never answers, behind a gateway whose other units do: its timeouts
    do not close the link (the half-open rule wants every unit silent)."""
    # no gap fill: three blocks a poll, whose requests queue together
    base = _battery(demo_site, poll_interval_s=1.0, timeout_s=0.05, max_gap_registers=0)
    profile = demo_site.profile_of(base)
    units = {u: RegisterBank(profile) for u in (1, 2, 3)}
    for bank in units.values():
        bank.update(VALUES)
    devices = tuple(base.model_copy(update={"id": f"b{u}", "device_id": u}) for u in units)
    site = demo_site.model_copy(update={"devices": devices})
    registry = SeriesRegistry.for_site(site)
    polls: dict[str, int] = {}
    done = asyncio.Event()

    async def sink(batch: ReadingBatch, ack: Ack | None = None) -> None:
        for device in {r.device for r in batch.readings(registry)}:
            polls[device] = polls.get(device, 0) + 1
        if min(polls.get("b1", 0), polls.get("b2", 0)) >= 6:
            done.set()

    async with ModbusTcpServer("127.0.0.1", 0, units) as server:
        server.set_offline(3)
        on_server = [(d.model_copy(update={"port": server.port}), profile) for d in devices]
        collector = ModbusLinkCollector(
            "127.0.0.1", server.port, on_server, ManualClock(START), sink, registry
        )
        await _collect_until(collector, done)
    stats = collector.stats()
    assert stats["b3"].timeouts >= 4 and not stats["b3"].available
    assert collector.link_resets == 0 and collector.tcp.connects == 1
    for device in ("b1", "b2"):
        assert stats[device].errors == stats[device].timeouts == 0


async def test_reconnect_backs_off_doubling_to_its_cap(demo_site: SiteConfig) -> None:
    """Nothing listens: connect attempts at clock times 0, 1, 3, 7, 11 (back-off 1, 2,
    4, then capped at 4 s); the polls in between fail at once, without an attempt."""
    clock = ManualClock(START)
    attempts: list[float] = []

    class Recording(ModbusTcpTransport):
        async def connect(self) -> None:
            attempts.append(clock.now_s() - START.timestamp())
            await super().connect()

    port = free_tcp_port()
    device = _battery(demo_site, port=port, poll_interval_s=1.0, timeout_s=0.5)

    async def sink(batch: ReadingBatch, ack: Ack | None = None) -> None:
        raise AssertionError("nothing answers")

    events: list[DeviceEvent] = []
    scheduler = ModbusLinkScheduler(
        Recording("127.0.0.1", port),
        [(device, demo_site.profile_of(device))],
        clock,
        sink,
        SeriesRegistry.for_site(demo_site),
        events=events.append,
        reconnect_min_s=1.0,
        reconnect_max_s=4.0,
    )
    stats = scheduler.stats()["battery"]
    task = asyncio.create_task(scheduler.run())
    try:
        async with asyncio.timeout(10):
            while stats.polls < 13:
                await asyncio.sleep(0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert attempts[:5] == [0.0, 1.0, 3.0, 7.0, 11.0]
    assert scheduler.connect_failures == len(attempts)
    assert stats.errors >= 12 and stats.consecutive_failures >= 12
    assert "next attempt in" in stats.last_error or "cannot connect" in stats.last_error
    assert [e.kind for e in events] == [DeviceEventKind.OFFLINE]  # reported once
