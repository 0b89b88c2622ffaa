"""The task dump names where each task is waiting."""

from __future__ import annotations

import asyncio

import pytest

from broker.daemon import diagnostics


async def _inner(gate: asyncio.Event) -> None:
    await gate.wait()


async def _outer(gate: asyncio.Event) -> None:
    await _inner(gate)


async def test_the_await_chain_runs_from_the_task_to_what_it_waits_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = asyncio.Event()
    task = asyncio.create_task(_outer(gate), name="stuck-task")
    await asyncio.sleep(0)
    chain = diagnostics.await_chain(task)
    assert [entry.rsplit(" ", 1)[-1] for entry in chain] == ["_outer", "_inner", "wait"]
    diagnostics.log_tasks()
    record = next(r for r in caplog.records if r.getMessage() == "task dump")
    dump: str = record.tasks  # type: ignore[attr-defined]
    assert "name='stuck-task'" in dump and "wait_for=<Future pending" in dump
    assert "test_diagnostics.py" in dump
    gate.set()
    await task
