"""A node shutting down closes every channel it opened to the other nodes, after its server has
stopped. Two in-process nodes (fake engines) over a real Redis: a call one node forwards to the
other opens the channel that its shutdown must close."""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from broker.api.forwarding import Forwarder
from broker.daemon import server
from broker.model.options import EngineName
from broker.runtime.settings import Settings
from broker.runtime.wiring import Broker
from browserbroker import AsyncBrokerClient
from browserbroker.aio import AsyncLease
from tests.fakes import FakeEngine
from tests.redis_server import RedisServer


@dataclass
class Node:
    broker: Broker
    edge: server.Edge
    stop: asyncio.Event
    task: asyncio.Task[None]
    client: AsyncBrokerClient

    @property
    def forwarder(self) -> Forwarder:
        assert self.edge.forwarder is not None
        return self.edge.forwarder

    async def shutdown(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)
        await self.client.close()


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    started = RedisServer().start()
    yield started
    started.stop()


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The order in which servers stop and forwarders close."""
    seen: list[str] = []
    servers: Any = importlib.import_module("grpc.aio._server").Server  # (what aio.server makes)
    stop, close = servers.stop, Forwarder.close

    async def stopping(self: Any, grace: float | None) -> None:
        seen.append("server.stop")
        await stop(self, grace)

    async def closing(self: Forwarder) -> None:
        seen.append("forwarder.close")
        await close(self)

    monkeypatch.setattr(servers, "stop", stopping)
    monkeypatch.setattr(Forwarder, "close", closing)
    return seen


@pytest.fixture
async def start(redis: RedisServer, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    prefix = f"s{os.urandom(4).hex()}"
    edges: dict[int, server.Edge] = {}
    build = server.build_edge

    def capture(settings: Settings, broker: Broker) -> server.Edge:
        edge = edges[id(broker)] = build(settings, broker)
        return edge

    monkeypatch.setattr(server, "build_edge", capture)
    nodes: list[Node] = []

    async def node() -> Node:
        settings = Settings.model_validate(
            {
                "listen": "127.0.0.1:0",
                "warm_pool_size": 0,
                "log_level": "WARNING",
                "capacity": 2,
                "engines": [EngineName.CHROMIUM],
                "shutdown_grace_s": 0,
                "drain_timeout_s": 0,
                "cluster_url": redis.url,
                "cluster_name": prefix,
                # Beating all the time, so the shutdown lands in (or between) Redis calls.
                "cluster_heartbeat_s": 0.02,
                "cluster_dead_after_s": 5.0,
            }
        )
        broker = Broker(settings, engines={EngineName.CHROMIUM: FakeEngine()})
        stop = asyncio.Event()
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(
            server.serve(settings, stop=stop, on_ready=ready.set_result, broker=broker)
        )
        waiting: set[asyncio.Future[Any]] = {task, ready}
        await asyncio.wait(waiting, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()
        client = AsyncBrokerClient(f"127.0.0.1:{ready.result()}")
        started = Node(broker, edges[id(broker)], stop, task, client)
        nodes.append(started)
        return started

    yield node
    for running in nodes:
        if not running.task.done():
            await running.shutdown()


async def test_a_node_closes_its_channels_to_other_nodes_after_its_server_stops(
    start: Any, events: list[str]
) -> None:
    a, b = await start(), await start()
    lease = await a.client.acquire()
    # Through B, which forwards the call to A, the lease's holder: B opens a channel to A.
    await AsyncLease(b.client, lease.grant).keep_alive()
    opened = b.forwarder.channels
    assert len(opened) == 1
    assert opened[0].get_state() is not grpc.ChannelConnectivity.SHUTDOWN

    await b.shutdown()
    assert events == ["server.stop", "forwarder.close"]
    assert [channel.get_state() for channel in opened] == [grpc.ChannelConnectivity.SHUTDOWN]
    assert b.forwarder.channels == ()

    await lease.release()  # (A, which never forwarded, has nothing open to close)
    assert a.forwarder.channels == ()
    await a.shutdown()
    assert events[-2:] == ["server.stop", "forwarder.close"]
