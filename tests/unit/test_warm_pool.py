"""WarmPool against the fake engine: it fills to size in the background, hands out only live
sessions that fit a lease's spec (and lets go of them), replaces what dies or is lost, backs off
when opening fails, and leaves no session open once closed.

Ordering comes from events (the pool's `filled`, the engine's `opening`) and from bounded runs
of loop turns; the only real waiting is the pool's own back-off (0.5 s, then 1 s).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest

from broker.engines.base import LostCallback, LostCause, Session
from broker.leases.lease import LeaseSpec
from broker.leases.tenants import OPERATOR, Tenant
from broker.model.attach import AttachOptions
from broker.model.options import (
    BrowserOptions,
    CamoufoxOptions,
    ContextOptions,
    EngineName,
    Isolation,
    ProxySettings,
    Viewport,
)
from broker.warm.pool import WarmPool
from tests.fakes import FakeEngine, FakeSession

SPEC = LeaseSpec(EngineName.CHROMIUM, Isolation.CONTEXT, ttl_s=60, idle_timeout_s=60)

# Loop turns one background step of the pool may take (a refill or a close needs a handful).
TURNS = 200
BACKSTOP_S = 5.0  # only against a hang: events, not this, order the tests


@dataclass(eq=False)
class TrackedSession(FakeSession):
    """A fake session that shows who it reports its loss to, and whose close can be held."""

    reports_to: LostCallback | None = None
    close_gate: asyncio.Event | None = None

    def set_lost_callback(self, callback: LostCallback | None) -> None:
        super().set_lost_callback(callback)
        self.reports_to = callback

    async def close(self) -> None:
        if self.close_gate is not None:
            await self.close_gate.wait()
        await super().close()


class PoolEngine(FakeEngine):
    """Opens TrackedSessions; fails its first `failures` opens; tells when an open begins."""

    def __init__(self, name: EngineName = EngineName.CHROMIUM, failures: int = 0) -> None:
        super().__init__(name)
        self.failures = failures
        self.opening = asyncio.Event()  # set as each open_session begins
        self.attempts: list[float] = []  # loop time at which each open_session began
        self.requested: list[tuple[Isolation, ContextOptions, BrowserOptions | None]] = []
        self.tenants: list[str] = []  # whose shared browser each open asked for

    async def open_session(
        self,
        isolation: Isolation,
        options: ContextOptions,
        browser_options: BrowserOptions | None = None,
        *,
        tenant: str = "",
        attach: AttachOptions | None = None,
    ) -> TrackedSession:
        self.attempts.append(asyncio.get_running_loop().time())
        self.requested.append((isolation, options, browser_options))
        self.tenants.append(tenant)
        self.opening.set()
        if self.open_gate is not None:
            await self.open_gate.wait()
        if len(self.attempts) <= self.failures:
            raise RuntimeError("the browser did not start")
        session = TrackedSession(self.name, isolation, options, self)
        self.open_sessions.add(session)
        self.all_sessions.append(session)
        return session


async def until(condition: Callable[[], bool]) -> None:
    """Let the loop turn until `condition` holds, for at most TURNS turns."""
    for _ in range(TURNS):
        if condition():
            return
        await asyncio.sleep(0)
    assert condition(), f"not reached in {TURNS} loop turns"


async def settle() -> None:
    """Let every pending background step run (before checking that something did NOT happen)."""
    for _ in range(TURNS):
        await asyncio.sleep(0)


async def wait_filled(pool: WarmPool) -> None:
    async with asyncio.timeout(BACKSTOP_S):
        await pool.filled.wait()


def tracked(session: Session | None) -> TrackedSession:
    assert isinstance(session, TrackedSession)
    return session


def ready(pool: WarmPool) -> list[TrackedSession]:
    return [tracked(s) for s in pool.sessions()]


def assert_all_closed_once(engine: FakeEngine) -> None:
    assert engine.open_sessions == set()
    assert [s.closed for s in engine.all_sessions] == [1] * len(engine.all_sessions)


def die_silently(session: FakeSession) -> None:
    session.lost = True  # dead, and nobody was told


def retire(session: FakeSession) -> None:
    session.retiring = True  # its browser is being recycled


async def test_fills_to_size_in_the_background_and_sets_filled() -> None:
    engine = PoolEngine()
    pool = WarmPool(engine, Isolation.CONTEXT, 3)
    assert engine.attempts == [] and len(pool) == 0  # building a pool opens nothing
    async with pool:
        await wait_filled(pool)
        pooled = ready(pool)
        assert len(pool) == 3 and len(set(pooled)) == 3
        assert set(pooled) == engine.open_sessions
        assert all(s.alive for s in pooled)
        # Opened for the pool's isolation with default options (what `take` promises to fit).
        assert engine.requested == [(Isolation.CONTEXT, ContextOptions(), None)] * 3
        pool.sessions().clear()  # a copy: the pool keeps its sessions
        assert len(pool) == 3
        await settle()
        assert len(engine.all_sessions) == 3  # full: no more opens
    assert_all_closed_once(engine)


async def test_take_hands_out_a_ready_session_and_the_pool_refills_to_size() -> None:
    engine = PoolEngine()
    async with WarmPool(engine, Isolation.CONTEXT, 2) as pool:
        await wait_filled(pool)
        before = ready(pool)
        first, second = tracked(pool.take(SPEC)), tracked(pool.take(SPEC))
        # A table operation: handed out at once, gone from the pool at once.
        assert {first, second} == set(before) and first.alive and second.alive
        assert len(pool) == 0 and pool.take(SPEC) is None
        await until(lambda: len(pool) == 2)
        assert set(pool.sessions()).isdisjoint(before)
        await settle()
        assert len(engine.all_sessions) == 4
    # Closing the pool leaves what it handed out alone: that belongs to leases now.
    assert first.closed == 0 and second.closed == 0
    await first.close()
    await second.close()
    assert_all_closed_once(engine)


async def test_take_never_waits_for_the_browser() -> None:
    engine = PoolEngine()
    engine.open_gate = asyncio.Event()  # the browser does not answer yet
    async with asyncio.timeout(BACKSTOP_S), WarmPool(engine, Isolation.CONTEXT, 1) as pool:
        await engine.opening.wait()  # the refill is in flight
        assert pool.take(SPEC) is None and len(pool) == 0
        engine.open_gate.set()
        await pool.filled.wait()
        taken = tracked(pool.take(SPEC))
        assert taken.alive
    await taken.close()
    assert_all_closed_once(engine)


MISFITS = {
    "another-engine": LeaseSpec(EngineName.FIREFOX, Isolation.CONTEXT, 60, 60),
    "another-isolation": LeaseSpec(EngineName.CHROMIUM, Isolation.BROWSER, 60, 60),
    "a-viewport": LeaseSpec(
        EngineName.CHROMIUM, Isolation.CONTEXT, 60, 60, ContextOptions(viewport=Viewport(800, 600))
    ),
    "a-user-agent": LeaseSpec(
        EngineName.CHROMIUM, Isolation.CONTEXT, 60, 60, ContextOptions(user_agent="probe/1")
    ),
    "headers": LeaseSpec(
        EngineName.CHROMIUM,
        Isolation.CONTEXT,
        60,
        60,
        ContextOptions(extra_http_headers=(("x-probe", "1"),)),
    ),
    "a-proxy": LeaseSpec(
        EngineName.CHROMIUM,
        Isolation.CONTEXT,
        60,
        60,
        ContextOptions(proxy=ProxySettings("http://proxy.invalid:3128")),
    ),
    "javascript-off": LeaseSpec(
        EngineName.CHROMIUM, Isolation.CONTEXT, 60, 60, ContextOptions(java_script_disabled=True)
    ),
    "camoufox-options": LeaseSpec(
        EngineName.CHROMIUM, Isolation.CONTEXT, 60, 60, camoufox=CamoufoxOptions()
    ),
}


@pytest.mark.parametrize("spec", MISFITS.values(), ids=MISFITS.keys())
async def test_take_refuses_a_spec_the_pooled_sessions_do_not_fit(spec: LeaseSpec) -> None:
    engine = PoolEngine()
    async with WarmPool(engine, Isolation.CONTEXT, 1) as pool:
        await wait_filled(pool)
        before = ready(pool)
        assert pool.take(spec) is None
        assert ready(pool) == before and before[0].closed == 0  # nothing consumed or spoiled
        await settle()
        assert len(engine.all_sessions) == 1
        taken = pool.take(SPEC)  # while a spec that fits is served from the same pool
        assert taken is before[0]
    await before[0].close()
    assert_all_closed_once(engine)


async def test_a_pool_serves_only_its_own_engine_and_isolation() -> None:
    engine = PoolEngine(EngineName.FIREFOX)
    async with WarmPool(engine, Isolation.BROWSER, 1) as pool:
        await wait_filled(pool)
        assert engine.requested == [(Isolation.BROWSER, ContextOptions(), None)]
        assert pool.take(SPEC) is None  # chromium, context
        assert pool.take(LeaseSpec(EngineName.FIREFOX, Isolation.CONTEXT, 60, 60)) is None
        assert pool.take(LeaseSpec(EngineName.CHROMIUM, Isolation.BROWSER, 60, 60)) is None
        taken = tracked(pool.take(LeaseSpec(EngineName.FIREFOX, Isolation.BROWSER, 60, 60)))
        assert taken.engine is EngineName.FIREFOX and taken.isolation is Isolation.BROWSER
    await taken.close()
    assert_all_closed_once(engine)


async def test_a_context_pool_serves_only_the_tenant_whose_browser_its_sessions_are_in() -> None:
    """A warm context session lives in its tenant's shared browser: another tenant's lease never
    gets it. A warm dedicated browser is nobody's until lent: any tenant may have it."""
    engine = PoolEngine()
    alpha = Tenant("alpha")
    async with (
        WarmPool(engine, Isolation.CONTEXT, 1) as contexts,
        WarmPool(engine, Isolation.BROWSER, 1) as browsers,
    ):
        await wait_filled(contexts)
        await wait_filled(browsers)
        assert engine.tenants == [OPERATOR.name, OPERATOR.name]
        assert contexts.take(replace(SPEC, tenant=alpha)) is None
        taken = [tracked(contexts.take(SPEC))]
        taken.append(
            tracked(browsers.take(replace(SPEC, isolation=Isolation.BROWSER, tenant=alpha)))
        )
    for session in taken:
        await session.close()
    assert_all_closed_once(engine)


@pytest.mark.parametrize("spoil", [die_silently, retire], ids=["dead", "retiring"])
async def test_a_dead_or_retiring_session_is_never_handed_out_and_is_closed(
    spoil: Callable[[FakeSession], None],
) -> None:
    engine = PoolEngine()
    async with WarmPool(engine, Isolation.CONTEXT, 2) as pool:
        await wait_filled(pool)
        spoilt = ready(pool)
        for session in spoilt:
            spoil(session)
        assert pool.take(SPEC) is None
        await until(lambda: all(s.closed == 1 for s in spoilt))
        assert engine.open_sessions.isdisjoint(spoilt)
        await until(lambda: len(pool) == 2)  # and both are replaced
        fresh = tracked(pool.take(SPEC))
        assert fresh not in spoilt and fresh.alive and not fresh.retiring
    await fresh.close()
    assert_all_closed_once(engine)


async def test_take_passes_over_bad_sessions_to_a_good_one() -> None:
    engine = PoolEngine()
    async with WarmPool(engine, Isolation.CONTEXT, 3) as pool:
        await wait_filled(pool)
        dead, retiring, good = ready(pool)
        die_silently(dead)
        retire(retiring)
        assert pool.take(SPEC) is good  # whatever order the pool keeps them in
        assert pool.take(SPEC) is None  # the bad two are never handed out
        await until(lambda: dead.closed == 1 and retiring.closed == 1)
        await until(lambda: len(pool) == 3)
        assert {dead, retiring, good}.isdisjoint(pool.sessions())
    await good.close()
    assert_all_closed_once(engine)


@pytest.mark.parametrize("cause", list(LostCause))
async def test_a_session_lost_while_pooled_leaves_the_pool_is_closed_and_replaced(
    cause: LostCause,
) -> None:
    engine = PoolEngine()
    async with WarmPool(engine, Isolation.CONTEXT, 2) as pool:
        await wait_filled(pool)
        victim, survivor = ready(pool)
        victim.crash(cause)
        assert ready(pool) == [survivor]  # at once: no take can hand it out from here on
        await until(lambda: victim.closed == 1 and len(pool) == 2)
        assert victim not in engine.open_sessions and victim not in pool.sessions()
        assert survivor in pool.sessions()
        await settle()
        assert len(engine.all_sessions) == 3  # one replacement, no more
        assert victim.closed == 1
    assert_all_closed_once(engine)


async def test_a_session_handed_out_no_longer_reports_to_the_pool() -> None:
    engine = PoolEngine()
    async with WarmPool(engine, Isolation.CONTEXT, 1) as pool:
        await wait_filled(pool)
        taken = tracked(pool.take(SPEC))
        assert taken.reports_to is None
        await until(lambda: len(pool) == 1)
        (replacement,) = ready(pool)
        taken.crash()  # the lease's business now, not the pool's
        await settle()
        assert taken.closed == 0  # the pool did not close what it lent
        assert ready(pool) == [replacement] and replacement.alive
        assert len(engine.all_sessions) == 2
    assert taken.closed == 0
    await taken.close()
    assert_all_closed_once(engine)


async def test_refill_failures_back_off_and_recover() -> None:
    engine = PoolEngine(failures=2)
    async with WarmPool(engine, Isolation.CONTEXT, 1) as pool:
        await wait_filled(pool)  # 0.5 s + 1 s of back-off
        first, second, third = engine.attempts
        assert second - first >= 0.45  # backed off before retrying
        assert third - second >= 0.9  # and twice as long after a second failure
        (recovered,) = ready(pool)
        assert recovered.alive and engine.all_sessions == [recovered]
        await settle()
        assert len(engine.attempts) == 3
    assert_all_closed_once(engine)


async def test_close_closes_every_ready_session_and_stops_refilling() -> None:
    engine = PoolEngine()
    async with WarmPool(engine, Isolation.CONTEXT, 3) as pool:
        await wait_filled(pool)
        pooled = ready(pool)
        await pool.close()
        assert [s.closed for s in pooled] == [1, 1, 1]
        assert engine.open_sessions == set()
        assert len(pool) == 0 and pool.sessions() == [] and pool.take(SPEC) is None
        await settle()
        assert len(engine.attempts) == 3  # nothing refills a closed pool
    # Leaving the block closes it a second time: a no-op.
    assert_all_closed_once(engine)
    assert len(engine.attempts) == 3


@pytest.mark.parametrize(
    "spoil", [die_silently, retire, FakeSession.crash], ids=["dead", "retiring", "lost"]
)
async def test_close_waits_for_the_sessions_it_is_discarding(
    spoil: Callable[[FakeSession], None],
) -> None:
    engine = PoolEngine()
    async with WarmPool(engine, Isolation.CONTEXT, 2) as pool:
        await wait_filled(pool)
        discarded = ready(pool)
        slow_close = asyncio.Event()
        for session in discarded:
            session.close_gate = slow_close
            spoil(session)
        try:
            assert pool.take(SPEC) is None  # both discarded, their closes started
            closing = asyncio.create_task(pool.close())
            await settle()
            assert not closing.done()  # close() waits for the closes it started
        finally:
            slow_close.set()  # (also when a check failed, so leaving the block cannot hang)
        await asyncio.wait_for(closing, BACKSTOP_S)
        assert [s.closed for s in discarded] == [1, 1]
        assert engine.open_sessions == set()
    assert_all_closed_once(engine)


@pytest.mark.parametrize("browser_answers", ["before-close", "after-close"])
async def test_closing_while_a_refill_is_opening_leaves_nothing_open(
    browser_answers: str,
) -> None:
    engine = PoolEngine()
    async with WarmPool(engine, Isolation.CONTEXT, 2) as pool:
        await wait_filled(pool)
        gate = engine.open_gate = asyncio.Event()
        engine.opening.clear()
        taken = tracked(pool.take(SPEC))
        (pooled,) = ready(pool)
        await asyncio.wait_for(engine.opening.wait(), BACKSTOP_S)  # the refill is in flight
        if browser_answers == "before-close":
            gate.set()  # its session is ready, but the refill has not run on yet
        closing = asyncio.create_task(pool.close())
        await settle()
        done = closing.done()
        gate.set()
        assert done  # close() does not wait on a browser that hangs
        await closing
        await settle()
        assert pooled.closed == 1
        assert engine.open_sessions == {taken}  # only the session a lease holds
        assert len(engine.attempts) == 3
    await taken.close()
    assert_all_closed_once(engine)


async def test_size_zero_opens_nothing() -> None:
    engine = PoolEngine()
    async with WarmPool(engine, Isolation.CONTEXT, 0) as pool:
        await settle()
        assert pool.take(SPEC) is None and len(pool) == 0 and pool.sessions() == []
    assert engine.attempts == [] and engine.all_sessions == []


async def test_a_refill_that_hangs_is_bounded() -> None:
    engine = FakeEngine()
    engine.open_gate = asyncio.Event()  # the browser never answers
    async with WarmPool(engine, Isolation.CONTEXT, 1, first_backoff_s=0.01, open_timeout_s=0.05):
        await asyncio.sleep(0.2)  # several bounded attempts, each given up
        engine.open_gate.set()
        for _ in range(200):  # the next attempt succeeds (back-off is 10 ms)
            if engine.open_sessions:
                break
            await asyncio.sleep(0.01)
        assert len(engine.open_sessions) == 1
    assert engine.open_sessions == set()
