"""The alert state machine: pending, firing and resolved with delays and a hysteresis
band, one notification per change, episodes counted."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zerocarbon.alerts.state import AlertState, AlertTracker, Condition, Threshold

B, C, M = Condition.BREACHED, Condition.CLEAR, Condition.BETWEEN


def feed(tracker: AlertTracker, conditions: list[Condition], step_s: float = 60.0) -> list[str]:
    """The reported changes, as "state@minute"."""
    out = []
    for i, condition in enumerate(conditions):
        change = tracker.observe(i * step_s, condition, {"i": i})
        if change is not None:
            out.append(f"{change.state}@{i}")
    return out


def test_threshold_judges_with_a_hysteresis_band() -> None:
    above = Threshold(limit=100.0, hysteresis=5.0)
    assert [above.judge(v) for v in (100.1, 100.0, 96.0, 95.0, 80.0)] == [B, M, M, C, C]
    below = Threshold(limit=10.0, above=False, hysteresis=1.0)
    assert [below.judge(v) for v in (9.9, 10.0, 10.5, 11.0)] == [B, M, M, C]
    assert above.judge(math.nan) is M
    with pytest.raises(ValueError, match="hysteresis"):
        Threshold(limit=1.0, hysteresis=-1.0)


def test_fires_after_its_delay_and_a_short_breach_is_silent() -> None:
    tracker = AlertTracker("high_power", "line_a", for_s=120.0)
    # breached for 1 minute only, then clear: never fired, nothing reported
    assert feed(tracker, [B, B, C]) == []
    assert tracker.state is AlertState.INACTIVE
    tracker = AlertTracker("high_power", "line_a", for_s=120.0)
    assert feed(tracker, [B, B, B, B]) == ["firing@2"]
    assert tracker.state is AlertState.FIRING and tracker.episode == 1


def test_resolves_only_after_staying_clear_and_the_band_holds_it() -> None:
    tracker = AlertTracker("high_power", "line_a", clear_for_s=120.0)
    #            fire  band  clear clear B(reset) clear clear clear
    changes = feed(tracker, [B, M, C, C, B, C, C, C])
    assert changes == ["firing@0", "resolved@7"]


def test_a_value_hovering_at_its_limit_does_not_flap() -> None:
    hovering = [100.0 + 0.4 * (-1) ** i for i in range(40)]  # 100.4, 99.6, ...
    with_band = AlertTracker("demand", "site")
    without = AlertTracker("demand", "site")
    band, none = Threshold(100.0, hysteresis=2.0), Threshold(100.0)
    flaps_band = [t for i, v in enumerate(hovering) if (t := with_band.observe(i, band.judge(v)))]
    flaps_none = [t for i, v in enumerate(hovering) if (t := without.observe(i, none.judge(v)))]
    assert [t.state for t in flaps_band] == [AlertState.FIRING]
    assert len(flaps_none) == 40  # fires and resolves at every sample without a band


def test_episodes_and_keys_name_each_notification_once() -> None:
    tracker = AlertTracker("offline", "pv_roof")
    changes = [tracker.observe(float(t), c) for t, c in enumerate([B, C, B, C])]
    keys = [c.key for c in changes if c is not None]
    assert keys == [
        "offline/pv_roof/1/firing",
        "offline/pv_roof/1/resolved",
        "offline/pv_roof/2/firing",
        "offline/pv_roof/2/resolved",
    ]
    first = changes[0]
    assert first is not None and first.since_s == 0.0 and first.ts_s == 0.0


def test_evidence_and_since_are_reported() -> None:
    tracker = AlertTracker("high_power", "line_a", for_s=60.0)
    tracker.observe(1000.0, B, {"value": 101.0})
    change = tracker.observe(1060.0, B, {"value": 102.5, "limit": 100.0})
    assert change is not None
    assert (change.since_s, change.ts_s) == (1000.0, 1060.0)
    assert change.evidence == {"value": 102.5, "limit": 100.0}


def test_observations_must_come_in_time_order() -> None:
    tracker = AlertTracker("x", "y")
    tracker.observe(10.0, C)
    with pytest.raises(ValueError, match="older than the last one"):
        tracker.observe(9.0, B)
    with pytest.raises(ValueError, match="for_s"):
        AlertTracker("x", "y", for_s=-1.0)


@given(
    st.lists(st.sampled_from([B, C, M]), max_size=200),
    st.sampled_from([0.0, 60.0, 300.0]),
    st.sampled_from([0.0, 60.0, 300.0]),
)
def test_reports_alternate_firing_and_resolved_by_episode(
    conditions: list[Condition], for_s: float, clear_for_s: float
) -> None:
    tracker = AlertTracker("r", "s", for_s=for_s, clear_for_s=clear_for_s)
    changes = [c for i, cond in enumerate(conditions) if (c := tracker.observe(60.0 * i, cond))]
    for n, change in enumerate(changes):
        expected = AlertState.FIRING if n % 2 == 0 else AlertState.RESOLVED
        assert change.state is expected and change.episode == n // 2 + 1
        if change.state is AlertState.FIRING:
            assert change.ts_s - change.since_s >= for_s
        else:
            assert change.ts_s - change.since_s >= clear_for_s
    assert len({c.key for c in changes}) == len(changes)
