"""The pipeline: a bounded queue of readings -> batches -> fan-out to sinks.

Collectors ``put`` the readings of one poll or message; when the queue is full they
wait (back-pressure) instead of dropping. ``close`` ends the stream: everything put
before it is delivered before ``run`` returns. The batcher cuts a batch when it holds
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

_POLL_S = 0.02  # how often a batch being assembled looks at the queue [s]


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
        # None is the end-of-stream marker put by close()
        self._queue: asyncio.Queue[list[Reading] | None] = asyncio.Queue(maxsize=max_queued)
        self._batch_rows = batch_rows
        self._flush_interval_s = flush_interval_s
        self.stats = PipelineStats()

    async def put(self, readings: list[Reading]) -> None:
        """Queue the readings of one poll/message (waits while the queue is full)."""
        if self._queue.full():
            self.stats.queue_full_waits += 1
        await self._queue.put(readings)
        self.stats.readings_in += len(readings)

    async def close(self) -> None:
        """Ask :meth:`run` to deliver everything queued so far and return."""
        await self._queue.put(None)

    async def run(self) -> None:
        """Batch and fan out until :meth:`close` has been called and all is delivered.

        Readings taken off the queue are always delivered before ``run`` returns after
        ``close``; cancelling ``run`` instead may lose the batch being assembled.
        """
        while True:
            batch, closing = await self._next_batch()
            if batch:
                await self._deliver(batch)
            if closing:
                return

    async def _next_batch(self) -> tuple[list[Reading], bool]:
        first = await self._queue.get()
        if first is None:
            return [], True
        batch = list(first)
        deadline = time.monotonic() + self._flush_interval_s
        while len(batch) < self._batch_rows:
            while not self._queue.empty() and len(batch) < self._batch_rows:
                item = self._queue.get_nowait()
                if item is None:
                    return batch, True
                batch.extend(item)
            remaining = deadline - time.monotonic()
            if len(batch) >= self._batch_rows or remaining <= 0:
                break
            await asyncio.sleep(min(_POLL_S, remaining))
        return batch, False

    async def _deliver(self, batch: list[Reading]) -> None:
        self.stats.batches += 1
        for sink in self._sinks:
            try:
                await sink.write_batch(batch)
            except Exception:  # a sink's failure must not cost the other sinks the batch
                self.stats.sink_failures += 1
                log.exception("sink %s failed on a batch of %d readings", sink.name, len(batch))
