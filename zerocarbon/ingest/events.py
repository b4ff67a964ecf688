"""Device events: a device's state changes as collectors see them.

Collectors report each change once, when it happens (not each failed poll): a device
coming online or going offline, a link connecting or dropping, a value refused as torn.
The gateway keeps them (the ``device_events`` table) so that an operator can see when a
meter was away and why; the API serves them per device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class DeviceEventKind(StrEnum):
    ONLINE = "online"  # a good poll after failures (or the first good poll)
    OFFLINE = "offline"  # the first failed poll after a good one (or the first poll failed)
    TORN_READ = "torn_read"  # a multi-register value refused: its words were not of one moment


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    """One state change of one device.

    ``ts_us``: UTC microseconds since the epoch, in the collector's (injected) clock.
    ``detail``: why, for a person: the error that took the device offline, the link.
    """

    ts_us: int
    device_id: str
    kind: DeviceEventKind
    detail: str = ""


# Called from the collector's task; must not block (the gateway queues the event).
DeviceEventSink = Callable[[DeviceEvent], None]


def discard_events(event: DeviceEvent) -> None:
    """A sink for collectors run without a gateway (tests, benches, ``devices scan``)."""
