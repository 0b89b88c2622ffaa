"""Cluster mode with a real Redis and three broker processes on loopback (docs/cluster.md).

A lease lives on the node that granted it; every other node answers for it by forwarding, and
every ending is recorded once, cluster-wide, in Redis.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from broker.cluster.store import ClusterStore
from browserbroker import steps
from browserbroker.v1 import broker_pb2 as pb
from tests.cluster_support import NODE_LOST_BOUND_S, Cluster
from tests.fixture_site import FixtureSite
from tests.integration.test_metrics import metric, scrape
from tests.redis_server import RedisServer, free_port
from tests.support import STOP_BOUND_S, STOP_DEADLINE_S, eventually, last_ping_after, work_for

pytestmark = pytest.mark.browser

SLACK_S = 3.0  # for a loaded CI machine, on top of the documented node_lost bound


METRICS_PORT = free_port()


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    redis = RedisServer().start()
    formed = Cluster(redis)
    try:
        formed.start_node("a", BROKER_PROMETHEUS_PORT=str(METRICS_PORT))
        for name in ("b", "c"):
            formed.start_node(name)
        await formed.wait_formed()
        yield formed
    finally:
        await formed.stop()
        redis.stop()


async def acquire_on(cluster: Cluster, name: str) -> pb.AcquireResponse:
    return await cluster.nodes[name].client.stub.Acquire(pb.AcquireRequest(), timeout=60)


async def run_on(
    cluster: Cluster, name: str, lease: pb.AcquireResponse, *work: pb.Step, timeout: float = 30
) -> list[pb.RunResponse]:
    call = cluster.nodes[name].client.stub.Run(
        pb.RunRequest(lease_id=lease.lease_id, token=lease.token, steps=list(work)), timeout=timeout
    )
    return [response async for response in call]


async def test_a_lease_from_one_node_is_run_kept_and_released_through_the_others(
    cluster: Cluster,
) -> None:
    lease = await acquire_on(cluster, "a")
    (answer,) = await run_on(cluster, "b", lease, steps.evaluate("6 * 7"))
    assert answer.step.ok and answer.step.json == "42"
    kept = await cluster.nodes["c"].client.stub.KeepAlive(_keepalive(lease, 120))
    assert kept.expires_at.seconds > time.time() + 100
    (again,) = await run_on(cluster, "c", lease, steps.evaluate("location.href"))
    assert again.step.ok
    # The lease is on A: its browser is there, and B and C hold nothing.
    status = await cluster.status("a")
    by_node = {node.address: node.leases for node in status.cluster.nodes}
    assert by_node[cluster.nodes["a"].process.address] == 1
    assert sum(by_node.values()) == 1 and status.cluster.active_leases == 1
    await asyncio.sleep(0.6)  # (the gauges read the last heartbeat's view)
    scraped = await asyncio.to_thread(scrape, METRICS_PORT)
    assert metric(scraped, "broker_cluster_nodes") == 3
    assert metric(scraped, "broker_cluster_leases") == 1
    assert metric(scraped, "broker_cluster_store_reachable") == 1
    assert metric(scraped, "broker_cluster_node_leases") == 1  # summed over the nodes
    assert scraped.count("broker_cluster_node_used{") == 3  # one sample per node

    first = await cluster.nodes["b"].client.stub.Release(
        pb.ReleaseRequest(lease_id=lease.lease_id, token=lease.token)
    )
    assert first.released_now and first.reason == pb.RELEASE_REASON_CLIENT_RELEASE
    for name in ("c", "a", "b"):  # again, on every node: the original outcome
        late = await cluster.nodes[name].client.stub.Release(
            pb.ReleaseRequest(lease_id=lease.lease_id, token=lease.token)
        )
        assert not late.released_now
        assert late.reason == pb.RELEASE_REASON_CLIENT_RELEASE
        assert late.released_at == first.released_at
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await run_on(cluster, "c", lease, steps.evaluate("1"))
    assert ended.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "client_release" in (ended.value.details() or "")
    records = await cluster.records()
    assert records[lease.lease_id]["reason"] == "client_release"


def _keepalive(lease: pb.AcquireResponse, seconds: int) -> pb.KeepAliveRequest:
    request = pb.KeepAliveRequest(lease_id=lease.lease_id, token=lease.token)
    request.ttl.seconds = seconds
    return request


async def test_forwarded_calls_keep_the_error_contract(cluster: Cluster) -> None:
    lease = await acquire_on(cluster, "a")
    b = cluster.nodes["b"].client.stub
    with pytest.raises(grpc.aio.AioRpcError) as forged:
        await b.Release(pb.ReleaseRequest(lease_id=lease.lease_id, token="forged-token"))
    assert forged.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await b.Release(pb.ReleaseRequest(lease_id="lease-doesnotexist0", token="x" * 32))
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as bad_step:
        await run_on(cluster, "c", lease, steps.goto("file:///etc/passwd"))
    assert bad_step.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # checked at entry too
    with pytest.raises(grpc.aio.AioRpcError) as too_long:  # the owner's answer, relayed whole
        await b.KeepAlive(_keepalive(lease, 10**6))
    assert too_long.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ttl" in (too_long.value.details() or "")
    received: Any = too_long.value.trailing_metadata() or ()
    trailers = [key for key, _ in received]
    assert "grpc-status-details-bin" in trailers  # the rich details (the field) came across
    # A forwarded call is trusted only from a cluster node: a caller cannot name a tenant, and
    # a cluster secret sent in clear (the old form) is refused even with auth off.
    metadata = (("x-broker-forwarded-tenant", "operator"), ("x-broker-cluster-secret", "guess"))
    with pytest.raises(grpc.aio.AioRpcError) as in_clear:
        await b.Release(
            pb.ReleaseRequest(lease_id=lease.lease_id, token=lease.token), metadata=metadata
        )
    assert in_clear.value.code() == grpc.StatusCode.UNAUTHENTICATED
    released = await b.Release(pb.ReleaseRequest(lease_id=lease.lease_id, token=lease.token))
    assert released.released_now  # auth is off here: every caller is the operator anyway


async def test_a_deadline_at_one_node_stops_the_browser_work_on_the_owner(
    cluster: Cluster, fixture_server: FixtureSite
) -> None:
    lease = await acquire_on(cluster, "a")
    ping_id = uuid.uuid4().hex
    deadline_s = STOP_DEADLINE_S
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as stopped:
        await run_on(
            cluster,
            "b",
            lease,
            *work_for("timer_loop", fixture_server, ping_id),
            timeout=deadline_s,
        )
    assert stopped.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert fixture_server.pings.times(ping_id), "the page never pinged"
    last = await asyncio.wait_for(last_ping_after(fixture_server, ping_id), 30)
    assert last - (started + deadline_s) < STOP_BOUND_S, "the owner's page kept working"
    # The lease stays (on_cancel keeps it) and works, through yet another node.
    (after,) = await run_on(cluster, "c", lease, steps.evaluate("location.href"))
    assert after.step.ok and after.step.json == '"about:blank"'


async def test_a_killed_node_s_leases_end_node_lost_once(cluster: Cluster) -> None:
    held = [await acquire_on(cluster, "c") for _ in range(2)]
    survivor = await acquire_on(cluster, "a")
    cluster.check_browsers_counted("c")  # (jailed: their environment is not the node's)
    killed_at = time.monotonic()
    cluster.kill("c")
    answers: dict[str, pb.ReleaseResponse] = {}
    while len(answers) < len(held):
        assert time.monotonic() - killed_at < NODE_LOST_BOUND_S + SLACK_S, answers
        for lease in held:
            try:
                answers[lease.lease_id] = await cluster.nodes["a"].client.stub.Release(
                    pb.ReleaseRequest(lease_id=lease.lease_id, token=lease.token), timeout=5
                )
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.UNAVAILABLE, error  # not reaped yet
        await asyncio.sleep(0.1)
    for lease in held:
        assert answers[lease.lease_id].reason == pb.RELEASE_REASON_NODE_LOST
        assert not answers[lease.lease_id].released_now
        late = await cluster.nodes["b"].client.stub.Release(
            pb.ReleaseRequest(lease_id=lease.lease_id, token=lease.token)
        )
        assert late.reason == pb.RELEASE_REASON_NODE_LOST
        assert cluster.reaped(lease.lease_id) == 1  # recorded once, by one survivor
    # The killed node's browsers go with it once Playwright's driver notices.
    await eventually(lambda: not cluster.leftover_browsers("c"), 30)
    # Capacity: two live nodes, and only the survivor's lease.
    status = await cluster.status("b")
    assert len(status.cluster.nodes) == 2
    assert status.cluster.active_leases == 1
    (ok,) = await run_on(cluster, "b", survivor, steps.evaluate("1"))
    assert ok.step.ok
    records = await cluster.records()
    assert {records[lease.lease_id]["reason"] for lease in held} == {"node_lost"}


async def test_a_redis_restart_mid_traffic_loses_and_doubles_nothing(cluster: Cluster) -> None:
    leases = {name: [await acquire_on(cluster, name) for _ in range(2)] for name in ("a", "b")}
    ended_in_outage = await acquire_on(cluster, "a")  # (no traffic: it ends mid-outage)
    stop = asyncio.Event()
    errors: list[str] = []

    async def traffic(lease: pb.AcquireResponse, owner: str) -> int:
        """Runs on the owner: served throughout, store or not."""
        done = 0
        while not stop.is_set():
            try:
                (answer,) = await run_on(cluster, owner, lease, steps.evaluate("1"), timeout=10)
                done += answer.step.ok
            except grpc.aio.AioRpcError as error:
                errors.append(f"{owner}: {error.code()} {error.details()}")
            await asyncio.sleep(0.05)
        return done

    runners = [
        asyncio.create_task(traffic(lease, name)) for name, held in leases.items() for lease in held
    ]
    await asyncio.sleep(1.0)
    cluster.redis.stop()
    await asyncio.sleep(0.5)
    # While the store is away: new leases are refused, an owner still ends its own lease.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await acquire_on(cluster, "b")
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    released = await cluster.nodes["a"].client.stub.Release(
        pb.ReleaseRequest(lease_id=ended_in_outage.lease_id, token=ended_in_outage.token)
    )
    assert released.released_now
    await asyncio.sleep(1.0)
    cluster.redis.start()  # empty: no persistence
    await cluster.wait_formed()
    stop.set()
    served = await asyncio.gather(*runners)
    assert not errors, errors
    assert all(count > 0 for count in served), served

    # The outage's outcome reached the store, and every node answers it.
    for name in ("b", "c"):
        late = await cluster.nodes[name].client.stub.Release(
            pb.ReleaseRequest(lease_id=ended_in_outage.lease_id, token=ended_in_outage.token)
        )
        assert not late.released_now and late.reason == pb.RELEASE_REASON_CLIENT_RELEASE
    # The live leases were written back: any node reaches them, and they end once.
    live = [lease for held in leases.values() for lease in held]
    for lease in live:
        (ok,) = await run_on(cluster, "c", lease, steps.evaluate("1"))
        assert ok.step.ok
        first = await cluster.nodes["c"].client.stub.Release(
            pb.ReleaseRequest(lease_id=lease.lease_id, token=lease.token)
        )
        assert first.released_now and first.reason == pb.RELEASE_REASON_CLIENT_RELEASE
    records = await cluster.records()
    for lease in [*live, ended_in_outage]:
        assert records[lease.lease_id]["reason"] == "client_release"
    assert not [r for r in records.values() if r.get("reason") == "node_lost"]
    fresh = await acquire_on(cluster, "b")  # new leases again
    await cluster.nodes["a"].client.stub.Release(
        pb.ReleaseRequest(lease_id=fresh.lease_id, token=fresh.token)
    )


async def test_acquires_wait_in_one_cluster_wide_queue_first_in_first_out() -> None:
    """Two nodes of one slot each, both held: Acquires arriving at either node wait in one line,
    and a slot freed on either node serves the first in line, wherever it arrived."""
    redis = RedisServer().start()
    small = Cluster(redis, capacity=1)
    store = ClusterStore(redis.url, small.prefix)
    try:
        for name in ("a", "b"):
            small.start_node(name, BROKER_QUEUE_LIMIT="2")
        await small.wait_formed()
        held_a, held_b = await acquire_on(small, "a"), await acquire_on(small, "b")

        async def queued(count: int) -> None:
            for _ in range(600):
                if await store.queue_length() == count:
                    return
                await asyncio.sleep(0.05)
            raise AssertionError(f"the cluster's queue never held {count}")

        first = asyncio.create_task(acquire_on(small, "a"))
        await queued(1)
        second = asyncio.create_task(acquire_on(small, "b"))
        await queued(2)
        with pytest.raises(grpc.aio.AioRpcError) as full:  # queue_limit 2, cluster-wide
            await acquire_on(small, "a")
        assert full.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

        # B's slot frees: the first in line (it arrived at A) gets it, the second still waits.
        await small.nodes["a"].client.stub.Release(
            pb.ReleaseRequest(lease_id=held_b.lease_id, token=held_b.token)
        )
        served_first = await asyncio.wait_for(first, 30)
        await asyncio.sleep(1.0)
        assert not second.done()
        records = await small.records()
        assert records[served_first.lease_id]["node"] != records[held_a.lease_id]["node"]

        # A caller whose deadline passes in line leaves it, and takes nobody's place.
        with pytest.raises(grpc.aio.AioRpcError) as late:
            await small.nodes["b"].client.stub.Acquire(pb.AcquireRequest(), timeout=1.0)
        assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await queued(1)

        await small.nodes["b"].client.stub.Release(
            pb.ReleaseRequest(lease_id=held_a.lease_id, token=held_a.token)
        )
        served_second = await asyncio.wait_for(second, 30)
        for lease in (served_first, served_second):
            (ok,) = await run_on(small, "a", lease, steps.evaluate("1"))
            assert ok.step.ok
            await small.nodes["b"].client.stub.Release(
                pb.ReleaseRequest(lease_id=lease.lease_id, token=lease.token)
            )
        await queued(0)
    finally:
        await store.close()
        await small.stop()
        redis.stop()
