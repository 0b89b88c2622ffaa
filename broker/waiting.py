"""Bounded waits that do not wait for the cancelled work to acknowledge its cancellation.

`asyncio.timeout` cancels the work and then waits for it to unwind. A Playwright call whose
browser died under it may never unwind: its cancellation waits for the driver to confirm the
abort. Cleanup paths must not hang on that, so they abandon the work instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")


def abandon(task: asyncio.Future[Any]) -> None:
    """Cancel `task` without waiting for it, and without leaving its error unretrieved."""
    task.cancel()
    task.add_done_callback(lambda done: done.cancelled() or done.exception())


async def bounded(work: Awaitable[T], timeout_s: float) -> T:
    """`work`'s result, or TimeoutError after `timeout_s` with `work` abandoned."""
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait([task], timeout=timeout_s)
    except asyncio.CancelledError:
        abandon(task)
        raise
    if not done:
        abandon(task)
        raise TimeoutError
    return task.result()
