"""What the API needs from the running gateway for ``/readyz`` and ``/metrics``.

The API does not know the gateway's parts; the runtime hands it a :class:`Telemetry`
(see :mod:`zerocarbon.telemetry`). Without one (the API served on its own), ``/readyz``
checks the database only and ``/metrics`` has the API's own metrics only.
"""

from __future__ import annotations

from typing import Protocol

from prometheus_client.registry import Collector
from pydantic import BaseModel, Field


class ComponentState(BaseModel):
    """One part ``/readyz`` checks."""

    ok: bool
    detail: str = ""


class DatabaseState(ComponentState):
    down_s: float | None = Field(default=None, description="how long it has been away [s]")


class BrokerState(ComponentState):
    url: str | None = None


class SpoolState(ComponentState):
    depth_readings: int = Field(description="readings acknowledged, not yet in the database")
    depth_batches: int
    used_bytes: int
    quota_bytes: int
    alarm: bool = Field(description="use above the configured alarm level")
    full: bool = Field(description="collection is being held back for lack of space")
    oldest_unreplayed_age_s: float | None = Field(
        description="how long the oldest spooled batch has waited [s]"
    )


class Readiness(BaseModel):
    """``GET /readyz``: 200 when every part is fine, 503 otherwise."""

    ready: bool
    database: DatabaseState
    broker: BrokerState | None = None  # None: the site has no MQTT devices
    spool: SpoolState | None = None  # None: the API runs without a gateway


class Telemetry(Protocol):
    """The gateway's side: its parts' state and counters."""

    def readiness(self, database_ok: bool, database_detail: str) -> Readiness:
        """The report, given a fresh database check."""
        ...

    def collector(self) -> Collector:
        """A Prometheus collector reading the gateway's counters at scrape time."""
        ...
