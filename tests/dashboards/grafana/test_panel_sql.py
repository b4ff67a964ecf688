"""Every panel's SQL, expanded as Grafana expands it, runs on a simulated day of the demo
site as the read-only role Grafana logs in as, and returns the columns and the number
of rows the panel expects, counted from what the engine computed (not from the
database). Each query's time is measured and printed (run with ``-s``), not asserted.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.conftest import DEMO_SITE
from tests.dashboards.grafana.conftest import SimulatedDay
from tests.dashboards.grafana.grafana_sql import GrafanaRange, expand
from zerocarbon.config import load_site
from zerocarbon.dashboards.grafana.build import build_dashboards
from zerocarbon.metering.metrics import METRICS_BY_NAME

MINUTE = timedelta(minutes=1)
QUARTER = timedelta(minutes=15)
TIMINGS: list[tuple[str, str, float, int]] = []  # dashboard, panel@interval, [ms], rows


def _panels() -> list[tuple[str, dict[str, Any], list[dict[str, Any]]]]:
    """(dashboard slug, panel JSON, the dashboard's variables) of every panel."""
    out = []
    for d in build_dashboards(load_site(DEMO_SITE)):
        data = d.to_json()
        variables = data.get("templating", {}).get("list", [])
        for p in data["panels"]:
            out.append((d.slug, p, variables))
    return out


PANELS = _panels()


def _hours(day: SimulatedDay, keys: Iterator[datetime]) -> int:
    return sum(1 for h in keys if day.in_day(h))


def _kwh_channels(day: SimulatedDay) -> int:
    return sum(1 for (h, _d, m) in day.energy if day.in_day(h) and METRICS_BY_NAME[m].unit == "kWh")


def _roles(day: SimulatedDay) -> int:
    return len(set(day.power_devices.values()))


def _buckets(day: SimulatedDay, interval: timedelta) -> int:
    return int((day.end - day.start) / interval)


@dataclass(frozen=True, slots=True)
class Expect:
    columns: tuple[str, ...]
    rows: Callable[[SimulatedDay, timedelta], int]  # (day, $__interval) -> rows


def _const(n: int) -> Callable[[SimulatedDay, timedelta], int]:
    return lambda day, interval: n


TS = ("time", "metric", "value")
EXPECT: dict[tuple[str, str], Expect] = {
    # site overview
    ("overview", "Load energy"): Expect(("load",), _const(1)),
    ("overview", "Scope 2"): Expect(("location-based", "market-based"), _const(1)),
    ("overview", "Carbon-free energy share"): Expect(("carbon-free energy share",), _const(1)),
    ("overview", "Power flows"): Expect(TS, lambda d, i: _roles(d) * _buckets(d, i)),
    ("overview", "Energy balance per hour"): Expect(
        (
            "time",
            "grid import",
            "grid export",
            "PV",
            "wind",
            "battery discharge",
            "battery charge",
            "load",
        ),
        lambda d, i: _hours(d, iter(d.carbon)),
    ),
    ("overview", "Scope 2 per hour"): Expect(
        ("time", "Scope 2 location-based", "Scope 2 market-based"),
        lambda d, i: _hours(d, iter(d.carbon)),
    ),
    ("overview", "Carbon-free energy share per hour"): Expect(
        ("time", "carbon-free energy share"),
        lambda d, i: _hours(d, (h for h, c in d.carbon.items() if c.cfe_share is not None)),
    ),
    ("overview", "Carbon intensity per hour"): Expect(
        ("time", "location-based", "market-based", "grid factor (location)"),
        lambda d, i: _hours(d, iter(d.carbon)),
    ),
    # devices
    ("devices", "Active power"): Expect(TS, lambda d, i: len(d.power_devices) * _buckets(d, i)),
    ("devices", "Energy per hour"): Expect(TS, lambda d, i: _kwh_channels(d)),
    ("devices", "Device events per hour"): Expect(
        TS,
        lambda d, i: len({(ts.replace(minute=0), dev, kind) for ts, dev, kind in d.device_events}),
    ),
    ("devices", "Health"): Expect(
        ("device", "role", "state", "offline_events", "last_seen", "silent_s"),
        lambda d, i: len(d.site.devices),
    ),
    ("devices", "Device events"): Expect(
        ("time", "device", "kind", "detail"), lambda d, i: len(d.device_events)
    ),
    # lines and products
    ("lines", "Energy per unit"): Expect(
        TS,
        lambda d, i: _hours(
            d, (h for (h, _ln), r in d.lines.items() if r.kwh_per_unit is not None)
        ),
    ),
    ("lines", "Energy by line"): Expect(
        ("metric", "value"), lambda d, i: len({ln for (h, ln) in d.lines if d.in_day(h)})
    ),
    ("lines", "Line energy per hour"): Expect(TS, lambda d, i: _hours(d, (h for h, _ in d.lines))),
    ("lines", "Output per hour"): Expect(TS, lambda d, i: _hours(d, (h for h, _ in d.lines))),
    ("lines", "EnPI against baseline"): Expect(
        TS, lambda d, i: len(d.drift) + sum(p.expected_kwh is not None for p in d.drift)
    ),
    ("lines", "CUSUM"): Expect(
        TS, lambda d, i: 2 * len(d.drift) + sum(p.limit_value is not None for p in d.drift)
    ),
    ("lines", "Drift signals"): Expect(
        (
            "period_start",
            "period_end",
            "rule",
            "line",
            "energy_kwh",
            "expected_kwh",
            "residual_kwh",
            "residual_share",
            "cusum_high",
            "cusum_low",
            "limit_value",
            "chart_unit",
        ),
        lambda d, i: sum(p.signal for p in d.drift),
    ),
    # data quality
    ("data-quality", "Estimated share per hour"): Expect(
        ("time", "site"), lambda d, i: _hours(d, iter(d.carbon))
    ),
    ("data-quality", "Missing devices and sub-meter mismatches"): Expect(
        ("time", "missing devices", "sub-meter mismatches"), lambda d, i: _hours(d, iter(d.carbon))
    ),
    ("data-quality", "Gaps and counter faults per hour"): Expect(
        (
            "time",
            "gaps",
            "resets",
            "rollovers",
            "backsteps",
            "replacements",
            "rejected",
            "late",
            "duplicates",
        ),
        lambda d, i: len({h for (h, _d, _m) in d.energy if d.in_day(h)}),
    ),
    ("data-quality", "By device"): Expect(
        (
            "device",
            "metric",
            "hours",
            "incomplete_hours",
            "estimated",
            "delta",
            "gaps",
            "resets",
            "rollovers",
            "backsteps",
            "replacements",
            "rejected",
            "late",
            "duplicates",
        ),
        lambda d, i: len({(dev, m) for (h, dev, m) in d.energy if d.in_day(h)}),
    ),
    # alerts
    ("alerts", "Firing"): Expect(("firing",), _const(1)),
    ("alerts", "Alert changes per hour"): Expect(TS, lambda d, i: len(d.alert_changes_hours)),
    ("alerts", "Active alerts"): Expect(
        ("fired_at", "severity", "rule", "kind", "subject", "message", "acked_at", "acked_by"),
        lambda d, i: d.alerts_firing,
    ),
    ("alerts", "Alert history"): Expect(
        (
            "fired_at",
            "resolved_at",
            "duration_s",
            "severity",
            "rule",
            "subject",
            "state",
            "message",
        ),
        lambda d, i: d.alerts_fired,
    ),
    ("alerts", "Acknowledgements"): Expect(
        ("time", "actor", "rule", "subject", "severity", "comment", "after_s"),
        lambda d, i: d.acknowledgements,
    ),
}


def _uses_interval(panel: dict[str, Any]) -> bool:
    return any("$__interval" in t["rawSql"] for t in panel["targets"])


def _cases() -> list[Any]:
    cases = []
    for slug, panel, variables in PANELS:
        intervals = [MINUTE, QUARTER] if _uses_interval(panel) else [MINUTE]
        for interval in intervals:
            cases.append(
                pytest.param(
                    slug,
                    panel,
                    variables,
                    interval,
                    id=f"{slug}/{panel['title']}@{int(interval.total_seconds() // 60)}m",
                )
            )
    return cases


def test_every_panel_has_an_expectation() -> None:
    assert {(slug, p["title"]) for slug, p, _ in PANELS} == set(EXPECT)


@pytest.fixture(scope="module")
async def reader(simulated_day: SimulatedDay) -> AsyncIterator[asyncpg.Connection]:
    """A connection as the read-only role (what Grafana's data source logs in as)."""
    conn = await asyncpg.connect(simulated_day.readonly_url)
    yield conn
    await conn.close()


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    if TIMINGS:
        print("\nquery times on the simulated day (read-only role):")
        for slug, what, ms, rows in sorted(TIMINGS, key=lambda t: -t[2]):
            print(f"  {ms:8.1f} ms  {rows:6d} rows  {slug}: {what}")


async def _variable_values(
    conn: asyncpg.Connection, variables: list[dict[str, Any]], rng: GrafanaRange
) -> dict[str, list[str]]:
    """Each variable's values from its own query, all selected (Grafana's "All")."""
    values: dict[str, list[str]] = {}
    for v in variables:
        rows = await conn.fetch(expand(v["query"], rng, values))
        column = "__value" if rows and "__value" in rows[0].keys() else 0
        values[v["name"]] = [str(r[column]) for r in rows]
        assert values[v["name"]], f"variable {v['name']} has no values"
    return values


@pytest.mark.parametrize(("slug", "panel", "variables", "interval"), _cases())
async def test_panel_sql_runs_on_a_simulated_day(
    simulated_day: SimulatedDay,
    reader: asyncpg.Connection,
    slug: str,
    panel: dict[str, Any],
    variables: list[dict[str, Any]],
    interval: timedelta,
) -> None:
    day = simulated_day
    # Grafana's "today" in the site's time zone ends a millisecond before midnight
    rng = GrafanaRange(day.start, day.end - timedelta(milliseconds=1), interval)
    values = await _variable_values(reader, variables, rng)
    expect = EXPECT[(slug, panel["title"])]
    (target,) = panel["targets"]
    sql = expand(target["rawSql"], rng, values)
    assert "readings" not in sql.replace("_readings", "")  # never raw readings
    start = time.perf_counter()
    rows = await reader.fetch(sql)
    elapsed_ms = (time.perf_counter() - start) * 1000.0
    TIMINGS.append((slug, f"{panel['title']} @ {interval}", elapsed_ms, len(rows)))
    assert rows, f"{panel['title']}: no rows"
    assert tuple(rows[0].keys()) == expect.columns
    assert len(rows) == expect.rows(day, interval)
    if target["format"] == "time_series":
        times = [r["time"] for r in rows]
        assert times == sorted(times), "time series rows must be sorted by time"
        if "value" in expect.columns:
            assert all(r["value"] is not None for r in rows)
