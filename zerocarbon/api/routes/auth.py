"""``/api/v1/auth``: who a token is, and (admin) the tokens and their revocation.

Tokens are created with ``zerocarbon tokens create`` (the secret is shown only there);
the API lists them without secrets or hashes and can revoke one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import BaseModel, ConfigDict

from zerocarbon.api.auth import Principal, Role, require_role
from zerocarbon.api.deps import PoolDep
from zerocarbon.storage import tokens

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

ViewerDep = Annotated[Principal, Depends(require_role(Role.VIEWER))]
AdminDep = Annotated[Principal, Depends(require_role(Role.ADMIN))]


class WhoAmI(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    role: Role
    site: str | None


class TokenInfo(BaseModel):
    """A token as listed: no secret, no hash."""

    model_config = ConfigDict(frozen=True)

    name: str
    role: Role
    prefix: str
    site: str | None
    created_at: datetime
    last_used_at: datetime | None  # updated at most once a minute
    revoked_at: datetime | None


def _info(t: tokens.StoredToken) -> TokenInfo:
    return TokenInfo(
        name=t.name,
        role=Role(t.role),
        prefix=t.prefix,
        site=t.site,
        created_at=t.created_at,
        last_used_at=t.last_used_at,
        revoked_at=t.revoked_at,
    )


@router.get("/whoami", response_model=WhoAmI, summary="The token's name and role")
async def whoami(principal: ViewerDep) -> WhoAmI:
    return WhoAmI(name=principal.name, role=principal.role, site=principal.site)


@router.get("/tokens", response_model=list[TokenInfo], summary="Every token (admin)")
async def list_tokens(principal: AdminDep, pool: PoolDep) -> list[TokenInfo]:
    async with pool.acquire() as conn:
        return [_info(t) for t in await tokens.list_tokens(conn)]


@router.delete("/tokens/{name}", response_model=TokenInfo, summary="Revoke a token (admin)")
async def revoke_token(name: str, principal: AdminDep, pool: PoolDep) -> TokenInfo:
    """Revoke the token ``name``: it is refused from now on (the row is kept)."""
    async with pool.acquire() as conn:
        try:
            return _info(await tokens.revoke_token(conn, name))
        except tokens.UnknownTokenError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
