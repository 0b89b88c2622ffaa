"""Chromium through Playwright: a Playwright-managed build or the system's Chromium."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Browser, BrowserContext, Page, Playwright
from playwright.async_api import Error as PlaywrightError

from broker.common.cleanup import bounded
from broker.engines.base import Availability
from broker.engines.discovery import BrowserNotFound, find_browser, playwright_managed
from broker.engines.playwright import isolated
from broker.engines.playwright.attachable import AttachableEngine, AttachedBrowsers
from broker.engines.playwright.engine import PlaywrightEngine
from broker.engines.playwright.served import ServedBrowsers
from broker.engines.playwright.serving import ServingEngine
from broker.engines.playwright.session import Interrupter
from broker.engines.sandbox import Sandbox
from broker.model.options import EngineName

# Server-safe flags: no GPU, no /dev/shm exhaustion, and nothing that phones home (a closed
# network otherwise costs a failed connection per background service at every start).
SERVER_ARGS = [
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # No QUIC (HTTP/3 and WebTransport are UDP, which the egress route cannot carry).
    "--disable-quic",
    # WebRTC would reach the network over UDP, around the egress route: proxied TCP only (TURN
    # over TCP, through the route). Current Chromium reads the policy's preference switch; the
    # older `--force-` switch is gone from it and is kept only for older builds.
    "--webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
    # The browser's own calls home (form autofill, hints) would be refused by the egress policy.
    "--disable-features=AutofillServerCommunication,OptimizationHints,MediaRouter",
]


INTERRUPTER_ATTACH_S = 2.0


class ChromiumEngine(ServingEngine, AttachableEngine):
    supports_pdf = True

    async def page_interrupter(self, context: BrowserContext, page: Page) -> Interrupter | None:
        """A CDP session attached while the page is idle (a busy page answers no attach) that
        can later terminate a script that never yields: closing its page then takes tens of
        milliseconds instead of Chromium's half-second wait for a busy renderer."""
        try:
            cdp = await bounded(context.new_cdp_session(page), INTERRUPTER_ATTACH_S)
        except (PlaywrightError, TimeoutError):
            return None

        isolated.use_cdp_session(page, cdp)  # reads go through it too (see isolated.py)

        async def interrupt() -> object:
            return await cdp.send("Runtime.terminateExecution")

        return interrupt


def create(
    explicit_path: str | None,
    extra_args: list[str],
    headless: bool = True,
    sandbox: Sandbox | None = None,
) -> PlaywrightEngine:
    sandbox = sandbox or Sandbox(enabled=True)
    try:
        exe = find_browser(
            "chromium", explicit_path, None if explicit_path else playwright_managed("chromium")
        )
    except BrowserNotFound as exc:
        return ChromiumEngine(EngineName.CHROMIUM, _unavailable, "", Availability(False, str(exc)))
    if sandbox.problem:
        return ChromiumEngine(
            EngineName.CHROMIUM, _unavailable, "", Availability(False, sandbox.problem)
        )
    args = list(SERVER_ARGS) + list(extra_args)
    if not sandbox.enabled:
        args.append("--no-sandbox")
    executable = sandbox.executable(exe.path)

    async def launch(playwright: Playwright) -> Browser:
        async def start(extra: dict[str, Any]) -> Browser:
            return await playwright.chromium.launch(
                executable_path=executable,
                args=args,
                headless=headless,
                chromium_sandbox=sandbox.enabled,
                **extra,  # this browser's own downloads folder
            )

        return await sandbox.launch(start)

    engine = ChromiumEngine(
        EngineName.CHROMIUM, launch, exe.path, Availability(True, exe.describe())
    )
    # Attachable leases' browsers: launched by the broker itself on a pipe, with the same flags.
    engine.serve_attached(AttachedBrowsers(executable, args, headless, sandbox.enabled))
    # Leases attached over Playwright's protocol: a launchServer of their own (served.py).
    served = {"args": args, "headless": headless, "chromiumSandbox": sandbox.enabled}
    engine.serve_playwright(ServedBrowsers("chromium", executable, served, sandbox))
    return engine


async def _unavailable(playwright: Playwright) -> Browser:
    raise RuntimeError("no Chromium available")
