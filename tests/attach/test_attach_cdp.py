"""Attached clients over CDP, against a real broker and a real Chromium: Python Playwright's
connect_over_cdp drives a login and a popup on the fixture site, a Run works on the same lease,
and the lease's end closes the socket with its reason, leaving no browser behind."""

from __future__ import annotations

import asyncio

import pytest

from browserbroker import AttachProtocol, OnDisconnect, steps
from tests.attach.endings import count_releases, ended_once
from tests.attach.support import (
    closed_with,
    connect,
    playwright,
    raw,
    sign_in_and_approve_a_popup,
)
from tests.conftest import BrokerFactory
from tests.fixture_site import FixtureSite

pytestmark = [pytest.mark.browser, pytest.mark.slow]


async def test_playwright_logs_in_and_scrapes_with_a_popup_and_a_run_shares_the_lease(
    broker_factory: BrokerFactory, fixture_server: FixtureSite
) -> None:
    broker = await broker_factory()
    async with broker.client.lease(attach="cdp", ttl=120) as lease:
        assert lease.connect_url.startswith("ws://127.0.0.1:")
        assert lease.grant.isolation.name == "BROWSER"
        async with playwright() as p:
            browser = await connect(p, lease.connect_url)
            context = await browser.new_context()
            page = await context.new_page()
            await sign_in_and_approve_a_popup(page, fixture_server)
            # The broker's own Runs drive the same browser at the same time.
            result = await lease.run(
                steps.goto(fixture_server.url("form.html")), steps.text("h1"), timeout=30
            )
            result.raise_for_failure()
            await browser.close()  # disconnects; the lease lives on (ON_DISCONNECT_KEEP)
        again = await lease.run(steps.evaluate("1 + 1"), timeout=30)
        again.raise_for_failure()
        assert again[0].value == 2


@pytest.mark.parametrize("ending", ["release", "ttl", "idle"])
async def test_every_ending_closes_the_socket_with_its_reason(
    broker_factory: BrokerFactory, ending: str
) -> None:
    broker = await broker_factory()
    releases = count_releases(broker)
    ttl, idle = (3.0, 60.0) if ending == "ttl" else (60.0, 3.0) if ending == "idle" else (60, 60)
    lease = await broker.client.acquire(attach=AttachProtocol.CDP, ttl=ttl, idle_timeout=idle)
    expected = {
        "release": (4001, "lease ended: client_release"),
        "ttl": (4002, "lease ended: ttl_expired"),
        "idle": (4003, "lease ended: idle_timeout"),
    }[ending]
    async with raw(lease.connect_url) as client:
        version = await client.call("Browser.getVersion")
        assert "result" in version
        if ending == "release":
            await lease.release()
        code, reason = await closed_with(client.socket)
    assert (code, reason) == expected
    # Once, a late Release answers it, and nothing of the lease is left.
    await ended_once(broker, releases, lease, expected[1].removeprefix("lease ended: "))


async def test_protocol_messages_keep_an_idle_lease_alive(broker_factory: BrokerFactory) -> None:
    broker = await broker_factory()
    lease = await broker.client.acquire(attach="cdp", ttl=60, idle_timeout=2.0)
    async with raw(lease.connect_url) as client:
        for _ in range(8):  # 4 s of protocol traffic, twice the idle timeout
            await client.call("Browser.getVersion")
            await asyncio.sleep(0.5)
        assert client.socket.close_code is None
        await lease.release()
        assert (await closed_with(client.socket))[0] == 4001


async def test_browser_killed_ends_the_lease_and_closes_the_socket(
    broker_factory: BrokerFactory,
) -> None:
    broker = await broker_factory()
    releases = count_releases(broker)
    lease = await broker.client.acquire(attach="cdp", ttl=60)
    census = await broker.broker.engines[next(iter(broker.broker.engines))].census_async(0)
    assert census.browser_pids, "the attachable browser is counted"
    async with raw(lease.connect_url) as client:
        await client.call("Browser.getVersion")
        for pid in census.browser_pids:
            import os
            import signal

            os.kill(pid, signal.SIGKILL)
        code, reason = await closed_with(client.socket)
    assert (code, reason) == (4005, "lease ended: engine_crashed")
    await ended_once(broker, releases, lease, "engine_crashed")


@pytest.mark.parametrize("policy", [OnDisconnect.KEEP, OnDisconnect.END])
async def test_on_disconnect(broker_factory: BrokerFactory, policy: OnDisconnect) -> None:
    broker = await broker_factory()
    releases = count_releases(broker)
    lease = await broker.client.acquire(attach="cdp", ttl=60, on_disconnect=policy)
    async with raw(lease.connect_url) as client:
        await client.call("Browser.getVersion")
    if policy is OnDisconnect.END:
        await ended_once(broker, releases, lease, "client_disconnected")
    else:
        await asyncio.sleep(1.0)
        result = await lease.run(steps.evaluate("2 * 3"), timeout=30)
        assert result[0].value == 6
        assert (await lease.release()).released_now
        await ended_once(broker, releases, lease, "client_release")
