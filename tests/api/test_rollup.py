"""Roll-ups (GET /api/v1/carbon/{period}, /api/v1/lines/{period}) against the hourly
rows they are computed from, in the site's time zone (Asia/Shanghai, UTC+8)."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import fields, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.api.conftest import SITE_TZ, SiteData, hourly_row
from zerocarbon.api.rollup import Period
from zerocarbon.rows import HourlyCarbon, HourlyLine

TZ = ZoneInfo(SITE_TZ)
H = timedelta(hours=1)
FIRST = datetime(2026, 2, 27, 12, tzinfo=UTC)  # 2026-02-27 20:00 local: a partial day
ABSENT_DAY = date(2026, 3, 2)  # no rows at all
ZERO_DAY = date(2026, 3, 3)  # rows with no load and no output
LAST = datetime(2026, 3, 4, 16, tzinfo=UTC)  # end of 2026-03-04 local
LINES = ("line_a", "line_b")


def local_day(hour_start: datetime) -> date:
    return hour_start.astimezone(TZ).date()


def carbon_hour(rng: random.Random, hour_start: datetime) -> HourlyCarbon:
    if local_day(hour_start) == ZERO_DAY:
        return replace(
            hourly_row(hour_start, grid_import_kwh=0.0, pv_kwh=0.0),
            production_units=0.0,
            submetered_kwh=0.0,
        )
    imp, exp = rng.uniform(50, 500), rng.choice([0.0, rng.uniform(0, 30)])
    pv, wind = rng.uniform(0, 200), rng.uniform(0, 20)
    chg, dis = rng.uniform(0, 40), rng.uniform(0, 40)
    load = imp - exp + pv + wind + dis - chg
    loc_f, mkt_f = rng.uniform(0.5, 0.6), rng.uniform(0.55, 0.65)
    contract = rng.uniform(0, imp / 2)
    cfe = rng.uniform(0, load)
    return HourlyCarbon(
        hour_start=hour_start,
        grid_import_kwh=imp,
        grid_export_kwh=exp,
        pv_kwh=pv,
        wind_kwh=wind,
        battery_charge_kwh=chg,
        battery_discharge_kwh=dis,
        load_kwh=load,
        submetered_kwh=load * 0.9,
        unmetered_kwh=load * 0.1,
        production_units=rng.uniform(0, 1000),
        scope1_kg=rng.uniform(0, 20),
        scope2_location_kg=imp * loc_f,
        scope2_market_kg=(imp - contract) * mkt_f,
        green_contract_kwh=contract,
        certificate_kwh=0.0,
        cfe_kwh=cfe,
        location_factor_kg_per_kwh=loc_f,
        market_factor_kg_per_kwh=mkt_f,
        intensity_kg_per_kwh=imp * loc_f / load,
        market_intensity_kg_per_kwh=(imp - contract) * mkt_f / load,
        cfe_share=cfe / load,
        estimated_share=rng.choice([0.0, rng.uniform(0, 0.3)]),
        missing_devices=rng.choice([0, 0, 1, 2]),
        submeter_mismatches=rng.choice([0, 1]),
        complete=rng.random() > 0.2,
    )


def line_hour(rng: random.Random, hour_start: datetime, line: str) -> HourlyLine:
    zero = local_day(hour_start) == ZERO_DAY
    energy = 0.0 if zero else rng.uniform(10, 200)
    units = 0.0 if zero else rng.choice([0.0, rng.uniform(50, 400)])
    loc = energy * rng.uniform(0.2, 0.4)
    return HourlyLine(
        hour_start=hour_start,
        line=line,
        energy_kwh=energy,
        production_units=units,
        kwh_per_unit=energy / units if units > 0 else None,
        scope2_location_kg=loc,
        scope2_market_kg=loc * 1.1,
        kg_per_unit=loc / units if units > 0 else None,
        estimated_share=rng.uniform(0, 0.2),
    )


def _hours() -> list[datetime]:
    out, t = [], FIRST
    while t < LAST:
        if local_day(t) != ABSENT_DAY:
            out.append(t)
        t += H
    return out


@pytest.fixture
async def history(site_data: SiteData) -> tuple[list[HourlyCarbon], list[HourlyLine]]:
    rng = random.Random(20260301)
    carbon = [carbon_hour(rng, t) for t in _hours()]
    lines = [line_hour(rng, t, ln) for t in _hours() for ln in LINES]
    await site_data.rows(carbon=carbon, lines=lines)
    return carbon, lines


# --- the oracle: the roll-up rules written out over the dataclass rows -----------------


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def _weighted(pairs: Iterable[tuple[float, float]]) -> float | None:
    pairs = list(pairs)
    weight = sum(w for _, w in pairs)
    return sum(v * w for v, w in pairs) / weight if weight > 0 else None


def _sums(rows: list[Any]) -> dict[str, float]:
    return {
        f.name: sum(getattr(r, f.name) for r in rows)
        for f in fields(rows[0])
        if f.name.endswith(("_kwh", "_kg", "_units")) and "_per_" not in f.name
    }


def expected_carbon(
    rows: list[HourlyCarbon], complete: Callable[[HourlyCarbon], bool]
) -> dict[str, Any]:
    s = _sums(rows)
    return {
        **s,
        "location_factor_kg_per_kwh": _weighted(
            (r.location_factor_kg_per_kwh, r.grid_import_kwh) for r in rows
        ),
        "market_factor_kg_per_kwh": _weighted(
            (r.market_factor_kg_per_kwh, r.grid_import_kwh) for r in rows
        ),
        "intensity_kg_per_kwh": _ratio(s["scope2_location_kg"], s["load_kwh"]),
        "market_intensity_kg_per_kwh": _ratio(s["scope2_market_kg"], s["load_kwh"]),
        "cfe_share": _ratio(s["cfe_kwh"], s["load_kwh"]),
        "estimated_share": _weighted(
            (
                r.estimated_share,
                r.grid_import_kwh
                + r.grid_export_kwh
                + r.pv_kwh
                + r.wind_kwh
                + r.battery_charge_kwh
                + r.battery_discharge_kwh
                + r.submetered_kwh,
            )
            for r in rows
        ),
        "missing_device_hours": sum(r.missing_devices for r in rows),
        "submeter_mismatch_hours": sum(r.submeter_mismatches for r in rows),
        "hours": len(rows),
        "complete_hours": sum(complete(r) for r in rows),
    }


def expected_line(rows: list[HourlyLine], complete_hours: int) -> dict[str, Any]:
    s = _sums(rows)
    return {
        "line": rows[0].line,
        **s,
        "kwh_per_unit": _ratio(s["energy_kwh"], s["production_units"]),
        "kg_per_unit": _ratio(s["scope2_location_kg"], s["production_units"]),
        "estimated_share": _weighted((r.estimated_share, r.energy_kwh) for r in rows),
        "hours": len(rows),
        "complete_hours": complete_hours,
    }


def period_of(hour_start: datetime, period: Period) -> date:
    day = local_day(hour_start)
    return {"daily": day, "monthly": day.replace(day=1), "yearly": date(day.year, 1, 1)}[period]


def local_start_utc(day: date) -> str:
    return datetime(day.year, day.month, day.day, tzinfo=TZ).astimezone(UTC).isoformat()


def assert_matches(got: dict[str, Any], want: dict[str, Any]) -> None:
    for name, value in want.items():
        if value is None or isinstance(value, str | int) and not isinstance(value, bool):
            assert got[name] == value, name
        else:
            assert got[name] == pytest.approx(value, rel=1e-9, abs=1e-9), name


# --- the tests ---------------------------------------------------------------------------


@pytest.mark.parametrize("period", [Period.daily, Period.monthly])
async def test_carbon_rollup_equals_sums_of_hourly_rows(
    client: httpx.AsyncClient, history: tuple[list[HourlyCarbon], list[HourlyLine]], period: Period
) -> None:
    carbon, _ = history
    groups: dict[date, list[HourlyCarbon]] = defaultdict(list)
    for r in carbon:
        groups[period_of(r.hour_start, period)].append(r)
    res = await client.get(
        f"/api/v1/carbon/{period}", params={"start": "2026-02-01", "end": "2026-04-01"}
    )
    assert res.status_code == 200, res.text
    got = res.json()
    assert [g["period_start"] for g in got] == [d.isoformat() for d in sorted(groups)]
    for g in got:
        day = date.fromisoformat(g["period_start"])
        assert g["start_utc"].replace("Z", "+00:00") == local_start_utc(day)
        want = expected_carbon(groups[day], lambda r: r.complete)
        assert set(g) == {"period_start", "start_utc", "end_utc", *want}
        assert_matches(g, want)


async def test_local_days_cross_the_utc_date(
    client: httpx.AsyncClient, history: tuple[list[HourlyCarbon], list[HourlyLine]]
) -> None:
    got = (
        await client.get(
            "/api/v1/carbon/daily", params={"start": "2026-02-28", "end": "2026-03-01"}
        )
    ).json()
    assert len(got) == 1
    day = got[0]
    assert (day["start_utc"], day["end_utc"]) == ("2026-02-27T16:00:00Z", "2026-02-28T16:00:00Z")
    assert day["hours"] == 24
    months = (
        await client.get(
            "/api/v1/carbon/monthly", params={"start": "2026-03-01", "end": "2026-04-01"}
        )
    ).json()
    assert months[0]["start_utc"] == "2026-02-28T16:00:00Z"  # UTC February, local March
    assert months[0]["end_utc"] == "2026-03-31T16:00:00Z"
    assert months[0]["hours"] == 3 * 24  # 03-01, 03-03, 03-04 (03-02 has no rows)


async def test_day_without_rows_is_absent(
    client: httpx.AsyncClient, history: tuple[list[HourlyCarbon], list[HourlyLine]]
) -> None:
    got = (
        await client.get(
            "/api/v1/carbon/daily", params={"start": "2026-02-20", "end": "2026-03-10"}
        )
    ).json()
    assert [g["period_start"] for g in got] == [
        "2026-02-27",
        "2026-02-28",
        "2026-03-01",
        "2026-03-03",
        "2026-03-04",
    ]
    assert got[0]["hours"] == 4  # 20:00 .. 23:00 local


async def test_ratios_are_null_without_load(
    client: httpx.AsyncClient, history: tuple[list[HourlyCarbon], list[HourlyLine]]
) -> None:
    params = {"start": ZERO_DAY.isoformat(), "end": "2026-03-04"}
    (day,) = (await client.get("/api/v1/carbon/daily", params=params)).json()
    assert day["load_kwh"] == 0.0
    for name in (
        "intensity_kg_per_kwh",
        "market_intensity_kg_per_kwh",
        "cfe_share",
        "location_factor_kg_per_kwh",
        "market_factor_kg_per_kwh",
        "estimated_share",
    ):
        assert day[name] is None, name
    lines = (await client.get("/api/v1/lines/daily", params=params)).json()
    assert [(ln["line"], ln["kwh_per_unit"], ln["kg_per_unit"]) for ln in lines] == [
        ("line_a", None, None),
        ("line_b", None, None),
    ]


@pytest.mark.parametrize("period", [Period.daily, Period.monthly, Period.yearly])
async def test_line_rollup_equals_sums_of_hourly_rows(
    client: httpx.AsyncClient, history: tuple[list[HourlyCarbon], list[HourlyLine]], period: Period
) -> None:
    carbon, lines = history
    complete = {r.hour_start for r in carbon if r.complete}
    groups: dict[tuple[date, str], list[HourlyLine]] = defaultdict(list)
    for r in lines:
        groups[(period_of(r.hour_start, period), r.line)].append(r)
    res = await client.get(
        f"/api/v1/lines/{period}", params={"start": "2026-01-01", "end": "2027-01-01"}
    )
    assert res.status_code == 200, res.text
    got = res.json()
    assert [(g["period_start"], g["line"]) for g in got] == [
        (d.isoformat(), ln) for d, ln in sorted(groups)
    ]
    for g in got:
        rows = groups[(date.fromisoformat(g["period_start"]), g["line"])]
        want = expected_line(rows, sum(r.hour_start in complete for r in rows))
        assert set(g) == {"period_start", "start_utc", "end_utc", *want}
        assert_matches(g, want)


async def test_line_rollup_filters_by_line(
    client: httpx.AsyncClient, history: tuple[list[HourlyCarbon], list[HourlyLine]]
) -> None:
    res = await client.get(
        "/api/v1/lines/monthly", params={"line": "line_b", "start": "2026-01-01"}
    )
    assert res.status_code == 200
    assert [(g["period_start"], g["line"]) for g in res.json()] == [
        ("2026-02-01", "line_b"),
        ("2026-03-01", "line_b"),
    ]
    missing = await client.get("/api/v1/lines/monthly", params={"line": "line_z"})
    assert missing.status_code == 404
    assert "line_z" in missing.json()["detail"]


async def test_default_ends_with_the_newest_period(
    client: httpx.AsyncClient, history: tuple[list[HourlyCarbon], list[HourlyLine]]
) -> None:
    days = (await client.get("/api/v1/carbon/daily")).json()
    assert days[-1]["period_start"] == "2026-03-04"
    years = (await client.get("/api/v1/carbon/yearly")).json()
    assert [y["period_start"] for y in years] == ["2026-01-01"]
    assert years[0]["hours"] == len(history[0])


async def test_no_rows(client: httpx.AsyncClient) -> None:
    for path in ("/api/v1/carbon/daily", "/api/v1/lines/monthly"):
        res = await client.get(path)
        assert (res.status_code, res.json()) == (200, [])


@pytest.mark.parametrize("resource", ["carbon", "lines"])
@pytest.mark.parametrize(
    ("period", "params", "message"),
    [
        ("daily", {"start": "2026-03-02", "end": "2026-03-01"}, "must be before end"),
        ("monthly", {"start": "2026-03-01", "end": "2026-03-01"}, "must be before end"),
        ("daily", {"start": "2025-01-01", "end": "2026-03-01"}, "at most 366 days"),
        ("monthly", {"start": "2010-01-01", "end": "2026-01-01"}, "at most 120 months"),
        ("yearly", {"end": "0005-01-01"}, "out of the supported date range"),
    ],
)
async def test_bad_range_is_422(
    client: httpx.AsyncClient, resource: str, period: str, params: dict[str, str], message: str
) -> None:
    res = await client.get(f"/api/v1/{resource}/{period}", params=params)
    assert res.status_code == 422
    assert message in res.json()["detail"]


@pytest.mark.parametrize("resource", ["carbon", "lines"])
async def test_bad_period_is_422(client: httpx.AsyncClient, resource: str) -> None:
    res = await client.get(f"/api/v1/{resource}/weekly")
    assert res.status_code == 422
    (error,) = res.json()["detail"]
    assert error["loc"] == ["path", "period"]
    assert "'daily', 'monthly' or 'yearly'" in error["msg"]


@pytest.mark.parametrize(
    ("period", "start", "end", "count"),
    [
        (Period.daily, date(2026, 2, 27), date(2026, 3, 2), 3),
        (Period.monthly, date(2026, 1, 15), date(2026, 3, 1), 1),  # only 02-01
        (Period.monthly, date(2025, 12, 1), date(2026, 3, 2), 4),
        (Period.yearly, date(2020, 1, 1), date(2026, 1, 1), 6),
        (Period.yearly, date(2020, 1, 2), date(2026, 1, 2), 6),
    ],
)
def test_period_count(period: Period, start: date, end: date, count: int) -> None:
    assert period.periods_in(start, end) == count
