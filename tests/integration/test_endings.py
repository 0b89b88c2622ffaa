"""Every way a lease can end, on real Chromium: each ends it exactly once, with the right reason."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time

import grpc
import psutil
import pytest
from playwright.async_api import BrowserContext, Page

from broker.engines.playwright.engine import PlaywrightEngine
from broker.leases.events import LeaseObserver
from broker.leases.lease import Lease, ReleaseOutcome
from browserbroker import (
    AsyncBrokerClient,
    LeaseEndedError,
    SessionCrashedError,
    UnavailableError,
    steps,
)
from tests.conftest import BrokerFactory
from tests.fixture_site import FixtureSite
from tests.support import BrokerProcess, InProcessBroker, alive, command_line, eventually

pytestmark = pytest.mark.browser


class Releases(LeaseObserver):
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def lease_released(self, lease: Lease, outcome: ReleaseOutcome) -> None:
        self.events.append((lease.id, outcome.reason.value))

    def of(self, lease_id: str) -> list[str]:
        return [reason for lid, reason in self.events if lid == lease_id]


async def start(factory: BrokerFactory, **overrides: object) -> tuple[InProcessBroker, Releases]:
    running = await factory(**overrides)
    releases = Releases()
    running.broker.observers.add(releases)
    return running, releases


def chromium_pids(running: InProcessBroker) -> list[int]:
    engine = running.broker.engines[next(iter(running.broker.engines))]
    return list(engine.census().browser_pids)


async def test_repeated_and_concurrent_release(broker_factory: BrokerFactory) -> None:
    running, releases = await start(broker_factory)
    lease = await running.client.acquire()
    outcomes = await asyncio.gather(*(lease.release() for _ in range(8)))
    assert sum(o.released_now for o in outcomes) == 1
    assert {(o.reason, o.released_at) for o in outcomes} == {
        (outcomes[0].reason, outcomes[0].released_at)
    }
    assert releases.of(lease.id) == ["client_release"]


async def test_expiry_while_run_in_flight(
    broker_factory: BrokerFactory, fixture_server: FixtureSite
) -> None:
    running, releases = await start(broker_factory, ttl_jitter_fraction=0.0)
    lease = await running.client.acquire(ttl=1)
    with pytest.raises(LeaseEndedError) as ended:
        await lease.run(steps.goto(fixture_server.url("slow?seconds=20")), timeout=20)
    assert ended.value.reason == "ttl_expired"
    assert releases.of(lease.id) == ["ttl_expired"]


def chromium_engine(running: InProcessBroker) -> PlaywrightEngine:
    engine = running.broker.engines[next(iter(running.broker.engines))]
    assert isinstance(engine, PlaywrightEngine)
    return engine


@pytest.mark.parametrize("killed", ["browser", "playwright_driver"])
async def test_engine_killed_mid_run_and_between_runs(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, killed: str
) -> None:
    """SIGKILL of the browser, or of Playwright's driver (every browser at once): the leases on
    it end as engine crashes, the Run in flight gets ABORTED, and new leases are served."""
    running, releases = await start(broker_factory, warm_pool_size=1)
    engine = chromium_engine(running)
    client = running.client
    busy = await client.acquire()
    idle = await client.acquire()
    run = asyncio.create_task(
        busy.run(steps.goto(fixture_server.url("slow?seconds=20")), timeout=30)
    )
    await asyncio.sleep(0.5)
    old_browsers = set(chromium_pids(running))
    assert len(old_browsers) == 1
    driver = engine.driver_pid
    assert driver is not None
    os.kill(driver if killed == "playwright_driver" else min(old_browsers), signal.SIGKILL)
    with pytest.raises(SessionCrashedError) as crashed:
        await run
    assert crashed.value.code is grpc.StatusCode.ABORTED
    assert crashed.value.metadata.get("lease_fate") == "released"
    with pytest.raises(LeaseEndedError) as ended:
        await idle.run(steps.evaluate("1"), timeout=5)
    assert ended.value.reason == "engine_crashed"
    assert releases.of(busy.id) == ["engine_crashed"] and releases.of(idle.id) == ["engine_crashed"]
    await eventually(lambda: not (set(chromium_pids(running)) & old_browsers), timeout_s=10)
    # The engine relaunches (with a new driver if it lost it) and the pool refills.
    async with client.lease() as fresh:
        result = await fresh.run(
            steps.goto(fixture_server.url("form.html")), steps.text("h1"), timeout=30
        )
        assert result[1].text == "Fixture"
    assert (engine.driver_pid == driver) is (killed == "browser")
    await eventually(lambda: running.broker.warm_pool_size == 1)
    assert len(chromium_pids(running)) == 1
    assert running.broker.reconciler.check().total == 0


async def test_browser_killed_while_a_session_opens_answers_the_acquire(
    broker_factory: BrokerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Playwright can leave a new_page call that was in flight on a killed browser unanswered
    for ever; the Acquire waiting on it must get an answer at once, not at its deadline.

    The kill lands at a different point of the session's opening each round (0 to 250 ms after
    new_page is called), since only part of that window leaves the call hanging.
    """
    running, releases = await start(broker_factory)
    client = running.client
    opening = asyncio.Event()
    original = BrowserContext.new_page

    async def new_page(self: BrowserContext) -> Page:
        opening.set()
        return await original(self)

    monkeypatch.setattr(BrowserContext, "new_page", new_page)
    hung = []
    for round_ in range(26):
        opening.clear()
        acquiring = asyncio.create_task(client.acquire(timeout=60))
        await opening.wait()
        await asyncio.sleep(0.01 * round_)
        for pid in chromium_pids(running):
            os.kill(pid, signal.SIGKILL)
        done, _ = await asyncio.wait({acquiring}, timeout=20)
        if not done:
            hung.append(round_)
            acquiring.cancel()
            continue
        error = acquiring.exception()
        if error is None:  # opened just before the kill: the crash then ends the lease
            lease = acquiring.result()
            lease_id = lease.id
            await eventually(lambda: bool(releases.of(lease_id)))  # noqa: B023 (awaited here)
            assert releases.of(lease_id) == ["engine_crashed"]
            await lease.release()
        else:
            assert isinstance(error, UnavailableError), error
        await running.check_no_leftovers()
    assert not hung, f"Acquire calls hung on a dead browser in rounds {hung}"
    monkeypatch.undo()
    async with client.lease() as fresh:  # and the engine recovers
        await fresh.run(steps.evaluate("1"), timeout=30)


async def test_driver_killed_while_a_session_opens_answers_unavailable(
    broker_factory: BrokerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    running, _ = await start(broker_factory)
    engine = chromium_engine(running)
    client = running.client
    original = BrowserContext.new_page

    async def new_page(self: BrowserContext) -> Page:
        call = asyncio.ensure_future(original(self))
        driver = engine.driver_pid
        assert driver is not None
        os.kill(driver, signal.SIGKILL)
        return await call

    monkeypatch.setattr(BrowserContext, "new_page", new_page)
    with pytest.raises(UnavailableError):
        await client.acquire(timeout=60)
    monkeypatch.undo()
    async with client.lease() as fresh:  # a new driver serves the next lease
        await fresh.run(steps.evaluate("1"), timeout=30)
    await running.check_no_leftovers()


async def test_renderer_crash_ends_the_lease(
    broker_factory: BrokerFactory, fixture_server: FixtureSite
) -> None:
    running, releases = await start(broker_factory)
    lease = await running.client.acquire()
    await lease.run(steps.goto(fixture_server.url("form.html")), timeout=10)
    pid = chromium_pids(running)[0]
    renderers = [
        p
        for p in psutil.Process(pid).children(recursive=True)
        if "--type=renderer" in command_line(p)
    ]
    assert renderers
    for renderer in renderers:
        with contextlib.suppress(psutil.NoSuchProcess):  # one that exited on its own
            renderer.kill()
    await eventually(lambda: bool(releases.of(lease.id)))
    assert releases.of(lease.id) == ["page_crashed"]
    with pytest.raises(LeaseEndedError) as ended:
        await lease.run(steps.evaluate("1"), timeout=5)
    assert ended.value.reason == "page_crashed"


async def test_shutdown_releases_every_lease_once(broker_factory: BrokerFactory) -> None:
    running, releases = await start(broker_factory)
    leases = [await running.client.acquire() for _ in range(3)]
    running.allow_leases_at_teardown = True
    await running.broker.shutdown(grace_s=0)
    assert [releases.of(lease.id) for lease in leases] == [["shutdown"]] * 3
    assert not chromium_pids(running)  # the browser went with the broker


def test_sigterm_drains_runs_then_exits_cleanly(fixture_server: FixtureSite) -> None:
    broker = BrokerProcess(args=["--shutdown-grace", "10"]).start()
    try:
        asyncio.run(_drain_scenario(broker, fixture_server))
        assert broker.wait(60) == 0, broker.log()
        assert not [p for p in broker.browsers() if p.is_running()]
    finally:
        broker.stop()


async def _drain_scenario(broker: BrokerProcess, site: FixtureSite) -> None:
    async with AsyncBrokerClient(broker.address) as client:
        lease = await client.acquire()
        idle_lease = await client.acquire()
        run = asyncio.create_task(
            lease.run(
                steps.evaluate("new Promise(r => setTimeout(() => r('done'), 1500))"), timeout=30
            )
        )
        await asyncio.sleep(0.3)
        broker.signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        with pytest.raises(UnavailableError):
            await client.acquire(timeout=5)
        result = await run  # finished within the grace period
        assert result[0].value == "done"
        outcome = await asyncio.wait_for(_released(idle_lease), 30)
        assert outcome == "shutdown"


async def _released(lease: object) -> str:
    while True:
        try:
            result = await lease.release()  # type: ignore[attr-defined]
        except UnavailableError:
            return "shutdown"  # the server has gone after draining: every lease was released
        if not result.released_now:
            return str(result.reason)
        await asyncio.sleep(0.1)


def test_sigkill_of_broker_leaves_no_browser_behind() -> None:
    broker = BrokerProcess(args=["--warm-pool-size", "2"]).start()
    try:
        deadline = time.monotonic() + 30
        while len(broker.browsers()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        orphans = broker.browsers()
        assert orphans, "the broker started no browser"
        broker.signal(signal.SIGKILL)
        broker.wait(10)
        deadline = time.monotonic() + 10
        while any(alive(p) for p in orphans):
            assert time.monotonic() < deadline, [p.pid for p in orphans if alive(p)]
            time.sleep(0.1)
    finally:
        broker.stop()
