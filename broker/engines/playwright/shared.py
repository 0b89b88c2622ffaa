"""Shared browsers, one per tenant: context sessions of one tenant share a browser, those of
different tenants never do. A browser's process holds state that no context separates (the
headless clipboard, for one), so only a process boundary keeps tenants apart.

A tenant's shared browser left without a session is idle: it closes after `idle_s`, and at most
`max_idle` browsers are idle at once (past that, the longest idle closes at once). A browser with
a session counts against the broker's capacity through its lease, so the browsers alive at once
are bounded by the capacity plus `max_idle`.

A tenant's first sessions wait for one launch, their tenant's own: another tenant's launch never
holds them up here. Cancelling a session that waits (its Acquire's deadline) does not cancel the
launch: Playwright may finish a launch in its driver after its caller gave up, and that browser
would be nobody's. The launch goes on, and its browser becomes the tenant's, idle until the
tenant's next session (or closed after `idle_s`).
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
        self._launching: dict[str, asyncio.Future[Browser]] = {}  # one launch per tenant at most
        self._waiting: dict[str, int] = {}  # sessions waiting for their tenant's launch

    def get(self, tenant: str) -> Browser | None:
        """The tenant's shared browser, if it has one that is connected."""
        browser = self._by_tenant.get(tenant)
        return browser if browser is not None and browser.is_connected() else None

    async def get_or_launch(self, tenant: str, launch: Callable[[], Awaitable[Browser]]) -> Browser:
        """The tenant's shared browser, launched on its first context session; no longer idle."""
        browser = self.get(tenant)
        if browser is None:
            launching = self._launching.get(tenant)
            if launching is None:
                launching = asyncio.ensure_future(launch())
                self._launching[tenant] = launching
                launching.add_done_callback(lambda done: self._launched(tenant, done))
            self._waiting[tenant] = self._waiting.get(tenant, 0) + 1
            try:
                browser = await asyncio.shield(launching)
            except BaseException:
                if self._stop_waiting(tenant) and launching.done():
                    self._unclaimed(launching)  # launched, but its last waiter was cancelled
                raise
            self._stop_waiting(tenant)
        self.busy(browser)
        return browser

    def _launched(self, tenant: str, launching: asyncio.Future[Browser]) -> None:
        """A tenant's launch is over: its browser is the tenant's, idle if nobody waits for it
        any more; a failure reaches the sessions that wait (if none does, it is dropped)."""
        if self._launching.get(tenant) is not launching:
            # Cleared meanwhile (the driver died, or the engine closes): nobody's browser.
            if not launching.cancelled() and launching.exception() is None:
                self._close(launching.result())
            return
        del self._launching[tenant]
        if launching.cancelled() or launching.exception() is not None:
            return
        self._by_tenant[tenant] = launching.result()
        if tenant not in self._waiting:
            self._unclaimed(launching)

    def _stop_waiting(self, tenant: str) -> bool:
        """One session no longer waits for its tenant's launch; whether it was the last."""
        self._waiting[tenant] -= 1
        if self._waiting[tenant]:
            return False
        del self._waiting[tenant]
        return True

    def _unclaimed(self, launching: asyncio.Future[Browser]) -> None:
        """A launched browser no session took: idle from now on."""
        if not launching.cancelled() and launching.exception() is None:
            self.idle(launching.result())

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
        self._launching.clear()  # a launch still going on closes its browser when it ends
