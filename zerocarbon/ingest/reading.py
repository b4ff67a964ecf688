"""The one record every collector produces."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum


class Quality(IntEnum):
    """Data quality flag stored with each reading."""

    GOOD = 0
    ESTIMATED = 1
    SUSPECT = 2


@dataclass(frozen=True, slots=True)
class Reading:
    """One value of one metric of one device at one instant.

    ``ts`` is timezone-aware UTC; ``device`` is the site config's device id; ``metric``
    a name from :mod:`zerocarbon.metering.metrics`; ``value`` in that metric's unit.
    """

    ts: datetime
    device: str
    metric: str
    value: float
    quality: Quality = Quality.GOOD


ReadingSink = Callable[[list[Reading]], Awaitable[None]]
"""Where a collector hands the readings of one poll or message (the pipeline's put)."""
