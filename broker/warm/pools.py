"""The broker's warm pools, one per (engine, isolation, attach protocol) configured, and what
they share: the per-engine bound on background opens, demand sizing, and the memory budget.

`take` is the lease table's warm source: it runs on every Acquire after admission, with the new
lease already counted among the active ones. It records demand, hands out a warm session when a
pool holds one the lease's options fit, and otherwise makes room under the memory budget for the
cold session about to be opened: warm sessions are dropped first, and the lease is refused only
when the leases alone would exceed the budget.

Egress rules are bound when a session is lent (the lease table's grant), never before. A warm
dedicated browser can go to any tenant allowed its engine and isolation; a warm context session
only to the tenant whose shared browser it lives in (see `pool.py`). With authentication on, the
broker keeps no context pools: a pool per tenant would keep a browser alive per tenant, idle or
not, and multiply the warm memory by the number of tenants.

Attachable pools (dedicated browsers an attached client can connect to, over CDP, Playwright's
protocol or WebDriver BiDi) are pools like the others: an attachable lease is admitted first (capacity, queue, the tenant's quotas), then
takes a ready browser of the pool for its protocol, or has one launched for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable

from broker.engines.base import Engine, Session
from broker.errors import LimitExceeded
from broker.leases.lease import Lease, LeaseSpec
from broker.model.attach import AttachProtocol
from broker.model.options import EngineName, Isolation
from broker.warm.demand import Demand
from broker.warm.pool import SWEEP_INTERVAL_S, PoolStatus, WarmPool, attach_protocol

log = logging.getLogger("broker.pool")

# A refill after a take waits this long: the reply lending the session goes out first.
REFILL_DELAY_S = 0.02
# An attachable pool's refill waits longer: the client's connect (the protocol handshake, which
# comes right after the reply) goes first, rather than beside a browser launch.
ATTACH_REFILL_DELAY_S = 1.0
# A warm open waits (polling) while its engine is busy with a lease's work, at most this long.
QUIET_MAX_WAIT_S = 1.0
QUIET_POLL_S = 0.01

# Estimated MiB a lease's browser costs beyond its session's estimate (`session_memory_mb`), by
# attach protocol: a browser served over Playwright's protocol has a Node launch script
# (launchServer) of its own, about 90 MiB PSS beside Chromium and Firefox alike (measured beside
# a pooled one).
ATTACH_MEMORY_MB = {AttachProtocol.PLAYWRIGHT: 90.0}


def attach_memory_mb(protocol: AttachProtocol | None) -> float:
    return ATTACH_MEMORY_MB.get(protocol, 0.0) if protocol is not None else 0.0


SessionMemory = Callable[[EngineName, Isolation], float]
# What a pool serves: engine, isolation and attach protocol (None: not attachable).
PoolKey = tuple[EngineName, Isolation, AttachProtocol | None]


def key_of(spec: LeaseSpec) -> PoolKey:
    return (spec.engine, spec.isolation, attach_protocol(spec))


class Pools:
    def __init__(
        self,
        active: Callable[[], Iterable[Lease]],
        owned: Callable[[], Iterable[Session]] | None,
        session_memory: SessionMemory,
        memory_budget_mb: float = 0.0,
        demand_window_s: float = 300.0,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._active = active  # the lease table's active leases
        # The sessions the lease table accounts for: lent, or closing after their release.
        self._owned = owned
        self._memory = session_memory
        self.memory_budget_mb = memory_budget_mb  # 0: no budget
        self.demand = Demand(demand_window_s, now)
        self._now = now
        self.pools: list[WarmPool] = []
        self._by_key: dict[PoolKey, WarmPool] = {}
        self._launches: dict[EngineName, asyncio.Semaphore] = {}
        self._task: asyncio.Task[None] | None = None
        self.memory_drops = 0  # warm sessions given up for a lease's memory

    def add(
        self,
        engine: Engine,
        isolation: Isolation,
        size: int,
        ceiling: int | None = None,
        max_age_s: float = 0.0,
        launches_per_engine: int = 1,
        open_timeout_s: float = 60.0,
        attach: AttachProtocol | None = None,
    ) -> WarmPool:
        launches = self._launches.setdefault(engine.name, asyncio.Semaphore(launches_per_engine))
        pool = WarmPool(
            engine,
            isolation,
            size,
            open_timeout_s=open_timeout_s,
            ceiling=ceiling,
            max_age_s=max_age_s,
            launches=launches,
            admit=self._may_open,
            keep=self._fits_budget,
            quiet=self._wait_quiet,
            now=self._now,
            refill_delay_s=ATTACH_REFILL_DELAY_S if attach else REFILL_DELAY_S,
            attach=attach,
        )
        self.pools.append(pool)
        self._by_key[(engine.name, isolation, attach)] = pool
        return pool

    # ----------------------------------------------------------------- views

    def __len__(self) -> int:
        return sum(len(pool) for pool in self.pools)

    def sessions(self) -> list[Session]:
        return [session for pool in self.pools for session in pool.sessions()]

    def statuses(self) -> list[PoolStatus]:
        return [pool.status() for pool in self.pools]

    def leases_mb(self) -> float:
        return sum(
            self._memory(lease.spec.engine, lease.spec.isolation)
            + attach_memory_mb(attach_protocol(lease.spec))
            for lease in self._active()
        )

    def warm_mb(self, opening: bool = True) -> float:
        return sum(
            (len(pool) + (pool.opening if opening else 0)) * self._one(pool) for pool in self.pools
        )

    # ---------------------------------------------------------------- lending

    def take(self, spec: LeaseSpec) -> Session | None:
        """The lease table's warm source (see the module's docstring)."""
        key = key_of(spec)
        # Demand a pool could serve: leases of its kind whose options a pooled session fits.
        held = sum(
            1 for lease in self._active() if key_of(lease.spec) == key and WarmPool.fits(lease.spec)
        )
        self.demand.observe(key, held)
        pool = self._by_key.get(key)
        if pool is not None:
            self._follow_demand(pool)
            session = pool.take(spec)
            if session is not None:
                return session
        self._make_room(spec)
        return None

    def _make_room(self, spec: LeaseSpec) -> None:
        """Leases first: drop ready warm sessions until the leases (this one counted) fit the
        budget with what stays warm; refuse the lease only if the leases alone do not fit."""
        budget = self.memory_budget_mb
        if not budget:
            return
        leases = self.leases_mb()
        while leases + self.warm_mb(opening=False) > budget:
            fullest = max(self.pools, key=len, default=None)
            if fullest is None or not fullest.drop_one():
                break
            self.memory_drops += 1
            log.info("warm session dropped for a lease's memory", extra={"pool": fullest.name})
        if leases > budget:
            raise LimitExceeded(
                "memory_budget_mb",
                f"a {spec.engine.value} {spec.isolation.value} lease would take the leases' "
                f"estimated memory to {leases:.0f} MiB, over memory_budget_mb {budget:g}",
                retry_after_s=1.0,
            )

    def _may_open(self, pool: WarmPool) -> bool:
        """May `pool` open one more warm session? Not while a lease of its engine is launching a
        dedicated browser (launches of one engine take turns: the lease goes first), nor with
        memory a lease needs."""
        if pool.isolation is Isolation.BROWSER and any(
            lease.session is None
            and lease.spec.engine is pool.engine.name
            and lease.spec.isolation is Isolation.BROWSER
            for lease in self._active()
        ):
            return False
        return self._fits_budget(pool)

    def _busy(self, engine: EngineName) -> bool:
        """Is a lease of `engine` running steps, or having its session opened, right now?"""
        return any(
            lease.spec.engine is engine and (lease.session is None or bool(lease.run_tasks))
            for lease in self._active()
        )

    async def _wait_quiet(self, pool: WarmPool) -> None:
        """Let the engine's lease work go first. A context opened beside a navigation slows the
        navigation down (the browser's main thread and, on a small machine, the cores are
        shared), and a pool exists to take work off the caller's path, not to add to it. Under
        steady load the wait is bounded, so the pool still refills."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + QUIET_MAX_WAIT_S
        while self._busy(pool.engine.name) and loop.time() < give_up:  # noqa: ASYNC110
            await asyncio.sleep(QUIET_POLL_S)  # polled: a Run's end has no event to wait on

    def _one(self, pool: WarmPool) -> float:
        """The estimated memory of one of `pool`'s sessions (with its launch script, if any)."""
        return self._memory(pool.engine.name, pool.isolation) + attach_memory_mb(pool.attach)

    def closing_mb(self) -> float:
        """Sessions of ended leases still closing: their memory is not free yet."""
        if self._owned is None:
            return 0.0
        lent = {lease.session for lease in self._active()}
        return sum(
            self._memory(session.engine, session.isolation)
            for session in self._owned()
            if session not in lent
        )

    def _fits_budget(self, pool: WarmPool) -> bool:
        """Does one more warm session of `pool` fit the memory budget beside the leases (and the
        sessions of ended leases still closing)?"""
        budget = self.memory_budget_mb
        if not budget:
            return True
        one = self._one(pool)
        return self.leases_mb() + self.closing_mb() + self.warm_mb() + one <= budget

    def _follow_demand(self, pool: WarmPool) -> None:
        if pool.ceiling > pool.floor:
            pool.set_target(self.demand.peak((pool.engine.name, pool.isolation, pool.attach)))

    # -------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Pools:
        for pool in self.pools:
            await pool.__aenter__()
        if any(pool.ceiling > pool.floor for pool in self.pools):
            self._task = asyncio.get_running_loop().create_task(self._resize_forever())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _resize_forever(self) -> None:
        """Targets sink back to their floor as bursts leave the demand window."""
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            for pool in self.pools:
                self._follow_demand(pool)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for pool in self.pools:
            await pool.close()
