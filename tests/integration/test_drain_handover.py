"""A cluster node that begins to drain while an Acquire waits in its own lease queue (the race in
which placement saw room here just before the slot was taken) hands the Acquire on: it is placed
on another node, not refused. Two in-process nodes (fake engines) over a real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from broker.cluster.records import NodeRecord
from broker.cluster.routing import Router
from broker.leases.tenants import Tenant
from broker.model.options import EngineName
from tests.integration.test_cluster_shutdown import redis, start  # noqa: F401 (fixtures)


async def _until(check: Any, timeout_s: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "not reached in time"
        await asyncio.sleep(0.02)


async def test_an_acquire_in_a_draining_node_s_own_queue_is_placed_on_another_node(
    start: Any,  # noqa: F811 (the fixture imported above)
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b = await start(), await start()  # (capacity 2 each)
    cluster = a.broker.cluster
    assert cluster is not None
    await _until(lambda: len(cluster.nodes) == 2)
    held = [await a.client.acquire() for _ in range(2)]  # A is full; B has room
    # Placement sees room here once (the view of a moment before), so the next Acquire waits
    # in A's own lease queue; after that, placement is as it is.
    placement = Router.placement
    stale = [True]

    async def once_stale(
        self: Router, tenant: Tenant, engine: EngineName, timeout_s: float | None
    ) -> NodeRecord | None:
        if stale and stale.pop():
            return None
        return await placement(self, tenant, engine, timeout_s)

    monkeypatch.setattr(Router, "placement", once_stale)
    waiting = asyncio.create_task(a.client.acquire(timeout=30))
    await _until(lambda: a.broker.leases.queued_count == 1)

    draining = asyncio.create_task(a.broker.shutdown(grace_s=0, drain_s=30))
    lease = await asyncio.wait_for(waiting, 30)  # granted, not refused UNAVAILABLE
    assert b.broker.leases.knows(lease.id) and not a.broker.leases.knows(lease.id)
    assert a.broker.leases.draining and not draining.done()  # (A's leases are still held)
    assert (await lease.release()).released_now
    for kept in held:  # A's last leases: its drain ends
        assert (await kept.release()).released_now
    await asyncio.wait_for(draining, 30)
