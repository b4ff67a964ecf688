"""The gateway's uplink outbox: stored readings waiting for the local JetStream.

The forwarder hands every batch it stored to :meth:`UplinkOutbox.keep` *before* the
main spool forgets it (:data:`zerocarbon.storage.forwarder.DurableConsumer`), so the
outbox holds every stored reading at least once, across crashes. The outbox is a
second :class:`~zerocarbon.storage.spool.Spool` (checksummed segments, its own quota)
beside the main one; the publisher reads it in order and commits what the local
JetStream acknowledged. Keeping a batch is a local disk append that never waits on
the network; when the outbox is full (the local NATS server has been away a long
time), the batch is counted as not sent and logged, and storage goes on: the uplink
never holds back collection or storage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

from zerocarbon.batch import ReadingBatch, SeriesRegistry
from zerocarbon.storage.spool import Spool, SpoolError, SpoolFull, SpoolRecord
from zerocarbon.storage.spool_series import SpoolSeries

__all__ = ["OutboxStats", "UplinkOutbox"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class OutboxStats:
    readings_kept: int = 0  # appended to the outbox
    readings_dropped: int = 0  # not kept: the outbox was full or the disk failed
    drop_episodes: int = 0  # times keeping started to fail


class UplinkOutbox:
    """Stored readings, in order, until the local JetStream has them."""

    def __init__(self, directory: Path, series: SeriesRegistry, *, quota_bytes: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.spool = Spool(
            directory,
            quota_bytes=quota_bytes,
            segment_bytes=min(64 << 20, max(1 << 20, quota_bytes // 8)),
            fsync="always",  # the main spool forgets the batch right after this append
        )
        self._series = SpoolSeries(directory, series, self.spool.last_seq + 1)
        self.stats = OutboxStats()
        self._dropping = False
        self._wake = asyncio.Event()

    async def keep(self, batch: ReadingBatch) -> None:
        """Append ``batch``; never raises and never waits for space."""
        if not len(batch):
            return
        try:
            await asyncio.to_thread(self.spool.append, batch)
        except (SpoolFull, SpoolError, OSError) as exc:
            self.stats.readings_dropped += len(batch)
            if not self._dropping:
                self._dropping = True
                self.stats.drop_episodes += 1
                log.error(
                    "uplink outbox %s cannot keep stored readings (%s): they are stored "
                    "here but will not reach the center; %d waiting",
                    self.spool.directory,
                    exc,
                    self.spool.depth_rows,
                )
            return
        if self._dropping:
            self._dropping = False
            log.warning(
                "uplink outbox keeps readings again (%d were not kept)",
                self.stats.readings_dropped,
            )
        self.stats.readings_kept += len(batch)
        self._wake.set()

    async def read(self, max_rows: int) -> list[tuple[int, ReadingBatch]]:
        """The oldest uncommitted records as (seq, batch in the current series ids)."""
        records: list[SpoolRecord] = await asyncio.to_thread(
            self.spool.read, self.spool.committed_seq, max_rows
        )
        return [(r.seq, self._series.map(r.seq, r.batch)) for r in records]

    async def commit(self, seq: int) -> None:
        """Forget records up to ``seq`` (the local JetStream acknowledged them)."""
        await asyncio.to_thread(self.spool.commit, seq)
        self._series.forget_before(seq)

    async def wait(self, timeout_s: float) -> None:
        """Until something is kept, or ``timeout_s`` [s]."""
        self._wake.clear()
        if self.spool.depth_records:
            return
        # asyncio.timeout, not wait_for: Python 3.11's wait_for loses a cancellation
        # that arrives as the event is set, and the publisher would never stop
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._wake.wait()

    @property
    def depth_readings(self) -> int:
        return self.spool.depth_rows

    def close(self) -> None:
        self.spool.close()
