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
# In every node's environment, and so in its Playwright driver's. A locale variable (LC_*) on
# purpose: the browser launcher passes those on (broker/engines/sandbox.py), so the mark also
# reaches each jailed browser's bwrap and main process; Chromium clears it for its zygotes and
# their children, which are found as descendants of marked processes instead.
NODE_MARK = "LC_BROKER_TEST_NODE"


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
    # Every process seen below each node (by mark), for `leftover_browsers`.
    seen: dict[str, dict[tuple[int, float], psutil.Process]] = field(default_factory=dict)

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
        self.signal(name, signal.SIGKILL)
        self.nodes[name].process.wait(30)

    def signal(self, name: str, sig: signal.Signals) -> None:
        """Sends `sig` to node `name`, having looked at its processes just before (so that
        `leftover_browsers` knows every one it had)."""
        self.leftover_browsers(name)
        self.nodes[name].process.signal(sig)

    def check_browsers_counted(self, name: str) -> None:
        """That node `name` runs browsers (below its process), and `leftover_browsers` counts
        every one of them."""
        browsers = self.nodes[name].process.browsers()
        assert browsers, f"no browser runs below node {name}"
        counted = {process.pid for process in self.leftover_browsers(name)}
        missed = [process for process in browsers if process.pid not in counted]
        # (A browser's short-lived helper may have ended in between.)
        assert not still_running(missed), f"browsers of node {name} not counted: {missed}"

    def leftover_browsers(self, name: str, incarnation: int | None = None) -> list[psutil.Process]:
        """Every process still running that was started for node `name` (its current process,
        or the given incarnation of it), browsers and their helpers, jailed or not, orphaned or
        not: those with the node's mark in their environment, their descendants, and any process
        seen that way at an earlier look (the same process: pid and start time). Each look
        remembers what it found, and `kill` and `signal` look just before signalling."""
        if incarnation is None:
            incarnation = self.nodes[name].incarnation if name in self.nodes else 0
        mark = self.mark(name, incarnation)
        seen = dict(self.seen.get(mark, {}))
        for process in _marked_trees(f"{NODE_MARK}={mark}"):
            try:
                seen.setdefault((process.pid, process.create_time()), process)
            except psutil.Error:
                continue
        self.seen[mark] = {key: process for key, process in seen.items() if _running(process)}
        return list(self.seen[mark].values())

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


def still_running(processes: list[psutil.Process]) -> list[int]:
    """The pids of those of `processes` still running (the same processes: psutil checks their
    start time)."""
    return [process.pid for process in processes if _running(process)]


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _marked_trees(mark: str) -> list[psutil.Process]:
    """The processes with `mark` (NAME=value) in their environment, and their descendants."""
    children: dict[int, list[psutil.Process]] = {}
    found: list[psutil.Process] = []
    for process in psutil.process_iter(["ppid"]):
        children.setdefault(process.info["ppid"], []).append(process)
        try:
            if mark in _environ(process):
                found.append(process)
        except (psutil.Error, OSError):
            continue
    pids = {process.pid for process in found}
    below = list(found)
    while below:
        below = [
            child
            for parent in below
            for child in children.get(parent.pid, [])
            if child.pid not in pids
        ]
        pids |= {child.pid for child in below}
        found += below
    return found


def _environ(process: psutil.Process) -> list[str]:
    with open(f"/proc/{process.pid}/environ", "rb") as f:
        return [item.decode(errors="replace") for item in f.read().split(b"\0")]
