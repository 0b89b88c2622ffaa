"""Attached clients in cluster mode, with a real Redis, broker processes and Chromium
(docs/cluster.md#attached-clients).

A lease's connect URL names the node that holds the lease, whichever node the Acquire was sent
to: a placed Acquire is answered by the node that opened the browser, and its grant carries that
node's attach server. The token opens that one lease on that one node while it lives; a node
killed under an attached client ends its leases `node_lost` once, on the survivors, and leaves
no browser; a draining node closes its attached sockets with the drain's reason.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qs, urlsplit

import grpc
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from browserbroker import steps
from browserbroker.aio import AsyncLease
from browserbroker.v1 import broker_pb2 as pb
from tests.attach.support import closed_with, connect, playwright, raw
from tests.cluster_support import NODE_LOST_BOUND_S, Cluster, still_running
from tests.fixture_site import FixtureSite
from tests.redis_server import RedisServer
from tests.support import eventually

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SLACK_S = 3.0  # for a loaded machine, on top of the documented node_lost bound
DRAIN_S = 2.0


@asynccontextmanager
async def two_nodes(**b_env: str) -> AsyncIterator[Cluster]:
    """Node a with room for one lease, node b with room for two; no warm pools (an attachable
    lease is launched for it anyway)."""
    redis = RedisServer().start()
    formed = Cluster(redis, env={"BROKER_WARM_POOL_SIZE": "0"})
    try:
        formed.capacity = 1
        formed.start_node("a")
        formed.capacity = 2
        formed.start_node("b", **b_env)
        await formed.wait_formed()
        yield formed
    finally:
        await formed.stop()
        redis.stop()


async def acquire(cluster: Cluster, name: str) -> AsyncLease:
    return await cluster.nodes[name].client.acquire(attach="cdp", ttl=120, timeout=90)


async def release(cluster: Cluster, name: str, lease: AsyncLease) -> pb.ReleaseResponse:
    request = pb.ReleaseRequest(lease_id=lease.id, token=lease.grant.token)
    return await cluster.nodes[name].client.stub.Release(request, timeout=30)


def attach_port(cluster: Cluster, name: str) -> int:
    """The port node `name`'s attach server bound (from its log)."""
    for line in cluster.nodes[name].process.log().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("msg") == "attach edge listening":
            return int(entry["port"])
    raise AssertionError(f"node {name} has no attach server")


def at(url: str, port: int, lease_id: str | None = None, token: str | None = None) -> str:
    """`url` sent to another attach server, and for another lease or token."""
    parts = urlsplit(url)
    path = parts.path if lease_id is None else f"/cdp/{lease_id}"
    token = token if token is not None else parse_qs(parts.query)["token"][0]
    return f"ws://{parts.hostname}:{port}{path}?token={token}"


def token_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["token"][0]


async def refused(url: str) -> int:
    """The HTTP status a connection to `url` gets instead of an upgrade."""
    with pytest.raises(InvalidStatus) as no_upgrade:
        async with websockets.connect(url, open_timeout=30):
            pass
    return no_upgrade.value.response.status_code


async def node_id(cluster: Cluster, name: str) -> str:
    return (await cluster.status(name)).cluster.node_id


async def test_a_url_from_one_node_reaches_the_lease_on_another_and_only_while_it_lives(
    fixture_server: FixtureSite,
) -> None:
    async with two_nodes() as cluster:
        ports = {name: attach_port(cluster, name) for name in ("a", "b")}
        on_a = await acquire(cluster, "a")  # a has room: its own
        on_b = await acquire(cluster, "a")  # a is full: placed on b, answered by b
        records = await cluster.records()
        assert records[on_a.id]["node"] == await node_id(cluster, "a")
        assert records[on_b.id]["node"] == await node_id(cluster, "b")
        # Each grant names its lease's holder.
        assert urlsplit(on_a.connect_url).port == ports["a"]
        assert urlsplit(on_b.connect_url).port == ports["b"]
        assert on_b.connect_url.startswith(f"ws://127.0.0.1:{ports['b']}/cdp/{on_b.id}?token=")

        # The Run (through a, forwarded to b) and the client drive one browser, one page.
        marked = fixture_server.url("form.html?by=run")
        (went,) = await on_b.run(steps.goto(marked), timeout=60)
        assert went.ok, went
        async with playwright() as p:
            browser = await connect(p, on_b.connect_url)
            (page,) = [page for c in browser.contexts for page in c.pages if page.url == marked]
            assert await page.inner_text("h1") == "Fixture"
            driven = fixture_server.url("form.html?by=client")
            await page.goto(driven)
            assert await page.title() == "Fixture form"
            (href,) = await on_b.run(steps.evaluate("location.href"), timeout=30)
            assert href.value == driven
            await browser.close()

        # The token opens its own lease on its own node, nothing else.
        assert (
            await refused(at(on_b.connect_url, ports["b"], token=token_of(on_a.connect_url))) == 401
        )
        assert await refused(at(on_b.connect_url, ports["a"])) == 404  # b's lease, on a
        assert await refused(at(on_a.connect_url, ports["b"])) == 404  # a's lease, on b
        assert await refused(at(on_b.connect_url, ports["b"], lease_id=on_a.id)) == 404

        async with raw(on_b.connect_url) as attached:
            assert "result" in await attached.call("Browser.getVersion")
            first = await release(cluster, "a", on_b)  # through a, forwarded to b
            assert first.released_now
            assert await closed_with(attached.socket) == (4001, "lease ended: client_release")
        for port in ports.values():  # after Release: no upgrade on any node, at either path
            stale = at(on_b.connect_url, port)
            assert await refused(stale) == 404
            assert await refused(stale.replace("/cdp/", "/devtools/browser/")) == 404
        late = await release(cluster, "b", on_b)
        assert not late.released_now and late.reason == pb.RELEASE_REASON_CLIENT_RELEASE
        # The other lease was never touched.
        async with raw(on_a.connect_url) as attached:
            assert "result" in await attached.call("Browser.getVersion")
        assert (await release(cluster, "b", on_a)).released_now


async def test_a_node_killed_under_an_attached_client_ends_its_lease_once_leaving_no_browser() -> (
    None
):
    async with two_nodes() as cluster:
        survivor = await acquire(cluster, "a")
        lease = await acquire(cluster, "a")  # placed on b
        ports = {name: attach_port(cluster, name) for name in ("a", "b")}
        assert urlsplit(lease.connect_url).port == ports["b"] != ports["a"]
        async with raw(lease.connect_url) as attached:
            assert "result" in await attached.call("Browser.getVersion")
            cluster.check_browsers_counted("b")  # (jailed: their environment is not the node's)
            killed_at = time.monotonic()
            cluster.kill("b")
            # The client's socket is gone with its node (no close frame: the TCP connection).
            await asyncio.wait_for(attached.socket.wait_closed(), 10)
            assert attached.socket.close_code == 1006  # (abnormal closure: no close frame)
        answer = await _node_lost_answer(cluster, lease, killed_at)
        assert not answer.released_now  # a survivor recorded it, not this call
        late = await release(cluster, "a", lease)
        assert late.reason == pb.RELEASE_REASON_NODE_LOST and not late.released_now
        assert late.released_at == answer.released_at  # the original outcome
        assert cluster.reaped(lease.id) == 1  # ended once, by one survivor
        assert (await cluster.records())[lease.id]["reason"] == "node_lost"
        # No browser of node b is left (its pipe closed with it); the URL opens nothing.
        await eventually(lambda: not cluster.leftover_browsers("b"), 30)  # nor its driver
        with pytest.raises(OSError):
            async with websockets.connect(lease.connect_url, open_timeout=10):
                pass
        assert await refused(at(lease.connect_url, ports["a"])) == 404
        # The survivor's attached lease is untouched.
        async with raw(survivor.connect_url) as attached:
            assert "result" in await attached.call("Browser.getVersion")
        assert (await release(cluster, "a", survivor)).released_now


async def test_a_node_declared_dead_while_alive_closes_its_sockets_with_node_lost() -> None:
    """Frozen past cluster_dead_after_s (SIGSTOP: no heartbeat), node b is reaped by a; when it
    runs again it learns it was declared dead and ends its leases node_lost itself: the socket
    its client kept open all along closes with 4010, and its browser closes."""
    async with two_nodes() as cluster:
        lease = await acquire(cluster, "b")
        b = cluster.nodes["b"]
        async with raw(lease.connect_url) as attached:
            assert "result" in await attached.call("Browser.getVersion")
            browsers = b.process.browsers()
            frozen_at = time.monotonic()
            cluster.signal("b", signal.SIGSTOP)
            try:  # (a call forwarded to a frozen node would wait: read the record instead)
                while (await cluster.records())[lease.id].get("reason") != "node_lost":
                    assert time.monotonic() - frozen_at < NODE_LOST_BOUND_S + SLACK_S
                    await asyncio.sleep(0.1)
                answer = await release(cluster, "a", lease)
            finally:
                b.process.signal(signal.SIGCONT)
            assert answer.reason == pb.RELEASE_REASON_NODE_LOST and not answer.released_now
            code = await closed_with(attached.socket)
            assert code == (4000 + pb.RELEASE_REASON_NODE_LOST, "lease ended: node_lost")
        assert cluster.reaped(lease.id) == 1
        # A late Release answers node_lost on every node: the cluster's record, and on b its
        # own ending (the same reason, at the moment b ended it, just after the reaper).
        for name in ("a", "b"):
            late = await release(cluster, name, lease)
            assert late.reason == pb.RELEASE_REASON_NODE_LOST and not late.released_now
        assert (await release(cluster, "a", lease)).released_at == answer.released_at
        await eventually(lambda: not still_running(browsers), 30)


async def _node_lost_answer(
    cluster: Cluster, lease: AsyncLease, killed_at: float
) -> pb.ReleaseResponse:
    """Release through the survivor until the dead node's lease is reaped."""
    while True:
        assert time.monotonic() - killed_at < NODE_LOST_BOUND_S + SLACK_S, "not reaped in time"
        try:
            answer = await release(cluster, "a", lease)
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.UNAVAILABLE, error  # not reaped yet
            await asyncio.sleep(0.1)
            continue
        assert answer.reason == pb.RELEASE_REASON_NODE_LOST, answer
        return answer


async def test_a_draining_node_closes_its_attached_sockets_with_the_drain_s_reason() -> None:
    async with two_nodes(BROKER_DRAIN_TIMEOUT_S=str(DRAIN_S)) as cluster:
        lease = await acquire(cluster, "b")
        b = cluster.nodes["b"]
        async with raw(lease.connect_url) as attached:
            assert "result" in await attached.call("Browser.getVersion")
            browsers = b.process.browsers()
            assert browsers, "the lease's browser runs below node b"
            cluster.signal("b", signal.SIGTERM)
            await _until_draining(cluster, "b")
            assert await refused(lease.connect_url) == 503  # no new clients while draining
            assert "result" in await attached.call("Browser.getVersion")  # this one goes on
            code = await closed_with(attached.socket, timeout=DRAIN_S + 30)
            assert code == (4000 + pb.RELEASE_REASON_DRAINED, "lease ended: drained")
        assert await asyncio.to_thread(b.process.wait, 60) == 0, b.process.log()
        late = await release(cluster, "a", lease)
        assert late.reason == pb.RELEASE_REASON_DRAINED and not late.released_now
        assert not still_running(browsers)


async def _until_draining(cluster: Cluster, name: str) -> None:
    """Until node a sees node `name` draining (its heartbeat says so when the drain starts)."""
    address = cluster.nodes[name].process.address
    deadline = time.monotonic() + 30
    while True:
        nodes = (await cluster.status("a")).cluster.nodes
        if any(node.address == address and node.draining for node in nodes):
            return
        assert time.monotonic() < deadline, f"node {name} never drained"
        await asyncio.sleep(0.1)
