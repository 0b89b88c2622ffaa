"""What the broker is waiting on: every asyncio task with its chain of awaits.

`kill -USR1 <broker pid>` logs it, for when a shutdown or a call does not finish.
"""

from __future__ import annotations

import asyncio
import logging
from types import CoroutineType, FrameType
from typing import Any

log = logging.getLogger("broker.diagnostics")


def _frame_of(awaitable: Any) -> FrameType | None:
    frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "ag_frame", None)
    return frame if isinstance(frame, FrameType) else None


def await_chain(task: asyncio.Task[Any]) -> list[str]:
    """`file:line function` for each coroutine the task is suspended in, outermost first."""
    chain: list[str] = []
    awaitable: Any = task.get_coro()
    while awaitable is not None and len(chain) < 64:
        frame = _frame_of(awaitable)
        if frame is not None:
            code = frame.f_code
            chain.append(f"{code.co_filename}:{frame.f_lineno} {code.co_name}")
        awaitable = getattr(awaitable, "cr_await", None) or getattr(awaitable, "ag_await", None)
        if not isinstance(awaitable, CoroutineType) and _frame_of(awaitable) is None:
            break  # a future: the task's repr says which
    return chain


def log_tasks() -> None:
    tasks = asyncio.all_tasks()
    lines = [f"{len(tasks)} tasks"]
    for task in sorted(tasks, key=lambda t: t.get_name()):
        lines.append(f"{task!r:.400}")
        lines += [f"    {entry}" for entry in await_chain(task)]
    log.warning("task dump", extra={"tasks": "\n".join(lines)})
