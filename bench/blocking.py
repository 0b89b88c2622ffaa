"""Request-blocking benchmark: bytes and time a page heavy with images costs with and without
per-lease blocking.

    .venv/bin/python -m bench.blocking [--samples 10] [--engines chromium,firefox]

The fixture site's heavy page holds 12 images of 256 KiB each. For each engine, leases load it
(`goto`, wait_until "load") alternately plain, with `block_resource_types=["image"]` and with
`block_url_patterns=["**/img/*"]`; the site counts the image bytes it sends, and the Run's
`goto` duration is the time. Prints the median bytes and milliseconds per page load.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

from browserbroker import AsyncBrokerClient, ContextOptions, Engine, steps
from tests.fixture_site import FixtureSite
from tests.support import BrokerProcess

ENGINES = {"chromium": Engine.CHROMIUM, "firefox": Engine.FIREFOX}
MODES = {
    "no blocking": ContextOptions(),
    "block_resource_types=[image]": ContextOptions(block_resource_types=["image"]),
    "block_url_patterns=[**/img/*]": ContextOptions(block_url_patterns=["**/img/*"]),
}


async def one(
    address: str, site: FixtureSite, engine: Engine, context: ContextOptions
) -> tuple[int, float]:
    async with (
        AsyncBrokerClient(address) as client,
        client.lease(engine=engine, context=context) as lease,
    ):
        before = site.image_bytes
        result = await lease.run(steps.goto(site.url("heavy.html"), "load"), timeout=60)
        result.raise_for_failure()
        return site.image_bytes - before, result[0].duration_s * 1000


async def main(samples: int, engines: list[str]) -> None:
    site = FixtureSite().start()
    broker = BrokerProcess(args=["--engines", ",".join(engines)]).start()
    try:
        print("| engine | mode | image bytes per load | goto ms (median) |")
        print("| --- | --- | --- | --- |")
        for name in engines:
            runs: dict[str, list[tuple[int, float]]] = {mode: [] for mode in MODES}
            for _ in range(samples):  # interleaved, so load on the machine hits every mode alike
                for mode, context in MODES.items():
                    runs[mode].append(await one(broker.address, site, ENGINES[name], context))
            for mode, values in runs.items():
                sent = statistics.median(v[0] for v in values)
                ms = statistics.median(v[1] for v in values)
                print(f"| {name} | {mode} | {sent:,.0f} | {ms:.0f} |")
    finally:
        broker.stop()
        site.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--engines", default="chromium,firefox")
    options = parser.parse_args()
    asyncio.run(main(options.samples, options.engines.split(",")))
