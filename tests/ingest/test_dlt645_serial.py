"""DL/T 645-2007 over a serial line: the collector and the simulated meters on the two
ends of a socat pty pair."""

from __future__ import annotations

import asyncio

from tests.ingest.clocks import ManualClock
from tests.ingest.test_dlt645_collector import (
    GRID,
    GRID_VALUES,
    PV,
    PV_VALUES,
    REGISTRY,
    START,
    Received,
    _meter,
    _source,
    until,
)
from tests.serial_support import PtyPair
from zerocarbon.clock import ScaledClock
from zerocarbon.ingest.dlt645.collector import Dlt645LinkCollector, FailureKind
from zerocarbon.ingest.dlt645.frame import encode_read_request
from zerocarbon.ingest.dlt645.link import SerialPort
from zerocarbon.ingest.serial_link import SerialSettings
from zerocarbon.metering.dlt645 import DEFAULT_IDENTIFIERS
from zerocarbon.simulators.dlt645_server import Dlt645SerialServer, FaultKind

LINE = SerialSettings(baudrate=2400, parity="E")  # DL/T 645-2007 default: 11 bits a char


async def test_two_meters_on_a_serial_line(pty_pair: PtyPair) -> None:
    paced: list[float] = []

    async def pace(seconds: float) -> None:  # count the line time, do not wait it
        paced.append(seconds)

    meters = {GRID: _source(GRID_VALUES), PV: _source(PV_VALUES)}
    received = Received()
    async with Dlt645SerialServer(pty_pair.a, meters, LINE, pace=pace) as server:
        collector = Dlt645LinkCollector(
            SerialPort(pty_pair.b, LINE),
            [_meter("grid_meter", GRID), _meter("pv_meter", PV)],
            ScaledClock(START, speed=50.0),
            received,  # type: ignore[arg-type]
            REGISTRY,
        )
        task = asyncio.create_task(collector.run())
        try:
            await until(lambda: len(received.of("pv_meter")) >= 2)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert received.of("grid_meter")[0] == GRID_VALUES  # exact: BCD decodes to the literal
    assert received.of("pv_meter")[0] == PV_VALUES
    assert collector.name == pty_pair.b
    assert collector.connects == 1
    assert server.bad_requests == 0
    assert len(paced) == server.replies >= 4 * len(DEFAULT_IDENTIFIERS)
    # each reply paced for its request and itself at 11 bits a character; a reply
    # holds the request's identifier plus the value, so it is longer than the request
    request = len(encode_read_request(GRID, DEFAULT_IDENTIFIERS[0]))
    assert min(paced) > 2 * request * 11 / 2400
    assert server.paced_s == sum(paced)


async def test_corrupt_reply_on_the_line_is_retried(pty_pair: PtyPair) -> None:
    received = Received()
    async with Dlt645SerialServer(
        pty_pair.a, {GRID: _source(GRID_VALUES)}, LINE, pace=None
    ) as server:
        server.set_fault(GRID, FaultKind.BAD_CHECKSUM, times=1)
        collector = Dlt645LinkCollector(
            SerialPort(pty_pair.b, LINE),
            [_meter("grid_meter", GRID)],
            ScaledClock(START, speed=50.0),
            received,  # type: ignore[arg-type]
            REGISTRY,
        )
        task = asyncio.create_task(collector.run())
        try:
            await until(lambda: len(received.of("grid_meter")) >= 1)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    stats = collector.stats()["grid_meter"]
    assert stats.retries == 1 and stats.errors == 0
    assert received.of("grid_meter")[0] == GRID_VALUES


async def test_missing_serial_port_is_a_connection_failure_naming_it() -> None:
    received = Received()
    clock = ManualClock(START)
    collector = Dlt645LinkCollector(
        SerialPort("/dev/no-such-dlt645-port", LINE),
        [_meter("grid_meter", GRID)],
        clock,
        received,  # type: ignore[arg-type]
        REGISTRY,
    )
    task = asyncio.create_task(collector.run())
    try:
        await until(lambda: collector.connect_failures >= 1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    stats = collector.stats()["grid_meter"]
    assert stats.failures[FailureKind.CONNECTION] >= 1
    assert "/dev/no-such-dlt645-port" in stats.last_error
    assert not stats.available
