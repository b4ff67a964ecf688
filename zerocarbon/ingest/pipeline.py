"""The pipeline: a bounded queue of reading batches -> admitted batches -> fan-out to sinks.

Collectors ``put`` the :class:`~zerocarbon.batch.ReadingBatch` of one poll or message;
when the queue is full they wait (back-pressure) instead of dropping. ``close`` ends
the stream: everything put before it is delivered before ``run`` returns. The batcher
takes queued batches until it holds ``batch_rows`` readings or ``flush_interval_s``
(real seconds) has passed, concatenates their arrays into one batch, passes it through
the :class:`~zerocarbon.ingest.admission.Admission` step (when given) and hands the
result to each sink in order (in the gateway: the store-and-forward spool). No Python
object per reading is made on the way. A failing sink is logged and counted; the other
sinks still get the batch.

Acknowledgement: a ``put`` may carry an ``ack`` callback (the MQTT collector's PUBACK).
It is called, in put order, once every sink has taken the batch holding its readings —
so a message is acknowledged to the broker only after its readings are in the spool.
A batch a sink failed on is not acknowledged (the broker redelivers it). While a part
awaits its ack the batcher does not linger for more: it hands over what is queued as
soon as the queue is empty (group commit), so acknowledgement latency stays that of one
spool append, whatever ``flush_interval_s`` is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from zerocarbon.batch import ReadingBatch
from zerocarbon.ingest.admission import Admission
from zerocarbon.ingest.reading import Ack

log = logging.getLogger(__name__)

_POLL_S = 0.02  # how often a batch being assembled looks at the queue [s]


class PipelineSink(Protocol):
    """A consumer of the pipeline's batches (storage writer, carbon engine)."""

    name: str

    async def write_batch(self, batch: ReadingBatch) -> None: ...


@dataclass(slots=True)
class PipelineStats:
    readings_in: int = 0
    readings_out: int = 0  # delivered to the sinks (after admission)
    batches: int = 0
    sink_failures: int = 0
    queue_full_waits: int = 0
    admission_failures: int = 0  # batches delivered unchecked after an admission error
    acked: int = 0  # ack callbacks called
    ack_failures: int = 0  # ack callbacks that raised (the source redelivers)
    unacked_after_failure: int = 0  # acks withheld because a sink failed on their batch


class Pipeline:
    def __init__(
        self,
        sinks: Sequence[PipelineSink],
        *,
        admission: Admission | None = None,
        max_queued: int = 10_000,
        batch_rows: int = 5_000,
        flush_interval_s: float = 0.5,
    ) -> None:
        self._sinks = list(sinks)
        self.admission = admission
        # None is the end-of-stream marker put by close(); max_queued counts batches
        self._queue: asyncio.Queue[tuple[ReadingBatch, Ack | None] | None] = asyncio.Queue(
            maxsize=max_queued
        )
        self._batch_rows = batch_rows
        self._flush_interval_s = flush_interval_s
        self.stats = PipelineStats()

    async def put(self, batch: ReadingBatch, ack: Ack | None = None) -> None:
        """Queue the batch of one poll/message (waits while the queue is full); ``ack``
        is called once every sink took it (an empty batch with an ack is acknowledged in
        its turn, keeping acks in order)."""
        if len(batch) == 0 and ack is None:
            return
        if self._queue.full():
            self.stats.queue_full_waits += 1
        await self._queue.put((batch, ack))
        self.stats.readings_in += len(batch)

    async def close(self) -> None:
        """Ask :meth:`run` to deliver everything queued so far and return."""
        await self._queue.put(None)

    async def run(self) -> None:
        """Batch and fan out until :meth:`close` has been called and all is delivered.

        Readings taken off the queue are always delivered before ``run`` returns after
        ``close``; cancelling ``run`` instead may lose the batch being assembled.
        """
        while True:
            parts, acks, closing = await self._next_parts()
            if parts:
                batch = ReadingBatch.concat(parts)
                if self.admission is not None:
                    try:
                        batch = self.admission.admit(batch)
                    except Exception:  # a bug there must not stop the pipeline
                        self.stats.admission_failures += 1
                        log.exception("admission failed on a batch of %d readings", len(batch))
                delivered = await self._deliver(batch) if len(batch) else True
                self._acknowledge(acks, delivered)
            if closing:
                return

    async def _next_parts(self) -> tuple[list[ReadingBatch], list[Ack], bool]:
        first = await self._queue.get()
        if first is None:
            return [], [], True
        parts: list[ReadingBatch] = []
        acks: list[Ack] = []

        def take(item: tuple[ReadingBatch, Ack | None]) -> int:
            parts.append(item[0])
            if item[1] is not None:
                acks.append(item[1])
            return len(item[0])

        rows = take(first)
        deadline = time.monotonic() + self._flush_interval_s
        while rows < self._batch_rows:
            while not self._queue.empty() and rows < self._batch_rows:
                item = self._queue.get_nowait()
                if item is None:
                    return parts, acks, True
                rows += take(item)
            remaining = deadline - time.monotonic()
            if rows >= self._batch_rows or remaining <= 0 or acks:
                break  # a source waits for its ack: no lingering
            await asyncio.sleep(min(_POLL_S, remaining))
        return parts, acks, False

    async def _deliver(self, batch: ReadingBatch) -> bool:
        """Hand ``batch`` to every sink; False when one of them failed."""
        self.stats.batches += 1
        self.stats.readings_out += len(batch)
        ok = True
        for sink in self._sinks:
            try:
                await sink.write_batch(batch)
            except Exception:  # a sink's failure must not cost the other sinks the batch
                ok = False
                self.stats.sink_failures += 1
                log.exception("sink %s failed on a batch of %d readings", sink.name, len(batch))
        return ok

    def _acknowledge(self, acks: list[Ack], delivered: bool) -> None:
        if not delivered:
            self.stats.unacked_after_failure += len(acks)
            return
        for ack in acks:
            try:
                ack()
            except Exception:  # the source redelivers what it did not see acknowledged
                self.stats.ack_failures += 1
                log.exception("acknowledging a delivered batch failed")
            else:
                self.stats.acked += 1
