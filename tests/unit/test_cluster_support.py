"""The cluster harness's count of a node's processes (tests/cluster_support.py) misses none that
outlive their node: not those whose environment lost the node's mark (a jailed browser's),
not those orphaned when the node is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import cast

import psutil

from browserbroker.aio import AsyncBrokerClient
from tests.cluster_support import NODE_MARK, Cluster, Node
from tests.redis_server import RedisServer
from tests.support import BrokerProcess

# The stand-in node starts three processes and becomes a fourth: one that keeps the node's
# environment, one with none (as the jail leaves a browser), and one below that one.
NODE = "env -i sh -c 'sleep 60 & exec sleep 61' & sleep 62 & exec sleep 63"


def test_every_process_a_node_started_is_counted_until_it_ends_even_after_the_node_is_killed() -> (
    None
):
    cluster = Cluster(cast(RedisServer, None))
    node = subprocess.Popen(["sh", "-c", NODE], env={**os.environ, NODE_MARK: cluster.mark("n")})
    cluster.nodes["n"] = Node("n", BrokerProcess(proc=node), cast(AsyncBrokerClient, None))
    started: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 30
        while sorted(_names(node.pid)) != ["sleep 60", "sleep 61", "sleep 62", "sleep 63"]:
            assert time.monotonic() < deadline, _names(node.pid)
            time.sleep(0.02)
        started = psutil.Process(node.pid).children(recursive=True)
        assert sorted(p.pid for p in cluster.leftover_browsers("n")) == sorted(
            [node.pid, *(p.pid for p in started)]
        )

        cluster.kill("n")  # (it looks at the node's processes just before)
        # The orphans without the mark are below no process of the node any more: counted
        # because they were seen below it, and they are still the same processes.
        assert {p.pid for p in started} == {p.pid for p in cluster.leftover_browsers("n")}
        for process in started:
            process.send_signal(signal.SIGKILL)
            process.wait(10)
        assert cluster.leftover_browsers("n") == []
    finally:
        for process in started:
            if process.is_running():
                process.kill()
        if node.poll() is None:
            node.kill()
            node.wait()


def _names(pid: int) -> list[str]:
    """The command lines of `pid` and its descendants."""
    try:
        root = psutil.Process(pid)
        return [" ".join(p.cmdline()) for p in [root, *root.children(recursive=True)]]
    except psutil.Error:
        return []
