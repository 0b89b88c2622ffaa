"""Runs on a lease with the fake engine: ordering, activity, cancellation policies, and failures."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from broker.api.errors import status_code
from broker.engines.base import LostCause
from broker.errors import Cancelled, DeadlineExceeded, LeaseEnded, SessionCrashed
from broker.leases.lease import Lease, LeaseSpec, ReleaseReason
from broker.leases.limits import Limits
from broker.leases.runs import CancelCause, Run
from broker.leases.table import LeaseTable
from broker.model.options import EngineName, Isolation
from broker.model.steps.base import OnCancel, RunOptions, Step, StepOutcome
from broker.model.steps.reading import Evaluate
from tests.fakes import FakeClock, FakeEngine, FakeSession, ReleaseRecorder

SPEC = LeaseSpec(EngineName.CHROMIUM, Isolation.CONTEXT, ttl_s=600, idle_timeout_s=30)
RUN_TIMEOUT_S = 60.0


class Harness:
    def __init__(self) -> None:
        self.engine = FakeEngine()
        self.engine.step_gate = asyncio.Event()  # steps block until the test opens the gate
        self.clock = FakeClock()
        self.recorder = ReleaseRecorder()
        self.leases = LeaseTable(
            {EngineName.CHROMIUM: self.engine},
            self.clock,
            Limits(capacity=2, ttl_jitter_fraction=0.0),
            self.recorder,
        )

    @property
    def gate(self) -> asyncio.Event:
        assert self.engine.step_gate is not None
        return self.engine.step_gate

    async def acquire(self) -> tuple[Lease, FakeSession]:
        lease = await self.leases.acquire(SPEC, None)
        assert isinstance(lease.session, FakeSession)
        return lease, lease.session

    def run(
        self,
        lease: Lease,
        *expressions: str,
        on_cancel: OnCancel = OnCancel.KEEP_LEASE,
        timeout_s: float = RUN_TIMEOUT_S,
    ) -> Run:
        steps = tuple(Step(Evaluate(e), 0.0) for e in expressions or ("1",))
        run = Run(self.leases, lease, RunOptions(steps, on_cancel), timeout_s, 30.0)
        run.start()
        return run

    async def step_in_flight(self) -> None:
        await self.engine.step_started.wait()
        self.engine.step_started.clear()

    async def finish(self) -> None:
        """Release what is left and check the session was closed exactly once."""
        for lease in self.leases.active_leases():
            self.leases.release(lease, ReleaseReason.CLIENT_RELEASE)
        await self.leases.wait_all_closed()
        assert self.leases.active_count == 0
        assert all(s.closed == 1 for s in self.engine.all_sessions)
        assert self.engine.open_sessions == set()


async def results(run: Run) -> list[StepOutcome]:
    return [outcome async for outcome in run.results()]


def evaluated(session: FakeSession) -> list[str]:
    return [s.action.expression for s in session.executed if isinstance(s.action, Evaluate)]


async def test_two_runs_on_one_lease_execute_in_fifo_order() -> None:
    h = Harness()
    lease, session = await h.acquire()
    first = h.run(lease, "a1", "a2")
    second = h.run(lease, "b1")
    third = h.run(lease, "c1")
    await h.step_in_flight()
    for _ in range(5):
        await asyncio.sleep(0)
    assert evaluated(session) == ["a1"]  # the others wait for the lease's run lock
    assert lease.runs_in_flight == 3
    h.gate.set()
    got = await asyncio.gather(results(first), results(second), results(third))
    assert evaluated(session) == ["a1", "a2", "b1", "c1"]
    assert [[o.json for o in r] for r in got] == [['"a1"', '"a2"'], ['"b1"'], ['"c1"']]
    assert lease.runs_in_flight == 0 and lease.run_count == 3 and lease.step_count == 4
    await h.finish()


async def test_a_running_run_counts_as_activity_for_the_idle_timer() -> None:
    h = Harness()
    lease, _ = await h.acquire()
    run = h.run(lease)
    await h.step_in_flight()
    h.clock.advance(SPEC.idle_timeout_s * 4)  # far past the idle timeout, the Run still working
    assert lease.released is None
    h.gate.set()
    assert len(await results(run)) == 1
    # The Run's end is the last activity: the idle timeout counts from there.
    h.clock.advance(SPEC.idle_timeout_s - 1)
    assert lease.released is None
    h.clock.advance(2)
    assert lease.released is not None and lease.released.reason is ReleaseReason.IDLE_TIMEOUT
    await h.finish()
    assert h.recorder.released == [(lease.id, "idle_timeout")]


async def test_cancel_with_keep_lease_resets_the_page_once_and_keeps_the_lease() -> None:
    h = Harness()
    lease, session = await h.acquire()
    run = h.run(lease, on_cancel=OnCancel.KEEP_LEASE)
    await h.step_in_flight()
    # The deadline and the client's cancel both arrive; the page is reset once.
    await asyncio.gather(run.cancel(CancelCause.DEADLINE), run.cancel(CancelCause.CLIENT_CANCELLED))
    await run.cancel(CancelCause.CLIENT_CANCELLED)
    assert session.resets == 1
    assert run.stopped_in_browser and run.cause is CancelCause.DEADLINE
    with pytest.raises(DeadlineExceeded):
        await results(run)
    assert lease.released is None and h.leases.active_count == 1
    assert session.closed == 0 and lease.runs_in_flight == 0
    assert h.leases.get(lease.id, lease.token) is lease
    # The lease is usable: the next Run runs on the same session.
    h.gate.set()
    after = await results(h.run(lease, "next"))
    assert [o.json for o in after] == ['"next"'] and session.resets == 1
    await h.finish()
    assert h.recorder.released == [(lease.id, "client_release")]


async def test_a_page_that_cannot_be_reset_ends_the_lease_as_run_cancelled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = Harness()
    lease, session = await h.acquire()
    assert session.resets == 0

    def broken(_: FakeSession) -> None:
        raise RuntimeError("renderer gone")

    h.engine.reset_hook = broken
    run = h.run(lease, on_cancel=OnCancel.KEEP_LEASE)
    await h.step_in_flight()
    await run.cancel(CancelCause.DEADLINE)
    with pytest.raises(DeadlineExceeded):
        await results(run)
    assert h.recorder.released == [(lease.id, "run_cancelled")]
    assert "could not reset the page" in caplog.text and session.resets == 1
    await h.finish()


async def test_a_lease_released_during_the_page_reset_keeps_its_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The client releases while the cancelled Run's page is being replaced: the context is
    closing, so the reset fails; that is the release at work, not an error, and it stands."""
    h = Harness()
    lease, session = await h.acquire()
    assert session.resets == 0

    def released_meanwhile(_: FakeSession) -> None:
        h.leases.release(lease, ReleaseReason.CLIENT_RELEASE)
        raise RuntimeError("Failed to find browser context")

    h.engine.reset_hook = released_meanwhile
    run = h.run(lease, on_cancel=OnCancel.KEEP_LEASE)
    await h.step_in_flight()
    await run.cancel(CancelCause.CLIENT_CANCELLED)
    with pytest.raises(LeaseEnded):
        await results(run)
    assert h.recorder.released == [(lease.id, "client_release")]
    assert "could not reset the page" not in caplog.text and session.resets == 1
    await h.finish()


async def test_cancel_with_release_lease_ends_the_lease_as_run_cancelled() -> None:
    h = Harness()
    lease, session = await h.acquire()
    run = h.run(lease, on_cancel=OnCancel.RELEASE_LEASE)
    await h.step_in_flight()
    await run.cancel(CancelCause.CLIENT_CANCELLED)
    assert lease.released is not None and lease.released.reason is ReleaseReason.RUN_CANCELLED
    assert run.stopped_in_browser and session.resets == 0
    assert session.closed == 1  # cancel() returns once the browser side is closed
    with pytest.raises(Cancelled):
        await results(run)
    assert h.leases.active_count == 0
    with pytest.raises(LeaseEnded) as ended:
        h.leases.get(lease.id, lease.token)
    assert ended.value.reason == "run_cancelled"
    await h.finish()
    assert h.recorder.released == [(lease.id, "run_cancelled")]


async def test_run_deadline_stops_the_work_and_keeps_the_lease() -> None:
    h = Harness()
    lease, session = await h.acquire()
    run = h.run(lease, timeout_s=0.3)  # a short real deadline: the thing under test
    await h.step_in_flight()
    with pytest.raises(DeadlineExceeded):
        await results(run)
    assert run.cause is CancelCause.DEADLINE and run.stopped_in_browser
    assert session.resets == 1 and lease.released is None
    await h.finish()


@pytest.mark.parametrize(
    ("cause", "reason"),
    [
        (LostCause.ENGINE_CRASHED, ReleaseReason.ENGINE_CRASHED),
        (LostCause.PAGE_CRASHED, ReleaseReason.PAGE_CRASHED),
    ],
)
async def test_crash_mid_run_raises_session_crashed(
    cause: LostCause, reason: ReleaseReason
) -> None:
    h = Harness()
    lease, session = await h.acquire()
    run = h.run(lease, "a", "b")
    await h.step_in_flight()
    session.crash(cause)
    with pytest.raises(SessionCrashed) as crashed:
        await results(run)
    assert crashed.value.cause == reason.value and crashed.value.lease_fate == "released"
    assert status_code(crashed.value) is grpc.StatusCode.ABORTED
    assert lease.released is not None and lease.released.reason is reason
    assert evaluated(session) == ["a"] and session.resets == 0
    await h.finish()
    assert h.recorder.released == [(lease.id, reason.value)]


@pytest.mark.parametrize("reason", [ReleaseReason.CLIENT_RELEASE, ReleaseReason.TTL_EXPIRED])
async def test_release_mid_run_raises_lease_ended_with_the_reason(reason: ReleaseReason) -> None:
    h = Harness()
    lease, session = await h.acquire()
    run = h.run(lease, "a", "b")
    await h.step_in_flight()
    if reason is ReleaseReason.TTL_EXPIRED:
        h.clock.advance(SPEC.ttl_s)
    else:
        h.leases.release(lease, reason)
    with pytest.raises(LeaseEnded) as ended:
        await results(run)
    assert ended.value.reason == reason.value and ended.value.lease_id == lease.id
    assert status_code(ended.value) is grpc.StatusCode.FAILED_PRECONDITION
    assert lease.released is not None
    assert ended.value.released_at_iso == lease.released.released_at.isoformat()
    assert evaluated(session) == ["a"] and session.resets == 0
    await h.finish()
    assert h.recorder.released == [(lease.id, reason.value)]


async def test_run_started_on_a_lease_released_before_it_ran() -> None:
    h = Harness()
    lease, _ = await h.acquire()
    run = h.run(lease)
    h.leases.release(lease, ReleaseReason.CLIENT_RELEASE)  # before the Run's task ever ran
    with pytest.raises(LeaseEnded):
        await results(run)
    assert lease.runs_in_flight == 0 and not lease.run_tasks
    await h.finish()


async def test_run_cancelled_while_waiting_for_the_lock_does_not_touch_the_page() -> None:
    h = Harness()
    lease, session = await h.acquire()
    first = h.run(lease, "first")
    await h.step_in_flight()
    waiting = h.run(lease, "never", on_cancel=OnCancel.KEEP_LEASE)
    for _ in range(3):
        await asyncio.sleep(0)
    await waiting.cancel(CancelCause.CLIENT_CANCELLED)
    assert session.resets == 0 and not waiting.stopped_in_browser
    assert lease.released is None  # its work never started: nothing to stop, no lease to end
    with pytest.raises(DeadlineExceeded):
        await results(waiting)
    h.gate.set()
    assert [o.json for o in await results(first)] == ['"first"']
    assert evaluated(session) == ["first"] and session.resets == 0
    assert lease.runs_in_flight == 0 and not lease.run_lock.locked()
    # The lock was handed on cleanly: a later Run runs.
    assert [o.json for o in await results(h.run(lease, "later"))] == ['"later"']
    await h.finish()


async def test_a_finished_run_is_not_reported_as_cut_short_by_a_later_release() -> None:
    h = Harness()
    lease, _ = await h.acquire()
    h.gate.set()
    run = h.run(lease, "a", "b")
    for _ in range(5):
        await asyncio.sleep(0)
    assert not lease.run_tasks  # done, its results not yet read by the caller
    assert lease.runs_in_flight == 1  # its stream is open: it still counts against the lease
    h.leases.release(lease, ReleaseReason.CLIENT_RELEASE)
    assert [o.json for o in await results(run)] == ['"a"', '"b"']
    assert lease.runs_in_flight == 0
    await h.finish()


async def test_a_run_whose_caller_left_leaves_no_unretrieved_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The caller's Run RPC ended (deadline) before it read the results: the Run's failure is
    already accounted for, and asyncio must not log it as never retrieved."""
    import gc

    h = Harness()
    lease, _session = await h.acquire()
    run = h.run(lease, timeout_s=0.0)  # no time left for the first step: the Run fails at once
    # The deadline's cancel was recorded just as the Run failed on its own.
    run.cause = CancelCause.DEADLINE
    for _ in range(100):  # a few loop turns: the Run task runs and fails
        if not lease.run_tasks:
            break
        await asyncio.sleep(0)
    assert not lease.run_tasks
    del run
    gc.collect()
    assert "never retrieved" not in caplog.text
    h.gate.set()
    await h.finish()
