"""``/api/v1/cost`` on a real PostgreSQL: the hand-computed June 2026 of
``tests/accounts/test_cost.py`` written as hourly rows, line rows and 15-minute power
roll-ups, billed by the API to 0.01 CNY; 404 without a ``[tariff]``, 422 on a bad month.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from tests.accounts.test_cost import ZONE, _month_demand, _month_rows, _tariff
from zerocarbon.accounts.cost import month_bounds
from zerocarbon.accounts.cost_queries import ACTIVE_POWER_METRIC_ID
from zerocarbon.api.app import create_app
from zerocarbon.config import SiteConfig, parse_site
from zerocarbon.rows import HourlyLine
from zerocarbon.settings import Settings
from zerocarbon.storage.database import register_site
from zerocarbon.storage.hourly import upsert_hourly

Client = Callable[[SiteConfig | None], AbstractAsyncContextManager[httpx.AsyncClient]]


def _site(tariff: bool = True) -> SiteConfig:
    def dev(id_: str, role: str, field: str, **kw: object) -> dict[str, object]:
        return {
            "id": id_,
            "role": role,
            "protocol": "mqtt",
            "topic": f"works/{id_}",
            "fields": {"v": field},
            **kw,
        }

    raw: dict[str, Any] = {
        "site": {"timezone": "Asia/Shanghai"},
        "grid": {"region": "east", "data_year": 2023, "contracted_demand_kw": 400},
        "mqtt": {},
        "devices": [
            dev("grid_meter", "grid", "energy_import_kwh"),
            dev("pv_roof", "pv", "energy_generated_kwh"),
            dev("press", "load", "energy_import_kwh", line="line_a"),
            dev("paint", "load", "energy_import_kwh", line="line_b"),
        ],
        "lines": [{"id": "line_a", "unit": "pcs"}, {"id": "line_b", "unit": "pcs"}],
    }
    if tariff:
        raw["tariff"] = _tariff().model_dump(mode="json")
    return parse_site(raw)


@pytest.fixture
async def june(pg_conn: asyncpg.Connection) -> asyncpg.Connection:
    """The hand-computed June: 720 site rows, 2 x 720 line rows, the grid meter's
    15-minute power (100 kW, 180 kW once, 500 kW just outside the month) and the PV
    inverter's (300 kW, which must not count as demand)."""
    site = _site()
    await pg_conn.execute("TRUNCATE power_15min")
    registry = await register_site(pg_conn, site)
    rows = _month_rows()
    lines = [
        HourlyLine(r.hour_start, line, kwh, units, kwh / units, 0.0, 0.0, None, 0.0)
        for r in rows
        for line, kwh, units in (("line_a", 40.0, 10.0), ("line_b", 50.0, 5.0))
    ]
    await upsert_hourly(pg_conn, registry, rows, [], lines)
    power = [
        (bucket, registry.device_ids[device], ACTIVE_POWER_METRIC_ID, kw, kw, kw, 15)
        for bucket, grid_kw in _month_demand()
        for device, kw in (("grid_meter", grid_kw), ("pv_roof", 300.0))
    ]
    await pg_conn.executemany(
        """INSERT INTO power_15min (bucket, device_id, metric_id, avg_value, min_value,
           max_value, samples) VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        power,
    )
    return pg_conn


@pytest.fixture
def client_for(settings: Settings) -> Client:
    @asynccontextmanager
    async def open_client(site: SiteConfig | None) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(settings, site=site)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                yield c

    return open_client


async def test_june_bill(june: asyncpg.Connection, client_for: Client) -> None:
    async with client_for(_site()) as client:
        got = await client.get("/api/v1/cost/monthly", params={"month": "2026-06"})
        newest = await client.get("/api/v1/cost/monthly")  # the newest row's month
    assert got.status_code == 200, got.text
    bill = got.json()
    assert newest.json() == bill
    # the expected figures are worked out line by line in tests/accounts/test_cost.py
    assert [(b["item"], b["amount_cny"]) for b in bill["lines"]] == [
        ("energy_critical_peak", "3669.60"),
        ("energy_peak", "21405.30"),
        ("energy_flat", "14728.80"),
        ("energy_valley", "6890.40"),
        ("surcharge", "2079.36"),
        ("demand_charge", "6912.00"),
        ("export_credit", "0.00"),
    ]
    assert bill["currency"] == "CNY"
    assert bill["total_cny"] == "55685.46"
    assert bill["hours"] == 720
    # the 180 kW of 10:15 local on June 15; not the PV inverter's 300 kW, not the
    # 500 kW buckets just outside the local month
    assert bill["max_demand"] == {"demand_kw": 180.0, "bucket": "2026-06-15T02:15:00Z"}
    assert bill["basic_charge"]["floor_kw"] == "160.000"
    assert bill["pv_savings_cny"] == "9842.01"
    assert [(c["line"], c["total_cny"], c["cost_per_unit_cny"]) for c in bill["line_costs"]] == [
        ("line_a", "19092.16", "2.6517"),
        ("line_b", "23865.20", "6.6292"),
    ]
    assert bill["unallocated_cny"] == "12728.10"
    assert bill["cost_per_unit_cny"] == "5.1561"
    start, end = month_bounds("2026-06", ZONE)
    assert (bill["start"], bill["end"]) == ("2026-05-31T16:00:00Z", "2026-06-30T16:00:00Z")
    assert start == datetime(2026, 5, 31, 16, tzinfo=UTC) and end - start == timedelta(days=30)


async def test_hourly_cost(june: asyncpg.Connection, client_for: Client) -> None:
    async with client_for(_site()) as client:
        got = await client.get(
            "/api/v1/cost/hourly",
            params={"start": "2026-06-01T01:00:00Z", "end": "2026-06-01T04:00:00Z"},
        )
    assert got.status_code == 200, got.text
    # local 09:00 peak, 10:00 critical peak, 11:00 flat; import 100, PV 50 each
    assert [(h["period"], h["energy_cny"], h["pv_savings_cny"]) for h in got.json()] == [
        ("peak", "101.93", "52.41"),
        ("critical_peak", "122.32", "62.60"),
        ("flat", "61.37", "32.13"),
    ]


async def test_a_month_without_rows_bills_the_demand_floor(
    june: asyncpg.Connection, client_for: Client
) -> None:
    async with client_for(_site()) as client:
        got = await client.get("/api/v1/cost/monthly", params={"month": "2026-04"})
    bill = got.json()
    assert bill["hours"] == 0
    assert bill["max_demand"] is None
    assert bill["total_cny"] == "6144.00"  # 160 kW (40 % of 400) x 38.4


async def test_no_tariff_is_404_and_a_bad_month_422(
    june: asyncpg.Connection, client_for: Client
) -> None:
    async with client_for(_site(tariff=False)) as client:
        for path in ("/api/v1/cost/hourly", "/api/v1/cost/monthly?month=2026-06"):
            got = await client.get(path)
            assert got.status_code == 404
            assert "no [tariff]" in got.json()["detail"]
    async with client_for(None) as client:
        got = await client.get("/api/v1/cost/monthly?month=2026-06")
        assert got.status_code == 404
        assert "without a site file" in got.json()["detail"]
    async with client_for(_site()) as client:
        got = await client.get("/api/v1/cost/monthly", params={"month": "2026-6"})
        assert got.status_code == 422
        assert "'2026-6' is not YYYY-MM" in got.text
        got = await client.get(
            "/api/v1/cost/hourly",
            params={"start": "2026-06-02T00:00:00Z", "end": "2026-06-01T00:00:00Z"},
        )
        assert got.status_code == 422
