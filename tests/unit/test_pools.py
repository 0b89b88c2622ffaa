"""Warm pools per engine and isolation, wired in the broker over fake engines: every pair can be
pooled, a warm session goes only to a lease its options fit, a dead or aged warm session is
replaced and never lent, pools follow demand, and the memory budget gives up warm sessions before
it refuses a lease."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from broker.egress.policy import EgressRules
from broker.errors import LimitExceeded
from broker.leases.lease import Lease, LeaseSpec, ReleaseReason
from broker.leases.runs import Run
from broker.leases.tenants import Tenant
from broker.model.options import (
    CamoufoxOptions,
    ContextOptions,
    EngineName,
    Isolation,
    ProxySettings,
    Viewport,
)
from broker.model.steps.base import OnCancel, RunOptions, Step
from broker.model.steps.reading import Evaluate
from broker.runtime.settings import Settings
from broker.runtime.wiring import Broker
from broker.warm.demand import Demand
from broker.warm.pool import WarmPool
from tests.fakes import FakeEngine, FakeSession
from tests.support import eventually
from tests.unit.test_warm_pool import (
    BACKSTOP_S,
    TURNS,
    PoolEngine,
    tracked,
    until,
    wait_filled,
)

PAIRS = [(engine, isolation) for engine in EngineName for isolation in Isolation]


def spec(
    engine: EngineName = EngineName.FIREFOX,
    isolation: Isolation = Isolation.BROWSER,
    **kw: Any,
) -> LeaseSpec:
    return LeaseSpec(engine, isolation, ttl_s=60, idle_timeout_s=60, **kw)


@asynccontextmanager
async def running(**overrides: Any) -> AsyncIterator[tuple[Broker, dict[EngineName, FakeEngine]]]:
    values: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "warm_pool_size": 0,
        "capacity": 16,
        "engines": list(EngineName),
        "log_level": "WARNING",
        **overrides,
    }
    if any(
        p["engine"] == "chromium" and p["isolation"] == "context"
        for p in values.get("warm_pools", [])
    ):
        del values["warm_pool_size"]  # the entry sizes the default pair
    engines: dict[EngineName, FakeEngine] = {name: PoolEngine(name) for name in EngineName}
    async with Broker(Settings.model_validate(values), engines=dict(engines)) as broker:
        try:
            yield broker, engines
        finally:
            for lease in broker.leases.active_leases():
                broker.leases.release(lease, ReleaseReason.CLIENT_RELEASE)
            await broker.leases.wait_all_closed()
    for engine in engines.values():
        assert engine.open_sessions == set()
        assert [s.closed for s in engine.all_sessions] == [1] * len(engine.all_sessions)


def pool_of(broker: Broker, engine: EngineName, isolation: Isolation) -> WarmPool:
    (pool,) = [p for p in broker.pools if p.engine.name is engine and p.isolation is isolation]
    return pool


async def release(broker: Broker, lease: Lease) -> None:
    broker.leases.release(lease, ReleaseReason.CLIENT_RELEASE)
    await broker.leases.wait_closed(lease.id)


def fake(session: object) -> FakeSession:
    assert isinstance(session, FakeSession)
    return session


@pytest.mark.parametrize("pair", PAIRS, ids=[f"{e.value}-{i.value}" for e, i in PAIRS])
async def test_every_engine_and_isolation_can_be_pooled(
    pair: tuple[EngineName, Isolation],
) -> None:
    engine, isolation = pair
    pools = [{"engine": engine.value, "isolation": isolation.value, "size": 2}]
    async with running(warm_pools=pools) as (broker, _engines):
        pool = pool_of(broker, engine, isolation)
        await wait_filled(pool)
        ready = set(pool.sessions())
        lease = await broker.leases.acquire(spec(engine, isolation), 5)
        assert lease.warm and lease.session in ready
        session = fake(lease.session)
        assert (session.engine, session.isolation) == pair
        assert session.options == ContextOptions()
        status = pool.status()
        assert (status.hits, status.misses, status.target) == (1, 0, 2)
        await eventually(lambda: len(pool) == 2, BACKSTOP_S)  # refilled in the background
        await release(broker, lease)
        assert session.closed == 1  # closed with its lease, not returned to the pool
        assert session not in pool.sessions()


async def test_a_pooled_dedicated_browser_is_lent_warm_and_closed_with_its_lease() -> None:
    pools = [{"engine": "firefox", "isolation": "browser", "size": 1}]
    async with running(warm_pools=pools) as (broker, engines):
        pool = pool_of(broker, EngineName.FIREFOX, Isolation.BROWSER)
        await wait_filled(pool)
        (pooled,) = pool.sessions()
        lease = await broker.leases.acquire(spec(), 5)
        assert lease.warm and lease.session is pooled
        await release(broker, lease)
        assert fake(pooled).closed == 1
        assert pooled not in engines[EngineName.FIREFOX].open_sessions


MISFITS = {
    "viewport": {"context": ContextOptions(viewport=Viewport(800, 600))},
    "proxy": {"context": ContextOptions(proxy=ProxySettings("http://proxy.invalid:3128"))},
    "user-agent": {"context": ContextOptions(user_agent="probe/1")},
    "camoufox-options": {"camoufox": CamoufoxOptions(os=("windows",))},
}


@pytest.mark.parametrize("options", MISFITS.values(), ids=MISFITS.keys())
async def test_a_lease_whose_options_do_not_fit_opens_cold(options: dict[str, Any]) -> None:
    engine = EngineName.CAMOUFOX if "camoufox" in options else EngineName.FIREFOX
    pools = [{"engine": engine.value, "isolation": "browser", "size": 1}]
    async with running(warm_pools=pools, egress_enabled=False) as (broker, _engines):
        pool = pool_of(broker, engine, Isolation.BROWSER)
        await wait_filled(pool)
        (pooled,) = pool.sessions()
        lease = await broker.leases.acquire(spec(engine, **options), 5)
        assert not lease.warm and lease.session is not pooled
        assert fake(lease.session).options == options.get("context", ContextOptions())
        assert pool.sessions() == [pooled] and fake(pooled).closed == 0  # left untouched
        assert (pool.status().hits, pool.status().misses) == (0, 1)
        await release(broker, lease)


async def test_a_warm_browser_killed_while_pooled_is_replaced_and_never_lent() -> None:
    pools = [{"engine": "chromium", "isolation": "browser", "size": 2}]
    async with running(warm_pools=pools) as (broker, _engines):
        pool = pool_of(broker, EngineName.CHROMIUM, Isolation.BROWSER)
        await wait_filled(pool)
        killed, silent = (fake(s) for s in pool.sessions())
        killed.crash()  # the browser process died and said so
        silent.lost = True  # died without a word: found when it would be lent
        lent = [await broker.leases.acquire(spec(EngineName.CHROMIUM), 5) for _ in range(2)]
        assert all(lease.session not in (killed, silent) for lease in lent)
        await until(lambda: killed.closed == 1 and silent.closed == 1)
        await until(lambda: len(pool) == 2)
        assert {killed, silent}.isdisjoint(pool.sessions())
        assert all(fake(s).alive for s in pool.sessions())
        for lease in lent:
            await release(broker, lease)


async def test_a_warm_session_that_ages_out_is_replaced() -> None:
    now = [0.0]
    engine = FakeEngine(EngineName.FIREFOX)
    async with WarmPool(engine, Isolation.BROWSER, 1, max_age_s=60, now=lambda: now[0]) as pool:
        await wait_filled(pool)
        (old,) = pool.sessions()
        now[0] = 61.0
        assert pool.take(spec()) is None  # too old to lend
        await until(lambda: fake(old).closed == 1 and len(pool) == 1)
        fresh = pool.take(spec())
        assert fresh is not None and fresh is not old
    await fake(fresh).close()


async def test_warm_sessions_get_their_tenant_egress_rules_when_lent() -> None:
    pools = [{"engine": "firefox", "isolation": "browser", "size": 2}]
    async with running(warm_pools=pools) as (broker, _engines):
        await wait_filled(pool_of(broker, EngineName.FIREFOX, Isolation.BROWSER))
        assert all(fake(s).egress_rules is None for s in broker.pools[0].sessions())
        rules = {
            "a": EgressRules(allow_hosts=("a.example",)),
            "b": EgressRules(deny_hosts=("b.example",)),
        }
        leases = {
            name: await broker.leases.acquire(spec(tenant=Tenant(name=name, egress=r)), 5)
            for name, r in rules.items()
        }
        for name, lease in leases.items():
            assert lease.warm and fake(lease.session).egress_rules == rules[name]
            await release(broker, lease)


async def test_a_tenant_is_not_lent_a_warm_session_of_a_pair_it_may_not_use() -> None:
    pools = [{"engine": "firefox", "isolation": "browser", "size": 1}]
    async with running(warm_pools=pools) as (broker, _engines):
        pool = pool_of(broker, EngineName.FIREFOX, Isolation.BROWSER)
        await wait_filled(pool)
        only_context = Tenant(name="t", isolations=frozenset({Isolation.CONTEXT}))
        with pytest.raises(Exception, match="isolation"):
            await broker.leases.acquire(spec(tenant=only_context), 5)
        assert len(pool) == 1 and pool.status().hits == 0


async def test_one_warm_open_at_a_time_per_engine() -> None:
    pools = [
        {"engine": "chromium", "isolation": "context", "size": 2},
        {"engine": "chromium", "isolation": "browser", "size": 2},
        {"engine": "firefox", "isolation": "browser", "size": 2},
    ]
    gate = asyncio.Event()
    async with running(warm_pools=pools) as (broker, engines):
        for engine in engines.values():
            engine.open_gate = gate
        for pool in broker.pools:  # pools started before the gate was set: let them refill
            pool.set_target(3)
        await until(lambda: sum(p.opening for p in broker.pools) == 2)
        per_engine = {
            name: sum(p.opening for p in broker.pools if p.engine.name is name) for name in engines
        }
        assert per_engine[EngineName.CHROMIUM] == 1 and per_engine[EngineName.FIREFOX] == 1
        gate.set()
        for pool in broker.pools:
            await until(lambda pool=pool: len(pool) == 2)  # type: ignore[misc]


async def test_the_memory_budget_drops_warm_sessions_before_refusing_a_lease() -> None:
    # Three 60 MiB sessions fit: two warm Chromium contexts, then Firefox contexts as leases.
    pools = [{"engine": "chromium", "isolation": "context", "size": 2}]
    async with running(warm_pools=pools, memory_budget_mb=180) as (broker, _engines):
        pool = pool_of(broker, EngineName.CHROMIUM, Isolation.CONTEXT)
        await wait_filled(pool)
        warm = [fake(s) for s in pool.sessions()]
        context = spec(EngineName.FIREFOX, Isolation.CONTEXT)
        first = await broker.leases.acquire(context, 5)  # 60 + 120 warm: fits
        assert len(pool) == 2 and broker.warm.memory_drops == 0
        second = await broker.leases.acquire(context, 5)  # leases first: one warm one goes
        assert len(pool) == 1 and broker.warm.memory_drops == 1
        third = await broker.leases.acquire(context, 5)
        assert len(pool) == 0 and broker.warm.memory_drops == 2
        await until(lambda: all(s.closed == 1 for s in warm))
        with pytest.raises(LimitExceeded) as refused:  # only leases left: now it refuses
            await broker.leases.acquire(context, 5)
        assert refused.value.limit == "memory_budget_mb"
        assert broker.leases.active_count == 3
        for _ in range(TURNS):
            await asyncio.sleep(0)
        assert len(pool) == 0 and pool.opening == 0  # no refill takes the leases' memory
        await release(broker, first)
        # Memory for one again: refilled (the pool asks the budget again within a second).
        await eventually(lambda: len(pool) == 1, BACKSTOP_S)
        await release(broker, second)
        await wait_filled(pool)
        assert len(pool) == 2
        await release(broker, third)


async def test_a_refill_waits_for_the_memory_of_a_session_still_closing() -> None:
    pools = [{"engine": "firefox", "isolation": "context", "size": 1}]
    async with running(warm_pools=pools, memory_budget_mb=120) as (broker, _engines):
        pool = pool_of(broker, EngineName.FIREFOX, Isolation.CONTEXT)
        await wait_filled(pool)
        ended = await broker.leases.acquire(
            spec(isolation=Isolation.CONTEXT, context=ContextOptions(locale="de-DE")), 5
        )
        slow_close = tracked(ended.session).close_gate = asyncio.Event()
        broker.leases.release(ended, ReleaseReason.CLIENT_RELEASE)  # its close hangs
        warm = await broker.leases.acquire(spec(isolation=Isolation.CONTEXT), 5)
        assert warm.warm
        await asyncio.sleep(0.1)  # past the refill delay
        assert len(pool) == 0 and pool.opening == 0  # 60 lent + 60 closing: no room
        slow_close.set()
        await eventually(lambda: len(pool) == 1, BACKSTOP_S)
        await release(broker, warm)


async def test_a_pool_follows_demand_between_floor_and_ceiling() -> None:
    pools = [{"engine": "firefox", "isolation": "browser", "size": 2, "max_size": 4}]
    async with running(warm_pools=pools) as (broker, _engines):
        pool = pool_of(broker, EngineName.FIREFOX, Isolation.BROWSER)
        await wait_filled(pool)
        burst = [await broker.leases.acquire(spec(), 5) for _ in range(6)]
        assert [lease.warm for lease in burst] == [True, True, False, False, False, False]
        assert pool.status().target == 4  # six held at once: up to the ceiling
        await until(lambda: len(pool) == 4)
        for lease in burst:
            await release(broker, lease)
        again = [await broker.leases.acquire(spec(), 5) for _ in range(4)]
        assert all(lease.warm for lease in again)  # the next burst finds them ready
        for lease in again:
            await release(broker, lease)


async def test_leases_a_pool_could_not_serve_do_not_raise_its_target() -> None:
    pools = [{"engine": "firefox", "isolation": "browser", "size": 1, "max_size": 4}]
    async with running(warm_pools=pools) as (broker, _engines):
        pool = pool_of(broker, EngineName.FIREFOX, Isolation.BROWSER)
        await wait_filled(pool)
        other = spec(context=ContextOptions(locale="de-DE"))
        held = [await broker.leases.acquire(other, 5) for _ in range(3)]
        assert not any(lease.warm for lease in held)
        assert pool.status().target == 1 and pool.status().misses == 3
        for lease in held:
            await release(broker, lease)


def test_demand_is_the_peak_held_within_the_window() -> None:
    now = [0.0]
    demand = Demand(60, lambda: now[0])
    pair = (EngineName.FIREFOX, Isolation.BROWSER)
    assert demand.peak(pair) == 0
    for held in (1, 2, 8, 3):
        demand.observe(pair, held)
    assert demand.peak(pair) == 8
    now[0] = 30.0
    demand.observe(pair, 5)
    now[0] = 61.0  # the burst of 8 leaves the window; 5 (at 30 s) is the peak now
    assert demand.peak(pair) == 5
    now[0] = 200.0
    assert demand.peak(pair) == 0
    assert demand.peak((EngineName.CHROMIUM, Isolation.CONTEXT)) == 0


async def test_a_lower_target_lets_the_excess_go_and_never_sinks_below_the_floor() -> None:
    engine = FakeEngine(EngineName.FIREFOX)
    async with WarmPool(engine, Isolation.BROWSER, 1, ceiling=3) as pool:
        pool.set_target(3)
        await until(lambda: len(pool) == 3)
        pool.set_target(0)
        assert pool.target == 1
        await until(lambda: len(pool) == 1 and len(engine.open_sessions) == 1)
        pool.set_target(10)
        assert pool.target == 3
    assert engine.open_sessions == set()


async def test_a_refill_after_a_take_waits_until_the_reply_is_out() -> None:
    engine = FakeEngine(EngineName.FIREFOX)
    async with WarmPool(engine, Isolation.BROWSER, 1, refill_delay_s=3600) as pool:
        await wait_filled(pool)
        lent = pool.take(spec())
        for _ in range(TURNS):
            await asyncio.sleep(0)
        assert len(engine.all_sessions) == 1  # no launch started on the lending reply's path
    await fake(lent).close()


async def test_a_refill_waits_while_a_lease_launches_a_browser_of_its_engine() -> None:
    pools = [{"engine": "firefox", "isolation": "browser", "size": 1}]
    async with running(warm_pools=pools) as (broker, engines):
        pool = pool_of(broker, EngineName.FIREFOX, Isolation.BROWSER)
        await wait_filled(pool)
        firefox = engines[EngineName.FIREFOX]
        gate = firefox.open_gate = asyncio.Event()  # the cold lease's launch takes its time
        cold = asyncio.create_task(
            broker.leases.acquire(spec(context=ContextOptions(locale="de-DE")), 5)
        )
        await until(lambda: len(firefox.all_sessions) == 1 and broker.leases.active_count == 1)
        warm = await broker.leases.acquire(spec(), 5)
        assert warm.warm
        await asyncio.sleep(0.1)  # past the refill delay: the pool would open now
        assert pool.opening == 0 and len(pool) == 0  # but the lease's launch goes first
        gate.set()
        lease = await cold
        assert not lease.warm
        await eventually(lambda: len(pool) == 1, BACKSTOP_S)  # then the pool refills
        for held in (warm, lease):
            await release(broker, held)


async def test_a_refill_waits_while_a_lease_of_its_engine_runs_steps() -> None:
    """A warm open beside a lease's navigation would slow it down: the pool lets it go first,
    then refills; under steady load the wait is bounded and the pool still refills."""
    pools = [{"engine": "firefox", "isolation": "browser", "size": 1}]
    async with running(warm_pools=pools) as (broker, engines):
        pool = pool_of(broker, EngineName.FIREFOX, Isolation.BROWSER)
        await wait_filled(pool)
        firefox = engines[EngineName.FIREFOX]
        firefox.step_gate = asyncio.Event()  # the lease's Run takes its time
        lease = await broker.leases.acquire(spec(), 5)
        assert lease.warm
        steps = (Step(Evaluate("1"), 0.0),)
        run = Run(broker.leases, lease, RunOptions(steps, OnCancel.KEEP_LEASE), 60.0, 30.0)
        run.start()
        await asyncio.sleep(0.3)  # past the refill delay: the pool would open now
        assert pool.opening == 0 and len(pool) == 0 and len(firefox.all_sessions) == 1
        firefox.step_gate.set()
        await eventually(lambda: len(pool) == 1, BACKSTOP_S)  # the Run ended: the pool refills
        # A Run that never ends holds the refill back only so long.
        firefox.step_gate = asyncio.Event()
        second = await broker.leases.acquire(spec(), 5)
        assert second.warm
        stuck = Run(broker.leases, second, RunOptions(steps, OnCancel.KEEP_LEASE), 60.0, 30.0)
        stuck.start()
        await eventually(lambda: len(pool) == 1, BACKSTOP_S)
        firefox.step_gate.set()
        for held in (lease, second):
            await release(broker, held)


async def test_pools_take_their_bounds_from_the_settings() -> None:
    pools = [{"engine": "firefox", "isolation": "browser", "size": 1, "max_age_s": 90}]
    async with running(warm_pools=pools, session_open_timeout_s=7) as (broker, _engines):
        pool = pool_of(broker, EngineName.FIREFOX, Isolation.BROWSER)
        assert (pool._open_timeout_s, pool.max_age_s) == (7, 90)
        await wait_filled(pool)


async def test_a_pool_of_an_unavailable_engine_is_left_out_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    values = {"listen": "127.0.0.1:0", "engines": ["chromium", "camoufox"], "log_level": "WARNING"}
    settings = Settings.model_validate(
        {**values, "warm_pools": [{"engine": "camoufox", "isolation": "browser", "size": 2}]}
    )
    engines = {
        EngineName.CHROMIUM: FakeEngine(),
        EngineName.CAMOUFOX: FakeEngine(EngineName.CAMOUFOX, available=False),
    }
    broker = Broker(settings, engines=dict(engines))
    assert [p.name for p in broker.pools] == ["chromium/context"]
    assert "warm pool camoufox/browser left out: its engine is unavailable" in caplog.text
