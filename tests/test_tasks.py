"""cancel_and_wait: a task that swallows one cancellation is still stopped; supervise:
a task that dies is logged, counted and started again."""

from __future__ import annotations

import asyncio

import pytest

from zerocarbon.tasks import SupervisedState, cancel_and_wait, raise_if_cancelling, supervise


async def test_a_task_that_swallows_its_first_cancellation_is_stopped() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # as a reconnect loop catching an error raised in its place

    async def failing() -> None:
        raise ValueError("broken")

    tasks = [asyncio.create_task(stubborn()), asyncio.create_task(failing())]
    await asyncio.sleep(0)
    results = await asyncio.wait_for(cancel_and_wait(tasks, attempt_s=0.05), timeout=5)
    assert swallowed == 1 and tasks[0].cancelled()
    assert results[0] is None and isinstance(results[1], ValueError)


async def test_a_task_that_never_stops_is_left_after_the_attempts() -> None:
    release = asyncio.Event()

    async def deaf() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass

    task = asyncio.create_task(deaf())
    await asyncio.sleep(0)
    assert await cancel_and_wait([task], attempt_s=0.01, attempts=2) == [None]
    assert not task.done()
    release.set()
    task.cancel()
    await asyncio.wait_for(task, timeout=5)


async def test_a_task_that_dies_is_logged_counted_and_started_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs = 0
    sleeps: list[float] = []
    restarted = asyncio.Event()

    async def collector() -> None:
        nonlocal runs
        runs += 1
        if runs <= 3:
            raise RecursionError("maximum recursion depth exceeded")
        restarted.set()
        await asyncio.sleep(3600)

    async def no_wait(seconds: float) -> None:
        sleeps.append(seconds)

    state = SupervisedState("mqtt collector")
    task = asyncio.create_task(
        supervise("mqtt collector", collector, state, min_backoff_s=1, sleep=no_wait)
    )
    await asyncio.wait_for(restarted.wait(), 5)
    assert state.running and state.restarts == 3 and runs == 4
    assert "RecursionError" in state.last_error
    assert sleeps == [1, 2, 4]  # back-off doubles
    died = [r for r in caplog.records if "mqtt collector stopped" in r.getMessage()]
    assert len(died) == 3 and died[0].exc_info is not None  # the cause, with its traceback
    await cancel_and_wait([task])
    assert not state.running


async def test_a_stop_swallowed_by_wait_for_still_ends_the_loop() -> None:
    """On Python 3.11, wait_for returns instead of raising when its future completes
    in the turn the task is cancelled; the loop notices the pending stop anyway."""
    rounds = 0

    async def publish_forever() -> None:
        nonlocal rounds
        while True:
            rounds += 1
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass  # as wait_for does when the PUBACK arrived in the same turn
            raise_if_cancelling()

    task = asyncio.create_task(publish_forever())
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.wait({task}, timeout=5)
    assert task.cancelled() and rounds == 1
