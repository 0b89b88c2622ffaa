"""The warm pool, with the fake engine: it fills in the background, hands out only live
sessions that fit, replaces what dies, backs off on failures, and leaves nothing open."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from broker.lease import LeaseSpec
from broker.options import CamoufoxOptions, ContextOptions, EngineName, Isolation, Viewport
from broker.pool import WarmPool
from tests.fakes import FakeEngine, FakeSession

SPEC = LeaseSpec(EngineName.CHROMIUM, Isolation.CONTEXT, ttl_s=60, idle_timeout_s=60)


async def until(condition: Callable[[], bool]) -> None:
    """Until the pool's background task has done its part (a backstop of 5 s)."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_fills_in_the_background_and_refills_after_a_take() -> None:
    engine = FakeEngine()
    async with WarmPool(engine, Isolation.CONTEXT, 2) as pool:
        await asyncio.wait_for(pool.filled.wait(), 5)
        assert len(pool) == 2 and len(engine.open_sessions) == 2
        taken = pool.take(SPEC)
        assert isinstance(taken, FakeSession) and taken.alive
        assert taken not in pool.sessions()
        await until(lambda: len(pool) == 2)
        assert len(engine.all_sessions) == 3
        await taken.close()


async def test_only_a_request_the_pooled_sessions_fit_is_served() -> None:
    engine = FakeEngine()
    async with WarmPool(engine, Isolation.CONTEXT, 1) as pool:
        await asyncio.wait_for(pool.filled.wait(), 5)
        misfits = [
            LeaseSpec(EngineName.FIREFOX, Isolation.CONTEXT, 60, 60),
            LeaseSpec(EngineName.CHROMIUM, Isolation.BROWSER, 60, 60),
            LeaseSpec(
                EngineName.CHROMIUM, Isolation.CONTEXT, 60, 60, ContextOptions(viewport=Viewport(800, 600))
            ),
            LeaseSpec(EngineName.CHROMIUM, Isolation.CONTEXT, 60, 60, camoufox=CamoufoxOptions()),
        ]  # fmt: skip
        for spec in misfits:
            assert pool.take(spec) is None
        assert len(pool) == 1  # nothing was consumed by the misfits


async def test_a_dead_or_retiring_session_is_never_handed_out() -> None:
    engine = FakeEngine()
    async with WarmPool(engine, Isolation.CONTEXT, 2) as pool:
        await asyncio.wait_for(pool.filled.wait(), 5)
        dead, retiring = pool.sessions()
        assert isinstance(dead, FakeSession) and isinstance(retiring, FakeSession)
        dead.lost = True  # gone without telling anyone
        retiring.retiring = True
        assert pool.take(SPEC) is None
        await until(lambda: dead.closed == 1 and retiring.closed == 1)
        await until(lambda: len(pool) == 2)  # and both were replaced
        fresh = pool.take(SPEC)
        assert fresh is not None and fresh not in (dead, retiring)
        await fresh.close()


async def test_a_session_lost_while_pooled_is_closed_and_replaced() -> None:
    engine = FakeEngine()
    async with WarmPool(engine, Isolation.CONTEXT, 1) as pool:
        await asyncio.wait_for(pool.filled.wait(), 5)
        (pooled,) = pool.sessions()
        assert isinstance(pooled, FakeSession)
        pooled.crash()
        assert pooled not in pool.sessions()
        await until(lambda: pooled.closed == 1 and len(pool) == 1)
        assert pool.sessions()[0] is not pooled


async def test_a_session_handed_out_no_longer_reports_to_the_pool() -> None:
    engine = FakeEngine()
    async with WarmPool(engine, Isolation.CONTEXT, 1) as pool:
        await asyncio.wait_for(pool.filled.wait(), 5)
        taken = pool.take(SPEC)
        assert isinstance(taken, FakeSession)
        await until(lambda: len(pool) == 1)
        replacement = pool.sessions()[0]
        taken.crash()  # now the lease's business, not the pool's
        await asyncio.sleep(0.05)
        assert pool.sessions() == [replacement] and taken.closed == 0
        await taken.close()


async def test_refill_failures_back_off_and_recover() -> None:
    engine = FailingEngine(failures=2)
    async with WarmPool(engine, Isolation.CONTEXT, 1, first_backoff_s=0.01) as pool:
        await asyncio.wait_for(pool.filled.wait(), 5)
        assert engine.attempts == 3 and len(pool) == 1


async def test_a_refill_that_hangs_is_bounded() -> None:
    engine = FakeEngine()
    engine.open_gate = asyncio.Event()  # the browser never answers
    async with WarmPool(engine, Isolation.CONTEXT, 1, first_backoff_s=0.01, open_timeout_s=0.05):
        await asyncio.sleep(0.2)  # several bounded attempts, each given up
        engine.open_gate.set()
        await until(lambda: len(engine.open_sessions) == 1)
    assert engine.open_sessions == set()


async def test_close_closes_every_ready_session_and_stops_refilling() -> None:
    engine = FakeEngine()
    pool = WarmPool(engine, Isolation.CONTEXT, 3)
    async with pool:
        await asyncio.wait_for(pool.filled.wait(), 5)
    assert len(pool) == 0 and engine.open_sessions == set()
    assert all(s.closed == 1 for s in engine.all_sessions)
    opened = len(engine.all_sessions)
    await asyncio.sleep(0.05)
    assert len(engine.all_sessions) == opened  # nothing refills a closed pool


async def test_closing_while_a_session_opens_leaves_nothing_open() -> None:
    engine = FakeEngine()
    engine.open_gate = asyncio.Event()
    pool = WarmPool(engine, Isolation.CONTEXT, 1)
    async with pool:
        await asyncio.sleep(0.01)  # the refill waits inside open_session
    engine.open_gate.set()
    await asyncio.sleep(0.01)
    assert engine.open_sessions == set()


async def test_size_zero_opens_nothing() -> None:
    engine = FakeEngine()
    async with WarmPool(engine, Isolation.CONTEXT, 0) as pool:
        await asyncio.sleep(0.02)
        assert pool.take(SPEC) is None
    assert engine.all_sessions == []


class FailingEngine(FakeEngine):
    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.attempts = 0

    async def open_session(self, *args: object, **kwargs: object) -> FakeSession:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise RuntimeError("the browser did not start")
        return await super().open_session(*args, **kwargs)  # type: ignore[arg-type]
