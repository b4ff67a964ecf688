"""``/api/v1/scorecard`` on the real PostgreSQL with the hand-computed June 2026
(tests/accounts/test_scorecard.py), a CCER retired against June in the ledger (offsets
before reductions flagged at a 20 % target, accepted at 10 %), and the monthly trend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import httpx
import pytest

from tests.accounts.test_footprint import two_line_rows, two_line_site
from tests.accounts.test_ledger import clear_ledger
from zerocarbon.accounts import ledger
from zerocarbon.api.app import create_app
from zerocarbon.config import SiteConfig
from zerocarbon.settings import Settings
from zerocarbon.storage.database import register_site
from zerocarbon.storage.hourly import upsert_hourly
from zerocarbon.storage.ledger import InstrumentRow, upsert_instrument

URL = "/api/v1/scorecard"
AT = datetime(2026, 7, 2, tzinfo=UTC)


@pytest.fixture
async def conn(pg_conn: asyncpg.Connection) -> asyncpg.Connection:
    await clear_ledger(pg_conn)
    registry = await register_site(pg_conn, two_line_site("units"))
    carbon, energy, lines = two_line_rows()
    await upsert_hourly(pg_conn, registry, carbon, energy, lines)
    return pg_conn


async def retire_ccer(conn: asyncpg.Connection, volume_t: str) -> None:
    """A CCER batch of 100 t in the ledger, ``volume_t`` retired against 2026-06."""
    await upsert_instrument(
        conn,
        InstrumentRow(
            id="offsets.ccer_forest",
            kind="ccer",
            serial="CCER-2025-0001",
            project="forest",
            vintage="2025",
            volume=Decimal(100),
            unit="t CO2e",
            retired_volume=Decimal(0),
            status="held",
            declaration={},
            declared_at=AT,
        ),
    )
    await ledger.retire(
        conn,
        "offsets.ccer_forest",
        period="2026-06",
        volume=volume_t,
        retired_by="energy-manager",
        reason="residual emissions of June",
        at=AT,
    )


@asynccontextmanager
async def api(settings: Settings, site: SiteConfig) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, site=site)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://zerocarbon.test") as c:
            yield c


async def test_the_scorecard_of_june(conn: asyncpg.Connection, settings: Settings) -> None:
    async with api(settings, two_line_site("units", renew=0.45, reduction=0.1)) as client:
        res = await client.get(URL, params={"period": "2026-06"})
        assert res.status_code == 200, res.text
        body = res.json()
        ind = {i["id"]: i for i in body["indicators"]}
        assert ind["renewable_share"]["value"] == pytest.approx(37_200 / 84_000, abs=1e-12)
        assert ind["renewable_share"]["met"] is False  # 0.4429 < 0.45
        assert ind["electrification_share"]["met"] is True  # 0.4366 >= 0.4
        assert ind["energy_per_unit:panel"]["value"] == pytest.approx(4.444889279, abs=1e-9)
        assert ind["energy_per_unit:panel"]["met"] is True  # <= 5.0
        assert ind["own_reduction"]["value"] == pytest.approx(0.136746887, abs=1e-9)
        assert ind["own_reduction"]["source"] == "the site's zero-carbon plan 2026-2030"
        assert ind["offsets_after_reductions"]["value"] == 0.0
        assert body["all_met"] is False and body["flags"] == []
        res = await client.get(URL, params={"period": "June"})
        assert res.status_code == 422


async def test_offsets_before_reductions(conn: asyncpg.Connection, settings: Settings) -> None:
    await retire_ccer(conn, "5")
    async with api(settings, two_line_site("units", reduction=0.2)) as client:
        body = (await client.get(URL, params={"period": "2026-06"})).json()
        rule = {i["id"]: i for i in body["indicators"]}["offsets_after_reductions"]
        assert rule["value"] == 5.0 and rule["met"] is False
        assert body["flags"] == ["offsets before reductions"]
        assert body["net_after_offsets_t"] == pytest.approx(71.9377594248 - 5.0, abs=1e-6)
    async with api(settings, two_line_site("units", reduction=0.1)) as client:
        body = (await client.get(URL, params={"period": "2026-06"})).json()
        rule = {i["id"]: i for i in body["indicators"]}["offsets_after_reductions"]
        assert rule["met"] is True and body["flags"] == []


async def test_the_monthly_trend(conn: asyncpg.Connection, settings: Settings) -> None:
    await retire_ccer(conn, "5")
    async with api(settings, two_line_site("units")) as client:
        res = await client.get(URL + "/trend", params={"start": "2026-05", "end": "2026-07"})
        assert res.status_code == 200, res.text
        months = res.json()["months"]
        assert [m["period"] for m in months] == ["2026-05", "2026-06", "2026-07"]
        may, june, july = months
        ind = {i["id"]: i for i in june["indicators"]}
        assert ind["renewable_share"]["value"] == pytest.approx(37_200 / 84_000, abs=1e-12)
        assert june["offsets_t"] == 5.0 and may["offsets_t"] == 0.0
        # no rows in May or July: no shares, nothing consumed
        assert {i["id"]: i for i in may["indicators"]}["renewable_share"]["value"] is None
        assert july["total_location_t"] == pytest.approx(0.35 + 12.1, abs=1e-9)  # declared
        res = await client.get(URL + "/trend", params={"start": "2026-07", "end": "2026-01"})
        assert res.status_code == 422 and "before start" in res.text
