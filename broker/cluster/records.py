"""The cluster's records as the store reads them back: lease and node records, outcomes, and
the records' unit of time (microseconds since the epoch, by Redis's clock)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True)
class LeaseRecord:
    lease_id: str
    node: str
    tenant: str
    token_sha256: str  # hex
    engine: str
    reason: str  # '' while the lease is alive
    released_at_us: int
    node_address: str  # '' when the node is gone

    @property
    def ended(self) -> bool:
        return bool(self.reason)


@dataclass(frozen=True)
class NodeRecord:
    node_id: str
    address: str
    capacity: int
    used: int
    queued: int
    engines: tuple[str, ...]
    leases: int
    last_seen_ms: int  # since its last heartbeat, by Redis's clock
    draining: bool = False  # stopping: no new leases, its leases finish until its deadline


@dataclass(frozen=True)
class Finished:
    ended_now: bool
    reason: str
    released_at_us: int


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch, exactly (the records' unit)."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


def from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)
