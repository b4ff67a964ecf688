"""The center's fence, on real servers: a three-node hub cluster and the leaf nodes of
sites a, b and c, configured by zerocarbon.uplink.nats_config. A site's messages are
sourced into the center's stream; nothing a site sends under another site's subjects
reaches the hub; a site's credentials used directly at a hub are refused everything
but its own subjects, streams at the center included; wrong passwords and leaves
without the hub's CA are refused; a password full of config syntax logs in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import nats
import pytest
from nats.aio.msg import Msg
from nats.js.api import ExternalStream, StorageType, StreamConfig, StreamSource
from nats.js.errors import NotFoundError

from zerocarbon.uplink.leaf import LeafServer, log_tail
from zerocarbon.uplink.nats_config import new_password
from zerocarbon.uplink.subjects import CENTER_STREAM, SITE_STREAM, site_domain

from .nats_support import HubCluster, LinkCutter, NatsLab, require_nats_server, wait_for

NASTY_PASSWORD = 'c"$ZC_X#{}[] // \\ @:/%?'
UNKNOWN_CA = "x509: certificate signed by unknown authority"  # the leaf's TLS handshake error


@dataclass
class Center:
    lab: NatsLab
    cluster: HubCluster
    leaves: dict[str, LeafServer]
    passwords: dict[str, str]
    cutter: LinkCutter  # site c's link


async def _site_stream(leaf: LeafServer) -> None:
    nc = await nats.connect(leaf.client_url)
    await nc.jetstream().add_stream(
        StreamConfig(name=SITE_STREAM, subjects=[f"zc.{leaf.site}.>"], storage=StorageType.FILE)
    )
    await nc.close()


@pytest.fixture(scope="module")
async def center() -> AsyncIterator[Center]:
    binary = require_nats_server()
    passwords = {"a": new_password(), "b": new_password(), "c": NASTY_PASSWORD}
    async with NatsLab(binary) as lab:
        cluster = await lab.hub_cluster(passwords)
        cutter = await lab.link_cutter(cluster)
        leaves = {
            site: await lab.leaf(
                site, password, cutter.leaf_urls if site == "c" else cluster.leaf_urls
            )
            for site, password in passwords.items()
        }
        for site, leaf in leaves.items():
            await _site_stream(leaf)
            await wait_for(
                lambda s=site: cluster.site_jetstream_answers(s),
                f"site {site}'s leaf connected",
                details=cluster.logs,
            )
        worker = lab.track(await cluster.connect_worker())
        sources = [
            StreamSource(
                name=SITE_STREAM,
                external=ExternalStream(
                    api=f"$JS.{site_domain(site)}.API", deliver=f"zcdeliver.{site}"
                ),
            )
            for site in passwords
        ]
        await worker.jetstream().add_stream(
            StreamConfig(name=CENTER_STREAM, sources=sources, num_replicas=3)
        )
        yield Center(lab, cluster, leaves, passwords, cutter)


async def _center_messages(center: Center) -> list[tuple[str, bytes]]:
    """Every message in the center's stream: (subject, data)."""
    worker = center.lab.track(await center.cluster.connect_worker())
    js = worker.jetstream()
    info = await js.stream_info(CENTER_STREAM)
    found = []
    if not info.state.messages:  # nats-server 2.15 answers "bad request" for seq 0
        await worker.close()
        return found
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            msg = await js.get_msg(CENTER_STREAM, seq)
        except NotFoundError:
            continue
        assert msg.subject is not None and msg.data is not None
        found.append((msg.subject, msg.data))
    await worker.close()
    return found


async def _wait_in_center(center: Center, subject: str, data: bytes) -> None:
    async def landed() -> bool:
        return (subject, data) in await _center_messages(center)

    await wait_for(landed, f"{subject} {data!r} in {CENTER_STREAM}", details=center.cluster.logs)


async def test_a_sites_messages_are_sourced_into_the_center(center: Center) -> None:
    for site in ("a", "b", "c"):
        nc = await nats.connect(center.leaves[site].client_url)
        ack = await nc.jetstream().publish(f"zc.{site}.readings", f"from {site}".encode())
        assert ack.stream == SITE_STREAM and ack.domain == site_domain(site)
        await nc.close()
    for site in ("a", "b", "c"):
        await _wait_in_center(center, f"zc.{site}.readings", f"from {site}".encode())


async def test_a_leaf_sending_another_sites_subjects_never_reaches_the_hub(
    center: Center,
) -> None:
    """Leaf a sends b's subjects (readings and the center's deliveries of b's stream),
    then a marker of its own; a worker at the hub listening to all of them gets the
    marker only (one connection keeps its order), and the center's stream holds no
    forgery."""
    worker = center.lab.track(await center.cluster.connect_worker())
    got: list[Msg] = []

    async def collect(msg: Msg) -> None:
        got.append(msg)

    for subject in ("zc.b.>", "zcdeliver.b.>", "zc.a.marker"):
        await worker.subscribe(subject, cb=collect)
    await worker.flush()
    leaf_a = await nats.connect(center.leaves["a"].client_url)
    await leaf_a.publish("zc.b.readings", b"forged by a")
    await leaf_a.publish("zcdeliver.b.x", b"forged by a")
    await leaf_a.flush()

    # the marker is published until it arrives: the hub's interest in zc.a.marker
    # reaches the leaf a moment after the subscription
    async def marker_arrived() -> bool:
        await leaf_a.publish("zc.a.marker", b"after the forgeries")
        await leaf_a.flush()
        return any(m.subject == "zc.a.marker" for m in got)

    await wait_for(marker_arrived, "a's marker at the hub")
    await leaf_a.close()
    assert [m.subject for m in got if m.subject != "zc.a.marker"] == []
    # and a's own message, published after the forgeries, lands while they do not
    nc = await nats.connect(center.leaves["a"].client_url)
    await nc.jetstream().publish("zc.a.readings", b"after the forgeries")
    await nc.close()
    await _wait_in_center(center, "zc.a.readings", b"after the forgeries")
    assert [d for _s, d in await _center_messages(center) if d == b"forged by a"] == []


async def test_site_credentials_at_a_hub_reach_nothing_but_the_sites_own_subjects(
    center: Center,
) -> None:
    errors: list[str] = []

    async def error_cb(exc: Exception) -> None:
        errors.append(str(exc))

    site_a = center.lab.track(
        await center.cluster.connect("a", center.passwords["a"], node="hub2", error_cb=error_cb)
    )
    await site_a.publish("zc.b.readings", b"forged")
    await site_a.publish("$JS.center.API.STREAM.CREATE.X", b'{"name": "X", "subjects": ["zc.>"]}')
    await site_a.publish("zc.a.readings", b"its own")
    await site_a.flush()
    await wait_for(
        lambda: len(errors) >= 2, "two permission violations", details=lambda: str(errors)
    )
    assert errors[0] == 'nats: permissions violation for publish to "zc.b.readings"'
    # the hub maps the center's domain onto its JetStream API before checking
    assert "permissions violation for publish to" in errors[1]
    assert "stream.create.x" in errors[1].lower()
    assert len(errors) == 2  # its own subject went through
    worker = center.lab.track(await center.cluster.connect_worker())
    with pytest.raises(NotFoundError):
        await worker.jetstream().stream_info("X")
    assert "Publish Violation" in center.cluster.processes["hub2"].log_text()


async def test_a_wrong_password_is_refused(center: Center) -> None:
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await center.cluster.connect(
            "a", center.passwords["a"] + "x", allow_reconnect=False, max_reconnect_attempts=0
        )
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await center.cluster.connect(
            "a", center.passwords["b"], allow_reconnect=False, max_reconnect_attempts=0
        )
    impostor = await center.lab.leaf(
        "b", center.passwords["a"], center.cluster.leaf_urls, name="impostor-b"
    )
    await wait_for(
        lambda: "Authorization Violation" in log_tail(impostor.log_path, 200),
        "the impostor refused",
        details=lambda: log_tail(impostor.log_path),
    )
    await impostor.stop()


async def test_a_password_full_of_config_syntax_logs_in(center: Center) -> None:
    """Site c's password has quotes, $, #, braces, a backslash and URL delimiters: its
    leaf is connected (the fixture waited for it) and a direct login works."""
    assert await center.cluster.site_jetstream_answers("c")
    nc = await center.cluster.connect("c", NASTY_PASSWORD, allow_reconnect=False)
    await nc.close()


async def test_readings_wait_at_the_site_while_its_link_is_cut(center: Center) -> None:
    await center.cutter.cut()

    async def link_down() -> bool:
        return not await center.cluster.site_jetstream_answers("c")

    await wait_for(link_down, "site c's link down")
    nc = await nats.connect(center.leaves["c"].client_url)
    await nc.jetstream().publish("zc.c.readings", b"while cut")  # stored at the site
    await nc.close()
    assert (("zc.c.readings", b"while cut")) not in await _center_messages(center)
    await center.cutter.restore()
    await _wait_in_center(center, "zc.c.readings", b"while cut")


async def test_with_tls_only_a_leaf_trusting_the_hubs_ca_connects() -> None:
    binary = require_nats_server()
    async with NatsLab(binary) as lab:
        tls = await lab.tls()
        other_ca = await lab.tls("other")
        password = new_password()
        cluster = await lab.hub_cluster({"a": password, "b": password, "d": password}, tls=tls)
        trusting = await lab.leaf("a", password, cluster.leaf_urls, tls_ca=tls.ca_file)
        await wait_for(lambda: cluster.site_jetstream_answers("a"), "a over TLS")
        assert trusting.running()
        without = await lab.leaf("b", password, cluster.leaf_urls)
        wrong_ca = await lab.leaf("d", password, cluster.leaf_urls, tls_ca=other_ca.ca_file)
        for leaf in (without, wrong_ca):
            await wait_for(
                lambda leaf=leaf: UNKNOWN_CA in log_tail(leaf.log_path, 200),
                f"{leaf.site}'s TLS handshake refused",
                details=lambda leaf=leaf: log_tail(leaf.log_path),  # type: ignore[misc]
            )
        assert not await cluster.site_jetstream_answers("b")
        assert not await cluster.site_jetstream_answers("d")
