"""An alert's life: inactive -> pending -> firing -> resolved, without flapping.

One :class:`AlertTracker` follows one rule for one subject (a device, a line, the
site). It is fed observations in time order, each saying whether the rule's condition
is *breached*, *clear* or *in between* (the hysteresis band: neither). It changes state
only when a condition has held long enough:

* inactive -> pending: the first breached observation;
* pending -> firing: breached for ``for_s`` (an observation that is not breached in
  between returns the alert to inactive, silently: it never fired);
* firing -> resolved: clear for ``clear_for_s``; in-between observations neither
  resolve it nor restart the wait;
* resolved -> pending: breached again (a new *episode*).

This is the state machine of Prometheus' alerting rules (``for``, ``keep_firing_for``:
Prometheus documentation, "Alerting rules") with a hysteresis band on the value, as in
process alarm management (ANSI/ISA-18.2-2016, "alarm deadband" and "on/off delays"),
so that a value hovering at its limit does not raise and clear an alarm again and again.

Every change that people hear of (firing, resolved) is returned once as a
:class:`Transition` with the episode number: ``(rule, subject, episode, state)`` names
one notification, so a channel can be told of it once (de-duplication key). Times are
the observations' (injected clock) POSIX seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class AlertState(StrEnum):
    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


class Condition(StrEnum):
    """What one observation says of the rule's condition."""

    BREACHED = "breached"
    CLEAR = "clear"
    BETWEEN = "between"  # in the hysteresis band: keeps the current state


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of state that is reported (firing, resolved), with its evidence."""

    rule: str
    subject: str
    episode: int  # 1 for the first firing of this tracker, then counting up
    state: AlertState  # FIRING or RESOLVED
    ts_s: float  # time of the observation that made the change [POSIX s]
    since_s: float  # when the condition began to hold (breached, or clear) [POSIX s]
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Names this notification uniquely: ``rule/subject/episode/state``."""
        return f"{self.rule}/{self.subject}/{self.episode}/{self.state}"


@dataclass(frozen=True, slots=True)
class Threshold:
    """A limit with a hysteresis band [metric unit]: ``above`` breaches when the value is
    over ``limit`` and is clear only once it is at or under ``limit - hysteresis``
    (``below``: mirrored)."""

    limit: float
    above: bool = True
    hysteresis: float = 0.0

    def __post_init__(self) -> None:
        if not self.hysteresis >= 0:
            raise ValueError(f"hysteresis must be >= 0, got {self.hysteresis}")

    def judge(self, value: float) -> Condition:
        """The condition ``value`` puts the rule in; NaN is :attr:`Condition.BETWEEN`
        (no evidence either way)."""
        if value != value:
            return Condition.BETWEEN
        over = value - self.limit if self.above else self.limit - value
        if over > 0:
            return Condition.BREACHED
        if over <= -self.hysteresis:
            return Condition.CLEAR
        return Condition.BETWEEN


class AlertTracker:
    """The state of one rule for one subject; see the module docstring.

    ``for_s``: how long the condition must stay breached before firing [s];
    ``clear_for_s``: how long it must stay clear before resolving [s].
    """

    def __init__(self, rule: str, subject: str, *, for_s: float = 0.0, clear_for_s: float = 0.0):
        if for_s < 0 or clear_for_s < 0:
            raise ValueError(f"for_s and clear_for_s must be >= 0, got {for_s}, {clear_for_s}")
        self.rule = rule
        self.subject = subject
        self.for_s = for_s
        self.clear_for_s = clear_for_s
        self.state = AlertState.INACTIVE
        self.episode = 0
        self._since_s: float | None = None  # start of the breach (pending) or the clear run
        self._last_ts_s: float | None = None

    def observe(
        self, ts_s: float, condition: Condition, evidence: dict[str, Any] | None = None
    ) -> Transition | None:
        """Feed one observation; the reported change it makes, if any. Observations
        older than the last one are refused (:class:`ValueError`): evaluate in order."""
        if self._last_ts_s is not None and ts_s < self._last_ts_s:
            raise ValueError(
                f"alert {self.rule}/{self.subject}: observation at {ts_s} is older than "
                f"the last one at {self._last_ts_s}"
            )
        self._last_ts_s = ts_s
        state = self.state
        if state in (AlertState.INACTIVE, AlertState.RESOLVED):
            if condition is Condition.BREACHED:
                self.state, self._since_s = AlertState.PENDING, ts_s
                return self._fire_if_due(ts_s, evidence)
            return None
        if state is AlertState.PENDING:
            if condition is Condition.BREACHED:
                return self._fire_if_due(ts_s, evidence)
            self.state, self._since_s = AlertState.INACTIVE, None  # never fired: silent
            return None
        # firing
        if condition is Condition.BREACHED:
            self._since_s = None  # a clear run, if one had begun, is broken
            return None
        if condition is Condition.BETWEEN:
            return None  # neither resolves nor restarts a clear run
        if self._since_s is None:
            self._since_s = ts_s
        if ts_s - self._since_s >= self.clear_for_s:
            since_s, self._since_s = self._since_s, None
            self.state = AlertState.RESOLVED
            return self._transition(AlertState.RESOLVED, ts_s, since_s, evidence)
        return None

    def _fire_if_due(self, ts_s: float, evidence: dict[str, Any] | None) -> Transition | None:
        assert self._since_s is not None
        if ts_s - self._since_s < self.for_s:
            return None
        since_s, self._since_s = self._since_s, None
        self.state = AlertState.FIRING
        self.episode += 1
        return self._transition(AlertState.FIRING, ts_s, since_s, evidence)

    def _transition(
        self, state: AlertState, ts_s: float, since_s: float, evidence: dict[str, Any] | None
    ) -> Transition:
        return Transition(
            self.rule, self.subject, self.episode, state, ts_s, since_s, dict(evidence or {})
        )
