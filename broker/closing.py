"""Closing the sessions of ended leases, in the background, each exactly once.

A closing session still holds its share of the browser's memory, so the lease table counts it
against capacity until `on_closed` reports it gone: Release answers at once, and capacity is
never over-committed while contexts close.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from broker.cleanup import TaskSet, bounded
from broker.engines.base import Session

log = logging.getLogger("broker.leases")


class SessionCloser:
    def __init__(self, tasks: TaskSet, timeout_s: float, on_closed: Callable[[], None]) -> None:
        self._tasks = tasks
        self._timeout_s = timeout_s
        self._on_closed = on_closed
        self._closing: dict[Session, asyncio.Task[None]] = {}

    def __len__(self) -> int:
        return len(self._closing)

    def sessions(self) -> set[Session]:
        return set(self._closing)

    def close(self, session: Session) -> asyncio.Task[None]:
        """Start closing `session` (once: a second call returns the first call's task)."""
        if session in self._closing:
            return self._closing[session]
        task = self._tasks.spawn(self._close(session))
        self._closing[session] = task
        return task

    async def wait(self, session: Session | None) -> None:
        """Wait until `session` is closed, if it is closing (bounded by the close's timeout)."""
        task = self._closing.get(session) if session is not None else None
        if task is not None:
            await asyncio.shield(task)

    async def _close(self, session: Session) -> None:
        try:
            await bounded(session.close(), self._timeout_s)
        except Exception:
            # Counted as closed anyway: the engine escalates and the reconciler double-checks.
            log.exception("closing a released session failed")
        finally:
            self._closing.pop(session, None)
            self._on_closed()
