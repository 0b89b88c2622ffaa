"""Property: whatever the interleaving of acquire, release, expiry, crash and Run cancellation, every
lease ends exactly once, every session closes exactly once, and capacity never drifts.

Each example is a list of operations played in one fresh event loop (`asyncio.run`), ordered only by
`asyncio.sleep(0)`: no wall-clock time passes, lease time moves through a FakeClock. After an
operation the loop may be left mid-flight (to explore interleavings) or settled; the invariants that
hold at every instant are checked after every operation, the exact accounting after settling.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field

from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from broker.engines.base import LostCause
from broker.errors import (
    Cancelled,
    DeadlineExceeded,
    LeaseEnded,
    LimitExceeded,
    QueueFull,
    SessionCrashed,
    Unavailable,
)
from broker.leases.lease import Lease, LeaseSpec, ReleaseReason
from broker.leases.limits import Limits
from broker.leases.runs import CancelCause, Run
from broker.leases.table import LeaseTable
from broker.model.options import EngineName, Isolation
from broker.model.steps.base import OnCancel, RunOptions, Step
from broker.model.steps.reading import Evaluate
from tests.fakes import FakeClock, FakeEngine, ReleaseRecorder

CAPACITY = 3
SPECS = [
    LeaseSpec(EngineName.CHROMIUM, Isolation.CONTEXT, ttl_s=ttl, idle_timeout_s=idle)
    for ttl in (20.0, 60.0)
    for idle in (15.0, 40.0)
]
SETTLE_ROUNDS = 50


# ---------------------------------------------------------------------------------- operations


@dataclass(frozen=True)
class Acquire:
    spec: int
    settle: bool


@dataclass(frozen=True)
class Abandon:
    """The caller of a queued Acquire gives up (its deadline passes or it cancels)."""

    pick: int
    settle: bool


@dataclass(frozen=True)
class Release:
    pick: int
    settle: bool


@dataclass(frozen=True)
class Advance:
    seconds: float
    settle: bool


@dataclass(frozen=True)
class Crash:
    pick: int
    cause: LostCause
    settle: bool


@dataclass(frozen=True)
class KeepAlive:
    pick: int
    settle: bool


@dataclass(frozen=True)
class StartRun:
    pick: int
    on_cancel: OnCancel
    settle: bool


@dataclass(frozen=True)
class CancelRun:
    pick: int
    cause: CancelCause
    settle: bool


@dataclass(frozen=True)
class FinishSteps:
    """Let every step now waiting in the browser complete (later steps block again)."""

    settle: bool


@dataclass(frozen=True)
class HoldOpens:
    """Hold (or let go) new browser sessions mid-open, so acquires sit admitted without a session."""

    hold: bool
    settle: bool


@dataclass(frozen=True)
class FailNextOpen:
    """The next session open fails (as a browser that cannot launch does)."""

    settle: bool


Op = (
    Acquire
    | Abandon
    | Release
    | Advance
    | Crash
    | KeepAlive
    | StartRun
    | CancelRun
    | FinishSteps
    | HoldOpens
    | FailNextOpen
)

_pick = st.integers(min_value=0, max_value=31)
_settle = st.booleans()
_acquire = st.builds(Acquire, st.integers(0, len(SPECS) - 1), _settle)
_start = st.builds(StartRun, _pick, st.sampled_from(list(OnCancel)), _settle)
_cancel = st.builds(CancelRun, _pick, st.sampled_from(list(CancelCause)), _settle)
_release = st.builds(Release, _pick, _settle)
# Repeated branches weigh the draw towards the operations that make the interesting races.
OPS: st.SearchStrategy[Op] = st.one_of(
    _acquire,
    _acquire,
    _acquire,
    _release,
    _release,
    _start,
    _start,
    _cancel,
    _cancel,
    st.builds(Abandon, _pick, _settle),
    st.builds(Advance, st.sampled_from([0.5, 5.0, 16.0, 35.0, 61.0]), _settle),
    st.builds(
        Crash, _pick, st.sampled_from([LostCause.ENGINE_CRASHED, LostCause.PAGE_CRASHED]), _settle
    ),
    st.builds(KeepAlive, _pick, _settle),
    st.builds(FinishSteps, _settle),
    st.builds(HoldOpens, st.booleans(), _settle),
    st.builds(FailNextOpen, _settle),
)


# ----------------------------------------------------------------------------------- the model


@dataclass
class TrackedRun:
    run: Run
    consumer: asyncio.Task[list[str]]


@dataclass
class World:
    engine: FakeEngine
    clock: FakeClock
    recorder: ReleaseRecorder
    leases: LeaseTable
    acquires: list[asyncio.Task[Lease]] = field(default_factory=list)
    granted: list[Lease] = field(default_factory=list)
    runs: list[TrackedRun] = field(default_factory=list)
    # The first outcome each lease was released with, as seen by the test.
    first_reason: dict[str, ReleaseReason] = field(default_factory=dict)

    @classmethod
    def create(cls) -> World:
        engine = FakeEngine()
        engine.step_gate = asyncio.Event()
        clock = FakeClock()
        recorder = ReleaseRecorder()
        limits = Limits(capacity=CAPACITY, queue_limit=4, cleanup_timeout_s=5.0)
        leases = LeaseTable(
            {EngineName.CHROMIUM: engine}, clock, limits, recorder, rng=random.Random(7)
        )
        return cls(engine, clock, recorder, leases)

    # ---------------------------------------------------------------- bookkeeping

    def collect_grants(self) -> None:
        known = {lease.id for lease in self.granted}
        for task in self.acquires:
            if task.done() and not task.cancelled() and task.exception() is None:
                lease = task.result()
                if lease.id not in known:
                    self.granted.append(lease)
                    known.add(lease.id)

    def pick_lease(self, pick: int) -> Lease | None:
        self.collect_grants()
        return self.granted[pick % len(self.granted)] if self.granted else None

    def pending_acquires(self) -> list[asyncio.Task[Lease]]:
        return [t for t in self.acquires if not t.done()]

    # ----------------------------------------------------------------- operations

    async def apply(self, op: Op) -> None:
        match op:
            case Acquire(spec=spec):
                task = asyncio.get_running_loop().create_task(
                    self.leases.acquire(SPECS[spec], None)
                )
                self.acquires.append(task)
            case Abandon(pick=pick):
                pending = self.pending_acquires()
                if pending:
                    pending[pick % len(pending)].cancel()
            case Release(pick=pick):
                lease = self.pick_lease(pick)
                if lease is not None:
                    await self.client_release(lease)
            case Advance(seconds=seconds):
                self.clock.advance(seconds)
            case Crash(pick=pick, cause=cause):
                lease = self.pick_lease(pick)
                if lease is not None:
                    self.recorder.sessions[lease.id].crash(cause)
            case KeepAlive(pick=pick):
                lease = self.pick_lease(pick)
                if lease is not None:
                    try:
                        live = self.leases.get(lease.id, lease.token)
                    except LeaseEnded:
                        return
                    self.leases.keep_alive(live, 0)
            case StartRun(pick=pick, on_cancel=on_cancel):
                lease = self.pick_lease(pick)
                if lease is not None:
                    self.start_run(lease, on_cancel)
            case CancelRun(pick=pick, cause=cause):
                if self.runs:
                    await self.runs[pick % len(self.runs)].run.cancel(cause)
            case FinishSteps():
                assert self.engine.step_gate is not None
                self.engine.step_gate.set()
                self.engine.step_gate = asyncio.Event()
            case HoldOpens(hold=hold):
                self.let_opens_go()
                if hold:
                    self.engine.open_gate = asyncio.Event()
            case FailNextOpen():
                self.engine.fail_next_open = Unavailable("chromium failed to launch (injected)")

    def let_opens_go(self) -> None:
        if self.engine.open_gate is not None:
            self.engine.open_gate.set()
            self.engine.open_gate = None

    async def client_release(self, lease: Lease) -> None:
        """The Release RPC: look up by id and token (tombstones too), release; the close follows."""
        before = lease.released
        outcome, ended = self.leases.release_by_client(lease.id, lease.token)
        if before is not None:
            assert not outcome.released_now and ended is None
            assert (outcome.reason, outcome.released_at) == (before.reason, before.released_at)
        else:
            assert outcome.released_now and outcome.reason is ReleaseReason.CLIENT_RELEASE
            assert ended is lease
            assert self.recorder.sessions[lease.id].closed <= 1

    def start_run(self, lease: Lease, on_cancel: OnCancel) -> None:
        try:
            live = self.leases.get(lease.id, lease.token)  # what the Run RPC does first
        except LeaseEnded:
            return
        steps = (Step(Evaluate("1"), 0.0), Step(Evaluate("2"), 0.0))
        run = Run(self.leases, live, RunOptions(steps, on_cancel), 600.0, 30.0)
        in_flight = live.runs_in_flight
        try:
            run.start()
        except LimitExceeded:  # too many Runs waiting on the lease: refused, nothing started
            assert live.runs_in_flight == in_flight
            return
        consumer = asyncio.get_running_loop().create_task(_consume(run))
        self.runs.append(TrackedRun(run, consumer))

    async def settle(self) -> None:
        for _ in range(SETTLE_ROUNDS):
            await asyncio.sleep(0)

    # ----------------------------------------------------------------- invariants

    def check_always(self) -> None:
        """What must hold at every instant, even mid-flight."""
        leases = self.leases
        assert leases.used_count <= CAPACITY  # closing sessions count until closed
        released = Counter(lease_id for lease_id, _ in self.recorder.released)
        assert all(n == 1 for n in released.values()), released
        granted = Counter(self.recorder.granted)
        assert all(n == 1 for n in granted.values()), granted
        assert set(released) <= set(granted)
        for session in self.engine.all_sessions:
            assert session.closed <= 1
        for lease in leases.active_leases():
            assert lease.released is None
        for lease in self.granted:
            # The first reason recorded never changes.
            if lease.released is not None:
                first = self.first_reason.setdefault(lease.id, lease.released.reason)
                assert lease.released.reason is first
                assert (lease.id, first.value) in self.recorder.released

    def check_settled(self) -> None:
        """The exact accounting, once every task that could run has run."""
        self.collect_grants()
        leases = self.leases
        live = [lease for lease in self.granted if lease.released is None]
        # Admitted, their session still being opened (only while opens are held).
        opening = [lease for lease in leases.active_leases() if lease.session is None]
        assert not opening or self.engine.open_gate is not None
        assert leases.active_count == len(live) + len(opening)
        assert {lease.id for lease in leases.active_leases()} == {
            lease.id for lease in live + opening
        }
        assert len(live) == len(self.recorder.granted) - len(self.recorder.released)
        assert leases.queued_count + len(opening) == len(self.pending_acquires())
        if leases.queued_count:
            assert leases.used_count == CAPACITY  # nobody waits while a slot is free
        for lease in self.granted:
            session = self.recorder.sessions[lease.id]
            if lease.released is None:
                assert lease.session is session
                assert session.closed == 0 and not session.lost
            else:
                assert session.closed == 1
                assert lease.session is None, "a closed session is still referenced"
                assert lease.runs_in_flight == 0 and not lease.run_tasks
        assert leases.owned_sessions() == {lease.session for lease in live}
        assert self.engine.open_sessions == {lease.session for lease in live}

    async def finish(self) -> None:
        await self.leases.drain(0)
        assert self.engine.step_gate is not None
        self.engine.step_gate.set()
        self.let_opens_go()
        acquired = await asyncio.gather(*self.acquires, return_exceptions=True)
        for result in acquired:
            # Granted; refused by a full queue or by the drain; or abandoned by its caller.
            assert isinstance(result, Lease | QueueFull | Unavailable | asyncio.CancelledError), (
                repr(result)
            )
        ran = await asyncio.gather(*(r.consumer for r in self.runs), return_exceptions=True)
        for ended in ran:
            assert isinstance(
                ended,
                list | LeaseEnded | SessionCrashed | DeadlineExceeded | Cancelled | Unavailable,
            ), repr(ended)
        await self.leases.wait_all_closed()
        self.collect_grants()
        self.check_always()
        for lease in self.granted:
            assert lease.released is not None
            assert self.recorder.count(lease.id) == 1
            assert lease.runs_in_flight == 0 and not lease.run_tasks
        assert sorted(self.recorder.granted) == sorted(lease.id for lease in self.granted)
        for session in self.engine.all_sessions:
            assert session.closed == 1
        assert self.engine.open_sessions == set()
        assert self.leases.active_count == 0
        assert self.leases.queued_count == 0
        assert self.leases.owned_sessions() == set()
        assert self.clock.pending() == []  # no expiry timer outlives its lease
        if currently_in_test_context():
            self.report_coverage()

    def report_coverage(self) -> None:
        """Shown by `pytest --hypothesis-show-statistics`: which causes the examples exercised."""
        for reason in sorted({reason for _, reason in self.recorder.released}):
            event(f"a lease ended by {reason}")
        if any(r.run.stopped_in_browser for r in self.runs):
            event("a cancelled Run was stopped in the browser")
        if any(isinstance(t.exception(), Unavailable) for t in self.acquires if not t.cancelled()):
            event("a queued Acquire was refused by the drain")


async def _consume(run: Run) -> list[str]:
    return [outcome.json async for outcome in run.results()]


async def play(ops: list[Op]) -> None:
    world = World.create()
    for op in ops:
        await world.apply(op)
        world.check_always()
        if op.settle:
            await world.settle()
            world.check_always()
            world.check_settled()
    await world.settle()
    world.check_settled()
    await world.finish()


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(_acquire, min_size=1, max_size=5), st.lists(OPS, min_size=5, max_size=50))
def test_every_lease_ends_once_whatever_the_interleaving(first: list[Op], then: list[Op]) -> None:
    asyncio.run(play(first + then))


def test_a_busy_fixed_scenario() -> None:
    """A hand-written interleaving touching every operation, so a plain run covers them all."""
    ops: list[Op] = [
        *(Acquire(i % len(SPECS), True) for i in range(5)),
        StartRun(0, OnCancel.KEEP_LEASE, False),
        StartRun(0, OnCancel.RELEASE_LEASE, True),
        StartRun(1, OnCancel.RELEASE_LEASE, True),
        CancelRun(1, CancelCause.DEADLINE, False),
        Release(1, False),
        Abandon(0, True),
        Crash(2, LostCause.ENGINE_CRASHED, True),
        KeepAlive(0, True),
        CancelRun(0, CancelCause.CLIENT_CANCELLED, True),
        FinishSteps(True),
        Advance(16.0, True),
        Release(0, True),
        Release(0, True),
        Advance(61.0, True),
    ]
    asyncio.run(play(ops))


def test_runs_beyond_the_waiting_limit_are_refused_and_leave_nothing() -> None:
    """More Runs on one lease than may wait: the extra ones are refused before they start."""
    ops: list[Op] = [
        Acquire(0, True),
        *(StartRun(0, OnCancel.KEEP_LEASE, True) for _ in range(8)),
        FinishSteps(True),
        Release(0, True),
    ]
    asyncio.run(play(ops))
