"""The bounded buffer between a Run and its stream, and the queue's quota check at the grant."""

from __future__ import annotations

import asyncio

from broker.leases.backpressure import ResultBuffer
from broker.leases.lease import Lease, LeaseSpec
from broker.leases.queue import WaitQueue
from broker.leases.tenants import Tenant
from broker.model.options import EngineName, Isolation
from broker.model.steps.base import StepOutcome


def _outcome(index: int, size: int = 10) -> StepOutcome:
    return StepOutcome(index, "evaluate", json="x" * size)


async def test_a_put_waits_for_the_reader_beyond_the_item_bound() -> None:
    buffer = ResultBuffer(max_items=2, max_bytes=1024)
    waits: list[bool] = []
    await buffer.put(_outcome(0), waits.append)
    await buffer.put(_outcome(1), waits.append)
    third = asyncio.create_task(buffer.put(_outcome(2), waits.append))
    await asyncio.sleep(0.01)
    assert not third.done() and waits == [True] and len(buffer) == 2
    first = await buffer.get()
    assert first is not None and first.index == 0
    await asyncio.wait_for(third, 1)
    assert waits == [True, False] and len(buffer) == 2


async def test_the_byte_bound_holds_but_one_large_result_always_fits() -> None:
    buffer = ResultBuffer(max_items=4, max_bytes=100)
    await buffer.put(_outcome(0, 500), lambda _: None)  # larger than the bound, buffer empty
    second = asyncio.create_task(buffer.put(_outcome(1, 10), lambda _: None))
    await asyncio.sleep(0.01)
    assert not second.done()
    await buffer.get()
    await asyncio.wait_for(second, 1)


async def test_the_end_comes_after_what_is_left() -> None:
    buffer = ResultBuffer(max_items=4, max_bytes=1024)
    await buffer.put(_outcome(0), lambda _: None)
    buffer.end()
    got = await buffer.get()
    assert got is not None and got.index == 0
    assert await buffer.get() is None


async def test_a_waiter_at_its_tenants_max_leases_is_passed_over_in_place() -> None:
    capped, other = Tenant("capped", max_leases=1), Tenant("other")
    held = {"capped": 1, "other": 0}
    queue = WaitQueue(lambda _: None, lambda _: None)

    def spec(tenant: Tenant) -> LeaseSpec:
        return LeaseSpec(EngineName.CHROMIUM, Isolation.CONTEXT, 60, 60, tenant=tenant)

    def make(s: LeaseSpec) -> Lease:
        held[s.tenant.name] += 1
        return Lease(spec=s, granted_at=0.0)

    first = asyncio.create_task(queue.wait(spec(capped), None))
    second = asyncio.create_task(queue.wait(spec(other), None))
    await asyncio.sleep(0)
    slots = [1]
    queue.grant(make, lambda: slots[0] - held["other"], lambda t: held[t.name])
    await asyncio.sleep(0)
    assert second.done() and not first.done()  # the other tenant's waiter took the slot
    assert queue.grantable(lambda t: held[t.name]) == 0 and len(queue) == 1
    held["capped"] = 0  # its lease ended
    slots[0] = 2
    queue.grant(make, lambda: slots[0] - held["other"] - held["capped"], lambda t: held[t.name])
    assert (await asyncio.wait_for(first, 1)).owner == "capped"
