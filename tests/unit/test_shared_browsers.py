"""SharedBrowsers: one shared browser per tenant, launched once; an idle one closes after its
grace, at most `max_idle` are idle at once, and a session coming back keeps a browser open."""

from __future__ import annotations

import asyncio
from typing import cast

from playwright.async_api import Browser

from broker.engines.playwright.shared import SharedBrowsers


class FakeBrowser:
    def __init__(self, name: str) -> None:
        self.name = name
        self.connected = True

    def is_connected(self) -> bool:
        return self.connected


class Harness:
    def __init__(self, idle_s: float = 60.0, max_idle: int = 2) -> None:
        self.busy: set[Browser] = set()
        self.closed: list[Browser] = []
        self.launched: list[Browser] = []
        self.shared = SharedBrowsers(
            lambda b: b in self.busy, self.closed.append, "fake", idle_s, max_idle
        )

    async def launch(self) -> Browser:
        browser = cast(Browser, FakeBrowser(f"b{len(self.launched)}"))
        self.launched.append(browser)
        return browser

    async def browser_of(self, tenant: str) -> Browser:
        return await self.shared.get_or_launch(tenant, self.launch)


async def test_each_tenant_gets_its_own_browser_and_keeps_it() -> None:
    h = Harness()
    alpha, beta = await h.browser_of("alpha"), await h.browser_of("beta")
    assert alpha is not beta
    assert await h.browser_of("alpha") is alpha
    assert len(h.launched) == 2 and len(h.shared) == 2


async def test_concurrent_first_sessions_of_a_tenant_launch_one_browser() -> None:
    h = Harness()
    first, second = await asyncio.gather(h.browser_of("alpha"), h.browser_of("alpha"))
    assert first is second and len(h.launched) == 1


async def test_an_idle_browser_closes_after_its_grace_unless_a_session_comes() -> None:
    h = Harness(idle_s=0.05)
    alpha = await h.browser_of("alpha")
    h.shared.idle(alpha)
    assert await h.browser_of("alpha") is alpha  # a session came back: no longer idle
    await asyncio.sleep(0.1)
    assert h.closed == []
    h.shared.idle(alpha)
    await asyncio.sleep(0.1)
    assert h.closed == [alpha] and len(h.shared) == 0
    assert await h.browser_of("alpha") is not alpha  # the next session launches afresh


async def test_a_browser_in_use_is_never_idle() -> None:
    h = Harness(idle_s=0.01)
    alpha = await h.browser_of("alpha")
    h.busy.add(alpha)
    h.shared.idle(alpha)
    await asyncio.sleep(0.05)
    assert h.closed == [] and h.shared.idle_count == 0


async def test_past_max_idle_the_longest_idle_closes_at_once() -> None:
    h = Harness(max_idle=2)
    browsers = [await h.browser_of(tenant) for tenant in ("a", "b", "c", "d")]
    for browser in browsers:
        h.shared.idle(browser)
    assert h.closed == browsers[:2]
    assert h.shared.idle_count == 2 and h.shared.browsers() == browsers[2:]
    h.shared.clear()  # cancels the timers of the rest


async def test_a_disconnected_browser_is_replaced() -> None:
    h = Harness()
    alpha = await h.browser_of("alpha")
    cast(FakeBrowser, alpha).connected = False
    assert await h.browser_of("alpha") is not alpha
