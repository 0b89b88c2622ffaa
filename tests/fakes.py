"""Deterministic stand-ins for unit tests: a clock that moves only when told, an engine with no browser."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from broker.egress.policy import EgressRules
from broker.egress.proxy import BlockListener, EgressGateway
from broker.engines.base import (
    Availability,
    EngineCensus,
    LostCallback,
    LostCause,
    RecyclePolicy,
    ResultLimits,
)
from broker.leases.events import LeaseObserver
from broker.leases.lease import Lease, ReleaseOutcome
from broker.model.attach import AttachOptions
from broker.model.options import BrowserOptions, ContextOptions, EngineName, Isolation
from broker.model.steps.base import Step, StepOutcome
from broker.model.steps.reading import Evaluate


class FakeTimer:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """Time stands still until `advance()`, which fires due timers in order."""

    def __init__(self) -> None:
        self._now = 1000.0
        self._start_wall = datetime(2030, 1, 1, tzinfo=UTC)
        self._timers: list[tuple[float, int, FakeTimer, Callable[[], None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def wall(self) -> datetime:
        return self._start_wall + timedelta(seconds=self._now - 1000.0)

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer()
        heapq.heappush(
            self._timers, (self._now + max(0.0, delay), next(self._seq), timer, callback)
        )
        return timer

    def advance(self, seconds: float) -> None:
        target = self._now + seconds
        while self._timers and self._timers[0][0] <= target:
            due, _, timer, callback = heapq.heappop(self._timers)
            self._now = max(self._now, due)
            if not timer.cancelled:
                callback()
        self._now = target

    def pending(self) -> list[float]:
        return sorted(due for due, _, timer, _ in self._timers if not timer.cancelled)


@dataclass(eq=False)
class FakeSession:
    engine: EngineName
    isolation: Isolation
    options: ContextOptions
    owner: FakeEngine
    closed: int = 0  # how many times close() ran: must end at exactly 1
    resets: int = 0
    lost: bool = False
    lost_cause: LostCause | None = None  # set by crash(): a death the session reported
    retiring: bool = False
    executed: list[Step] = field(default_factory=list)
    egress_rules: EgressRules | None = None  # the tenant rules bound when it was lent
    _lost_callback: LostCallback | None = None

    @property
    def alive(self) -> bool:
        return not self.lost and self.closed == 0

    def set_lost_callback(self, callback: LostCallback | None) -> None:
        self._lost_callback = callback

    def bind_egress(self, rules: EgressRules, on_blocked: BlockListener | None) -> None:
        self.egress_rules = rules

    def crash(self, cause: LostCause = LostCause.ENGINE_CRASHED) -> None:
        self.lost = True
        self.lost_cause = cause
        if self._lost_callback is not None:
            self._lost_callback(self, cause)

    def keep_trace(self, path: str, max_bytes: int) -> None:
        pass

    async def execute(self, index: int, step: Step, timeout_s: float) -> StepOutcome:
        self.executed.append(step)
        gate = self.owner.step_gate
        if gate is not None:
            self.owner.step_started.set()
            await gate.wait()
        value = step.action.expression if isinstance(step.action, Evaluate) else ""
        return StepOutcome(index=index, action=step.name, json=f'"{value}"')

    async def reset_page(self) -> None:
        self.resets += 1
        if self.owner.reset_hook is not None:
            self.owner.reset_hook(self)

    async def close(self) -> None:
        self.closed += 1
        gate = self.owner.close_gate
        if gate is not None:
            await gate.wait()
        self.owner.open_sessions.discard(self)


class FakeEngine:
    """Opens FakeSessions; `open_gate`, `step_gate` and `close_gate` hold those mid-flight."""

    def __init__(self, name: EngineName = EngineName.CHROMIUM, available: bool = True) -> None:
        self.name = name
        self._available = available
        self.open_sessions: set[FakeSession] = set()
        self.all_sessions: list[FakeSession] = []
        self.open_gate: asyncio.Event | None = None
        self.step_gate: asyncio.Event | None = None
        self.close_gate: asyncio.Event | None = None
        self.step_started = asyncio.Event()
        self.fail_next_open: Exception | None = None
        # Runs inside FakeSession.reset_page (e.g. to fail it, or to release the lease meanwhile).
        self.reset_hook: Callable[[FakeSession], None] | None = None
        self.closed = False
        self.recycling = RecyclePolicy()
        self.result_limits = ResultLimits()
        self.egress: EgressGateway | None = None

    def use_egress(self, gateway: EgressGateway | None) -> None:
        self.egress = gateway

    def availability(self) -> Availability:
        if self._available:
            return Availability(True, "fake")
        return Availability(False, "fake engine switched off")

    async def open_session(
        self,
        isolation: Isolation,
        options: ContextOptions,
        browser_options: BrowserOptions | None = None,
        *,
        tenant: str = "",
        attach: AttachOptions | None = None,
    ) -> FakeSession:
        if self.open_gate is not None:
            await self.open_gate.wait()
        if self.fail_next_open is not None:
            error, self.fail_next_open = self.fail_next_open, None
            raise error
        session = FakeSession(self.name, isolation, options, self)
        self.open_sessions.add(session)
        self.all_sessions.append(session)
        return session

    def live_sessions(self) -> list[FakeSession]:
        return [s for s in self.open_sessions if s.alive]

    async def census_async(self, max_age_s: float = 0.5) -> EngineCensus:
        return self.census()

    def cached_census(self) -> EngineCensus:
        return self.census()

    def census(self) -> EngineCensus:
        return EngineCensus(
            browsers=1, contexts=len(self.open_sessions), pages=len(self.open_sessions)
        )

    async def check_memory(self) -> None:
        return None

    async def reclose(self) -> int:
        return 0

    async def close(self) -> None:
        self.closed = True
        for session in list(self.open_sessions):
            await session.close()


class ReleaseRecorder(LeaseObserver):
    """Every release event, to check that each lease ended exactly once."""

    def __init__(self) -> None:
        self.released: list[tuple[str, str]] = []
        self.granted: list[str] = []
        # The session each lease was granted with (a released lease lets go of it once closed).
        self.sessions: dict[str, FakeSession] = {}

    def lease_granted(self, lease: Lease) -> None:
        self.granted.append(lease.id)
        assert isinstance(lease.session, FakeSession)
        self.sessions[lease.id] = lease.session

    def lease_released(self, lease: Lease, outcome: ReleaseOutcome) -> None:
        self.released.append((lease.id, outcome.reason.value))

    def count(self, lease_id: str) -> int:
        return sum(1 for lid, _ in self.released if lid == lease_id)
