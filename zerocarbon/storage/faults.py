"""Which database errors mean "the database is away" (retry later, answer 503) rather
than "this request or batch is wrong".

SQLSTATE classes 08 (connection exception), 53 (insufficient resources: disk full, out
of memory, too many connections) and 57 (operator intervention: shutting down, starting
up, a cancelled statement), and 55000 (object not in prerequisite state, e.g. "the
database system is not accepting connections"); or a failure at the socket (connection
refused or reset, a timeout, a connection broken mid-operation). PostgreSQL's
Appendix A lists the codes.
"""

from __future__ import annotations

import asyncpg

_UNAVAILABLE_CLASSES = ("08", "53", "57")
_UNAVAILABLE_STATES = frozenset({"55000"})


def database_unavailable(exc: BaseException) -> bool:
    """Whether an exception means the database cannot be reached or used right now."""
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
        return state[:2] in _UNAVAILABLE_CLASSES or state in _UNAVAILABLE_STATES
    # InternalClientError: the connection broke in the middle of an operation ("cannot
    # switch to state ...") when the server went away during a write
    return isinstance(
        exc, asyncpg.InterfaceError | asyncpg.InternalClientError | OSError | TimeoutError
    )
