"""API tokens and roles: who may read and who may change the site's state.

Tokens
    ``zc_<prefix>_<secret>``: ``prefix`` is 8 hex digits (public: it finds the row and
    is shown by ``zerocarbon tokens list``), ``secret`` is ``secrets.token_urlsafe(32)``
    (256 random bits). Only SHA-256 of the whole token is stored, compared with
    :func:`hmac.compare_digest` (constant time). A fast hash is right here: OWASP's
    Password Storage Cheat Sheet asks for slow, salted hashes (Argon2id, scrypt,
    bcrypt) because *passwords* have little entropy and can be guessed offline; a
    256-bit random secret cannot be guessed however fast the hash, so a slow hash
    would only cost every request time (OWASP, "Password Storage Cheat Sheet";
    the same reasoning as GitHub's and PyPI's API tokens).

Roles
    ``viewer < operator < admin``. A request sends ``Authorization: Bearer <token>``
    (RFC 6750 §2.1). A route declared with ``Depends(require_role(Role.OPERATOR))``
    answers **401** with ``WWW-Authenticate: Bearer`` when the token is missing,
    malformed, unknown or revoked (RFC 6750 §3) and **403** when it is valid but its
    role is below the one required; the body is the API's usual ``{"detail": ...}``.
    Every route with a write method (POST, PUT, PATCH, DELETE) must need operator or
    above: :func:`check_write_routes` refuses to build an app where one does not.
    Read routes are open unless ``ZEROCARBON_API_READ_ROLE`` names a role
    (:func:`read_guard`).

Failed authentication
    A token that is presented and refused counts as a failure of the client's IP
    address; after :data:`MAX_FAILURES` failures in a :data:`FAILURE_WINDOW_S` window
    every request of that address needing a token is answered **429** with
    ``Retry-After`` (RFC 6585 §4) until the window ends. Requests without a token and
    accepted tokens are not counted.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, cast

import asyncpg
import fastapi.routing
from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from zerocarbon.api.roles import Role
from zerocarbon.storage import tokens

TOKEN_SCHEME = "zc"
PREFIX_BYTES = 4  # 8 hex digits
SECRET_BYTES = 32  # [bytes] of randomness: 256 bits
MAX_FAILURES = 10  # refused tokens per client address per window
FAILURE_WINDOW_S = 60.0  # [s]
TOUCH_INTERVAL_S = 60.0  # last_used_at written at most this often per token [s]
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

__all__ = [
    "Authenticator",
    "FailureLimiter",
    "FailureMetrics",
    "NewToken",
    "Principal",
    "Role",
    "RoleRequirement",
    "check_write_routes",
    "hash_token",
    "new_token",
    "read_guard",
    "require_role",
    "RouteInfo",
    "api_routes",
    "token_prefix",
    "unguarded_write_routes",
]


@dataclass(frozen=True, slots=True)
class NewToken:
    token: str  # shown once, never stored
    prefix: str
    token_hash: bytes  # SHA-256 of ``token``


def hash_token(token: str) -> bytes:
    """SHA-256 of the token's UTF-8 bytes [32 bytes]."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def new_token() -> NewToken:
    """A fresh random token, its prefix and its hash."""
    prefix = secrets.token_hex(PREFIX_BYTES)
    token = f"{TOKEN_SCHEME}_{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"
    return NewToken(token, prefix, hash_token(token))


def token_prefix(token: str) -> str | None:
    """The prefix of a well-formed token, else None."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_SCHEME or not parts[2]:
        return None
    prefix = parts[1]
    if len(prefix) != 2 * PREFIX_BYTES or any(c not in "0123456789abcdef" for c in prefix):
        return None
    return prefix


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request's token belongs to."""

    name: str
    role: Role
    prefix: str
    site: str | None


class FailureLimiter:
    """Refused tokens per client address in fixed windows of ``window_s``.

    ``clock`` returns monotonic seconds (tests pass a manual one).
    """

    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window_s: float = FAILURE_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.clock = clock
        self._windows: dict[str, tuple[float, int]] = {}  # address -> (start [s], count)
        self.failures_total = 0
        self.refused_total = 0  # requests answered 429

    def _current(self, address: str) -> tuple[float, int] | None:
        entry = self._windows.get(address)
        if entry is not None and self.clock() - entry[0] >= self.window_s:
            del self._windows[address]
            return None
        return entry

    def retry_after_s(self, address: str) -> float | None:
        """Seconds until ``address`` may try again, or None when it may now."""
        entry = self._current(address)
        if entry is None or entry[1] < self.max_failures:
            return None
        return entry[0] + self.window_s - self.clock()

    def fail(self, address: str) -> None:
        self.failures_total += 1
        entry = self._current(address)
        if entry is None:
            if len(self._windows) > 10_000:  # bound memory: drop expired windows
                now = self.clock()
                self._windows = {
                    a: e for a, e in self._windows.items() if now - e[0] < self.window_s
                }
            self._windows[address] = (self.clock(), 1)
        else:
            self._windows[address] = (entry[0], entry[1] + 1)


class FailureMetrics(Collector):
    """The limiter's counters for ``/metrics``."""

    def __init__(self, limiter: FailureLimiter) -> None:
        self._limiter = limiter

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "zerocarbon_api_auth_failures",
            "API requests whose bearer token was refused (malformed, unknown, revoked)",
            value=self._limiter.failures_total,
        )
        yield CounterMetricFamily(
            "zerocarbon_api_auth_rate_limited",
            "API requests answered 429 after too many refused tokens from their address",
            value=self._limiter.refused_total,
        )


@dataclass
class Authenticator:
    """Checks bearer tokens against ``api_tokens``; one per app (``app.state.auth``)."""

    limiter: FailureLimiter = field(default_factory=FailureLimiter)
    read_role: Role | None = None  # None: read routes are open
    touch_interval_s: float = TOUCH_INTERVAL_S
    _touched: dict[str, float] = field(default_factory=dict)  # prefix -> clock() [s]

    async def authenticate(self, request: Request, pool: asyncpg.Pool) -> Principal:
        """The token's principal; raises 401 or 429 as :mod:`this module <.auth>` says."""
        address = request.client.host if request.client is not None else "unknown"
        header = request.headers.get("authorization")
        retry_s = self.limiter.retry_after_s(address)
        if retry_s is not None and header is not None:
            self.limiter.refused_total += 1
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                detail="too many failed authentications from this address; retry later",
                headers={"Retry-After": str(max(1, math.ceil(retry_s)))},
            )
        if header is None:
            raise _unauthorized("a bearer token is required (Authorization: Bearer <token>)")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        prefix = token_prefix(token) if scheme.lower() == "bearer" else None
        stored = None
        if prefix is not None:
            async with pool.acquire() as conn:
                stored = await tokens.find_token(conn, prefix)
        if (
            stored is None
            or not hmac.compare_digest(stored.token_hash, hash_token(token))
            or stored.revoked
        ):
            self.limiter.fail(address)
            raise _unauthorized("invalid or revoked token")
        await self._touch(pool, stored.prefix)
        return Principal(stored.name, Role(stored.role), stored.prefix, stored.site)

    async def _touch(self, pool: asyncpg.Pool, prefix: str) -> None:
        now_s = self.limiter.clock()
        last = self._touched.get(prefix)
        if last is not None and now_s - last < self.touch_interval_s:
            return
        self._touched[prefix] = now_s
        async with pool.acquire() as conn:
            await tokens.touch_token(conn, prefix, datetime.now(UTC))


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


def get_authenticator(request: Request) -> Authenticator:
    return cast(Authenticator, cast(FastAPI, request.app).state.auth)


def _pool(request: Request) -> asyncpg.Pool:
    from zerocarbon.api.deps import get_pool

    return get_pool(request)


# declares the scheme in the OpenAPI document (the docs' "Authorize" button); the
# header itself is read by Authenticator, which answers the errors
_BEARER = HTTPBearer(auto_error=False, description="zerocarbon tokens create --role ...")


class RoleRequirement:
    """The dependency returned by :func:`require_role`; its ``role`` is inspectable so
    that :func:`check_write_routes` can verify routes."""

    def __init__(self, role: Role) -> None:
        self.role = role

    async def __call__(
        self,
        request: Request,
        _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
    ) -> Principal:
        principal = await get_authenticator(request).authenticate(request, _pool(request))
        if not principal.role.allows(self.role):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"this needs the {self.role.value} role; "
                f"the token has {principal.role.value}",
            )
        return principal


def require_role(role: Role) -> RoleRequirement:
    """Dependency: the request's token must have ``role`` or above."""
    return RoleRequirement(role)


async def read_guard(request: Request) -> None:
    """Dependency of the read routers: needs ``settings.api_read_role`` when set."""
    auth = get_authenticator(request)
    if auth.read_role is not None:
        await RoleRequirement(auth.read_role)(request, None)


@dataclass(frozen=True, slots=True)
class RouteInfo:
    """A route as the app serves it, router prefixes and dependencies included."""

    path: str
    methods: frozenset[str]
    roles: tuple[Role, ...]  # roles its dependencies (at any depth) require


def _roles(dependant: Dependant) -> tuple[Role, ...]:
    found: list[Role] = []
    stack = [dependant]
    while stack:
        d = stack.pop()
        if isinstance(d.call, RoleRequirement):
            found.append(d.call.role)
        stack.extend(d.dependencies)
    return tuple(found)


def api_routes(app: FastAPI) -> list[RouteInfo]:
    """Every HTTP route of ``app``. FastAPI 0.165 keeps included routers as branches
    resolved at request time (``fastapi.routing.iter_route_contexts`` flattens them);
    earlier releases copied the routes into ``app.routes``."""
    iter_contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    out: list[RouteInfo] = []
    if iter_contexts is None:
        for route in app.routes:
            if isinstance(route, APIRoute):
                out.append(
                    RouteInfo(route.path, frozenset(route.methods or ()), _roles(route.dependant))
                )
        return out
    for ctx in iter_contexts(app.routes):
        if isinstance(ctx.original_route, APIRoute):
            out.append(RouteInfo(ctx.path, frozenset(ctx.methods or ()), _roles(ctx.dependant)))
    return out


def unguarded_write_routes(app: FastAPI) -> list[str]:
    """``"METHOD path"`` of every write route that does not need operator or above."""
    out: list[str] = []
    for route in api_routes(app):
        writes = sorted(route.methods & WRITE_METHODS)
        if writes and not any(r.allows(Role.OPERATOR) for r in route.roles):
            out.extend(f"{m} {route.path}" for m in writes)
    return out


def check_write_routes(app: FastAPI) -> None:
    """Raise ValueError if a write route of ``app`` can be called without operator."""
    unguarded = unguarded_write_routes(app)
    if unguarded:
        raise ValueError(
            "write routes must depend on require_role(Role.OPERATOR) or above: "
            + ", ".join(unguarded)
        )
