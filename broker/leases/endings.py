"""How the table names a lease's end when its cause comes from elsewhere (the browser, a drain)."""

from __future__ import annotations

from broker.engines.base import LostCause
from broker.leases.lease import ReleaseReason

LOST_REASONS = {
    LostCause.ENGINE_CRASHED: ReleaseReason.ENGINE_CRASHED,
    LostCause.PAGE_CRASHED: ReleaseReason.PAGE_CRASHED,
}


def ended_while_opening(reason: ReleaseReason) -> str:
    """What an Acquire says when its lease ended while its session was being opened."""
    if reason is ReleaseReason.SHUTDOWN:
        return "broker is shutting down"
    return f"the browser session died while it was being opened ({reason.value})"
