"""Stop-latency benchmark: how soon after a Run's deadline the browser stops working.

    .venv/bin/python -m bench.cancel [--samples 20] [--engines chromium,firefox]

For each kind of work (a navigation that keeps streaming, a timer loop, a script that never
yields, an evaluate promise that never resolves, a script spinning in an iframe, a popup's timer)
and each engine (Chromium, Firefox), a Run gets a short deadline; the fixture site records the
page's pings, and the latency is the last ping's arrival minus the deadline (negative when the
last ping came before it). Prints p50/p99 per engine and kind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
import uuid

from browserbroker import AsyncBrokerClient, DeadlineExceededError, Engine, OnCancel
from tests.fixture_site import FixtureSite
from tests.support import STOP_KINDS, BrokerProcess, last_ping_after, work_for

DEADLINE_S = 1.0
ENGINES = {"chromium": Engine.CHROMIUM, "firefox": Engine.FIREFOX}


async def one(
    client_addr: str, site: FixtureSite, engine: Engine, kind: str, on_cancel: OnCancel
) -> float:
    async with AsyncBrokerClient(client_addr) as client, client.lease(engine=engine) as lease:
        ping_id = uuid.uuid4().hex
        started = time.monotonic()
        with contextlib.suppress(DeadlineExceededError):
            await lease.run(*work_for(kind, site, ping_id), timeout=DEADLINE_S, on_cancel=on_cancel)
        return await last_ping_after(site, ping_id, quiet_s=0.5) - (started + DEADLINE_S)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(samples: int, engines: list[str]) -> str:
    site = FixtureSite().start()
    broker = BrokerProcess(args=["--warm-pool-size", "2", "--engines", ",".join(engines)]).start()
    try:
        results: dict[tuple[str, str], list[float]] = {
            (engine, kind): [] for engine in engines for kind in STOP_KINDS
        }
        for _ in range(samples):
            for engine, kind in results:
                latency = await one(
                    broker.address, site, ENGINES[engine], kind, OnCancel.KEEP_LEASE
                )
                results[(engine, kind)].append(latency)
        lines = [
            "| engine | work | samples | p50 ms | p99 ms | max ms |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for (engine, kind), values in results.items():
            lines.append(
                f"| {engine} | {kind} | {len(values)} | {statistics.median(values) * 1000:.0f} | "
                f"{percentile(values, 0.99) * 1000:.0f} | {max(values) * 1000:.0f} |"
            )
        return "\n".join(lines)
    finally:
        broker.stop()
        site.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cancel",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--engines", default="chromium,firefox", help="comma-separated")
    args = parser.parse_args()
    print(asyncio.run(run(args.samples, args.engines.split(","))))


if __name__ == "__main__":
    main()
