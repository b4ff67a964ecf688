"""GET /api/v1/lines/{line}/baseline on the real database: the model is a direct
fit_baseline of the line's closed hours, the CUSUM signals after an injected step, the
site's drift rule and the query's overrides are applied, and a baseline that cannot be
fitted is a clear 409."""

from __future__ import annotations

import tomllib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import numpy as np
import pytest

from tests.alerts.synthetic_lines import SyntheticLine, simulate_hours
from tests.api.conftest import SiteData, hourly_row
from tests.api.test_lines import line_hour
from tests.conftest import DEMO_SITE
from zerocarbon.alerts.drift import fit_baseline
from zerocarbon.api.app import create_app
from zerocarbon.config import DriftRule, SiteConfig, parse_site
from zerocarbon.settings import Settings
from zerocarbon.storage.database import register_site

H = timedelta(hours=1)
T0 = datetime(2026, 3, 2, 16, tzinfo=UTC)  # 00:00 in Shanghai
BASELINE_H = 168
ONSET_H = BASELINE_H + 30
N_HOURS = BASELINE_H + 72
URL = "/api/v1/lines/{line}/baseline"


def synthetic(seed: int = 8) -> tuple[np.ndarray, np.ndarray]:
    energy_kwh, units = simulate_hours(
        SyntheticLine(),
        seed,
        N_HOURS,
        start_hour=int(T0.timestamp() // 3600),
        onset_hour=ONSET_H,
        degradation=0.05,
    )
    return energy_kwh, units


async def store_line(site_data: SiteData, energy_kwh: np.ndarray, units: np.ndarray) -> None:
    """line_a's hours with complete hourly_carbon rows, and one more, newest hour still
    filling (incomplete) that the route must leave out."""
    n = len(energy_kwh)
    await site_data.rows(
        carbon=[hourly_row(T0 + i * H) for i in range(n)]
        + [hourly_row(T0 + n * H, complete=False)],
        lines=[
            line_hour(T0 + i * H, "line_a", float(energy_kwh[i]), float(units[i])) for i in range(n)
        ]
        + [line_hour(T0 + n * H, "line_a", 5000.0, 1.0)],
    )


@pytest.fixture
async def stored(site_data: SiteData) -> tuple[np.ndarray, np.ndarray]:
    energy_kwh, units = synthetic()
    await store_line(site_data, energy_kwh, units)
    return energy_kwh, units


async def test_model_is_a_direct_fit_and_the_step_signals(
    client: httpx.AsyncClient, stored: tuple[np.ndarray, np.ndarray]
) -> None:
    energy_kwh, units = stored
    res = await client.get(URL.format(line="line_a"))
    assert res.status_code == 200, res.text
    body = res.json()
    # the rule's default: relative residuals, a weighted fit
    direct = fit_baseline(energy_kwh[:BASELINE_H], units[:BASELINE_H], residual_model="relative")
    assert direct.residual_std_share is not None
    model = body["model"]
    assert model["fixed_kwh"] == pytest.approx(direct.fixed_kwh)
    assert model["kwh_per_unit"] == pytest.approx(direct.kwh_per_unit)
    assert model["r_squared"] == pytest.approx(direct.r_squared)
    assert (model["residual_model"], model["chart_unit"]) == ("relative", "share")
    assert model["residual_sd"] == pytest.approx(direct.residual_std_share)
    assert model["residual_sd_kwh"] == pytest.approx(direct.residual_std_kwh)
    assert model["variables"] == {}
    assert (model["n_periods"], model["period"]) == (BASELINE_H, "hour")
    assert model["baseline_start"] == "2026-03-02T16:00:00Z"
    assert model["baseline_end"] == "2026-03-09T16:00:00Z"
    assert body["cusum"] == {
        "chart_unit": "share",
        "reference": pytest.approx(DriftRule.model_fields["k"].default * direct.residual_std_share),
        "limit": pytest.approx(DriftRule.model_fields["h"].default * direct.residual_std_share),
        "k": DriftRule.model_fields["k"].default,
        "h": DriftRule.model_fields["h"].default,
    }
    series = body["series"]
    assert len(series) == N_HOURS  # the newest, incomplete hour is left out
    assert [p["in_baseline"] for p in series] == [True] * BASELINE_H + [False] * 72
    onset = T0 + ONSET_H * H
    signals = [p for p in series if p["signal"]]
    assert signals, "the 5 % step must signal"
    first = datetime.fromisoformat(signals[0]["start"])
    assert onset <= first < onset + 24 * H
    want_kwh = direct.fixed_kwh + direct.kwh_per_unit * units[BASELINE_H]
    assert series[BASELINE_H]["expected_kwh"] == pytest.approx(want_kwh)
    assert series[BASELINE_H]["residual_share"] == pytest.approx(
        (energy_kwh[BASELINE_H] - want_kwh) / want_kwh
    )
    assert series[0]["residual_share"] is None  # in the baseline
    assert all(p["skipped"] is None for p in series)
    monitored = slice(BASELINE_H, N_HOURS)
    expected_total = direct.fixed_kwh * 72 + direct.kwh_per_unit * units[monitored].sum()
    assert body["enpi"]["actual_kwh_per_unit"] == pytest.approx(
        energy_kwh[monitored].sum() / units[monitored].sum()
    )
    assert body["enpi"]["expected_kwh_per_unit"] == pytest.approx(
        expected_total / units[monitored].sum()
    )
    assert body["enpi"]["ratio"] > 1.0


async def test_range_and_overrides(
    client: httpx.AsyncClient, stored: tuple[np.ndarray, np.ndarray]
) -> None:
    energy_kwh, units = stored
    res = await client.get(
        URL.format(line="line_a"),
        params={
            "start": "2026-03-05T16:00:00Z",
            "end": "2026-03-10T16:00:00Z",
            "baseline_start": "2026-03-03T16:00:00Z",
            "baseline_end": "2026-03-06T16:00:00Z",
            "h": 4,
            "k": 0.5,
            "residual_model": "absolute",
        },
    )
    assert res.status_code == 200, res.text
    body = res.json()
    direct = fit_baseline(energy_kwh[24:96], units[24:96])  # OLS
    assert body["model"]["fixed_kwh"] == pytest.approx(direct.fixed_kwh)
    assert body["model"]["n_periods"] == 72
    assert (body["model"]["residual_model"], body["model"]["chart_unit"]) == ("absolute", "kWh")
    assert body["model"]["residual_sd"] == pytest.approx(direct.residual_std_kwh)
    assert body["cusum"]["chart_unit"] == "kWh"
    assert body["cusum"]["limit"] == pytest.approx(4.0 * direct.residual_std_kwh)
    assert body["cusum"]["reference"] == pytest.approx(0.5 * direct.residual_std_kwh)
    series = body["series"]
    assert series[0]["start"] == "2026-03-05T16:00:00Z"
    assert series[-1]["end"] == "2026-03-10T16:00:00Z"
    assert sum(p["in_baseline"] for p in series) == 24

    shifts = (await client.get(URL.format(line="line_a"), params={"period": "shift"})).json()
    assert shifts["model"]["period"] == "shift"
    assert {
        (datetime.fromisoformat(p["end"]) - datetime.fromisoformat(p["start"]))
        for p in shifts["series"]
    } == {8 * H}
    assert shifts["series"][0]["energy_kwh"] == pytest.approx(energy_kwh[:8].sum())

    bad = await client.get(
        URL.format(line="line_a"), params={"baseline_start": "2026-03-03T16:00:00Z"}
    )
    assert bad.status_code == 422
    assert "baseline_end" in bad.text


async def test_unknown_line_and_a_baseline_that_cannot_be_fitted(
    client: httpx.AsyncClient, site_data: SiteData
) -> None:
    assert (await client.get(URL.format(line="line_z"))).status_code == 404
    await site_data.rows(
        carbon=[hourly_row(T0 + i * H) for i in range(4)],
        lines=[line_hour(T0 + i * H, "line_b", 100.0 + i, 150.0 + 3 * i) for i in range(3)],
    )
    res = await client.get(
        URL.format(line="line_b"),
        params={"baseline_start": "2026-03-02T16:00:00Z", "baseline_end": "2026-03-02T19:00:00Z"},
    )
    assert res.status_code == 409
    assert res.json()["detail"] == (
        "line line_b has 3 closed hours in the baseline period, the fit needs at least 4 "
        "(4 complete hours)"
    )
    res = await client.get(URL.format(line="line_b"))
    assert res.status_code == 409
    assert "has 3 closed hours, the baseline needs the first 168" in res.json()["detail"]


def _site_with_rule(rule: dict[str, Any]) -> SiteConfig:
    data = tomllib.loads(DEMO_SITE.read_text(encoding="utf-8"))
    data["alerts"] = {"rules": [rule]}
    return parse_site(data, "<test site>", DEMO_SITE.parent)


@pytest.fixture
async def rule_client(
    settings: Settings, pg_conn: asyncpg.Connection
) -> AsyncIterator[tuple[httpx.AsyncClient, SiteData]]:
    """A client whose app has a site with a drift rule: 48-hour baseline, 8-hour shifts
    off, a relevant variable (the grid meter's voltage, standing in for a temperature)."""
    site = _site_with_rule(
        {
            "kind": "drift",
            "name": "line_a_drift",
            "lines": ["line_a"],
            "baseline_hours": 48,
            "h": 6.0,
            "variables": ["grid_meter:voltage_v"],
        }
    )
    site_data = SiteData(pg_conn, await register_site(pg_conn, site))
    app = create_app(settings, site=site)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://zerocarbon.test") as c:
            yield c, site_data


async def test_the_site_rule_and_its_relevant_variable(
    rule_client: tuple[httpx.AsyncClient, SiteData], pg_conn: asyncpg.Connection
) -> None:
    client, site_data = rule_client
    rng = np.random.default_rng(3)
    n = 96
    units = rng.uniform(100.0, 600.0, n)
    variable = 230.0 + 5.0 * np.sin(np.arange(n) / 4.0)
    energy_kwh = 30.0 + 0.5 * units + 2.0 * variable + rng.normal(0.0, 2.0, n)
    await store_line(site_data, energy_kwh, units)
    device = site_data.registry.device_ids["grid_meter"]
    metric = site_data.registry.metric_ids["voltage_v"]
    # two readings per hour whose mean is the hour's value
    records = [
        (T0 + i * H + timedelta(minutes=m), device, metric, float(variable[i]) + d, 0)
        for i in range(n)
        for m, d in ((10, -1.0), (40, 1.0))
    ]
    await pg_conn.copy_records_to_table(
        "readings", records=records, columns=("ts", "device_id", "metric_id", "value", "quality")
    )
    res = await client.get(URL.format(line="line_a"))
    assert res.status_code == 200, res.text
    body = res.json()
    extra = variable[:48, np.newaxis]
    direct = fit_baseline(energy_kwh[:48], units[:48], extra, "relative")
    assert direct.residual_std_share is not None
    assert body["model"]["n_periods"] == 48
    assert body["model"]["variables"] == {
        "grid_meter:voltage_v": pytest.approx(direct.extra_coefficients[0])
    }
    assert direct.extra_coefficients[0] == pytest.approx(2.0, abs=0.3)
    assert body["model"]["fixed_kwh"] == pytest.approx(direct.fixed_kwh)
    assert body["cusum"]["h"] == 6.0
    assert body["cusum"]["limit"] == pytest.approx(6.0 * direct.residual_std_share)
    # line_b is not covered by the rule: the rule's defaults (168 h baseline)
    await site_data.rows(
        lines=[line_hour(T0 + i * H, "line_b", 100.0 + i % 5, 150.0 + i % 7) for i in range(n)]
    )
    res = await client.get(URL.format(line="line_b"))
    assert res.status_code == 409
    assert "needs the first 168" in res.json()["detail"]
