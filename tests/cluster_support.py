"""A cluster on loopback: a real Redis and broker processes (`browser-broker serve --cluster`)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil
import redis.asyncio as aioredis

from browserbroker.aio import AsyncBrokerClient
from browserbroker.v1 import broker_pb2 as pb
from tests.redis_server import RedisServer
from tests.support import BrokerProcess

HEARTBEAT_S = 0.5
DEAD_AFTER_S = 2.0
# A killed node's leases end node_lost within this bound (docs/cluster.md): silent for
# DEAD_AFTER_S, then the next survivor's heartbeat reaps it.
NODE_LOST_BOUND_S = DEAD_AFTER_S + HEARTBEAT_S
NODE_MARK = "BROKER_TEST_CLUSTER_NODE"  # in every node's (and its browsers') environment


@dataclass
class Node:
    name: str
    process: BrokerProcess
    client: AsyncBrokerClient
    incarnation: int = 0  # how many processes ran under this name before this one

    @property
    def label(self) -> str:
        return self.name if self.incarnation == 0 else f"{self.name}.{self.incarnation}"


@dataclass
class Cluster:
    redis: RedisServer
    capacity: int = 4
    prefix: str = field(default_factory=lambda: f"test-{os.urandom(3).hex()}")
    nodes: dict[str, Node] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # more settings for every node
    # How the test reaches a node (an admin of it: GetStatus shows the cluster to admins).
    connect: Callable[[str], AsyncBrokerClient] = AsyncBrokerClient
    # Earlier processes of restarted nodes (`restart_node`), oldest first.
    retired: list[Node] = field(default_factory=list)

    def start_node(self, name: str, **env: str) -> Node:
        process = self._launch(name, 0, env)
        node = Node(name, process, self.connect(process.address))
        self.nodes[name] = node
        return node

    async def restart_node(self, name: str, **env: str) -> Node:
        """A new process under the name of a node that was killed (a new port, node id and
        mark); the old one is kept in `retired` for its log and its mark."""
        old = self.nodes[name]
        assert old.process.proc is not None and old.process.proc.poll() is not None, (
            f"node {name} is still running"
        )
        incarnation = old.incarnation + 1
        # (Starting blocks until the process listens: off the event loop, which serves the
        # other nodes' callers meanwhile.)
        process = await asyncio.to_thread(self._launch, name, incarnation, env)
        self.retired.append(old)
        node = Node(name, process, self.connect(process.address), incarnation)
        self.nodes[name] = node
        return node

    def mark(self, name: str, incarnation: int = 0) -> str:
        """The value of NODE_MARK in the environment of a node's process and its browsers."""
        base = f"{self.prefix}-{name}"
        return base if incarnation == 0 else f"{base}.{incarnation}"

    def _launch(self, name: str, incarnation: int, env: dict[str, str]) -> BrokerProcess:
        return BrokerProcess(
            args=["--cluster", self.redis.url, "--capacity", str(self.capacity)],
            env={
                "BROKER_CLUSTER_NAME": self.prefix,
                "BROKER_CLUSTER_HEARTBEAT_S": str(HEARTBEAT_S),
                "BROKER_CLUSTER_DEAD_AFTER_S": str(DEAD_AFTER_S),
                "BROKER_WARM_POOL_SIZE": "1",
                NODE_MARK: self.mark(name, incarnation),
                **self.env,
                **env,
            },
        ).start()

    async def wait_formed(self, names: list[str] | None = None, timeout_s: float = 30) -> None:
        """Until every named node sees all of them as live nodes."""
        names = names or list(self.nodes)
        deadline = time.monotonic() + timeout_s
        while True:
            seen = [len((await self.status(name)).cluster.nodes) for name in names]
            if all(count == len(names) for count in seen):
                return
            assert time.monotonic() < deadline, f"cluster did not form: {seen}"
            await asyncio.sleep(0.1)

    async def status(self, name: str) -> pb.GetStatusResponse:
        client = self.nodes[name].client
        return await client.stub.GetStatus(
            pb.GetStatusRequest(), metadata=client.connection.metadata()
        )

    def kill(self, name: str) -> None:
        node = self.nodes[name]
        node.process.signal(signal.SIGKILL)
        node.process.wait(30)

    def leftover_browsers(self, name: str, incarnation: int | None = None) -> list[psutil.Process]:
        """Processes started for node `name` (found by the mark in their environment): for its
        current process, or for the given incarnation of it."""
        if incarnation is None:
            incarnation = self.nodes[name].incarnation if name in self.nodes else 0
        mark = f"{NODE_MARK}={self.mark(name, incarnation)}"
        found = []
        for proc in psutil.process_iter():
            try:
                if any(item == mark for item in _environ(proc)):
                    found.append(proc)
            except (psutil.Error, OSError):
                continue
        return found

    def reaped(self, lease_id: str) -> int:
        """How many node logs say they ended `lease_id` as the lease of a dead node."""
        count = 0
        for node in [*self.retired, *self.nodes.values()]:
            for line in node.process.log().splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("msg") == "lease of a dead node ended" and (
                    entry.get("lease_id") == lease_id
                ):
                    count += 1
        return count

    async def records(self) -> dict[str, dict[str, str]]:
        """Every lease record in the store."""
        store: Any = aioredis.Redis.from_url(self.redis.url, decode_responses=True)
        try:
            keys = [key async for key in store.scan_iter(f"{self.prefix}:lease:*")]
            return {key.rsplit(":", 1)[1]: await store.hgetall(key) for key in keys}
        finally:
            await store.aclose()

    async def stop(self) -> None:
        for node in [*self.retired, *self.nodes.values()]:
            await node.client.close()
            node.process.stop()


def _environ(proc: psutil.Process) -> list[str]:
    with open(f"/proc/{proc.pid}/environ", "rb") as f:
        return [item.decode(errors="replace") for item in f.read().split(b"\0")]
