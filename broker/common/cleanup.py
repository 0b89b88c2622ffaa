"""Cleanup that finishes: bounded waits, shielded waits, and a set of owned background tasks.

`asyncio.timeout` cancels the work and then waits for it to unwind. A Playwright call whose
browser died under it may never unwind: its cancellation waits for the driver to confirm the
abort. Cleanup paths must not hang on that, so they abandon the work instead.

Every background task belongs to a `TaskSet`, whose owner awaits or cancels it on the way out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger("broker.cleanup")


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


async def await_shielded(task: asyncio.Future[Any], timeout_s: float) -> None:
    """Wait for `task` through any number of cancellations of the caller, up to `timeout_s`.

    Past `timeout_s` the task is abandoned (cancelled, not awaited), so work that overran its
    bound cannot go on touching the browser after the caller has moved on. A failure of the task
    is logged, not raised: cleanup reports, it does not fail its caller. A cancellation of the
    caller is re-raised once the wait is over.
    """
    cancelled = False
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout_s
    while not task.done():
        remaining = give_up - loop.time()
        if remaining <= 0:
            log.warning("cleanup did not finish within %.1fs; abandoned", timeout_s)
            abandon(task)
            break
        try:
            await asyncio.wait([task], timeout=remaining)
        except asyncio.CancelledError:
            cancelled = True
    if task.done() and not task.cancelled():
        exc = task.exception()
        if exc is not None:
            log.warning("cleanup failed: %r", exc)
    if cancelled:
        raise asyncio.CancelledError


class TaskSet:
    """Background tasks with one owner: started here, tracked until done, awaited together.

    A task leaves the set when it finishes; `wait()` returns once the set is empty, including
    tasks started while it waited.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Future[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        return self.track(asyncio.get_running_loop().create_task(work))

    def track(self, task: asyncio.Task[T]) -> asyncio.Task[T]:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[asyncio.Future[Any]]:
        return iter(list(self._tasks))

    async def wait(self) -> None:
        """Until every task (also those started meanwhile) is done; their errors are dropped."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def cancel(self) -> None:
        """Cancel every task and wait for them to finish."""
        for task in list(self._tasks):
            task.cancel()
        await self.wait()
