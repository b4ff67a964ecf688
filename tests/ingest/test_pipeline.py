from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

from zerocarbon.ingest.pipeline import Pipeline
from zerocarbon.ingest.reading import Reading

TS = datetime(2026, 6, 21, tzinfo=UTC)


class RecordingSink:
    def __init__(self, name: str, fail: bool = False) -> None:
        self.name = name
        self.fail = fail
        self.batches: list[list[Reading]] = []

    async def write_batch(self, readings: Sequence[Reading]) -> None:
        self.batches.append(list(readings))
        if self.fail:
            raise RuntimeError("sink down")


def _readings(n: int, start: int = 0) -> list[Reading]:
    return [Reading(TS, "grid_meter", "active_power_kw", float(start + i)) for i in range(n)]


async def test_close_delivers_everything_put_before_it_in_order() -> None:
    sink = RecordingSink("s")
    pipeline = Pipeline([sink], batch_rows=7, flush_interval_s=60)
    task = asyncio.create_task(pipeline.run())
    for k in range(10):
        await pipeline.put(_readings(3, start=3 * k))
    await pipeline.close()
    async with asyncio.timeout(5):
        await task
    values = [r.value for batch in sink.batches for r in batch]
    assert values == [float(i) for i in range(30)]
    assert all(len(b) <= 7 + 2 for b in sink.batches)  # cut as soon as 7 rows are reached
    assert pipeline.stats.readings_in == 30


async def test_partial_batch_is_flushed_after_the_interval() -> None:
    sink = RecordingSink("s")
    pipeline = Pipeline([sink], batch_rows=1000, flush_interval_s=0.05)
    task = asyncio.create_task(pipeline.run())
    await pipeline.put(_readings(2))
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
    await pipeline.put(_readings(5))
    await pipeline.close()
    await task
    assert sum(len(b) for b in healthy.batches) == 5
    assert pipeline.stats.sink_failures == len(broken.batches) >= 1


async def test_full_queue_applies_back_pressure_without_dropping() -> None:
    sink = RecordingSink("s")
    pipeline = Pipeline([sink], max_queued=2, batch_rows=100, flush_interval_s=0.01)
    for k in range(2):
        await pipeline.put(_readings(1, start=k))
    blocked = asyncio.create_task(pipeline.put(_readings(1, start=2)))
    await asyncio.sleep(0.05)
    assert not blocked.done() and pipeline.stats.queue_full_waits == 1
    task = asyncio.create_task(pipeline.run())
    await blocked
    await pipeline.close()
    await task
    assert [r.value for b in sink.batches for r in b] == [0.0, 1.0, 2.0]
