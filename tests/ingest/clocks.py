"""A clock the test sets by hand (the Clock protocol of zerocarbon.clock)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime


class ManualClock:
    speed = 1.0

    def __init__(self, start: datetime) -> None:
        self._now_s = start.timestamp()

    def now_s(self) -> float:
        return self._now_s

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._now_s, UTC)

    def advance(self, interval_s: float) -> None:
        self._now_s += interval_s

    async def sleep(self, interval_s: float) -> None:
        self.advance(max(0.0, interval_s))
        await asyncio.sleep(0)
