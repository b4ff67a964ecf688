"""What a gateway sends its group's center, as typed messages.

Each kind travels on its own per-site subject (:mod:`zerocarbon.uplink.subjects`) and
is encoded by :mod:`zerocarbon.uplink.wire`: readings as a compact columnar binary
message, the rest (small and rare) as JSON. The center's ingest workers decode them
back into these types and store them (:mod:`zerocarbon.uplink.center_store`).

Every message is idempotent at the center: readings are unique per
(site, device, metric, ts); hourly rows, alerts and issued accounts are upserted by
their key and carry a revision (the gateway's ``computed_at``, alert event id or report
id) so that an older copy delivered late never replaces a newer one; device events
carry the gateway's event id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

from zerocarbon.rows import HourlyCarbon, HourlyLine

__all__ = [
    "AccountsMessage",
    "AlertRecord",
    "AlertsMessage",
    "DeviceEventRecord",
    "EventsMessage",
    "HourlyMessage",
    "IssuedAccount",
    "ReadingsMessage",
    "StatusMessage",
    "UplinkMessage",
]


@dataclass(frozen=True, slots=True, eq=False)
class ReadingsMessage:
    """A columnar batch of stored readings of one site.

    ``catalog`` names the series present, as (device id of the site file, metric
    name); ``series`` indexes into it (not the gateway's series ids, which follow its
    site file). Arrays are of equal length: ``ts_us`` POSIX microseconds [us] UTC,
    ``value`` in the metric's unit, ``quality`` :class:`zerocarbon.batch.Quality`.
    """

    site: str
    catalog: tuple[tuple[str, str], ...]
    series: NDArray[np.uint16]
    ts_us: NDArray[np.int64]
    value: NDArray[np.float64]
    quality: NDArray[np.uint8]

    def __len__(self) -> int:
        return len(self.ts_us)


@dataclass(frozen=True, slots=True)
class HourlyMessage:
    """Hourly results of one site as the gateway last computed them.

    ``computed_at`` is the gateway's write time of these rows: the center keeps, per
    hour (and line), the copy with the newest ``computed_at``.
    """

    site: str
    computed_at: datetime
    carbon: tuple[HourlyCarbon, ...]
    lines: tuple[HourlyLine, ...]


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """One alert episode of a site in its current state (the gateway's ``alerts`` row).

    ``alert_id`` is the gateway's id; ``revision`` the gateway's newest
    ``alert_events`` id of the episode (the center keeps the highest revision).
    """

    alert_id: int
    revision: int
    rule: str
    kind: str
    subject: str
    episode: int
    severity: str  # info | warning | critical
    state: str  # firing | resolved
    since: datetime
    fired_at: datetime
    resolved_at: datetime | None
    acked_at: datetime | None
    message_en: str
    message_zh: str


@dataclass(frozen=True, slots=True)
class AlertsMessage:
    site: str
    alerts: tuple[AlertRecord, ...]


@dataclass(frozen=True, slots=True)
class DeviceEventRecord:
    """One device event (connection lost, back, exception, ...) of a site."""

    event_id: int  # the gateway's device_events.id
    ts: datetime
    device: str
    kind: str
    detail: str


@dataclass(frozen=True, slots=True)
class EventsMessage:
    site: str
    events: tuple[DeviceEventRecord, ...]


@dataclass(frozen=True, slots=True)
class IssuedAccount:
    """A period account the site issued (the gateway's ``account_reports`` row)."""

    report_id: int
    period: str  # "2026-06", "2026-Q2", "2026"
    issued_at: datetime
    issued_by: str
    supersedes: int | None
    account: dict[str, Any]  # the issued account as JSON (zerocarbon.accounts.period)


@dataclass(frozen=True, slots=True)
class AccountsMessage:
    site: str
    accounts: tuple[IssuedAccount, ...]


@dataclass(frozen=True, slots=True)
class StatusMessage:
    """The gateway's heartbeat: who it is and how its uplink is doing.

    ``sent_at`` is the gateway's wall clock; ``backlog_messages``/``backlog_bytes`` are
    what its local JetStream stream holds; ``outbox_readings`` what waits on the
    gateway before that stream; ``page_url`` the site's own live page, for the group
    page's drill-down ('' when not given).
    """

    site: str
    sent_at: datetime
    name: str
    timezone: str
    page_url: str
    backlog_messages: int
    backlog_bytes: int
    outbox_readings: int
    readings_published: int
    readings_dropped: int  # could not be kept for the uplink (outbox full), counted
    version: str


UplinkMessage = (
    ReadingsMessage
    | HourlyMessage
    | AlertsMessage
    | EventsMessage
    | AccountsMessage
    | StatusMessage
)
