"""What keeps the broker's own CPU per lease cycle down (docs/benchmarks.md, "Profile").

Each test guards a mechanism, never a timing: bench.cpu measures the figures.
"""

from __future__ import annotations

import asyncio
import inspect
import traceback
from pathlib import Path
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
    already = asyncio.ensure_future(asyncio.sleep(60))  # started before the driver's loop setup
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
        already.cancel()
    assert stack is CALL_STACK and nested is CALL_STACK
    assert getattr(already, "__pw_stack_trace__", None) is CALL_STACK
    assert not walked
    assert made.count("earlier") >= 2
    assert "".join(CALL_STACK.format())  # a failed call's error still has a (short) stack


def test_bench_cpu_shares_add_up(tmp_path: Path) -> None:
    """bench.cpu's tables: a py-spy sample counts once, for its innermost named part; a cProfile
    C function's time goes to its caller's part."""
    import cProfile
    import json
    import time

    from bench.cpu import cpu_table, profile_table

    frames = [
        {"name": "main", "file": "/x/broker/daemon/cli.py"},
        {"name": "_run", "file": "/py/asyncio/events.py"},
        {"name": "_handle", "file": "/x/broker/egress/proxy.py"},
        {"name": "next_event", "file": "/venv/site-packages/h11/_connection.py"},
    ]
    samples = [[0, 1, 2, 3], [0, 1, 2], [0, 1], [0, 1, 2, 1]]
    spy = tmp_path / "spy.json"
    spy.write_text(json.dumps({"shared": {"frames": frames}, "profiles": [{"samples": samples}]}))
    table = profile_table(spy)
    assert "| h11 (HTTP framing) | 25% | 25% |" in table
    assert "| egress route (broker/egress) | 50% | 75% |" in table
    assert "| event loop, C callbacks (gRPC's Cython) | 25% | 100% |" in table

    profile = cProfile.Profile(time.process_time)
    profile.runcall(lambda: sorted(range(200_000), key=lambda n: -n))
    stats = tmp_path / "cpu.pstats"
    profile.dump_stats(stats)
    lines = cpu_table(stats, 3).splitlines()
    rows = lines[4 : lines.index("", 4)]  # the first table: self CPU by part
    shares = {row.split(" | ")[0][2:]: float(row.split(" | ")[1].strip(" %|")) for row in rows}
    assert abs(sum(shares.values()) - 100.0) < 0.5
    assert shares["other (stdlib, C)"] > 90  # `sorted` (C) counts for its caller, this test
