"""Injected time.

Every component that needs "now" or needs to wait takes a :class:`Clock`, so the
simulators and the whole pipeline can run faster than real time (``--speed N``) and
tests never depend on the wall clock. All timestamps are timezone-aware UTC.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """A source of simulated or real UTC time."""

    @property
    def speed(self) -> float:
        """Simulated seconds per real second."""
        ...

    def now_s(self) -> float:
        """Current time as POSIX seconds [s]."""
        ...

    def now(self) -> datetime:
        """Current time as an aware UTC datetime."""
        ...

    async def sleep(self, interval_s: float) -> None:
        """Wait ``interval_s`` seconds of this clock's time."""
        ...


class SystemClock:
    """The wall clock."""

    speed = 1.0

    def now_s(self) -> float:
        return time.time()

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, interval_s: float) -> None:
        await asyncio.sleep(max(0.0, interval_s))


class ScaledClock:
    """A clock that starts at ``start`` and runs ``speed`` times faster than real time."""

    def __init__(self, start: datetime, speed: float = 1.0) -> None:
        if start.tzinfo is None:
            raise ValueError("ScaledClock start must be timezone-aware (UTC)")
        if speed <= 0:
            raise ValueError(f"clock speed must be > 0, got {speed}")
        self._start_s = start.timestamp()
        self._speed = float(speed)
        self._t0 = time.monotonic()

    @property
    def speed(self) -> float:
        return self._speed

    def now_s(self) -> float:
        return self._start_s + (time.monotonic() - self._t0) * self._speed

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.now_s(), UTC)

    async def sleep(self, interval_s: float) -> None:
        await asyncio.sleep(max(0.0, interval_s) / self._speed)
