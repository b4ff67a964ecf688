"""Process settings from the environment (``ZEROCARBON_*``) and the command line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from zerocarbon.api.roles import Role


def default_data_dir() -> Path:
    """Where the embedded PostgreSQL and spool live when nothing else is configured.

    As root: /var/lib/zerocarbon (never under /root, see storage.embedded). Otherwise:
    $XDG_DATA_HOME/zerocarbon or ~/.local/share/zerocarbon.
    """
    if os.name == "posix" and os.geteuid() == 0:
        return Path("/var/lib/zerocarbon")
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "zerocarbon"


class Settings(BaseSettings):
    """Runtime settings. Every field can be set as ``ZEROCARBON_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="ZEROCARBON_", frozen=True, extra="ignore")

    database_url: str | None = None  # None: start an embedded PostgreSQL in data_dir
    database_name: str = "zerocarbon"  # database used on the embedded server
    data_dir: Path = Field(default_factory=default_data_dir)
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=1, le=65535)
    live_interval_s: float = Field(default=1.0, gt=0)  # how often /api/v1/live polls [s]
    site_timezone: str = "UTC"  # the site's IANA zone, for "today" on the page
    site_name: str = "zerocarbon"
    site_language: Literal["zh-CN", "en"] = "zh-CN"  # the live page's default language
    api_read_role: Role | None = None  # None: read routes open; else the token role they need
