"""A read-only PostgreSQL login role for Grafana and other SQL readers.

:func:`grant_readonly` creates the role (or updates it: login, password) and grants
what reading needs (PostgreSQL 15 manual, "GRANT", "ALTER DEFAULT PRIVILEGES"):
CONNECT on the database, USAGE on schema ``public``, SELECT on its tables and views,
and SELECT on the tables that the granting role creates later (default privileges: new
readings partitions, new views of later migrations). It sets
``default_transaction_read_only`` for the role as a second fence, and revokes every
right on ``api_tokens``, so the token hashes stay private (schema migration 7 does the
same when the table is created after this grant).
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

__all__ = ["ReadonlyGrant", "grant_readonly"]

PRIVATE_TABLES = ("api_tokens",)


@dataclass(frozen=True, slots=True)
class ReadonlyGrant:
    role: str
    database: str
    created: bool  # False: the role existed and was updated
    password_set: bool


async def _quote_ident(conn: asyncpg.Connection, name: str) -> str:
    quoted = await conn.fetchval("SELECT quote_ident($1)", name)
    assert isinstance(quoted, str)
    return quoted


async def grant_readonly(
    conn: asyncpg.Connection, role: str, password: str | None = None
) -> ReadonlyGrant:
    """Create or update the login ``role`` with read-only rights on this database.

    ``password`` None leaves the role's password as it is (none for a new role: it can
    then log in only where pg_hba.conf trusts it). Runs in one transaction.
    """
    if not role or len(role.encode()) > 63:
        raise ValueError(f"role name must be 1 to 63 bytes: {role!r}")
    ident = await _quote_ident(conn, role)
    async with conn.transaction():
        database = await conn.fetchval("SELECT current_database()")
        db_ident = await _quote_ident(conn, database)
        exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
        verb = "ALTER" if exists else "CREATE"
        sql = f"{verb} ROLE {ident} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE"
        if password is not None:
            sql += " PASSWORD " + await conn.fetchval("SELECT quote_literal($1)", password)
        await conn.execute(sql)
        await conn.execute(f"ALTER ROLE {ident} SET default_transaction_read_only = on")
        await conn.execute(f"GRANT CONNECT ON DATABASE {db_ident} TO {ident}")
        await conn.execute(f"GRANT USAGE ON SCHEMA public TO {ident}")
        await conn.execute(f"REVOKE CREATE ON SCHEMA public FROM {ident}")
        await conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {ident}")
        await conn.execute(
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {ident}"
        )
        for table in PRIVATE_TABLES:
            if await conn.fetchval("SELECT to_regclass($1)", table) is not None:
                await conn.execute(f"REVOKE ALL ON {table} FROM {ident}")
    return ReadonlyGrant(role, database, not exists, password is not None)
