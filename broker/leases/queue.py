"""The capacity queue: Acquires waiting for a free slot, first in, first out.

A waiter whose tenant holds its `max_leases` is passed over when slots are handed out (its quota
is checked again at the grant, not only when it queued): it keeps its place and its deadline, and
the waiters behind it, of other tenants, are served first. Each waiter is bounded by its caller's deadline and leaves the queue at once when the caller gives
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
from broker.leases.tenants import Tenant

# How many leases a tenant holds now (the lease table counts them).
HeldBy = Callable[[Tenant], int]


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

    def grantable(self, held_by: HeldBy) -> int:
        """Waiters that a free slot would go to now: their tenant is below its max_leases."""
        return self.count(lambda spec: _below_quota(spec.tenant, held_by))

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
        self,
        make_lease: Callable[[LeaseSpec], Lease],
        free_slots: Callable[[], int],
        held_by: HeldBy,
    ) -> None:
        """Hand slots to the longest waiting callers while `free_slots()` says there are some,
        passing over (in place) those whose tenant is at its max_leases."""
        passed_over: list[Waiter] = []
        while self._waiters and free_slots() > 0:
            waiter = self._waiters.popleft()
            if waiter.future.done():  # gave up already
                continue
            if not _below_quota(waiter.spec.tenant, held_by):
                passed_over.append(waiter)
                continue
            waiter.future.set_result(make_lease(waiter.spec))
        self._waiters.extendleft(reversed(passed_over))
        self._on_change(len(self))

    def fail_all(self, error: Exception) -> None:
        for waiter in self._waiters:
            if not waiter.future.done():
                waiter.future.set_exception(error)
        self._waiters.clear()


def _below_quota(tenant: Tenant, held_by: HeldBy) -> bool:
    return tenant.max_leases is None or held_by(tenant) < tenant.max_leases
