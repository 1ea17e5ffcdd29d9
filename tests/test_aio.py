"""Stopping tasks on Python 3.11, where asyncio.wait_for can lose a cancellation (gh-86296):
a task that loses one is asked again, a lost cancel is raised after the publish that lost it,
and a TaskGroup's tasks are stopped with their owner."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from edge.aio import cancel_and_wait, honour_cancel, run_until_cancelled


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


async def _lose_one_cancel(seconds: float) -> str:
    """What aiomqtt's publish does on Python 3.11 when a cancel lands as the PUBACK arrives:
    asyncio.wait_for returns the result and the cancel is lost (CPython gh-86296)."""
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(seconds)
    return "published"


async def test_a_cancel_lost_inside_an_awaited_publish_is_raised_after_it():
    async def publish_then_go_on() -> None:
        await honour_cancel(_lose_one_cancel(3600))
        await asyncio.sleep(3600)  # never reached: the lost cancel is raised above

    task = asyncio.create_task(publish_then_go_on())
    await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=5)
    assert done and task.cancelled()


async def test_honour_cancel_returns_the_result_when_no_cancel_came():
    assert await honour_cancel(_lose_one_cancel(0)) == "published"


async def test_a_timeout_around_a_lost_cancel_still_times_out():
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await honour_cancel(_lose_one_cancel(3600))


async def test_tasks_of_a_group_that_lose_their_cancel_are_stopped_with_the_group():
    """A TaskGroup cancels each task once when its owner is cancelled, then waits without
    bound; a task that lost that one cancel kept its owner waiting for good."""
    lost = []

    async def stubborn() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            lost.append(True)
        await asyncio.sleep(3600)

    async def owner() -> None:
        async with asyncio.TaskGroup() as tg:
            await run_until_cancelled([tg.create_task(stubborn()), tg.create_task(stubborn())])

    task = asyncio.create_task(owner())
    await asyncio.sleep(0.01)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=5)
    assert done and task.cancelled()
    assert lost == [True, True]
