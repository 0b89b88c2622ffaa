"""Cluster mode: where a call is answered. A call on a lease: by this node's lease table, by the
node that holds the lease, or by the cluster's record of how it ended; an Acquire: here, on
another node with room, or after a wait in the cluster's queue.

No gRPC here: the edge (`broker.api.forwarding`) sends what is routed to another node, and
passes the seconds left of the caller's deadline where a wait is bounded by it.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from enum import Enum

from broker.cluster.node import ClusterNode
from broker.cluster.records import Finished, LeaseRecord, NodeRecord, from_us, to_us
from broker.errors import LeaseEnded, LeaseNotFound, PermissionDenied
from broker.leases.lease import ReleaseOutcome, ReleaseReason, token_digest
from broker.leases.table import LeaseTable
from broker.leases.tenants import Tenant
from broker.model.options import EngineName


class Ended(Enum):
    """What a call on a lease the cluster recorded as ended gets."""

    REFUSED = "refused"  # LeaseEnded, with the recorded outcome (Run, KeepAlive)
    ANSWERED = "answered"  # the recorded outcome is the answer (Release)
    SERVED = "served"  # the node that held it serves the call while it is reachable (GetTrace)


@dataclass(frozen=True)
class Holder:
    """The node a call on a lease goes to."""

    node_id: str
    address: str  # '' when its entry is gone from the store (dead, not yet reaped)


class Router:
    def __init__(self, node: ClusterNode, leases: LeaseTable, queue_limit: int) -> None:
        self.node = node
        self.leases = leases
        self.queue_limit = queue_limit

    async def route(
        self, lease_id: str, token: str, tenant: Tenant, ended: Ended = Ended.REFUSED
    ) -> Holder | ReleaseOutcome | None:
        """Where a call on a lease is answered: None for this node's lease table (it holds the
        lease, remembers its end, or answers that it does not know it), the node that holds
        it, or (`Ended.ANSWERED`) the outcome the cluster recorded."""
        if self.leases.knows(lease_id):
            return None
        record = await self.node.store.lookup(lease_id)
        if record is None:
            return None  # the local lookup answers: unknown lease
        check_owner(record, token, tenant)
        if record.ended:
            if ended is Ended.REFUSED:
                raise ended_error(record)
            if ended is Ended.ANSWERED:
                return outcome_of(record)
        if record.node == self.node.node_id:
            return None  # (this node's, as the local table answers; never a call to itself)
        if ended is Ended.SERVED and not record.node_address:
            return None  # (its node is gone: the local table answers)
        return Holder(record.node, record.node_address)

    def room_here(self) -> bool:
        """A free slot here for a new lease (a draining node has none: it takes no new ones)."""
        return not self.leases.full and not self.leases.draining

    async def placement(
        self, tenant: Tenant, engine: EngineName, timeout_s: float | None
    ) -> NodeRecord | None:
        """Where an Acquire is served; None for here. Nobody waiting and room here: here.
        Nobody waiting and a node with room: there. Else it queues cluster-wide, for at most
        `timeout_s` (the caller's deadline)."""
        if await self.node.store.queue_length() == 0:
            if self.room_here():
                return None
            target = self.node.place(engine)
            if target is not None:
                return target
        return await self.node.wait_for_room(
            tenant, engine, self.queue_limit, timeout_s, self.room_here
        )


def check_owner(record: LeaseRecord, token: str, tenant: Tenant) -> None:
    """Another tenant's lease answers as an unknown one does; a wrong token is refused."""
    if record.tenant != tenant.name:
        raise LeaseNotFound(record.lease_id)
    if not hmac.compare_digest(record.token_sha256, token_digest(token).hex()):
        raise PermissionDenied(record.lease_id)


def ended_error(record: LeaseRecord) -> LeaseEnded:
    return LeaseEnded(record.lease_id, record.reason, from_us(record.released_at_us).isoformat())


def outcome_of(record: LeaseRecord) -> ReleaseOutcome:
    return ReleaseOutcome(ReleaseReason(record.reason), from_us(record.released_at_us), False)


def agreed(local: ReleaseOutcome, cluster: Finished | None) -> ReleaseOutcome:
    """This node's Release outcome, unless the cluster had recorded another end first."""
    if cluster is None or (
        # (this node's own outcome, whether this call or the heartbeat's journal wrote it)
        cluster.reason == local.reason.value and cluster.released_at_us == to_us(local.released_at)
    ):
        return local
    return ReleaseOutcome(ReleaseReason(cluster.reason), from_us(cluster.released_at_us), False)
