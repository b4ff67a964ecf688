"""The database away and text it cannot store: short JSON reasons with the right status,
one log line when the database goes and one when it is back — on a real PostgreSQL
that stops accepting connections to the app's database."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from zerocarbon.api.app import create_app
from zerocarbon.settings import Settings
from zerocarbon.storage.database import create_schema, drop_database, ensure_database

ROUTES = (
    "/api/v1/devices",
    "/api/v1/devices/grid_meter/latest",
    "/api/v1/carbon/hourly?start=2026-06-21T00:00:00Z&end=2026-06-22T00:00:00Z",
    "/api/v1/status",
)


@pytest.fixture
async def own_database(pg_server_url: str) -> AsyncIterator[str]:
    """A database of this test's own, which the test may close to connections."""
    name = f"zc_errors_{secrets.token_hex(3)}"
    url = await ensure_database(pg_server_url, name)
    conn = await asyncpg.connect(url)
    try:
        await create_schema(conn)
    finally:
        await conn.close()
    yield name
    admin = await asyncpg.connect(pg_server_url)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    finally:
        await admin.close()
    await drop_database(pg_server_url, name)


async def _set_accepting(server_url: str, name: str, accepting: bool) -> None:
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(
            f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {"true" if accepting else "false"}'
        )
        if not accepting:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
            # termination is asynchronous: wait until no backend of the database is left
            for _ in range(500):
                left = await admin.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", name
                )
                if not left:
                    break
                await asyncio.sleep(0.01)
    finally:
        await admin.close()


async def test_routes_answer_503_while_the_database_is_away_and_log_it_once(
    pg_server_url: str, own_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = await ensure_database(pg_server_url, own_database)
    app = create_app(Settings(database_url=url, site_timezone="UTC"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/api/v1/devices")).status_code == 200
            await _set_accepting(pg_server_url, own_database, False)
            with caplog.at_level(logging.INFO, logger="zerocarbon.api.errors"):
                for _ in range(2):
                    for route in ROUTES:
                        r = await client.get(route)
                        assert r.status_code == 503, (route, r.text)
                        body = r.json()
                        assert body["detail"] == "database unavailable"
                        assert own_database in body["reason"]
                await _set_accepting(pg_server_url, own_database, True)
                # the pool may still hand out a connection the server closed: it answers
                # 503 once more at most, then the pool reconnects
                for _ in range(3):
                    back = await client.get("/api/v1/devices")
                    if back.status_code == 200:
                        break
                assert back.status_code == 200, back.text
    lines = [r.getMessage() for r in caplog.records if r.name == "zerocarbon.api.errors"]
    assert len(lines) == 2, lines  # once down, once back: not a line per request
    assert lines[0].startswith("database unavailable")
    assert re.fullmatch(r"database is back \((\d+) requests were answered 503\)", lines[1])
    assert int(lines[1].split("(")[1].split()[0]) >= 8


@pytest.mark.parametrize(
    "route",
    [
        "/api/v1/devices/grid%00meter/latest",
        "/api/v1/energy/hourly?start=2026-06-21T00:00:00Z&end=2026-06-22T00:00:00Z&device=a%00b",
        "/api/v1/lines/hourly?start=2026-06-21T00:00:00Z&end=2026-06-22T00:00:00Z&line=%00",
    ],
)
async def test_nul_in_the_request_is_refused_with_400(
    client: httpx.AsyncClient, route: str
) -> None:
    r = await client.get(route)
    assert r.status_code == 400
    assert r.json() == {"detail": "NUL characters are not allowed in the path or query"}
