"""GET /healthz."""

from __future__ import annotations

import secrets

import httpx

from zerocarbon.api.app import create_app
from zerocarbon.settings import Settings
from zerocarbon.storage.database import drop_database, ensure_database


async def test_ok(client: httpx.AsyncClient) -> None:
    res = await client.get("/healthz")
    assert res.status_code == 200
    assert res.json() == {"status": "ok", "database": "ok"}


async def test_database_gone_is_503(pg_server_url: str) -> None:
    name = f"zc_test_gone_{secrets.token_hex(3)}"
    url = await ensure_database(pg_server_url, name)
    app = create_app(Settings(database_url=url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/healthz")).status_code == 200
            await drop_database(pg_server_url, name)  # terminates the pool's connections
            res = await client.get("/healthz")
    assert res.status_code == 503
    assert res.json() == {"status": "error", "database": "unavailable"}
