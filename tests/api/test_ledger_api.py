"""``/api/v1/ledger``: the instruments of the hand-computed month's site with the engine's
allocation, one instrument with its retirements and audit trail, and retirement by an
operator token (refused without a token or with a viewer's; 409 the second time)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest

from tests.accounts.test_ledger import clear_ledger, make_site, write_june
from zerocarbon.api.app import create_app
from zerocarbon.api.auth import Role, new_token
from zerocarbon.config import SiteConfig
from zerocarbon.settings import Settings
from zerocarbon.storage import tokens


@pytest.fixture
async def conn(pg_conn: asyncpg.Connection) -> asyncpg.Connection:
    await pg_conn.execute("TRUNCATE api_tokens RESTART IDENTITY CASCADE")
    await clear_ledger(pg_conn)
    return pg_conn


@pytest.fixture
def make_token(conn: asyncpg.Connection) -> Callable[..., Any]:
    async def make(name: str, role: Role) -> dict[str, str]:
        t = new_token()
        await tokens.insert_token(
            conn, name=name, prefix=t.prefix, role=role.value, site=None, token_hash=t.token_hash
        )
        return {"Authorization": f"Bearer {t.token}"}

    return make


@pytest.fixture
def site() -> SiteConfig:
    return make_site()


@pytest.fixture
async def ledger_client(
    settings: Settings, conn: asyncpg.Connection, site: SiteConfig
) -> AsyncIterator[httpx.AsyncClient]:
    """The app as a gateway runs it: with its site file."""
    await write_june(conn, site)
    app = create_app(settings, site=site)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://zerocarbon.test") as c:
            yield c


async def test_list_shows_volumes_and_the_engines_allocation(
    ledger_client: httpx.AsyncClient,
) -> None:
    res = await ledger_client.get("/api/v1/ledger")
    assert res.status_code == 200, res.text
    body = res.json()
    by_id = {i["id"]: i for i in body["instruments"]}
    assert list(by_id) == [
        "certificates.gec_june",
        "green_power.green_trade",
        "offsets.ccer_forest",
        "offsets.cea_2025",
    ]
    gec = by_id["certificates.gec_june"]
    assert (gec["kind"], gec["unit"], gec["volume"], gec["held"], gec["status"]) == (
        "gec",
        "MWh",
        "18",
        "18",
        "held",
    )
    (june,) = gec["engine"]
    assert june["month"] == "2026-06" and june["hours"] == 720
    assert june["allocated_kwh"] == pytest.approx(18_000.0, abs=1e-6)
    assert june["column_kwh"] == pytest.approx(18_000.0, abs=1e-6)
    assert june["unused_kwh"] == pytest.approx(0.0, abs=1e-6)
    contract = by_id["green_power.green_trade"]
    assert contract["volume"] == "7.2"
    assert contract["engine"][0]["allocated_kwh"] == pytest.approx(7_200.0, abs=1e-6)
    assert by_id["offsets.ccer_forest"]["engine"] is None
    assert body["offsets_used_t"] == {}


async def test_retire_needs_an_operator_and_a_second_time_is_409(
    ledger_client: httpx.AsyncClient, make_token: Callable[..., Any]
) -> None:
    viewer = await make_token("wall-screen", Role.VIEWER)
    operator = await make_token("shift-lead", Role.OPERATOR)
    url = "/api/v1/ledger/certificates.gec_june/retire"
    body = {"period": "2026-06", "volume": 18, "reason": "June, market-based Scope 2"}
    assert (await ledger_client.post(url, json=body)).status_code == 401
    assert (await ledger_client.post(url, json=body, headers=viewer)).status_code == 403

    res = await ledger_client.post(url, json=body, headers=operator)
    assert res.status_code == 200, res.text
    after = res.json()
    assert (after["status"], after["retired"], after["held"]) == ("retired", "18", "0")
    (r,) = after["retirements"]
    assert (r["volume"], r["period"], r["retired_by"], r["reason"]) == (
        "18",
        "2026-06",
        "shift-lead",
        "June, market-based Scope 2",
    )

    again = await ledger_client.post(url, json={**body, "volume": 1}, headers=operator)
    assert again.status_code == 409
    detail = again.json()["detail"]
    assert detail.startswith("certificates.gec_june: cannot retire 1 MWh against 2026-06")
    assert "already retired: 18 MWh against 2026-06 by shift-lead at " in detail

    wrong = await ledger_client.post(
        "/api/v1/ledger/certificates.gec_june/retire",
        json={"period": "2026-07", "volume": 1},
        headers=operator,
    )
    assert wrong.status_code == 409 and "applies to 2026-06" in wrong.json()["detail"]

    shown = await ledger_client.get("/api/v1/ledger/certificates.gec_june")
    assert shown.status_code == 200
    events = shown.json()["events"]
    assert [(e["action"], e["actor"]) for e in events] == [
        ("declared", "site file"),
        ("retired", "shift-lead"),
        ("refused", "shift-lead"),
        ("refused", "shift-lead"),
    ]
    assert events[1]["after"] == {"retired_volume": "18.000000", "status": "retired"}


async def test_ccer_retirement_is_offsets_used(
    ledger_client: httpx.AsyncClient, make_token: Callable[..., Any]
) -> None:
    operator = await make_token("carbon-manager", Role.OPERATOR)
    res = await ledger_client.post(
        "/api/v1/ledger/offsets.ccer_forest/retire",
        json={"period": "2026-Q2", "volume": "12.5", "reason": "residual Scope 1"},
        headers=operator,
    )
    assert res.status_code == 200, res.text
    assert res.json()["retired_by_period"] == {"2026-Q2": "12.5"}
    listed = (await ledger_client.get("/api/v1/ledger")).json()
    assert listed["offsets_used_t"] == {"2026-Q2": "12.5"}


async def test_bad_requests(
    ledger_client: httpx.AsyncClient, make_token: Callable[..., Any]
) -> None:
    operator = await make_token("shift-lead", Role.OPERATOR)
    missing = await ledger_client.get("/api/v1/ledger/offsets.nope")
    assert missing.status_code == 404 and "offsets.nope" in missing.json()["detail"]
    res = await ledger_client.post(
        "/api/v1/ledger/offsets.nope/retire", json={"period": "2026", "volume": 1}, headers=operator
    )
    assert res.status_code == 404
    res = await ledger_client.post(
        "/api/v1/ledger/offsets.ccer_forest/retire",
        json={"period": "Q3-2026", "volume": 1},
        headers=operator,
    )
    assert res.status_code == 422 and "period 'Q3-2026'" in res.text
    for volume in (0, -1, "abc", "0.0000001"):
        res = await ledger_client.post(
            "/api/v1/ledger/offsets.ccer_forest/retire",
            json={"period": "2026", "volume": volume},
            headers=operator,
        )
        assert res.status_code == 422, volume


async def test_reads_follow_the_read_role(
    settings: Settings, conn: asyncpg.Connection, make_token: Callable[..., Any]
) -> None:
    viewer = await make_token("wall-screen", Role.VIEWER)
    app = create_app(settings.model_copy(update={"api_read_role": Role.VIEWER}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://zerocarbon.test") as c:
            assert (await c.get("/api/v1/ledger")).status_code == 401
            res = await c.get("/api/v1/ledger", headers=viewer)
            # without the site file: the ledger as stored (empty here), no allocation
            assert res.status_code == 200 and res.json()["instruments"] == []


def test_volumes_are_plain_decimals() -> None:
    """80 MWh is "80", never "8E+1" (Decimal.normalize's exponent form)."""
    from decimal import Decimal

    from zerocarbon.api.routes.ledger import _plain

    assert [str(_plain(Decimal(x))) for x in ("80.000000", "18.500", "0.000", "1200")] == [
        "80",
        "18.5",
        "0",
        "1200",
    ]
