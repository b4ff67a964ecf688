"""``[uplink]`` of the site file: sending the site's data to its group's center.

The gateway runs its own NATS server as a leaf node of the center's cluster (its own
JetStream domain ``zc-<site>``), publishes the site's stored readings, hourly results,
alerts, device events and issued accounts into a local JetStream stream, and the center
sources that stream whenever the WAN is up (``docs/center.md``). ``examples/uplink.toml``
documents every key. ``zerocarbon run --uplink URL`` sets ``hub_urls`` on the command
line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, field_validator

from zerocarbon.env_secret import ENV_NAME_PATTERN, secret_from_env

__all__ = ["UplinkConfig", "check_hub_url", "check_site_id"]

_SITE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def check_site_id(site: str) -> str:
    """``site`` when it is a valid site id (lower-case letters, digits, ``-``, ``_``;
    at most 63 characters, starting with a letter or digit), else ValueError."""
    if not _SITE_ID.match(site):
        raise ValueError(
            f"site id {site!r} must be 1 to 63 lower-case letters, digits, '-' or '_', "
            "starting with a letter or digit (it names the site's NATS subjects)"
        )
    return site


class UplinkConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # the site's id at the center: its subjects are zc.<site>.*, its leaf node's user
    # name; lower-case letters, digits, '-' and '_' (zerocarbon.uplink.subjects)
    site: str
    # the center cluster's leaf node ports, nats-leaf://host:7422 (one per node);
    # empty: no uplink unless ``zerocarbon run --uplink`` gives them
    hub_urls: tuple[str, ...] = ()
    # the NAME of the environment variable holding the site's password at the center
    password_env: Annotated[str, Field(pattern=ENV_NAME_PATTERN)] | None = None
    tls_ca: str | None = None  # CA file the center's certificates are checked with
    # an existing local NATS server with JetStream (nats://127.0.0.1:4222) to publish to;
    # empty: the gateway starts its own leaf node (nats-server) in <data dir>/nats
    local_url: str | None = None
    nats_server: str | None = None  # the nats-server binary (default: found on PATH)
    # how much the local stream may hold while the WAN is down [MiB]; when full, new
    # data waits in the outbox, then is counted as not sent
    max_backlog_mib: int = Field(default=10_240, ge=16)
    outbox_quota_mib: int = Field(default=1_024, ge=16)  # readings waiting for the stream [MiB]
    page_url: str = ""  # this site's own live page, for the group page's drill-down
    status_interval_s: float = Field(default=30.0, gt=0)  # heartbeat to the center [s]
    mirror_interval_s: float = Field(default=5.0, gt=0)  # hourly rows, alerts, events [s]
    # stored readings wait at most this long to be joined into fuller messages (a
    # message's costs, in JetStream and at the center, are paid per message) [s]
    message_interval_s: float = Field(default=5.0, ge=0, le=300)

    @field_validator("site")
    @classmethod
    def _valid_site(cls, value: str) -> str:
        return check_site_id(value)

    @field_validator("hub_urls")
    @classmethod
    def _valid_hub_urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for url in value:
            check_hub_url(url)
        return value

    @field_validator("local_url")
    @classmethod
    def _valid_local_url(cls, value: str | None) -> str | None:
        if value is not None:
            parsed = urlparse(value)
            if parsed.scheme not in ("nats", "tls") or not parsed.hostname:
                raise ValueError("must look like nats://host:port")
        return value

    def password(self, environ: Mapping[str, str]) -> str | None:
        """The site's password from ``environ`` (None: none configured); an unset
        variable is a :class:`ValueError` naming it."""
        return secret_from_env(environ, self.password_env, "uplink.password_env")


def check_hub_url(url: str) -> str:
    """``url`` when it is a leaf node URL of the center (``nats-leaf://host:port``,
    ``tls://`` or ``nats://`` also accepted), else ValueError naming it."""
    parsed = urlparse(url)
    if parsed.scheme not in ("nats-leaf", "nats", "tls") or not parsed.hostname:
        raise ValueError(f"{url!r} must look like nats-leaf://host:7422")
    if parsed.username or parsed.password:
        raise ValueError(f"{url!r}: give the password with uplink.password_env, not in the URL")
    return url
