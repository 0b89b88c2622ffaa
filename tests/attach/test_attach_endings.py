"""The endings of an attachable lease with a client connected that the other attach tests leave
out, checked as they are (tests/attach/endings.py: ended once, a late Release answers the first
outcome, no session, context, page or browser process left):

- the broker drains past its drain timeout with a client connected: the lease ends `drained` and
  the client's socket closes with 4011 (in process, so the lease table can still be asked after
  the server has stopped);
- `on_disconnect = END` with two clients holding pages of their own: the first leaving ends
  nothing, the last one's leaving ends the lease `client_disconnected`, and the pages the
  clients opened go with the browser.

Release, TTL, idle, `KEEP` and a killed browser: test_attach_cdp.py; SIGTERM of a broker
subprocess: test_attach_shutdown.py."""

from __future__ import annotations

import asyncio

import pytest

from browserbroker import OnDisconnect
from tests.attach.endings import count_releases, ended_once
from tests.attach.support import closed_with, connect, playwright, raw
from tests.conftest import BrokerFactory
from tests.fixture_site import FixtureSite

pytestmark = [pytest.mark.browser, pytest.mark.slow]


async def test_a_drain_past_its_timeout_ends_the_lease_and_closes_the_socket(
    broker_factory: BrokerFactory,
) -> None:
    running = await broker_factory(drain_timeout_s=1)
    releases = count_releases(running)
    lease = await running.client.acquire(attach="cdp", ttl=120)
    async with raw(lease.connect_url) as client:
        assert "result" in await client.call("Browser.getVersion")
        running.stop.set()
        assert await closed_with(client.socket) == (4011, "lease ended: drained")
    await asyncio.wait_for(running.task, 60)
    await ended_once(running, releases, lease, "drained", served=False)


async def test_the_last_client_leaving_ends_an_on_disconnect_end_lease(
    broker_factory: BrokerFactory, fixture_server: FixtureSite
) -> None:
    running = await broker_factory()
    releases = count_releases(running)
    lease = await running.client.acquire(attach="cdp", ttl=120, on_disconnect=OnDisconnect.END)
    async with playwright() as p:
        first, last = await connect(p, lease.connect_url), await connect(p, lease.connect_url)
        for browser in (first, last):
            context = await browser.new_context()
            for _ in range(2):
                page = await context.new_page()
                await page.goto(fixture_server.url("form.html"))
        await first.close()
        await asyncio.sleep(1.0)  # the first leaving ends nothing
        assert lease.id not in releases.count
        page = last.contexts[-1].pages[0]
        assert await page.evaluate("1 + 1") == 2
        await last.close()
    await ended_once(running, releases, lease, "client_disconnected")
