"""What the API needs from the running gateway for ``/readyz``, ``/metrics`` and
``/api/v1/devices/{id}/health``.

The API does not know the gateway's parts; the runtime hands it a :class:`Telemetry`
(see :mod:`zerocarbon.telemetry`). Without one (the API served on its own), ``/readyz``
checks the database only, ``/metrics`` has the API's own metrics only and device health
is unavailable (503).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Protocol

from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict, Field


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


class CollectorState(ComponentState):
    """One collector task (a Modbus link, the MQTT subscriber): ``ok`` while it runs; a
    task that died is restarted with a back-off and shown down until then."""

    name: str
    restarts: int = Field(description="times it died and was started again")


class UplinkState(ComponentState):
    """The uplink to the group's center (``[uplink]`` of the site file). It never makes
    the gateway not ready (collection and storage go on without the WAN); ``ok`` is
    false, with the reason, while the local NATS server is away or when readings could
    not be kept for the center."""

    connected: bool = Field(description="connected to the local NATS server")
    last_error: str = Field(description="the last publishing failure; empty when publishing")
    readings_published: int = Field(description="readings the local stream acknowledged")
    outbox_readings: int = Field(description="stored readings waiting for the local stream")
    readings_dropped: int = Field(
        description="stored readings that could not be kept for the center (outbox full)"
    )
    backlog_messages: int = Field(description="messages in the local stream the center lacks")
    backlog_bytes: int
    center_seq: int = Field(
        description="local stream sequence the center holds, as it last answered"
    )
    leaf_running: bool | None = Field(
        description="the gateway's own nats-server leaf node runs; null when uplink.local_url "
        "names a NATS server to use"
    )


class Readiness(BaseModel):
    """``GET /readyz``: 200 when every part is fine, 503 otherwise."""

    ready: bool
    database: DatabaseState
    broker: BrokerState | None = None  # None: the site has no MQTT devices
    spool: SpoolState | None = None  # None: the API runs without a gateway
    collectors: list[CollectorState] = Field(default_factory=list)
    uplink: UplinkState | None = None  # None: no [uplink]; never affects ``ready``


class DeviceHealth(BaseModel):
    """One device's link health, as the gateway sees it now. Counters run from the
    gateway's start; a field that does not apply to the device's protocol is null."""

    model_config = ConfigDict(frozen=True)

    device: str = Field(description="The device id of the site file")
    protocol: Literal["modbus_tcp", "modbus_rtu", "mqtt", "dlt645"] = Field(
        description="How it is collected"
    )
    online: bool = Field(
        description="Modbus: the last poll read every register block; MQTT: a message "
        "with readings came within offline_after_s"
    )
    last_seen: datetime | None = Field(
        description="UTC time of the last good poll (Modbus) or of the last message with "
        "readings (MQTT); null before the first"
    )
    age_s: float | None = Field(description="Time since last_seen [s]; null before the first")
    poll_latency_s: float | None = Field(
        default=None,
        description="Modbus: the last good poll, first request sent to last block decoded [s]",
    )
    poll_latency_avg_s: float | None = Field(
        default=None,
        description="Modbus: moving average (EWMA, weight 0.2 on the newest poll) of "
        "poll_latency_s [s]",
    )
    polls: int | None = Field(default=None, description="Modbus: poll cycles run")
    messages: int | None = Field(default=None, description="MQTT: messages on its topic")
    readings: int = Field(description="Readings taken from the device")
    timeouts: int | None = Field(default=None, description="Modbus: requests that timed out")
    errors: int | None = Field(
        default=None, description="Modbus: exception responses and connection failures"
    )
    bad_payloads: int | None = Field(
        default=None, description="MQTT: problems in its payloads (unreadable JSON or fields)"
    )
    skipped_cycles: int | None = Field(
        default=None, description="Modbus: poll cycles skipped because the link was late"
    )
    consecutive_failures: int | None = Field(
        default=None, description="Modbus: failed polls since the last good one"
    )
    went_offline: int | None = Field(
        default=None, description="Modbus: times it changed from online to offline"
    )
    came_online: int | None = Field(
        default=None, description="Modbus: times it changed from offline to online"
    )
    offline_after_s: float | None = Field(
        default=None,
        description="MQTT: silence after which it is offline, 3 x its interval_s [s]",
    )
    last_error: str = Field(description="The last failure's message; empty if none yet")


class Telemetry(Protocol):
    """The gateway's side: its parts' state and counters."""

    def readiness(self, database_ok: bool, database_detail: str) -> Readiness:
        """The report, given a fresh database check."""
        ...

    def collector(self) -> Collector:
        """A Prometheus collector reading the gateway's counters at scrape time."""
        ...

    def device_health(self, device_id: str) -> DeviceHealth | None:
        """The health of one device of the site; None when the site has no such device."""
        ...
