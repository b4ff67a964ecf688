"""Deployment tools for tests: Debian's ``docker-compose`` on demand.

``docker-compose config`` (Debian's docker-compose 1.29.2) reads, merges, interpolates
and validates compose files against the Compose file schema without a Docker daemon.
:func:`ensure_docker_compose` installs the package with apt-get when it is missing and the
tests run as root on a system with apt-get (about 20 s here), and otherwise says why it
cannot, like ``tests/serial_support.py`` does for socat.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass

APT_TIMEOUT_S = 600.0


@dataclass(frozen=True, slots=True)
class ToolInstall:
    """How a tool was found: its path, or why it cannot be had; the install's time [s]."""

    path: str | None
    reason: str = ""
    install_s: float | None = None


def ensure_apt_tool(command: str, package: str) -> ToolInstall:
    """``command``'s path, installing Debian's ``package`` when missing (root and apt-get
    only; an ``apt-get update`` is tried once if the first install fails)."""
    found = shutil.which(command)
    if found:
        return ToolInstall(found)
    apt = shutil.which("apt-get")
    if apt is None:
        return ToolInstall(None, f"{command} is not installed and there is no apt-get")
    if os.geteuid() != 0:
        return ToolInstall(
            None, f"{command} is not installed; run `apt-get install -y {package}` as root"
        )
    started = time.monotonic()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in ([apt, "install", "-y", package], [apt, "update"], [apt, "install", "-y", package]):
        if args[1] == "update" and shutil.which(command):
            break
        subprocess.run(args, env=env, capture_output=True, timeout=APT_TIMEOUT_S, check=False)
    found = shutil.which(command)
    elapsed_s = time.monotonic() - started
    if found is None:
        return ToolInstall(
            None, f"`apt-get install -y {package}` did not install {command}", elapsed_s
        )
    return ToolInstall(found, install_s=elapsed_s)


def ensure_docker_compose() -> ToolInstall:
    """Debian's ``docker-compose`` (the standalone 1.x tool), installed on demand."""
    return ensure_apt_tool("docker-compose", "docker-compose")
