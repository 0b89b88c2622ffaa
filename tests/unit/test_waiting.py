"""Bounded waits give up on work that never acknowledges its cancellation."""

from __future__ import annotations

import asyncio

import pytest

from broker.waiting import bounded


async def _stubborn(acknowledge: asyncio.Event, started: asyncio.Event | None = None) -> None:
    """Like a Playwright call on a dead browser: cancelled, it waits for an answer that never
    comes (until the test lets it go)."""
    if started is not None:
        started.set()
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        await acknowledge.wait()
        raise


async def test_a_timeout_does_not_wait_for_the_cancellation_to_be_acknowledged() -> None:
    acknowledge = asyncio.Event()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(bounded(_stubborn(acknowledge), 0.01), timeout=5)
    acknowledge.set()  # the abandoned work may still finish later, quietly
    await asyncio.sleep(0)


async def test_cancelling_the_waiter_does_not_wait_either() -> None:
    acknowledge, started = asyncio.Event(), asyncio.Event()
    waiter = asyncio.create_task(bounded(_stubborn(acknowledge, started), 60))
    await started.wait()
    waiter.cancel()
    done, _ = await asyncio.wait({waiter}, timeout=5)
    assert done and waiter.cancelled()
    acknowledge.set()
    await asyncio.sleep(0)


async def test_results_and_errors_pass_through() -> None:
    async def value() -> int:
        return 7

    async def failing() -> None:
        raise ValueError("boom")

    assert await bounded(value(), 1) == 7
    with pytest.raises(ValueError, match="boom"):
        await bounded(failing(), 1)
