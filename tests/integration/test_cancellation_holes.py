"""The holes a deadline or cancel could fall through, each seen from the browser (the page stops
pinging the fixture site) or from the lease table."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from playwright.async_api import Error as PlaywrightError

from broker.engines.playwright.engine import PlaywrightEngine
from broker.engines.playwright.session import PlaywrightSession
from broker.model.options import EngineName
from browserbroker import DeadlineExceededError, Engine, steps
from browserbroker.v1 import broker_pb2 as pb
from tests.conftest import BrokerFactory
from tests.fixture_site import FixtureSite
from tests.support import STOP_BOUND_S, eventually, last_ping_after, unhold_routes, work_for
from tests.support import STOP_DEADLINE_S as DEADLINE_S

pytestmark = pytest.mark.browser


async def test_a_cancel_while_a_result_is_being_written_stops_the_browser_work(
    broker_factory: BrokerFactory, fixture_server: FixtureSite
) -> None:
    """A caller that stops reading (a large result waits on flow control, and the Run waits for
    its reader while the page keeps working) and then cancels: the stream ends while a write is
    pending, and the work must still stop in the browser."""
    running = await broker_factory()
    lease = await running.client.acquire(ttl=120)
    ping_id = uuid.uuid4().hex
    request = pb.RunRequest(
        lease_id=lease.id,
        token=lease.grant.token,
        steps=[
            steps.goto(fixture_server.url(f"ping-loop.html?id={ping_id}")),  # pings on a timer
            # 6 x 3 MB: more than the stream's flow-control window and the Run's result buffer
            *[steps.evaluate("'x'.repeat(3 * 1024 * 1024)")] * 6,
            steps.evaluate("new Promise(() => {})"),
        ],
    )
    call = running.client.stub.Run(request, timeout=60)  # read nothing: a slow reader
    await eventually(lambda: bool(fixture_server.pings.times(ping_id)))
    cancelled_at = time.monotonic()
    call.cancel()
    last = await asyncio.wait_for(last_ping_after(fixture_server, ping_id), 30)
    assert last - cancelled_at < STOP_BOUND_S, f"pings went on {last - cancelled_at:.2f}s"
    (held,) = running.broker.leases.active_leases()
    await eventually(lambda: held.runs_in_flight == 0)  # the run lock is free again
    assert (await lease.run(steps.evaluate("1 + 1"), timeout=30))[0].value == 2
    await lease.release()


@pytest.mark.parametrize("engine", [Engine.CHROMIUM, Engine.FIREFOX])
async def test_a_step_that_times_out_leaves_the_browser_quiet(
    broker_factory: BrokerFactory, fixture_server: FixtureSite, engine: Engine
) -> None:
    """A step timeout (not the Run's deadline) inside a long Run: the script it started must
    not go on spinning under the next step or Run."""
    running = await broker_factory(engines=[EngineName.CHROMIUM, EngineName.FIREFOX])
    async with running.client.lease(engine=engine) as lease:
        ping_id = uuid.uuid4().hex
        results = []
        timed_out_at = 0.0
        async for result in lease.stream(
            steps.goto(fixture_server.url(f"ping-script.html?id={ping_id}")),
            steps.evaluate("spin()", timeout_s=1),
            steps.evaluate("1 + 1"),
            continue_on_error=True,
            timeout=60,
        ):
            results.append(result)
            if result.index == 1:
                timed_out_at = time.monotonic()
        assert results[1].error_kind == "timeout", results[1]
        assert "reset" in results[1].error_message
        assert results[2].value == 2  # the next step found a quiet, working page
        last = await asyncio.wait_for(last_ping_after(fixture_server, ping_id), 30)
        assert last - timed_out_at < STOP_BOUND_S, f"pings went on {last - timed_out_at:.2f}s"
        again = await lease.run(steps.evaluate("document.readyState"), timeout=10)
        assert again.ok


async def test_a_context_that_would_not_close_stays_tracked_until_it_is_gone(
    broker_factory: BrokerFactory,
) -> None:
    running = await broker_factory()
    engine = running.broker.engines[EngineName.CHROMIUM]
    assert isinstance(engine, PlaywrightEngine)
    lease = await running.client.acquire(ttl=60)
    (held,) = running.broker.leases.active_leases()
    session = held.session
    assert isinstance(session, PlaywrightSession)
    real_close = session.context.close

    async def refuse(*args: object, **kwargs: object) -> None:
        raise PlaywrightError("Target page, context or browser has been closed")

    session.context.close = refuse  # type: ignore[method-assign]
    assert (await lease.release()).released_now  # the lease ends whatever the browser does
    await running.broker.leases.wait_all_closed()  # the close, tried in the background, failed
    census = engine.census()
    assert census.unclosed == 1 and census.contexts == 1  # still open, and still counted
    assert await running.broker.reconciler.reclose() == 1  # tried again: still refusing
    session.context.close = real_close  # type: ignore[method-assign]
    assert await running.broker.reconciler.reclose() == 0
    census = engine.census()
    assert census.unclosed == 0 and census.contexts == 0


# Without an interrupter, Chromium waits about half a second for a busy renderer before closing
# its page; with one, a never-yielding script stops in tens of milliseconds. This bound sits
# between the two with room for a loaded machine.
SCRIPT_STOP_BOUND_S = 0.35


@pytest.mark.parametrize("kind", ["slow_script", "page_script", "iframe_script"])
async def test_a_script_that_never_yields_stops_promptly_on_chromium(
    broker_factory: BrokerFactory,
    fixture_server: FixtureSite,
    kind: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Measured from the pages' send times with the route forwarding throughout: the script
    itself stops, whoever started it (the route's hold would hide a slow stop)."""
    unhold_routes(monkeypatch)
    running = await broker_factory()
    lease = await running.client.acquire()
    latencies = []
    for _ in range(3):
        ping_id = uuid.uuid4().hex
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError):
            await lease.run(*work_for(kind, fixture_server, ping_id), timeout=DEADLINE_S)
        assert fixture_server.pings.times(ping_id), "the page never pinged"
        last = await asyncio.wait_for(last_ping_after(fixture_server, ping_id, 0.7, sent=True), 30)
        latencies.append(last - (started + DEADLINE_S))
    assert sorted(latencies)[1] < SCRIPT_STOP_BOUND_S, latencies  # the median of three
    await lease.release()
