"""The other endings of a `playwright` lease, with a real broker and Chromium: protocol messages
keep it from idling and the idle timeout then ends it; the last client leaving ends an
ON_DISCONNECT_END lease; a killed browser ends it engine_crashed. Each closes the socket with
4000 + the reason and leaves nothing behind (ended once, no session, page or process)."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from browserbroker import AttachProtocol, OnDisconnect
from tests.attach.endings import count_releases, ended_once
from tests.attach.playwright_support import no_browser_left, raw_playwright
from tests.attach.support import closed_with, playwright
from tests.conftest import BrokerFactory

pytestmark = [pytest.mark.browser, pytest.mark.slow]


async def test_messages_keep_it_alive_then_the_idle_timeout_ends_it(
    broker_factory: BrokerFactory,
) -> None:
    running = await broker_factory()
    releases = count_releases(running)
    lease = await running.client.acquire(
        attach=AttachProtocol.PLAYWRIGHT, ttl=120, idle_timeout=5.0
    )
    async with raw_playwright(lease.connect_url) as client:
        browser = await client.initialize()
        for _ in range(14):  # 10 s of protocol traffic, twice the idle timeout
            assert "result" in await client.call(browser, "defaultUserAgentForTest")
            await asyncio.sleep(0.75)
        assert await closed_with(client.socket, 60) == (4003, "lease ended: idle_timeout")
    await ended_once(running, releases, lease, "idle_timeout")
    await no_browser_left()


async def test_the_last_client_leaving_ends_an_on_disconnect_end_lease(
    broker_factory: BrokerFactory,
) -> None:
    running = await broker_factory()
    releases = count_releases(running)
    lease = await running.client.acquire(
        attach=AttachProtocol.PLAYWRIGHT, ttl=120, on_disconnect=OnDisconnect.END
    )
    async with playwright() as p:
        first = await p.chromium.connect(lease.connect_url, timeout=30_000)
        last = await p.chromium.connect(lease.connect_url, timeout=30_000)
        await (await first.new_page()).goto("data:text/html,first")
        page = await last.new_page()
        await first.close()
        await asyncio.sleep(1.0)  # the first leaving ends nothing
        assert lease.id not in releases.count
        assert await page.evaluate("1 + 1") == 2
        await last.close()
    await ended_once(running, releases, lease, "client_disconnected")
    await no_browser_left()


async def test_a_killed_browser_ends_the_lease_engine_crashed(
    broker_factory: BrokerFactory,
) -> None:
    running = await broker_factory()
    releases = count_releases(running)
    lease = await running.client.acquire(attach=AttachProtocol.PLAYWRIGHT, ttl=120)
    engine = next(iter(running.broker.engines.values()))
    census = await engine.census_async(0)
    assert census.browser_pids, "the served browser is counted"
    async with raw_playwright(lease.connect_url) as client:
        await client.initialize()
        for pid in census.browser_pids:
            os.kill(pid, signal.SIGKILL)
        assert await closed_with(client.socket) == (4005, "lease ended: engine_crashed")
    await ended_once(running, releases, lease, "engine_crashed")
    await no_browser_left()
