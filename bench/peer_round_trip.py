"""Only the CDP round trip of bench.peers: `Runtime.evaluate("1")` on a page's flat session,
through an attachable lease's socket and straight to a Chromium's DevTools endpoint, alternated
sample by sample (bench/peer_attach.py `cdp_round_trips`), on a broker of its own.

    .venv/bin/python -m bench.peer_round_trip [--samples 400] [--rounds 1]

Prints the p50 of each way, their ratio (the target: within 1.2x) and the load average; each
round is a new lease and a new direct Chromium.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics

from bench.peer_attach import cdp_round_trips
from broker.engines.discovery import find_browser, playwright_managed
from tests.support import BrokerProcess


async def main(samples: int, rounds: int) -> None:
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
    finally:
        broker.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=400, help="round trips each way")
    parser.add_argument("--rounds", type=int, default=1, help="leases measured one after another")
    args = parser.parse_args()
    asyncio.run(main(args.samples, args.rounds))
