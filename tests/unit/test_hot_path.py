"""What keeps the broker's own CPU per lease cycle down (docs/benchmarks.md, "Profile").

Each test guards a mechanism, never a timing: bench.cpu measures the figures.
"""

from __future__ import annotations

import asyncio
import inspect
import traceback
from typing import Any

import pytest
from playwright._impl import _connection

from broker.engines.playwright.driver import CALL_STACK, skip_call_stacks


def test_playwright_still_takes_a_stack_the_task_carries() -> None:
    """The saving rests on Playwright's client using a stack its caller's task carries instead
    of extracting one per message; a Playwright that stops doing so would quietly lose it."""
    source = inspect.getsource(_connection.Connection._send_message_to_server)
    assert 'getattr(task, "__pw_stack_trace__", None)' in source
    assert "traceback.extract_stack" in source


async def test_every_task_carries_a_call_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the driver's loop is set up, every task on it (a gRPC handler's, a refill's, one a
    step starts) carries the fixed stack, so Playwright never walks the caller's frames."""
    loop = asyncio.get_running_loop()
    previous = loop.get_task_factory()
    made: list[str] = []

    def earlier(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        made.append("earlier")  # a factory that was there before still makes the task
        return asyncio.Task(coro, loop=loop, **kwargs)

    walked: list[int] = []

    def extract_stack(*args: object, **kwargs: object) -> traceback.StackSummary:
        walked.append(1)
        return traceback.StackSummary()

    monkeypatch.setattr(traceback, "extract_stack", extract_stack)
    loop.set_task_factory(earlier)
    try:
        skip_call_stacks(loop)
        skip_call_stacks(loop)  # idempotent: one factory, not a chain of them

        async def work() -> object:
            task = asyncio.current_task()
            # Playwright's own expression (Connection._send_message_to_server):
            return getattr(task, "__pw_stack_trace__", None) or traceback.extract_stack(limit=10)

        stack = await asyncio.create_task(work(), name="step")
        nested = await asyncio.ensure_future(asyncio.wait_for(work(), 5))
    finally:
        loop.set_task_factory(previous)
    assert stack is CALL_STACK and nested is CALL_STACK
    assert not walked
    assert made.count("earlier") >= 2
    assert "".join(CALL_STACK.format())  # a failed call's error still has a (short) stack
