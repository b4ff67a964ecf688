"""The ``api_tokens`` table (schema migration 7): API tokens by name, role and hash.

A row keeps the token's public prefix (how a request's token is found), its role, an
optional site label and the SHA-256 of the whole token (see :mod:`zerocarbon.api.auth`
for why a fast hash is right for these tokens); never the token itself. A revoked token
keeps its row (``revoked_at`` set) so that ``tokens list`` shows it and its name is not
reused by mistake.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

__all__ = [
    "DuplicateTokenError",
    "StoredToken",
    "TokenTableMissingError",
    "UnknownTokenError",
    "ensure_table",
    "find_token",
    "insert_token",
    "list_tokens",
    "revoke_token",
    "touch_token",
]

_COLUMNS = "name, prefix, role, site, token_hash, created_at, last_used_at, revoked_at"


class DuplicateTokenError(ValueError):
    """A token of that name (or, unlikely, prefix) exists already."""


class UnknownTokenError(LookupError):
    """No token of that name."""


class TokenTableMissingError(RuntimeError):
    """The database has no ``api_tokens`` table: its schema is older than migration 7."""


@dataclass(frozen=True, slots=True)
class StoredToken:
    name: str
    prefix: str  # public part of the token, shown by ``tokens list``
    role: str  # viewer, operator or admin
    site: str | None  # label given at creation
    token_hash: bytes  # SHA-256 of the whole token [32 bytes]
    created_at: datetime  # UTC
    last_used_at: datetime | None  # UTC, updated at most once a minute
    revoked_at: datetime | None  # UTC; a revoked token is refused

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


async def ensure_table(conn: asyncpg.Connection) -> None:
    """Raise :class:`TokenTableMissingError` when the schema lacks ``api_tokens``."""
    if await conn.fetchval("SELECT to_regclass('api_tokens')") is None:
        raise TokenTableMissingError(
            "the database has no api_tokens table (schema migration 7): run "
            "`zerocarbon db upgrade --site <site.toml>` or start the gateway once"
        )


async def insert_token(
    conn: asyncpg.Connection,
    *,
    name: str,
    prefix: str,
    role: str,
    site: str | None,
    token_hash: bytes,
) -> StoredToken:
    """Store a new token; raises :class:`DuplicateTokenError` for a name in use."""
    try:
        row = await conn.fetchrow(
            f"""INSERT INTO api_tokens (name, prefix, role, site, token_hash)
                VALUES ($1, $2, $3, $4, $5) RETURNING {_COLUMNS}""",
            name,
            prefix,
            role,
            site,
            token_hash,
        )
    except asyncpg.UniqueViolationError:
        raise DuplicateTokenError(f"a token named {name!r} exists already") from None
    assert row is not None
    return StoredToken(**dict(row))


async def list_tokens(conn: asyncpg.Connection) -> list[StoredToken]:
    """Every token, revoked ones included, oldest first."""
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM api_tokens ORDER BY created_at, id")
    return [StoredToken(**dict(r)) for r in rows]


async def find_token(conn: asyncpg.Connection, prefix: str) -> StoredToken | None:
    """The token with this public prefix, revoked or not; None if there is none."""
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM api_tokens WHERE prefix = $1", prefix)
    return None if row is None else StoredToken(**dict(row))


async def revoke_token(conn: asyncpg.Connection, name: str) -> StoredToken:
    """Mark the token ``name`` revoked (again: keeps the first time); raises
    :class:`UnknownTokenError` when there is no such token."""
    row = await conn.fetchrow(
        f"""UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now())
            WHERE name = $1 RETURNING {_COLUMNS}""",
        name,
    )
    if row is None:
        raise UnknownTokenError(f"no token named {name!r}")
    return StoredToken(**dict(row))


async def touch_token(conn: asyncpg.Connection, prefix: str, used_at: datetime) -> None:
    """Set the token's ``last_used_at`` to ``used_at`` (UTC)."""
    await conn.execute("UPDATE api_tokens SET last_used_at = $2 WHERE prefix = $1", prefix, used_at)
