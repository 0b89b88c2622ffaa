"""A browser launch whose caller is cancelled (its Acquire's deadline passed) leaves no process
nobody owns, and the tenant's next session opens promptly.

Playwright can finish a launch in its driver after the task awaiting it was cancelled. To make
that moment certain, the engine's launcher is wrapped: the real launch finishes, then the wrapper
holds its browser until the test has cancelled the caller. Before the fix that browser stayed
alive, below the driver and in no record, until the broker stopped.
"""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from playwright.async_api import Browser, Playwright

from broker.engines.playwright.engine import PlaywrightEngine
from broker.model.options import ContextOptions, Isolation
from browserbroker import AsyncBrokerClient, DeadlineExceededError
from tests.conftest import BrokerFactory
from tests.integration.test_engines import engine_of
from tests.support import InProcessBroker, eventually

pytestmark = pytest.mark.browser

TOKEN = "late-tenant-token"
TENANTS = [{"name": "late", "token_sha256": [hashlib.sha256(TOKEN.encode()).hexdigest()]}]
# What a launch may take on a loaded machine (the engine's own launch timeout).
LAUNCH_BOUND_S = 30.0


class HeldLaunches:
    """Wraps an engine's launcher: each launch really happens, then its browser is held back
    from the caller until `release()`."""

    def __init__(self, real: object) -> None:
        self._real = real
        self.count = 0
        self.launched = asyncio.Event()
        self._go = asyncio.Event()

    async def __call__(self, playwright: Playwright) -> Browser:
        browser: Browser = await self._real(playwright)  # type: ignore[operator]
        self.count += 1
        self.launched.set()
        await self._go.wait()
        return browser

    def release(self) -> None:
        self._go.set()

    @classmethod
    def install(cls, engine: PlaywrightEngine) -> HeldLaunches:
        held = cls(engine._launcher)
        engine._launcher = held
        return held


async def late_tenant(
    factory: BrokerFactory,
) -> tuple[InProcessBroker, PlaywrightEngine, HeldLaunches, AsyncBrokerClient]:
    """A broker whose launches are held, and a client of a tenant with no browser yet."""
    running = await factory(tenants=TENANTS)
    engine = engine_of(running, "chromium")
    held = HeldLaunches.install(engine)
    return running, engine, held, AsyncBrokerClient(running.address, token=TOKEN)


async def test_a_cancelled_dedicated_launch_closes_its_browser(
    broker_factory: BrokerFactory,
) -> None:
    engine = engine_of(await broker_factory(), "chromium")
    held = HeldLaunches.install(engine)
    opening = asyncio.create_task(engine.open_session(Isolation.BROWSER, ContextOptions()))
    await asyncio.wait_for(held.launched.wait(), LAUNCH_BOUND_S)
    assert len(engine.census().browser_pids) == 1
    opening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await opening
    held.release()
    # Nobody took the browser: it is closed, not left below the driver.
    await eventually(lambda: engine.census().browser_pids == [], timeout_s=LAUNCH_BOUND_S)
    # The next launch is not held up by the cancelled one.
    session = await asyncio.wait_for(
        engine.open_session(Isolation.BROWSER, ContextOptions()), LAUNCH_BOUND_S
    )
    assert len(engine.census().browser_pids) == 1
    await engine.close_session(session)
    await eventually(lambda: engine.census().browser_pids == [], timeout_s=LAUNCH_BOUND_S)


async def test_a_tenants_first_acquire_cancelled_mid_launch_leaves_its_browser_to_the_tenant(
    broker_factory: BrokerFactory,
) -> None:
    """The Acquire's deadline passes while the tenant's first browser launches: the browser it
    launched is the tenant's (idle, closed after its grace), and the next Acquire opens in it."""
    running, engine, held, client = await late_tenant(broker_factory)
    try:
        first = asyncio.create_task(client.acquire(ttl=60, timeout=LAUNCH_BOUND_S))
        await asyncio.wait_for(held.launched.wait(), LAUNCH_BOUND_S)
        first.cancel()  # the caller gives up; the broker's side is cancelled with it
        with pytest.raises(asyncio.CancelledError):
            await first
        await eventually(lambda: running.broker.leases.active_count == 0)
        held.release()
        [pid] = engine.census().browser_pids
        lease = await client.acquire(ttl=60, timeout=LAUNCH_BOUND_S)
        assert held.count == 1, "the tenant's browser was launched again"
        assert engine.census().browser_pids == [pid]
        await lease.release()
    finally:
        await client.close()


async def test_an_acquire_whose_deadline_passes_mid_launch_leaves_no_process(
    broker_factory: BrokerFactory,
) -> None:
    """The broker's side of a deadline (its own timeout on the open) ends the same way."""
    _, engine, held, client = await late_tenant(broker_factory)
    try:
        with pytest.raises(DeadlineExceededError):
            # Past its deadline while the browser is held back (or still launching).
            await client.acquire(ttl=60, timeout=5)
        await asyncio.wait_for(held.launched.wait(), LAUNCH_BOUND_S)
        held.release()
        await eventually(lambda: len(engine.census().browser_pids) == 1, LAUNCH_BOUND_S)
        lease = await client.acquire(ttl=60, timeout=LAUNCH_BOUND_S)
        assert held.count == 1 and len(engine.census().browser_pids) == 1
        await lease.release()
    finally:
        await client.close()
