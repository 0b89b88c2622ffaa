"""Broker memory over many lease cycles: is the daemon's RSS flat?

    .venv/bin/python -m bench.rss [--cycles 10000] [--clients 4] [--warmup 500]

One broker (warm pool 4, capacity 8) serves `--clients` loops of full lease cycles (Acquire, one
Run that goes to a small page served on loopback and reads its h1, Release). The broker process's
RSS (the Python daemon, not its browsers: those are recycled on their own schedule) is read every
tenth of the run; the report compares the reading after `--warmup` cycles with the last one.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import psutil

from bench.peer_systems import PageServer
from browserbroker import AsyncBrokerClient, steps
from tests.support import BrokerProcess

MB = 1024 * 1024


async def run(cycles: int, clients: int, warmup: int) -> str:
    pages = PageServer().start()
    broker = BrokerProcess(args=["--warm-pool-size", "4", "--capacity", "8"]).start()
    assert broker.proc is not None
    daemon = psutil.Process(broker.proc.pid)
    samples: list[tuple[int, float]] = []
    done = 0
    failures = 0
    step = max(1, (cycles - warmup) // 10)
    next_sample = warmup
    started = time.monotonic()
    try:
        async with AsyncBrokerClient(broker.address) as client:

            async def loop() -> None:
                nonlocal done, failures, next_sample
                while done < cycles:
                    done += 1
                    try:
                        async with client.lease(timeout=60) as lease:
                            result = await lease.run(
                                steps.goto(pages.url), steps.text("h1"), timeout=60
                            )
                            result.raise_for_failure()
                    except Exception:
                        failures += 1
                    if done >= next_sample:
                        next_sample += step
                        samples.append((done, daemon.memory_info().rss / MB))
                        elapsed = time.monotonic() - started
                        print(
                            f"{done} cycles, {failures} failed, RSS {samples[-1][1]:.1f} MB, "
                            f"{elapsed:.0f} s",
                            file=sys.stderr,
                            flush=True,
                        )

            await asyncio.gather(*(loop() for _ in range(clients)))
    finally:
        broker.stop()
        pages.stop()
    first, last = samples[0][1], samples[-1][1]
    lines = [
        f"{cycles} cycles, {clients} clients, {failures} failed, {time.monotonic() - started:.0f} s",
        "| cycles | broker RSS MB |",
        "|---:|---:|",
        *(f"| {n} | {rss:.1f} |" for n, rss in samples),
        "",
        f"RSS after {samples[0][0]} cycles: {first:.1f} MB; after {samples[-1][0]}: {last:.1f} MB; "
        f"change {last - first:+.1f} MB (max {max(r for _, r in samples) - first:+.1f} MB)",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.rss",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--cycles", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=500)
    args = parser.parse_args()
    print(asyncio.run(run(args.cycles, args.clients, min(args.warmup, args.cycles - 1))))


if __name__ == "__main__":
    main()
