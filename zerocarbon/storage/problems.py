"""Failures of background storage work, counted by kind and logged once per kind.

A maintenance round or a partition that cannot be made yet is retried later; logging
every retry would flood the log while the database is away. :class:`ProblemLog` logs
the first failure of each kind, counts all of them, and logs once more when that kind
of work succeeds again (so a later failure of the same kind is logged again).
"""

from __future__ import annotations

import logging


class ProblemLog:
    """Failure counts per kind (``"rollups"``, ``"partition"``...), first one logged."""

    def __init__(self, logger: logging.Logger) -> None:
        self._log = logger
        self.counts: dict[str, int] = {}  # failures per kind since start
        self._failing: set[str] = set()  # kinds whose last attempt failed

    def failed(self, kind: str, what: str, exc: BaseException) -> None:
        """Count a failure of ``kind``; log it unless this kind is already failing."""
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if kind in self._failing:
            return
        self._failing.add(kind)
        self._log.warning(
            "%s failed (%s: %s); retried later, further failures of this kind are "
            "counted, not logged",
            what,
            type(exc).__name__,
            exc,
        )

    def succeeded(self, kind: str, what: str) -> None:
        """Note that ``kind`` works (again); logs the recovery of a failing kind."""
        if kind in self._failing:
            self._failing.discard(kind)
            self._log.info("%s works again (%d failures so far)", what, self.counts[kind])

    @property
    def total(self) -> int:
        return sum(self.counts.values())
