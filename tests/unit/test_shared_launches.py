"""SharedBrowsers' launches: one per tenant, never cancelled by the sessions waiting for it.

A session whose Acquire's deadline passes while its tenant's browser launches is cancelled; the
launch goes on (Playwright may finish it in its driver anyway), and the browser it yields is the
tenant's, idle, for its next session. Another tenant's launch never waits behind it.
"""

from __future__ import annotations

import asyncio
from typing import cast

import pytest
from playwright.async_api import Browser

from broker.engines.playwright.shared import SharedBrowsers
from tests.unit.test_shared_browsers import FakeBrowser


class SlowLaunches:
    """Launches that finish only when the test lets them (`finish`), or fail (`fail`)."""

    def __init__(self, idle_s: float = 60.0, max_idle: int = 2) -> None:
        self.busy: set[Browser] = set()
        self.closed: list[Browser] = []
        self.started: list[str] = []
        self.pending: dict[str, asyncio.Future[Browser]] = {}
        self.shared = SharedBrowsers(
            lambda b: b in self.busy, self.closed.append, "fake", idle_s, max_idle
        )

    def launcher(self, tenant: str) -> asyncio.Future[Browser]:
        async def launch() -> Browser:
            self.started.append(tenant)
            self.pending[tenant] = asyncio.get_running_loop().create_future()
            return await self.pending[tenant]

        return asyncio.ensure_future(self.shared.get_or_launch(tenant, launch))

    def finish(self, tenant: str) -> Browser:
        browser = cast(Browser, FakeBrowser(tenant))
        self.pending.pop(tenant).set_result(browser)
        return browser

    def fail(self, tenant: str) -> None:
        self.pending.pop(tenant).set_exception(RuntimeError(f"{tenant} failed to launch"))


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_cancelled_first_session_leaves_the_launch_running_and_its_browser_idle() -> None:
    h = SlowLaunches()
    waiting = h.launcher("alpha")
    await settle()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert h.started == ["alpha"] and "alpha" in h.pending, "the launch was cancelled with it"
    browser = h.finish("alpha")
    await settle()
    # The tenant's browser, idle (it closes after its grace), not a process nobody owns.
    assert h.shared.get("alpha") is browser and h.shared.idle_count == 1
    # The tenant's next session takes it at once: no second launch, no longer idle.
    assert await h.launcher("alpha") is browser
    assert h.started == ["alpha"] and h.shared.idle_count == 0 and h.closed == []


async def test_a_browser_launched_for_cancelled_sessions_closes_after_its_grace() -> None:
    h = SlowLaunches(idle_s=0.05)
    waiting = h.launcher("alpha")
    await settle()
    waiting.cancel()
    browser = h.finish("alpha")
    await asyncio.sleep(0.2)
    assert h.closed == [browser] and h.shared.get("alpha") is None


async def test_a_session_cancelled_after_the_launch_finished_leaves_its_browser_idle() -> None:
    h = SlowLaunches()
    waiting = h.launcher("alpha")
    await settle()
    browser = h.finish("alpha")
    waiting.cancel()  # the launch is done, but this session has not resumed yet
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert h.shared.get("alpha") is browser and h.shared.idle_count == 1


async def test_one_cancelled_session_does_not_take_the_browser_from_another() -> None:
    h = SlowLaunches()
    cancelled, kept = h.launcher("alpha"), h.launcher("alpha")
    await settle()
    cancelled.cancel()
    await settle()
    browser = h.finish("alpha")
    assert await kept is browser
    assert h.started == ["alpha"] and h.shared.idle_count == 0


async def test_concurrent_first_sessions_of_a_tenant_launch_one_browser() -> None:
    h = SlowLaunches()
    sessions = [h.launcher("alpha") for _ in range(5)]
    await settle()
    browser = h.finish("alpha")
    assert await asyncio.gather(*sessions) == [browser] * 5
    assert h.started == ["alpha"] and len(h.shared) == 1


async def test_a_tenants_launch_does_not_wait_for_another_tenants_slow_one() -> None:
    h = SlowLaunches()
    slow = h.launcher("alpha")
    await settle()
    quick = h.launcher("beta")
    await settle()
    assert h.started == ["alpha", "beta"]
    beta = h.finish("beta")
    assert await asyncio.wait_for(quick, 5) is beta
    assert not slow.done()
    alpha = h.finish("alpha")
    assert await slow is alpha and alpha is not beta


async def test_a_failed_launch_reaches_its_sessions_and_the_next_one_launches_again() -> None:
    h = SlowLaunches()
    sessions = [h.launcher("alpha") for _ in range(2)]
    await settle()
    h.fail("alpha")
    for session in sessions:
        with pytest.raises(RuntimeError, match="alpha failed to launch"):
            await session
    again = h.launcher("alpha")
    await settle()
    browser = h.finish("alpha")
    assert await again is browser and h.started == ["alpha", "alpha"]


async def test_a_failed_launch_nobody_waits_for_leaves_nothing() -> None:
    h = SlowLaunches()
    waiting = h.launcher("alpha")
    await settle()
    waiting.cancel()
    await settle()
    h.fail("alpha")
    await settle()
    assert h.shared.get("alpha") is None and len(h.shared) == 0 and h.closed == []


async def test_a_launch_that_ends_after_a_clear_closes_its_browser() -> None:
    """Cleared (the driver died, or the engine closes) while a launch was on: its browser, if
    any, is nobody's and is closed; the tenant's next session launches afresh."""
    h = SlowLaunches()
    waiting = h.launcher("alpha")
    await settle()
    h.shared.clear()
    stale = h.finish("alpha")
    await waiting  # (its session fails on the closing browser, as on any browser that goes)
    assert h.closed == [stale] and h.shared.get("alpha") is None and len(h.shared) == 0
    fresh = h.launcher("alpha")
    await settle()
    assert h.started == ["alpha", "alpha"]
    browser = h.finish("alpha")
    assert await fresh is browser
