"""Warm attachable leases over Playwright's protocol, against a real broker and real browsers: a
pool of served browsers (`attach = "playwright"`, Chromium and Firefox) serves
Acquire(attach=playwright) warm, Python Playwright's `browser_type.connect` works on it beside
the broker's Runs, the lease's end stops that browser and its launch script, and the pool refills
with another. A pooled browser is lent once; a tenant's egress rules bind to it when lent."""

from __future__ import annotations

import asyncio
import contextlib

import psutil
import pytest
from playwright.async_api import Browser, Playwright

from broker.engines import downloads
from broker.warm.pool import WarmPool
from browserbroker import AsyncBrokerClient, Engine, OnDisconnect, ResourceExhaustedError, steps
from browserbroker.v1 import broker_pb2 as pb
from tests.attach.endings import count_releases
from tests.attach.playwright_support import launch_scripts, no_browser_left, patient
from tests.attach.support import playwright
from tests.attach.warm_support import leave_traces, no_traces, refused_the_site, tenant
from tests.conftest import BrokerFactory
from tests.fixture_site import FixtureSite
from tests.integration.test_engines import gone
from tests.support import InProcessBroker, eventually, in_process_browsers

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TOKEN = "warm-served-tenant-token"
TENANT = tenant(TOKEN)


def served_pool(engine: str) -> dict[str, object]:
    return {"engine": engine, "isolation": "browser", "size": 1, "attach": "playwright"}


def the_pool(running: InProcessBroker, engine: str) -> WarmPool:
    (pool,) = [p for p in running.broker.pools if p.attach is not None]
    assert pool.name == f"{engine}/browser+playwright"
    return pool


def processes() -> set[int]:
    """The browsers and launch scripts below this process."""
    return {p.pid for p in in_process_browsers() + launch_scripts()}


async def filled(running: InProcessBroker, engine: str) -> set[int]:
    """Once the pool holds its browser: the browser and launch-script processes (its only)."""
    await asyncio.wait_for(the_pool(running, engine).filled.wait(), 180)
    return processes()


async def connect(p: Playwright, url: str, engine: str) -> Browser:
    browser_type = p.firefox if engine == "firefox" else p.chromium
    return await browser_type.connect(url, timeout=60_000)


async def start(factory: BrokerFactory, engine: str, **overrides: object) -> InProcessBroker:
    return patient(
        await factory(
            engines=["chromium", "firefox"], warm_pools=[served_pool(engine)], **overrides
        )
    )


@pytest.mark.parametrize("engine", ["chromium", "firefox"])
async def test_a_warm_playwright_lease_is_served_from_the_pool_and_never_comes_back(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, engine: str
) -> None:
    running = await start(broker_factory, engine)
    pooled = await filled(running, engine)
    assert pooled and launch_scripts(), "the pool's served browser is launched ahead of demand"
    kind = Engine[engine.upper()]
    lease = await running.client.acquire(attach="playwright", engine=kind, ttl=180)
    assert lease.grant.warm and "/playwright/" in lease.connect_url
    async with playwright() as p:
        browser = await connect(p, lease.connect_url, engine)
        await leave_traces(browser, lease, fixture_server)
        await browser.close()
    status = [s for s in (await running.client.status()).pools if s.attach]
    assert [(s.attach, s.isolation, s.hits, s.misses) for s in status] == [
        (pb.ATTACH_PROTOCOL_PLAYWRIGHT, pb.ISOLATION_BROWSER, 1, 0)
    ]
    assert (await lease.release()).released_now
    assert await gone(pooled, 60), f"the warm lease's browser outlived it: {pooled}"
    fresh = await filled(running, engine)
    assert fresh and fresh.isdisjoint(pooled), "the pool refills with another browser"
    # The next lease gets that other browser: the first lease's cookie and storage are not in it.
    second = await running.client.acquire(attach="playwright", engine=kind, ttl=180)
    assert second.grant.warm and second.connect_url != lease.connect_url
    async with playwright() as p:
        browser = await connect(p, second.connect_url, engine)
        assert not browser.contexts  # a client sees only the contexts it opened
        await no_traces(browser, fixture_server)
        await browser.close()
    await second.release()
    assert await gone(fresh, 60), f"the second lease's browser outlived it: {fresh}"
    await filled(running, engine)  # (a refill half-open would count a context of no pool's)
    await running.check_no_leftovers()
    await running.shutdown()
    await no_browser_left()  # the refill's browser and its script went with the pool
    # Every served browser's downloads folder went with it, the pooled ones' too.
    assert downloads._parent, "served browsers have downloads folders"
    kept = (downloads.LOCK, downloads.CLAIMED)
    left = [f.name for parent in downloads._parent for f in parent.iterdir() if f.name not in kept]
    claims = [
        f.name for parent in downloads._parent for f in (parent / downloads.CLAIMED).iterdir()
    ]
    assert not left, f"downloads folders left: {left}"
    assert not claims, f"served browsers' folders still claimed: {claims}"


async def test_the_served_pool_serves_only_default_playwright_leases(
    broker_factory: BrokerFactory,
) -> None:
    running = await start(broker_factory, "chromium")
    await filled(running, "chromium")
    cdp = await running.client.acquire(attach="cdp", ttl=60)
    shaped = await running.client.acquire(
        attach="playwright", ttl=60, context=pb.ContextOptions(user_agent="probe/1")
    )
    assert not cdp.grant.warm and not shaped.grant.warm
    assert len(the_pool(running, "chromium")) == 1
    status = [s for s in (await running.client.status()).pools if s.attach]
    assert [(s.hits, s.misses) for s in status] == [(0, 1)]  # the CDP lease is not its demand
    for lease in (cdp, shaped):
        await lease.release()


@pytest.mark.parametrize("engine", ["chromium", "firefox"])
async def test_a_tenants_egress_rules_hold_on_a_warm_served_browser(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, engine: str
) -> None:
    """The served browser was launched, behind its route, before anyone's lease: the tenant's
    rules bind to that route when it is lent, so what the tenant's client opens is refused; and
    its quota holds as for any lease."""
    running = await start(broker_factory, engine, tenants=[TENANT])
    await filled(running, engine)
    async with AsyncBrokerClient(running.address, token=TOKEN) as alpha:
        lease = await alpha.acquire(attach="playwright", engine=Engine[engine.upper()], ttl=180)
        assert lease.grant.warm
        async with playwright() as p:
            browser = await connect(p, lease.connect_url, engine)
            await refused_the_site(browser, fixture_server)
            await browser.close()
        denied = await lease.run(steps.goto(fixture_server.url("form.html")), timeout=60)
        assert not denied.ok  # the broker's own Runs go through the same route
        # The tenant's quota (one lease) holds before the pool is looked at.
        await asyncio.wait_for(the_pool(running, engine).filled.wait(), 180)
        with pytest.raises(ResourceExhaustedError, match="its maximum"):
            await alpha.acquire(attach="playwright", engine=Engine[engine.upper()], timeout=10)
        assert len(the_pool(running, engine)) == 1  # the refused Acquire took nothing
        await lease.release()


@pytest.mark.parametrize("ending", ["ttl_expired", "client_disconnected"])
async def test_every_ending_of_a_warm_playwright_lease_stops_its_browser_once(
    broker_factory: BrokerFactory, ending: str
) -> None:
    running = await start(broker_factory, "chromium")
    releases = count_releases(running)
    pooled = await filled(running, "chromium")
    lease = await running.client.acquire(
        attach="playwright",
        ttl=15 if ending == "ttl_expired" else 120,  # the TTL outlasts the connect under load
        on_disconnect=OnDisconnect.END if ending == "client_disconnected" else OnDisconnect.KEEP,
    )
    assert lease.grant.warm
    async with playwright() as p:
        browser = await connect(p, lease.connect_url, "chromium")
        await (await browser.new_page()).goto("data:text/html,<h1>attached</h1>")
        if ending == "client_disconnected":
            await browser.close()  # the last client leaving ends the lease
        await eventually(lambda: lease.id in releases.count, 60)
    assert releases.count[lease.id] == 1 and releases.reason[lease.id] == ending
    late = await lease.release()
    assert (late.released_now, late.reason) == (False, ending)
    assert await gone(pooled, 60), f"the warm lease's browser outlived it: {pooled}"
    await filled(running, "chromium")


async def test_a_pooled_browser_that_dies_is_replaced_and_its_script_ends(
    broker_factory: BrokerFactory,
) -> None:
    """A served browser killed while it waits in the pool leaves it, its launch script exits
    with it, and the pool refills with another; no lease ever saw it."""
    running = await start(broker_factory, "chromium")
    pooled = await filled(running, "chromium")
    pool = the_pool(running, "chromium")
    (victim,) = pool.sessions()
    for proc in in_process_browsers():
        with contextlib.suppress(psutil.Error):
            proc.kill()
    await eventually(lambda: victim not in pool.sessions(), 60)
    assert await gone(pooled, 60), f"the dead browser's launch script outlived it: {pooled}"
    fresh = await filled(running, "chromium")
    assert fresh.isdisjoint(pooled) and len(launch_scripts()) == 1
    lease = await running.client.acquire(attach="playwright", ttl=60)
    assert lease.grant.warm  # the replacement, alive
    result = await lease.run(steps.evaluate("1 + 1"), timeout=60)
    assert result.raise_for_failure()[0].value == 2
    await lease.release()
