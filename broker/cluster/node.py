"""This broker as one node of a cluster: heartbeat, the lease records it writes, the survivors'
duty, and what it does when the store goes away or declares it dead (docs/cluster.md).

The node's own lease table stays the truth about its browsers; Redis is the cluster's shared
record of who holds which lease and how each ended. Every outcome this node decides goes to a
journal first and is written from there, so one decided while Redis is away is written when it
returns; the store's first-wins script makes the cluster's record exactly-once either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from broker.cluster.records import Finished, NodeRecord, to_us
from broker.cluster.store import ClusterStore, StoreUnavailable
from broker.common.cleanup import TaskSet
from broker.errors import BrokerError, DeadlineExceeded, Unavailable
from broker.leases.events import LeaseObserver
from broker.leases.lease import Lease, ReleaseOutcome, ReleaseReason, token_digest
from broker.leases.table import LeaseTable
from broker.leases.tenants import Tenant
from broker.model.options import EngineName

log = logging.getLogger("broker.cluster")

QUEUE_POLL_S = 0.05  # how often a queued Acquire checks its place and the nodes' room
_PRUNE_AT = 100_000  # ids of recorded leases kept before those no longer known are dropped
_HOLD_S = 600.0  # a quota slot held for an Acquire without a deadline (its browser opening)


@dataclass(frozen=True)
class _Ending:
    """An outcome this node decided, until the store has it."""

    lease_id: str
    reason: str
    released_at_us: int
    tenant: str
    token_hex: str
    engine: str


@dataclass(frozen=True)
class ClusterView:
    node_id: str
    store_reachable: bool
    nodes: tuple[NodeRecord, ...]


def new_node_id() -> str:
    return f"{socket.gethostname()[:40]}-{secrets.token_hex(4)}"


class ClusterNode(LeaseObserver):
    def __init__(
        self,
        store: ClusterStore,
        leases: LeaseTable,
        address: str,
        engines: list[EngineName],
        heartbeat_s: float,
        dead_after_s: float,
        tombstone_ttl_s: float,
        on_reaped: Callable[[str, str], None] | None = None,
    ) -> None:
        self.store = store
        self.leases = leases
        self.address = address
        self.engines = [e.value for e in engines]
        self.heartbeat_s = heartbeat_s
        self.dead_after_s = dead_after_s
        self.tombstone_ttl_s = tombstone_ttl_s
        self.on_reaped = on_reaped
        self.node_id = new_node_id()
        self.joined = False  # the store knows this node (and so it may grant leases)
        self.store_reachable = False
        self._reachable_since = 0.0
        self.nodes: tuple[NodeRecord, ...] = ()
        self.queue_depth = 0  # Acquires waiting cluster-wide, as the last heartbeat read them
        self._recorded: dict[str, Lease] = {}  # leases the store holds as live, by id
        self._published: set[str] = set()  # every lease ever recorded (pruned to what is known)
        self._journal: dict[str, _Ending] = {}
        self._writes = TaskSet()
        self._wake = asyncio.Event()
        self._stopping = False

    # ---------------------------------------------------------------- heartbeat

    def stop(self) -> None:
        """Shutdown: the heartbeat ends after the beat in progress. (A cancel alone is not
        enough: one landing in a Redis call can be swallowed by the client.)"""
        self._stopping = True
        self._wake.set()

    def beat_now(self) -> None:
        """Beat without waiting for the next heartbeat (the node began to drain)."""
        self._wake.set()

    async def run_forever(self) -> None:
        while not self._stopping:
            try:
                await self.tick()
            except Exception:
                log.exception("cluster heartbeat failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.heartbeat_s):
                    await self._wake.wait()
            if not self._stopping:
                self._wake.clear()

    async def tick(self) -> None:
        """One heartbeat: beat, rejoin or fence, reap silent nodes, write the journal."""
        try:
            answer = await self.store.beat(
                self.node_id,
                self.address,
                self.leases.limits.capacity,
                self.leases.used_count,
                self.leases.queued_count,
                self.engines,
                int(self.dead_after_s * 1000 * 2),
                self.leases.draining,
            )
            if answer == "dead":
                self._fence()
                return
            if answer == "new":
                await self._republish()
            self.joined = True
            if not self.store_reachable:
                self._reachable_since = time.monotonic()
            self.store_reachable = True
            # Only a node that has itself reached the store for dead_after_s may judge others
            # silent: after an outage every node's last beat is old, and they need one beat.
            if time.monotonic() - self._reachable_since >= self.dead_after_s:
                for node, lease_id in await self.store.reap(
                    self.dead_after_s, self.tombstone_ttl_s
                ):
                    self._reaped(node, lease_id)
            await self._flush()
            self.nodes = tuple(await self.store.nodes())
            self.queue_depth = await self.store.queue_depth()
        except Unavailable:
            if self.store_reachable:
                log.error("cluster store unreachable: new leases are refused until it returns")
            self.store_reachable = False

    def _reaped(self, node: str, lease_id: str) -> None:
        if lease_id:
            log.warning("lease of a dead node ended", extra={"node": node, "lease_id": lease_id})
        else:
            log.error("node declared dead", extra={"node": node})
        if self.on_reaped is not None:
            self.on_reaped(node, lease_id)

    def _fence(self) -> None:
        """Declared dead while alive (cut off longer than dead_after_s): the cluster has ended
        this node's leases node_lost, so end them here too and rejoin empty, under a new id."""
        log.error("this node was declared dead: ending its leases and rejoining")
        for lease in self.leases.active_leases():
            self.leases.release(lease, ReleaseReason.NODE_LOST)
        self._recorded.clear()
        self._published.clear()
        self._journal.clear()
        self.node_id = new_node_id()
        self.joined = False
        self._wake.set()

    async def _republish(self) -> None:
        """The store does not know this node: first beat, or Redis lost its data. Write back
        every live lease and every outcome this node still remembers."""
        if self._recorded or self._journal:
            log.warning("cluster store forgot this node: writing its leases back")
        for lease in list(self._recorded.values()):
            if lease.released is None:
                await self._grant(lease, quota=None)
        self._published = {lease_id for lease_id in self._published if self.leases.knows(lease_id)}
        for tomb in self.leases.tombstones():
            if tomb.lease_id not in self._published:
                continue  # never known cluster-wide
            self._journal.setdefault(
                tomb.lease_id,
                _Ending(
                    tomb.lease_id,
                    tomb.reason.value,
                    to_us(tomb.released_at),
                    tomb.owner,
                    tomb.token_sha256.hex(),
                    "",
                ),
            )

    # ------------------------------------------------------------ lease records

    def _check_joined(self) -> None:
        if not self.joined or not self.store_reachable:
            raise Unavailable(
                "the cluster's store (Redis) cannot be reached: no new leases until it returns"
            )

    async def reserve(self, tenant: Tenant, timeout_s: float | None) -> str | None:
        """Hold a slot of the tenant's cluster-wide quota before a browser is opened for it
        (LimitExceeded at once when its quota is full); None for a tenant without one. The
        slot is held for the Acquire's deadline, then lapses; `record_grant` takes it over."""
        if tenant.max_leases is None:
            return None
        self._check_joined()
        reservation = f"{self.node_id}:{secrets.token_hex(8)}"
        hold_s = (_HOLD_S if timeout_s is None else timeout_s) + max(2.0, 3 * self.heartbeat_s)
        await self.store.reserve(tenant.name, reservation, tenant.max_leases, int(hold_s * 1000))
        return reservation

    def unreserve(self, tenant: Tenant, reservation: str | None) -> None:
        """Give a held slot back (the Acquire failed); a no-op once a grant took it over."""
        if reservation is not None:
            self._writes.spawn(self._unreserve(tenant.name, reservation))

    async def _unreserve(self, tenant: str, reservation: str) -> None:
        with contextlib.suppress(Unavailable):  # (else it lapses with the Acquire's deadline)
            await self.store.unreserve(tenant, reservation)

    async def record_grant(self, lease: Lease, reservation: str | None = None) -> None:
        """Make a lease this node granted known cluster-wide; refused while the store is away.
        The tenant's quota is checked again as it is written."""
        self._check_joined()
        await self._grant(lease, lease.spec.tenant.max_leases, reservation or "")

    async def _grant(self, lease: Lease, quota: int | None, reservation: str = "") -> None:
        expires = lease.expires_at_wall.isoformat() if lease.expires_at_wall else ""
        # Counted as recorded before the reply: if the reply is lost (timeout, cancel) Redis
        # may have written the record, so the lease's end is journaled like any recorded
        # lease's, and the FINISH script settles it by reading the record back: it ends the
        # record if it is there, and leaves a tombstone (so a late GRANT writes nothing) if not.
        self._recorded[lease.id] = lease
        try:
            await self.store.grant(
                lease.id,
                self.node_id,
                lease.owner,
                token_digest(lease.token).hex(),
                lease.spec.engine.value,
                expires,
                quota,
                reservation,
            )
        except BaseException as error:
            if isinstance(error, BrokerError) and not isinstance(error, StoreUnavailable):
                self._recorded.pop(lease.id, None)  # Redis answered: nothing was written
            else:
                log.warning("a lease's GRANT got no reply; its end settles the record")
                self._published.add(lease.id)
            raise
        self._published.add(lease.id)
        if len(self._published) > _PRUNE_AT:
            self._published = {i for i in self._published if self.leases.knows(i)}
        if lease.released is not None:  # ended while the record was being written
            self.lease_released(lease, lease.released)

    def lease_released(self, lease: Lease, outcome: ReleaseOutcome) -> None:
        if self._recorded.pop(lease.id, None) is None:
            return  # never known cluster-wide (refused, or granted while the store was away)
        self._journal[lease.id] = _Ending(
            lease.id,
            outcome.reason.value,
            to_us(outcome.released_at),
            lease.owner,
            token_digest(lease.token).hex(),
            lease.spec.engine.value,
        )
        self._wake.set()

    def lease_extended(self, lease: Lease) -> None:
        if lease.id in self._recorded and lease.expires_at_wall is not None:
            expires = lease.expires_at_wall.isoformat()
            self._writes.spawn(self._extend(lease.id, expires))

    async def _extend(self, lease_id: str, expires_at: str) -> None:
        with contextlib.suppress(Unavailable):  # informational; the owner keeps the real TTL
            await self.store.extend(lease_id, expires_at)

    async def confirm_end(self, lease_id: str) -> Finished | None:
        """Write this lease's outcome now; the cluster's outcome (the first recorded), or None
        while the store is away (the journal writes it later)."""
        ending = self._journal.get(lease_id)
        if ending is None:
            return None
        try:
            finished = await self._write(ending)
        except Unavailable:
            return None
        self._journal.pop(lease_id, None)
        return finished

    async def _flush(self) -> None:
        for lease_id, ending in list(self._journal.items()):
            await self._write(ending)
            if self._journal.get(lease_id) is ending:
                del self._journal[lease_id]

    async def _write(self, ending: _Ending) -> Finished:
        finished = await self.store.finish(
            ending.lease_id,
            ending.reason,
            ending.released_at_us,
            self.tombstone_ttl_s,
            self.node_id,
            ending.tenant,
            ending.token_hex,
            ending.engine,
        )
        if finished.reason != ending.reason:
            log.warning(
                "lease outcome was recorded first by the cluster",
                extra={"lease_id": ending.lease_id, "reason": finished.reason},
            )
        return finished

    @property
    def pending_outcomes(self) -> int:
        return len(self._journal)

    def gauges(self) -> dict[str, float]:
        """The metrics' cluster gauges, from the last heartbeat (read off the event loop)."""
        return {
            "broker.cluster.nodes": len(self.nodes),
            "broker.cluster.leases": sum(node.leases for node in self.nodes),
            "broker.cluster.store_reachable": float(self.store_reachable),
            "broker.cluster.pending_outcomes": len(self._journal),
            "broker.cluster.queue.depth": self.queue_depth,
        }

    # ---------------------------------------------------------------- placement

    async def wait_for_room(
        self,
        tenant: Tenant,
        engine: EngineName,
        queue_limit: int,
        timeout_s: float | None,
        room_here: Callable[[], bool],
    ) -> NodeRecord | None:
        """Wait in the cluster's queue (first in, first out) until this Acquire is first in line
        and some node has room: None for this node, else the node to place it on."""
        ticket = f"{self.node_id}:{secrets.token_hex(8)}"
        ttl_ms = int(max(2.0, 3 * self.heartbeat_s) * 1000)  # outlives a missed poll, not a node
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        await self.store.enqueue(ticket, tenant.name, queue_limit, tenant.max_queued, ttl_ms)
        try:
            while True:
                place = await self.store.queue_place(ticket, ttl_ms)
                if place < 0:
                    raise Unavailable("this Acquire lost its place in the cluster's queue")
                if place == 0:
                    if room_here():
                        return None
                    self.nodes = tuple(await self.store.nodes())
                    target = self.place(engine)
                    if target is not None:
                        return target
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise DeadlineExceeded(
                        "deadline passed while queued for capacity in the cluster"
                    )
                await asyncio.sleep(QUEUE_POLL_S if left is None else min(QUEUE_POLL_S, left))
        finally:
            with contextlib.suppress(Unavailable):
                await asyncio.shield(self.store.leave_queue(ticket))

    def mark_full(self, node_id: str) -> None:
        """A node said it has no room: so it is, until its next heartbeat says otherwise."""
        self.nodes = tuple(
            replace(node, used=node.capacity) if node.node_id == node_id else node
            for node in self.nodes
        )

    def place(self, engine: EngineName) -> NodeRecord | None:
        """Another live node with room for a lease of `engine`, the least loaded; None if none.
        A draining node has no room, whatever its numbers say."""
        fresh_ms = self.dead_after_s * 1000
        candidates = [
            node
            for node in self.nodes
            if node.node_id != self.node_id
            and not node.draining
            and engine.value in node.engines
            and node.used + node.queued < node.capacity
            and node.last_seen_ms < fresh_ms
        ]
        return min(candidates, key=lambda n: (n.used + n.queued) / n.capacity, default=None)

    async def view(self) -> ClusterView:
        """The cluster now (the last heartbeat's view while the store cannot be reached)."""
        with contextlib.suppress(Unavailable):
            self.nodes = tuple(await self.store.nodes())
        return ClusterView(self.node_id, self.store_reachable, self.nodes)

    async def leave(self) -> None:
        """Shutdown: write what is left of the journal (best effort), then close the store."""
        with contextlib.suppress(Unavailable):
            await self._flush()
            await self.store.leave(self.node_id)
        await self._writes.wait()
        await self.store.close()
