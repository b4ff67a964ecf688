"""Alert notifications: what the delivery channels send.

A :class:`Notification` is one state change of one alert (it began firing, or it
resolved). Its :attr:`~Notification.change_id` names that change; together with a
channel name it is the outbox's dedup key (:mod:`zerocarbon.storage.outbox`), and it is
sent in every payload so that a receiver can drop the rare duplicate (see
:mod:`zerocarbon.alerts.dispatcher` for when one can happen).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

__all__ = ["AlertState", "Notification"]


class AlertState(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Notification:
    """One alert state change to deliver.

    ``message_zh`` / ``message_en``: the text in Chinese and in English; at least one is
    given. ``evidence``: JSON-serialisable facts behind the alert (values, limits).
    """

    alert_key: str  # the alert this change belongs to (rule + subject)
    rule: str  # rule name
    kind: str  # rule kind (e.g. "drift", "offline")
    state: AlertState
    severity: str  # "info", "warning" or "critical"
    ts: datetime  # UTC time of the state change
    message_zh: str = ""
    message_en: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ts.tzinfo is None:
            raise ValueError("Notification.ts must be timezone-aware (UTC)")
        if not (self.message_zh or self.message_en):
            raise ValueError("Notification needs message_zh or message_en")
        if not self.alert_key:
            raise ValueError("Notification.alert_key must not be empty")

    @property
    def change_id(self) -> str:
        """Identity of this state change: alert key, new state and its time (µs)."""
        stamp = self.ts.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        return f"{self.alert_key}/{self.state.value}/{stamp}"

    @property
    def text(self) -> str:
        """One plain-text message: Chinese first, then English, whichever are given."""
        head = f"[{self.severity}] {self.rule} {self.state.value}"
        body = "\n".join(m for m in (self.message_zh, self.message_en) if m)
        return f"{head}\n{body}"

    def to_json(self) -> dict[str, Any]:
        """The payload stored in the outbox and posted by the JSON webhook."""
        return {
            "change_id": self.change_id,
            "alert_key": self.alert_key,
            "rule": self.rule,
            "kind": self.kind,
            "state": self.state.value,
            "severity": self.severity,
            "ts": self.ts.astimezone(UTC).isoformat(),
            "message_zh": self.message_zh,
            "message_en": self.message_en,
            "evidence": self.evidence,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Notification:
        return cls(
            alert_key=str(data["alert_key"]),
            rule=str(data["rule"]),
            kind=str(data["kind"]),
            state=AlertState(data["state"]),
            severity=str(data["severity"]),
            ts=datetime.fromisoformat(str(data["ts"])),
            message_zh=str(data.get("message_zh", "")),
            message_en=str(data.get("message_en", "")),
            evidence=dict(data.get("evidence", {})),
        )
