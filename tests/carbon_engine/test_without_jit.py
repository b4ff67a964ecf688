"""The balance kernel and the whole engine once more with numba's JIT off: every
``@njit`` function then runs as the CPython code it is written as, so the compiled and
the interpreted forms are both held to the hand-computed results (including the month
computed to the gram)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def test_balance_and_engine_without_jit() -> None:
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    modules = ("test_balance.py", "test_engine.py", "test_month_engine.py")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        + [str(HERE / m) for m in modules],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and " failed" not in done.stdout
