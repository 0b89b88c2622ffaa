"""The cluster's queue as a scaling signal: `broker.cluster.queue.depth` counts the Acquires
waiting in the cluster's queue in Redis (every node's), read on each heartbeat, as each node's
own `broker.queue.depth` does not (docs/kubernetes.md#scaling). A real Redis throughout."""

from __future__ import annotations

import asyncio
import time

import pytest

from broker.cluster.store import ClusterStore
from browserbroker.v1 import broker_pb2 as pb
from tests.cluster_support import Cluster
from tests.integration.test_metrics import metric, scrape
from tests.redis_server import RedisServer, free_port


async def _until_exported(ports: dict[str, int], depth: int, timeout_s: float = 30) -> None:
    """Until every node's scrape says `depth` Acquires wait in the cluster's queue."""
    deadline = time.monotonic() + timeout_s
    for name, port in ports.items():
        while True:
            scraped = await asyncio.to_thread(scrape, port)
            if metric(scraped, "broker_cluster_queue_depth") == depth:
                break
            assert time.monotonic() < deadline, f"node {name} never exported {depth} waiting"
            await asyncio.sleep(0.1)


async def test_the_depth_leaves_out_acquires_whose_node_stopped_renewing_them() -> None:
    """A node that dies with Acquires in line stops renewing their tickets: once they expire
    they are not counted, even if no other Acquire queues (which would sweep them too)."""
    redis = RedisServer().start()
    store = ClusterStore(redis.url, "gauge")
    try:
        assert await store.queue_depth() == 0
        await store.enqueue("dead-node:1", "ci", 10, None, ttl_ms=300)
        await store.enqueue("live-node:1", "ci", 10, None, ttl_ms=60_000)
        await store.enqueue("live-node:2", "ops", 10, None, ttl_ms=60_000)
        assert await store.queue_depth() == 3
        await asyncio.sleep(0.6)  # the dead node's ticket expires; nobody queues meanwhile
        assert await store.queue_depth() == 2
        await store.leave_queue("live-node:1")
        assert await store.queue_depth() == 1
        await store.leave_queue("live-node:2")
        assert await store.queue_depth() == 0
    finally:
        await store.close()
        redis.stop()


@pytest.mark.browser
async def test_every_node_exports_the_acquires_waiting_in_the_cluster() -> None:
    """Two nodes of one slot each, both held, and Acquires waiting at either: each node exports
    the cluster's whole line, while their own queues are empty."""
    redis = RedisServer().start()
    cluster = Cluster(redis, capacity=1, env={"BROKER_WARM_POOL_SIZE": "0"})
    ports = {"a": free_port(), "b": free_port()}
    waiting: list[asyncio.Task[pb.AcquireResponse]] = []
    try:
        for name, port in ports.items():
            cluster.start_node(name, BROKER_QUEUE_LIMIT="8", BROKER_PROMETHEUS_PORT=str(port))
        await cluster.wait_formed()
        stubs = {name: node.client.stub for name, node in cluster.nodes.items()}
        held = [await stubs[name].Acquire(pb.AcquireRequest(), timeout=60) for name in ("a", "b")]

        await _until_exported(ports, 0)

        async def acquire(name: str) -> pb.AcquireResponse:
            return await stubs[name].Acquire(pb.AcquireRequest(), timeout=60)

        for name in ("a", "b", "a"):
            waiting.append(asyncio.create_task(acquire(name)))
        await _until_exported(ports, 3)
        for port in ports.values():  # (each node's own queue holds none of them)
            assert metric(await asyncio.to_thread(scrape, port), "broker_queue_depth") == 0

        # A slot frees: the first in line takes it, and the line is one shorter everywhere.
        await stubs["b"].Release(pb.ReleaseRequest(lease_id=held[0].lease_id, token=held[0].token))
        done, _ = await asyncio.wait(waiting, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        assert len(done) == 1, "the freed slot served no Acquire in line"
        (first,) = done
        waiting.remove(first)
        served = first.result()
        await _until_exported(ports, 2)
        for lease in (served, held[1]):
            await stubs["a"].Release(pb.ReleaseRequest(lease_id=lease.lease_id, token=lease.token))
        for task in waiting:
            lease = await asyncio.wait_for(task, 30)
            await stubs["b"].Release(pb.ReleaseRequest(lease_id=lease.lease_id, token=lease.token))
        await _until_exported(ports, 0)
    finally:
        for task in waiting:
            task.cancel()
        await cluster.stop()
        redis.stop()
