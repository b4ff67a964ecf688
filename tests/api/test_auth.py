"""Access control: bearer tokens with roles against the real database, the write-route
guard walked over ``app.routes``, the read guard, and the failed-authentication limit
timed by a manual clock."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import Depends, FastAPI

from zerocarbon.api.app import create_app
from zerocarbon.api.auth import (
    MAX_FAILURES,
    WRITE_METHODS,
    Role,
    api_routes,
    check_write_routes,
    hash_token,
    new_token,
    require_role,
    token_prefix,
    unguarded_write_routes,
)
from zerocarbon.settings import Settings
from zerocarbon.storage import tokens


class ManualClock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture
async def conn(pg_conn: asyncpg.Connection) -> asyncpg.Connection:
    await pg_conn.execute("TRUNCATE api_tokens RESTART IDENTITY")
    return pg_conn


@pytest.fixture
def make_token(conn: asyncpg.Connection) -> Callable[..., Any]:
    async def make(name: str, role: Role, site: str | None = None) -> str:
        t = new_token()
        await tokens.insert_token(
            conn, name=name, prefix=t.prefix, role=role.value, site=site, token_hash=t.token_hash
        )
        return t.token

    return make


@contextlib.asynccontextmanager
async def app_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://zerocarbon.test") as c:
            yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_token_format_and_hash() -> None:
    t = new_token()
    assert re.fullmatch(r"zc_[0-9a-f]{8}_[A-Za-z0-9_-]{43}", t.token)
    assert token_prefix(t.token) == t.prefix
    assert t.token_hash == hash_token(t.token) and len(t.token_hash) == 32
    assert new_token().token != t.token
    for bad in ("", "zc_", "zc_1234567_x", "xx_12345678_abc", "zc_12345678_", "zc_ABCDEF12_x"):
        assert token_prefix(bad) is None, bad


async def test_whoami_needs_a_valid_token(
    settings: Settings, conn: asyncpg.Connection, make_token: Callable[..., Any]
) -> None:
    token = await make_token("grafana-wall", Role.VIEWER, "Plant 1")
    async with app_client(create_app(settings)) as c:
        r = await c.get("/api/v1/auth/whoami")
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        assert "bearer token" in r.json()["detail"]
        r = await c.get("/api/v1/auth/whoami", headers=bearer(token + "x"))
        assert r.status_code == 401 and r.json()["detail"] == "invalid or revoked token"
        r = await c.get("/api/v1/auth/whoami", headers={"Authorization": f"Basic {token}"})
        assert r.status_code == 401
        r = await c.get("/api/v1/auth/whoami", headers=bearer(token))
        assert r.status_code == 200
        assert r.json() == {"name": "grafana-wall", "role": "viewer", "site": "Plant 1"}
    stored = await conn.fetchrow("SELECT token_hash, last_used_at FROM api_tokens")
    assert stored is not None
    assert bytes(stored["token_hash"]) == hash_token(token)
    assert stored["last_used_at"] is not None
    assert token.encode() not in bytes(stored["token_hash"])


async def test_admin_lists_and_revokes(
    settings: Settings, conn: asyncpg.Connection, make_token: Callable[..., Any]
) -> None:
    admin = await make_token("root", Role.ADMIN)
    operator = await make_token("shift-lead", Role.OPERATOR)
    async with app_client(create_app(settings)) as c:
        r = await c.get("/api/v1/auth/tokens", headers=bearer(operator))
        assert r.status_code == 403
        assert r.json()["detail"] == "this needs the admin role; the token has operator"
        r = await c.get("/api/v1/auth/tokens", headers=bearer(admin))
        assert r.status_code == 200
        listed = r.json()
        assert [t["name"] for t in listed] == ["root", "shift-lead"]
        assert [t["role"] for t in listed] == ["admin", "operator"]
        assert all(
            set(t) == {"name", "role", "prefix", "site", "created_at", "last_used_at", "revoked_at"}
            for t in listed
        )
        assert operator not in r.text and admin not in r.text

        r = await c.delete("/api/v1/auth/tokens/shift-lead", headers=bearer(operator))
        assert r.status_code == 403
        r = await c.delete("/api/v1/auth/tokens/nobody", headers=bearer(admin))
        assert r.status_code == 404
        r = await c.delete("/api/v1/auth/tokens/shift-lead", headers=bearer(admin))
        assert r.status_code == 200 and r.json()["revoked_at"] is not None
        r = await c.get("/api/v1/auth/whoami", headers=bearer(operator))
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


async def _write_routes_refuse(app: FastAPI, viewer: str) -> list[str]:
    """Call every write route of ``app`` without a token and with a viewer's."""
    checked = []
    async with app_client(app) as c:
        for route in api_routes(app):
            for method in sorted(route.methods & WRITE_METHODS):
                url = _concrete(route.path)
                r = await c.request(method, url)
                assert r.status_code == 401, (method, url, r.status_code)
                assert r.headers["www-authenticate"] == "Bearer"
                r = await c.request(method, url, headers=bearer(viewer))
                assert r.status_code == 403, (method, url, r.status_code)
                checked.append(f"{method} {route.path}")
    return checked


async def test_every_write_route_refuses_missing_and_viewer_tokens(
    settings: Settings, make_token: Callable[..., Any]
) -> None:
    viewer = await make_token("viewer", Role.VIEWER)
    app = create_app(settings)
    assert unguarded_write_routes(app) == []
    checked = await _write_routes_refuse(app, viewer)
    assert "DELETE /api/v1/auth/tokens/{name}" in checked

    # a write route added the project's way is covered by the same walk
    app = create_app(settings)
    calls: list[str] = []

    @app.post("/api/v1/test/ack", dependencies=[Depends(require_role(Role.OPERATOR))])
    async def ack() -> dict[str, bool]:
        calls.append("ack")
        return {"ok": True}

    checked = await _write_routes_refuse(app, viewer)
    assert "POST /api/v1/test/ack" in checked and calls == []
    operator = await make_token("operator", Role.OPERATOR)
    async with app_client(app) as c:
        r = await c.post("/api/v1/test/ack", headers=bearer(operator))
        assert r.status_code == 200 and calls == ["ack"]


def test_openapi_declares_the_bearer_scheme(settings: Settings) -> None:
    doc = create_app(settings).openapi()
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert doc["paths"]["/api/v1/auth/tokens/{name}"]["delete"]["security"] == [{"HTTPBearer": []}]


def test_an_unguarded_write_route_is_refused_at_build(settings: Settings) -> None:
    app = create_app(settings)

    @app.put("/api/v1/test/open")
    async def open_write() -> None:
        return None

    @app.patch("/api/v1/test/viewer", dependencies=[Depends(require_role(Role.VIEWER))])
    async def viewer_write() -> None:
        return None

    assert unguarded_write_routes(app) == ["PUT /api/v1/test/open", "PATCH /api/v1/test/viewer"]
    with pytest.raises(ValueError, match="PUT /api/v1/test/open, PATCH /api/v1/test/viewer"):
        check_write_routes(app)


async def test_reads_open_by_default_and_guarded_when_set(
    settings: Settings, make_token: Callable[..., Any]
) -> None:
    viewer = await make_token("viewer", Role.VIEWER)
    async with app_client(create_app(settings)) as c:
        assert (await c.get("/api/v1/status")).status_code == 200
        assert (await c.get("/api/v1/devices")).status_code == 200
    guarded = settings.model_copy(update={"api_read_role": Role.VIEWER})
    async with app_client(create_app(guarded)) as c:
        for path in ("/api/v1/status", "/api/v1/devices", "/api/v1/carbon/hourly"):
            r = await c.get(path)
            assert r.status_code == 401, path
            assert (await c.get(path, headers=bearer(viewer))).status_code == 200, path
        assert (await c.get("/healthz")).status_code == 200  # probes stay open
    strict = settings.model_copy(update={"api_read_role": Role.OPERATOR})
    async with app_client(create_app(strict)) as c:
        assert (await c.get("/api/v1/status", headers=bearer(viewer))).status_code == 403


def test_read_role_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZEROCARBON_API_READ_ROLE", "operator")
    assert Settings().api_read_role is Role.OPERATOR
    monkeypatch.setenv("ZEROCARBON_API_READ_ROLE", "root")
    with pytest.raises(ValueError, match="api_read_role"):
        Settings()


async def test_failed_authentications_are_limited_per_address(
    settings: Settings, make_token: Callable[..., Any]
) -> None:
    clock = ManualClock()
    good = await make_token("good", Role.VIEWER)
    app = create_app(settings, auth_clock=clock)
    async with app_client(app) as c:
        for _ in range(3 * MAX_FAILURES):  # successes are not counted
            assert (await c.get("/api/v1/auth/whoami", headers=bearer(good))).status_code == 200
        for i in range(MAX_FAILURES):
            clock.now_s += 1.0
            r = await c.get("/api/v1/auth/whoami", headers=bearer(f"zc_0000000{i}_guess"))
            assert r.status_code == 401, i
        # window opened at 1001 s, now 1010 s: 51 s left
        r = await c.get("/api/v1/auth/whoami", headers=bearer("zc_00000000_again"))
        assert r.status_code == 429
        assert r.headers["retry-after"] == "51"
        r = await c.get("/api/v1/auth/whoami", headers=bearer(good))
        assert r.status_code == 429  # a locked-out address cannot test tokens at all
        assert (await c.get("/api/v1/auth/whoami")).status_code == 401  # no token: no 429
        assert (await c.get("/api/v1/status")).status_code == 200  # open reads unaffected
        clock.now_s += 50.5
        assert (await c.get("/api/v1/auth/whoami", headers=bearer(good))).status_code == 429
        clock.now_s += 0.5
        assert (await c.get("/api/v1/auth/whoami", headers=bearer(good))).status_code == 200
        metrics = (await c.get("/metrics")).text
    assert f"zerocarbon_api_auth_failures_total {MAX_FAILURES}.0" in metrics
    assert "zerocarbon_api_auth_rate_limited_total 3.0" in metrics


async def test_last_used_is_written_at_most_once_a_minute(
    settings: Settings, conn: asyncpg.Connection, make_token: Callable[..., Any]
) -> None:
    clock = ManualClock()
    token = await make_token("poller", Role.VIEWER)

    async def last_used() -> Any:
        return await conn.fetchval("SELECT last_used_at FROM api_tokens WHERE name = 'poller'")

    assert await last_used() is None
    async with app_client(create_app(settings, auth_clock=clock)) as c:
        assert (await c.get("/api/v1/auth/whoami", headers=bearer(token))).status_code == 200
        first = await last_used()
        assert first is not None
        clock.now_s += 59.0
        assert (await c.get("/api/v1/auth/whoami", headers=bearer(token))).status_code == 200
        assert await last_used() == first
        clock.now_s += 1.0
        assert (await c.get("/api/v1/auth/whoami", headers=bearer(token))).status_code == 200
        assert await last_used() > first


async def test_over_a_real_socket(
    settings: Settings, make_token: Callable[..., Any], serve: Callable[..., Any]
) -> None:
    """uvicorn on loopback: the client address is the socket's, the header reaches us."""
    clock = ManualClock()
    token = await make_token("remote", Role.OPERATOR)
    async with serve(settings) as srv, httpx.AsyncClient(base_url=srv.url) as c:
        srv.app.state.auth.limiter.clock = clock
        r = await c.get("/api/v1/auth/whoami", headers=bearer(token))
        assert r.status_code == 200 and r.json()["role"] == "operator"
        for _ in range(MAX_FAILURES):
            r = await c.get("/api/v1/auth/whoami", headers=bearer("zc_00000000_x"))
            assert r.status_code == 401
        r = await c.delete("/api/v1/auth/tokens/remote", headers=bearer(token))
        assert r.status_code == 429 and r.headers["retry-after"] == "60"
        assert list(srv.app.state.auth.limiter._windows) == ["127.0.0.1"]
