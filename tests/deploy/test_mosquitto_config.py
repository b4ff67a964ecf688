"""The shipped broker settings close the hole Mosquitto's defaults leave: a subscriber
that is away (a gateway restart) gets every QoS 1 message published meanwhile, where
the default configuration silently keeps only 1000. Real mosquitto processes; skipped
where the binary is not installed."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from zerocarbon.netutil import free_tcp_port

SHIPPED = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "zerocarbon.conf"
MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
)
MESSAGES = 3000  # more than the default per-client queue of 1000

pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed")


@contextlib.contextmanager
def broker(config_text: str, tmp: Path, port: int) -> Iterator[None]:
    conf = tmp / f"mosquitto-{port}.conf"
    conf.write_text(config_text)
    assert MOSQUITTO is not None
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _test_config(text: str, port: int, tmp: Path) -> str:
    """The shipped settings on a free local port, persistence in a temporary folder."""
    text = text.replace("listener 1883", f"listener {port} 127.0.0.1")
    return text.replace("persistence_location /var/lib/mosquitto/", f"persistence_location {tmp}/")


async def _connect(port: int, identifier: str) -> aiomqtt.Client:
    for _ in range(100):
        client = aiomqtt.Client("127.0.0.1", port=port, identifier=identifier, clean_session=False)
        try:
            await client.__aenter__()
            return client
        except aiomqtt.MqttError:
            await asyncio.sleep(0.05)
    raise AssertionError(f"broker on port {port} did not start")


async def _delivered_after_absence(port: int) -> int:
    """A persistent QoS 1 subscriber goes away, MESSAGES are published, it comes back:
    how many does it get?"""
    sub = await _connect(port, "zc-gateway")
    await sub.subscribe("plant/meter", qos=1)
    await sub.__aexit__(None, None, None)
    pub = await _connect(port, "zc-device")
    for i in range(MESSAGES):
        await pub.publish("plant/meter", str(i).encode(), qos=1)
    await pub.__aexit__(None, None, None)
    sub = await _connect(port, "zc-gateway")
    got = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(3):
            async for _message in sub.messages:
                got += 1
                if got == MESSAGES:
                    break
    await sub.__aexit__(None, None, None)
    return got


async def test_default_config_drops_and_shipped_config_keeps_every_message(
    tmp_path: Path,
) -> None:
    port = free_tcp_port()
    defaults = f"listener {port} 127.0.0.1\nallow_anonymous true\n"
    with broker(defaults, tmp_path, port):
        dropped_by_default = await _delivered_after_absence(port)
    port = free_tcp_port()
    with broker(_test_config(SHIPPED.read_text(), port, tmp_path), tmp_path, port):
        kept = await _delivered_after_absence(port)
    assert dropped_by_default < MESSAGES  # the hole: about 1000 arrive
    assert kept == MESSAGES
