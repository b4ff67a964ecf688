"""A local MQTT broker (amqtt) for the demo and for tests on machines without one.

Bound to one loopback address and port, anonymous, with amqtt's logging and $SYS
plugins off. Production sites use their own broker (Mosquitto, EMQX, ...).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

log = logging.getLogger(__name__)


@asynccontextmanager
async def local_broker(host: str = "127.0.0.1", port: int = 1883) -> AsyncIterator[str]:
    """Run a broker for the duration of the context; yields its ``mqtt://`` URL."""
    from amqtt.broker import Broker

    for name in ("amqtt", "transitions"):
        logging.getLogger(name).setLevel(logging.WARNING)
    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {
            "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
        },
    }
    broker = Broker(config)
    await broker.start()
    url = f"mqtt://{host}:{port}"
    log.info("local MQTT broker listening on %s", url)
    try:
        yield url
    finally:
        await broker.shutdown()
