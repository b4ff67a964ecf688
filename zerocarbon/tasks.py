"""Stopping asyncio tasks for certain."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

log = logging.getLogger(__name__)


async def cancel_and_wait(
    tasks: Sequence[asyncio.Task[None]], *, attempt_s: float = 5.0, attempts: int = 3
) -> list[BaseException | None]:
    """Cancel ``tasks`` and wait for them to end; return each one's error.

    A task can swallow its cancellation: a library that raises another error while
    the ``CancelledError`` unwinds (aiomqtt's disconnect timing out raises
    ``MqttError``), caught by a reconnect loop, turns a stop into a retry. Such a task
    is cancelled again after ``attempt_s`` [s], up to ``attempts`` times; one still
    running after that is logged and left (shutdown never waits for ever).

    Returns
    -------
    list of BaseException or None
        Per task: the exception it ended with, or None when it ended cleanly, was
        cancelled, or is still running.
    """
    pending = {t for t in tasks if not t.done()}
    for _ in range(attempts):
        if not pending:
            break
        for task in pending:
            task.cancel()
        _done, pending = await asyncio.wait(pending, timeout=attempt_s)
    for task in pending:
        log.error("task %s did not stop after %d cancellations", task.get_name(), attempts)
    out: list[BaseException | None] = []
    for task in tasks:
        if not task.done() or task.cancelled():
            out.append(None)
        else:
            out.append(task.exception())
    return out
