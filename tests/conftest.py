"""Shared fixtures: the local fixture site, brokers with real browsers, and the leftover check."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from tests.fixture_site import FixtureSite
from tests.support import BrokerProcess, InProcessBroker, in_process_browsers, start_in_process

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(condition: bool, reason: str) -> None:
    """Skip when a tool is missing, except in CI, where a missing tool is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def fixture_server() -> Iterator[FixtureSite]:
    site = FixtureSite().start()
    yield site
    site.stop()


BrokerFactory = Callable[..., Awaitable[InProcessBroker]]


@pytest.fixture
async def broker_factory() -> AsyncIterator[BrokerFactory]:
    """Start in-process brokers; after the test, check nothing is left, shut down, check again."""
    started: list[InProcessBroker] = []

    async def start(**overrides: object) -> InProcessBroker:
        running = await start_in_process(**overrides)
        started.append(running)
        return running

    yield start
    errors: list[str] = []
    for running in started:
        if not running.task.done() and not running.allow_leases_at_teardown:
            try:
                await running.check_no_leftovers()
            except AssertionError as exc:
                errors.append(str(exc))
        await running.shutdown()
    leftover = in_process_browsers()
    for proc in leftover:
        proc.kill()
    assert not errors, errors
    assert not leftover, f"browser processes outlived the broker: {[p.pid for p in leftover]}"


@pytest.fixture
async def chromium_broker(broker_factory: BrokerFactory) -> InProcessBroker:
    return await broker_factory()


@pytest.fixture(scope="session")
def live_broker() -> Iterator[BrokerProcess]:
    """`browser-broker serve` as a subprocess with real Chromium, shared by a test session."""
    process = BrokerProcess().start()
    yield process
    process.stop()
    assert not [p for p in process.browsers() if p.is_running()]
