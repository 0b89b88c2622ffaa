"""Closing the sessions of ended leases, in the background, each exactly once.

A closing session still holds its share of the browser's memory, so the lease table counts it
against capacity until `on_closed` reports it gone: Release answers at once, and capacity is
never over-committed while contexts close.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from broker.common.cleanup import TaskSet, bounded
from broker.engines.base import Session

log = logging.getLogger("broker.leases")


class SessionCloser:
    def __init__(self, tasks: TaskSet, timeout_s: float, on_closed: Callable[[], None]) -> None:
        self._tasks = tasks
        self._timeout_s = timeout_s
        self._on_closed = on_closed
        self._closing: dict[Session, asyncio.Task[None]] = {}
        self._by_lease: dict[str, asyncio.Task[None]] = {}

    def __len__(self) -> int:
        return len(self._closing)

    def sessions(self) -> set[Session]:
        return set(self._closing)

    def close(self, session: Session, lease_id: str | None = None) -> asyncio.Task[None]:
        """Start closing `session` (once: a second call returns the first call's task)."""
        task = self._closing.get(session)
        if task is None:
            task = self._tasks.spawn(self._close(session))
            self._closing[session] = task
        if lease_id is not None and not task.done():
            self._by_lease[lease_id] = task
            task.add_done_callback(lambda _: self._by_lease.pop(lease_id, None))
        return task

    async def wait(self, lease_id: str) -> None:
        """Wait until the session of lease `lease_id` is closed, if it is closing (bounded by
        the close's timeout)."""
        task = self._by_lease.get(lease_id)
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
