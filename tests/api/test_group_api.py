"""The group API (``/api/v1/group``) on a real center database: sites, hourly rows and
issued accounts written with plain SQL, "now" fixed by the app's clock.

What must hold: a site's state is online within ``stale_after_s`` of now, stale after
and never without a message; the group's hours are sums over sites with ratios from the
sums (not averages of the sites' ratios); the ranking puts the best first, shares ranks
between equal values and puts sites without load last, unranked; the scorecard takes
each site's newest account that no stored account supersedes and lists the sites
without one; bad ranges, metrics and periods are 422s that say why; with a read role,
the reads need a token from the center's own ``api_tokens``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import AsyncIterator
from dataclasses import astuple, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from tests.api.conftest import hourly_row
from zerocarbon.accounts.period import compute_account, parse_period
from zerocarbon.api.auth import Role, new_token
from zerocarbon.api.group_app import create_group_app
from zerocarbon.api.group_queries import RankBy, SiteState, SiteTotals, rank_sites, site_state
from zerocarbon.config import SiteConfig
from zerocarbon.rows import HourlyCarbon, sql_columns
from zerocarbon.storage import tokens
from zerocarbon.storage.database import drop_database, ensure_database

NOW = datetime(2026, 7, 2, 8, 30, tzinfo=UTC)
H0 = datetime(2026, 7, 2, 6, tzinfo=UTC)  # two whole hours before NOW's hour
HOUR = timedelta(hours=1)
CENTER_TABLES = (
    "sites, site_series, site_reading_sets, site_hourly_carbon, site_hourly_line, site_alerts, "
    "site_device_events, site_accounts, api_tokens"
)


@pytest.fixture(scope="module")
async def center_url(pg_server_url: str) -> AsyncIterator[str]:
    """A database of its own for the center (the app creates its schema)."""
    name = f"zc_group_api_{os.getpid()}"
    url = await ensure_database(pg_server_url, name, recreate=True)
    yield url
    await drop_database(pg_server_url, name)


async def _client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://center.test") as c:
            yield c


@pytest.fixture
async def client(center_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async for c in _client(create_group_app(center_url, clock=lambda: NOW)):
        yield c


@pytest.fixture
async def center(client: httpx.AsyncClient, center_url: str) -> AsyncIterator[Center]:
    """The center's tables (created by the app's start-up), emptied."""
    conn = await asyncpg.connect(center_url)
    await conn.execute(f"TRUNCATE {CENTER_TABLES} RESTART IDENTITY CASCADE")
    yield Center(conn)
    await conn.close()


_CARBON_COLUMNS = [name for name, _t, _n in sql_columns(HourlyCarbon)]


class Center:
    """Writes rows into the center's tables with plain SQL."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def site(
        self,
        site: str,
        *,
        name: str = "",
        page_url: str = "",
        last_seen: datetime | None = None,
        lag_s: float | None = None,
        status: dict[str, Any] | None = None,
        readings: int = 0,
    ) -> int:
        site_id: int = await self.conn.fetchval(
            """INSERT INTO sites (site, name, timezone, page_url, last_seen, last_sent,
                                  uplink_lag_s, last_reading_ts, readings, status)
               VALUES ($1, $2, 'Asia/Shanghai', $3, $4, $5, $6, $4, $7, $8::jsonb)
               RETURNING id""",
            site,
            name or site,
            page_url,
            last_seen,
            None if last_seen is None or lag_s is None else last_seen - timedelta(seconds=lag_s),
            lag_s,
            readings,
            json.dumps(status or {}),
        )
        return site_id

    async def hourly(self, site_id: int, row: HourlyCarbon) -> None:
        columns = ", ".join(_CARBON_COLUMNS)
        places = ", ".join(f"${n}" for n in range(3, len(_CARBON_COLUMNS) + 3))
        await self.conn.execute(
            f"INSERT INTO site_hourly_carbon (site_id, computed_at, {columns}) "
            f"VALUES ($1, $2, {places})",
            site_id,
            NOW,
            *astuple(row),
        )

    async def alert(self, site_id: int, alert_id: int, state: str) -> None:
        await self.conn.execute(
            """INSERT INTO site_alerts (site_id, alert_id, revision, rule, kind, subject,
                   episode, severity, state, since, fired_at)
               VALUES ($1, $2, 1, 'grid-high', 'threshold', 'grid_meter', 1, 'warning',
                       $3, $4, $4)""",
            site_id,
            alert_id,
            state,
            NOW - HOUR,
        )

    async def account(
        self,
        site_id: int,
        report_id: int,
        account: dict[str, Any],
        *,
        issued_at: datetime,
        supersedes: int | None = None,
        period: str = "2026-06",
    ) -> None:
        await self.conn.execute(
            """INSERT INTO site_accounts (site_id, report_id, period, issued_at, issued_by,
                                          supersedes, account)
               VALUES ($1, $2, $3, $4, 'energy-manager', $5, $6::jsonb)""",
            site_id,
            report_id,
            period,
            issued_at,
            supersedes,
            json.dumps(account),
        )


def close(a: float | None, b: float) -> bool:
    return a is not None and math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-9)


# --- sites and their state ---------------------------------------------------------------


def test_state_boundaries() -> None:
    assert site_state(None, NOW, 120.0) is SiteState.never
    assert site_state(NOW - timedelta(seconds=120), NOW, 120.0) is SiteState.online
    assert site_state(NOW - timedelta(seconds=120.001), NOW, 120.0) is SiteState.stale
    assert site_state(NOW + timedelta(seconds=5), NOW, 120.0) is SiteState.online  # skew


async def test_sites_with_state_backlog_and_alerts(
    client: httpx.AsyncClient, center: Center
) -> None:
    a = await center.site(
        "plant-a",
        name="Plant A",
        page_url="http://plant-a.lan:8080/",
        last_seen=NOW - timedelta(seconds=30),
        lag_s=1.5,
        readings=1234,
        status={"backlog_messages": 3, "backlog_bytes": 4096, "outbox_readings": 17},
    )
    await center.site("plant-b", last_seen=NOW - timedelta(seconds=300), lag_s=0.2)
    await center.site("plant-c")
    await center.alert(a, 1, "firing")
    await center.alert(a, 2, "firing")
    await center.alert(a, 3, "resolved")

    res = await client.get("/api/v1/group/sites")
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["now"] == NOW.isoformat().replace("+00:00", "Z")
    assert body["stale_after_s"] == 120.0
    by_site = {s["site"]: s for s in body["sites"]}
    assert [s["site"] for s in body["sites"]] == ["plant-a", "plant-b", "plant-c"]
    assert [by_site[s]["state"] for s in ("plant-a", "plant-b", "plant-c")] == [
        "online",
        "stale",
        "never",
    ]
    pa = by_site["plant-a"]
    assert pa["name"] == "Plant A" and pa["page_url"] == "http://plant-a.lan:8080/"
    assert pa["seen_ago_s"] == 30.0 and pa["uplink_lag_s"] == 1.5
    assert pa["readings"] == 1234 and pa["firing_alerts"] == 2
    assert pa["backlog"] == {"messages": 3, "bytes": 4096, "outbox_readings": 17}
    assert by_site["plant-b"]["seen_ago_s"] == 300.0
    assert by_site["plant-b"]["backlog"] == {
        "messages": None,
        "bytes": None,
        "outbox_readings": None,
    }
    assert by_site["plant-c"]["last_seen"] is None and by_site["plant-c"]["seen_ago_s"] is None


async def test_stale_after_is_the_apps(center_url: str, center: Center) -> None:
    await center.site("plant-b", last_seen=NOW - timedelta(seconds=300))
    app = create_group_app(center_url, clock=lambda: NOW, stale_after_s=600.0)
    async for c in _client(app):
        body = (await c.get("/api/v1/group/sites")).json()
        assert body["stale_after_s"] == 600.0
        assert body["sites"][0]["state"] == "online"


# --- hourly sums -------------------------------------------------------------------------


async def test_hourly_sums_over_sites_with_ratios_from_sums(
    client: httpx.AsyncClient, center: Center
) -> None:
    a = await center.site("plant-a", last_seen=NOW)
    b = await center.site("plant-b", last_seen=NOW)
    # plant-a: big and dirty; plant-b: small and clean, with wind and fuel
    rows_a = [hourly_row(H0, grid_import_kwh=900.0, pv_kwh=100.0)]
    rows_b = [
        hourly_row(H0, grid_import_kwh=20.0, pv_kwh=60.0, wind_kwh=20.0, scope1_kg=5.0),
        hourly_row(H0 + HOUR, grid_import_kwh=10.0, pv_kwh=30.0),
    ]
    rows_b[0] = replace(rows_b[0], load_kwh=100.0, cfe_kwh=80.0, cfe_share=0.8)
    for row in rows_a:
        await center.hourly(a, row)
    for row in rows_b:
        await center.hourly(b, row)
    # outside [start, end): the hour before and the hour at end
    await center.hourly(a, hourly_row(H0 - HOUR))
    await center.hourly(a, hourly_row(H0 + 2 * HOUR))

    res = await client.get(
        "/api/v1/group/hourly",
        params={"start": H0.isoformat(), "end": (H0 + 2 * HOUR).isoformat()},
    )
    assert res.status_code == 200, res.text
    body = res.json()
    hours = body["hours"]
    assert [h["hour_start"] for h in hours] == [
        H0.isoformat().replace("+00:00", "Z"),
        (H0 + HOUR).isoformat().replace("+00:00", "Z"),
    ]
    first = hours[0]
    assert first["sites"] == 2 and hours[1]["sites"] == 1
    assert close(first["load_kwh"], 1000.0 + 100.0)
    assert close(first["grid_import_kwh"], 920.0)
    assert close(first["renewable_kwh"], 100.0 + 60.0 + 20.0)
    assert close(first["scope1_kg"], 5.0)
    assert close(first["scope2_location_kg"], (900.0 + 20.0) * 0.5703)
    assert close(first["scope2_market_kg"], (900.0 + 20.0) * 0.6096)
    assert close(first["cfe_kwh"], 100.0 + 80.0)
    assert close(first["cfe_share"], 180.0 / 1100.0)
    assert not close(first["cfe_share"], (0.1 + 0.8) / 2)  # not the mean of the sites'
    assert close(first["intensity_kg_per_kwh"], 920.0 * 0.5703 / 1100.0)
    assert close(first["market_intensity_kg_per_kwh"], 920.0 * 0.6096 / 1100.0)
    total = body["total"]
    assert close(total["load_kwh"], 1100.0 + 40.0)
    assert close(total["cfe_share"], (180.0 + 30.0) / 1140.0)
    assert close(total["intensity_kg_per_kwh"], 930.0 * 0.5703 / 1140.0)


async def test_hourly_defaults_to_the_24_hours_up_to_now(
    client: httpx.AsyncClient, center: Center
) -> None:
    a = await center.site("plant-a", last_seen=NOW)
    this_hour = NOW.replace(minute=0)
    for hour in (this_hour, this_hour - 23 * HOUR, this_hour - 24 * HOUR):
        await center.hourly(a, hourly_row(hour))
    body = (await client.get("/api/v1/group/hourly")).json()
    assert body["end"] == (this_hour + HOUR).isoformat().replace("+00:00", "Z")
    assert body["start"] == (this_hour - 23 * HOUR).isoformat().replace("+00:00", "Z")
    assert len(body["hours"]) == 2


async def test_an_hour_without_load_has_null_ratios(
    client: httpx.AsyncClient, center: Center
) -> None:
    a = await center.site("plant-a", last_seen=NOW)
    await center.hourly(a, hourly_row(H0, grid_import_kwh=0.0, pv_kwh=0.0))
    body = (await client.get("/api/v1/group/hourly", params={"start": H0.isoformat()})).json()
    (hour,) = body["hours"]
    assert hour["load_kwh"] == 0.0
    assert hour["cfe_share"] is None and hour["intensity_kg_per_kwh"] is None


# --- ranking -----------------------------------------------------------------------------


async def test_ranking_best_first_ties_shared_no_load_last(
    client: httpx.AsyncClient, center: Center
) -> None:
    # intensity = import x 0.5703 / (import + pv); cfe share = pv / (import + pv); twin's
    # row is middle's
    ids = {}
    for site, page_url in (
        ("dirty", "http://dirty.lan/"),
        ("clean", ""),
        ("middle", ""),
        ("twin", ""),
        ("idle", ""),
        ("silent", ""),
    ):
        ids[site] = await center.site(site, last_seen=NOW, page_url=page_url)
    await center.hourly(ids["dirty"], hourly_row(H0, grid_import_kwh=900.0, pv_kwh=100.0))
    await center.hourly(ids["clean"], hourly_row(H0, grid_import_kwh=100.0, pv_kwh=900.0))
    await center.hourly(ids["middle"], hourly_row(H0, grid_import_kwh=500.0, pv_kwh=500.0))
    await center.hourly(ids["twin"], hourly_row(H0, grid_import_kwh=500.0, pv_kwh=500.0))
    await center.hourly(ids["idle"], hourly_row(H0, grid_import_kwh=0.0, pv_kwh=0.0))
    span = {"start": H0.isoformat(), "end": (H0 + HOUR).isoformat()}

    async def ranking(by: str) -> list[dict[str, Any]]:
        res = await client.get("/api/v1/group/ranking", params=span | {"by": by})
        assert res.status_code == 200, res.text
        assert res.json()["by"] == by
        sites: list[dict[str, Any]] = res.json()["sites"]
        return sites

    by_intensity = await ranking("intensity")
    assert [(s["site"], s["rank"]) for s in by_intensity] == [
        ("clean", 1),
        ("middle", 2),
        ("twin", 2),  # the same intensity as middle: the same rank
        ("dirty", 4),
        ("idle", None),
        ("silent", None),
    ]
    dirty = by_intensity[3]
    assert dirty["page_url"] == "http://dirty.lan/" and dirty["hours"] == 1
    assert close(dirty["intensity_kg_per_kwh"], 0.9 * 0.5703)
    assert close(dirty["market_intensity_kg_per_kwh"], 0.9 * 0.6096)
    assert close(dirty["cfe_share"], 0.1)
    assert close(dirty["emissions_kg"], 900.0 * 0.5703)
    assert close(dirty["production_units"], 2000.0)
    assert close(dirty["kg_per_unit"], 900.0 * 0.5703 / 2000.0)
    for site in by_intensity[4:]:
        assert site["cfe_share"] is None and site["intensity_kg_per_kwh"] is None
        assert site["kg_per_unit"] is None
    assert by_intensity[5]["hours"] == 0 and by_intensity[5]["load_kwh"] == 0.0

    by_cfe = await ranking("cfe_share")
    assert [s["site"] for s in by_cfe] == ["clean", "middle", "twin", "dirty", "idle", "silent"]
    assert [s["rank"] for s in by_cfe] == [1, 2, 2, 4, None, None]

    by_emissions = await ranking("emissions")  # idle emits nothing but has no load
    assert [s["site"] for s in by_emissions] == [s["site"] for s in by_intensity]
    assert [s["rank"] for s in by_emissions] == [1, 2, 2, 4, None, None]
    assert by_emissions[0]["emissions_kg"] < by_emissions[1]["emissions_kg"]


def _totals(site: str, load_kwh: float, intensity: float | None) -> SiteTotals:
    return SiteTotals(
        site=site,
        name=site,
        page_url="",
        hours=1,
        load_kwh=load_kwh,
        grid_import_kwh=0.0,
        renewable_kwh=0.0,
        scope1_kg=0.0,
        scope2_location_kg=0.0,
        scope2_market_kg=0.0,
        cfe_kwh=0.0,
        production_units=0.0,
        emissions_kg=0.0,
        cfe_share=None,
        intensity_kg_per_kwh=intensity,
        market_intensity_kg_per_kwh=None,
        kg_per_unit=None,
    )


def test_rank_sites_keeps_every_site_once() -> None:
    totals = [_totals("b", 10.0, 0.5), _totals("a", 0.0, None), _totals("c", 10.0, 0.1)]
    ranked = rank_sites(totals, RankBy.intensity)
    assert [(t.site, t.rank) for t in ranked] == [("c", 1), ("b", 2), ("a", None)]


# --- the group scorecard -----------------------------------------------------------------


def _account(site: SiteConfig, import_kwh: float, pv_kwh: float) -> dict[str, Any]:
    """A real issued account's JSON (Account.to_json) of June 2026 with one hour."""
    period = parse_period("2026-06", site.site.timezone)
    row = hourly_row(period.start, grid_import_kwh=import_kwh, pv_kwh=pv_kwh)
    return compute_account(site, period, [row], [], []).to_json()


async def test_scorecard_newest_unsuperseded_account_per_site(
    client: httpx.AsyncClient, center: Center, demo_site: SiteConfig
) -> None:
    a = await center.site("plant-a", page_url="http://plant-a.lan/")
    b = await center.site("plant-b")
    c = await center.site("plant-c")
    d = await center.site("plant-d")
    june_end = datetime(2026, 7, 1, tzinfo=UTC)
    first_a = _account(demo_site, 1000.0, 0.0)
    reissued_a = _account(demo_site, 800.0, 200.0)
    account_b = _account(demo_site, 300.0, 100.0)
    await center.account(a, 7, first_a, issued_at=june_end + timedelta(days=1))
    await center.account(a, 8, reissued_a, issued_at=june_end + timedelta(days=2), supersedes=7)
    # a later issue of another period is not June's
    await center.account(
        a, 9, _account(demo_site, 5.0, 0.0), issued_at=june_end + 3 * HOUR * 24, period="2026-07"
    )
    # plant-b's report 4 supersedes report 3, which arrived later (issued_at not trusted
    # over the chain) - the superseded one is never taken
    await center.account(b, 4, account_b, issued_at=june_end + HOUR, supersedes=3)
    await center.account(b, 3, _account(demo_site, 9999.0, 0.0), issued_at=june_end + 2 * HOUR)
    await center.account(c, 1, _account(demo_site, 1.0, 0.0), issued_at=june_end, period="2026-05")
    await center.account(d, 2, {"period": "2026-06", "totals": {}}, issued_at=june_end)

    res = await client.get("/api/v1/group/scorecard", params={"period": "2026-06"})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["period"] == "2026-06"
    assert [(s["site"], s["report_id"]) for s in body["sites"]] == [
        ("plant-a", 8),
        ("plant-b", 4),
    ]
    assert body["sites"][0]["supersedes"] == 7
    assert body["sites"][0]["page_url"] == "http://plant-a.lan/"
    assert body["missing"] == [{"site": "plant-c", "name": "plant-c"}]
    assert body["unreadable"] == [
        {"site": "plant-d", "report_id": 2, "missing": "energy_kwh.load_kwh"}
    ]
    fig_a = body["sites"][0]["figures"]
    assert close(fig_a["scope2_location_kg"], reissued_a["totals"]["scope2_location_kg"])
    assert close(fig_a["load_kwh"], 1000.0) and close(fig_a["pv_kwh"], 200.0)
    totals = body["totals"]
    for field, section, key in (
        ("scope1_kg", "totals", "scope1_kg"),
        ("scope2_location_kg", "totals", "scope2_location_kg"),
        ("scope2_market_kg", "totals", "scope2_market_kg"),
        ("total_location_kg", "totals", "total_location_kg"),
        ("total_market_kg", "totals", "total_market_kg"),
        ("grid_import_kwh", "energy_kwh", "grid_import_kwh"),
        ("cfe_kwh", "energy_kwh", "cfe_kwh"),
    ):
        expected = reissued_a[section][key] + account_b[section][key]
        assert close(totals[field], expected), field
    assert totals["scope2_location_kg"] > 0
    assert close(totals["load_kwh"], 1000.0 + 400.0)
    assert close(totals["green_kwh"], 200.0 + 100.0)
    assert close(totals["cfe_share"], (200.0 + 100.0) / 1400.0)
    assert close(totals["intensity_kg_per_kwh"], totals["scope2_location_kg"] / 1400.0)


async def test_scorecard_of_a_period_without_accounts(
    client: httpx.AsyncClient, center: Center
) -> None:
    await center.site("plant-a")
    body = (await client.get("/api/v1/group/scorecard", params={"period": "2026-Q2"})).json()
    assert body["sites"] == [] and body["totals"] is None
    assert body["missing"] == [{"site": "plant-a", "name": "plant-a"}]


# --- what is refused ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "says"),
    [
        (
            "/api/v1/group/hourly",
            {"start": "2026-07-02T06:00Z", "end": "2026-07-02T06:00Z"},
            "must be before end",
        ),
        (
            "/api/v1/group/hourly",
            {"start": "2026-05-01T00:00Z", "end": "2026-07-01T00:00Z"},
            "at most 31 days",
        ),
        (
            "/api/v1/group/ranking",
            {"start": "2024-01-01T00:00Z", "end": "2026-01-01T00:00Z"},
            "at most 366 days",
        ),
        ("/api/v1/group/ranking", {"by": "cost"}, "'intensity', 'cfe_share' or 'emissions'"),
        ("/api/v1/group/hourly", {"start": "yesterday"}, "datetime"),
        ("/api/v1/group/scorecard", {"period": "2026-13"}, "expected a month (2026-03)"),
        ("/api/v1/group/scorecard", {}, "period"),
    ],
)
async def test_bad_requests_are_422_saying_why(
    client: httpx.AsyncClient, center: Center, path: str, params: dict[str, str], says: str
) -> None:
    res = await client.get(path, params=params)
    assert res.status_code == 422, res.text
    assert says in res.text


# --- access, probes and the page ---------------------------------------------------------


async def test_reads_need_a_token_from_the_centers_table_when_a_role_is_set(
    center_url: str, center: Center
) -> None:
    made = new_token()
    await tokens.insert_token(
        center.conn,
        name="group-wall",
        prefix=made.prefix,
        role=Role.VIEWER.value,
        site=None,
        token_hash=made.token_hash,
    )
    app = create_group_app(center_url, clock=lambda: NOW, read_role=Role.VIEWER)
    async for c in _client(app):
        assert (await c.get("/api/v1/group/sites")).status_code == 401
        wrong = {"Authorization": "Bearer zc_00000000_nope"}
        assert (await c.get("/api/v1/group/sites", headers=wrong)).status_code == 401
        good = {"Authorization": f"Bearer {made.token}"}
        assert (await c.get("/api/v1/group/sites", headers=good)).status_code == 200
        assert (await c.get("/healthz")).status_code == 200  # probes stay open
        assert (await c.get("/")).status_code == 200  # the page asks for a token itself


async def test_health_and_page(client: httpx.AsyncClient, center: Center) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok", "database": "ok"}
    page = await client.get("/")
    assert page.status_code == 200 and "static/group.js" in page.text
    assert (await client.get("/static/group.js")).status_code == 200
    assert (await client.get("/static/common.js")).status_code == 200


def test_stale_after_must_be_positive(center_url: str) -> None:
    with pytest.raises(ValueError, match="stale_after_s"):
        create_group_app(center_url, stale_after_s=0.0)
