"""Warm attachable leases, against a real broker and a real Chromium: a pool of attachable
browsers (`attach = "cdp"`) serves Acquire(attach=cdp) warm, the client connects and works, the
lease's end closes that browser, and the pool refills with another browser process. A pooled
browser is lent once, so nothing of one lease reaches the next; tenants' quotas and egress rules
hold as for any lease; plain leases and leases with options of their own are not served from
it."""

from __future__ import annotations

import asyncio

import pytest

from broker.engines.playwright.engine import PlaywrightEngine
from broker.warm.pool import WarmPool
from browserbroker import AsyncBrokerClient, Isolation, ResourceExhaustedError
from browserbroker.v1 import broker_pb2 as pb
from tests.attach.support import connect, playwright
from tests.attach.warm_support import leave_traces, no_traces, refused_the_site, tenant
from tests.conftest import BrokerFactory
from tests.fixture_site import FixtureSite
from tests.integration.test_engines import gone
from tests.support import InProcessBroker

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ATTACH_POOL = {"engine": "chromium", "isolation": "browser", "size": 1, "attach": "cdp"}
TOKEN = "warm-tenant-token"
TENANT = tenant(TOKEN)


def the_pool(running: InProcessBroker) -> WarmPool:
    (pool,) = running.broker.pools
    assert pool.attach is not None and pool.name == "chromium/browser+cdp"
    return pool


def chromium(running: InProcessBroker) -> PlaywrightEngine:
    engine = running.broker.engines[next(iter(running.broker.engines))]
    assert isinstance(engine, PlaywrightEngine)
    return engine


async def filled(running: InProcessBroker) -> set[int]:
    """Once the pool holds its browser: the browser processes the engine has (its only)."""
    await asyncio.wait_for(the_pool(running).filled.wait(), 120)
    return set(chromium(running).census().browser_pids)


async def test_a_warm_attachable_lease_is_served_from_the_pool_and_never_comes_back(
    broker_factory: BrokerFactory, fixture_server: FixtureSite
) -> None:
    running = await broker_factory(warm_pools=[ATTACH_POOL])
    pooled = await filled(running)
    assert pooled, "the pool's browser is launched ahead of demand"
    lease = await running.client.acquire(attach="cdp", ttl=120)
    assert lease.grant.warm and lease.connect_url
    async with playwright() as p:
        browser = await connect(p, lease.connect_url)
        await leave_traces(browser, lease, fixture_server)
        await browser.close()
    status = (await running.client.status()).pools
    assert [(s.attach, s.isolation, s.hits, s.misses) for s in status] == [
        (pb.ATTACH_PROTOCOL_CDP, pb.ISOLATION_BROWSER, 1, 0)
    ]
    assert (await lease.release()).released_now
    assert await gone(pooled, 30), f"the warm lease's browser outlived it: {pooled}"
    fresh = await filled(running)
    assert fresh and fresh.isdisjoint(pooled), "the pool refills with another browser"
    # The next lease gets that other browser: the first lease's cookie and storage are not in it.
    second = await running.client.acquire(attach="cdp", ttl=120)
    assert second.grant.warm
    async with playwright() as p:
        browser = await connect(p, second.connect_url)
        await no_traces(browser, fixture_server)
        await browser.close()
    await second.release()
    await running.check_no_leftovers()


async def test_the_attachable_pool_serves_only_default_attachable_leases(
    broker_factory: BrokerFactory,
) -> None:
    running = await broker_factory(warm_pools=[ATTACH_POOL])
    await filled(running)
    plain = await running.client.acquire(isolation=Isolation.BROWSER, ttl=60)
    assert not plain.grant.warm and not plain.connect_url
    shaped = await running.client.acquire(
        attach="cdp", ttl=60, context=pb.ContextOptions(user_agent="probe/1")
    )
    assert not shaped.grant.warm  # options a pooled browser was not opened with
    assert len(the_pool(running)) == 1
    status = (await running.client.status()).pools
    assert [(s.hits, s.misses) for s in status] == [(0, 1)]  # the plain lease is not its demand
    for lease in (plain, shaped):
        await lease.release()


async def test_a_tenants_quota_and_egress_rules_hold_on_a_warm_browser(
    broker_factory: BrokerFactory, fixture_server: FixtureSite
) -> None:
    """The pooled browser was launched before anyone's lease: the tenant's egress rules bind to
    its route when it is lent, so what the tenant's client opens in it is refused."""
    running = await broker_factory(warm_pools=[ATTACH_POOL], tenants=[TENANT])
    await filled(running)
    async with AsyncBrokerClient(running.address, token=TOKEN) as alpha:
        first = await alpha.acquire(attach="cdp", ttl=60)
        assert first.grant.warm
        async with playwright() as p:
            browser = await connect(p, first.connect_url)
            await refused_the_site(browser, fixture_server)
            await browser.close()
        await asyncio.wait_for(the_pool(running).filled.wait(), 120)
        with pytest.raises(ResourceExhaustedError, match="its maximum"):
            await alpha.acquire(attach="cdp", ttl=60, timeout=10)
        assert len(the_pool(running)) == 1  # the refused Acquire took nothing from the pool
        await first.release()
