"""Stop-latency benchmark: how soon after a Run's deadline the browser stops working.

    .venv/bin/python -m bench.cancel [--samples 20]

For each kind of work (a navigation that keeps streaming, a timer loop, a script that never
returns) a Run gets a short deadline; the fixture site records the page's pings, and the latency
is the last ping's arrival minus the deadline. Prints p50/p99 per kind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
import uuid

from browserbroker import DeadlineExceededError, OnCancel
from tests.fixture_site import FixtureSite
from tests.support import STOP_KINDS, BrokerProcess, last_ping_after, work_for

DEADLINE_S = 1.0


async def one(client_addr: str, site: FixtureSite, kind: str, on_cancel: OnCancel) -> float:
    from browserbroker import AsyncBrokerClient

    async with AsyncBrokerClient(client_addr) as client, client.lease() as lease:
        ping_id = uuid.uuid4().hex
        started = time.monotonic()
        with contextlib.suppress(DeadlineExceededError):
            await lease.run(*work_for(kind, site, ping_id), timeout=DEADLINE_S, on_cancel=on_cancel)
        return await last_ping_after(site, ping_id, quiet_s=0.5) - (started + DEADLINE_S)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(samples: int) -> str:
    site = FixtureSite().start()
    broker = BrokerProcess(args=["--warm-pool-size", "2"]).start()
    try:
        results: dict[str, list[float]] = {kind: [] for kind in STOP_KINDS}
        for _ in range(samples):
            for kind in STOP_KINDS:
                results[kind].append(await one(broker.address, site, kind, OnCancel.KEEP_LEASE))
        lines = ["| work | samples | p50 ms | p99 ms | max ms |", "|---|---:|---:|---:|---:|"]
        for kind, values in results.items():
            lines.append(
                f"| {kind} | {len(values)} | {statistics.median(values) * 1000:.0f} | "
                f"{percentile(values, 0.99) * 1000:.0f} | {max(values) * 1000:.0f} |"
            )
        return "\n".join(lines)
    finally:
        broker.stop()
        site.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=20)
    print(asyncio.run(run(parser.parse_args().samples)))


if __name__ == "__main__":
    main()
