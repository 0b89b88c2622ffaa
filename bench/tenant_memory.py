"""What a tenant's own shared browser costs: PSS of the browsers behind N context leases, held by
N tenants (one shared browser each) or by one tenant (one shared browser for all).

    .venv/bin/python -m bench.tenant_memory [--engines chromium,firefox] [--counts 1,2,4]

For each engine and each N, a fresh in-process broker (authentication on, warm pools off) lends N
ISOLATION_CONTEXT leases, each on a small page served on loopback, first to N tenants, then all
to one tenant. After the pages have loaded and a settle time, the PSS (psutil
`memory_full_info().pss`) of every process below the engine's Playwright driver (the browsers,
their helpers and any jail around them; not the driver itself) is summed. The report gives both
totals and the cost of each tenant beyond the first: (N tenants - one tenant) / (N - 1).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib

import psutil

from bench.peer_systems import PageServer
from broker.engines.playwright.engine import PlaywrightEngine
from broker.model.options import EngineName
from browserbroker import AsyncBrokerClient, AsyncLease, Engine, Isolation, steps
from tests.support import start_in_process

MB = 1024 * 1024
SDK_ENGINE = {"chromium": Engine.CHROMIUM, "firefox": Engine.FIREFOX}
SETTLE_S = 3.0  # after the last page loads, before memory is read


def token(n: int) -> str:
    return f"tenant-{n}-token-0123456789"


def tenants(count: int) -> list[dict[str, object]]:
    return [
        {"name": f"t{n}", "token_sha256": [hashlib.sha256(token(n).encode()).hexdigest()]}
        for n in range(count)
    ]


def tree_pss_mb(root: int) -> float:
    """PSS of every process below `root` (not `root` itself), in MiB."""
    total = 0
    with contextlib.suppress(psutil.Error):
        for proc in psutil.Process(root).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += proc.memory_full_info().pss
    return total / MB


async def measure(engine: str, count: int, spread: bool, url: str) -> tuple[float, int]:
    """PSS (MiB) and browser processes with `count` context leases, held by `count` tenants
    (`spread`) or by one."""
    running = await start_in_process(
        engines=[engine], default_engine=engine, tenants=tenants(count), capacity=max(8, count)
    )
    clients = [
        AsyncBrokerClient(running.address, token=token(n if spread else 0)) for n in range(count)
    ]
    leases: list[AsyncLease] = []
    try:
        for client in clients:
            lease = await client.acquire(engine=SDK_ENGINE[engine], isolation=Isolation.CONTEXT)
            leases.append(lease)
            (await lease.run(steps.goto(url), steps.text("h1"), timeout=60)).raise_for_failure()
        await asyncio.sleep(SETTLE_S)
        adapter = running.broker.engines[EngineName(engine)]
        assert isinstance(adapter, PlaywrightEngine)
        driver = adapter.driver_pid
        assert driver is not None, f"{engine}: no driver process"
        pss = await asyncio.to_thread(tree_pss_mb, driver)
        return pss, len(adapter.census().browser_pids)
    finally:
        for lease in leases:
            await lease.release()
        for client in clients:
            await client.close()
        await running.shutdown()


async def run(engines: list[str], counts: list[int]) -> str:
    pages = PageServer().start()
    lines = [
        "| engine | leases (N) | N tenants: browsers, PSS MiB | 1 tenant: browsers, PSS MiB "
        "| per extra tenant MiB |",
        "|---|---|---|---|---|",
    ]
    try:
        for engine in engines:
            for count in counts:
                many, many_browsers = await measure(engine, count, True, pages.url)
                one, one_browsers = await measure(engine, count, False, pages.url)
                extra = f"{(many - one) / (count - 1):.0f}" if count > 1 else "-"
                lines.append(
                    f"| {engine} | {count} | {many_browsers}, {many:.0f} | {one_browsers}, "
                    f"{one:.0f} | {extra} |"
                )
    finally:
        pages.stop()
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="chromium,firefox")
    parser.add_argument("--counts", default="1,2,4")
    args = parser.parse_args()
    counts = [int(n) for n in args.counts.split(",")]
    print(asyncio.run(run(args.engines.split(","), counts)))


if __name__ == "__main__":
    main()
