"""``/api/v1/accounts`` on the real PostgreSQL with the hand-computed June 2026
(:mod:`tests.accounts.test_period`): the account computed now, issuing it (operator only,
the token's name recorded), re-issuing after a grid factor revision, and the reports
with their revisions and changes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.accounts.test_period import GRAM, hand_site, june_rows, revised_table
from zerocarbon.api.app import create_app
from zerocarbon.api.auth import Role, new_token
from zerocarbon.config import SiteConfig
from zerocarbon.settings import Settings
from zerocarbon.storage import tokens
from zerocarbon.storage.database import register_site
from zerocarbon.storage.hourly import upsert_hourly

URL = "/api/v1/accounts"


@pytest.fixture
async def conn(pg_conn: asyncpg.Connection) -> asyncpg.Connection:
    await pg_conn.execute("TRUNCATE account_reports, api_tokens RESTART IDENTITY CASCADE")
    site = hand_site()
    registry = await register_site(pg_conn, site)
    carbon, energy, lines = june_rows()
    await upsert_hourly(pg_conn, registry, carbon, energy, lines)
    return pg_conn


@asynccontextmanager
async def api(settings: Settings, site: SiteConfig | None) -> AsyncIterator[httpx.AsyncClient]:
    """The app's own client with ``site`` as the gateway's site file."""
    app = create_app(settings, site=site)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://zerocarbon.test") as c:
            yield c


@pytest.fixture
def make_token(conn: asyncpg.Connection) -> Callable[..., Any]:
    async def make(name: str, role: Role) -> dict[str, str]:
        t = new_token()
        await tokens.insert_token(
            conn, name=name, prefix=t.prefix, role=role.value, site=None, token_hash=t.token_hash
        )
        return {"Authorization": f"Bearer {t.token}"}

    return make


async def test_the_account_computed_now(conn: asyncpg.Connection, settings: Settings) -> None:
    async with api(settings, hand_site()) as client:
        res = await client.get(URL, params={"period": "2026-06"})
        assert res.status_code == 200, res.text
        body = res.json()
        totals = body["totals"]
        assert totals["total_location_kg"] == pytest.approx(71_937.7594248, abs=GRAM)
        assert totals["scope1_kg"] == pytest.approx(20_237.7594248, abs=GRAM)
        assert totals["scope2_location_kg"] == pytest.approx(52_800.0, abs=GRAM)
        assert totals["scope2_market_kg"] == pytest.approx(41_729.28, abs=GRAM)
        assert totals["exported_heat_kg"] == pytest.approx(1_100.0, abs=GRAM)
        sources = {s["id"]: s for s in body["sources"]}
        grid = sources["purchased_electricity:grid"]
        assert grid["activity"] == 72_000.0 and grid["activity_unit"] == "kWh"
        assert grid["factor"]["revision"] == "2026-01/2023"
        assert grid["quality"]["gaps"] == 5 and grid["quality"]["estimated"] == 500.0
        assert body["factor_revisions"]["grid.market"]["value"] == 0.6096

        quarter = (await client.get(URL, params={"period": "2026-Q2"})).json()
        assert quarter["hours_expected"] == 2184 and quarter["hours_with_results"] == 720

        res = await client.get(URL, params={"period": "2026-13"})
        assert res.status_code == 422 and "expected a month" in res.text
        res = await client.get(URL + "/reports", params={"period": "June"})
        assert res.status_code == 422


async def test_issue_needs_an_operator_and_records_the_name(
    conn: asyncpg.Connection, settings: Settings, make_token: Callable[..., Any]
) -> None:
    viewer = await make_token("wall", Role.VIEWER)
    operator = await make_token("energy-manager", Role.OPERATOR)
    async with api(settings, hand_site()) as client:
        res = await client.post(URL + "/reports", json={"period": "2026-06"})
        assert res.status_code == 401
        res = await client.post(URL + "/reports", json={"period": "2026-06"}, headers=viewer)
        assert res.status_code == 403
        res = await client.post(URL + "/reports", json={"period": "2026-06"}, headers=operator)
        assert res.status_code == 201, res.text
        report = res.json()
        assert (report["id"], report["issued_by"], report["supersedes"]) == (
            1,
            "energy-manager",
            None,
        )
        assert report["account"]["totals"]["total_location_kg"] == pytest.approx(
            71_937.7594248, abs=GRAM
        )
        res = await client.post(
            URL + "/reports", json={"period": "2026-06", "extra": 1}, headers=operator
        )
        assert res.status_code == 422
    assert await conn.fetchval("SELECT count(*) FROM account_reports") == 1


async def test_reissue_after_a_factor_revision_lists_the_change(
    conn: asyncpg.Connection,
    settings: Settings,
    make_token: Callable[..., Any],
    tmp_path: Path,
) -> None:
    operator = await make_token("energy-manager", Role.OPERATOR)
    async with api(settings, hand_site()) as client:
        res = await client.post(URL + "/reports", json={"period": "2026-06"}, headers=operator)
        assert res.status_code == 201
    # the gateway restarted with the revised factor table
    async with api(settings, hand_site(revised_table(tmp_path))) as client:
        now = (await client.get(URL, params={"period": "2026-06"})).json()
        assert now["totals"]["scope2_location_kg"] == pytest.approx(52_080.0, abs=GRAM)
        res = await client.post(URL + "/reports", json={"period": "2026-06"}, headers=operator)
        assert res.status_code == 201
        res = await client.get(URL + "/reports", params={"period": "2026-06"})
        assert res.status_code == 200
        reports = res.json()
    assert [(r["id"], r["supersedes"]) for r in reports] == [(1, None), (2, 1)]
    first, second = reports
    assert first["changes"] == []
    assert first["factor_revisions"]["grid.location"]["revision"] == "2026-01/2023"
    assert second["factor_revisions"]["grid.location"]["revision"] == "2026-09/2023"
    factor = [
        c
        for c in second["changes"]
        if c["source"] == "purchased_electricity:grid" and c["kind"] == "factor"
    ]
    assert len(factor) == 1
    assert (factor[0]["before"], factor[0]["after"]) == (0.55, 0.54)
    assert "revision 2026-01/2023" in factor[0]["why"]
    assert "revision 2026-09/2023" in factor[0]["why"]
    total = next(c for c in second["changes"] if c["source"] == "total")
    assert total["after"] - total["before"] == pytest.approx(-720.0, abs=GRAM)


async def test_without_the_site_file_accounts_are_unavailable(
    conn: asyncpg.Connection, settings: Settings
) -> None:
    async with api(settings, None) as client:
        res = await client.get(URL, params={"period": "2026-06"})
        assert res.status_code == 503 and "site file" in res.text
