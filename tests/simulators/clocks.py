"""A clock the test moves by hand, for driving the simulators without wall time."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from datetime import UTC, datetime


class ManualClock:
    """Simulated time that stands still until :meth:`advance` moves it.

    ``sleep`` waits until the clock has been advanced past its deadline. ``advance``
    wakes sleepers in deadline order and, after each wake-up, waits (on an event, with a
    wall-time limit) until every woken task is sleeping again: when it returns, all
    periodic work due by then (physics ticks, publish cycles) has been done.
    """

    speed = 1.0

    def __init__(self, start_s: float) -> None:
        self._now_s = float(start_s)
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._slept = asyncio.Event()

    def now_s(self) -> float:
        return self._now_s

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._now_s, UTC)

    @property
    def sleeping(self) -> int:
        return sum(1 for *_x, f in self._sleepers if not f.done())

    async def sleep(self, interval_s: float) -> None:
        if interval_s <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now_s + interval_s, next(self._order), future))
        self._slept.set()
        await future

    async def wait_sleeping(self, count: int, timeout_s: float = 10.0) -> None:
        """Wait until at least ``count`` tasks sleep on this clock."""
        async with asyncio.timeout(timeout_s):
            while self.sleeping < count:
                self._slept.clear()
                await self._slept.wait()

    async def advance(self, to_s: float, timeout_s: float = 10.0) -> None:
        """Move time to ``to_s``, running every sleeper due on the way."""
        while self._sleepers and self._sleepers[0][0] <= to_s:
            deadline = self._sleepers[0][0]
            self._now_s = max(self._now_s, deadline)
            before = self.sleeping
            woken = 0
            while self._sleepers and self._sleepers[0][0] <= deadline:
                _d, _n, future = heapq.heappop(self._sleepers)
                if not future.done():
                    future.set_result(None)
                    woken += 1
            await self.wait_sleeping(before, timeout_s)
        self._now_s = max(self._now_s, to_s)
