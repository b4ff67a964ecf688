"""Serial pairs for tests: two pseudo-terminals joined by ``socat``.

``socat -d -d pty,raw,echo=0,link=A pty,raw,echo=0,link=B`` makes two ptys and copies
bytes between them both ways: what is written to ``A`` is read from ``B``, like two
ends of a null-modem cable (or a master and a unit on one RS-485 line). socat comes
from Debian's packages; :func:`ensure_socat` installs it with apt-get when it is missing
and the tests run as root on a system with apt-get, and otherwise says why it cannot.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

SOCAT_READY_TIMEOUT_S = 10.0
APT_TIMEOUT_S = 600.0


@dataclass(frozen=True, slots=True)
class SocatInstall:
    """How socat was found: its path, or why it cannot be had; the install's time [s]."""

    path: str | None
    reason: str = ""
    install_s: float | None = None


def ensure_socat() -> SocatInstall:
    """socat's path, installing Debian's package when missing (root and apt-get only)."""
    found = shutil.which("socat")
    if found:
        return SocatInstall(found)
    apt = shutil.which("apt-get")
    if apt is None:
        return SocatInstall(None, "socat is not installed and there is no apt-get to install it")
    if os.geteuid() != 0:
        return SocatInstall(None, "socat is not installed; run `apt-get install -y socat` as root")
    started = time.monotonic()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in ([apt, "install", "-y", "socat"], [apt, "update"], [apt, "install", "-y", "socat"]):
        if args[1] == "update" and shutil.which("socat"):
            break
        subprocess.run(args, env=env, capture_output=True, timeout=APT_TIMEOUT_S, check=False)
    found = shutil.which("socat")
    elapsed_s = time.monotonic() - started
    if found is None:
        return SocatInstall(None, "`apt-get install -y socat` did not install socat", elapsed_s)
    return SocatInstall(found, install_s=elapsed_s)


def _drain(stream: IO[bytes]) -> None:
    with contextlib.suppress(OSError, ValueError):
        for _line in stream:
            pass


class PtyPair:
    """Two linked pseudo-terminals, ``a`` and ``b`` (paths of symbolic links to them).

    Use as a context manager; socat is stopped (and the links removed) at exit.
    """

    def __init__(self, socat: str, folder: Path, name: str = "tty") -> None:
        self.a = str(folder / f"{name}-a")
        self.b = str(folder / f"{name}-b")
        self._socat = socat
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> PtyPair:
        self._process = subprocess.Popen(
            [
                self._socat,
                "-d",
                "-d",
                f"pty,raw,echo=0,link={self.a}",
                f"pty,raw,echo=0,link={self.b}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + SOCAT_READY_TIMEOUT_S
        # socat logs "starting data transfer loop" once both ptys exist.
        assert self._process.stderr is not None
        for raw in self._process.stderr:
            if b"starting data transfer loop" in raw:
                break
            if time.monotonic() > deadline:
                break
        if not (os.path.exists(self.a) and os.path.exists(self.b)):
            self.stop()
            raise RuntimeError(f"socat did not make the pty pair {self.a}, {self.b}")
        # keep reading its log, so that a full pipe never stalls it
        threading.Thread(target=_drain, args=(self._process.stderr,), daemon=True).start()
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()

    def __enter__(self) -> PtyPair:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
