"""The rule set on injected inputs: each kind fires once, with its evidence, and
resolves, on the clock the inputs carry."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from zerocarbon.alerts.rules import AlertEvent, ClosedHour, RuleSet
from zerocarbon.alerts.state import AlertState
from zerocarbon.config import SiteConfig, parse_site
from zerocarbon.rows import HourlyCarbon, HourlyEnergy, HourlyLine

T0 = datetime(2026, 6, 1, tzinfo=UTC)
T0_S = T0.timestamp()


def site(
    *rules: dict[str, Any],
    contracted_kw: float | None = 500.0,
    channels: tuple[dict[str, Any], ...] = (),
) -> SiteConfig:
    grid: dict[str, Any] = {"region": "east"}
    if contracted_kw is not None:
        grid["contracted_demand_kw"] = contracted_kw
    return parse_site(
        {
            "site": {"timezone": "Asia/Shanghai"},
            "grid": grid,
            "mqtt": {},
            "lines": [{"id": "press"}],
            "devices": [
                {
                    "id": "grid_meter",
                    "role": "grid",
                    "protocol": "modbus_tcp",
                    "profile": "eastron_sdm630",
                    "host": "127.0.0.1",
                    "poll_interval_s": 5.0,
                },
                {
                    "id": "press_meter",
                    "role": "load",
                    "line": "press",
                    "protocol": "mqtt",
                    "topic": "f/press",
                    "fields": {"e": "energy_import_kwh"},
                    "interval_s": 10.0,
                },
                {
                    "id": "press_count",
                    "role": "production",
                    "line": "press",
                    "protocol": "mqtt",
                    "topic": "f/count",
                    "fields": {"n": "production_count_units"},
                    "interval_s": 10.0,
                },
            ],
            "alerts": {"rules": list(rules), "channels": list(channels)},
        }
    )


def states(events: list[AlertEvent]) -> list[tuple[str, str, AlertState]]:
    return [(e.transition.rule, e.transition.subject, e.transition.state) for e in events]


def arr(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float64)


def test_offline_fires_after_n_intervals_of_silence_and_resolves_when_data_returns() -> None:
    rules = RuleSet(site({"name": "silent", "kind": "offline", "intervals": 3}))
    events: list[AlertEvent] = []
    for k in range(0, 80):  # a tick a second; the press meter (every 10 s) stops at 20 s
        now = T0_S + k
        rules.seen(["grid_meter"], now)
        if k <= 20 or k >= 60:
            rules.seen(["press_meter", "press_count"], now)
        events += rules.on_tick(now)
    assert states(events) == [
        ("silent", "press_meter", AlertState.FIRING),
        ("silent", "press_count", AlertState.FIRING),
        ("silent", "press_meter", AlertState.RESOLVED),
        ("silent", "press_count", AlertState.RESOLVED),
    ]
    fired = events[0].transition
    assert fired.ts_s == T0_S + 51  # silent 31 s > 3 x 10 s
    assert fired.evidence["limit_s"] == 30.0 and fired.evidence["silent_s"] == 31.0
    assert events[0].severity == "critical" and "press_meter" in events[0].message_en
    assert "无数据" in events[0].message_zh
    assert events[2].transition.ts_s == T0_S + 60


def test_offline_never_shorter_than_the_minimum_silence() -> None:
    rules = RuleSet(site({"name": "silent", "kind": "offline"}), min_silence_s=100.0)
    events: list[AlertEvent] = []
    for k in range(0, 200, 5):
        events += rules.on_tick(T0_S + k)  # nothing ever arrives
        if k == 95:
            assert events == []
    assert {e.transition.subject for e in events} == {"grid_meter", "press_meter", "press_count"}
    assert all(e.transition.ts_s == T0_S + 105 for e in events)


def test_threshold_needs_its_duration_and_does_not_flap_in_the_hysteresis_band() -> None:
    rule = {
        "name": "hot",
        "kind": "threshold",
        "device": "grid_meter",
        "metric": "active_power_kw",
        "above": 400.0,
        "hysteresis": 20.0,
        "for_s": 60,
        "clear_for_s": 30,
    }
    rules = RuleSet(site(rule))
    # 10 s samples: a 30 s excursion (no alert), then over for 2 min, hovering in the
    # band (385..400) for 2 min, then clear
    values = [350.0] * 3 + [420.0] * 3 + [350.0] * 3 + [430.0] * 12 + [395.0, 385.0] * 6
    values += [370.0] * 6
    ts = T0_S + 10.0 * np.arange(len(values))
    events = rules.on_readings("grid_meter", "active_power_kw", ts, arr(*values))
    assert states(events) == [
        ("hot", "grid_meter:active_power_kw", AlertState.FIRING),
        ("hot", "grid_meter:active_power_kw", AlertState.RESOLVED),
    ]
    fired, resolved = (e.transition for e in events)
    assert fired.ts_s == ts[9 + 6] and fired.since_s == ts[9]
    assert resolved.since_s == ts[33] and resolved.ts_s == ts[36]  # clear 30 s
    assert fired.evidence["value"] == 430.0 and fired.evidence["limit"] == 400.0
    # other series do not touch it
    assert rules.on_readings("press_meter", "active_power_kw", ts[:1], arr(1e9)) == []


def test_demand_warns_on_the_projection_before_the_window_closes() -> None:
    rules = RuleSet(site({"name": "md", "kind": "demand", "limit_percent": 100}))
    # 10 s samples; 300 kW for 20 min, then 900 kW: the 15-min average passes 500 kW
    # once 900 t + 300 (900 - t) > 500 x 900, t > 300 s; the window that closes next
    # (at the next whole minute, the present power held until then) crosses first: at
    # t = 300 s the window closing at t = 360 s holds 540 kW
    ts = T0_S + 10.0 * np.arange(360)
    power = np.where(ts < T0_S + 1200, 300.0, 900.0)
    power[ts >= T0_S + 2400] = 200.0
    events = rules.on_readings("grid_meter", "active_power_kw", ts, power)
    assert states(events) == [
        ("md", "site", AlertState.FIRING),
        ("md", "site", AlertState.RESOLVED),
    ]
    fired = events[0].transition
    assert fired.ts_s == T0_S + 1200 + 300  # before the average itself crossed
    assert fired.evidence["projected_kw"] > 500 >= fired.evidence["demand_kw"]
    assert fired.evidence["contracted_demand_kw"] == 500.0
    assert "合同最大需量" in events[0].message_zh

    plain = RuleSet(site({"name": "md", "kind": "demand", "on_projection": False}))
    late = plain.on_readings("grid_meter", "active_power_kw", ts, power)
    assert late[0].transition.ts_s == T0_S + 1200 + 310
    assert late[0].transition.evidence["demand_kw"] > 500


def test_block_demand_projects_to_the_end_of_the_quarter_hour() -> None:
    """Block demand (fixed quarter hours): 900 kW from 5 min into a block is 700 kW at
    its end if held, over the 500 kW limit: the alert fires at once, 10 min before the
    block's average could show it."""
    rule = {"name": "md", "kind": "demand", "slide_s": 900}
    rules = RuleSet(site(rule))
    ts = T0_S + 10.0 * np.arange(300)  # from the start of a block
    power = np.where((ts >= T0_S + 900 + 300) & (ts < T0_S + 1800), 900.0, 300.0)
    events = rules.on_readings("grid_meter", "active_power_kw", ts, power)
    assert states(events) == [
        ("md", "site", AlertState.FIRING),
        ("md", "site", AlertState.RESOLVED),
    ]
    fired = events[0].transition
    assert fired.ts_s == T0_S + 900 + 300  # the first sample at 900 kW
    assert fired.evidence["projected_kw"] == pytest.approx((300 * 300 + 900 * 600) / 900)
    assert fired.evidence["slide_s"] == 900
    # resolved once the rolling 15-min average, too, is 5 % under the limit: its last
    # 900 s hold x s of 900 kW, 300 + 600 x / 900 < 475 kW for x < 262.5 s, at t > 2437.5 s
    assert events[1].transition.ts_s == T0_S + 2440
    with pytest.raises(ValueError, match="slide_s must divide 900"):
        site({**rule, "slide_s": 420})


def test_demand_rule_needs_the_contracted_demand() -> None:
    with pytest.raises(ValueError, match="contracted_demand_kw"):
        site({"name": "md", "kind": "demand"}, contracted_kw=None)


def _carbon(hour: datetime, **kw: Any) -> HourlyCarbon:
    base = dict.fromkeys([f for f in HourlyCarbon.__dataclass_fields__ if f != "hour_start"], 0.0)
    base.update(
        intensity_kg_per_kwh=None,
        market_intensity_kg_per_kwh=None,
        cfe_share=None,
        missing_devices=0,
        submeter_mismatches=0,
        complete=True,
    )
    base.update(kw)
    return HourlyCarbon(hour_start=hour, **base)  # type: ignore[arg-type]


def _energy(hour: datetime, device: str, **faults: int) -> HourlyEnergy:
    counts = dict.fromkeys(
        (
            "resets",
            "rollovers",
            "backsteps",
            "replacements",
            "rejected",
            "gaps",
            "late",
            "duplicates",
        ),
        0,
    )
    counts.update(faults)
    return HourlyEnergy(hour, device, "energy_import_kwh", 100.0, 0.0, complete=True, **counts)


def test_data_quality_hours() -> None:
    rules = RuleSet(site({"name": "dq", "kind": "data_quality", "max_estimated_share": 0.1}))
    hours = [T0 + timedelta(hours=k) for k in range(4)]
    inputs = [
        ClosedHour(hours[0], _carbon(hours[0]), (_energy(hours[0], "press_meter"),)),
        ClosedHour(
            hours[1],
            _carbon(hours[1], estimated_share=0.25, submeter_mismatches=1, unmetered_kwh=-40.0),
            (_energy(hours[1], "press_meter", resets=1), _energy(hours[1], "grid_meter")),
        ),
        ClosedHour(hours[2], _carbon(hours[2], estimated_share=0.05), ()),
        ClosedHour(hours[3], _carbon(hours[3]), (_energy(hours[3], "press_meter"),)),
    ]
    events = [e for h in inputs for e in rules.on_hour(h)]
    assert states(events) == [
        ("dq", "estimated_share", AlertState.FIRING),
        ("dq", "counter:press_meter", AlertState.FIRING),
        ("dq", "submeter", AlertState.FIRING),
        ("dq", "estimated_share", AlertState.RESOLVED),
        ("dq", "counter:press_meter", AlertState.RESOLVED),
        ("dq", "submeter", AlertState.RESOLVED),
    ]
    share, counter, sub = (e.transition for e in events[:3])
    assert share.ts_s == hours[2].timestamp()  # at the end of the hour
    assert share.evidence["estimated_share"] == 0.25 and share.evidence["limit"] == 0.1
    assert counter.evidence["resets"] == 1 and counter.evidence["device"] == "press_meter"
    assert sub.evidence["mismatches"] == 1 and sub.evidence["tolerance_pct"] == 5.0
    assert "2026-06-01 09:00" in events[0].message_en  # the hour in the site's local time
    assert events[3].transition.ts_s == hours[3].timestamp()


def _line(hour: datetime, energy_kwh: float, units: float) -> HourlyLine:
    return HourlyLine(hour, "press", energy_kwh, units, None, 0.0, 0.0, None, 0.0)


def test_drift_fires_on_a_step_and_resolves_after_quiet_periods() -> None:
    rule = {
        "name": "drift",
        "kind": "drift",
        "baseline_hours": 48,
        "clear_periods": 6,
    }
    rules = RuleSet(site(rule))
    rng = np.random.default_rng(7)
    events: list[tuple[int, AlertEvent]] = []
    for k in range(48 + 48 + 48):
        hour = T0 + timedelta(hours=k)
        units = float(rng.integers(100, 400))
        factor = 1.10 if 72 <= k < 96 else 1.0  # 10 % more energy per unit for a day
        energy = (50.0 + 2.0 * units) * factor + rng.normal(0.0, 8.0)
        for e in rules.on_hour(ClosedHour(hour, None, lines=(_line(hour, energy, units),))):
            events.append((k, e))
    assert [(e.transition.state, e.transition.subject) for _, e in events] == [
        (AlertState.FIRING, "press"),
        (AlertState.RESOLVED, "press"),
    ]
    (k_fire, fire), (k_clear, clear) = events
    assert 72 <= k_fire < 72 + 6  # a 10 % step is about 5 sigma an hour here
    assert 96 <= k_clear < 96 + 12 and k_clear - k_fire >= 6
    e = fire.transition.evidence
    assert e["baseline"]["r_squared"] > 0.95
    assert e["baseline"]["kwh_per_unit"] == pytest.approx(2.0, rel=0.05)
    assert e["energy_kwh"] > e["expected_kwh"]
    # the default relative residual model: the chart is in shares of the expected energy
    assert (e["residual_model"], e["chart_unit"]) == ("relative", "share")
    assert e["residual_share"] == pytest.approx(e["residual_kwh"] / e["expected_kwh"])
    assert e["cusum"] > e["limit"] == pytest.approx(e["h"] * e["baseline"]["residual_sd"])
    assert f"CUSUM {e['cusum']:.1%} over its limit {e['limit']:.1%}" in fire.message_en
    assert f"CUSUM {e['cusum']:.1%}，超过限值 {e['limit']:.1%}" in fire.message_zh
    assert "产线 press" in fire.message_zh
    assert clear.transition.evidence["line"] == "press"


def test_continue_from_stored_alerts_keeps_numbering_and_firing_state() -> None:
    rule = {"name": "hot", "kind": "threshold", "device": "grid_meter", "metric": "active_power_kw"}
    rules = RuleSet(site({**rule, "above": 400.0}))
    rules.continue_from([("hot", "grid_meter:active_power_kw", 3, "firing", T0_S)])
    events = rules.on_readings("grid_meter", "active_power_kw", arr(T0_S + 10), arr(100.0))
    assert [(e.transition.episode, e.transition.state) for e in events] == [
        (3, AlertState.RESOLVED)
    ]
    events = rules.on_readings("grid_meter", "active_power_kw", arr(T0_S + 20), arr(500.0))
    assert [(e.transition.episode, e.transition.state) for e in events] == [(4, AlertState.FIRING)]
    # a reading older than the stored state is not news
    again = RuleSet(site({**rule, "above": 400.0}))
    again.continue_from([("hot", "grid_meter:active_power_kw", 3, "resolved", T0_S)])
    assert again.on_readings("grid_meter", "active_power_kw", arr(T0_S - 5), arr(900.0)) == []
    assert replace(events[0]).kind == "threshold"


def test_a_failing_rule_costs_no_other_rule_its_alerts(monkeypatch: pytest.MonkeyPatch) -> None:
    rules = RuleSet(
        site(
            {"name": "dq", "kind": "data_quality"},
            {"name": "drift", "kind": "drift", "baseline_hours": 24},
        )
    )

    def broken(hour: ClosedHour) -> list[AlertEvent]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(rules.drift[0], "hour", broken)
    hour = ClosedHour(T0, _carbon(T0, estimated_share=0.5))
    events = rules.on_hour(hour)
    assert states(events) == [("dq", "estimated_share", AlertState.FIRING)]
    assert rules.errors == 1 and rules.last_error == "rule drift: RuntimeError: a bug"
