"""Real NATS for the uplink tests: a three-node hub cluster and any number of leaf nodes
on loopback, every port chosen at run time, configured by
:mod:`zerocarbon.uplink.nats_config` exactly as a deployment is.

- :class:`NatsLab` (``async with NatsLab() as lab``) owns a scratch folder and every
  process and proxy started through it, and stops and removes them all at the end,
  also when a test fails.
- :class:`HubCluster`: the center's three nodes; :meth:`~HubCluster.kill` (SIGKILL) and
  :meth:`~HubCluster.restart` one node; waits until JetStream has a meta leader.
- :class:`LinkCutter`: a site's WAN link as small TCP proxies (one per hub node) between
  its leaf and the hub's leafnode ports, with :meth:`~LinkCutter.cut` and
  :meth:`~LinkCutter.restore`.
- :func:`make_tls`: a CA and a server certificate for 127.0.0.1 and localhost, made
  with ``trustme`` (pure Python, IP addresses in the subject alternative names in one
  call; the ``openssl`` CLI needs a config file for those and its options differ
  between versions).

nats-server comes from Debian's ``nats-server`` package: :func:`ensure_nats_server`
installs it with apt-get when it is missing and the tests run as root (like
``tests/browser_support.py`` does for chromium) and otherwise says why, so that the
tests skip with that reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx
import nats
import pytest
import trustme
from nats.aio.client import Client as NatsClient

from zerocarbon.netutil import free_tcp_port
from zerocarbon.uplink.leaf import (
    LeafServer,
    NatsServerNotFoundError,
    find_nats_server,
    log_tail,
)
from zerocarbon.uplink.nats_config import (
    HubNode,
    SiteCredential,
    Tls,
    hash_password,
    hub_config,
    new_password,
)
from zerocarbon.uplink.subjects import site_domain

HOST = "127.0.0.1"
APT_TIMEOUT_S = 600.0
TEST_BCRYPT_COST = 4  # bcrypt's lowest: a login costs ~1 ms at the hub, not ~0.1 s
HUB_STORE_BYTES = 256 * 1024 * 1024
LEAF_STORE_BYTES = 64 * 1024 * 1024
UNREACHABLE = f"{HOST}:1"  # connections are refused here at once
PORT_ATTEMPTS = 3  # cluster starts tried with new ports when a picked port was taken
WAIT_S = 20.0  # the longest any wait_for() below waits before failing
POLL_S = 0.02
WORKER_USER = "center"


# --- nats-server on this machine -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NatsServerInstall:
    """How nats-server was found: its path, or why it cannot be had; the install's time
    [s]."""

    path: Path | None
    reason: str = ""
    install_s: float | None = None


def ensure_nats_server() -> NatsServerInstall:
    """nats-server's path, installing Debian's package when missing (root and apt-get
    only; an ``apt-get update`` is tried once if the first install fails)."""
    with contextlib.suppress(NatsServerNotFoundError):
        return NatsServerInstall(find_nats_server())
    apt = shutil.which("apt-get")
    if apt is None:
        return NatsServerInstall(None, "nats-server is not installed and there is no apt-get")
    if os.geteuid() != 0:
        return NatsServerInstall(
            None, "nats-server is not installed; run `apt-get install -y nats-server` as root"
        )
    started = time.monotonic()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt, "install", "-y", "nats-server"]
    for args in (install, [apt, "update"], install):
        subprocess.run(args, env=env, capture_output=True, timeout=APT_TIMEOUT_S, check=False)
        with contextlib.suppress(NatsServerNotFoundError):
            return NatsServerInstall(find_nats_server(), install_s=time.monotonic() - started)
    return NatsServerInstall(
        None,
        "`apt-get install -y nats-server` did not install nats-server",
        time.monotonic() - started,
    )


@functools.cache
def _nats_server_install() -> NatsServerInstall:
    return ensure_nats_server()


def require_nats_server() -> Path:
    """nats-server's path (installed once per run when possible), else the calling test
    or fixture is skipped with the reason."""
    found = _nats_server_install()
    if found.path is None:
        pytest.skip(found.reason)
    return found.path


# --- waiting on a condition ------------------------------------------------------------


async def wait_for(
    condition: Callable[[], Awaitable[bool]] | Callable[[], bool],
    what: str,
    *,
    timeout_s: float = WAIT_S,
    details: Callable[[], str] | None = None,
) -> None:
    """Poll ``condition`` (sync or async) until it is true; AssertionError naming
    ``what`` (and ``details()``) after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            extra = f"\n{details()}" if details is not None else ""
            raise AssertionError(f"not after {timeout_s} s: {what}{extra}")
        await asyncio.sleep(POLL_S)


async def _port_accepts(port: int, host: str = HOST) -> bool:
    try:
        _reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def _ignore_errors(exc: Exception) -> None:
    """nats-py's error callback for clients whose errors the tests do not look at."""


# --- TLS -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files: a CA, and a server certificate it signed for 127.0.0.1 and localhost
    with its key."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def for_hub(self) -> Tls:
        return Tls(str(self.cert_file), str(self.key_file), str(self.ca_file))

    def client_context(self) -> ssl.SSLContext:
        """A client's TLS context trusting the CA."""
        return ssl.create_default_context(cafile=str(self.ca_file))


def make_tls(folder: Path) -> TlsFiles:
    """A new CA and server certificate in ``folder`` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert(HOST, "localhost")
    files = TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server-key.pem")
    ca.cert_pem.write_to_path(str(files.ca_file))
    cert.cert_chain_pems[0].write_to_path(str(files.cert_file))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(files.cert_file), append=True)
    cert.private_key_pem.write_to_path(str(files.key_file))
    files.key_file.chmod(0o600)
    return files


# --- one nats-server process -----------------------------------------------------------


class NatsProcess:
    """A nats-server run on a configuration file, its output in a log file."""

    def __init__(self, name: str, binary: Path, config_path: Path) -> None:
        self.name = name
        self.binary = binary
        self.config_path = config_path
        self.log_path = config_path.with_suffix(".log")
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self.running():
            raise AssertionError(f"{self.name}: already running")
        self._close_log()
        self._log = self.log_path.open("ab")
        self._log.write(f"=== {time.strftime('%H:%M:%S')} start\n".encode())
        self._log.flush()
        self._proc = subprocess.Popen(
            [str(self.binary), "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def check_alive(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            raise AssertionError(
                f"{self.name}: nats-server exited with code {self._proc.returncode}\n"
                f"--- {self.log_path} (tail) ---\n{log_tail(self.log_path)}"
            )

    def kill(self) -> None:
        """SIGKILL; waits for the process."""
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(30)
        self._close_log()

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, SIGKILL after ``timeout_s``."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


# --- the hub ---------------------------------------------------------------------------


class HubCluster:
    """The center's three nats-server nodes on loopback, each with its client, cluster,
    leafnode and monitoring port, configured by :func:`hub_config` with a user per site
    (``sites``: site id -> plain password) and the workers' user :data:`WORKER_USER`."""

    def __init__(
        self,
        folder: Path,
        binary: Path,
        *,
        sites: Mapping[str, str],
        tls: TlsFiles | None = None,
        size: int = 3,
    ) -> None:
        self.folder = folder
        self.binary = binary
        self.sites = dict(sites)
        self.tls = tls
        self.worker_password = new_password()
        self.size = size
        self.nodes = self._new_nodes()
        self.processes: dict[str, NatsProcess] = {}
        self.down: set[str] = set()  # nodes killed on purpose
        self._probe: NatsClient | None = None  # site_jetstream_answers' client

    def config_text(self, node: HubNode) -> str:
        return hub_config(
            node,
            self.nodes,
            worker_user=WORKER_USER,
            worker_password_hash=hash_password(self.worker_password, cost=TEST_BCRYPT_COST),
            sites=[
                SiteCredential(site, hash_password(password, cost=TEST_BCRYPT_COST))
                for site, password in self.sites.items()
            ],
            tls=self.tls.for_hub() if self.tls is not None else None,
            max_store_bytes=HUB_STORE_BYTES,
        )

    def write_configs(self) -> list[Path]:
        paths = []
        for node in self.nodes:
            path = self.folder / f"{node.name}.conf"
            path.write_text(self.config_text(node))
            paths.append(path)
        return paths

    def node(self, name: str) -> HubNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    @property
    def client_urls(self) -> list[str]:
        return [n.client_url for n in self.nodes]

    @property
    def leaf_urls(self) -> list[str]:
        return [n.leaf_url for n in self.nodes]

    @property
    def leaf_addresses(self) -> list[tuple[str, int]]:
        return [(n.host, n.leaf_port) for n in self.nodes]

    def logs(self) -> str:
        return "\n".join(
            f"--- {name} (tail) ---\n{log_tail(p.log_path, 25)}"
            for name, p in self.processes.items()
        )

    def _new_nodes(self) -> list[HubNode]:
        return [
            HubNode(
                name=f"hub{i}",
                host=HOST,
                client_port=free_tcp_port(),
                cluster_port=free_tcp_port(),
                leaf_port=free_tcp_port(),
                monitor_port=free_tcp_port(),
                store_dir=str(self.folder / f"hub{i}" / "jetstream"),
                listen_host=HOST,
                # a site reaches the center only through its link (a LinkCutter): the
                # leafnode address each node tells a connected leaf about leads nowhere,
                # as a center's inside address does from a factory
                leaf_advertise=UNREACHABLE,
            )
            for i in range(1, self.size + 1)
        ]

    async def start(self) -> None:
        """Write the configurations, start every node, wait for a meta leader. A port
        picked free but taken before its node bound it (other tests start servers too)
        gets the cluster new ports and another start."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for attempt in range(PORT_ATTEMPTS):
            for node, path in zip(self.nodes, self.write_configs(), strict=True):
                process = NatsProcess(node.name, self.binary, path)
                self.processes[node.name] = process
                process.start()
            try:
                await self.wait_meta_leader()
                return
            except AssertionError as exc:
                if "address already in use" not in str(exc) or attempt + 1 == PORT_ATTEMPTS:
                    raise
                self.stop()
                self.processes.clear()
                self.nodes = self._new_nodes()

    async def jsz(self, node: HubNode) -> dict[str, Any] | None:
        """The node's ``/jsz`` monitoring page, or None when it does not answer."""
        assert node.monitor_port is not None
        try:
            async with httpx.AsyncClient(timeout=2) as http:
                answer = await http.get(f"http://{HOST}:{node.monitor_port}/jsz")
        except httpx.HTTPError:
            return None
        data: dict[str, Any] = answer.json()
        return data

    async def meta_leader(self, node: HubNode) -> str | None:
        """The meta leader ``node`` knows of (None: none, or it does not answer)."""
        page = await self.jsz(node)
        if page is None:
            return None
        leader = (page.get("meta_cluster") or {}).get("leader")
        return str(leader) if leader else None

    async def wait_meta_leader(self, *, timeout_s: float = WAIT_S) -> str:
        """Wait until every running node knows the same meta leader, itself a running
        node; its name."""
        leaders: list[str | None] = []

        async def agreed() -> bool:
            running = [n for n in self.nodes if n.name not in self.down]
            for node in running:
                self.processes[node.name].check_alive()
            leaders[:] = [await self.meta_leader(n) for n in running]
            names = {n.name for n in running}
            return bool(leaders) and leaders[0] in names and len(set(leaders)) == 1

        await wait_for(agreed, "a JetStream meta leader", timeout_s=timeout_s, details=self.logs)
        assert leaders[0] is not None
        return leaders[0]

    async def kill(self, name: str) -> None:
        """SIGKILL node ``name``."""
        self.down.add(name)
        self.processes[name].kill()

    async def restart(self, name: str) -> None:
        """Start node ``name`` again (after :meth:`kill`) and wait until it knows the
        meta leader."""
        process = self.processes[name]
        process.stop()
        process.start()
        self.down.discard(name)
        node = self.node(name)
        await wait_for(
            lambda: _port_accepts(node.client_port), f"{name} accepting clients", details=self.logs
        )
        await self.wait_meta_leader()

    async def connect(
        self,
        user: str,
        password: str,
        *,
        node: str | None = None,
        error_cb: Callable[[Exception], Awaitable[None]] | None = None,
        **options: Any,
    ) -> NatsClient:
        """A client of the hub (node ``node``, else any) logged in as ``user``."""
        servers = [self.node(node).client_url] if node is not None else self.client_urls
        return await nats.connect(
            servers=servers,
            user=user,
            password=password,
            tls=self.tls.client_context() if self.tls is not None else None,
            error_cb=error_cb or _ignore_errors,
            **options,
        )

    async def connect_worker(self, **options: Any) -> NatsClient:
        """A client of the hub logged in as the center's workers."""
        return await self.connect(WORKER_USER, self.worker_password, **options)

    async def leaf_connection_count(self) -> int:
        """How many leaf connections the running nodes report (``/leafz``)."""
        count = 0
        async with httpx.AsyncClient(timeout=2) as http:
            for node in self.nodes:
                if node.name in self.down:
                    continue
                with contextlib.suppress(httpx.HTTPError):
                    answer = await http.get(f"http://{HOST}:{node.monitor_port}/leafz")
                    count += len(answer.json().get("leafs") or [])
        return count

    async def site_jetstream_answers(self, site: str) -> bool:
        """Whether the center reaches site ``site``'s JetStream over its leaf connection
        (a worker's request to ``$JS.zc-<site>.API.INFO``): the link is up."""
        if self._probe is None or not self._probe.is_connected:
            if self._probe is not None:
                with contextlib.suppress(Exception):
                    await self._probe.close()
            # a site may only answer on $JSC.R.> (where the center's streams take their
            # replies), so the probe's inbox is there too
            self._probe = await self.connect_worker(inbox_prefix="$JSC.R.probe")
        try:
            await self._probe.request(f"$JS.{site_domain(site)}.API.INFO", b"", timeout=0.5)
        except (nats.errors.Error, TimeoutError):
            return False
        return True

    async def close_probe(self) -> None:
        if self._probe is not None:
            with contextlib.suppress(Exception):
                await self._probe.close()
            self._probe = None

    def stop(self) -> None:
        for process in self.processes.values():
            process.stop()


# --- a site's WAN link -----------------------------------------------------------------


class LinkCutter:
    """A site's link to the hub: one TCP proxy on loopback per hub leafnode port.
    Give the leaf :attr:`leaf_urls`; :meth:`cut` closes every connection and refuses
    new ones, :meth:`restore` accepts again on the same ports."""

    def __init__(self, upstreams: Sequence[tuple[str, int]]) -> None:
        self.upstreams = list(upstreams)
        self.ports = [free_tcp_port() for _ in self.upstreams]
        self._servers: list[asyncio.Server] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.accepted = 0  # connections accepted since the start

    @property
    def leaf_urls(self) -> list[str]:
        return [f"nats-leaf://{HOST}:{port}" for port in self.ports]

    @property
    def is_cut(self) -> bool:
        return not self._servers

    async def start(self) -> None:
        await self.restore()

    async def restore(self) -> None:
        """Accept connections again."""
        if self._servers:
            return
        for port, upstream in zip(self.ports, self.upstreams, strict=True):
            server = await asyncio.start_server(
                functools.partial(self._proxy, upstream=upstream), HOST, port, reuse_address=True
            )
            self._servers.append(server)

    async def cut(self) -> None:
        """Close every proxied connection and stop accepting."""
        servers, self._servers = self._servers, []
        for server in servers:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        for server in servers:
            await server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        await self.cut()

    async def _proxy(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: tuple[str, int]
    ) -> None:
        self.accepted += 1
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*upstream)
        except OSError:
            writer.transport.abort()
            self._writers.discard(writer)
            return
        self._writers.add(up_writer)
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        for task in pumps:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.transport.abort()
            self._writers.discard(writer)


# --- everything a test starts ----------------------------------------------------------


class NatsLab:
    """A scratch folder and everything started in it: hub clusters, leaf nodes, link
    cutters. ``async with NatsLab(binary) as lab``; all stopped and removed at exit."""

    def __init__(self, binary: Path) -> None:
        self.binary = binary
        self.folder = Path(tempfile.mkdtemp(prefix="zc-nats-"))
        self._clusters: list[HubCluster] = []
        self._leaves: list[LeafServer] = []
        self._cutters: list[LinkCutter] = []
        self._clients: list[NatsClient] = []

    async def tls(self, name: str = "tls") -> TlsFiles:
        return make_tls(self.folder / name)

    async def hub_cluster(
        self, sites: Mapping[str, str], *, tls: TlsFiles | None = None, name: str = "hub"
    ) -> HubCluster:
        cluster = HubCluster(self.folder / name, self.binary, sites=sites, tls=tls)
        self._clusters.append(cluster)
        await cluster.start()
        return cluster

    def leaf_server(
        self,
        site: str,
        password: str,
        hub_leaf_urls: Sequence[str],
        *,
        tls_ca: Path | None = None,
        name: str | None = None,
    ) -> LeafServer:
        """A leaf node for ``site``, not started."""
        leaf = LeafServer(
            site,
            data_dir=self.folder / (name or f"leaf-{site}"),
            hub_leaf_urls=hub_leaf_urls,
            password=password,
            max_store_bytes=LEAF_STORE_BYTES,
            tls_ca=tls_ca,
            nats_server=self.binary,
        )
        self._leaves.append(leaf)
        return leaf

    async def leaf(
        self,
        site: str,
        password: str,
        hub_leaf_urls: Sequence[str],
        *,
        tls_ca: Path | None = None,
        name: str | None = None,
    ) -> LeafServer:
        """A started leaf node for ``site`` (its own JetStream ready; the link to the hub
        may still be coming up: :meth:`HubCluster.leaf_connected`)."""
        leaf = self.leaf_server(site, password, hub_leaf_urls, tls_ca=tls_ca, name=name)
        await leaf.start()
        return leaf

    async def link_cutter(self, cluster: HubCluster) -> LinkCutter:
        cutter = LinkCutter(cluster.leaf_addresses)
        self._cutters.append(cutter)
        await cutter.start()
        return cutter

    async def client(self, url: str, **options: Any) -> NatsClient:
        """A client closed at the end."""
        options.setdefault("error_cb", _ignore_errors)
        nc = await nats.connect(url, **options)
        self._clients.append(nc)
        return nc

    def track(self, nc: NatsClient) -> NatsClient:
        """Close ``nc`` at the end."""
        self._clients.append(nc)
        return nc

    async def close(self) -> None:
        for nc in self._clients:
            with contextlib.suppress(Exception):
                await nc.close()
        for leaf in self._leaves:
            await leaf.stop()
        for cutter in self._cutters:
            await cutter.close()
        for cluster in self._clusters:
            await cluster.close_probe()
            cluster.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    async def __aenter__(self) -> NatsLab:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
