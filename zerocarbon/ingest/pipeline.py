"""The pipeline: a bounded queue of readings -> batches -> fan-out to sinks.

Collectors ``put`` the readings of one poll or message; when the queue is full they
wait (back-pressure) instead of dropping. The batcher cuts a batch when it holds
``batch_rows`` readings or ``flush_interval_s`` (real seconds) has passed, and hands it
to each sink in order (storage first, then the carbon engine). A failing sink is
logged and counted; the other sinks still get the batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from zerocarbon.ingest.reading import Reading

log = logging.getLogger(__name__)


class BatchSink(Protocol):
    name: str

    async def write_batch(self, readings: Sequence[Reading]) -> None: ...


@dataclass(slots=True)
class PipelineStats:
    readings_in: int = 0
    batches: int = 0
    sink_failures: int = 0
    queue_full_waits: int = 0


class Pipeline:
    def __init__(
        self,
        sinks: Sequence[BatchSink],
        *,
        max_queued: int = 10_000,
        batch_rows: int = 5_000,
        flush_interval_s: float = 0.5,
    ) -> None:
        self._sinks = list(sinks)
        self._queue: asyncio.Queue[list[Reading]] = asyncio.Queue(maxsize=max_queued)
        self._batch_rows = batch_rows
        self._flush_interval_s = flush_interval_s
        self.stats = PipelineStats()

    async def put(self, readings: list[Reading]) -> None:
        """Queue the readings of one poll/message (waits while the queue is full)."""
        if self._queue.full():
            self.stats.queue_full_waits += 1
        await self._queue.put(readings)
        self.stats.readings_in += len(readings)

    async def run(self) -> None:
        """Batch and fan out until cancelled; on cancellation, flush what is queued."""
        try:
            while True:
                batch = await self._next_batch()
                await self._deliver(batch)
        except asyncio.CancelledError:
            await self.drain()
            raise

    async def drain(self) -> None:
        """Deliver everything still queued (used at shutdown)."""
        batch: list[Reading] = []
        while not self._queue.empty():
            batch.extend(self._queue.get_nowait())
            if len(batch) >= self._batch_rows:
                await self._deliver(batch)
                batch = []
        if batch:
            await self._deliver(batch)

    async def _next_batch(self) -> list[Reading]:
        batch = list(await self._queue.get())
        deadline = time.monotonic() + self._flush_interval_s
        while len(batch) < self._batch_rows:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.extend(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _deliver(self, batch: list[Reading]) -> None:
        self.stats.batches += 1
        for sink in self._sinks:
            try:
                await sink.write_batch(batch)
            except Exception:  # a sink's failure must not cost the other sinks the batch
                self.stats.sink_failures += 1
                log.exception("sink %s failed on a batch of %d readings", sink.name, len(batch))
