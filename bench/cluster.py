"""Cluster forwarding cost: the same calls on one lease, through its owner and through a node
that forwards them to the owner, measured side by side in one run.

    .venv/bin/python -m bench.cluster [--samples 200]

A real Redis and two broker processes (`--cluster`, on loopback). One lease is acquired on node
A. Each round sends, in random order, a one-step Run (`evaluate "1"`) through A and through B,
and a KeepAlive through A and through B. Reported: the median and p90 of each, and the ratio of
medians (through B / through A). The gRPC health check of A is measured in the same rounds as a
floor.

Then `--kills` times: a third node C takes a lease and is SIGKILLed; the time from the kill until
a Release through A answers `node_lost` is reported beside the documented bound
(cluster_dead_after_s + cluster_heartbeat_s, here 2.0 + 0.5 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import time
from collections.abc import Awaitable, Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from browserbroker import steps
from browserbroker.v1 import broker_pb2 as pb
from tests.cluster_support import NODE_LOST_BOUND_S, Cluster
from tests.redis_server import RedisServer


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _kill_and_time(cluster: Cluster) -> float:
    """Seconds from SIGKILL of a node holding a lease to node_lost answered through another."""
    victim = cluster.start_node("c")
    await cluster.wait_formed()
    held = await victim.client.stub.Acquire(pb.AcquireRequest(), timeout=60)
    await victim.client.close()
    killed = time.monotonic()
    cluster.kill("c")
    release = pb.ReleaseRequest(lease_id=held.lease_id, token=held.token)
    while True:
        try:
            answer = await cluster.nodes["a"].client.stub.Release(release, timeout=5)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            await asyncio.sleep(0.02)
            continue
        if answer.reason != pb.RELEASE_REASON_NODE_LOST:
            raise RuntimeError(f"the killed node's lease ended {answer.reason}, not node_lost")
        elapsed = time.monotonic() - killed
        del cluster.nodes["c"]
        return elapsed


async def measure(samples: int, kills: int) -> dict[str, object]:
    redis = RedisServer().start()
    cluster = Cluster(redis)
    try:
        a = cluster.start_node("a")
        cluster.start_node("b")
        await cluster.wait_formed()
        lease = await a.client.stub.Acquire(pb.AcquireRequest(), timeout=60)
        lease_id, token = lease.lease_id, lease.token
        health = health_pb2_grpc.HealthStub(a.client.channel)

        def run_via(node: str) -> Callable[[], Awaitable[object]]:
            stub = cluster.nodes[node].client.stub

            async def call() -> object:
                request = pb.RunRequest(lease_id=lease_id, token=token, steps=[steps.evaluate("1")])
                return [r async for r in stub.Run(request, timeout=30)]

            return call

        def keepalive_via(node: str) -> Callable[[], Awaitable[object]]:
            stub = cluster.nodes[node].client.stub

            async def call() -> object:
                request = pb.KeepAliveRequest(lease_id=lease_id, token=token)
                request.ttl.seconds = 300
                return await stub.KeepAlive(request, timeout=30)

            return call

        async def check() -> object:
            return await health.Check(health_pb2.HealthCheckRequest(), timeout=30)

        probes: dict[str, Callable[[], Awaitable[object]]] = {
            "health check (A)": check,
            "Run via owner (A)": run_via("a"),
            "Run via other node (B)": run_via("b"),
            "KeepAlive via owner (A)": keepalive_via("a"),
            "KeepAlive via other node (B)": keepalive_via("b"),
        }
        for probe in probes.values():  # warm up channels and the page
            for _ in range(5):
                await probe()
        timings: dict[str, list[float]] = {name: [] for name in probes}
        for _ in range(samples):
            order = list(probes.items())
            random.shuffle(order)
            for name, probe in order:
                started = time.perf_counter()
                await probe()
                timings[name].append((time.perf_counter() - started) * 1000)
        await a.client.stub.Release(pb.ReleaseRequest(lease_id=lease_id, token=token))
        node_lost_s = [await _kill_and_time(cluster) for _ in range(kills)]
    finally:
        await cluster.stop()
        redis.stop()
    medians = {name: statistics.median(values) for name, values in timings.items()}
    return {
        "samples": samples,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
        "ms": {n: {"p50": medians[n], "p90": _p(v, 0.9)} for n, v in timings.items()},
        "node_lost_s": node_lost_s,
        "node_lost_bound_s": NODE_LOST_BOUND_S,
        "ratios": {
            "Run": medians["Run via other node (B)"] / medians["Run via owner (A)"],
            "KeepAlive": medians["KeepAlive via other node (B)"]
            / medians["KeepAlive via owner (A)"],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    result = asyncio.run(measure(args.samples, args.kills))
    print(f"{result['samples']} rounds; {result['machine']}")
    print("| call | p50 ms | p90 ms |\n|---|---:|---:|")
    for name, figures in result["ms"].items():  # type: ignore[attr-defined]
        print(f"| {name} | {figures['p50']:.2f} | {figures['p90']:.2f} |")
    for call, ratio in result["ratios"].items():  # type: ignore[attr-defined]
        print(f"{call} through a non-owner node / through the owner (medians): {ratio:.2f}x")
    lost = result["node_lost_s"]
    print(
        f"node_lost after SIGKILL: {', '.join(f'{t:.2f}' for t in lost)} s "  # type: ignore[attr-defined]
        f"(bound {result['node_lost_bound_s']:.1f} s)"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
