"""A warm pool: sessions of one engine and isolation opened ahead of demand, so a warm Acquire is
a table operation.

Refilled in the background, never on the caller's path. Serves leases that ask for its engine and
isolation with the options its sessions were opened with (the defaults); anything else opens a
fresh session. Its target moves between a floor and a ceiling (`set_target`, see `demand.py`);
`admit` is asked before each open and `keep` before a freshly opened session joins the pool (the
broker's memory budget, and launches of one engine that put leases first, see `pools.py`).

A warm context session lives in its tenant's shared browser (tenants never share a browser
process), so a context pool serves one tenant: the operator, with authentication off. A warm
dedicated browser is nobody's until it is lent, so a browser pool serves every tenant.

An attachable pool (`attach` set) holds dedicated browsers an attached client can connect to, as
the engine opens them for a cold attachable lease of that protocol: over CDP, Chromium on its own
pipe and hub (`engines/playwright/attachable.py`); over Playwright's protocol, Chromium or Firefox
behind a launchServer of its own (`engines/playwright/served.py`); over WebDriver BiDi, an
attach-only stock Firefox (`engines/playwright/attachable_firefox.py`). Each is behind an egress
route of its own, whose rules are bound when it is lent. It serves only attachable leases of its
protocol; a plain pool never serves one. Either way a pooled session is lent once: its lease's end closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from broker.common.cleanup import TaskSet
from broker.engines.base import Engine, LostCause, Session
from broker.leases.lease import LeaseSpec
from broker.leases.tenants import OPERATOR
from broker.model.attach import AttachOptions, AttachProtocol
from broker.model.options import ContextOptions, EngineName, Isolation

log = logging.getLogger("broker.pool")

MAX_BACKOFF_S = 30.0
# How often ready sessions are checked for a browser being recycled or aged out (and the
# budget asked again while a refill waits for it).
SWEEP_INTERVAL_S = 1.0


@dataclass(frozen=True)
class PoolStatus:
    engine: EngineName
    isolation: Isolation
    target: int
    floor: int
    ceiling: int
    ready: int
    opening: int
    hits: int  # Acquires for the pool's pair served warm
    misses: int  # Acquires for the pool's pair that opened cold (none ready, or options differ)
    attach: AttachProtocol | None = None  # an attachable pool's protocol

    @property
    def name(self) -> str:
        return pool_name(self.engine, self.isolation, self.attach)


def pool_name(engine: EngineName, isolation: Isolation, attach: AttachProtocol | None) -> str:
    """chromium/browser, or chromium/browser+cdp for an attachable pool."""
    return f"{engine.value}/{isolation.value}" + (f"+{attach.value}" if attach else "")


class WarmPool:
    def __init__(
        self,
        engine: Engine,
        isolation: Isolation,
        size: int,
        first_backoff_s: float = 0.5,
        open_timeout_s: float = 60.0,
        *,
        ceiling: int | None = None,
        max_age_s: float = 0.0,
        launches: asyncio.Semaphore | None = None,
        admit: Callable[[WarmPool], bool] | None = None,
        keep: Callable[[WarmPool], bool] | None = None,
        quiet: Callable[[WarmPool], Awaitable[None]] | None = None,
        now: Callable[[], float] = time.monotonic,
        refill_delay_s: float = 0.0,
        tenant: str = OPERATOR.name,
        attach: AttachProtocol | None = None,
    ) -> None:
        self.engine = engine
        self.isolation = isolation
        self.attach = attach  # set: the pool's browsers are attachable (for leases of it only)
        # Whose shared browser a context pool's sessions open in, and who alone may have them.
        self.tenant = tenant
        self.floor = size
        self.ceiling = max(size, ceiling if ceiling is not None else size)
        self.target = size
        self.max_age_s = max_age_s  # 0: a ready session never ages out
        self.hits = 0
        self.misses = 0
        self.opening = 0
        self._first_backoff_s = first_backoff_s
        self._open_timeout_s = open_timeout_s  # a refill never waits on a browser for ever
        # Shared by the pools of one engine: how many warm opens it takes at once.
        self._launches = launches or asyncio.Semaphore(1)
        self._admit = admit  # asked before each open
        self._keep = keep  # asked before an opened session joins the pool
        self._quiet = quiet  # awaited before each open: lets the engine's lease work go first
        # A refill after a take starts this much later, so that the synchronous first steps of
        # a launch (a process walk) do not hold up the reply that lends the session.
        self._refill_delay_s = refill_delay_s
        self._now = now
        self._ready: deque[Session] = deque()
        self._born: dict[Session, float] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.filled = asyncio.Event()  # set while the pool holds its target; cleared on a take
        self._closers = TaskSet()

    @property
    def name(self) -> str:
        return pool_name(self.engine.name, self.isolation, self.attach)

    def sessions(self) -> list[Session]:
        return list(self._ready)

    def __len__(self) -> int:
        return len(self._ready)

    def status(self) -> PoolStatus:
        return PoolStatus(
            self.engine.name,
            self.isolation,
            self.target,
            self.floor,
            self.ceiling,
            len(self._ready),
            self.opening,
            self.hits,
            self.misses,
            self.attach,
        )

    def serves(self, spec: LeaseSpec) -> bool:
        """The lease asks for this pool's engine, isolation and attach protocol (whatever its
        options), and for a context session, its tenant is the one whose browser the pool's
        sessions are in."""
        if spec.engine is not self.engine.name or spec.isolation is not self.isolation:
            return False
        if attach_protocol(spec) is not self.attach:
            return False
        return self.isolation is Isolation.BROWSER or spec.tenant.name == self.tenant

    @staticmethod
    def fits(spec: LeaseSpec) -> bool:
        """A pooled session was opened with default options: only such a lease may have it.
        (What an attachable lease's `on_disconnect` says is the lease's, not its browser's.)"""
        return spec.context.is_default and spec.camoufox is None

    def take(self, spec: LeaseSpec) -> Session | None:
        """A ready session for `spec`, or None; never waits. Counts a hit or a miss."""
        if not self.serves(spec):
            return None
        if self.fits(spec):
            while self._ready:
                session = self._ready.popleft()
                self._wake_after_take()
                self.filled.clear()
                usable = session.alive and not session.retiring and not self._aged(session)
                self._born.pop(session, None)
                if usable:
                    session.set_lost_callback(None)
                    self.hits += 1
                    return session
                self._close_later(session)
        self.misses += 1
        return None

    def _wake_after_take(self) -> None:
        if self._refill_delay_s and not self._closed:
            asyncio.get_running_loop().call_later(self._refill_delay_s, self._wake.set)
        else:
            self._wake.set()

    def set_target(self, target: int) -> None:
        """Follow demand, within the floor and the ceiling; a lower target lets the excess go."""
        target = min(self.ceiling, max(self.floor, target))
        if target != self.target:
            self.target = target
            self.filled.clear()
            self._wake.set()

    def drop_one(self) -> bool:
        """Give up the oldest ready session (its memory is wanted); False if none is ready."""
        if not self._ready:
            return False
        session = self._ready.popleft()
        self._born.pop(session, None)
        self._close_later(session)
        self._wake.set()
        self.filled.clear()
        return True

    async def __aenter__(self) -> WarmPool:
        if self.ceiling > 0:
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
            session.set_lost_callback(None)
            with contextlib.suppress(Exception):
                await session.close()
        self._born.clear()
        await self._closers.wait()

    def _on_lost(self, session: Session, cause: LostCause) -> None:
        with contextlib.suppress(ValueError):
            self._ready.remove(session)
        self._born.pop(session, None)
        self._wake.set()
        self.filled.clear()
        self._close_later(session)

    def _close_later(self, session: Session) -> None:
        session.set_lost_callback(None)
        self._closers.spawn(session.close())

    def _aged(self, session: Session) -> bool:
        born = self._born.get(session)
        return bool(self.max_age_s) and born is not None and self._now() - born >= self.max_age_s

    def _sweep(self) -> None:
        """Give up ready sessions that are dead, being recycled or too old, and any above the
        target; the refill replaces what the target still wants."""
        for session in list(self._ready):
            if not session.alive or session.retiring or self._aged(session):
                self._ready.remove(session)
                self._born.pop(session, None)
                self._close_later(session)
        while len(self._ready) > self.target:
            self.drop_one()

    def _wanted(self) -> bool:
        return not self._closed and len(self._ready) + self.opening < self.target

    async def _refill_forever(self) -> None:
        backoff = self._first_backoff_s
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SWEEP_INTERVAL_S):
                    await self._wake.wait()
            self._wake.clear()
            self._sweep()
            while self._wanted() and (self._admit is None or self._admit(self)):
                if self._quiet is not None:
                    await self._quiet(self)
                    if not self._wanted() or (self._admit is not None and not self._admit(self)):
                        break
                try:
                    session = await self._open_one()
                except Exception as exc:
                    log.warning(
                        "warm pool %s refill failed; retrying in %.1fs: %s", self.name, backoff, exc
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(MAX_BACKOFF_S, backoff * 2)
                    continue
                backoff = self._first_backoff_s
                if self._closed:
                    await session.close()
                    return
                if not session.alive or (self._keep is not None and not self._keep(self)):
                    # Died while opening, or a lease needs the memory meanwhile: leases first.
                    self._close_later(session)
                    break
                session.set_lost_callback(self._on_lost)
                self._born[session] = self._now()
                self._ready.append(session)
            if len(self._ready) >= self.target:
                self.filled.set()

    async def _open_one(self) -> Session:
        async with self._launches:
            self.opening += 1
            try:
                async with asyncio.timeout(self._open_timeout_s):
                    return await self.engine.open_session(
                        self.isolation,
                        ContextOptions(),
                        tenant=self.tenant,
                        attach=AttachOptions(self.attach) if self.attach else None,
                    )
            finally:
                self.opening -= 1


def attach_protocol(spec: LeaseSpec) -> AttachProtocol | None:
    return spec.attach.protocol if spec.attach is not None else None
