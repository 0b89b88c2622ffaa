"""Tenants: who owns a lease, what they may use, and how much of it.

Every lease belongs to the tenant that acquired it. Another tenant cannot see, run, extend or
release it: to them it does not exist. With authentication off there is one tenant, the
operator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from broker.egress.policy import EgressRules
from broker.errors import LimitExceeded, NotPermitted
from broker.model.options import EngineName, Isolation


@dataclass(frozen=True)
class Tenant:
    name: str
    # Sees operators' details in GetStatus (engines' paths, every tenant's numbers).
    admin: bool = False
    max_leases: int | None = None  # concurrent leases; None: only the broker's capacity
    max_queued: int | None = None  # Acquires waiting at once; None: only the broker's queue
    engines: frozenset[EngineName] | None = None  # None: every enabled engine
    isolations: frozenset[Isolation] | None = None  # None: both
    egress: EgressRules = field(default_factory=EgressRules)  # added to the broker's rules

    def check_allowed(self, engine: EngineName, isolation: Isolation) -> None:
        if self.engines is not None and engine not in self.engines:
            raise NotPermitted(f"tenant {self.name!r} may not use engine {engine.value}")
        if self.isolations is not None and isolation not in self.isolations:
            raise NotPermitted(f"tenant {self.name!r} may not use isolation {isolation.value}")

    def check_quota(self, active: int, queued: int, would_queue: bool) -> None:
        if self.max_leases is not None and active >= self.max_leases:
            raise LimitExceeded(
                "tenant_max_leases",
                f"tenant {self.name!r} holds {active} leases, its maximum; release one first",
            )
        if would_queue and self.max_queued is not None and queued >= self.max_queued:
            raise LimitExceeded(
                "tenant_max_queued",
                f"tenant {self.name!r} has {queued} Acquires waiting, its maximum",
                retry_after_s=1.0,
            )


# With authentication off every caller is this tenant: the operator on a trusted network.
OPERATOR = Tenant("operator", admin=True)
