"""What the filesystem jail costs a browser launch: cold launches with and without it, alternated.

    .venv/bin/python -m bench.jail [--samples 7] [--engines chromium,firefox]

For each engine, browsers are launched the way the broker launches them (the engine's own
launch, through the sandbox plan), alternately with `browser_jail` off and on; each sample is
the time from the launch call until a first page is open. Prints the medians side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from playwright.async_api import Playwright, async_playwright

from broker.engines import chromium, firefox, sandbox
from broker.engines.playwright.engine import PlaywrightEngine


def _engine(name: str, jail_mode: str) -> PlaywrightEngine:
    plan = sandbox.plan(True, "browser-broker", jail_mode)
    if name == "chromium":
        return chromium.create(None, [], True, plan)
    return firefox.create(None, True, plan)


async def _launch_ms(playwright: Playwright, engine: PlaywrightEngine) -> float:
    started = time.perf_counter()
    browser = await engine._launcher(playwright)  # the launch alone, no pool or lease
    await browser.new_page()
    elapsed = (time.perf_counter() - started) * 1000
    await browser.close()
    return elapsed


async def main(samples: int, engines: list[str]) -> None:
    async with async_playwright() as playwright:
        for name in engines:
            modes = {"off": _engine(name, "off"), "jail": _engine(name, "required")}
            for engine in modes.values():
                assert engine.availability().available, engine.availability().detail
            times: dict[str, list[float]] = {mode: [] for mode in modes}
            await _launch_ms(playwright, modes["off"])  # a first launch warms the page cache
            for _ in range(samples):
                for mode, engine in modes.items():
                    times[mode].append(await _launch_ms(playwright, engine))
            off, jail = (statistics.median(times[m]) for m in ("off", "jail"))
            print(
                f"{name:9} cold launch to first page, median of {samples}: "
                f"no jail {off:7.0f} ms | jail {jail:7.0f} ms | cost {jail - off:+6.0f} ms"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=7)
    parser.add_argument("--engines", default="chromium,firefox")
    args = parser.parse_args()
    asyncio.run(main(args.samples, args.engines.split(",")))
