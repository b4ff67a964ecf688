"""cancel_and_wait: a task that swallows one cancellation is still stopped."""

from __future__ import annotations

import asyncio

from zerocarbon.tasks import cancel_and_wait


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
