"""Running steps on a lease: one Run at a time, bounded by the caller's deadline, stoppable.

A Run executes in a task of its own, owned by its lease, and streams step outcomes through a
small bounded buffer (backpressure.py): the next step waits until the reader has taken enough of
the last results, and the Run counts against its lease's Run limit until its stream closes. A
stream that still has not closed a little after its Run's deadline, or after its Run was cut
short (lease ended, cancel), is ended by the broker: a reader that never reads holds nothing for
long. When the caller's deadline passes or it cancels, the Run's task is cancelled and, still
holding the lease's run lock, it stops the work *in the browser* (closing the page aborts its
navigations and scripts) before the next Run may touch the session.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from enum import StrEnum
from typing import Any

from broker.errors import Cancelled, DeadlineExceeded, LeaseEnded, SessionCrashed, Unavailable
from broker.leases.backpressure import ResultBuffer
from broker.leases.lease import Lease, ReleaseReason
from broker.leases.table import LeaseTable
from broker.model.steps.base import OnCancel, RunOptions, StepErrorKind, StepOutcome

log = logging.getLogger("broker.runs")

# Playwright's own timeout for a step ends this much before the Run's deadline, so the browser
# gives up first and the broker's backstop rarely has to.
STEP_DEADLINE_MARGIN_S = 0.05
# A stream gets this long past its Run's deadline (or the Run's early end) to send what is left
# and close; then the broker ends it.
READER_GRACE_S = 5.0


class CancelCause(StrEnum):
    DEADLINE = "deadline_exceeded"
    CLIENT_CANCELLED = "client_cancelled"


class _DeadlineReached(Exception):
    """A step timed out because the Run's deadline capped it."""


class Run:
    def __init__(
        self,
        leases: LeaseTable,
        lease: Lease,
        options: RunOptions,
        timeout_s: float,
        default_step_timeout_s: float,
    ) -> None:
        self.leases = leases
        self.lease = lease
        self.options = options
        self.timeout_s = timeout_s
        self.default_step_timeout_s = default_step_timeout_s
        self.cause: CancelCause | None = None
        self.stopped_in_browser = False
        # Set when the Run stopped because its lease ended under it (crash, expiry, release).
        self._cut_short = False
        self._deadline = 0.0
        self._started = 0.0
        limits = leases.limits
        self._buffer = ResultBuffer(limits.run_buffer_results, limits.run_buffer_bytes)
        self._task: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[Any] | None = None
        self._closed = False
        self._reader_timers: list[asyncio.TimerHandle] = []

    def start(self, reader: asyncio.Task[Any] | None = None) -> None:
        """Start the Run. `reader`: the task that streams its results (the RPC's), ended by the
        broker if it stays open past the Run's deadline or end (READER_GRACE_S)."""
        # Run deadlines are the caller's real time (the event loop's clock), not the lease clock.
        loop = asyncio.get_running_loop()
        self._started = loop.time()
        self._deadline = self._started + self.timeout_s
        self._task = self.leases.start_run(
            self.lease, self._execute(), len(self.options.steps), self._ended
        )
        self._reader = reader
        if reader is not None:
            end_at = self._deadline + READER_GRACE_S
            self._reader_timers.append(loop.call_at(end_at, self._end_reader))

    def close(self) -> None:
        """The Run's stream closed (or never will be read): its place in the Run limit frees."""
        if self._closed or self._task is None:
            return
        self._closed = True
        for timer in self._reader_timers:
            timer.cancel()
        self.leases.run_closed(self.lease)

    def _end_reader(self) -> None:
        """The stream outstayed its Run (a reader that does not read): end it."""
        reader = self._reader
        if self._closed or reader is None:
            return
        log.info("ending a Run's stream its reader left unread", extra={"lease_id": self.lease.id})
        self.close()
        if reader is not asyncio.current_task() and not reader.done():
            reader.cancel()

    def _ended(self, task: asyncio.Task[None]) -> str:
        """What ended the Run, for the lease's trace; results() sees the end of its buffer."""
        lease = self.lease
        self._buffer.end()
        # Read here, so it counts as retrieved even when the caller left before results() did.
        failure = None if task.cancelled() else task.exception()
        if self._reader is not None and (task.cancelled() or failure or self._cut_short):
            timer = asyncio.get_running_loop().call_later(READER_GRACE_S, self._end_reader)
            self._reader_timers.append(timer)
        if self.cause is not None:
            return self.cause.value
        if lease.released is not None and task.cancelled():
            return f"lease ended: {lease.released.reason.value}"
        if failure is not None:
            return type(failure).__name__
        return ""

    async def results(self) -> AsyncIterator[StepOutcome]:
        """Step outcomes as they complete; raises the Run's failure, mapped to a domain error."""
        assert self._task is not None, "start() first"
        try:
            while (outcome := await self._buffer.get()) is not None:
                yield outcome
            await asyncio.wait({self._task})
            self._raise_failure(self._task)
        finally:
            self.close()

    async def cancel(self, cause: CancelCause) -> None:
        """The caller gave up: record why, stop the work in the browser, wait for that (bounded)."""
        if self.cause is None:
            self.cause = cause
        task = self._task
        if task is None or task.done():
            return
        task.cancel()
        await self.leases.run_cleanup(_wait_done(task))

    def _raise_failure(self, task: asyncio.Task[None]) -> None:
        released = self.lease.released
        if task.cancelled() or self._cut_short:
            if released is None:
                raise DeadlineExceeded(f"run {self.cause or 'cancelled'}")
            if released.reason in (ReleaseReason.ENGINE_CRASHED, ReleaseReason.PAGE_CRASHED):
                raise SessionCrashed(self.lease.id, released.reason.value, "released")
            if released.reason is ReleaseReason.SHUTDOWN:
                raise Unavailable("broker is shutting down; the lease was released")
            if released.reason is ReleaseReason.RUN_CANCELLED and self.cause is not None:
                if self.cause is CancelCause.CLIENT_CANCELLED:
                    raise Cancelled("run cancelled by the client; the lease was released")
                raise DeadlineExceeded(f"run {self.cause.value}; the lease was released")
            raise LeaseEnded(self.lease.id, released.reason.value, released.released_at.isoformat())
        exc = task.exception()
        if isinstance(exc, TimeoutError):
            raise DeadlineExceeded("the run's deadline passed") from None
        if exc is not None:
            raise exc

    async def _execute(self) -> None:
        lease = self.lease
        async with asyncio.timeout(self.timeout_s), lease.run_lock:
            if lease.released is not None or lease.session is None:
                self._cut_short = True
                return  # results() reports the lease's end
            try:
                await self._run_steps()
            except (asyncio.CancelledError, _DeadlineReached) as stopped:
                if self.cause is None and (
                    isinstance(stopped, _DeadlineReached)
                    or asyncio.get_running_loop().time() >= self._deadline
                ):
                    self.cause = CancelCause.DEADLINE
                ended = lease.released.reason.value if lease.released else "cancelled"
                cause = self.cause.value if self.cause is not None else f"lease ended: {ended}"
                self.leases.run_cancelled(lease, cause)
                await self.leases.run_cleanup(self._stop_in_browser())
                if isinstance(stopped, _DeadlineReached):
                    raise TimeoutError from None
                raise

    async def _run_steps(self) -> None:
        lease = self.lease
        session = lease.session
        assert session is not None
        for index, step in enumerate(self.options.steps):
            remaining = self._deadline - asyncio.get_running_loop().time() - STEP_DEADLINE_MARGIN_S
            if remaining <= 0:
                raise TimeoutError
            wanted = step.timeout_s or self.default_step_timeout_s
            capped_by_deadline = remaining < wanted
            outcome = await session.execute(index, step, min(wanted, remaining))
            if lease.released is None and outcome.error_kind is StepErrorKind.TIMEOUT:
                if capped_by_deadline:
                    # The browser gave up because the Run's deadline is here: that ends the Run.
                    self.leases.step_done(lease, outcome)
                    raise _DeadlineReached
                if step.kind.lingers:
                    # The step gave up, the browser may not have: quiet it before anything else
                    # (the next step, the next Run) touches the page.
                    await self.leases.run_cleanup(self._quiet_after_timeout(outcome))
            self.leases.step_done(lease, outcome)
            if lease.released is not None:
                self._cut_short = True
                return  # the session died under the step (or its reset); results() says why
            await self._buffer.put(outcome, self._waiting_on_reader)
            if not outcome.ok and not self.options.continue_on_error:
                return

    def _waiting_on_reader(self, waiting: bool) -> None:
        assert self._task is not None
        self.leases.run_waiting_on_reader(self._task, waiting)

    async def _quiet_after_timeout(self, outcome: StepOutcome) -> None:
        lease = self.lease
        session = lease.session
        if session is None or lease.released is not None:
            return
        try:
            await session.reset_page()
            outcome.error_message += "; the page was reset to stop the work in the browser"
        except asyncio.CancelledError:
            if lease.released is None:  # abandoned past the cleanup bound (see _stop_in_browser)
                self.leases.release(lease, ReleaseReason.RUN_CANCELLED)
            raise
        except Exception as exc:
            if lease.released is None:
                log.warning("could not reset the page after a step timed out; ending the lease")
                self.leases.release(lease, ReleaseReason.RUN_CANCELLED)
            log.debug("page reset after a timeout failed: %s", exc)

    async def _stop_in_browser(self) -> None:
        """Abort what the browser is doing for this Run, then leave the lease as the policy says."""
        lease = self.lease
        if lease.released is not None:
            return  # the release path is closing the whole session
        if self.options.on_cancel is OnCancel.RELEASE_LEASE:
            self.leases.release(lease, ReleaseReason.RUN_CANCELLED)
            await self.leases.wait_closed(lease.id)
            self.stopped_in_browser = True
            return
        session = lease.session
        assert session is not None
        try:
            await session.reset_page()
            self.stopped_in_browser = True
        except asyncio.CancelledError:
            # Abandoned past the cleanup bound: a half-reset session (its route still held) is
            # not lent on.
            if lease.released is None:
                self.leases.release(lease, ReleaseReason.RUN_CANCELLED)
            raise
        except Exception as exc:
            if lease.released is not None:
                # Ended meanwhile (e.g. the client released it): its context is being closed,
                # which is why no page could open; the release path finishes the job.
                log.debug("page reset cut short: the lease ended (%s)", exc)
                return
            log.exception("could not reset the page after a cancelled run; ending the lease")
            self.leases.release(lease, ReleaseReason.RUN_CANCELLED)
            await self.leases.wait_closed(lease.id)


async def _wait_done(task: asyncio.Task[None]) -> None:
    await asyncio.wait({task})
