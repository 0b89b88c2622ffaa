"""Warm pools: cold vs warm Acquire for every engine and isolation, and a burst of dedicated
Firefox leases before and after demand sizing.

    .venv/bin/python -m bench.warm table [--samples 5]
    .venv/bin/python -m bench.warm burst [--burst 8] [--pool 4]
    .venv/bin/python -m bench.warm attach [--samples 15] [--cases cdp-chromium,playwright-firefox]

`table`: one broker (`--engines chromium,firefox,camoufox`, a warm pool of one session for every
engine and isolation) serves every probe. Each cold and warm Acquire (released at once) is
measured beside a bare gRPC health check of the same run and reported as its median and as a
ratio to the health check's median. A cold Acquire asks for a context option (a locale), which
no pooled session has. An engine that cannot run here is listed with the reason.

`burst`: `--burst` dedicated-Firefox Acquires at once against a pool of `--pool`. First with a
fixed pool (`size = pool`); then with demand sizing (`size = pool, max_size = burst`), where a
first burst teaches the pool the demand and, once it has refilled, a second burst is measured.
For each burst: how many leases were warm, and the p50 / p99 wait of the Acquires.

`attach`: attachable leases, cold and warm, for each `--cases` pair (CDP on Chromium, Playwright's
protocol on Chromium and Firefox, WebDriver BiDi on a stock Firefox), each against a broker of its
own with an attachable pool of one (`chromium/browser+cdp=1`, `firefox/browser+playwright=1`...).
Each sample is an Acquire(attach=...) and the client's connect to its connect URL, measured apart
and together, then Release: Python Playwright's `connect_over_cdp` or `browser_type.connect` (the
driver already running), or a raw BiDi client's `session.new`. A cold one asks for a locale, which
no pooled browser has (a BiDi lease takes no context options: its cold ones come from a second
broker without a pool). Warm and cold alternate, and each begins once the pool holds its browser
and the last lease's browser has exited (no launch or close beside it). Medians of the samples,
and the load average after the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import time
from dataclasses import dataclass

import websockets
from grpc_health.v1 import health_pb2, health_pb2_grpc
from playwright.async_api import Playwright, async_playwright

from bench.engines import label, timed
from browserbroker import AsyncBrokerClient, AsyncLease, ContextOptions, Engine, Isolation
from browserbroker.v1 import broker_pb2 as pb
from tests.support import BrokerProcess

PAIRS = [(engine, isolation) for engine in Engine if engine is not Engine.DEFAULT
         for isolation in Isolation if isolation is not Isolation.DEFAULT]  # fmt: skip
COLD = ContextOptions(locale="en-US")  # a pooled session has default options: this opens cold


def pool_flag(engine: Engine, isolation: Isolation, size: int, ceiling: int | None = None) -> str:
    spec = f"{engine.name.lower()}/{isolation.name.lower()}={size}"
    return f"{spec}:{ceiling}" if ceiling is not None else spec


async def pool_ready(
    client: AsyncBrokerClient, engine: Engine, isolation: Isolation, attach: int = 0
) -> None:
    """Waits until the pool of the pair (an attachable one: `attach`, the protocol's number)
    holds its target (at most two minutes)."""
    for _ in range(2400):
        for pool in (await client.status()).pools:
            same = (int(pool.engine), int(pool.isolation)) == (int(engine), int(isolation))
            if same and int(pool.attach) == attach and pool.ready >= pool.target:
                return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the {label(engine, isolation)} pool did not fill")


async def acquire_once(
    client: AsyncBrokerClient, engine: Engine, isolation: Isolation, warm: bool
) -> float:
    started = time.perf_counter()
    lease = await client.acquire(
        engine=engine, isolation=isolation, context=None if warm else COLD, timeout=180
    )
    elapsed = time.perf_counter() - started
    try:
        assert lease.grant.warm is warm, f"expected warm={warm}"
    finally:
        await lease.release()
    return elapsed


async def table(samples: int) -> str:
    pools = [pool_flag(engine, isolation, 1) for engine, isolation in PAIRS]
    args = ["--engines", "chromium,firefox,camoufox", "--capacity", "16"]
    broker = BrokerProcess(args=args + [f"--warm-pool={p}" for p in pools]).start()
    client = AsyncBrokerClient(broker.address)
    health = health_pb2_grpc.HealthStub(client.channel)
    try:
        status = await client.status()
        available = {int(e.engine): (e.available, e.detail) for e in status.engines}
        health_s: list[float] = []
        cold: dict[tuple[Engine, Isolation], list[float]] = {pair: [] for pair in PAIRS}
        warm: dict[tuple[Engine, Isolation], list[float]] = {pair: [] for pair in PAIRS}
        usable = [pair for pair in PAIRS if available[int(pair[0])][0]]

        async def check() -> None:
            await health.Check(health_pb2.HealthCheckRequest(), timeout=10)

        for sample in range(samples + 1):  # the first round warms up (first launches)
            for engine, isolation in usable:
                await pool_ready(client, engine, isolation)
                for _ in range(3):  # the round trip right beside each Acquire
                    elapsed = await timed(check)
                    if sample:
                        health_s.append(elapsed)
                warm_s = await acquire_once(client, engine, isolation, warm=True)
                await pool_ready(client, engine, isolation)  # no refill beside the cold one
                cold_s = await acquire_once(client, engine, isolation, warm=False)
                if sample:
                    warm[(engine, isolation)].append(warm_s)
                    cold[(engine, isolation)].append(cold_s)
        base = statistics.median(health_s)
        lines = [
            f"health check: median {base * 1000:.2f} ms over {len(health_s)} calls; "
            f"{samples} samples per Acquire",
            "",
            "| engine / isolation | cold Acquire ms | cold / health | warm Acquire ms "
            "| warm / health |",
            "|---|---:|---:|---:|---:|",
        ]
        for pair in PAIRS:
            engine, isolation = pair
            ok, detail = available[int(engine)]
            if not ok:
                lines.append(f"| {label(*pair)} | unavailable here: {detail[:80]} | | | |")
                continue
            cold_med, warm_med = statistics.median(cold[pair]), statistics.median(warm[pair])
            lines.append(
                f"| {label(*pair)} | {cold_med * 1000:.1f} | {cold_med / base:.0f} "
                f"| {warm_med * 1000:.2f} | {warm_med / base:.2f} |"
            )
        return "\n".join(lines)
    finally:
        await client.close()
        broker.stop()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def percentile(values: list[float], q: float) -> float:
    """Nearest rank: of 8 waits, p50 is the 4th shortest and p99 the longest."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


async def one_burst(client: AsyncBrokerClient, n: int) -> tuple[list[float], list[float]]:
    """`n` dedicated-Firefox Acquires at once: the waits of the warm ones and the cold ones."""

    async def acquire() -> tuple[AsyncLease, float]:
        started = time.perf_counter()
        lease = await client.acquire(
            engine=Engine.FIREFOX, isolation=Isolation.BROWSER, ttl=600, timeout=300
        )
        return lease, time.perf_counter() - started

    results = await asyncio.gather(*(acquire() for _ in range(n)))
    await asyncio.gather(*(lease.release() for lease, _ in results))
    return (
        [wait for lease, wait in results if lease.grant.warm],
        [wait for lease, wait in results if not lease.grant.warm],
    )


async def burst(n: int, size: int) -> str:
    lines = [
        f"{n} dedicated-Firefox Acquires at once, pool of {size}",
        "",
        "| pool | burst | warm | p50 wait ms | p99 wait ms | slowest warm ms | fastest cold ms |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, ceiling in ((f"fixed, size {size}", None), (f"demand, {size} to {n}", n)):
        flag = pool_flag(Engine.FIREFOX, Isolation.BROWSER, size, ceiling)
        args = ["--engines", "chromium,firefox", "--capacity", str(2 * n), "--warm-pool-size", "0"]
        broker = BrokerProcess(args=[*args, f"--warm-pool={flag}"]).start()
        client = AsyncBrokerClient(broker.address)
        try:
            bursts = ["first", "second (after refill)"] if ceiling else ["first"]
            for which in bursts:
                await pool_ready(client, Engine.FIREFOX, Isolation.BROWSER)
                warm, cold = await one_burst(client, n)
                waits = warm + cold
                lines.append(
                    f"| {name} | {which} | {len(warm)} of {n} "
                    f"| {percentile(waits, 0.5) * 1000:.0f} | {percentile(waits, 0.99) * 1000:.0f} "
                    f"| {ms(max(warm)) if warm else 'n/a'} | {ms(min(cold)) if cold else 'n/a'} |"
                )
        finally:
            await client.close()
            broker.stop()
    return "\n".join(lines)


@dataclass(frozen=True)
class AttachCase:
    """An attachable lease's protocol and engine, as `--cases` names it (e.g. playwright-firefox)."""

    protocol: str  # cdp, playwright or bidi
    engine: Engine

    @property
    def name(self) -> str:
        return f"{self.protocol}-{self.engine.name.lower()}"

    @property
    def pool(self) -> str:
        return f"{self.engine.name.lower()}/browser+{self.protocol}=1"

    @property
    def attach(self) -> int:  # the protocol's number in the API (PoolStatus.attach)
        return int(getattr(pb, f"ATTACH_PROTOCOL_{self.protocol.upper()}"))

    @property
    def connect(self) -> str:
        return {"cdp": "connect_over_cdp", "playwright": "connect", "bidi": "session.new"}[
            self.protocol
        ]


ATTACH_CASES = {
    case.name: case
    for case in (
        AttachCase("cdp", Engine.CHROMIUM),
        AttachCase("playwright", Engine.CHROMIUM),
        AttachCase("playwright", Engine.FIREFOX),
        AttachCase("bidi", Engine.FIREFOX),
    )
}


async def handshake(playwright: Playwright, case: AttachCase, url: str) -> None:
    """The client's connect: the protocol's handshake, up to a browser it can drive."""
    if case.protocol == "bidi":  # a raw WebDriver BiDi client: its session.new
        async with websockets.connect(url, max_size=None) as socket:
            await socket.send(json.dumps({"id": 1, "method": "session.new", "params": {}}))
            answer = json.loads(await asyncio.wait_for(socket.recv(), 60))
            assert answer.get("type") == "success", answer
        return
    browser_type = getattr(playwright, case.engine.name.lower())
    if case.protocol == "cdp":
        browser = await browser_type.connect_over_cdp(url, timeout=60_000)
    else:
        browser = await browser_type.connect(url, timeout=60_000)
    await browser.close()


async def attach_once(
    client: AsyncBrokerClient, playwright: Playwright, case: AttachCase, warm: bool
) -> tuple[float, float]:
    """One attachable lease: (Acquire s, connect s). A cold one asks for a locale (which no
    pooled browser has); an attach-only BiDi lease takes no context options, so a cold one comes
    from a broker without a pool."""
    started = time.perf_counter()
    shaped = None if warm or case.protocol == "bidi" else COLD
    lease = await client.acquire(
        attach=case.protocol, engine=case.engine, context=shaped, timeout=180
    )
    granted = time.perf_counter()
    try:
        assert lease.grant.warm is warm, f"expected warm={warm}"
        await handshake(playwright, case, lease.connect_url)
        connected = time.perf_counter()
    finally:
        await lease.release()
    return granted - started, connected - granted


async def browsers(client: AsyncBrokerClient, engine: Engine) -> tuple[int, int]:
    """The engine's browser processes, and the sessions of ended leases still closing."""
    status = await client.status()
    (found,) = [e for e in status.engines if int(e.engine) == int(engine)]
    return found.browsers, status.closing_sessions


async def attach_samples(
    case: AttachCase, samples: int, kinds: tuple[bool, ...], pool: bool
) -> dict[bool, list[tuple[float, float]]]:
    """`samples` leases of each kind (warm, cold), alternating, against one broker (with the
    case's pool of one, or none), each begun once the pool holds its browser and the last
    lease's browser has exited (no launch or close beside it)."""
    args = ["--engines", "chromium,firefox", "--warm-pool-size", "0"]
    broker = BrokerProcess(args=args + ([f"--warm-pool={case.pool}"] if pool else [])).start()
    client = AsyncBrokerClient(broker.address)
    runs: dict[bool, list[tuple[float, float]]] = {kind: [] for kind in kinds}

    async def quiet(alone: tuple[int, int]) -> None:
        if pool:
            await pool_ready(client, case.engine, Isolation.BROWSER, case.attach)
        for _ in range(1200):
            if await browsers(client, case.engine) == alone:
                return
            await asyncio.sleep(0.05)

    try:
        async with async_playwright() as playwright:
            if pool:
                await pool_ready(client, case.engine, Isolation.BROWSER, case.attach)
            alone = await browsers(client, case.engine)  # the pool's browser alone
            for sample in range(samples + 1):  # the first round warms up
                for warm in kinds:
                    await quiet(alone)
                    measured = await attach_once(client, playwright, case, warm)
                    if sample:
                        runs[warm].append(measured)
    finally:
        await client.close()
        broker.stop()
    return runs


async def attach(samples: int, cases: list[AttachCase]) -> str:
    lines = [
        f"attachable leases, {samples} samples each, medians",
        "",
        "| protocol / engine | Acquire | Acquire ms | connect ms | Acquire + connect ms |",
        "|---|---|---:|---:|---:|",
    ]
    for case in cases:
        if case.protocol == "bidi":  # cold ones from a broker without a pool
            runs = await attach_samples(case, samples, (True,), pool=True)
            runs |= await attach_samples(case, samples, (False,), pool=False)
        else:
            runs = await attach_samples(case, samples, (True, False), pool=True)
        for warm in (False, True):
            acquire_s = statistics.median(a for a, _ in runs[warm])
            connect_s = statistics.median(c for _, c in runs[warm])
            both_s = statistics.median(a + c for a, c in runs[warm])
            lines.append(
                f"| {case.protocol} / {case.engine.name.lower()} ({case.connect}) "
                f"| {'warm (from the pool)' if warm else 'cold (launched for it)'} "
                f"| {acquire_s * 1000:.1f} | {connect_s * 1000:.1f} | {both_s * 1000:.1f} |"
            )
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return "\n".join([*lines, "", f"load average after the run: {load}"])


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.warm",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("table").add_argument("--samples", type=int, default=5)
    burst_args = sub.add_parser("burst")
    burst_args.add_argument("--burst", type=int, default=8)
    burst_args.add_argument("--pool", type=int, default=4)
    attach_args = sub.add_parser("attach")
    attach_args.add_argument("--samples", type=int, default=15)
    attach_args.add_argument(
        "--cases",
        default=",".join(ATTACH_CASES),
        help=f"protocol-engine pairs, comma-separated: {', '.join(ATTACH_CASES)}",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    if args.command == "table":
        print(asyncio.run(table(args.samples)))
    elif args.command == "attach":
        cases = [ATTACH_CASES[name.strip()] for name in args.cases.split(",")]
        print(asyncio.run(attach(args.samples, cases)))
    else:
        print(asyncio.run(burst(args.burst, args.pool)))
    print(f"\nwall time: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
