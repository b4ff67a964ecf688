"""The type of the callable a collector hands each batch to (the pipeline's ``put``).

The reading records themselves are :class:`zerocarbon.batch.ReadingBatch` (and its
per-reading view :class:`zerocarbon.batch.Reading`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from zerocarbon.batch import ReadingBatch

BatchSink = Callable[[ReadingBatch], Awaitable[None]]
"""Where a collector hands the readings of one poll or message (the pipeline's put)."""
