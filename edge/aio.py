"""asyncio help for stopping long-running MQTT tasks.

Python 3.11's asyncio.wait_for can swallow a cancellation that arrives just as the awaited
future completes (CPython gh-86296, fixed in 3.12), and aiomqtt awaits every PUBACK through it.
A task that lost its cancel goes on; worse, its cancel count stays raised, so every
`asyncio.timeout` it enters afterwards turns its own expiry into TimeoutError, and a loop that
retries on TimeoutError then never stops (a kiosk's sync loop asked "hello" forever while its
daemon waited for it to stop). Two cures, used together: `honour_cancel` around each awaited
publish, and `cancel_and_wait`, which asks again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import TypeVar

T = TypeVar("T")


async def cancel_and_wait(tasks: Iterable[asyncio.Task[object]], *, every_s: float = 0.5) -> None:
    """Cancel tasks and wait until they are done, cancelling again any that carry on."""
    pending = {t for t in tasks if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=every_s)


async def honour_cancel(awaitable: Awaitable[T]) -> T:
    """Await `awaitable`; if this task was asked to cancel meanwhile and the cancel was lost
    inside it (gh-86296), raise CancelledError now instead of carrying on."""
    task = asyncio.current_task()
    before = task.cancelling() if task is not None else 0
    result = await awaitable
    if task is not None and task.cancelling() > before:
        raise asyncio.CancelledError
    return result


async def run_until_cancelled(tasks: Iterable[asyncio.Task[object]]) -> None:
    """The body of a TaskGroup that owns `tasks` for good: wait on them; when cancelled (a stop,
    or a sibling's failure), stop them with `cancel_and_wait` before the group's own exit, which
    cancels each task only once and would wait forever on one that lost that cancel."""
    children = list(tasks)
    try:
        await asyncio.wait(children)
    except asyncio.CancelledError:
        while True:  # asked again while stopping them: keep stopping them, then stop
            try:
                await cancel_and_wait(children)
                break
            except asyncio.CancelledError:
                continue
        raise
