"""Stop-latency benchmark: how soon after a Run's deadline the browser stops working.

    .venv/bin/python -m bench.cancel [--samples 20] [--engines chromium,firefox]
                                     [--kinds timer_loop,...] [--load idle,busy]

For each kind of work (a navigation that keeps streaming, a timer loop, a script that never
yields, the same script started by the page itself, an evaluate promise that never resolves, a
script spinning in an iframe, a popup's timer) and each engine (Chromium, Firefox), a Run gets a
short deadline; the fixture site records the page's pings, and the latency is the last ping's
arrival minus the deadline (negative when the last ping came before it).

`--load idle,busy` measures each condition in the same run, one after the other against the same
broker: `busy` keeps one core spinning in a separate process for the whole phase. Prints p50, p90
and max per condition, engine and kind, and how many samples never pinged at all (a page too
slow to start its work before the deadline stopped it; left out of the figures).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import time
import uuid

from browserbroker import AsyncBrokerClient, DeadlineExceededError, Engine, OnCancel
from tests.fixture_site import FixtureSite
from tests.support import STOP_KINDS, BrokerProcess, last_ping_after, work_for

ENGINES = {"chromium": Engine.CHROMIUM, "firefox": Engine.FIREFOX}
LOADS = ("idle", "busy")


async def one(
    client: AsyncBrokerClient, site: FixtureSite, engine: Engine, kind: str, deadline_s: float
) -> float | None:
    """The stop latency of one Run, or None when the page never pinged at all."""
    async with client.lease(engine=engine) as lease:
        ping_id = uuid.uuid4().hex
        started = time.monotonic()
        with contextlib.suppress(DeadlineExceededError):
            await lease.run(
                *work_for(kind, site, ping_id), timeout=deadline_s, on_cancel=OnCancel.KEEP_LEASE
            )
        deadline = started + deadline_s
        await asyncio.sleep(0.5)  # a ping still on its way is counted too
        if not site.pings.times(ping_id):
            return None
        return await last_ping_after(site, ping_id, quiet_s=0.5) - deadline


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def busy_core() -> subprocess.Popen[bytes]:
    """One core kept busy until killed (a stand-in for a neighbour on a shared machine)."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


async def run(
    samples: int, engines: list[str], kinds: list[str], loads: list[str], deadline_s: float
) -> str:
    site = FixtureSite().start()
    broker = BrokerProcess(
        args=[
            *("--warm-pool-size", "2", "--engines", ",".join(engines)),
            *("--default-engine", engines[0]),
        ]
    ).start()
    lines = [
        f"Deadline {deadline_s} s, {samples} samples per row.",
        "",
        "| load | engine | work | samples | p50 ms | p90 ms | max ms | never pinged |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    try:
        async with AsyncBrokerClient(broker.address) as client:
            for load in loads:
                spinner = busy_core() if load == "busy" else None
                try:
                    results: dict[tuple[str, str], list[float | None]] = {
                        (engine, kind): [] for engine in engines for kind in kinds
                    }
                    for _ in range(samples):  # interleaved, so drift hits every row alike
                        for engine, kind in results:
                            latency = await one(client, site, ENGINES[engine], kind, deadline_s)
                            results[(engine, kind)].append(latency)
                finally:
                    if spinner is not None:
                        spinner.kill()
                        spinner.wait()
                for (engine, kind), values in results.items():
                    got = [v for v in values if v is not None]
                    missed = len(values) - len(got)
                    if not got:
                        lines.append(f"| {load} | {engine} | {kind} | 0 | | | | {missed} |")
                        continue
                    lines.append(
                        f"| {load} | {engine} | {kind} | {len(got)} "
                        f"| {statistics.median(got) * 1000:.0f} "
                        f"| {percentile(got, 0.9) * 1000:.0f} | {max(got) * 1000:.0f} "
                        f"| {missed} |"
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
    parser.add_argument("--kinds", default=",".join(STOP_KINDS), help="comma-separated")
    parser.add_argument("--load", default="idle,busy", help="comma-separated: idle, busy")
    parser.add_argument("--deadline", type=float, default=2.0, help="the Run's deadline, s")
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    if unknown := set(kinds) - set(STOP_KINDS):
        parser.error(f"unknown --kinds {sorted(unknown)}; choose from {', '.join(STOP_KINDS)}")
    engines = args.engines.split(",")
    if unknown := set(engines) - set(ENGINES):
        parser.error(f"unknown --engines {sorted(unknown)}; choose from {', '.join(ENGINES)}")
    loads = args.load.split(",")
    if unknown := set(loads) - set(LOADS):
        parser.error(f"unknown --load {sorted(unknown)}; choose from {', '.join(LOADS)}")
    print(asyncio.run(run(args.samples, engines, kinds, loads, args.deadline)))


if __name__ == "__main__":
    main()
