"""Only the CDP round trip of bench.peers: `Runtime.evaluate("1")` on a page's flat session,
through an attachable lease's socket and straight to a Chromium's DevTools endpoint, alternated
sample by sample (bench/peer_attach.py `cdp_round_trips`), on a broker of its own.

    .venv/bin/python -m bench.peer_round_trip [--samples 400] [--rounds 1] [--splice-floor]

Prints the p50 of each way, their ratio (the target: within 1.2x) and the load average; each
round is a new lease and a new direct Chromium. `--splice-floor` also measures, in each round,
the same command straight to a Chromium's DevTools endpoint and through `socat` relaying the TCP
connection to it (a hop in C that reads nothing: the least one more process on the path costs),
alternated the same way; it needs socat (`apt-get install socat`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess

from bench.peer_attach import DevToolsChromium, alternated_round_trips, cdp_round_trips
from bench.peer_systems import free_port, stop_process, wait_for_port
from broker.engines.discovery import find_browser, playwright_managed
from tests.support import BrokerProcess


def _start_splice(socat: str, port: int, target: int) -> subprocess.Popen[bytes]:
    """socat relaying each connection to `port` on to `target` (a forked socat per connection:
    the port probe takes one)."""
    splice = subprocess.Popen(
        [
            socat,
            f"TCP-LISTEN:{port},bind=127.0.0.1,fork,nodelay",
            f"TCP:127.0.0.1:{target},nodelay",
        ],
        start_new_session=True,
    )
    wait_for_port(port, splice, "socat", 30)
    return splice


async def splice_round_trips(executable: str, samples: int) -> tuple[float, float]:
    """p50 of `Runtime.evaluate("1")` through socat and straight to DevTools, alternated."""
    socat = shutil.which("socat")
    if socat is None:
        raise SystemExit("--splice-floor needs socat (apt-get install socat)")
    direct = DevToolsChromium(executable)
    url = await asyncio.to_thread(direct.start)
    port = free_port()
    splice = None
    try:
        splice = await asyncio.to_thread(_start_splice, socat, port, direct.port)
        spliced_url = url.replace(f":{direct.port}/", f":{port}/", 1)
        spliced, straight = await alternated_round_trips(spliced_url, url, samples)
    finally:
        stop_process(splice)
        await asyncio.to_thread(direct.stop)
    return statistics.median(spliced), statistics.median(straight)


async def main(samples: int, rounds: int, splice_floor: bool) -> None:
    executable = find_browser("chromium", None, playwright_managed("chromium")).path
    broker = BrokerProcess()
    broker.start()
    try:
        for _ in range(rounds):
            load = os.getloadavg()[0]
            floors = await cdp_round_trips(broker, executable, samples)
            via = statistics.median(floors["broker_attach"])
            direct = statistics.median(floors["direct_devtools"])
            print(
                f"CDP round trip p50: through the broker {via * 1e3:.3f} ms, direct "
                f"{direct * 1e3:.3f} ms, {via / direct:.2f}x ({samples} each; load average "
                f"{load:.2f} before, {os.getloadavg()[0]:.2f} after)",
                flush=True,
            )
            if splice_floor:
                spliced, straight = await splice_round_trips(executable, samples)
                print(
                    f"  the floor: through socat {spliced * 1e3:.3f} ms, direct "
                    f"{straight * 1e3:.3f} ms, {spliced / straight:.2f}x",
                    flush=True,
                )
    finally:
        broker.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=400, help="round trips each way")
    parser.add_argument("--rounds", type=int, default=1, help="leases measured one after another")
    parser.add_argument(
        "--splice-floor", action="store_true", help="also: straight vs through socat (C)"
    )
    args = parser.parse_args()
    asyncio.run(main(args.samples, args.rounds, args.splice_floor))
