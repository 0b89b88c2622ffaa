"""Engine benchmark: latency and memory per lease for each engine and isolation mode.

    .venv/bin/python -m bench.engines [--samples 5]

One broker (`--engines chromium,firefox --warm-pool-size 2 --capacity 30`) serves every probe.
Latencies are measured interleaved, sample by sample, beside a bare gRPC health check, and are
reported as medians and as ratios to the health-check median of the same run (absolute times on a
shared machine mean little). Memory is the PSS summed over the broker's browser processes with
1, 10 and 25 concurrent leases held, each navigated once to a small data: page; the per-lease
figure is (total - total with no lease) / N. Only chromium with context isolation has a warm pool.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

from browserbroker import AsyncBrokerClient, AsyncLease, ContextOptions, Engine, Isolation, steps
from tests.support import BrokerProcess

POOL = 2
LEVELS = (1, 10, 25)
PAGE = "data:text/html,<title>bench</title><h1>hello</h1>"
MIN_AVAILABLE_MB = 2048  # stop adding leases when the machine has less than this left
ACQUIRE_CONCURRENCY = 4  # leases opened at once while filling a memory level
MB = 1024 * 1024

COMBOS = [
    (Engine.CHROMIUM, Isolation.CONTEXT),
    (Engine.CHROMIUM, Isolation.BROWSER),
    (Engine.FIREFOX, Isolation.CONTEXT),
    (Engine.FIREFOX, Isolation.BROWSER),
]


def label(engine: Engine, isolation: Isolation) -> str:
    return f"{engine.name.lower()} / {isolation.name.lower()}"


def has_pool(engine: Engine, isolation: Isolation) -> bool:
    return engine is Engine.CHROMIUM and isolation is Isolation.CONTEXT


def cold_options() -> ContextOptions:
    # Any context option keeps a lease away from the warm pool.
    return ContextOptions(locale="en-US")


async def timed(action: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await action()
    return time.perf_counter() - started


def browsers_pss_mb(broker: BrokerProcess) -> tuple[float, int]:
    """PSS summed over the broker's browser processes, and how many there are."""
    total = 0
    procs = broker.browsers()
    for proc in procs:
        with contextlib.suppress(psutil.Error):  # a helper that exited meanwhile
            total += proc.memory_full_info().pss
    return total / MB, len(procs)


async def settled_pss_mb(broker: BrokerProcess, timeout_s: float = 20.0) -> tuple[float, int]:
    """Waits until the process count holds and PSS moves less than 3% between readings."""
    deadline = time.monotonic() + timeout_s
    last = browsers_pss_mb(broker)
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        now = browsers_pss_mb(broker)
        if now[1] == last[1] and abs(now[0] - last[0]) <= 0.03 * max(last[0], 1.0):
            return now
        last = now
    return last


class Bench:
    def __init__(self, broker: BrokerProcess) -> None:
        self.broker = broker
        self.client = AsyncBrokerClient(broker.address)
        self.health = health_pb2_grpc.HealthStub(self.client.channel)

    async def wait_pool_full(self) -> None:
        for _ in range(1200):
            if (await self.client.status()).warm_pool_size >= POOL:
                return
            await asyncio.sleep(0.05)
        raise RuntimeError("warm pool did not refill")

    async def health_check(self) -> float:
        return await timed(lambda: self.health.Check(health_pb2.HealthCheckRequest(), timeout=10))

    async def cold_acquire(self, engine: Engine, isolation: Isolation) -> float:
        started = time.perf_counter()
        lease = await self.client.acquire(
            engine=engine, isolation=isolation, context=cold_options(), timeout=120
        )
        elapsed = time.perf_counter() - started
        try:
            assert not lease.grant.warm, "expected a cold session"
        finally:
            await lease.release()
        return elapsed

    async def warm_acquire(self, engine: Engine, isolation: Isolation) -> float:
        await self.wait_pool_full()
        started = time.perf_counter()
        lease = await self.client.acquire(engine=engine, isolation=isolation, timeout=120)
        elapsed = time.perf_counter() - started
        try:
            assert lease.grant.warm, "expected a warm session"
        finally:
            await lease.release()
        return elapsed

    async def lease_cycle(self, engine: Engine, isolation: Isolation) -> float:
        # Default options: on chromium / context the lease comes from the warm pool.
        if has_pool(engine, isolation):
            await self.wait_pool_full()

        async def cycle() -> None:
            async with self.client.lease(engine=engine, isolation=isolation, timeout=120) as lease:
                result = await lease.run(steps.evaluate("1+1"), timeout=60)
                assert result[0].value == 2

        return await timed(cycle)


@dataclass
class MemoryLevel:
    total_mb: float | None = None
    processes: int = 0
    per_lease_mb: float | None = None
    error: str | None = None


@dataclass
class MemoryResult:
    baseline_mb: float = 0.0
    baseline_processes: int = 0
    levels: dict[int, MemoryLevel] = field(default_factory=dict)


async def open_navigated(bench: Bench, engine: Engine, isolation: Isolation) -> AsyncLease:
    # Filling a level of dedicated Firefoxes takes minutes: keep the first leases from idling out.
    lease = await bench.client.acquire(
        engine=engine,
        isolation=isolation,
        context=cold_options(),
        ttl=1800,
        idle_timeout=1800,
        timeout=180,
    )
    try:
        await lease.run(steps.goto(PAGE), timeout=60)
    except BaseException:
        await lease.release()
        raise
    return lease


async def check_alive(held: list[AsyncLease]) -> None:
    """Every held lease still answers (so no browser died while the level was filled)."""
    for start in range(0, len(held), ACQUIRE_CONCURRENCY):
        batch = held[start : start + ACQUIRE_CONCURRENCY]
        await asyncio.gather(*(lease.run(steps.evaluate("1+1"), timeout=60) for lease in batch))


async def measure_memory(bench: Bench, engine: Engine, isolation: Isolation) -> MemoryResult:
    """Holds 1, then 10, then 25 leases (cumulatively) and reads the browsers' PSS at each level."""
    if has_pool(engine, isolation):
        await bench.wait_pool_full()
    baseline_mb, baseline_processes = await settled_pss_mb(bench.broker)
    result = MemoryResult(baseline_mb=baseline_mb, baseline_processes=baseline_processes)
    held: list[AsyncLease] = []
    failure: str | None = None
    try:
        for level in LEVELS:
            if failure is not None:
                result.levels[level] = MemoryLevel(error=f"skipped ({failure})")
                continue
            try:
                while len(held) < level:
                    available_mb = psutil.virtual_memory().available / MB
                    if available_mb < MIN_AVAILABLE_MB:
                        raise RuntimeError(
                            f"stopped at {len(held)} leases: {available_mb:.0f} MB available"
                        )
                    batch = min(ACQUIRE_CONCURRENCY, level - len(held))
                    opened = await asyncio.gather(
                        *(open_navigated(bench, engine, isolation) for _ in range(batch)),
                        return_exceptions=True,
                    )
                    errors = [o for o in opened if isinstance(o, BaseException)]
                    held.extend(o for o in opened if not isinstance(o, BaseException))
                    if errors:
                        raise errors[0]
                if has_pool(engine, isolation):
                    await bench.wait_pool_full()
                await check_alive(held)
                total, processes = await settled_pss_mb(bench.broker)
                result.levels[level] = MemoryLevel(
                    total_mb=total,
                    processes=processes,
                    per_lease_mb=(total - result.baseline_mb) / level,
                )
            except Exception as exc:  # reported in the table
                failure = f"{type(exc).__name__}: {exc}".replace("|", "/").replace("\n", " ")[:200]
                result.levels[level] = MemoryLevel(error=failure)
    finally:
        await asyncio.gather(*(lease.release() for lease in held), return_exceptions=True)
    return result


Probe = tuple[str, Callable[[], Awaitable[float]]]


def probes_for(bench: Bench) -> list[Probe]:
    probes: list[Probe] = [("health_check", bench.health_check)]
    for engine, isolation in COMBOS:
        name = label(engine, isolation)

        def bind(
            method: Callable[[Engine, Isolation], Awaitable[float]],
            engine: Engine = engine,
            isolation: Isolation = isolation,
        ) -> Callable[[], Awaitable[float]]:
            return lambda: method(engine, isolation)

        probes.append((f"{name} cold_acquire", bind(bench.cold_acquire)))
        if has_pool(engine, isolation):
            probes.append((f"{name} warm_acquire", bind(bench.warm_acquire)))
        probes.append((f"{name} lease_cycle", bind(bench.lease_cycle)))
    return probes


async def measure(probes: list[Probe], samples: int) -> dict[str, list[float]]:
    """Interleaves every probe, sample by sample, so machine noise hits them all alike."""
    results: dict[str, list[float]] = {name: [] for name, _ in probes}
    for _, probe in probes:  # warm-up: first launches, first renders
        await probe()
    for _ in range(samples):
        for name, probe in probes:
            results[name].append(await probe())
    return results


def latency_row(name: str, values: list[float] | None, base: float) -> str:
    if not values:
        return f"| {name} | n/a | n/a | n/a |"
    ordered = sorted(values)
    median = statistics.median(ordered)
    p90 = ordered[int(0.9 * (len(ordered) - 1))]
    return f"| {name} | {median * 1000:.1f} | {p90 * 1000:.1f} | {median / base:.0f} |"


def combo_table(
    engine: Engine,
    isolation: Isolation,
    latencies: dict[str, list[float]],
    memory: MemoryResult,
    samples: int,
) -> str:
    name = label(engine, isolation)
    health = latencies["health_check"]
    base = statistics.median(health)
    cycle = "lease cycle (warm pool)" if has_pool(engine, isolation) else "lease cycle (cold)"
    lines = [
        f"### {name} ({samples} samples)",
        "",
        "| measurement | median ms | p90 ms | ratio to health check |",
        "|---|---:|---:|---:|",
        latency_row("health check", health, base),
        latency_row("cold Acquire", latencies.get(f"{name} cold_acquire"), base),
        latency_row("warm Acquire", latencies.get(f"{name} warm_acquire"), base),
        latency_row(cycle, latencies.get(f"{name} lease_cycle"), base),
        "",
        "| concurrent leases | browser processes | browsers' PSS total MB | per lease MB |",
        "|---:|---:|---:|---:|",
        f"| 0 (baseline) | {memory.baseline_processes} | {memory.baseline_mb:.0f} | |",
    ]
    for level in LEVELS:
        result = memory.levels.get(level, MemoryLevel(error="not measured"))
        if result.error is not None:
            lines.append(f"| {level} | | error: {result.error} | |")
        else:
            lines.append(
                f"| {level} | {result.processes} | {result.total_mb:.0f} |"
                f" {result.per_lease_mb:.1f} |"
            )
    return "\n".join(lines)


async def run(samples: int) -> str:
    broker = BrokerProcess(
        args=["--engines", "chromium,firefox", "--warm-pool-size", str(POOL), "--capacity", "30"]
    ).start()
    try:
        bench = Bench(broker)
        try:
            latencies = await measure(probes_for(bench), samples)
            memory = {combo: await measure_memory(bench, *combo) for combo in COMBOS}
        finally:
            await bench.client.close()
        tables = [combo_table(*combo, latencies, memory[combo], samples) for combo in COMBOS]
        return "\n\n".join(tables)
    finally:
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.engines",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--samples", type=int, default=5)
    args = parser.parse_args()
    started = time.perf_counter()
    print(asyncio.run(run(args.samples)))
    print(f"\nwall time: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
