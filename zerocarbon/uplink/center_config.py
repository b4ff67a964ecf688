"""The center's file (TOML): its database, its NATS cluster, its sites.

``examples/center.toml`` documents every key. Errors name the file and the key path
(``center.toml: sites[2].id: ...``), like the site file's. Secrets are never in the
file: ``*_env`` keys name the environment variables that hold them.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from zerocarbon.config_uplink import check_site_id
from zerocarbon.env_secret import ENV_NAME_PATTERN, secret_from_env

__all__ = ["CenterConfig", "CenterConfigError", "CenterInfo", "CenterSite", "load_center_config"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CenterConfigError(ValueError):
    """The center file cannot be used; the message names the file and the key."""


class CenterHttp(_Frozen):
    host: str = "127.0.0.1"
    port: int = Field(default=8100, ge=1, le=65535)


class CenterInfo(_Frozen):
    name: str = "group energy center"
    # the central PostgreSQL: a URL in the environment variable named here (never in
    # the file); without one, an embedded server in --data-dir (trials only)
    database_url_env: Annotated[str, Field(pattern=ENV_NAME_PATTERN)] = "ZC_CENTER_DATABASE_URL"
    # the center's NATS cluster, client ports (nats://host:4222 or tls://host:4222)
    nats_urls: tuple[str, ...] = ("nats://127.0.0.1:4222",)
    nats_user: str = "center"
    nats_password_env: Annotated[str, Field(pattern=ENV_NAME_PATTERN)] | None = None
    tls_ca: str | None = None  # CA file the cluster's certificates are checked with
    stream_replicas: int = Field(default=3, ge=1, le=5)  # copies of ZC_CENTER in the cluster
    workers: int = Field(default=2, ge=1, le=64)  # ingest worker processes
    fetch_batch: int = Field(default=256, ge=1, le=10_000)  # messages a worker takes at once
    ack_wait_s: float = Field(default=60.0, ge=5)  # unacknowledged this long: redelivered [s]
    stale_after_s: float = Field(default=120.0, gt=0)  # a site silent this long is stale [s]
    # TimescaleDB at the center: raw readings' chunks older than this are compressed
    # (0: never) and dropped (None, the key left out: kept) [days]
    compress_after_days: int = Field(default=7, ge=0)
    retention_days: int | None = Field(default=None, ge=1)
    http: CenterHttp = CenterHttp()

    @field_validator("nats_urls")
    @classmethod
    def _urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("give at least one nats://host:4222")
        for url in value:
            if not url.startswith(("nats://", "tls://")):
                raise ValueError(f"{url!r} must look like nats://host:4222")
        return value

    def password(self, environ: Mapping[str, str]) -> str | None:
        """The workers' NATS password (None: none configured); ValueError naming an
        unset variable."""
        return secret_from_env(environ, self.nats_password_env, "center.nats_password_env")


class CenterSite(_Frozen):
    id: str  # the site's [uplink] site
    name: str = ""
    page_url: str = ""  # the site's own page; its status message may also give it
    # bcrypt hash of the site's password at the hub (zerocarbon center add-site prints
    # a new password and this line); used to write the cluster's configuration
    password_hash: str | None = None

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        return check_site_id(value)


class CenterConfig(_Frozen):
    center: CenterInfo = CenterInfo()
    sites: tuple[CenterSite, ...] = ()
    base_dir: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _unique_sites(self) -> CenterConfig:
        seen: set[str] = set()
        for i, s in enumerate(self.sites):
            if s.id in seen:
                raise ValueError(f"sites[{i}].id: {s.id!r} is listed twice")
            seen.add(s.id)
        return self

    @property
    def site_ids(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.sites)

    def resolve_path(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() or self.base_dir is None else self.base_dir / p


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_center_config(path: Path) -> CenterConfig:
    """Read and check the center file; :class:`CenterConfigError` names what is wrong."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CenterConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise CenterConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        config = CenterConfig.model_validate(data)
    except ValidationError as exc:
        lines = [f"{path}: {_location(e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise CenterConfigError("\n".join(lines)) from exc
    return config.model_copy(update={"base_dir": path.parent})
