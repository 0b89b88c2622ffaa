"""A lease's life on real Chromium, through the Python SDK, against a local fixture site."""

from __future__ import annotations

import asyncio

import pytest

from browserbroker import (
    DeadlineExceededError,
    LeaseEndedError,
    OnCancel,
    steps,
)
from tests.conftest import BrokerFactory
from tests.fixture_site import FixtureSite
from tests.support import InProcessBroker

pytestmark = pytest.mark.browser


async def test_full_cycle_navigate_click_fill_evaluate_text_screenshot(
    chromium_broker: InProcessBroker, fixture_server: FixtureSite
) -> None:
    client = chromium_broker.client
    async with client.lease(ttl=60) as lease:
        result = await lease.run(
            steps.goto(fixture_server.url("form.html")),
            steps.fill("#name", "Ada"),
            steps.click("#go"),
            steps.text("#out"),
            steps.evaluate("document.title"),
            steps.attribute("#link", "data-kind"),
            steps.screenshot(),
            steps.pdf(),
            timeout=30,
        )
        result.raise_for_failure()
        assert result[0].http_status == 200
        assert result[3].text == "Hello, Ada"
        assert result[4].value == "Fixture form"
        assert result[5].found and result[5].text == "internal"
        assert result[6].data.startswith(b"\x89PNG")
        assert result[7].data.startswith(b"%PDF")
    outcome = await lease.release()  # already released by the context leases
    assert not outcome.released_now and outcome.reason == "client_release"


async def test_failed_step_reports_which_and_why(
    chromium_broker: InProcessBroker, fixture_server: FixtureSite
) -> None:
    async with chromium_broker.client.lease() as lease:
        result = await lease.run(
            steps.goto(fixture_server.url("form.html")),
            steps.click("#missing", timeout_s=1),
            steps.text("h1"),
            timeout=30,
        )
        assert len(result) == 2 and not result.ok
        assert result[1].index == 1 and result[1].error_kind == "timeout"
        assert "click" in result[1].error_message or "1.000s" in result[1].error_message
        script = await lease.run(steps.evaluate("null.boom"), timeout=10)
        assert script[0].error_kind == "script_error"
        both = await lease.run(
            steps.evaluate("nope()"), steps.evaluate("1 + 1"), continue_on_error=True, timeout=10
        )
        assert [r.ok for r in both] == [False, True] and both[1].value == 2


async def test_two_runs_on_one_lease_take_turns(
    chromium_broker: InProcessBroker, fixture_server: FixtureSite
) -> None:
    async with chromium_broker.client.lease() as lease:
        await lease.run(steps.goto(fixture_server.url("form.html")), timeout=30)
        slow = (
            "new Promise(r => { window.order = (window.order || '') + 'a'; setTimeout(r, 500); })"
        )
        first = asyncio.create_task(
            lease.run(steps.evaluate(slow), steps.evaluate("window.order += 'A'"), timeout=30)
        )
        await asyncio.sleep(0.1)
        second = asyncio.create_task(lease.run(steps.evaluate("window.order += 'b'"), timeout=30))
        await asyncio.gather(first, second)
        order = await lease.run(steps.evaluate("window.order"), timeout=10)
        assert order[0].value == "aAb"  # the second Run waited for the whole first one


async def test_capacity_queue_serves_waiter_when_a_lease_ends(
    broker_factory: BrokerFactory,
) -> None:
    running = await broker_factory(capacity=1)
    client = running.client
    held = await client.acquire()
    waiter = asyncio.create_task(client.acquire(timeout=30))
    for _ in range(100):
        if (await client.status()).queued == 1:
            break
        await asyncio.sleep(0.05)
    assert (await client.status()).queued == 1
    with pytest.raises(DeadlineExceededError):
        await client.acquire(timeout=0.5)  # a second waiter leaves on its deadline
    await held.release()
    served = await waiter
    assert served.grant.queue_wait_s > 0
    status = await client.status()
    assert status.active_leases == 1 and status.queued == 0
    await served.release()


async def test_ttl_and_idle_expiry_release_the_lease(broker_factory: BrokerFactory) -> None:
    running = await broker_factory(ttl_jitter_fraction=0.0)
    client = running.client
    ttl_lease = await client.acquire(ttl=1, idle_timeout=60)
    idle_lease = await client.acquire(ttl=60, idle_timeout=1)
    await asyncio.sleep(1.5)
    with pytest.raises(LeaseEndedError) as ended:
        await ttl_lease.run(steps.evaluate("1"), timeout=5)
    assert ended.value.reason == "ttl_expired"
    assert (await idle_lease.release()).reason == "idle_timeout"
    assert (await ttl_lease.release()).reason == "ttl_expired"


async def test_keep_alive_extends_the_lease(broker_factory: BrokerFactory) -> None:
    running = await broker_factory(ttl_jitter_fraction=0.0)
    lease = await running.client.acquire(ttl=1)
    before = lease.expires_at
    for _ in range(3):
        await asyncio.sleep(0.5)
        await lease.keep_alive(ttl=1)
    assert lease.expires_at > before
    result = await lease.run(steps.evaluate("40 + 2"), timeout=5)
    assert result[0].value == 42
    outcome = await lease.release()
    assert outcome.released_now and outcome.reason == "client_release"


async def test_deadline_on_run_keeps_lease_with_fresh_page(
    chromium_broker: InProcessBroker, fixture_server: FixtureSite
) -> None:
    async with chromium_broker.client.lease() as lease:
        with pytest.raises(DeadlineExceededError):
            await lease.run(steps.goto(fixture_server.url("slow?seconds=20")), timeout=1)
        again = await lease.run(steps.evaluate("1 + 1"), timeout=10)
        assert again[0].value == 2


async def test_deadline_with_release_policy_ends_the_lease(
    chromium_broker: InProcessBroker, fixture_server: FixtureSite
) -> None:
    lease = await chromium_broker.client.acquire()
    with pytest.raises(DeadlineExceededError):
        await lease.run(
            steps.goto(fixture_server.url("slow?seconds=20")),
            timeout=1,
            on_cancel=OnCancel.RELEASE_LEASE,
        )
    outcome = await lease.release()
    assert not outcome.released_now and outcome.reason == "run_cancelled"
