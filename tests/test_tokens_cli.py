"""``zerocarbon tokens create|list|revoke`` and ``zerocarbon db grant-readonly`` against
the run's real database (ZEROCARBON_DATABASE_URL pointing at it, as an operator sets it)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator

import asyncpg
import pytest
from typer.testing import CliRunner

from zerocarbon.api.auth import hash_token, token_prefix
from zerocarbon.cli import app

runner = CliRunner()


async def _execute(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _fetch(url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


@pytest.fixture
def db_env(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    asyncio.run(_execute(pg_url, "TRUNCATE api_tokens RESTART IDENTITY"))
    monkeypatch.setenv("ZEROCARBON_DATABASE_URL", pg_url)
    return pg_url


def test_create_list_revoke(db_env: str) -> None:
    r = runner.invoke(
        app, ["tokens", "create", "--name", "scada", "--role", "operator", "--site", "Plant 1"]
    )
    assert r.exit_code == 0, r.output
    token = r.stdout.strip().splitlines()[-1]
    prefix = token_prefix(token)
    assert prefix is not None
    rows = asyncio.run(
        _fetch(db_env, "SELECT name, role, site, prefix, token_hash FROM api_tokens")
    )
    assert len(rows) == 1
    row = rows[0]
    assert (row["name"], row["role"], row["site"], row["prefix"]) == (
        "scada",
        "operator",
        "Plant 1",
        prefix,
    )
    assert bytes(row["token_hash"]) == hash_token(token)  # the hash, never the token

    r = runner.invoke(app, ["tokens", "create", "--name", "scada", "--role", "viewer"])
    assert r.exit_code == 1
    assert "a token named 'scada' exists already" in r.stderr
    r = runner.invoke(app, ["tokens", "create", "--name", "x", "--role", "root"])
    assert r.exit_code == 2 and "unknown role 'root'" in r.stderr

    r = runner.invoke(app, ["tokens", "list"])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].split("\t") == [
        "name",
        "role",
        "prefix",
        "site",
        "created",
        "last_used",
        "revoked",
    ]
    fields = lines[1].split("\t")
    assert fields[:4] == ["scada", "operator", prefix, "Plant 1"]
    assert fields[5:] == ["-", "-"]
    assert token not in r.stdout

    r = runner.invoke(app, ["tokens", "revoke", "--name", "nobody"])
    assert r.exit_code == 1 and "no token named 'nobody'" in r.stderr
    r = runner.invoke(app, ["tokens", "revoke", "--name", "scada"])
    assert r.exit_code == 0 and "revoked token 'scada'" in r.stdout
    r = runner.invoke(app, ["tokens", "list"])
    assert r.stdout.splitlines()[1].split("\t")[6] != "-"


@pytest.fixture
def readonly_role(pg_url: str) -> Iterator[str]:
    role = f"zc_ro_{secrets.token_hex(4)}"
    yield role
    asyncio.run(_execute(pg_url, f"DROP OWNED BY {role}; DROP ROLE IF EXISTS {role}"))


def test_grant_readonly(db_env: str, readonly_role: str, monkeypatch: pytest.MonkeyPatch) -> None:
    password = secrets.token_urlsafe(16)
    monkeypatch.setenv("ZC_TEST_RO_PASSWORD", password)
    args = [
        "db",
        "grant-readonly",
        "--role",
        readonly_role,
        "--password-env",
        "ZC_TEST_RO_PASSWORD",
    ]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert f"role {readonly_role} created (password set)" in r.stdout
    r = runner.invoke(app, args)  # again: updates
    assert r.exit_code == 0 and "updated" in r.stdout
    r = runner.invoke(
        app,
        [
            "db",
            "grant-readonly",
            "--role",
            readonly_role,
            "--password-env",
            "ZC_TEST_UNSET_VARIABLE",
        ],
    )
    assert r.exit_code == 1 and "ZC_TEST_UNSET_VARIABLE is not set" in r.stderr
    # a table the gateway makes later is readable too (default privileges)
    asyncio.run(_execute(db_env, "CREATE TABLE IF NOT EXISTS zc_test_later (x int)"))

    async def as_reader() -> None:
        conn = await asyncpg.connect(db_env, user=readonly_role, password=password)
        try:
            assert await conn.fetchval("SELECT count(*) FROM devices") >= 0
            assert await conn.fetchval("SELECT count(*) FROM zc_test_later") == 0
            await conn.fetch("SELECT * FROM hourly_carbon LIMIT 1")
            with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
                await conn.execute("INSERT INTO zc_test_later VALUES (1)")
            async with conn.transaction(readonly=False):
                await conn.execute("SET TRANSACTION READ WRITE")
                with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                    await conn.execute("INSERT INTO zc_test_later VALUES (1)")
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                await conn.fetch("SELECT * FROM api_tokens")
        finally:
            await conn.close()

    try:
        asyncio.run(as_reader())
    finally:
        asyncio.run(_execute(db_env, "DROP TABLE zc_test_later"))


def test_api_tokens_sql_revokes_earlier_grants(db_env: str, readonly_role: str) -> None:
    """A reader granted before migration 7 (default privileges, or by hand) loses its
    rights on api_tokens when the migration's SQL runs."""
    from zerocarbon.storage.schema import API_TOKENS_SQL

    r = runner.invoke(app, ["db", "grant-readonly", "--role", readonly_role])
    assert r.exit_code == 0, r.output
    check = f"SELECT has_table_privilege('{readonly_role}', 'api_tokens', 'SELECT') AS can"
    asyncio.run(_execute(db_env, f"GRANT SELECT ON api_tokens TO {readonly_role}"))
    assert asyncio.run(_fetch(db_env, check))[0]["can"] is True
    asyncio.run(_execute(db_env, API_TOKENS_SQL))
    assert asyncio.run(_fetch(db_env, check))[0]["can"] is False
    devices = f"SELECT has_table_privilege('{readonly_role}', 'devices', 'SELECT') AS can"
    assert asyncio.run(_fetch(db_env, devices))[0]["can"] is True
