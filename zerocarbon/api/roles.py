"""API roles (:mod:`zerocarbon.api.auth`), kept apart so that settings can name one
without importing the web stack."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """API roles, each allowed what the ones below it are: viewer < operator < admin."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def allows(self, required: Role) -> bool:
        """Whether this role may do what ``required`` may."""
        return self.rank >= required.rank


_RANKS = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}
