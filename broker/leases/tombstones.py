"""Tombstones: what is kept of ended leases, so that late calls get the original outcome.

A tombstone is a fixed, small record (no session, no request, no credentials; the token only as
a digest), kept for `tombstone_ttl_s` and at most `tombstone_max` of them, oldest dropped first.
A lease that was never handed to its caller leaves none.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime

from broker.errors import LeaseNotFound, PermissionDenied
from broker.leases.lease import ReleaseReason, token_digest
from broker.leases.tenants import Tenant


@dataclass(frozen=True, slots=True)
class Tombstone:
    """What is kept of a lease after it ends: enough to answer a late call, nothing more."""

    lease_id: str
    owner: str
    token_sha256: bytes = field(repr=False)
    reason: ReleaseReason
    released_at: datetime
    kept_since: float  # the lease clock's time of release, for expiry

    def token_matches(self, token: str) -> bool:
        return secrets.compare_digest(self.token_sha256, token_digest(token))


class Tombstones:
    def __init__(self, ttl_s: float, max_kept: int) -> None:
        self.ttl_s = ttl_s
        self.max_kept = max_kept
        self._kept: OrderedDict[str, Tombstone] = OrderedDict()

    def __len__(self) -> int:
        return len(self._kept)

    def add(self, tombstone: Tombstone, now: float) -> None:
        self._kept[tombstone.lease_id] = tombstone
        cutoff = now - self.ttl_s
        while self._kept:
            oldest = next(iter(self._kept.values()))
            if len(self._kept) <= self.max_kept and oldest.kept_since >= cutoff:
                break
            self._kept.popitem(last=False)

    def __contains__(self, lease_id: str) -> bool:
        return lease_id in self._kept

    def all(self) -> list[Tombstone]:
        return list(self._kept.values())

    def find(self, lease_id: str, token: str, tenant: Tenant) -> Tombstone:
        """The caller's tombstone; another tenant's answers as an unknown lease does."""
        tomb = self._kept.get(lease_id)
        if tomb is None or tomb.owner != tenant.name:
            raise LeaseNotFound(lease_id)
        if not tomb.token_matches(token):
            raise PermissionDenied(lease_id)
        return tomb
