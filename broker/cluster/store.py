"""The cluster's lease table in Redis: nodes, lease records and their outcomes.

Every write that decides something is one Lua script, so Redis runs it atomically: the first
outcome recorded for a lease wins, whichever node or cause recorded it, and every later attempt
gets that outcome back. Times in the records are Redis's own clock (`TIME`), so nodes' clocks
need not agree. Keys (P is `cluster_name`):

    P:nodes               sorted set: node id -> last heartbeat (ms, Redis time)
    P:node:<id>           hash: address, capacity, used, queued, engines, draining (expires
                          when silent)
    P:dead:<id>           a node declared dead: it may not record anything again (kept a day)
    P:node-leases:<id>    set: the live leases a node holds
    P:tenant-leases:<t>   set: a tenant's live leases, cluster-wide (its quota)
    P:tenant-held:<t>     sorted set: quota slots held for Acquires opening a browser -> expiry
    P:lease:<id>          hash: node, tenant, token (SHA-256 hex), engine, expires_at and, once
                          ended, reason and released_at; expires tombstone_ttl_s after the end
    P:queue               sorted set: Acquires waiting for capacity anywhere, by arrival
    P:queue:<tenant>      sorted set: the same, one tenant's (its max_queued)
    P:ticket:<id>         string: a waiting Acquire's tenant; expires unless its node renews it
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from broker.cluster import scripts
from broker.cluster.records import Finished, LeaseRecord, NodeRecord
from broker.errors import LimitExceeded, QueueFull, Unavailable


class StoreUnavailable(Unavailable):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"the cluster's store (Redis) cannot be reached: {type(cause).__name__}")


class ClusterStore:
    def __init__(self, url: str, prefix: str, timeout_s: float = 1.0) -> None:
        self.prefix = prefix
        # (Any: redis-py annotates its replies as one union for its sync and async clients.)
        self.redis: Any = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            health_check_interval=0,
        )
        self._beat = self.redis.register_script(scripts.BEAT)
        self._reap = self.redis.register_script(scripts.REAP)
        self._grant = self.redis.register_script(scripts.GRANT)
        self._reserve = self.redis.register_script(scripts.RESERVE)
        self._unreserve = self.redis.register_script(scripts.UNRESERVE)
        self._finish = self.redis.register_script(scripts.FINISH)
        self._extend = self.redis.register_script(scripts.EXTEND)
        self._enqueue = self.redis.register_script(scripts.ENQUEUE)
        self._place = self.redis.register_script(scripts.PLACE)
        self._leave_queue = self.redis.register_script(scripts.LEAVE)
        self._queue_depth = self.redis.register_script(scripts.QUEUE_DEPTH)

    async def close(self) -> None:
        await self.redis.aclose()

    async def _call(self, script: Any, *args: object) -> Any:
        try:
            return await script(keys=[], args=[self.prefix, *args])
        except RedisError as exc:
            raise StoreUnavailable(exc) from exc

    async def beat(
        self,
        node: str,
        address: str,
        capacity: int,
        used: int,
        queued: int,
        engines: list[str],
        expire_ms: int,
        draining: bool = False,
    ) -> str:
        return str(
            await self._call(
                self._beat,
                node,
                address,
                capacity,
                used,
                queued,
                ",".join(engines),
                expire_ms,
                "1" if draining else "0",
            )
        )

    async def reap(self, dead_after_s: float, tombstone_ttl_s: float) -> list[tuple[str, str]]:
        """Declare silent nodes dead; (node, lease) of each lease this call ended node_lost
        (and (node, '') per node declared dead)."""
        flat = await self._call(self._reap, int(dead_after_s * 1000), int(tombstone_ttl_s))
        return list(zip(flat[::2], flat[1::2], strict=True))

    async def grant(
        self,
        lease_id: str,
        node: str,
        tenant: str,
        token_hex: str,
        engine: str,
        expires_at: str,
        max_leases: int | None,
        reservation: str = "",
    ) -> None:
        """Record a live lease, checking the tenant's quota again (a `reservation` of it, held
        while the browser opened, becomes the lease's slot)."""
        answer = await self._call(
            self._grant,
            lease_id,
            node,
            tenant,
            token_hex,
            engine,
            expires_at,
            -1 if max_leases is None else max_leases,
            reservation,
        )
        if answer == "quota":
            raise _over_quota(tenant, max_leases)
        if answer == "dead":
            raise Unavailable("this node was declared dead by the cluster; it is rejoining")

    async def reserve(self, tenant: str, reservation: str, max_leases: int, ttl_ms: int) -> None:
        """Hold one slot of the tenant's cluster-wide quota (before a browser is opened for it);
        LimitExceeded when its leases and held slots fill it."""
        if await self._call(self._reserve, tenant, reservation, max_leases, ttl_ms) == "quota":
            raise _over_quota(tenant, max_leases)

    async def unreserve(self, tenant: str, reservation: str) -> None:
        await self._call(self._unreserve, tenant, reservation)

    async def finish(
        self,
        lease_id: str,
        reason: str,
        released_at_us: int,
        ttl_s: float,
        node: str,
        tenant: str,
        token_hex: str,
        engine: str,
    ) -> Finished:
        ended, winner, at = await self._call(
            self._finish,
            lease_id,
            reason,
            released_at_us,
            int(ttl_s),
            node,
            tenant,
            token_hex,
            engine,
        )
        return Finished(bool(ended), str(winner), int(at))

    async def extend(self, lease_id: str, expires_at: str) -> None:
        await self._call(self._extend, lease_id, expires_at)

    async def enqueue(
        self, ticket: str, tenant: str, queue_limit: int, max_queued: int | None, ttl_ms: int
    ) -> None:
        """Join the cluster's queue of Acquires waiting for capacity (last in line)."""
        answer = await self._call(
            self._enqueue,
            ticket,
            tenant,
            queue_limit,
            -1 if max_queued is None else max_queued,
            ttl_ms,
        )
        if answer == "full":
            raise QueueFull(queue_limit, 1.0)
        if answer == "tenant":
            raise LimitExceeded(
                "tenant_max_queued",
                f"tenant {tenant!r} has {max_queued} Acquires waiting across the cluster, its "
                "maximum",
                retry_after_s=1.0,
            )

    async def queue_place(self, ticket: str, ttl_ms: int) -> int:
        """The ticket's place in line (0: next), renewing it; -1 if it is no longer queued."""
        return int(await self._call(self._place, ticket, ttl_ms))

    async def leave_queue(self, ticket: str) -> None:
        await self._call(self._leave_queue, ticket)

    async def queue_length(self) -> int:
        try:
            return int(await self.redis.zcard(f"{self.prefix}:queue"))
        except RedisError as exc:
            raise StoreUnavailable(exc) from exc

    async def queue_depth(self) -> int:
        """The Acquires waiting in the cluster's queue, expired tickets left out."""
        return int(await self._call(self._queue_depth))

    async def leave(self, node: str) -> None:
        """A node shutting down (its leases already ended): gone at once, not reaped later."""
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.zrem(f"{self.prefix}:nodes", node)
                pipe.delete(f"{self.prefix}:node:{node}", f"{self.prefix}:node-leases:{node}")
                await pipe.execute()
        except RedisError as exc:
            raise StoreUnavailable(exc) from exc

    async def lookup(self, lease_id: str) -> LeaseRecord | None:
        key = f"{self.prefix}:lease:{lease_id}"
        try:
            fields = await self.redis.hgetall(key)
            if not fields:
                return None
            address = await self.redis.hget(f"{self.prefix}:node:{fields['node']}", "address")
            if not address and not fields.get("reason"):
                # The node's entry went between the two reads: reaped (which ended this lease
                # node_lost in the same script) or expired. The outcome, if there is one now.
                fields = await self.redis.hgetall(key) or fields
        except RedisError as exc:
            raise StoreUnavailable(exc) from exc
        return LeaseRecord(
            lease_id,
            fields.get("node", ""),
            fields.get("tenant", ""),
            fields.get("token", ""),
            fields.get("engine", ""),
            fields.get("reason", ""),
            int(fields.get("released_at") or 0),
            address or "",
        )

    async def nodes(self) -> list[NodeRecord]:
        """The live nodes, as they last reported themselves."""
        try:
            now_s, now_us = await self.redis.time()
            beats = await self.redis.zrange(f"{self.prefix}:nodes", 0, -1, withscores=True)
            async with self.redis.pipeline(transaction=False) as pipe:
                for node, _ in beats:
                    pipe.hgetall(f"{self.prefix}:node:{node}")
                    pipe.scard(f"{self.prefix}:node-leases:{node}")
                answers = await pipe.execute()
        except RedisError as exc:
            raise StoreUnavailable(exc) from exc
        now_ms = now_s * 1000 + now_us // 1000
        found = []
        for (node, beat), info, leases in zip(beats, answers[::2], answers[1::2], strict=True):
            if not info:
                continue
            found.append(
                NodeRecord(
                    node,
                    info.get("address", ""),
                    int(info.get("capacity", 0)),
                    int(info.get("used", 0)),
                    int(info.get("queued", 0)),
                    tuple(e for e in info.get("engines", "").split(",") if e),
                    int(leases),
                    max(0, now_ms - int(beat)),
                    info.get("draining") == "1",
                )
            )
        return found

    async def live_lease_count(self) -> int:
        """Every node's live leases, summed."""
        return sum(node.leases for node in await self.nodes())


def _over_quota(tenant: str, max_leases: int | None) -> LimitExceeded:
    return LimitExceeded(
        "tenant_max_leases",
        f"tenant {tenant!r} holds its maximum of {max_leases} leases across the cluster; "
        "release one first",
    )
