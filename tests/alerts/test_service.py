"""The alert service on a real PostgreSQL: changes stored with their evidence and outbox
rows, kept while the database is away, continued (not repeated) after a restart."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np
import pytest

from tests.alerts.test_rules import site
from zerocarbon.alerts.service import AlertService
from zerocarbon.batch import ReadingBatch, SeriesRegistry, datetime_to_us
from zerocarbon.config import SiteConfig
from zerocarbon.rows import HourlyLine
from zerocarbon.storage.database import open_pool

T0 = datetime(2026, 6, 1, tzinfo=UTC)
RULE = {
    "name": "hot",
    "kind": "threshold",
    "device": "grid_meter",
    "metric": "active_power_kw",
    "above": 400.0,
    "channels": ["ops"],
}
CHANNEL = {"name": "ops", "kind": "webhook", "url": "http://127.0.0.1:9/hook"}


class FixedClock:
    speed = 1.0

    def __init__(self, now: datetime) -> None:
        self.now_s_value = now.timestamp()

    def now_s(self) -> float:
        return self.now_s_value

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.now_s_value, UTC)

    async def sleep(self, interval_s: float) -> None:
        self.now_s_value += interval_s


@pytest.fixture
async def pool(pg_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await open_pool(pg_url)
    await pool.execute(
        "TRUNCATE alerts, alert_events, notification_outbox, hourly_line, drift_periods "
        "RESTART IDENTITY CASCADE"
    )
    yield pool
    await pool.close()


def _site(*rules: dict[str, object]) -> SiteConfig:
    return site(*rules, channels=(CHANNEL,))


def batch(reg: SeriesRegistry, ts: list[datetime], values: list[float]) -> ReadingBatch:
    sid = reg.id("grid_meter", "active_power_kw")
    return ReadingBatch.of([sid] * len(ts), [datetime_to_us(t) for t in ts], values)


async def test_changes_are_stored_with_evidence_and_outbox_rows(pool: asyncpg.Pool) -> None:
    cfg = _site(RULE)
    reg = SeriesRegistry.for_site(cfg)
    service = AlertService(cfg, pool, reg, FixedClock(T0), channels=("ops",))
    times = [T0 + timedelta(seconds=10 * k) for k in range(4)]
    await service.write_batch(batch(reg, times, [300.0, 450.0, 460.0, 350.0]))
    assert service.pending == 2
    await service.flush()
    assert service.pending == 0 and service.stats.recorded == 2
    row = await pool.fetchrow("SELECT * FROM alerts")
    assert (row["rule"], row["subject"], row["episode"]) == ("hot", "grid_meter:active_power_kw", 1)
    assert row["state"] == "resolved"
    assert row["fired_at"] == times[1] and row["resolved_at"] == times[3]
    events = await pool.fetch("SELECT state, evidence FROM alert_events ORDER BY id")
    assert [e["state"] for e in events] == ["firing", "resolved"]
    assert json.loads(events[0]["evidence"])["value"] == 450.0
    outbox = await pool.fetch("SELECT channel, payload FROM notification_outbox ORDER BY id")
    assert [r["channel"] for r in outbox] == ["ops", "ops"]
    assert json.loads(outbox[0]["payload"])["state"] == "firing"


async def test_database_away_keeps_the_changes_in_order(pg_url: str, pool: asyncpg.Pool) -> None:
    cfg = _site(RULE)
    reg = SeriesRegistry.for_site(cfg)
    gone = await open_pool(pg_url)
    await gone.close()  # every acquire now fails: the database is "away"
    service = AlertService(cfg, gone, reg, FixedClock(T0), channels=("ops",))
    times = [T0 + timedelta(seconds=10 * k) for k in range(3)]
    await service.write_batch(batch(reg, times, [450.0, 300.0, 460.0]))
    await service.flush()
    assert service.pending == 3 and service.stats.recorded == 0
    service._pool = pool  # the database is back
    await service.flush()
    assert service.pending == 0 and service.stats.recorded == 3
    rows = await pool.fetch("SELECT episode, state FROM alerts ORDER BY episode")
    assert [(r["episode"], r["state"]) for r in rows] == [(1, "resolved"), (2, "firing")]


async def test_a_restart_continues_the_alerts_and_the_drift_baseline(pool: asyncpg.Pool) -> None:
    cfg = _site(RULE, {"name": "drift", "kind": "drift", "baseline_hours": 24})
    reg = SeriesRegistry.for_site(cfg)
    first = AlertService(cfg, pool, reg, FixedClock(T0), channels=("ops",))
    await first.write_batch(batch(reg, [T0], [500.0]))
    await first.flush()
    # the hourly line rows an earlier run stored: a day of baseline and one more hour
    rng = np.random.default_rng(3)
    for k in range(26):
        units = float(rng.integers(100, 300))
        await pool.execute(
            "INSERT INTO hourly_line (hour_start, line, energy_kwh, production_units, "
            "scope2_location_kg, scope2_market_kg, estimated_share) "
            "VALUES ($1, 'press', $2, $3, 0, 0, 0)",
            T0 + timedelta(hours=k),
            40.0 + 2.0 * units + rng.normal(0, 3),
            units,
        )
    second = AlertService(cfg, pool, reg, FixedClock(T0 + timedelta(hours=26)), channels=("ops",))
    await second.restore()
    monitor = second.rules.drift[0].monitors["press"]
    assert monitor.baseline is not None  # refitted from the stored hours
    assert monitor.baseline.kwh_per_unit == pytest.approx(2.0, rel=0.05)
    # the firing threshold alert resolves as episode 1, the next firing is episode 2
    later = [T0 + timedelta(hours=1), T0 + timedelta(hours=1, seconds=10)]
    await second.write_batch(batch(reg, later, [100.0, 900.0]))
    # a replayed hour (already evaluated before the restart) raises nothing
    hour = T0 + timedelta(hours=24)
    line = HourlyLine(hour, "press", 10_000.0, 100.0, None, 0.0, 0.0, None, 0.0)
    second.hourly_written([], [], [line], (hour + timedelta(hours=2)).timestamp())
    await second.flush()
    rows = await pool.fetch("SELECT rule, episode, state FROM alerts ORDER BY rule, episode")
    assert [(r["rule"], r["episode"], r["state"]) for r in rows] == [
        ("hot", 1, "resolved"),
        ("hot", 2, "firing"),
    ]
    assert second.stats.replays == 0


async def test_closed_hours_write_their_drift_periods(pool: asyncpg.Pool) -> None:
    """Every drift period the rules evaluate lands in drift_periods (Grafana reads it):
    baseline hours without an expected value, then monitored hours with the CUSUM."""
    cfg = _site({"name": "drift", "kind": "drift", "baseline_hours": 24})
    service = AlertService(cfg, pool, SeriesRegistry.for_site(cfg), FixedClock(T0))
    rng = np.random.default_rng(5)
    for k in range(30):
        hour = T0 + timedelta(hours=k)
        units = float(rng.integers(100, 300))
        energy = (40.0 + 2.0 * units) * (1.0 + rng.normal(0, 0.01))
        line = HourlyLine(hour, "press", energy, units, None, 0.0, 0.0, None, 0.0)
        # readings reach an hour and settle_s past this hour's end: it is closed
        newest = hour + timedelta(hours=1, seconds=cfg.alerts.settle_s)
        service.hourly_written([], [], [line], newest.timestamp())
    await service.flush()
    rows = await pool.fetch("SELECT * FROM drift_periods ORDER BY period_start")
    assert len(rows) == 30 and service.pending == 0
    assert all(r["in_baseline"] and r["expected_kwh"] is None for r in rows[:24])
    monitored = rows[24:]
    assert all(not r["in_baseline"] and r["expected_kwh"] is not None for r in monitored)
    assert {r["chart_unit"] for r in monitored} == {"share"}  # the relative model
    assert all(r["limit_value"] > 0 and not r["signal"] for r in monitored)
    assert rows[0]["rule"] == "drift" and rows[0]["line"] == "press"
    assert rows[-1]["period_start"] == T0 + timedelta(hours=29)
