"""Recycling shared browsers, on real browsers: after N sessions, and above a memory bound.

A retired browser takes no new session, keeps serving the leases it already has, and is closed
(its process gone) once the last of them ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from browserbroker import AsyncLease, Engine, steps
from browserbroker.v1 import broker_pb2 as pb
from tests.conftest import BrokerFactory
from tests.integration.test_engines import ENGINES, SDK_ENGINE, engine_of, gone, start
from tests.support import InProcessBroker, eventually

pytestmark = pytest.mark.browser


async def engine_status(running: InProcessBroker, engine: str) -> pb.EngineStatus:
    status = await running.client.status()
    [found] = [e for e in status.engines if e.engine == SDK_ENGINE[engine].value]
    return found


async def until(condition: Callable[[], Awaitable[bool]], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def browsers_settle(
    running: InProcessBroker, engine: str, want: tuple[int, int, int], timeout_s: float = 10.0
) -> None:
    """Until the status reports `want` as (retiring, recycled, browsers). Its browser count comes
    from a process walk reused for up to 0.5 s, and a closed browser leaves the engine's records
    when Playwright reports its disconnect, which can come after its process is gone: right after
    a browser exits, the status may still count it."""
    seen: tuple[int, int, int] | None = None
    deadline = time.monotonic() + timeout_s
    while seen != want:
        assert seen is None or time.monotonic() < deadline, f"status {seen}, expected {want}"
        status = await engine_status(running, engine)
        seen = (status.browsers_retiring, status.browsers_recycled, status.browsers)
        await asyncio.sleep(0.05)


async def mark(lease: AsyncLease, value: str) -> None:
    """Leave state in the lease's page, to show later that nothing replaced it."""
    (await lease.run(steps.evaluate(f"window.mark = {value!r}"), timeout=10)).raise_for_failure()


async def read_mark(lease: AsyncLease) -> object:
    result = (await lease.run(steps.evaluate("window.mark"), timeout=10)).raise_for_failure()
    return result[0].value


@ENGINES
async def test_recycles_after_n_sessions_without_disturbing_leases(
    broker_factory: BrokerFactory, engine: str
) -> None:
    running = await start(broker_factory, engine, recycle_after_leases=3)
    pw_engine = engine_of(running, engine)
    sdk_engine: Engine = SDK_ENGINE[engine]

    first = [await running.client.acquire(engine=sdk_engine, ttl=300) for _ in range(3)]
    old_pids = set(pw_engine.census().browser_pids)
    assert len(old_pids) == 1
    for index, lease in enumerate(first):
        await mark(lease, f"old-{index}")
    status = await engine_status(running, engine)
    assert status.browsers_retiring == 1, "the third session should retire its browser"

    # The next lease goes to a fresh browser; the retired one keeps its three leases.
    fresh = await running.client.acquire(engine=sdk_engine, ttl=300)
    new_pids = set(pw_engine.census().browser_pids) - old_pids
    assert len(new_pids) == 1
    await first[0].release()
    await first[1].release()
    assert await read_mark(first[2]) == "old-2", "a lease on a retiring browser was disturbed"
    assert old_pids <= set(pw_engine.census().browser_pids), "closed before its last lease ended"

    await first[2].release()
    assert await gone(old_pids), f"the retired browser outlived its last lease: {old_pids}"
    await browsers_settle(running, engine, (0, 1, 1))
    await mark(fresh, "new")
    assert await read_mark(fresh) == "new"
    await fresh.release()
    await running.check_no_leftovers()


async def test_warm_pool_moves_off_a_retired_browser(broker_factory: BrokerFactory) -> None:
    """Ready pool sessions would keep a retired browser alive: the pool gives them up."""
    running = await start(broker_factory, "chromium", warm_pool_size=2, recycle_after_leases=4)
    pw_engine = engine_of(running, "chromium")
    await eventually(lambda: running.broker.warm_pool_size == 2, timeout_s=30)
    launched: set[int] = set(pw_engine.census().browser_pids)
    for _ in range(7):
        lease = await running.client.acquire(ttl=60)
        await lease.run(steps.evaluate("1"), timeout=10)
        await lease.release()
        launched |= set(pw_engine.census().browser_pids)

    async def settled() -> bool:
        status = await engine_status(running, "chromium")
        return (
            running.broker.warm_pool_size == 2
            and status.browsers == 1
            and status.browsers_retiring == 0
        )

    await until(settled)
    status = await engine_status(running, "chromium")
    # 2 pooled + 7 leased sessions = 9 opened at 4 per browser: at least two were recycled.
    assert status.browsers_recycled >= 2
    current = set(pw_engine.census().browser_pids)
    assert await gone(launched - current)
    await running.check_no_leftovers()


async def test_recycles_above_memory_bound(broker_factory: BrokerFactory) -> None:
    # 1 MiB: any real browser is above it, so the first check retires the shared browser.
    running = await start(
        broker_factory, "chromium", recycle_above_mb=1, recycle_check_interval_s=0.2
    )
    pw_engine = engine_of(running, "chromium")
    held = await running.client.acquire(ttl=300)
    await mark(held, "kept")
    old_pids = set(pw_engine.census().browser_pids)

    async def retired() -> bool:
        return (await engine_status(running, "chromium")).browsers_retiring == 1

    await until(retired)
    assert await read_mark(held) == "kept", "the memory bound disturbed an active lease"
    other = await running.client.acquire(ttl=300)
    assert set(pw_engine.census().browser_pids) - old_pids, "no fresh browser was launched"
    await held.release()
    assert await gone(old_pids), f"the retired browser outlived its lease: {old_pids}"
    assert (await engine_status(running, "chromium")).browsers_recycled >= 1
    await other.release()
    await running.check_no_leftovers()
