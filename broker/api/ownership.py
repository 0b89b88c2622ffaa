"""The cluster's records as the gRPC edge answers them: ownership checks and outcomes."""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Any

import grpc
from grpc import aio

from broker.api.forwarding import NO_ROOM, PLACED
from broker.cluster.store import Finished, LeaseRecord, from_us, to_us
from broker.errors import LeaseEnded, LeaseNotFound, PermissionDenied
from broker.leases.lease import ReleaseOutcome, ReleaseReason, token_digest
from broker.leases.tenants import Tenant


def placed(context: aio.ServicerContext[Any, Any]) -> bool:
    """An Acquire another node already placed here: it is served (or queued) here."""
    return any(key == PLACED for key, _ in context.invocation_metadata() or ())


async def no_room(context: aio.ServicerContext[Any, Any]) -> None:
    """A placed Acquire found this node full: the entry node places it again (or queues it)."""
    await context.abort(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "this node has no room for the placed Acquire",
        trailing_metadata=((NO_ROOM, "1"),),
    )


def check_owner(record: LeaseRecord, token: str, tenant: Tenant) -> None:
    """Another tenant's lease answers as an unknown one does; a wrong token is refused."""
    if record.tenant != tenant.name:
        raise LeaseNotFound(record.lease_id)
    if not hmac.compare_digest(record.token_sha256, token_digest(token).hex()):
        raise PermissionDenied(record.lease_id)


def _released_at(us: int) -> datetime:
    return from_us(us)


def ended_error(record: LeaseRecord) -> LeaseEnded:
    return LeaseEnded(
        record.lease_id, record.reason, _released_at(record.released_at_us).isoformat()
    )


def outcome_of(record: LeaseRecord) -> ReleaseOutcome:
    return ReleaseOutcome(ReleaseReason(record.reason), _released_at(record.released_at_us), False)


def agreed(local: ReleaseOutcome, cluster: Finished | None) -> ReleaseOutcome:
    """This node's Release outcome, unless the cluster had recorded another end first."""
    if cluster is None or (
        # (this node's own outcome, whether this call or the heartbeat's journal wrote it)
        cluster.reason == local.reason.value and cluster.released_at_us == to_us(local.released_at)
    ):
        return local
    return ReleaseOutcome(
        ReleaseReason(cluster.reason), _released_at(cluster.released_at_us), False
    )
