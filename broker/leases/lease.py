"""The lease: what a client holds, and the record of how it ended."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from broker.leases.tenants import OPERATOR, Tenant
from broker.model.attach import AttachOptions
from broker.model.options import CamoufoxOptions, ContextOptions, EngineName, Isolation

if TYPE_CHECKING:
    from broker.common.clock import TimerHandle
    from broker.engines.base import Session


class ReleaseReason(StrEnum):
    CLIENT_RELEASE = "client_release"
    TTL_EXPIRED = "ttl_expired"
    IDLE_TIMEOUT = "idle_timeout"
    RUN_CANCELLED = "run_cancelled"
    ENGINE_CRASHED = "engine_crashed"
    PAGE_CRASHED = "page_crashed"
    SHUTDOWN = "shutdown"
    ACQUIRE_FAILED = "acquire_failed"
    DRIFT_REPAIRED = "drift_repaired"
    NODE_LOST = "node_lost"  # cluster mode: the node holding it died or was cut off
    DRAINED = "drained"  # its broker drained (SIGTERM) and the lease outlived drain_timeout_s
    CLIENT_DISCONNECTED = "client_disconnected"  # its last attached client left (on_disconnect END)


@dataclass(frozen=True)
class LeaseSpec:
    engine: EngineName
    isolation: Isolation
    ttl_s: float
    idle_timeout_s: float
    context: ContextOptions = field(default_factory=ContextOptions)
    labels: tuple[tuple[str, str], ...] = ()
    # Set only with engine camoufox and isolation browser (decode.lease_spec checks it).
    camoufox: CamoufoxOptions | None = None
    tenant: Tenant = OPERATOR  # who acquires the lease, and so owns it
    attach: AttachOptions | None = None  # an attachable lease (Chromium, ISOLATION_BROWSER)


@dataclass(frozen=True)
class ReleaseOutcome:
    reason: ReleaseReason
    released_at: datetime
    released_now: bool


@dataclass(eq=False)
class Lease:
    """One lease. Only the lease table (LeaseTable) mutates it; `released` is set exactly once."""

    spec: LeaseSpec
    granted_at: float
    requested_at: datetime | None = None  # wall time Acquire began (before any queueing)
    id: str = field(default_factory=lambda: "lease-" + secrets.token_urlsafe(12))
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    # The secret in an attachable lease's connect URL: a capability of its own, so the URL never
    # carries the lease token (which also Releases), and it dies with the lease.
    attach_token: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    session: Session | None = None
    warm: bool = False
    queue_wait_s: float = 0.0
    expires_at: float = 0.0
    expires_at_wall: datetime | None = None
    last_activity: float = 0.0
    runs_in_flight: int = 0
    run_count: int = 0
    step_count: int = 0
    released: ReleaseOutcome | None = None
    # One Run drives the page at a time; asyncio.Lock hands it over in FIFO order.
    run_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    run_tasks: set[asyncio.Task[None]] = field(default_factory=set)
    ttl_timer: TimerHandle | None = None
    warn_timer: TimerHandle | None = None
    idle_timer: TimerHandle | None = None

    @property
    def owner(self) -> str:
        return self.spec.tenant.name

    def token_matches(self, token: str) -> bool:
        return secrets.compare_digest(self.token.encode(), token.encode())

    def attach_token_matches(self, token: str) -> bool:
        return secrets.compare_digest(self.attach_token.encode(), token.encode())


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
