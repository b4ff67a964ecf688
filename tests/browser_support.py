"""A real browser for tests: Debian's chromium driven by Playwright.

Playwright's own browser download needs the internet, which factory test benches (and
this project's CI) do not have, so the tests drive the distribution's chromium through
``executable_path``. chromium comes from Debian's packages: :func:`ensure_chromium`
installs it with apt-get when it is missing and the tests run as root on a system with
apt-get (about one to two minutes), and otherwise says why it cannot, so that the
tests skip with that reason. It installs a Chinese font too (WenQuanYi Micro Hei, 4 MB)
when fontconfig knows none: a minimal system has no CJK glyphs, and the page's Chinese
would be drawn as empty boxes in the screenshots (a wall screen in a Chinese factory has
its system's CJK font; the page names the usual ones).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass

APT_TIMEOUT_S = 900.0
CHROMIUM_NAMES = ("chromium", "chromium-browser")
CJK_FONT_PACKAGE = "fonts-wqy-microhei"
# headless and quiet: no sandbox (root in a container), no GPU, no calls home
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


@dataclass(frozen=True, slots=True)
class ChromiumInstall:
    """How chromium was found: its path, or why it cannot be had; the install's time [s]."""

    path: str | None
    reason: str = ""
    install_s: float | None = None


def _which_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _has_cjk_font() -> bool:
    fc_list = shutil.which("fc-list")
    if fc_list is None:
        return False
    found = subprocess.run(
        [fc_list, ":lang=zh", "family"], capture_output=True, text=True, check=False
    )
    return bool(found.stdout.strip())


def _missing_packages() -> list[str]:
    missing = [] if _which_chromium() else ["chromium"]
    return missing + ([] if _has_cjk_font() else [CJK_FONT_PACKAGE])


def ensure_chromium() -> ChromiumInstall:
    """chromium's path, installing Debian's package (and a CJK font) when missing (root
    and apt-get only)."""
    missing = _missing_packages()
    if not missing:
        return ChromiumInstall(_which_chromium())
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        found = _which_chromium()
        if found:  # without a CJK font the Chinese screenshots show boxes, nothing fails
            return ChromiumInstall(found)
        how = "there is no apt-get" if apt is None else "run `apt-get install -y chromium` as root"
        return ChromiumInstall(None, f"chromium is not installed; {how}")
    started = time.monotonic()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt, "install", "-y", "--no-install-recommends", *missing]
    for args in (install, [apt, "update"], install):
        if args[1] == "update" and not _missing_packages():
            break
        subprocess.run(args, env=env, capture_output=True, timeout=APT_TIMEOUT_S, check=False)
    found = _which_chromium()
    elapsed_s = time.monotonic() - started
    if found is None:
        return ChromiumInstall(
            None, "`apt-get install -y chromium` did not install chromium", elapsed_s
        )
    return ChromiumInstall(found, install_s=elapsed_s)
