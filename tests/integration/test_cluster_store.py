"""The cluster's records in a real Redis: first-wins endings, reaping once, quotas, fencing.

Broker nodes here are in-process (a lease table with fake engines); the store is real, because
its atomicity is what the cluster's exactly-once rests on.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.cluster.node import ClusterNode
from broker.cluster.store import ClusterStore
from broker.errors import LimitExceeded, Unavailable
from broker.leases.events import ObserverList
from broker.leases.lease import LeaseSpec, ReleaseReason
from broker.leases.limits import Limits
from broker.leases.table import LeaseTable
from broker.model.options import EngineName, Isolation
from tests.fakes import FakeEngine
from tests.redis_server import RedisServer

DEAD_AFTER_S = 0.4
HEARTBEAT_S = 0.1


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
async def store(redis: RedisServer) -> AsyncIterator[ClusterStore]:
    opened = ClusterStore(redis.url, f"t{os.urandom(4).hex()}")
    yield opened
    await opened.close()


async def grant(store: ClusterStore, lease_id: str, node: str = "n1", tenant: str = "t") -> None:
    await store.grant(lease_id, node, tenant, "ab" * 32, "chromium", "", None)


async def test_concurrent_endings_record_one_outcome_and_answer_it_to_all(
    store: ClusterStore,
) -> None:
    await grant(store, "lease-1")
    reasons = [r.value for r in ReleaseReason] * 3
    results = await asyncio.gather(
        *(
            store.finish("lease-1", reason, 1_000_000 + i, 60, "n1", "t", "ab" * 32, "chromium")
            for i, reason in enumerate(reasons)
        )
    )
    assert sum(r.ended_now for r in results) == 1
    winner = next(r for r in results if r.ended_now)
    assert {(r.reason, r.released_at_us) for r in results} == {
        (winner.reason, winner.released_at_us)
    }
    record = await store.lookup("lease-1")
    assert record is not None and record.reason == winner.reason


async def test_concurrent_reapers_end_each_lease_of_a_dead_node_once(store: ClusterStore) -> None:
    await store.beat("gone", "127.0.0.1:1", 4, 3, 0, ["chromium"], 60_000)
    for i in range(3):
        await grant(store, f"lease-{i}", node="gone")
    await asyncio.sleep(DEAD_AFTER_S + 0.1)
    rounds = await asyncio.gather(*(store.reap(DEAD_AFTER_S, 60) for _ in range(5)))
    ended = [lease for found in rounds for node, lease in found if lease]
    assert sorted(ended) == ["lease-0", "lease-1", "lease-2"]
    assert sum(1 for found in rounds for _, lease in found if not lease) == 1  # declared once
    for i in range(3):
        record = await store.lookup(f"lease-{i}")
        assert record is not None and record.reason == "node_lost"
    assert await store.beat("gone", "127.0.0.1:1", 4, 0, 0, ["chromium"], 60_000) == "dead"
    with pytest.raises(Unavailable, match="declared dead"):
        await grant(store, "lease-late", node="gone")
    assert await store.nodes() == []


async def test_a_tenant_quota_holds_across_nodes(store: ClusterStore) -> None:
    await store.grant("lease-a", "n1", "t", "00" * 32, "chromium", "", 2)
    await store.grant("lease-b", "n2", "t", "00" * 32, "chromium", "", 2)
    with pytest.raises(LimitExceeded, match="across the cluster"):
        await store.grant("lease-c", "n3", "t", "00" * 32, "chromium", "", 2)
    await store.grant("lease-c", "n3", "u", "00" * 32, "chromium", "", 2)  # another tenant
    await store.finish("lease-a", "client_release", 1, 60, "n1", "t", "00" * 32, "chromium")
    await store.grant("lease-d", "n3", "t", "00" * 32, "chromium", "", 2)


async def test_a_short_held_slot_never_shortens_the_longer_ones(store: ClusterStore) -> None:
    # The held slots share one key: a reservation with a short deadline must not expire it
    # (and with it a slot still held for an Acquire with a long one).
    await store.reserve("t", "long", 2, 600_000)
    await store.reserve("t", "short", 2, 50)
    await asyncio.sleep(0.3)  # (6x the short one's deadline)
    assert await store.redis.pttl(f"{store.prefix}:tenant-held:t") > 60_000
    await store.reserve("t", "next", 2, 600_000)  # the short one lapsed; the long one holds
    with pytest.raises(LimitExceeded):
        await store.reserve("t", "over", 2, 600_000)


async def test_an_ending_the_store_lost_is_written_back(store: ClusterStore) -> None:
    finished = await store.finish("lease-x", "ttl_expired", 42, 60, "n1", "t", "cd" * 32, "")
    assert finished.ended_now
    record = await store.lookup("lease-x")
    assert record is not None
    assert (record.reason, record.tenant, record.token_sha256) == ("ttl_expired", "t", "cd" * 32)


async def test_a_lookup_the_reaper_overtakes_answers_the_outcome(
    store: ClusterStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reaper ends a dead node's leases and drops its entry in one script; a lookup that
    read the live record just before it still answers the outcome, not a node without an
    address (found by bench.cluster_soak: a Release forwarded to '')."""
    await store.beat("n1", "127.0.0.1:1", 4, 0, 0, ["chromium"], 60_000)
    await grant(store, "lease-r")
    read = store.redis.hget

    async def reaped_between(*args: Any) -> Any:
        await store.reap(0, 60)  # (silent for 0 s: n1 is dead now)
        return await read(*args)

    monkeypatch.setattr(store.redis, "hget", reaped_between)
    record = await store.lookup("lease-r")
    assert record is not None and record.reason == "node_lost"
    monkeypatch.setattr(store.redis, "hget", read)
    # A node whose entry expired before anyone reaped it: live, and no address to forward to
    # (the forwarding node answers UNAVAILABLE).
    await grant(store, "lease-s", node="n2")
    silent = await store.lookup("lease-s")
    assert silent is not None and not silent.ended and silent.node_address == ""


OPS = st.lists(
    st.tuples(
        st.sampled_from(["grant", "finish", "reap"]),
        st.integers(0, 4),
        st.sampled_from([r.value for r in ReleaseReason]),
    ),
    max_size=30,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS)
async def test_whatever_the_order_an_outcome_once_recorded_never_changes(
    redis: RedisServer, ops: list[tuple[str, int, str]]
) -> None:
    store = ClusterStore(redis.url, f"h{os.urandom(4).hex()}")
    try:
        first: dict[str, str] = {}
        await store.beat("n1", "127.0.0.1:1", 8, 0, 0, ["chromium"], 60_000)
        for op, index, reason in ops:
            lease_id = f"lease-{index}"
            if op == "grant":
                await store.grant(lease_id, "n1", "t", "00" * 32, "chromium", "", None)
            elif op == "finish":
                done = await store.finish(lease_id, reason, 7, 60, "n1", "t", "00" * 32, "")
                assert done.ended_now == (lease_id not in first)
                first.setdefault(lease_id, reason)
                assert done.reason == first[lease_id]
            else:
                await store.reap(3600, 60)  # nobody is silent that long: reaps nothing
            for known, reason_then in first.items():
                record = await store.lookup(known)
                assert record is not None and record.reason == reason_then
        live = {f"lease-{i}" for op, i, _ in ops if op == "grant"} - set(first)
        assert sum(node.leases for node in await store.nodes()) == len(live)
    finally:
        await store.close()


# ----------------------------------------------------------------- nodes


SPEC = LeaseSpec(EngineName.CHROMIUM, Isolation.CONTEXT, ttl_s=600, idle_timeout_s=600)


def node_on(redis: RedisServer, prefix: str) -> tuple[ClusterNode, LeaseTable]:
    from broker.common.clock import LoopClock

    observers = ObserverList()
    table = LeaseTable(
        {EngineName.CHROMIUM: FakeEngine()}, LoopClock(), Limits(capacity=4), observers
    )
    node = ClusterNode(
        ClusterStore(redis.url, prefix),
        table,
        "127.0.0.1:1",
        [EngineName.CHROMIUM],
        HEARTBEAT_S,
        DEAD_AFTER_S,
        60,
    )
    observers.add(node)
    return node, table


async def test_a_node_declared_dead_while_alive_ends_its_leases_node_lost_and_rejoins_empty(
    redis: RedisServer,
) -> None:
    prefix = f"f{os.urandom(4).hex()}"
    (a, a_table), (b, _) = node_on(redis, prefix), node_on(redis, prefix)
    await a.tick()
    lease = await a_table.acquire(SPEC, None)
    await a.record_grant(lease)
    old_id = a.node_id
    await asyncio.sleep(DEAD_AFTER_S + 0.1)  # A is silent (cut off) ...
    await b.tick()
    await asyncio.sleep(DEAD_AFTER_S + 0.1)  # ... and B has been in touch long enough to judge
    await b.tick()
    record = await b.store.lookup(lease.id)
    assert record is not None and record.reason == "node_lost"
    await a.tick()  # A is back: told it is dead
    assert lease.released is not None and lease.released.reason is ReleaseReason.NODE_LOST
    assert a.node_id != old_id and not a.joined
    await a.tick()  # rejoins, empty, under its new id
    assert a.joined and a_table.active_count == 0
    await a_table.wait_all_closed()
    assert {n.node_id for n in await b.store.nodes()} == {a.node_id, b.node_id}
    # Its journal did not overwrite the cluster's outcome.
    record = await b.store.lookup(lease.id)
    assert record is not None and record.reason == "node_lost"
    for node in (a, b):
        await node.leave()


async def test_while_the_store_is_away_grants_are_refused_and_endings_wait_for_it(
    tmp_path: object,
) -> None:
    redis = RedisServer().start()
    node, table = node_on(redis, "away")
    try:
        await node.tick()
        kept = await table.acquire(SPEC, None)
        await node.record_grant(kept)
        redis.stop()
        await node.tick()
        assert not node.store_reachable
        refused = await table.acquire(SPEC, None)
        with pytest.raises(Unavailable, match="cannot be reached"):
            await node.record_grant(refused)
        table.release(refused, ReleaseReason.ACQUIRE_FAILED)
        outcome = table.release(kept, ReleaseReason.CLIENT_RELEASE)
        assert await node.confirm_end(kept.id) is None  # answered locally; written later
        assert node.pending_outcomes == 1
        redis.start()  # empty
        await node.tick()
        assert node.pending_outcomes == 0
        record = await node.store.lookup(kept.id)
        assert record is not None and record.reason == outcome.reason.value
        assert await node.store.lookup(refused.id) is None  # never known cluster-wide
    finally:
        await node.leave()
        redis.stop()
