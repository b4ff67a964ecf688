"""The types of what a collector hands the pipeline: a batch and an optional ack.

The ``ack`` callback lets a collector acknowledge its source (an MQTT PUBACK) only once
the readings are durable. The reading records themselves are
:class:`zerocarbon.batch.ReadingBatch` (and its per-reading view
:class:`zerocarbon.batch.Reading`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from zerocarbon.batch import ReadingBatch

Ack = Callable[[], None]
"""Called once the readings of a put are acknowledged (every sink, the spool first, took
them): the MQTT collector sends the message's PUBACK then."""


class BatchSink(Protocol):
    """Where a collector hands the readings of one poll or message: the pipeline's
    ``put(batch, ack=None)``."""

    def __call__(self, batch: ReadingBatch, ack: Ack | None = None, /) -> Awaitable[None]: ...
