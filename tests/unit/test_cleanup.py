"""Cleanup waits are bounded, survive the caller's cancellation, and own their tasks."""

from __future__ import annotations

import asyncio

import pytest

from broker.common.cleanup import TaskSet, await_shielded, bounded


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


async def test_a_shielded_wait_outlives_the_callers_cancellation() -> None:
    release, finished = asyncio.Event(), asyncio.Event()

    async def cleanup() -> None:
        await release.wait()
        finished.set()

    work = asyncio.ensure_future(cleanup())
    waiter = asyncio.create_task(await_shielded(work, 60))
    await asyncio.sleep(0)
    waiter.cancel()  # the caller gives up; the cleanup must still run to its end
    await asyncio.sleep(0)
    assert not waiter.done()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await waiter  # the caller's cancellation is delivered once the cleanup is done
    assert finished.is_set()


async def test_a_shielded_wait_that_overruns_its_bound_stops_the_work() -> None:
    """Cleanup that overran must not go on touching the browser after its caller moved on."""
    started = asyncio.Event()

    async def endless() -> None:
        started.set()
        await asyncio.Event().wait()

    work = asyncio.ensure_future(endless())
    await asyncio.wait_for(await_shielded(work, 0.01), timeout=5)
    await asyncio.sleep(0)
    assert started.is_set() and work.cancelled()


async def test_a_failed_cleanup_is_reported_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def failing() -> None:
        raise RuntimeError("context already closed")

    await await_shielded(asyncio.ensure_future(failing()), 1)
    assert "context already closed" in caplog.text


async def test_a_task_set_waits_for_tasks_started_while_it_waits() -> None:
    tasks = TaskSet()
    order: list[str] = []

    async def second() -> None:
        order.append("second")

    async def first() -> None:
        await asyncio.sleep(0)
        tasks.spawn(second())
        order.append("first")

    tasks.spawn(first())
    assert len(tasks) == 1
    await tasks.wait()
    assert order == ["first", "second"] and len(tasks) == 0


async def test_a_task_set_cancels_what_it_owns() -> None:
    tasks = TaskSet()
    never = tasks.spawn(asyncio.Event().wait())
    await asyncio.sleep(0)
    await tasks.cancel()
    assert never.cancelled() and len(tasks) == 0
