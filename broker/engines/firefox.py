"""Firefox through Playwright: Playwright's own Firefox build (Juggler) or a stock Firefox (BiDi).

Discovery order: the configured path (BROKER_FIREFOX_PATH), then the build `playwright install
firefox` put in place, then the system's firefox-esr / firefox. Playwright's build speaks
Playwright's Juggler protocol; a stock Firefox is driven over WebDriver BiDi (Playwright's
"moz-firefox" channel). docs/engines.md lists what differs between the two.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Playwright

from broker.attach.bidi_hub import BidiHub
from broker.engines.base import Availability, Session
from broker.engines.discovery import (
    BrowserExecutable,
    BrowserNotFound,
    find_browser,
    playwright_managed,
)
from broker.engines.playwright.attachable_firefox import BidiBrowsers, BidiSession
from broker.engines.playwright.engine import PlaywrightEngine
from broker.engines.playwright.served import ServedBrowsers
from broker.engines.playwright.serving import ServingEngine
from broker.engines.sandbox import Sandbox
from broker.errors import InvalidArgument
from broker.model.attach import AttachOptions, AttachProtocol
from broker.model.options import BrowserOptions, ContextOptions, EngineName, Isolation

JUGGLER = "juggler"
BIDI = "webdriver-bidi"

# Playwright's Firefox builds live in <browsers dir>/firefox-<revision>/firefox/firefox.
_PLAYWRIGHT_BUILD_DIR = re.compile(r"^firefox-\d+$")

# What a stock Firefox over WebDriver BiDi cannot do (Playwright 1.62, Firefox 153 ESR):
# the option would be silently ignored, so a lease asking for it is refused instead.
BIDI_UNSUPPORTED_CONTEXT = {
    "java_script_disabled": (
        "not supported by stock Firefox over WebDriver BiDi (scripts would still run); "
        "use engine chromium, or Playwright's Firefox build (`playwright install firefox`)"
    ),
    "color_scheme": (
        "not supported by stock Firefox over WebDriver BiDi (prefers-color-scheme stays light); "
        "use engine chromium, or Playwright's Firefox build (`playwright install firefox`)"
    ),
    "media": (
        "not supported by stock Firefox over WebDriver BiDi (the CSS media type stays screen); "
        "use engine chromium, or Playwright's Firefox build (`playwright install firefox`)"
    ),
}


# Firefox never proxies loopback unless told to (the egress route must see every request), and
# must not reach the network around its proxy: no UDP (WebRTC only through the proxy, so TURN
# over TCP; no HTTP/3 or WebTransport), no name resolved by the browser itself (DNS over HTTPS
# off, no DNS or link prefetching, no speculative connections).
EGRESS_PREFS: dict[str, str | float | bool] = {
    "network.proxy.allow_hijacking_localhost": True,
    "network.proxy.testing_localhost_is_secure_when_hijacked": False,
    "media.peerconnection.ice.proxy_only": True,
    "network.http.http3.enable": False,
    "network.webtransport.enabled": False,
    "network.trr.mode": 5,
    "network.dns.disablePrefetch": True,
    "network.prefetch-next": False,
    "network.http.speculative-parallel-limit": 0,
    "network.predictor.enabled": False,  # preconnects and DNS lookups learned from pages
    # No request for one host over a connection (a CONNECT tunnel) to another.
    "network.http.originextension": False,
    # The browser's own lookups and probes, which would not go through the proxy either.
    "network.connectivity-service.enabled": False,
    "network.captive-portal-service.enabled": False,
}


class FirefoxEngine(ServingEngine):
    protocol = ""  # JUGGLER or BIDI once a Firefox is found
    bidi: BidiBrowsers | None = None  # attach-only leases' browsers (stock Firefox)

    def serve_bidi(self, bidi: BidiBrowsers) -> None:
        bidi.processes = self._processes
        bidi.egress = lambda: self._egress
        self.bidi = bidi

    def attach_hub(self, session: Session) -> BidiHub | None:
        """The BiDi hub of an attach-only session (None: not one, or gone)."""
        return session.hub if isinstance(session, BidiSession) else None

    async def open_session(  # type: ignore[override]  # an attach-only session is no Playwright one
        self,
        isolation: Isolation,
        options: ContextOptions,
        browser_options: BrowserOptions | None = None,
        *,
        tenant: str = "",
        attach: AttachOptions | None = None,
    ) -> Session:
        if attach is None or attach.protocol is not AttachProtocol.BIDI:
            return await super().open_session(
                isolation, options, browser_options, tenant=tenant, attach=attach
            )
        if self.bidi is None:
            raise InvalidArgument.single(
                "engine", "attach protocol bidi needs a stock Firefox (this one speaks Juggler)"
            )
        if isolation is not Isolation.BROWSER:
            raise InvalidArgument.single("isolation", "an attachable lease needs its own browser")
        return await self.bidi.open()

    def live_sessions(self) -> list[Session]:  # type: ignore[override]
        bidi = [s for s in self.bidi.sessions if s.alive] if self.bidi is not None else []
        return [*super().live_sessions(), *bidi]

    async def close(self) -> None:
        await super().close()
        if self.bidi is not None:
            await self.bidi.close()


def protocol_for(exe: BrowserExecutable) -> str:
    """Juggler for a Playwright-built Firefox (found or configured), BiDi for any other."""
    if exe.source == "playwright":
        return JUGGLER
    parts = Path(exe.path).resolve().parts
    if any(_PLAYWRIGHT_BUILD_DIR.match(part) for part in parts) and "ms-playwright" in parts:
        return JUGGLER
    return BIDI


def create(
    explicit_path: str | None, headless: bool = True, sandbox: Sandbox | None = None
) -> PlaywrightEngine:
    sandbox = sandbox or Sandbox(enabled=True)
    try:
        exe = find_browser(
            "firefox", explicit_path, None if explicit_path else playwright_managed("firefox")
        )
    except BrowserNotFound as exc:
        return FirefoxEngine(EngineName.FIREFOX, _unavailable, "", Availability(False, str(exc)))
    if sandbox.problem:
        return FirefoxEngine(
            EngineName.FIREFOX, _unavailable, "", Availability(False, sandbox.problem)
        )
    protocol = protocol_for(exe)
    executable = sandbox.executable(exe.path)

    async def launch(playwright: Playwright) -> Browser:
        channel: dict[str, Any] = {} if protocol == JUGGLER else {"channel": "moz-firefox"}

        async def start(extra: dict[str, Any]) -> Browser:
            return await playwright.firefox.launch(
                executable_path=executable,
                headless=headless,
                firefox_user_prefs=EGRESS_PREFS,
                **channel,
                **extra,  # this browser's own downloads folder
            )

        return await sandbox.launch(start)

    engine = FirefoxEngine(
        EngineName.FIREFOX,
        launch,
        exe.path,
        Availability(True, f"{exe.describe()} over {protocol}"),
        unsupported_context=BIDI_UNSUPPORTED_CONTEXT if protocol == BIDI else None,
    )
    engine.protocol = protocol
    # page.pdf() prints through BiDi's browsingContext.print; Juggler has no PDF at all.
    engine.supports_pdf = protocol == BIDI
    if protocol == BIDI:  # attach-only leases over WebDriver BiDi
        engine.serve_bidi(BidiBrowsers(executable, headless, EGRESS_PREFS))
    # Leases attached over Playwright's protocol: a launchServer of their own (served.py).
    served: dict[str, Any] = {"headless": headless, "firefoxUserPrefs": EGRESS_PREFS}
    if protocol == BIDI:
        served["channel"] = "moz-firefox"
    engine.serve_playwright(ServedBrowsers("firefox", executable, served, sandbox))
    return engine


async def _unavailable(playwright: Playwright) -> Browser:
    raise RuntimeError("no Firefox available")
