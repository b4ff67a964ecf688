"""The center's JetStream objects: the stream that sources every site, and the durable
pull consumer the ingest workers share.

:data:`~zerocarbon.uplink.subjects.CENTER_STREAM` keeps what it sourced for
``max_age_s`` (limits retention, a week by default: the center's database can be
refilled from it); the workers' consumer tracks what they acknowledged, which they do
once a message is committed in the central database. It has no subjects of its own;
it *sources* each site's stream from the site's JetStream domain
(``$JS.zc-<site>.API``), delivered over the site's leaf connection on
``zcdeliver.<site>`` (the only delivery subject the site's credentials allow it to
publish). JetStream keeps each source's position, so a site back after a WAN cut is
resumed where it stopped, in order [1]_.

.. [1] NATS docs, "JetStream > Source and Mirror Streams" and "Leaf Nodes >
   JetStream domains" (docs.nats.io).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Mapping, Sequence
from typing import Any

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    ExternalStream,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamSource,
)

from zerocarbon.uplink.center_config import CenterConfig
from zerocarbon.uplink.subjects import (
    CENTER_CONSUMER,
    CENTER_STREAM,
    SITE_STREAM,
    deliver_subject,
    site_domain,
)

__all__ = ["center_nats_options", "ensure_center_stream", "site_source"]

log = logging.getLogger(__name__)

DEFAULT_MAX_AGE_S = 7 * 86_400.0  # what ZC_CENTER keeps of what it sourced [s]
MAX_ACK_PENDING = 20_000  # messages out to the workers, unacknowledged, at most


def site_source(site: str) -> StreamSource:
    """The source of one site's stream, from its own JetStream domain."""
    return StreamSource(
        name=SITE_STREAM,
        external=ExternalStream(api=f"$JS.{site_domain(site)}.API", deliver=deliver_subject(site)),
    )


def center_nats_options(config: CenterConfig, environ: Mapping[str, str]) -> dict[str, Any]:
    """``nats.connect`` keyword arguments for the center's own connections."""
    info = config.center
    options: dict[str, Any] = {
        "servers": list(info.nats_urls),
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 1.0,
        "connect_timeout": 3.0,
    }
    password = info.password(environ)
    if password is not None:
        options["user"] = info.nats_user
        options["password"] = password
    if info.tls_ca:
        context = ssl.create_default_context(cafile=str(config.resolve_path(info.tls_ca)))
        options["tls"] = context
    return options


async def ensure_center_stream(
    js: JetStreamContext,
    sites: Sequence[str],
    *,
    replicas: int,
    ack_wait_s: float,
    max_age_s: float = DEFAULT_MAX_AGE_S,
) -> None:
    """Create or update the center's stream (one source per site, in ``sites``' order,
    kept ``max_age_s`` [s]) and the workers' durable consumer."""
    config = StreamConfig(
        name=CENTER_STREAM,
        retention=RetentionPolicy.LIMITS,
        max_age=max_age_s,
        storage=StorageType.FILE,
        num_replicas=replicas,
        sources=[site_source(s) for s in sites],
    )
    try:
        info = await js.stream_info(CENTER_STREAM)
    except nats.js.errors.NotFoundError:
        await js.add_stream(config)
        log.info("created the stream %s sourcing %d sites", CENTER_STREAM, len(sites))
    else:
        have = [s.external.api if s.external else "" for s in info.config.sources or []]
        want = [s.external.api if s.external else "" for s in config.sources or []]
        if have != want:
            await js.update_stream(config)
            log.info("the stream %s now sources %d sites", CENTER_STREAM, len(sites))
    try:
        await js.consumer_info(CENTER_STREAM, CENTER_CONSUMER)
    except nats.js.errors.NotFoundError:
        await js.add_consumer(
            CENTER_STREAM,
            ConsumerConfig(
                durable_name=CENTER_CONSUMER,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=ack_wait_s,
                max_ack_pending=MAX_ACK_PENDING,
                max_waiting=512,
            ),
        )
