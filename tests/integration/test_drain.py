"""Scale-down never kills a live lease: a cluster node that gets SIGTERM drains (docs/cluster.md#
draining-a-node). Three broker processes with real browsers on a real Redis.

While node A drains, its health is NOT_SERVING and GetStatus elsewhere shows it draining; its
leases go on running until they are released or its drain deadline passes; Acquires sent to it,
and the one that was waiting at it for capacity, are granted by the other nodes; the lease left at
the deadline ends exactly once, `drained`, and a late Release anywhere gets that outcome; and none
of A's browser processes outlive it.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from browserbroker import steps
from browserbroker.v1 import broker_pb2 as pb
from tests.cluster_support import Cluster
from tests.redis_server import RedisServer

pytestmark = pytest.mark.browser

# A's drain deadline: long enough for what the test does during the drain on a loaded machine
# (`during_drain_s`: 1.4 s measured on 2 cores at a load average of 23, so over 4x headroom).
DRAIN_S = 6.0
# What follows the deadline: closing the browsers, writing the outcomes, stopping the server.
STOP_SLACK_S = 30.0


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    redis = RedisServer().start()
    formed = Cluster(redis, capacity=2)
    try:
        formed.start_node("a", BROKER_DRAIN_TIMEOUT_S=str(DRAIN_S), BROKER_SHUTDOWN_GRACE_S="0")
        for name in ("b", "c"):
            formed.start_node(name)
        await formed.wait_formed()
        yield formed
    finally:
        await formed.stop()
        redis.stop()


async def acquire_on(cluster: Cluster, name: str, timeout: float = 60) -> pb.AcquireResponse:
    return await cluster.nodes[name].client.stub.Acquire(pb.AcquireRequest(), timeout=timeout)


async def run_on(cluster: Cluster, name: str, lease: pb.AcquireResponse) -> pb.StepResult:
    call = cluster.nodes[name].client.stub.Run(
        pb.RunRequest(lease_id=lease.lease_id, token=lease.token, steps=[steps.evaluate("6 * 7")]),
        timeout=30,
    )
    (answer,) = [response async for response in call]
    return answer.step


async def release_on(cluster: Cluster, name: str, lease: pb.AcquireResponse) -> Any:
    return await cluster.nodes[name].client.stub.Release(
        pb.ReleaseRequest(lease_id=lease.lease_id, token=lease.token), timeout=30
    )


async def holder(cluster: Cluster, lease: pb.AcquireResponse, asking: str = "b") -> str:
    """The name of the node whose browser holds the lease (the store's record of it)."""
    records = await cluster.records()
    node_id = records[lease.lease_id]["node"]
    addresses = {node.id: node.address for node in (await cluster.status(asking)).cluster.nodes}
    names = {node.process.address: name for name, node in cluster.nodes.items()}
    return names[addresses[node_id]]


async def queue_length(cluster: Cluster) -> int:
    store: Any = aioredis.Redis.from_url(cluster.redis.url, decode_responses=True)
    try:
        return int(await store.zcard(f"{cluster.prefix}:queue"))
    finally:
        await store.aclose()


async def until(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        await asyncio.sleep(0.05)


def released_in_log(cluster: Cluster, name: str, lease_id: str) -> list[str]:
    """The reasons node `name`'s log gives for ending `lease_id` (one line per release)."""
    reasons = []
    for line in cluster.nodes[name].process.log().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("msg") == "lease released" and entry.get("lease_id") == lease_id:
            reasons.append(entry.get("reason"))
    return reasons


async def test_a_draining_node_keeps_its_leases_until_its_deadline_and_hands_on_acquires(
    cluster: Cluster,
) -> None:
    a = cluster.nodes["a"]
    # A holds two leases: one finishes during the drain, one is left at its deadline.
    finishing = await acquire_on(cluster, "a")
    left = await acquire_on(cluster, "a")
    # B and C are full too, so the next Acquire sent to A waits in the cluster's queue.
    others = {name: [await acquire_on(cluster, name) for _ in range(2)] for name in ("b", "c")}
    assert {await holder(cluster, lease) for lease in (finishing, left)} == {"a"}
    assert [await holder(cluster, lease) for lease in others["b"]] == ["b", "b"]
    queued = asyncio.create_task(acquire_on(cluster, "a", timeout=120))

    async def waiting() -> bool:
        return await queue_length(cluster) == 1

    await until(waiting, 30, "the Acquire sent to A waits in the cluster's queue")

    cluster.check_browsers_counted("a")
    cluster.signal("a", signal.SIGTERM)
    stopped_at = time.monotonic()

    # Readiness goes NOT_SERVING at once; A still answers for its leases.
    health = health_pb2_grpc.HealthStub(a.client.channel)
    check = await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert check.status == health_pb2.HealthCheckResponse.NOT_SERVING

    async def seen_draining() -> bool:
        nodes = (await cluster.status("b")).cluster.nodes
        return any(node.address == a.process.address and node.draining for node in nodes)

    await until(seen_draining, 10, "GetStatus on B shows A draining")
    assert (await cluster.status("a")).draining

    # Its leases keep running Runs, directly and through another node.
    for name, lease in (("a", finishing), ("b", finishing), ("a", left), ("c", left)):
        step = await run_on(cluster, name, lease)
        assert step.ok and step.json == "42", (name, step)

    # A slot frees on B: the Acquire that was waiting at A is granted there, not on A.
    await release_on(cluster, "b", others["b"].pop())
    granted = await asyncio.wait_for(queued, 60)
    assert await holder(cluster, granted) == "b"

    # A new Acquire sent to A is placed on another node (C, the one with room now).
    await release_on(cluster, "c", others["c"].pop())
    placed = await acquire_on(cluster, "a")
    assert await holder(cluster, placed) == "c"

    # A lease that finishes during the drain is released as it would be.
    released = await release_on(cluster, "a", finishing)
    assert released.released_now and released.reason == pb.RELEASE_REASON_CLIENT_RELEASE
    during_drain_s = time.monotonic() - stopped_at
    assert during_drain_s < DRAIN_S, (
        f"the checks during the drain took {during_drain_s:.1f} s, past A's drain deadline: "
        "raise DRAIN_S"
    )
    assert left.lease_id not in await _ended(cluster)  # (still alive before the deadline)

    # The deadline passes: the lease left ends drained, and A stops.
    code = await asyncio.to_thread(a.process.wait, DRAIN_S + STOP_SLACK_S)
    assert code == 0, a.process.log()[-3000:]
    assert time.monotonic() - stopped_at >= DRAIN_S * 0.9  # (it waited for its deadline)

    # Ended exactly once, with the drain's reason, and every client sees it.
    assert released_in_log(cluster, "a", left.lease_id) == ["drained"]
    assert released_in_log(cluster, "a", finishing.lease_id) == ["client_release"]
    ended = await _ended(cluster)
    assert ended[left.lease_id] == "drained" and ended[finishing.lease_id] == "client_release"
    for name in ("b", "c"):
        late = await release_on(cluster, name, left)
        assert not late.released_now and late.reason == pb.RELEASE_REASON_DRAINED, name
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await run_on(cluster, "b", left)
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "drained" in (refused.value.details() or "")

    # No browser of A's is left; A is off the list of nodes; the leases it handed on still work.
    assert cluster.leftover_browsers("a") == []
    nodes = (await cluster.status("b")).cluster.nodes
    assert a.process.address not in {node.address for node in nodes}
    for lease in (granted, placed):
        step = await run_on(cluster, "c", lease)
        assert step.ok, step
        assert (await release_on(cluster, "b", lease)).released_now
    for lease in [*others["b"], *others["c"]]:
        assert (await release_on(cluster, "c", lease)).released_now


async def _ended(cluster: Cluster) -> dict[str, str]:
    """The reason of every lease the store has recorded as ended."""
    return {
        lease_id: record["reason"]
        for lease_id, record in (await cluster.records()).items()
        if record.get("reason")
    }
