"""Shared browsers, one per tenant: context sessions of one tenant share a browser, those of
different tenants never do. A browser's process holds state that no context separates (the
headless clipboard, for one), so only a process boundary keeps tenants apart.

A tenant's shared browser left without a session is idle: it closes after `idle_s`, and at most
`max_idle` browsers are idle at once (past that, the longest idle closes at once). A browser with
a session counts against the broker's capacity through its lease, so the browsers alive at once
are bounded by the capacity plus `max_idle`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from playwright.async_api import Browser

log = logging.getLogger("broker.engines")

# A tenant back within this long reuses its browser; after it, the browser's memory is freed.
SHARED_IDLE_S = 30.0
# Idle shared browsers kept at once, per engine.
MAX_IDLE_SHARED = 2


class SharedBrowsers:
    def __init__(
        self,
        in_use: Callable[[Browser], bool],
        close: Callable[[Browser], None],
        engine: str = "",
        idle_s: float = SHARED_IDLE_S,
        max_idle: int = MAX_IDLE_SHARED,
    ) -> None:
        self._in_use = in_use  # has sessions, or one opening (or is gone: nothing to close)
        self._close = close  # closes a browser that is no longer shared
        self._engine = engine  # for the log
        self.idle_s = idle_s
        self.max_idle = max_idle
        self._by_tenant: dict[str, Browser] = {}
        self._idle: dict[Browser, asyncio.TimerHandle] = {}  # oldest first
        self._launching = asyncio.Lock()

    def get(self, tenant: str) -> Browser | None:
        """The tenant's shared browser, if it has one that is connected."""
        browser = self._by_tenant.get(tenant)
        return browser if browser is not None and browser.is_connected() else None

    async def get_or_launch(self, tenant: str, launch: Callable[[], Awaitable[Browser]]) -> Browser:
        """The tenant's shared browser, launched on its first context session; no longer idle."""
        browser = self.get(tenant)
        if browser is None:
            async with self._launching:
                browser = self.get(tenant)
                if browser is None:
                    browser = await launch()
                    self._by_tenant[tenant] = browser
        self.busy(browser)
        return browser

    def __contains__(self, browser: Browser) -> bool:
        return any(shared is browser for shared in self._by_tenant.values())

    def browsers(self) -> list[Browser]:
        return list(self._by_tenant.values())

    def tenant_of(self, browser: Browser) -> str | None:
        return next((t for t, shared in self._by_tenant.items() if shared is browser), None)

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    def __len__(self) -> int:
        return len(self._by_tenant)

    def unshare(self, browser: Browser) -> None:
        """No new session goes to `browser`: its tenant's next one launches a fresh browser."""
        tenant = self.tenant_of(browser)
        if tenant is not None:
            del self._by_tenant[tenant]
        self.busy(browser)

    def busy(self, browser: Browser) -> None:
        """`browser` gets a session (or leaves the shared ones): it is not idle."""
        timer = self._idle.pop(browser, None)
        if timer is not None:
            timer.cancel()

    def idle(self, browser: Browser) -> None:
        """`browser` may have no session left: if so, it closes after `idle_s` unless a session
        comes first."""
        if browser in self._idle or browser not in self or self._in_use(browser):
            return
        while self._idle and len(self._idle) >= self.max_idle:
            self._expire(next(iter(self._idle)))  # the longest idle goes first
        loop = asyncio.get_running_loop()
        self._idle[browser] = loop.call_later(self.idle_s, self._expire, browser)

    def _expire(self, browser: Browser) -> None:
        self.busy(browser)
        if not self._in_use(browser):
            self.unshare(browser)
            log.info("idle shared browser closed", extra={"engine": self._engine})
            self._close(browser)

    def clear(self) -> None:
        for timer in self._idle.values():
            timer.cancel()
        self._idle.clear()
        self._by_tenant.clear()
