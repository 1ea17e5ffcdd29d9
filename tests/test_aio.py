"""Stopping tasks: a task that loses one cancellation (as Python 3.11's wait_for can make it
do) is asked again until it stops."""

from __future__ import annotations

import asyncio

from edge.aio import cancel_and_wait


async def test_a_task_that_swallows_one_cancel_is_still_stopped():
    swallowed = []

    async def stubborn() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            swallowed.append(True)  # lost, as gh-86296 loses it
        await asyncio.sleep(3600)

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    async with asyncio.timeout(5):
        await cancel_and_wait([task], every_s=0.05)
    assert task.cancelled()
    assert swallowed == [True]
