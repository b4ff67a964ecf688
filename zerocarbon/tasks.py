"""Stopping asyncio tasks for certain, and keeping long-running ones alive."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

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


@dataclass(slots=True)
class SupervisedState:
    """What :func:`supervise` knows of one long-running task."""

    name: str
    running: bool = False
    restarts: int = 0  # times it ended with an error and was started again
    last_error: str = ""  # the error it last ended with
    down_since: float | None = None  # time.monotonic() of the last crash, until restarted


async def supervise(
    name: str,
    run: Callable[[], Awaitable[None]],
    state: SupervisedState,
    *,
    min_backoff_s: float = 1.0,
    max_backoff_s: float = 60.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Run ``run()`` until cancelled; when it ends with an error (or returns), log the
    cause with its traceback, count it in ``state`` and start it again after a back-off
    doubling from ``min_backoff_s`` to ``max_backoff_s`` [s] (reset after an hour of
    running). A collector that dies is thus never silent, and never gone for good."""
    backoff_s = min_backoff_s
    while True:
        started = time.monotonic()
        state.running = True
        state.down_since = None
        try:
            await run()
        except asyncio.CancelledError:
            state.running = False
            raise
        except Exception as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # an error raised in place of the stop request: the stop still wins
                state.running = False
                raise asyncio.CancelledError from exc
            state.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("%s stopped: %s; restarting in %.0f s", name, state.last_error, backoff_s)
        else:
            state.last_error = "returned"
            log.error("%s returned; restarting in %.0f s", name, backoff_s)
        state.running = False
        state.restarts += 1
        state.down_since = time.monotonic()
        if time.monotonic() - started > 3600:
            backoff_s = min_backoff_s
        await sleep(backoff_s)
        backoff_s = min(backoff_s * 2, max_backoff_s)


def raise_if_cancelling() -> None:
    """Raise CancelledError if the current task has a cancellation pending.

    Python 3.11's ``asyncio.wait_for`` returns the result instead of raising when the
    awaited future completes in the same loop turn as the cancellation (CPython
    gh-86296, fixed in 3.12); aiomqtt's ``publish`` waits for its PUBACK that way and
    pymodbus for its responses. A loop that polls or publishes forever would then never
    stop — and inside a TaskGroup that is already aborting, later cancellations are not
    passed on. The collectors' and the simulator's loops call this once a round, so that
    a swallowed stop request still ends them."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
