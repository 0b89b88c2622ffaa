"""Warm attach-only Firefox leases over WebDriver BiDi, against a real broker and a stock Firefox:
a pool of BiDi browsers (`attach = "bidi"`) serves Acquire(attach=bidi) warm, a raw BiDi client
works in the lent browser, the lease's end kills it and the pool refills with another. A pooled
browser is lent once; a tenant's egress rules bind to its route when it is lent."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from broker.warm.pool import WarmPool
from browserbroker import AsyncBrokerClient, Engine
from browserbroker.v1 import broker_pb2 as pb
from tests.attach.bidi_support import bidi_lease, firefox_broker, first_context, no_browser_left
from tests.attach.support import RawClient, raw
from tests.attach.warm_support import tenant
from tests.conftest import BrokerFactory
from tests.fixture_site import FixtureSite
from tests.integration.test_engines import gone
from tests.support import InProcessBroker, in_process_browsers

pytestmark = [pytest.mark.browser, pytest.mark.slow]

BIDI_POOL = {"engine": "firefox", "isolation": "browser", "size": 1, "attach": "bidi"}
TOKEN = "warm-bidi-tenant-token"


def the_pool(running: InProcessBroker) -> WarmPool:
    (pool,) = [p for p in running.broker.pools if p.attach is not None]
    assert pool.name == "firefox/browser+bidi"
    return pool


async def filled(running: InProcessBroker) -> set[int]:
    """Once the pool holds its browser: the browser processes below this one (its only)."""
    await asyncio.wait_for(the_pool(running).filled.wait(), 180)
    return {p.pid for p in in_process_browsers()}


async def visit(client: RawClient, url: str) -> dict[str, Any]:
    """Navigate the first context to `url`; the navigation's answer."""
    await client.call("session.new", {"capabilities": {}})
    context = await first_context(client)
    return await client.call(
        "browsingContext.navigate", {"context": context, "url": url, "wait": "complete"}
    )


async def evaluate(client: RawClient, expression: str) -> Any:
    context = await first_context(client)
    answer = await client.call(
        "script.evaluate",
        {"expression": expression, "target": {"context": context}, "awaitPromise": False},
    )
    assert answer["type"] == "success", answer
    return answer["result"]["result"].get("value")


async def test_a_warm_bidi_lease_is_served_from_the_pool_and_never_comes_back(
    broker_factory: BrokerFactory, fixture_server: FixtureSite
) -> None:
    running = await firefox_broker(broker_factory, warm_pools=[BIDI_POOL])
    pooled = await filled(running)
    assert pooled, "the pool's Firefox is launched ahead of demand"
    lease = await bidi_lease(running, ttl=180)
    assert lease.grant.warm and "/bidi/" in lease.connect_url
    async with raw(lease.connect_url) as client:
        went = await visit(client, fixture_server.url("form.html"))
        assert went["type"] == "success", went
        await evaluate(client, "localStorage.setItem('who', 'ada'); document.cookie = 'who=ada'")
        assert await evaluate(client, "document.cookie") == "who=ada"
    status = [s for s in (await running.client.status()).pools if s.attach]
    assert [(s.attach, s.isolation, s.hits, s.misses) for s in status] == [
        (pb.ATTACH_PROTOCOL_BIDI, pb.ISOLATION_BROWSER, 1, 0)
    ]
    assert (await lease.release()).released_now
    assert await gone(pooled, 60), f"the warm lease's Firefox outlived it: {pooled}"
    fresh = await filled(running)
    assert fresh and fresh.isdisjoint(pooled), "the pool refills with another Firefox"
    second = await bidi_lease(running, ttl=180)
    assert second.grant.warm
    async with raw(second.connect_url) as client:
        went = await visit(client, fixture_server.url("form.html"))
        assert went["type"] == "success", went
        # Nothing of the first lease: no cookie, no storage.
        assert await evaluate(client, "localStorage.length + document.cookie.length") == 0
    await second.release()
    assert await gone(fresh, 60), f"the second lease's Firefox outlived it: {fresh}"
    await running.shutdown()
    await no_browser_left()


async def test_a_tenants_egress_rules_hold_on_a_warm_bidi_browser(
    broker_factory: BrokerFactory, fixture_server: FixtureSite
) -> None:
    running = await firefox_broker(broker_factory, warm_pools=[BIDI_POOL], tenants=[tenant(TOKEN)])
    await filled(running)
    async with AsyncBrokerClient(running.address, token=TOKEN) as alpha:
        lease = await alpha.acquire(engine=Engine.FIREFOX, attach="bidi", ttl=120)
        assert lease.grant.warm
        async with raw(lease.connect_url) as client:
            went = await visit(client, fixture_server.url("form.html"))
            if went["type"] == "success":  # the route's refusal, naming the tenant's rule
                shown = str(await evaluate(client, "document.body.innerText"))
                assert "Fixture" not in shown and "denied by egress rule 'deny_cidrs'" in shown
            else:
                assert "NS_ERROR" in went.get("message", ""), went
        await lease.release()
