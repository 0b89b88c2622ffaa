"""Lease lifecycle events, so telemetry and audit trails watch the lease logic without living in it."""

from __future__ import annotations

from broker.egress.proxy import Blocked
from broker.leases.lease import Lease, ReleaseOutcome
from broker.model.steps.base import StepOutcome


class LeaseObserver:
    """Override what you need; every hook is synchronous and must not raise or block."""

    def lease_queued(self, queued: int) -> None: ...

    def lease_granted(self, lease: Lease) -> None: ...

    def lease_extended(self, lease: Lease) -> None: ...

    def lease_released(self, lease: Lease, outcome: ReleaseOutcome) -> None: ...

    def lease_expiring(self, lease: Lease, seconds_left: float) -> None: ...

    def run_started(self, lease: Lease, steps: int) -> None: ...

    def step_finished(self, lease: Lease, outcome: StepOutcome) -> None: ...

    def run_cancelled(self, lease: Lease, cause: str) -> None: ...

    def run_finished(self, lease: Lease, duration_s: float, error: str) -> None: ...

    def drift_repaired(self, what: str, detail: str) -> None: ...

    def egress_blocked(self, lease: Lease, blocked: Blocked) -> None: ...


class ObserverList(LeaseObserver):
    """Fans each event out to several observers."""

    def __init__(self, observers: list[LeaseObserver] | None = None) -> None:
        self.observers: list[LeaseObserver] = list(observers or [])

    def add(self, observer: LeaseObserver) -> None:
        self.observers.append(observer)

    def lease_queued(self, queued: int) -> None:
        for o in self.observers:
            o.lease_queued(queued)

    def lease_granted(self, lease: Lease) -> None:
        for o in self.observers:
            o.lease_granted(lease)

    def lease_extended(self, lease: Lease) -> None:
        for o in self.observers:
            o.lease_extended(lease)

    def lease_released(self, lease: Lease, outcome: ReleaseOutcome) -> None:
        for o in self.observers:
            o.lease_released(lease, outcome)

    def lease_expiring(self, lease: Lease, seconds_left: float) -> None:
        for o in self.observers:
            o.lease_expiring(lease, seconds_left)

    def run_started(self, lease: Lease, steps: int) -> None:
        for o in self.observers:
            o.run_started(lease, steps)

    def step_finished(self, lease: Lease, outcome: StepOutcome) -> None:
        for o in self.observers:
            o.step_finished(lease, outcome)

    def run_cancelled(self, lease: Lease, cause: str) -> None:
        for o in self.observers:
            o.run_cancelled(lease, cause)

    def run_finished(self, lease: Lease, duration_s: float, error: str) -> None:
        for o in self.observers:
            o.run_finished(lease, duration_s, error)

    def drift_repaired(self, what: str, detail: str) -> None:
        for o in self.observers:
            o.drift_repaired(what, detail)

    def egress_blocked(self, lease: Lease, blocked: Blocked) -> None:
        for o in self.observers:
            o.egress_blocked(lease, blocked)
