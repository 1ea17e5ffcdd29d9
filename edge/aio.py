"""asyncio help for stopping long-running MQTT tasks."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


async def cancel_and_wait(tasks: Iterable[asyncio.Task[object]], *, every_s: float = 0.5) -> None:
    """Cancel tasks and wait until they are done, cancelling again any that carry on.

    Python 3.11's asyncio.wait_for can swallow a cancellation that arrives just as the awaited
    future completes (CPython gh-86296, fixed in 3.12), and aiomqtt awaits every PUBACK through
    it: one cancel is then lost and the task goes on. Asking again is the portable cure.
    """
    pending = {t for t in tasks if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=every_s)
