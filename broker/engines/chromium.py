"""Chromium through Playwright: a Playwright-managed build or the system's Chromium."""

from __future__ import annotations

import os

from playwright.async_api import Browser, Playwright

from broker.engines.base import Availability
from broker.engines.discovery import BrowserNotFound, find_browser, playwright_managed
from broker.engines.playwright_engine import PlaywrightEngine
from broker.options import EngineName

# Server-safe flags: no GPU, no /dev/shm exhaustion, and nothing that phones home (a closed
# network otherwise costs a failed connection per background service at every start).
SERVER_ARGS = [
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


class ChromiumEngine(PlaywrightEngine):
    # No script interrupter: a CDP session kept on every page to call Runtime.terminateExecution
    # stopped busy scripts ~7x sooner, but under renderer crashes it tripped an assertion that
    # killed Playwright's driver (and every browser). Closing the page is slower but safe.
    supports_pdf = True


def create(
    explicit_path: str | None, extra_args: list[str], headless: bool = True
) -> PlaywrightEngine:
    try:
        exe = find_browser(
            "chromium", explicit_path, None if explicit_path else playwright_managed("chromium")
        )
    except BrowserNotFound as exc:
        return ChromiumEngine(EngineName.CHROMIUM, _unavailable, "", Availability(False, str(exc)))
    args = list(SERVER_ARGS)
    if os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to start its sandbox as root
    args += extra_args

    async def launch(playwright: Playwright) -> Browser:
        return await playwright.chromium.launch(
            executable_path=exe.path, args=args, headless=headless
        )

    return ChromiumEngine(EngineName.CHROMIUM, launch, exe.path, Availability(True, exe.describe()))


async def _unavailable(playwright: Playwright) -> Browser:
    raise RuntimeError("no Chromium available")
