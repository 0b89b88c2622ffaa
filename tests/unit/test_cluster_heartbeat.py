"""A node's heartbeat ends at shutdown even when the Redis client swallows the cancel."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from broker.cluster.node import ClusterNode
from broker.cluster.store import ClusterStore
from broker.common.clock import LoopClock
from broker.leases.limits import Limits
from broker.leases.table import LeaseTable


class SwallowingStore:
    """A store whose beat, like redis-py's client at times, finishes despite a cancel."""

    def __init__(self) -> None:
        self.beats = 0
        self.in_beat = asyncio.Event()
        self.later_beats: asyncio.Semaphore | None = None

    async def beat(self, *args: Any) -> str:
        self.beats += 1
        self.in_beat.set()
        if self.later_beats is not None:
            self.later_beats.release()
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            pass  # swallowed: the call finishes as if nothing happened
        finally:
            self.in_beat.clear()
        return "dead"  # (fenced: the tick ends there)


async def _node(store: SwallowingStore) -> ClusterNode:
    leases = LeaseTable({}, LoopClock(), Limits(capacity=1))
    return ClusterNode(cast(ClusterStore, store), leases, "127.0.0.1:1", [], 0.001, 1.0, 60.0)


async def test_stop_ends_the_heartbeat_a_swallowed_cancel_would_not() -> None:
    store = SwallowingStore()
    node = await _node(store)
    beating = asyncio.create_task(node.run_forever())
    await store.in_beat.wait()
    beating.cancel()  # a cancel alone: lost in the beat, the loop goes on
    store.later_beats = asyncio.Semaphore(0)
    for _ in range(3):  # three more beats
        await store.later_beats.acquire()
    assert not beating.done()
    node.stop()
    await asyncio.wait({beating}, timeout=5)  # (not wait_for: its cancel would be lost too)
    assert beating.done()
