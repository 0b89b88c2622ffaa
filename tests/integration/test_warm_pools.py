"""Warm pools of dedicated browsers with real Chromium and Firefox: a pooled browser is lent warm
and closed with its lease, and a pooled browser killed while it waits is replaced, never lent."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from broker.warm.pool import WarmPool
from browserbroker import Isolation, steps
from tests.conftest import BrokerFactory
from tests.fixture_site import FixtureSite
from tests.integration.test_engines import (
    ENGINES,
    SDK_ENGINE,
    SDK_ISOLATION,
    engine_of,
    gone,
    start,
)
from tests.support import InProcessBroker, eventually

pytestmark = pytest.mark.browser


async def pooled_broker(
    factory: BrokerFactory, engine: str, size: int, isolation: str = "browser"
) -> InProcessBroker:
    if (engine, isolation) == ("chromium", "context"):  # the default pair: warm_pool_size
        running = await start(factory, engine, warm_pool_size=size)
    else:
        pools = [{"engine": engine, "isolation": isolation, "size": size}]
        running = await start(factory, engine, warm_pools=pools)
    await asyncio.wait_for(pool(running).filled.wait(), 120)
    return running


def pool(running: InProcessBroker) -> WarmPool:
    (found,) = running.broker.pools
    return found


@ENGINES
@pytest.mark.parametrize("isolation", ["context", "browser"])
async def test_every_engine_and_isolation_is_lent_warm_from_its_pool(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, engine: str, isolation: str
) -> None:
    running = await pooled_broker(broker_factory, engine, 1, isolation)
    (pooled,) = pool(running).sessions()
    lease = await running.client.acquire(
        engine=SDK_ENGINE[engine], isolation=SDK_ISOLATION[isolation], ttl=60, timeout=60
    )
    assert lease.grant.warm
    assert pooled not in pool(running).sessions()
    result = await lease.run(steps.goto(fixture_server.url("form.html")), timeout=30)
    assert result.raise_for_failure()[0].http_status == 200
    await lease.release()
    await asyncio.wait_for(pool(running).filled.wait(), 120)
    assert pooled not in pool(running).sessions()  # a lent session never comes back
    await running.check_no_leftovers()


@ENGINES
async def test_a_pooled_browser_is_lent_warm_and_closed_with_its_lease(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, engine: str
) -> None:

    running = await pooled_broker(broker_factory, engine, 1)
    pw_engine = engine_of(running, engine)
    pooled = set(pw_engine.census().browser_pids)
    assert len(pooled) == 1  # the pool's browser, launched ahead of demand
    lease = await running.client.acquire(
        engine=SDK_ENGINE[engine], isolation=Isolation.BROWSER, ttl=60, timeout=60
    )
    assert lease.grant.warm
    result = await lease.run(steps.goto(fixture_server.url("form.html")), timeout=30)
    assert result.raise_for_failure()[0].http_status == 200
    assert (await lease.release()).released_now
    assert await gone(pooled), f"the warm lease's browser outlived it: {pooled}"
    await asyncio.wait_for(pool(running).filled.wait(), 120)  # refilled with a new browser
    fresh = set(pw_engine.census().browser_pids)
    assert len(fresh) == 1 and fresh.isdisjoint(pooled)
    status = (await running.client.status()).pools[0]
    assert (status.hits, status.misses) == (1, 0)
    await running.check_no_leftovers()


@ENGINES
async def test_a_pooled_browser_killed_while_waiting_is_replaced_and_never_lent(
    broker_factory: BrokerFactory, engine: str
) -> None:

    running = await pooled_broker(broker_factory, engine, 1)
    pw_engine = engine_of(running, engine)
    (victim,) = pw_engine.census().browser_pids
    (pooled,) = pool(running).sessions()
    os.kill(victim, signal.SIGKILL)
    await eventually(lambda: pooled not in pool(running).sessions(), timeout_s=30)
    await eventually(lambda: len(pool(running)) == 1, timeout_s=120)
    lease = await running.client.acquire(
        engine=SDK_ENGINE[engine], isolation=Isolation.BROWSER, ttl=60, timeout=60
    )
    assert lease.grant.warm
    assert (await lease.run(steps.evaluate("6 * 7"), timeout=30))[0].value == 42
    held = {s for s in pw_engine.sessions if s is not pooled}
    assert pooled not in held and all(s.alive for s in held)
    assert victim not in pw_engine.census().browser_pids
    await lease.release()
    await asyncio.wait_for(pool(running).filled.wait(), 120)
    await running.check_no_leftovers()
