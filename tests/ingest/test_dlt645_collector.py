"""The DL/T 645-2007 collector against our simulated gateway over TCP loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import pytest

from tests.ingest.clocks import ManualClock
from zerocarbon.batch import Reading, ReadingBatch, SeriesRegistry, UnknownSeriesError
from zerocarbon.clock import Clock, ScaledClock
from zerocarbon.ingest.dlt645.collector import Dlt645LinkCollector, Dlt645Meter, FailureKind
from zerocarbon.ingest.dlt645.frame import (
    ErrorFlags,
    decode_read_reply,
    encode_read_request,
    parse_frame,
)
from zerocarbon.ingest.dlt645.link import TcpGateway
from zerocarbon.metering.dlt645 import DEFAULT_IDENTIFIERS, METRIC_OF_IDENTIFIER
from zerocarbon.metering.metrics import METRICS_BY_NAME
from zerocarbon.netutil import free_tcp_port
from zerocarbon.simulators.dlt645_server import Dlt645Server, FaultKind

START = datetime(2026, 6, 21, 2, 0, tzinfo=UTC)
GRID, PV = "202400000001", "202400000002"
REGISTRY = SeriesRegistry(["grid_meter", "pv_meter"])

# Values the formats hold exactly (XXXXXX.XX kWh, XX.XXXX kW, XXX.X V, XX.XX Hz).
GRID_VALUES = {
    "energy_import_kwh": 123456.78,
    "energy_export_kwh": 234.5,
    "active_power_kw": -12.3456,  # sign bit set: exporting
    "voltage_v": 230.1,
    "frequency_hz": 49.98,
}
PV_VALUES = {
    "energy_import_kwh": 1.5,
    "energy_export_kwh": 98765.43,
    "active_power_kw": 45.6789,
    "voltage_v": 229.9,
    "frequency_hz": 50.02,
}


def _source(values: Mapping[str, float]) -> Callable[[], Mapping[str, float]]:
    return lambda: values


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait until ``condition()`` holds (checked every few ms), at most ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.002)


class Received:
    """The sink: every batch as Reading views, by device."""

    def __init__(self) -> None:
        self.batches: list[list[Reading]] = []

    async def __call__(self, batch: ReadingBatch) -> None:
        assert type(batch) is ReadingBatch
        self.batches.append(list(batch.readings(REGISTRY)))

    def of(self, device: str) -> list[dict[str, float]]:
        return [
            {r.metric: r.value for r in batch}
            for batch in self.batches
            if batch and batch[0].device == device
        ]


@asynccontextmanager
async def running(
    meters: list[Dlt645Meter],
    server: Dlt645Server | None = None,
    clock: Clock | None = None,
    sink: Callable[[ReadingBatch], object] | None = None,
    **options: float,
) -> AsyncIterator[tuple[Dlt645LinkCollector, Received]]:
    """A collector polling ``server`` (or a free port where nothing listens)."""
    received = Received()
    port = server.port if server is not None else free_tcp_port()
    collector = Dlt645LinkCollector(
        TcpGateway("127.0.0.1", port),
        meters,
        clock or ScaledClock(START, speed=50.0),  # 1 s polls every 20 ms
        sink or received,  # type: ignore[arg-type]
        REGISTRY,
        **options,  # type: ignore[arg-type]
    )
    task = asyncio.create_task(collector.run())
    try:
        yield collector, received
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled(), task.exception()


def _meter(device: str, address: str, **kw: object) -> Dlt645Meter:
    options: dict[str, object] = {"poll_interval_s": 1.0, "timeout_s": 1.0} | kw
    return Dlt645Meter(device, address, **options)  # type: ignore[arg-type]


@pytest.fixture
async def server() -> AsyncIterator[Dlt645Server]:
    async with Dlt645Server(
        "127.0.0.1", 0, {GRID: _source(GRID_VALUES), PV: _source(PV_VALUES)}
    ) as s:
        yield s


# --------------------------------------------------------------------------- reading


async def test_two_meters_on_one_link_decode_exactly(server: Dlt645Server) -> None:
    meters = [_meter("grid_meter", GRID), _meter("pv_meter", PV)]
    async with running(meters, server) as (collector, received):
        await until(
            lambda: len(received.of("grid_meter")) >= 3 and len(received.of("pv_meter")) >= 1
        )
    assert received.of("grid_meter")[0] == GRID_VALUES  # exact: BCD decodes to the literal
    assert received.of("pv_meter")[0] == PV_VALUES
    stamps = [r.ts for batch in received.batches for r in batch]
    assert stamps == sorted(stamps)
    assert all(batch[0].ts >= START for batch in received.batches)
    grid = collector.stats()["grid_meter"]
    assert grid.available and grid.timeouts == grid.errors == grid.retries == 0
    assert grid.readings == 5 * len(received.of("grid_meter"))
    assert collector.connects == 1  # one connection, requests in sequence
    assert server.bad_requests == 0


def test_every_default_identifier_carries_a_known_metric() -> None:
    assert set(DEFAULT_IDENTIFIERS) == set(METRIC_OF_IDENTIFIER)
    assert set(METRIC_OF_IDENTIFIER.values()) <= set(METRICS_BY_NAME)


async def test_server_answers_requests_sent_back_to_back(server: Dlt645Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        ids = (0x0001_0000, 0x0203_0000, 0x0280_0002)
        writer.write(b"".join(encode_read_request(GRID, d) for d in ids))
        buffer = bytearray()
        values: list[float] = []
        async with asyncio.timeout(5):
            while len(values) < len(ids):
                found = parse_frame(buffer)
                if found is None:
                    buffer += await reader.read(256)
                    continue
                frame, end = found
                del buffer[:end]
                values.append(decode_read_reply(frame, GRID, ids[len(values)]))
        assert values == [123456.78, -12.3456, 49.98]
    finally:
        writer.close()
        await writer.wait_closed()


async def test_combined_energy_and_wildcard_address() -> None:
    only_pv = Dlt645Server("127.0.0.1", 0, {PV: _source(PV_VALUES)})
    async with only_pv:
        reader, writer = await asyncio.open_connection("127.0.0.1", only_pv.port)
        writer.write(encode_read_request("AAAAAAAAAAAA", 0x0000_0000))
        buffer = bytearray()
        async with asyncio.timeout(5):
            while (found := parse_frame(buffer)) is None:
                buffer += await reader.read(256)
        writer.close()
        await writer.wait_closed()
    frame = found[0]
    assert frame.address == PV  # the reply names the meter
    assert decode_read_reply(frame, "AAAAAAAAAAAA", 0x0000_0000) == pytest.approx(98766.93)


# --------------------------------------------------------------------------- faults


async def test_timeout_marks_the_meter_unavailable_then_available(server: Dlt645Server) -> None:
    meters = [_meter("grid_meter", GRID, timeout_s=0.05), _meter("pv_meter", PV)]
    async with running(meters, server, retries=0) as (collector, received):
        grid = collector.stats()["grid_meter"]
        await until(lambda: grid.available)
        server.set_fault(GRID, FaultKind.NO_ANSWER)
        await until(lambda: grid.timeouts >= 2)
        assert not grid.available
        assert grid.failures[FailureKind.TIMEOUT] == grid.timeouts
        assert "no reply within 0.05 s" in grid.last_error
        assert collector.stats()["pv_meter"].available  # the other meter is unaffected
        server.set_fault(GRID, None)
        batches = len(received.of("grid_meter"))
        await until(lambda: grid.available and len(received.of("grid_meter")) > batches)
    assert received.of("grid_meter")[-1] == GRID_VALUES
    assert grid.errors == 0


async def test_abnormal_reply_is_counted(server: Dlt645Server) -> None:
    async with running([_meter("grid_meter", GRID)], server) as (collector, received):
        grid = collector.stats()["grid_meter"]
        await until(lambda: grid.available)
        server.set_fault(GRID, FaultKind.ABNORMAL, error=ErrorFlags.NO_DATA)
        await until(lambda: grid.failures[FailureKind.ABNORMAL_REPLY] >= 5)
        assert not grid.available
        assert "error byte 0x02 (NO_DATA)" in grid.last_error
        server.set_fault(GRID, None)
        await until(lambda: grid.available)
    assert grid.retries == 0  # an abnormal reply is an answer: not sent again
    assert grid.errors == grid.failures[FailureKind.ABNORMAL_REPLY] and grid.timeouts == 0


async def test_bad_checksum_is_counted(server: Dlt645Server) -> None:
    async with running([_meter("grid_meter", GRID)], server, retries=0) as (collector, _):
        grid = collector.stats()["grid_meter"]
        await until(lambda: grid.available)
        server.set_fault(GRID, FaultKind.BAD_CHECKSUM)
        await until(lambda: grid.failures[FailureKind.BAD_FRAME] >= 2)
        assert not grid.available and "checksum error" in grid.last_error
        server.set_fault(GRID, None)
        await until(lambda: grid.available)
    assert grid.timeouts == 0


async def test_one_bad_checksum_is_retried(server: Dlt645Server) -> None:
    async with running([_meter("grid_meter", GRID)], server, retries=1) as (collector, received):
        grid = collector.stats()["grid_meter"]
        await until(lambda: grid.available)
        server.set_fault(GRID, FaultKind.BAD_CHECKSUM, times=1)
        await until(lambda: grid.retries == 1 and len(received.of("grid_meter")) >= 3)
    assert grid.errors == grid.timeouts == 0 and grid.available
    assert all(values == GRID_VALUES for values in received.of("grid_meter"))


async def test_frames_split_across_writes_are_reassembled(server: Dlt645Server) -> None:
    server.set_fault(GRID, FaultKind.SPLIT)
    async with running([_meter("grid_meter", GRID)], server) as (collector, received):
        await until(lambda: len(received.of("grid_meter")) >= 2)
    assert server.faults_applied[FaultKind.SPLIT] >= 10
    assert received.of("grid_meter") == [GRID_VALUES] * len(received.of("grid_meter"))
    grid = collector.stats()["grid_meter"]
    assert grid.errors == grid.timeouts == grid.retries == 0


async def test_unreachable_gateway_backs_off(server: Dlt645Server) -> None:
    async def sink(batch: ReadingBatch) -> None:
        raise AssertionError("no readings expected")

    meters = [_meter("grid_meter", GRID, poll_interval_s=1.0)]
    backoff = {"reconnect_min_s": 4.0, "reconnect_max_s": 8.0}
    async with running(meters, None, None, sink, **backoff) as (collector, _):
        grid = collector.stats()["grid_meter"]
        await until(lambda: grid.failures[FailureKind.CONNECTION] >= 12)
        assert not grid.available and grid.timeouts == 0
        # Attempts at 0, 4, 12, 20 ... s: far fewer than polls.
        assert 1 <= collector.connect_failures <= grid.polls // 3
        assert "cannot connect" in grid.last_error or "next attempt" in grid.last_error


async def test_late_cycles_are_skipped_and_counted(server: Dlt645Server) -> None:
    clock = ManualClock(START)
    received = Received()

    async def slow_sink(batch: ReadingBatch) -> None:
        await received(batch)
        if len(received.batches) == 1:
            clock.advance(3.5)  # the first poll "took" 3.5 intervals

    meter = _meter("grid_meter", GRID, identifiers=(0x0280_0002,))
    async with running([meter], server, clock=clock, sink=slow_sink) as (collector, _):
        await until(lambda: len(received.batches) >= 3)
    assert collector.stats()["grid_meter"].skipped_cycles == 2
    ts = [batch[0].ts.timestamp() - START.timestamp() for batch in received.batches[:3]]
    assert ts[0] == 0 and ts[1] == 3.5 and ts[2] == 4


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"address": "12345"}, "address: meter address '12345' must have 12 digits"),
        ({"poll_interval_s": 0}, "poll_interval_s must be > 0"),
        ({"timeout_s": -1}, "timeout_s must be > 0"),
        ({"identifiers": ()}, "identifiers is empty"),
        ({"identifiers": (0x0202_0100,)}, "identifiers: no format for data identifier 02020100"),
        (
            {"identifiers": (0x0000_0000,)},
            "identifiers: data identifier 00000000 carries no metric",
        ),
    ],
)
def test_meter_config_errors_name_the_field(kw: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"device_id": "grid_meter", "address": GRID} | kw
    with pytest.raises(ValueError, match=f"'grid_meter': {message}"):
        Dlt645Meter(**fields)  # type: ignore[arg-type]


def test_unknown_device_is_named() -> None:
    with pytest.raises(UnknownSeriesError, match="nowhere"):
        Dlt645LinkCollector(
            TcpGateway("127.0.0.1", 1),
            [_meter("nowhere", GRID)],
            ManualClock(START),
            Received(),  # type: ignore[arg-type]
            REGISTRY,
        )
