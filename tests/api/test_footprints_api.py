"""``/api/v1/footprints`` on the real PostgreSQL with the hand-computed June 2026 and its
two products on two lines (tests/accounts/test_footprint.py): a month, one product, a
batch, a series by day and by shift, and the refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import httpx
import pytest

from tests.accounts.test_footprint import two_line_rows, two_line_site
from tests.accounts.test_period import GRAM
from zerocarbon.api.app import create_app
from zerocarbon.config import SiteConfig
from zerocarbon.settings import Settings
from zerocarbon.storage.database import register_site
from zerocarbon.storage.hourly import upsert_hourly

URL = "/api/v1/footprints"


@pytest.fixture
async def conn(pg_conn: asyncpg.Connection) -> asyncpg.Connection:
    registry = await register_site(pg_conn, two_line_site("units"))
    carbon, energy, lines = two_line_rows()
    await upsert_hourly(pg_conn, registry, carbon, energy, lines)
    return pg_conn


@asynccontextmanager
async def api(settings: Settings, site: SiteConfig | None) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, site=site)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://zerocarbon.test") as c:
            yield c


async def test_the_month_of_both_products(conn: asyncpg.Connection, settings: Settings) -> None:
    async with api(settings, two_line_site("units")) as client:
        res = await client.get(URL, params={"period": "2026-06"})
        assert res.status_code == 200, res.text
        body = res.json()
        by_id = {p["product"]: p for p in body["products"]}
        panel, frame = by_id["panel"], by_id["frame"]
        # the hand computation of tests/accounts/test_footprint.py
        assert panel["totals"]["gate_to_gate_kg"] == pytest.approx(49_098.3995891, abs=GRAM)
        assert panel["totals"]["gate_to_gate_market_kg"] == pytest.approx(42_174.8064463, abs=GRAM)
        assert panel["per_unit"]["gate_to_gate_kg_per_unit"] == pytest.approx(13.638444330, 1e-9)
        assert frame["totals"]["gate_to_gate_kg"] == pytest.approx(22_839.3598357, abs=GRAM)
        assert panel["declared_unit"] == "pcs" and panel["allocation_key"] == "units"
        sources = {c["id"]: c["data_source"] for c in panel["components"]}
        assert sources["line_electricity"] == "metered"
        assert sources["site:fuels"] == "allocated by units"
        assert sources["material:cold-rolled steel sheet"] == "supplier"
        assert panel["factors"]["grid.location"]["value"] == 0.55

        one = (await client.get(URL, params={"period": "2026-06", "product": "frame"})).json()
        assert [p["product"] for p in one["products"]] == ["frame"]


async def test_a_batch_and_series(conn: asyncpg.Connection, settings: Settings) -> None:
    async with api(settings, two_line_site("units")) as client:
        # the local day of June 1 as a batch: 1,636.6133196 kg for 120 pcs
        res = await client.get(
            URL,
            params={
                "start": "2026-06-01T00:00:00+08:00",
                "end": "2026-06-02T00:00:00+08:00",
                "product": "panel",
            },
        )
        assert res.status_code == 200, res.text
        (panel,) = res.json()["products"]
        assert panel["units"] == 120.0
        assert panel["totals"]["gate_to_gate_kg"] == pytest.approx(1_636.6133196, abs=GRAM)

        days = (await client.get(URL, params={"period": "2026-06", "grain": "day"})).json()
        assert len(days["series"]) == 30 and days["series"][0]["window"] == "2026-06-01"
        total = sum(
            p["totals"]["gate_to_gate_kg"]
            for w in days["series"]
            for p in w["products"]
            if p["product"] == "panel"
        )
        assert total == pytest.approx(49_098.3995891, abs=GRAM)
        shifts = (
            await client.get(
                URL,
                params={
                    "start": "2026-06-01T00:00:00+08:00",
                    "end": "2026-06-02T00:00:00+08:00",
                    "grain": "shift",
                    "product": "panel",
                },
            )
        ).json()
        first = shifts["series"][0]
        assert [w["window"] for w in shifts["series"]] == [
            "2026-06-01 S1",
            "2026-06-01 S2",
            "2026-06-01 S3",
        ]
        assert first["products"][0]["totals"]["gate_to_gate_kg"] == pytest.approx(
            540.6488843, abs=GRAM
        )


async def test_refusals(conn: asyncpg.Connection, settings: Settings) -> None:
    async with api(settings, two_line_site("units")) as client:
        res = await client.get(URL, params={"period": "2026-06", "product": "door"})
        assert res.status_code == 404 and "no product 'door'" in res.text
        res = await client.get(URL)
        assert res.status_code == 422 and "give a period" in res.text
        res = await client.get(
            URL,
            params={"period": "2026-06", "start": "2026-06-01T00:00:00+08:00"},
        )
        assert res.status_code == 422 and "not both" in res.text
        res = await client.get(
            URL, params={"start": "2026-06-02T00:00:00+08:00", "end": "2026-06-01T00:00:00+08:00"}
        )
        assert res.status_code == 422 and "must be after start" in res.text
        res = await client.get(URL, params={"period": "2026-06", "grain": "week"})
        assert res.status_code == 422
    async with api(settings, None) as client:
        res = await client.get(URL, params={"period": "2026-06"})
        assert res.status_code == 503
