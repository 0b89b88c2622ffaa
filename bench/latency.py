"""Latency benchmark: warm and cold Acquire and a full lease cycle, beside a bare gRPC health check.

    .venv/bin/python -m bench.latency [--samples 30] [--otlp-endpoint http://127.0.0.1:4317]

Everything is measured side by side in one run and reported as medians and as ratios to the
health-check round trip measured in the same run, because absolute times on a shared machine mean
little. With --otlp-endpoint a second broker exports traces there, and the same cycle is measured
against both brokers alternately, to show what tracing costs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

from grpc_health.v1 import health_pb2, health_pb2_grpc

from browserbroker import AsyncBrokerClient, ContextOptions, Isolation, steps
from tests.support import BrokerProcess

Probe = Callable[[], Awaitable[float]]
PROBES = ["health_check", "warm_acquire", "cold_acquire", "cold_browser_acquire", "lease_cycle"]


async def timed(action: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await action()
    return time.perf_counter() - started


class Bench:
    def __init__(self, broker: BrokerProcess, pool: int) -> None:
        self.broker = broker
        self.pool = pool
        self.client = AsyncBrokerClient(broker.address)
        self.health = health_pb2_grpc.HealthStub(self.client.channel)

    async def wait_pool_full(self) -> None:
        for _ in range(600):
            if (await self.client.status()).warm_pool_size >= self.pool:
                return
            await asyncio.sleep(0.05)
        raise RuntimeError("warm pool did not refill")

    async def settle(self) -> None:
        """Wait until the broker is idle: pool full, no lease, no context still closing.

        Without this, one broker's background refill or cleanup would run during the other
        broker's measurement and bias the comparison.
        """
        for _ in range(600):
            status = await self.client.status()
            contexts = sum(engine.contexts for engine in status.engines)
            if (
                status.warm_pool_size >= self.pool
                and status.active_leases == 0
                and contexts == status.warm_pool_size
            ):
                return
            await asyncio.sleep(0.02)
        raise RuntimeError("broker did not settle")

    async def health_check(self) -> float:
        return await timed(lambda: self.health.Check(health_pb2.HealthCheckRequest(), timeout=10))

    async def warm_acquire(self) -> float:
        await self.wait_pool_full()
        started = time.perf_counter()
        lease = await self.client.acquire()
        elapsed = time.perf_counter() - started
        assert lease.grant.warm, "expected a warm session"
        await lease.release()
        return elapsed

    async def cold_acquire(self) -> float:
        # Any context option bypasses the pool: a new context (and page) in the running browser.
        started = time.perf_counter()
        lease = await self.client.acquire(context=ContextOptions(locale="en-US"))
        elapsed = time.perf_counter() - started
        assert not lease.grant.warm
        await lease.release()
        return elapsed

    async def cold_browser_acquire(self) -> float:
        started = time.perf_counter()
        lease = await self.client.acquire(isolation=Isolation.BROWSER)
        elapsed = time.perf_counter() - started
        await lease.release()
        return elapsed

    async def lease_cycle(self) -> float:
        await self.wait_pool_full()

        async def cycle() -> None:
            async with self.client.lease() as lease:
                result = await lease.run(steps.evaluate("1 + 1"), timeout=30)
                assert result[0].value == 2

        return await timed(cycle)


async def measure(
    benches: dict[str, Bench], probes: list[tuple[str, str]], samples: int
) -> dict[str, list[float]]:
    """Interleaves every probe, sample by sample, so machine noise hits them all alike.

    Every broker is settled before each probe, and the order is reversed every other sample,
    so neither broker's background work nor its position in the round favours one of them.
    """
    results: dict[str, list[float]] = {f"{b} {p}": [] for b, p in probes}
    for bench_name, probe in probes:  # warm-up: first launches, first renders
        await getattr(benches[bench_name], probe)()
    for sample in range(samples):
        for bench_name, probe in probes if sample % 2 == 0 else list(reversed(probes)):
            for bench in benches.values():
                await bench.settle()
            results[f"{bench_name} {probe}"].append(await getattr(benches[bench_name], probe)())
    return results


def table(results: dict[str, list[float]], baseline: str) -> str:
    base = statistics.median(results[baseline])
    lines = [
        "| measurement | median ms | p90 ms | ratio to health check |",
        "|---|---:|---:|---:|",
    ]
    for name, values in results.items():
        values = sorted(values)
        median = statistics.median(values)
        p90 = values[int(0.9 * (len(values) - 1))]
        lines.append(f"| {name} | {median * 1000:.2f} | {p90 * 1000:.2f} | {median / base:.1f} |")
    return "\n".join(lines)


async def run(samples: int, otlp_endpoint: str | None) -> str:
    pool = 4
    plain = BrokerProcess(args=["--warm-pool-size", str(pool), "--capacity", "8"]).start()
    traced = None
    if otlp_endpoint:
        traced = BrokerProcess(
            args=["--warm-pool-size", str(pool), "--capacity", "8"],
            env={
                "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint,
                "OTEL_SERVICE_NAME": "broker-bench",
                # Only the cost of tracing: Jaeger takes no metrics.
                "OTEL_METRICS_EXPORTER": "none",
            },
        ).start()
    try:
        benches = {"tracing-off": Bench(plain, pool)}
        if traced is not None:
            benches["tracing-on"] = Bench(traced, pool)
        # Both brokers run the same probes, so neither browser has done more work than the other.
        probes = [(name, probe) for name in benches for probe in PROBES]
        results = await measure(benches, probes, samples)
        out = table(results, "tracing-off health_check")
        if traced is not None:
            out += "\n\n| tracing on / tracing off (medians) | ratio |\n|---|---:|"
            for probe in PROBES[1:]:
                off = statistics.median(results[f"tracing-off {probe}"])
                on = statistics.median(results[f"tracing-on {probe}"])
                out += f"\n| {probe} | {on / off:.3f} |"
        for bench in benches.values():
            await bench.client.close()
        return out
    finally:
        plain.stop()
        if traced is not None:
            traced.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.latency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--otlp-endpoint", help="also measure a broker exporting traces here")
    args = parser.parse_args()
    print(asyncio.run(run(args.samples, args.otlp_endpoint)))


if __name__ == "__main__":
    main()
