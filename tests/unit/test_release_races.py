"""Every pair of causes that can end a lease, racing: exactly one release, one close, one free slot.

Each test drives both causes in a fixed, deterministic order (FakeClock timers that fall due at the
same instant fire in the order they were scheduled; `asyncio.sleep(0)` and events order tasks) and
then checks the same things: one release event with the winning reason, the session closed once,
no lease left in the table, and the slot free again.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from broker.engines.base import LostCause
from broker.errors import LeaseEnded, SessionCrashed, Unavailable
from broker.leases.lease import Lease, LeaseSpec, ReleaseOutcome, ReleaseReason
from broker.leases.limits import Limits
from broker.leases.runs import CancelCause, Run
from broker.leases.table import LeaseTable
from broker.model.options import EngineName, Isolation
from broker.model.steps.base import OnCancel, RunOptions, Step
from broker.model.steps.reading import Evaluate
from tests.fakes import FakeClock, FakeEngine, FakeSession, ReleaseRecorder

TTL_S = 60.0
IDLE_S = 30.0
# TTL well before the idle timeout, and the other way round, so only the cause under test fires.
TTL_FIRST = LeaseSpec(EngineName.CHROMIUM, Isolation.CONTEXT, ttl_s=TTL_S, idle_timeout_s=600)
IDLE_FIRST = LeaseSpec(EngineName.CHROMIUM, Isolation.CONTEXT, ttl_s=600, idle_timeout_s=IDLE_S)
STEPS = (Step(Evaluate("1"), 0.0),)


class Harness:
    def __init__(self, capacity: int = 1) -> None:
        self.engine = FakeEngine()
        self.clock = FakeClock()
        self.recorder = ReleaseRecorder()
        limits = Limits(capacity=capacity, queue_limit=4, ttl_jitter_fraction=0.0)
        self.leases = LeaseTable(
            {EngineName.CHROMIUM: self.engine}, self.clock, limits, self.recorder
        )

    async def acquire(self, spec: LeaseSpec = TTL_FIRST) -> tuple[Lease, FakeSession]:
        lease = await self.leases.acquire(spec, None)
        session = lease.session
        assert isinstance(session, FakeSession)
        return lease, session

    async def client_release(self, lease: Lease) -> ReleaseOutcome:
        """What the Release RPC does: look up by id and token, release, wait for the close."""
        outcome, ended = self.leases.release_by_client(lease.id, lease.token)
        if ended is not None:
            await self.leases.wait_closed(ended.id)
        return outcome

    def start_run(self, lease: Lease, on_cancel: OnCancel = OnCancel.KEEP_LEASE) -> Run:
        if self.engine.step_gate is None:
            self.engine.step_gate = asyncio.Event()
        run = Run(self.leases, lease, RunOptions(STEPS, on_cancel), 60.0, 30.0)
        run.start()
        return run

    async def check_released_once(
        self, lease: Lease, session: FakeSession, reason: ReleaseReason, drained: bool = False
    ) -> None:
        await self.leases.wait_all_closed()
        assert self.recorder.released.count((lease.id, reason.value)) == 1, self.recorder.released
        assert self.recorder.count(lease.id) == 1, self.recorder.released
        assert lease.released is not None and lease.released.reason is reason
        assert session.closed == 1
        assert self.engine.open_sessions == set()
        assert self.leases.active_count == 0
        assert self.leases.queued_count == 0
        assert self.leases.owned_sessions() == set()
        # A late client Release is answered with the first outcome, and changes nothing.
        late = self.leases.release(lease, ReleaseReason.CLIENT_RELEASE)
        assert not late.released_now and late.reason is reason
        assert late.released_at == lease.released.released_at
        await self.leases.wait_all_closed()
        assert session.closed == 1 and self.recorder.count(lease.id) == 1
        if drained:
            with pytest.raises(Unavailable):
                await self.leases.acquire(TTL_FIRST, None)
        else:
            await self.assert_capacity_free()

    async def assert_capacity_free(self) -> None:
        """The whole capacity can be acquired again without waiting."""
        tasks = [
            asyncio.create_task(self.leases.acquire(TTL_FIRST, None))
            for _ in range(self.leases.limits.capacity)
        ]
        await asyncio.sleep(0)
        assert all(t.done() for t in tasks), "a new acquire had to wait: capacity was not freed"
        assert self.leases.queued_count == 0
        for task in tasks:
            self.leases.release(task.result(), ReleaseReason.CLIENT_RELEASE)
        await self.leases.wait_all_closed()
        assert self.leases.active_count == 0


async def collect(run: Run) -> BaseException | None:
    """Drain a Run's results; return the failure it ends with (None when it succeeded)."""
    try:
        async for _ in run.results():
            pass
    except Exception as exc:
        return exc
    return None


# ------------------------------------------------------------ client release vs client release


async def test_release_twice_in_sequence() -> None:
    h = Harness()
    lease, session = await h.acquire()
    first = await h.client_release(lease)
    second = await h.client_release(lease)
    assert first.released_now and not second.released_now
    assert (second.reason, second.released_at) == (first.reason, first.released_at)
    await h.check_released_once(lease, session, ReleaseReason.CLIENT_RELEASE)


@pytest.mark.parametrize("callers", [2, 5])
async def test_concurrent_client_releases_from_several_tasks(callers: int) -> None:
    h = Harness()
    lease, session = await h.acquire()
    outcomes = await asyncio.gather(*(h.client_release(lease) for _ in range(callers)))
    assert [o.released_now for o in outcomes].count(True) == 1
    assert {(o.reason, o.released_at) for o in outcomes} == {
        (ReleaseReason.CLIENT_RELEASE, outcomes[0].released_at)
    }
    await h.check_released_once(lease, session, ReleaseReason.CLIENT_RELEASE)


# ------------------------------------------------------------------ release vs TTL / idle


@pytest.mark.parametrize(
    ("spec", "expiry_reason", "due"),
    [
        pytest.param(TTL_FIRST, ReleaseReason.TTL_EXPIRED, TTL_S, id="ttl"),
        pytest.param(IDLE_FIRST, ReleaseReason.IDLE_TIMEOUT, IDLE_S, id="idle"),
    ],
)
@pytest.mark.parametrize("first", ["client", "expiry"])
async def test_client_release_vs_expiry_at_the_same_instant(
    spec: LeaseSpec, expiry_reason: ReleaseReason, due: float, first: str
) -> None:
    h = Harness()
    holder: list[Lease] = []
    outcomes: list[ReleaseOutcome] = []

    def client() -> None:
        outcomes.append(h.leases.release(holder[0], ReleaseReason.CLIENT_RELEASE))

    # Timers due at one instant fire in the order they were set: the client's Release is set
    # before the lease's own timers exist (it fires first) or after them (it fires second).
    if first == "client":
        h.clock.call_later(due, client)
    lease, session = await h.acquire(spec)
    holder.append(lease)
    if first == "expiry":
        h.clock.call_later(due, client)
    h.clock.advance(due)
    assert len(outcomes) == 1
    winner = ReleaseReason.CLIENT_RELEASE if first == "client" else expiry_reason
    assert outcomes[0].released_now is (first == "client")
    assert outcomes[0].reason is winner
    await h.check_released_once(lease, session, winner)


@pytest.mark.parametrize(
    ("spec", "due"),
    [pytest.param(TTL_FIRST, TTL_S, id="ttl"), pytest.param(IDLE_FIRST, IDLE_S, id="idle")],
)
async def test_client_release_just_before_expiry_disarms_it(spec: LeaseSpec, due: float) -> None:
    h = Harness()
    lease, session = await h.acquire(spec)
    h.clock.advance(due - 0.001)
    outcome = await h.client_release(lease)
    assert outcome.released_now
    h.clock.advance(10 * due)  # the expiry timers were cancelled and nothing fires later
    await h.check_released_once(lease, session, ReleaseReason.CLIENT_RELEASE)


async def test_ttl_and_idle_due_at_the_same_instant() -> None:
    h = Harness()
    lease, session = await h.acquire(LeaseSpec(EngineName.CHROMIUM, Isolation.CONTEXT, 30, 30))
    h.clock.advance(30)
    # The TTL timer was set first (on attach), so it wins; the idle check then finds it ended.
    await h.check_released_once(lease, session, ReleaseReason.TTL_EXPIRED)


# --------------------------------------------------------------------- expiry vs shutdown


@pytest.mark.parametrize("first", ["expiry", "drain"])
async def test_expiry_vs_drain(first: str) -> None:
    h = Harness()
    lease, session = await h.acquire()
    if first == "expiry":
        h.clock.advance(TTL_S)
        await h.leases.drain(0)
    else:
        await h.leases.drain(0)
        h.clock.advance(TTL_S)
    winner = ReleaseReason.TTL_EXPIRED if first == "expiry" else ReleaseReason.SHUTDOWN
    assert h.clock.pending() == []
    await h.check_released_once(lease, session, winner, drained=True)


async def test_expiry_while_drain_is_scheduled_but_not_yet_running() -> None:
    h = Harness()
    lease, session = await h.acquire()
    drain = asyncio.create_task(h.leases.drain(0))
    h.clock.advance(TTL_S)  # fires before the drain task gets to run
    await drain
    await h.check_released_once(lease, session, ReleaseReason.TTL_EXPIRED, drained=True)


async def test_expiry_during_drain_grace_period() -> None:
    h = Harness()
    lease, session = await h.acquire()
    run = h.start_run(lease)
    await h.engine.step_started.wait()
    drain = asyncio.create_task(h.leases.drain(30))
    await asyncio.sleep(0)  # the drain is now waiting for the Run in flight
    assert h.leases.draining and lease.released is None
    h.clock.advance(TTL_S)
    error = await collect(run)
    await drain
    assert isinstance(error, LeaseEnded) and error.reason == "ttl_expired"
    await h.check_released_once(lease, session, ReleaseReason.TTL_EXPIRED, drained=True)


# ------------------------------------------------------------------------- crash vs others


@pytest.mark.parametrize(
    ("cause", "crash_reason"),
    [
        (LostCause.ENGINE_CRASHED, ReleaseReason.ENGINE_CRASHED),
        (LostCause.PAGE_CRASHED, ReleaseReason.PAGE_CRASHED),
    ],
)
@pytest.mark.parametrize("first", ["crash", "release"])
async def test_crash_vs_client_release(
    cause: LostCause, crash_reason: ReleaseReason, first: str
) -> None:
    h = Harness()
    lease, session = await h.acquire()
    if first == "crash":
        session.crash(cause)
        outcome = await h.client_release(lease)
        assert not outcome.released_now and outcome.reason is crash_reason
    else:
        outcome = await h.client_release(lease)
        session.crash(cause)  # the release path detached the lost-callback first
        assert outcome.released_now
    winner = crash_reason if first == "crash" else ReleaseReason.CLIENT_RELEASE
    await h.check_released_once(lease, session, winner)


async def test_crash_and_release_in_one_synchronous_burst_while_close_is_pending() -> None:
    h = Harness()
    lease, session = await h.acquire()
    outcome = h.leases.release(lease, ReleaseReason.CLIENT_RELEASE)
    session.crash()  # before the close task has run
    h.leases.release(lease, ReleaseReason.ENGINE_CRASHED)
    assert outcome.released_now
    await h.check_released_once(lease, session, ReleaseReason.CLIENT_RELEASE)


@pytest.mark.parametrize("first", ["crash", "expiry"])
async def test_crash_vs_expiry_at_the_same_instant(first: str) -> None:
    h = Harness()
    holder: list[FakeSession] = []
    if first == "crash":
        h.clock.call_later(TTL_S, lambda: holder[0].crash())
    lease, session = await h.acquire()
    holder.append(session)
    if first == "expiry":
        h.clock.call_later(TTL_S, session.crash)
    h.clock.advance(TTL_S)
    winner = ReleaseReason.ENGINE_CRASHED if first == "crash" else ReleaseReason.TTL_EXPIRED
    await h.check_released_once(lease, session, winner)


@pytest.mark.parametrize("first", ["crash", "drain", "crash_during_grace"])
async def test_crash_vs_drain(first: str) -> None:
    h = Harness()
    lease, session = await h.acquire()
    winner = ReleaseReason.SHUTDOWN
    if first == "crash":
        session.crash()
        await h.leases.drain(0)
        winner = ReleaseReason.ENGINE_CRASHED
    elif first == "drain":
        await h.leases.drain(0)
        session.crash()
    else:
        run = h.start_run(lease)
        await h.engine.step_started.wait()
        drain = asyncio.create_task(h.leases.drain(30))
        await asyncio.sleep(0)
        assert h.leases.draining and lease.released is None
        session.crash()
        error = await collect(run)
        await drain
        assert isinstance(error, SessionCrashed) and error.cause == "engine_crashed"
        winner = ReleaseReason.ENGINE_CRASHED
    await h.check_released_once(lease, session, winner, drained=True)


# ------------------------------------------------- run cancellation (RELEASE_LEASE) vs release


@pytest.mark.parametrize(
    "order",
    [
        "release_then_cancel",  # Release lands while the step runs; the Run's cancel comes after
        "cancel_requested_then_release",  # cancel() has begun, the Run task has not reacted yet
        "cancel_done_then_release",  # the Run's stop finished (and released) before Release
        "gather_cancel_first",  # both as concurrent tasks, cancel scheduled first
        "gather_release_first",  # both as concurrent tasks, release scheduled first
    ],
)
async def test_run_cancel_with_release_policy_vs_client_release(order: str) -> None:
    h = Harness()
    lease, session = await h.acquire()
    run = h.start_run(lease, OnCancel.RELEASE_LEASE)
    await h.engine.step_started.wait()
    outcomes: list[ReleaseOutcome] = []
    if order == "release_then_cancel":
        outcomes.append(await h.client_release(lease))
        await run.cancel(CancelCause.CLIENT_CANCELLED)
        winner = ReleaseReason.CLIENT_RELEASE
    elif order == "cancel_requested_then_release":
        cancelling = asyncio.create_task(run.cancel(CancelCause.CLIENT_CANCELLED))
        await asyncio.sleep(0)  # cancel() has cancelled the Run task, which has not run since
        assert lease.released is None
        outcomes.append(h.leases.release(lease, ReleaseReason.CLIENT_RELEASE))
        await cancelling
        winner = ReleaseReason.CLIENT_RELEASE
    elif order == "cancel_done_then_release":
        await run.cancel(CancelCause.CLIENT_CANCELLED)
        assert run.stopped_in_browser
        outcomes.append(await h.client_release(lease))
        winner = ReleaseReason.RUN_CANCELLED
    elif order == "gather_cancel_first":
        _, outcome = await asyncio.gather(
            run.cancel(CancelCause.CLIENT_CANCELLED), h.client_release(lease)
        )
        outcomes.append(outcome)
        winner = ReleaseReason.CLIENT_RELEASE  # cancel() only requests; the Release is synchronous
    else:
        outcome, _ = await asyncio.gather(
            h.client_release(lease), run.cancel(CancelCause.CLIENT_CANCELLED)
        )
        outcomes.append(outcome)
        winner = ReleaseReason.CLIENT_RELEASE
    assert outcomes[0].reason is winner
    assert outcomes[0].released_now is (winner is ReleaseReason.CLIENT_RELEASE)
    error = await collect(run)
    assert error is not None
    assert session.resets == 0  # the session was closed, never merely reset
    await h.check_released_once(lease, session, winner)
    assert lease.runs_in_flight == 0 and not lease.run_tasks


async def test_run_deadline_with_release_policy_vs_ttl_expiry() -> None:
    h = Harness()
    lease, session = await h.acquire()
    run = h.start_run(lease, OnCancel.RELEASE_LEASE)
    await h.engine.step_started.wait()
    cancelling = asyncio.create_task(run.cancel(CancelCause.DEADLINE))
    await asyncio.sleep(0)
    h.clock.advance(TTL_S)  # the TTL fires between the cancel request and the Run's reaction
    await cancelling
    error = await collect(run)
    assert isinstance(error, LeaseEnded) and error.reason == "ttl_expired"
    await h.check_released_once(lease, session, ReleaseReason.TTL_EXPIRED)


# ----------------------------------------------------------- acquire in progress vs shutdown


@pytest.mark.parametrize("drain_as_task", [False, True])
async def test_acquire_opening_a_session_vs_drain(drain_as_task: bool) -> None:
    h = Harness()
    h.engine.open_gate = asyncio.Event()
    acquiring = asyncio.create_task(h.leases.acquire(TTL_FIRST, None))
    await asyncio.sleep(0)
    assert not acquiring.done()
    (lease,) = h.leases.active_leases()  # admitted, its session still being opened
    assert lease.session is None
    if drain_as_task:
        drain = asyncio.create_task(h.leases.drain(0))
        await asyncio.sleep(0)
        h.engine.open_gate.set()
        await drain
    else:
        await h.leases.drain(0)
        h.engine.open_gate.set()
    with pytest.raises(Unavailable):
        await acquiring
    await h.leases.wait_all_closed()
    (session,) = h.engine.all_sessions
    assert session.closed == 1
    assert h.engine.open_sessions == set()
    assert lease.released is not None and lease.released.reason is ReleaseReason.SHUTDOWN
    # The lease was never granted to anyone, so observers saw neither a grant nor a release.
    assert lease.id not in h.recorder.granted and h.recorder.count(lease.id) == 0
    assert h.leases.active_count == 0 and h.leases.queued_count == 0
    assert h.leases.owned_sessions() == set()
    with pytest.raises(Unavailable):
        await h.leases.acquire(TTL_FIRST, None)


async def test_queued_acquire_vs_drain() -> None:
    h = Harness()
    lease, session = await h.acquire()
    waiting = asyncio.create_task(h.leases.acquire(TTL_FIRST, None))
    await asyncio.sleep(0)
    assert h.leases.queued_count == 1
    await h.leases.drain(0)
    with pytest.raises(Unavailable):
        await waiting
    assert len(h.engine.all_sessions) == 1  # the waiter was never handed a session
    await h.check_released_once(lease, session, ReleaseReason.SHUTDOWN, drained=True)


async def test_slot_handed_to_a_waiter_then_drain_before_it_resumes() -> None:
    h = Harness()
    lease, session = await h.acquire()
    waiting = asyncio.create_task(h.leases.acquire(TTL_FIRST, None))
    await asyncio.sleep(0)
    h.engine.close_gate = asyncio.Event()
    outcome = h.leases.release(lease, ReleaseReason.CLIENT_RELEASE)
    await asyncio.sleep(0)
    assert h.leases.active_count == 0 and h.leases.closing_count == 1
    assert h.leases.queued_count == 1  # the closing session still holds the slot
    # The close finishes and hands the slot to the waiter; the drain task, scheduled in between,
    # runs (and ends the waiter's new lease) before the waiter resumes.
    h.engine.close_gate.set()
    drain = asyncio.create_task(h.leases.drain(0))
    with pytest.raises(Unavailable):
        await waiting
    await drain
    assert outcome.released_now
    await h.check_released_once(lease, session, ReleaseReason.CLIENT_RELEASE, drained=True)
    # The waiter's lease was ended by the drain before it had a session: no browser session may
    # be opened for it during shutdown (it would be a cold launch nobody can use).
    assert len(h.engine.all_sessions) == 1, "a session was opened for a lease the drain had ended"


@pytest.mark.parametrize(
    ("cause", "crash_reason"),
    [
        (LostCause.ENGINE_CRASHED, ReleaseReason.ENGINE_CRASHED),
        (LostCause.PAGE_CRASHED, ReleaseReason.PAGE_CRASHED),
    ],
)
async def test_session_that_died_before_it_was_attached_ends_its_lease_for_that_cause(
    cause: LostCause, crash_reason: ReleaseReason
) -> None:
    """The browser dies after the engine opened the session but before the lease table took it
    (no lost-callback was set yet): the Acquire is refused and the lease ends for the crash,
    once, not later as drift."""
    h = Harness()
    opened: list[FakeSession] = []
    open_session = h.engine.open_session

    async def open_then_die(*args: Any, **kwargs: Any) -> FakeSession:
        session = await open_session(*args, **kwargs)
        session.crash(cause)
        opened.append(session)
        return session

    h.engine.open_session = open_then_die  # type: ignore[method-assign]
    with pytest.raises(Unavailable, match=f"died while it was being opened \\({crash_reason}"):
        await h.leases.acquire(TTL_FIRST, None)
    [session] = opened
    [(lease_id, reason)] = h.recorder.released
    assert reason == crash_reason.value
    assert h.recorder.granted == [lease_id]  # granted, then ended: observers saw both, in order
    await h.leases.wait_all_closed()
    assert session.closed == 1 and h.engine.open_sessions == set()
    assert h.leases.active_count == 0 and h.leases.used_count == 0
