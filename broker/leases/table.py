"""The lease table, the capacity queue, expiry, and the one release path.

Capacity in use is the active leases plus the sessions still closing: the table is the only record
of what is lent. A lease enters the table when it is admitted (before its session exists) and
leaves it in `release()`, the single function that ends leases, whatever the cause; its session
holds capacity until the browser has closed it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine, Mapping
from datetime import timedelta
from typing import Any

from broker.common.cleanup import TaskSet, await_shielded
from broker.common.clock import Clock
from broker.egress.proxy import EgressGateway
from broker.engines.base import Engine, LostCause, Session
from broker.errors import (
    DeadlineExceeded,
    InvalidArgument,
    LeaseEnded,
    LimitExceeded,
    PermissionDenied,
    QueueFull,
)
from broker.leases.closing import SessionCloser
from broker.leases.endings import LOST_REASONS, Draining, ended_while_opening, wait_drained
from broker.leases.estimates import Estimates
from broker.leases.events import LeaseObserver, ObserverList
from broker.leases.lease import Lease, LeaseSpec, ReleaseOutcome, ReleaseReason, token_digest
from broker.leases.limits import Limits
from broker.leases.opening import engine_for, open_cold, vet_client_proxy
from broker.leases.queue import WaitQueue
from broker.leases.tenants import OPERATOR, Tenant
from broker.leases.tombstones import Tombstone, Tombstones
from broker.model.options import EngineName
from broker.model.steps.base import StepOutcome

log = logging.getLogger("broker.leases")

# The lease span gets an "expiring" event this long (or 10% of the TTL) before its TTL ends.
EXPIRY_WARNING_S = 10.0

SessionSource = Callable[[LeaseSpec], Session | None]


class LeaseTable:
    def __init__(
        self,
        engines: Mapping[EngineName, Engine],
        clock: Clock,
        limits: Limits,
        observers: LeaseObserver | None = None,
        rng: random.Random | None = None,
        egress: EgressGateway | None = None,
    ) -> None:
        self.engines = engines
        self.egress = egress
        self.clock = clock
        self.limits = limits
        self.observers = observers or ObserverList()
        self._rng = rng or random.Random()
        self._active: dict[str, Lease] = {}
        self._tombstones = Tombstones(limits.tombstone_ttl_s, limits.tombstone_max)
        self._queue = WaitQueue(self.observers.lease_queued, self._give_back)
        self._cleanups = TaskSet()  # session closes and shielded Run cleanups
        self._closing = SessionCloser(
            self._cleanups, limits.cleanup_timeout_s, on_closed=self._grant_waiters
        )
        self.draining = False  # (read only: set once, by begin_drain)
        self._emptied = asyncio.Event()  # the drain's: set when its last lease has ended
        self._waiting_on_reader: set[asyncio.Task[None]] = set()  # Runs backpressure holds
        self._warm_source: SessionSource | None = None
        self.estimates = Estimates()

    # ----------------------------------------------------------------- views

    @property
    def active_count(self) -> int:
        return len(self._active)

    @property
    def closing_count(self) -> int:
        """Sessions of ended leases (and orphans) the browser is still closing."""
        return len(self._closing)

    @property
    def used_count(self) -> int:
        """Capacity in use: live leases, and sessions still closing (their memory is not free)."""
        return len(self._active) + len(self._closing)

    @property
    def queued_count(self) -> int:
        return len(self._queue)

    @property
    def full(self) -> bool:
        """A new Acquire would wait: no free slot, or a waiter that could take one (FIFO)."""
        return self.used_count >= self.limits.capacity or self._queue.grantable(self._held) > 0

    def active_leases(self) -> list[Lease]:
        return list(self._active.values())

    def knows(self, lease_id: str) -> bool:
        """Whether this table holds the lease or remembers its end."""
        return lease_id in self._active or lease_id in self._tombstones

    def tombstones(self) -> list[Tombstone]:
        return self._tombstones.all()

    def owned_sessions(self) -> set[Session]:
        """Sessions the broker accounts for: lent out, or being closed."""
        owned = {lease.session for lease in self._active.values() if lease.session is not None}
        return owned | self._closing.sessions()

    def set_warm_source(self, source: SessionSource | None) -> None:
        self._warm_source = source

    # --------------------------------------------------------------- acquire

    async def acquire(self, spec: LeaseSpec, timeout_s: float | None) -> Lease:
        """Admit (maybe after queueing), then attach a session; bounded by the caller's deadline."""
        if self.draining:
            raise Draining()
        engine = engine_for(self.engines, spec)
        started = self.clock.now()
        requested_at = self.clock.wall()
        deadline = None if timeout_s is None else started + timeout_s
        lease = await self._admit(spec, timeout_s)
        if lease.released is not None:
            # Ended (drained) between being granted a slot and resuming here: open nothing.
            raise Draining()
        lease.requested_at = requested_at
        lease.queue_wait_s = self.clock.now() - started
        try:
            await vet_client_proxy(self.egress, spec)
            session, warm = await self._open_session(engine, spec, deadline)
        except BaseException:
            self.release(lease, ReleaseReason.ACQUIRE_FAILED)
            raise
        self._attach(lease, session, warm)
        if lease.released is not None:
            # Drained, or its browser died, while the session was being opened: the release
            # path already closed the session.
            raise ended_while_opening(lease.released.reason)
        return lease

    async def _admit(self, spec: LeaseSpec, timeout_s: float | None) -> Lease:
        full = self.full
        active, queued = self.tenant_counts(spec.tenant)
        spec.tenant.check_quota(active, queued, would_queue=full)
        if not full:
            return self._new_lease(spec)
        if timeout_s is not None and timeout_s <= 0:
            raise DeadlineExceeded("deadline passed before capacity was free")
        if self.queued_count >= self.limits.queue_limit:
            hint = self.estimates.retry_hint(self.queued_count, self.limits.capacity)
            raise QueueFull(self.limits.queue_limit, hint)
        return await self._queue.wait(spec, timeout_s)

    def _give_back(self, lease: Lease) -> None:
        self.release(lease, ReleaseReason.ACQUIRE_FAILED)

    def _new_lease(self, spec: LeaseSpec) -> Lease:
        now = self.clock.now()
        lease = Lease(spec=spec, granted_at=now, last_activity=now)
        self._active[lease.id] = lease
        return lease

    def _grant_waiters(self) -> None:
        if not self.draining:
            self._queue.grant(
                self._new_lease, lambda: self.limits.capacity - self.used_count, self._held
            )

    async def _open_session(
        self, engine: Engine, spec: LeaseSpec, deadline: float | None
    ) -> tuple[Session, bool]:
        if self._warm_source is not None:
            warm = self._warm_source(spec)
            if warm is not None:
                return warm, True
        opened = await open_cold(engine, spec, deadline, self.clock, self.estimates, self.limits)
        return opened, False

    def _attach(self, lease: Lease, session: Session, warm: bool) -> None:
        lease.session = session
        lease.warm = warm
        if lease.released is not None:
            closing = self._closing.close(session, lease.id)
            closing.add_done_callback(lambda _: self._forget_session(lease))
            return
        session.set_lost_callback(self._on_session_lost)
        session.bind_egress(
            lease.spec.tenant.egress, lambda blocked: self.observers.egress_blocked(lease, blocked)
        )
        now = self.clock.now()
        lease.last_activity = now
        self._set_ttl(lease, lease.spec.ttl_s, jitter=True)
        self._arm_idle(lease)
        self.observers.lease_granted(lease)
        if session.lost_cause is not None:  # died before it had anyone to tell
            self._on_session_lost(session, session.lost_cause)

    # ------------------------------------------------------------ lookups

    def get(self, lease_id: str, token: str, tenant: Tenant = OPERATOR) -> Lease:
        """The caller's active lease, or the error that says why it cannot be used.

        Another tenant's lease answers exactly as an unknown one does: it learns nothing.
        """
        lease = self._owned(lease_id, token, tenant)
        if lease is not None:
            return lease
        tomb = self._tombstones.find(lease_id, token, tenant)
        raise LeaseEnded(lease_id, tomb.reason.value, tomb.released_at.isoformat())

    def release_by_client(
        self, lease_id: str, token: str, tenant: Tenant = OPERATOR
    ) -> tuple[ReleaseOutcome, Lease | None]:
        """The client's Release: the outcome, and the lease if this call ended it."""
        lease = self._owned(lease_id, token, tenant)
        if lease is not None:
            return self.release(lease, ReleaseReason.CLIENT_RELEASE), lease
        tomb = self._tombstones.find(lease_id, token, tenant)
        return ReleaseOutcome(tomb.reason, tomb.released_at, False), None

    def _owned(self, lease_id: str, token: str, tenant: Tenant) -> Lease | None:
        """The tenant's live lease of that id (a wrong token is refused); None if there is none."""
        lease = self._active.get(lease_id)
        if lease is None or lease.session is None or lease.owner != tenant.name:
            return None
        if not lease.token_matches(token):
            raise PermissionDenied(lease_id)
        return lease

    def tenant_counts(self, tenant: Tenant) -> tuple[int, int]:
        """(active leases, queued Acquires) of one tenant, counted from the table itself."""
        queued = self._queue.count(lambda spec: spec.tenant.name == tenant.name)
        return self._held(tenant), queued

    def _held(self, tenant: Tenant) -> int:
        return sum(1 for lease in self._active.values() if lease.owner == tenant.name)

    # ------------------------------------------------------------- expiry

    def keep_alive(self, lease: Lease, ttl_s: float) -> None:
        if ttl_s < 0 or ttl_s > self.limits.max_ttl_s:
            raise InvalidArgument.single(
                "ttl", f"must be between 0 and {self.limits.max_ttl_s:g}s, got {ttl_s:g}s"
            )
        self.touch(lease)
        self._set_ttl(lease, ttl_s or lease.spec.ttl_s, jitter=False)
        self.observers.lease_extended(lease)

    def touch(self, lease: Lease) -> None:
        lease.last_activity = self.clock.now()

    # --------------------------------------------------------------- runs

    def start_run(
        self,
        lease: Lease,
        body: Coroutine[Any, Any, None],
        steps: int,
        on_end: Callable[[asyncio.Task[None]], str],
    ) -> asyncio.Task[None]:
        """Admit a Run on `lease` (unless it would wait behind more than `max_runs_waiting`) and
        start `body` as its task, owned by the lease (the release path cancels it) until it ends,
        however it ends; `on_end` then says what ended it ("" for success), for the trace. The
        Run counts against the limit until its stream closes (`run_closed`), read or not."""
        limit = self.limits.max_runs_waiting
        if lease.runs_in_flight > limit:
            body.close()
            raise LimitExceeded(
                "runs_waiting_per_lease",
                f"lease {lease.id} already has a running Run and {limit} waiting; "
                "wait for one to finish",
                retry_after_s=1.0,
            )
        loop = asyncio.get_running_loop()
        started = loop.time()
        task = loop.create_task(body)
        lease.run_tasks.add(task)
        lease.runs_in_flight += 1
        lease.run_count += 1
        self.observers.run_started(lease, steps)

        # A done-callback, not a `finally`: it runs even if the task is cancelled before it starts.
        def ended(task: asyncio.Task[None]) -> None:
            lease.run_tasks.discard(task)
            self._waiting_on_reader.discard(task)
            if lease.released is None:
                self.touch(lease)
            self.observers.run_finished(lease, loop.time() - started, on_end(task))

        task.add_done_callback(ended)
        return task

    def run_closed(self, lease: Lease) -> None:
        """A Run's stream closed (once per started Run): its place in the Run limit frees."""
        lease.runs_in_flight -= 1

    def run_waiting_on_reader(self, task: asyncio.Task[None], waiting: bool) -> None:
        """A Run waits for its reader to take a result: that wait is not activity on the lease."""
        (self._waiting_on_reader.add if waiting else self._waiting_on_reader.discard)(task)

    def step_done(self, lease: Lease, outcome: StepOutcome) -> None:
        """A step of a Run ran. On a live lease its outcome is activity, and goes to the trace."""
        lease.step_count += 1
        if lease.released is None:
            self.touch(lease)
            self.observers.step_finished(lease, outcome)

    def run_cancelled(self, lease: Lease, cause: str) -> None:
        self.observers.run_cancelled(lease, cause)

    def _set_ttl(self, lease: Lease, ttl_s: float, jitter: bool) -> None:
        if lease.ttl_timer is not None:
            lease.ttl_timer.cancel()
        spread = 0.0
        if jitter:
            spread = self._rng.uniform(
                0.0, min(ttl_s * self.limits.ttl_jitter_fraction, self.limits.max_jitter_s)
            )
        effective = ttl_s - spread
        lease.expires_at = self.clock.now() + effective
        lease.expires_at_wall = self.clock.wall() + timedelta(seconds=effective)

        def expire() -> None:
            self.release(lease, ReleaseReason.TTL_EXPIRED)

        def warn() -> None:
            self.observers.lease_expiring(lease, warn_before)

        lease.ttl_timer = self.clock.call_later(effective, expire)
        if lease.warn_timer is not None:
            lease.warn_timer.cancel()
        warn_before = min(EXPIRY_WARNING_S, effective * 0.1)
        lease.warn_timer = self.clock.call_later(effective - warn_before, warn)

    def _arm_idle(self, lease: Lease) -> None:
        due = lease.last_activity + lease.spec.idle_timeout_s
        lease.idle_timer = self.clock.call_later(
            due - self.clock.now(), lambda: self._idle_check(lease)
        )

    def _idle_check(self, lease: Lease) -> None:
        if lease.released is not None:
            return
        idle_for = self.clock.now() - lease.last_activity
        # The Run waiting for its reader holds the run lock: no other Run of the lease can work.
        working = bool(lease.run_tasks) and self._waiting_on_reader.isdisjoint(lease.run_tasks)
        if not working and idle_for >= lease.spec.idle_timeout_s:
            self.release(lease, ReleaseReason.IDLE_TIMEOUT)
        else:
            if working:
                lease.last_activity = self.clock.now()  # a running Run is activity
            self._arm_idle(lease)

    def _on_session_lost(self, session: Session, cause: LostCause) -> None:
        for lease in list(self._active.values()):
            if lease.session is session:
                self.release(lease, LOST_REASONS[cause])

    # -------------------------------------------------- the one release path

    def release(self, lease: Lease, reason: ReleaseReason) -> ReleaseOutcome:
        """End `lease` for `reason`. The first call wins; later calls return its outcome unchanged.

        Synchronous on purpose: between the check and the removal there is no await, so no other
        cause can interleave. Browser cleanup runs afterwards in a task of its own.
        """
        if lease.released is not None:
            return ReleaseOutcome(lease.released.reason, lease.released.released_at, False)
        outcome = ReleaseOutcome(reason, self.clock.wall(), True)
        # Record why before cancelling anything, so whoever sees the cancellation knows the cause.
        lease.released = outcome
        self._active.pop(lease.id, None)
        if self.draining and not self._active:
            self._emptied.set()
        if lease.session is not None:  # a lease never handed to its caller leaves no record
            tomb = Tombstone(
                lease.id,
                lease.owner,
                token_digest(lease.token),
                reason,
                outcome.released_at,
                self.clock.now(),
            )
            self._tombstones.add(tomb, self.clock.now())
        for timer in (lease.ttl_timer, lease.warn_timer, lease.idle_timer):
            if timer is not None:
                timer.cancel()
        current = asyncio.current_task()
        for task in list(lease.run_tasks):
            if task is not current:
                task.cancel()
        if lease.session is not None:
            lease.session.set_lost_callback(None)
            closing = self._closing.close(lease.session, lease.id)
            # The tombstone outlives the session by tombstone_ttl_s: let the browser objects go.
            closing.add_done_callback(lambda _: self._forget_session(lease))
            self.estimates.lease_ended(self.clock.now() - lease.granted_at)
        self._grant_waiters()
        if lease.session is not None:
            self.observers.lease_released(lease, outcome)
        log.info(
            "lease released",
            extra={"lease_id": lease.id, "reason": reason.value, "active": len(self._active)},
        )
        return outcome

    async def wait_closed(self, lease_id: str) -> None:
        """Wait (bounded by the cleanup timeout) until a released lease's browser side is closed."""
        await self._closing.wait(lease_id)

    def close_orphan(self, session: Session) -> None:
        """Close a session no lease owns (found by the reconciler)."""
        self._closing.close(session)

    @staticmethod
    def _forget_session(lease: Lease) -> None:
        lease.session = None

    # ------------------------------------------------------------ shutdown

    def begin_drain(self) -> None:
        """From now on take no new leases; queued Acquires fail `Draining`. Idempotent."""
        self.draining = True
        self._queue.fail_all(Draining())

    async def drain(self, grace_s: float, deadline_s: float = 0.0) -> None:
        """Take no new leases, wait (`endings.wait_drained`), then end every lease left."""
        self.begin_drain()
        reason = await wait_drained(self.active_leases, self._emptied, deadline_s, grace_s)
        for lease in list(self._active.values()):
            self.release(lease, reason)
        await self.wait_all_closed()

    async def wait_all_closed(self) -> None:
        await self._cleanups.wait()

    async def run_cleanup(self, work: Coroutine[Any, Any, None]) -> None:
        """Await `work` to completion even if the caller is cancelled meanwhile (bounded)."""
        await await_shielded(self._cleanups.spawn(work), self.limits.cleanup_timeout_s)
