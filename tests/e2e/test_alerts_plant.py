"""End to end: the simulated plant raises every kind of alert, each alert resolves, and
every state change reaches a webhook exactly once although the webhook refused the
first attempts.

The plant (examples/alert-faults-site.toml on free ports) runs ten simulated hours at
600x through Modbus TCP, MQTT, the gateway and PostgreSQL. Its faults, each timed to
give one alert that fires and resolves:

* line_b's meter silent for 40 min (offline; the shortest silence called offline at
  600x is 2 real s = 20 simulated min, so 40 min is needed);
* a demand peak of +400 kW for 20 min (threshold on the grid meter's power, and the
  15-min demand against the contracted maximum demand);
* line_b's counter reset (data quality: a counter fault in that hour);
* line_a's energy per unit up 20 % for two hours after a six-hour baseline (drift).

The limits (threshold, contracted demand) are set from a dry run of the same plant
model in the test, between what the plant draws outside the peak and inside it.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pytest

from tests.alerts.receivers import HttpReceiver
from zerocarbon.carbon_service import warm_up_kernels
from zerocarbon.clock import ScaledClock
from zerocarbon.config import SiteConfig, load_site, parse_site
from zerocarbon.runtime import EnergyCenter
from zerocarbon.settings import Settings
from zerocarbon.simulators.endpoints import on_free_ports
from zerocarbon.simulators.plant import PlantModel
from zerocarbon.simulators.runner import PlantSimulator
from zerocarbon.storage.database import ensure_database

SPEED = 600.0
START = datetime(2026, 6, 22, 0, 0, tzinfo=UTC)  # 08:00 in Shanghai
HOUR = 3600.0
BASELINE_HOURS = 6
GAP = (3600.0, 2400.0)  # line_b silent [offset s, duration s]
PEAK = (2 * HOUR + 1200.0, 1200.0, 400.0)  # [offset s, duration s, extra kW]
RESET_AT_S = 4 * HOUR + 600.0  # line_b's counter restarts from 0
DEGRADED = (BASELINE_HOURS * HOUR, 2 * HOUR, 20.0)  # line_a [offset s, duration s, %]
END_S = 10 * HOUR + 900.0  # hours 8 and 9 clean: the drift alert resolves
ROOT = Path(__file__).resolve().parents[2]


def plant_site(mqtt_url: str) -> dict[str, Any]:
    site = load_site(ROOT / "examples" / "alert-faults-site.toml")
    data = site.model_dump(mode="json", exclude_none=True)
    data["simulation"]["line_idle_fraction"] = 0.1
    data["simulation"]["line_efficiency_noise"] = 0.02
    data["simulation"]["faults"] = {
        "gaps": [{"device": "line_b", "start_s": GAP[0], "duration_s": GAP[1]}],
        "demand_peaks": [{"start_s": PEAK[0], "duration_s": PEAK[1], "extra_kw": PEAK[2]}],
        "counter_resets": [{"device": "line_b", "at_s": RESET_AT_S}],
        "line_degradations": [
            {
                "line": "line_a",
                "start_s": DEGRADED[0],
                "duration_s": DEGRADED[1],
                "percent": DEGRADED[2],
            }
        ],
    }
    data["mqtt"]["url"] = mqtt_url
    return data


def grid_power_kw(site: SiteConfig) -> tuple[np.ndarray, np.ndarray]:
    """The plant's grid import every tick over the run (offsets [s], power [kW])."""
    start_s = START.timestamp()
    plant = PlantModel(site, start_s)
    ts, power = [], []
    step_s = site.simulation.tick_s
    t = start_s
    while t < start_s + END_S:
        t += step_s
        plant.advance(t)
        ts.append(t - start_s)
        power.append(plant.power.grid_kw)
    return np.array(ts), np.array(power)


def limits(site: SiteConfig) -> tuple[float, float]:
    """(threshold on grid power, contracted demand) [kW], midway between the largest
    value outside the peak and the one inside it."""
    ts, power = grid_power_kw(site)
    step = int(round(site.simulation.tick_s))
    window = int(900 / step)
    demand = np.convolve(power, np.ones(window) / window, mode="valid")  # ends at ts[window-1:]
    demand_end = ts[window - 1 :]
    start, duration, _ = PEAK
    in_peak = (ts - step >= start) & (ts <= start + duration)  # ts: the end of each step
    near_peak = (ts >= start - 60) & (ts < start + duration + 60)
    power_out, power_in = power[~near_peak].max(), power[in_peak].min()
    touched = (demand_end > start - 60) & (demand_end - 900 < start + duration + 60)
    full = (demand_end - 900 >= start) & (demand_end <= start + duration)
    demand_out, demand_in = demand[~touched].max(), demand[full].max()
    assert power_in - power_out > 100, (power_in, power_out)  # the premise of the test
    assert demand_in - demand_out > 100, (demand_in, demand_out)
    return (power_in + power_out) / 2, (demand_in + demand_out) / 2


@pytest.fixture(scope="module")
async def alert_run(
    pg_server_url: str, mqtt_url: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    url = await ensure_database(pg_server_url, f"zc_alerts_e2e_{os.getpid()}", recreate=True)
    data = plant_site(mqtt_url)
    threshold_kw, contracted_kw = limits(parse_site(data, "dry run"))
    data["grid"]["contracted_demand_kw"] = contracted_kw
    async with HttpReceiver(answers=[(503, {})] * 3 + [(200, {})]) as receiver:
        data["alerts"] = {
            "retry_base_s": 0.2,
            "retry_max_s": 1.0,
            "channels": [{"name": "ops", "kind": "webhook", "url": f"{receiver.url}/hook"}],
            "rules": [
                {"name": "silent", "kind": "offline", "intervals": 3},
                {
                    "name": "grid-high",
                    "kind": "threshold",
                    "device": "grid_meter",
                    "metric": "active_power_kw",
                    "above": threshold_kw,
                    "hysteresis": 50.0,
                    "for_s": 120,
                    "clear_for_s": 120,
                },
                {"name": "max-demand", "kind": "demand", "severity": "critical"},
                {"name": "quality", "kind": "data_quality", "estimated_share": False},
                {
                    "name": "drift",
                    "kind": "drift",
                    "lines": ["line_a"],
                    "baseline_hours": BASELINE_HOURS,
                    "clear_periods": 2,
                },
            ],
        }
        site = on_free_ports(parse_site(data, "alert site", ROOT / "examples"), mqtt_url)
        warm_up_kernels(site)
        clock = ScaledClock(START, SPEED)
        end_s = START.timestamp() + END_S
        async with (
            asyncio.timeout(END_S / SPEED * 3 + 120),
            PlantSimulator(site, clock, mqtt_url=mqtt_url),
            EnergyCenter(
                site,
                Settings(),
                clock,
                database_url=url,
                mqtt_url=mqtt_url,
                spool_dir=tmp_path_factory.mktemp("alert-spool"),
            ) as center,
        ):
            while clock.now_s() < end_s:
                await asyncio.sleep(0.2)
            assert center.alerts is not None
            stats = center.alerts.stats
            # let the dispatcher deliver what is due (back-off at most 1 real s)
            conn = await asyncpg.connect(url)
            try:
                for _ in range(100):
                    unsent = await conn.fetchval(
                        "SELECT count(*) FROM notification_outbox WHERE sent_at IS NULL"
                    )
                    if unsent == 0:
                        break
                    await asyncio.sleep(0.1)
                alerts = await conn.fetch("SELECT * FROM alerts ORDER BY id")
                events = await conn.fetch(
                    "SELECT e.*, a.rule, a.subject, a.episode FROM alert_events e "
                    "JOIN alerts a ON a.id = e.alert_id ORDER BY e.id"
                )
                outbox = await conn.fetch("SELECT * FROM notification_outbox")
            finally:
                await conn.close()
        requests = list(receiver.requests)
    return {
        "alerts": alerts,
        "events": events,
        "outbox": outbox,
        "requests": requests,
        "stats": stats,
        "threshold_kw": threshold_kw,
        "contracted_kw": contracted_kw,
    }


def _episodes(run: dict[str, Any]) -> dict[tuple[str, str], list[asyncpg.Record]]:
    by_key: dict[tuple[str, str], list[asyncpg.Record]] = {}
    for a in run["alerts"]:
        by_key.setdefault((a["rule"], a["subject"]), []).append(a)
    return by_key


def _fired_evidence(run: dict[str, Any], rule: str) -> dict[str, Any]:
    """The evidence stored with the (first) firing of ``rule``."""
    fired = [e for e in run["events"] if e["rule"] == rule and e["state"] == "firing"]
    evidence: dict[str, Any] = json.loads(fired[0]["evidence"])
    return evidence


def _offset_s(ts: datetime) -> float:
    return ts.timestamp() - START.timestamp()


def _summary(run: dict[str, Any]) -> str:
    """Every alert of the run, for a failure message."""
    lines = []
    for a in run["alerts"]:
        resolved = a["resolved_at"]
        when = "-" if resolved is None else f"+{_offset_s(resolved):.0f}s"
        lines.append(
            f"{a['rule']}/{a['subject']}#{a['episode']} {a['state']} "
            f"fired +{_offset_s(a['fired_at']):.0f}s resolved {when}"
        )
    return "\n".join(lines)


def test_offline_fires_in_the_silence_and_resolves_when_data_returns(
    alert_run: dict[str, Any],
) -> None:
    episodes = _episodes(alert_run)
    silent = episodes.get(("silent", "line_b"))
    assert silent is not None and len(silent) == 1, _summary(alert_run)
    a = silent[0]
    start, duration = GAP
    assert start + 1200 <= _offset_s(a["fired_at"]) <= start + duration, _summary(alert_run)
    assert a["state"] == "resolved"
    assert start + duration <= _offset_s(a["resolved_at"]) <= start + duration + 300
    # no other device was called offline
    assert {k for k in episodes if k[0] == "silent"} == {("silent", "line_b")}


def test_threshold_and_demand_fire_in_the_peak_and_resolve_after(alert_run: dict[str, Any]) -> None:
    episodes = _episodes(alert_run)
    start, duration, _ = PEAK
    high = episodes.get(("grid-high", "grid_meter:active_power_kw"))
    assert high is not None and len(high) == 1, _summary(alert_run)
    assert start + 120 <= _offset_s(high[0]["fired_at"]) <= start + 300
    assert high[0]["state"] == "resolved"
    assert start + duration + 120 <= _offset_s(high[0]["resolved_at"]) <= start + duration + 400
    assert _fired_evidence(alert_run, "grid-high")["value"] > alert_run["threshold_kw"]
    demand = episodes.get(("max-demand", "site"))
    assert demand is not None and len(demand) == 1, _summary(alert_run)
    fired = _offset_s(demand[0]["fired_at"])
    assert start < fired < start + duration, _summary(alert_run)
    assert demand[0]["severity"] == "critical" and demand[0]["state"] == "resolved"
    assert _offset_s(demand[0]["resolved_at"]) > start + duration


def test_counter_reset_raises_a_data_quality_alert_for_its_hour(alert_run: dict[str, Any]) -> None:
    episodes = _episodes(alert_run)
    counter = episodes.get(("quality", "counter:line_b"))
    assert counter is not None and len(counter) == 1, _summary(alert_run)
    hour_end = (RESET_AT_S // HOUR + 1) * HOUR
    assert hour_end <= _offset_s(counter[0]["fired_at"]) < hour_end + 1
    assert counter[0]["state"] == "resolved"
    assert _offset_s(counter[0]["resolved_at"]) == hour_end + HOUR
    unexpected = {k for k in episodes if k[0] == "quality"} - {("quality", "counter:line_b")}
    assert not unexpected, _summary(alert_run)


def test_drift_fires_in_the_degraded_hours_and_resolves_after(alert_run: dict[str, Any]) -> None:
    episodes = _episodes(alert_run)
    drift = episodes.get(("drift", "line_a"))
    assert drift is not None and len(drift) == 1, _summary(alert_run)
    start, duration, _ = DEGRADED
    assert _offset_s(drift[0]["fired_at"]) == start + HOUR  # the end of the first degraded hour
    evidence = _fired_evidence(alert_run, "drift")
    assert evidence["energy_kwh"] > evidence["expected_kwh"]
    assert drift[0]["state"] == "resolved"
    assert _offset_s(drift[0]["resolved_at"]) == start + duration + 2 * HOUR


def test_every_change_reaches_the_webhook_once_after_its_refusals(
    alert_run: dict[str, Any],
) -> None:
    events = [e for e in alert_run["events"] if e["state"] in ("firing", "resolved")]
    assert len(events) >= 10
    outbox = alert_run["outbox"]
    assert len(outbox) == len(events)  # one notification per change and channel
    assert all(row["sent_at"] is not None for row in outbox)
    delivered = Counter(
        r.json()["change_id"]
        for r, status in zip(
            alert_run["requests"],
            [503, 503, 503] + [200] * len(alert_run["requests"]),
            strict=False,
        )
        if status == 200
    )
    assert len(delivered) == len(events)
    assert set(delivered.values()) == {1}  # none twice
    refused = alert_run["requests"][:3]
    assert all(r.path == "/hook" for r in refused)
    assert alert_run["stats"].replays == 0
