"""The warm pool: sessions opened ahead of demand, so a warm Acquire is a table operation.

Refilled in the background, never on the caller's path. Serves leases that ask for its engine
and isolation with default context options; anything else opens a fresh session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from broker.cleanup import TaskSet
from broker.engines.base import Engine, LostCause, Session
from broker.lease import LeaseSpec
from broker.options import ContextOptions, Isolation

log = logging.getLogger("broker.pool")

MAX_BACKOFF_S = 30.0
# How often ready sessions are checked for a browser being recycled (they would keep it alive).
SWEEP_INTERVAL_S = 1.0


class WarmPool:
    def __init__(
        self,
        engine: Engine,
        isolation: Isolation,
        size: int,
        first_backoff_s: float = 0.5,
        open_timeout_s: float = 60.0,
    ) -> None:
        self.engine = engine
        self.isolation = isolation
        self.size = size
        self._first_backoff_s = first_backoff_s
        self._open_timeout_s = open_timeout_s  # a refill never waits on a browser for ever
        self._ready: deque[Session] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.filled = asyncio.Event()
        self._closers = TaskSet()

    def sessions(self) -> list[Session]:
        return list(self._ready)

    def __len__(self) -> int:
        return len(self._ready)

    def take(self, spec: LeaseSpec) -> Session | None:
        """A ready session for `spec`, or None; never waits."""
        if spec.engine is not self.engine.name or spec.isolation is not self.isolation:
            return None
        if not spec.context.is_default or spec.camoufox is not None:
            return None  # a pooled session was opened with default options
        while self._ready:
            session = self._ready.popleft()
            self._wake.set()
            if session.alive and not session.retiring:
                session.set_lost_callback(None)
                return session
            self._close_later(session)
        return None

    async def __aenter__(self) -> WarmPool:
        if self.size > 0:
            self._task = asyncio.get_running_loop().create_task(self._refill_forever())
            self._wake.set()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while self._ready:
            session = self._ready.popleft()
            with contextlib.suppress(Exception):
                await session.close()
        await self._closers.wait()

    def _on_lost(self, session: Session, cause: LostCause) -> None:
        with contextlib.suppress(ValueError):
            self._ready.remove(session)
        self._wake.set()
        self._close_later(session)

    def _close_later(self, session: Session) -> None:
        session.set_lost_callback(None)
        self._closers.spawn(session.close())

    def _sweep_retiring(self) -> None:
        """Give up ready sessions whose browser is being recycled, and replace them."""
        for session in [s for s in self._ready if s.retiring]:
            self._ready.remove(session)
            self._close_later(session)

    async def _refill_forever(self) -> None:
        backoff = self._first_backoff_s
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SWEEP_INTERVAL_S):
                    await self._wake.wait()
            self._wake.clear()
            self._sweep_retiring()
            while len(self._ready) < self.size and not self._closed:
                try:
                    async with asyncio.timeout(self._open_timeout_s):
                        session = await self.engine.open_session(self.isolation, ContextOptions())
                except Exception as exc:
                    log.warning("warm pool refill failed; retrying in %.1fs: %s", backoff, exc)
                    await asyncio.sleep(backoff)
                    backoff = min(MAX_BACKOFF_S, backoff * 2)
                    continue
                backoff = self._first_backoff_s
                if self._closed:
                    await session.close()
                    return
                session.set_lost_callback(self._on_lost)
                self._ready.append(session)
            if len(self._ready) >= self.size:
                self.filled.set()
