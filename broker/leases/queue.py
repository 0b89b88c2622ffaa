"""The capacity queue: Acquires waiting for a free slot, first in, first out.

Each waiter is bounded by its caller's deadline and leaves the queue at once when the caller gives
up; a slot granted to a waiter that has just given up is handed back, so nobody holds a lease
that no caller will ever use.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from broker.errors import DeadlineExceeded
from broker.leases.lease import Lease, LeaseSpec


@dataclass(eq=False)
class Waiter:
    spec: LeaseSpec
    future: asyncio.Future[Lease] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class WaitQueue:
    def __init__(
        self, on_change: Callable[[int], None], give_back: Callable[[Lease], None]
    ) -> None:
        self._waiters: deque[Waiter] = deque()
        self._on_change = on_change  # told the number waiting whenever it changes
        self._give_back = give_back  # ends a lease granted to a waiter that gave up

    def __len__(self) -> int:
        return sum(1 for waiter in self._waiters if not waiter.future.done())

    def count(self, which: Callable[[LeaseSpec], bool]) -> int:
        """Waiters still waiting whose spec `which` picks."""
        return sum(1 for w in self._waiters if not w.future.done() and which(w.spec))

    async def wait(self, spec: LeaseSpec, timeout_s: float | None) -> Lease:
        """The lease granted to this waiter; DeadlineExceeded once `timeout_s` has passed."""
        waiter = Waiter(spec)
        self._waiters.append(waiter)
        self._on_change(len(self))
        try:
            async with asyncio.timeout(timeout_s):
                return await waiter.future
        except TimeoutError:
            self._abandon(waiter)
            raise DeadlineExceeded("deadline passed while waiting for capacity") from None
        except BaseException:
            self._abandon(waiter)
            raise

    def _abandon(self, waiter: Waiter) -> None:
        if not waiter.future.done():
            waiter.future.cancel()
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)
        if not waiter.future.cancelled() and waiter.future.exception() is None:
            self._give_back(waiter.future.result())
        self._on_change(len(self))

    def grant(
        self, make_lease: Callable[[LeaseSpec], Lease], free_slots: Callable[[], int]
    ) -> None:
        """Hand slots to the longest waiting callers while `free_slots()` says there are some."""
        while self._waiters and free_slots() > 0:
            waiter = self._waiters.popleft()
            if waiter.future.done():  # gave up already
                continue
            waiter.future.set_result(make_lease(waiter.spec))
        self._on_change(len(self))

    def fail_all(self, error: Exception) -> None:
        for waiter in self._waiters:
            if not waiter.future.done():
                waiter.future.set_exception(error)
        self._waiters.clear()
