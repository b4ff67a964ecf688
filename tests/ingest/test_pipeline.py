from __future__ import annotations

import asyncio
import functools
from datetime import UTC, datetime

import numpy as np

from zerocarbon.batch import Reading, ReadingBatch, SeriesRegistry, datetime_to_us
from zerocarbon.ingest.pipeline import Pipeline

TS_US = datetime_to_us(datetime(2026, 6, 21, tzinfo=UTC))
REGISTRY = SeriesRegistry(["grid_meter", "battery"])
POWER = REGISTRY.id("grid_meter", "active_power_kw")


class RecordingSink:
    def __init__(self, name: str, fail: bool = False) -> None:
        self.name = name
        self.fail = fail
        self.batches: list[ReadingBatch] = []

    async def write_batch(self, batch: ReadingBatch) -> None:
        self.batches.append(batch)
        if self.fail:
            raise RuntimeError("sink down")

    def values(self) -> list[float]:
        return [v for b in self.batches for v in b.value.tolist()]


def _batch(n: int, start: int = 0) -> ReadingBatch:
    return ReadingBatch.of([POWER] * n, [TS_US + i for i in range(n)], range(start, start + n))


async def test_close_delivers_everything_put_before_it_in_order() -> None:
    sink = RecordingSink("s")
    pipeline = Pipeline([sink], batch_rows=7, flush_interval_s=60)
    task = asyncio.create_task(pipeline.run())
    for k in range(10):
        await pipeline.put(_batch(3, start=3 * k))
    await pipeline.close()
    async with asyncio.timeout(5):
        await task
    assert sink.values() == [float(i) for i in range(30)]
    assert all(len(b) <= 7 + 2 for b in sink.batches)  # cut as soon as 7 rows are reached
    assert pipeline.stats.readings_in == 30


async def test_partial_batch_is_flushed_after_the_interval() -> None:
    sink = RecordingSink("s")
    pipeline = Pipeline([sink], batch_rows=1000, flush_interval_s=0.05)
    task = asyncio.create_task(pipeline.run())
    await pipeline.put(_batch(2))
    async with asyncio.timeout(5):
        while not sink.batches:
            await asyncio.sleep(0.01)
    assert len(sink.batches[0]) == 2
    await pipeline.close()
    await task


async def test_failing_sink_costs_other_sinks_nothing() -> None:
    broken, healthy = RecordingSink("broken", fail=True), RecordingSink("healthy")
    pipeline = Pipeline([broken, healthy], batch_rows=10, flush_interval_s=0.01)
    task = asyncio.create_task(pipeline.run())
    await pipeline.put(_batch(5))
    await pipeline.close()
    await task
    assert sum(len(b) for b in healthy.batches) == 5
    assert pipeline.stats.sink_failures == len(broken.batches) >= 1


async def test_full_queue_applies_back_pressure_without_dropping() -> None:
    sink = RecordingSink("s")
    pipeline = Pipeline([sink], max_queued=2, batch_rows=100, flush_interval_s=0.01)
    for k in range(2):
        await pipeline.put(_batch(1, start=k))
    blocked = asyncio.create_task(pipeline.put(_batch(1, start=2)))
    await asyncio.sleep(0.05)
    assert not blocked.done() and pipeline.stats.queue_full_waits == 1
    task = asyncio.create_task(pipeline.run())
    await blocked
    await pipeline.close()
    await task
    assert sink.values() == [0.0, 1.0, 2.0]


async def test_sink_gets_one_batch_whose_arrays_are_the_concatenation_of_the_puts() -> None:
    """No per-reading objects on the way: the sink receives a ReadingBatch of numpy
    arrays equal to the concatenated columns of what collectors put, in order."""
    sink = RecordingSink("s")
    pipeline = Pipeline([sink], batch_rows=10_000, flush_interval_s=60)
    soc = REGISTRY.id("battery", "state_of_charge_pct")
    puts = [
        ReadingBatch.of([POWER, soc], [TS_US, TS_US + 7], [1.5, 60.0], [0, 1]),
        ReadingBatch.of([soc], [TS_US + 1_000_001], [61.0], [2]),
        ReadingBatch.of([POWER] * 3, [TS_US + 5, TS_US + 6, TS_US + 8], [2.0, 3.0, -4.0]),
    ]
    task = asyncio.create_task(pipeline.run())
    for batch in puts:
        await pipeline.put(batch)
    await pipeline.close()
    await task
    assert len(sink.batches) == 1
    got = sink.batches[0]
    assert type(got) is ReadingBatch
    for column, dtype in (
        ("series", np.int32),
        ("ts_us", np.int64),
        ("value", np.float64),
        ("quality", np.int8),
    ):
        array = getattr(got, column)
        assert isinstance(array, np.ndarray) and array.dtype == dtype
        np.testing.assert_array_equal(array, np.concatenate([getattr(b, column) for b in puts]))
    assert not any(isinstance(x, Reading) for x in vars(pipeline).values())
    assert pipeline.stats.readings_in == pipeline.stats.readings_out == 6


class HoldingSink(RecordingSink):
    """Records each batch, then holds it until released."""

    def __init__(self, name: str, fail: bool = False) -> None:
        super().__init__(name, fail)
        self.release = asyncio.Event()
        self.entered = asyncio.Event()

    async def write_batch(self, batch: ReadingBatch) -> None:
        self.entered.set()
        await self.release.wait()
        await super().write_batch(batch)


async def test_acks_are_called_in_put_order_once_every_sink_took_the_batch() -> None:
    """Puts with acks (one an empty batch: a message without readings) are acked in put
    order, each once, and none before the last sink returned."""
    first, second = RecordingSink("spool"), HoldingSink("engine")
    pipeline = Pipeline([first, second], batch_rows=10_000, flush_interval_s=60)
    acked: list[int] = []
    for k, n in enumerate((3, 0, 2, 4)):
        await pipeline.put(_batch(n, start=10 * k), ack=functools.partial(acked.append, k))
    task = asyncio.create_task(pipeline.run())
    async with asyncio.timeout(5):
        await second.entered.wait()
    assert acked == [] and len(first.batches) == 1  # the spool has it, the engine not yet
    second.release.set()
    await pipeline.close()
    async with asyncio.timeout(5):
        await task
    assert acked == [0, 1, 2, 3]
    assert pipeline.stats.acked == 4 and pipeline.stats.unacked_after_failure == 0


async def test_a_sink_failure_withholds_every_ack_of_its_batch() -> None:
    broken, healthy = RecordingSink("spool", fail=True), RecordingSink("engine")
    pipeline = Pipeline([broken, healthy], batch_rows=10_000, flush_interval_s=60)
    acked: list[int] = []
    for k in range(3):
        await pipeline.put(_batch(2, start=2 * k), ack=functools.partial(acked.append, k))
    await pipeline.close()
    async with asyncio.timeout(5):
        await pipeline.run()
    assert acked == []
    assert pipeline.stats.unacked_after_failure == 3 and pipeline.stats.acked == 0
    assert healthy.values() == [float(i) for i in range(6)]  # the other sink still got it
