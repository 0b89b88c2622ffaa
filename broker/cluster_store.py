"""The cluster's lease table in Redis: nodes, lease records and their outcomes.

Every write that decides something is one Lua script, so Redis runs it atomically: the first
outcome recorded for a lease wins, whichever node or cause recorded it, and every later attempt
gets that outcome back. Times in the records are Redis's own clock (`TIME`), so nodes' clocks
need not agree. Keys (P is `cluster_name`):

    P:nodes               sorted set: node id -> last heartbeat (ms, Redis time)
    P:node:<id>           hash: address, capacity, used, queued, engines (expires when silent)
    P:dead                set: nodes declared dead (a dead node may not record anything again)
    P:node-leases:<id>    set: the live leases a node holds
    P:tenant-leases:<t>   set: a tenant's live leases, cluster-wide (its quota)
    P:lease:<id>          hash: node, tenant, token (SHA-256 hex), engine, expires_at and, once
                          ended, reason and released_at; expires tombstone_ttl_s after the end
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from broker.errors import LimitExceeded, Unavailable

# Shared by the scripts that end leases: sets the outcome unless one is already there.
_END = """
local function end_lease(p, id, reason, at, ttl)
  local key = p .. ':lease:' .. id
  local current = redis.call('HGET', key, 'reason')
  if current and current ~= '' then
    return {0, current, redis.call('HGET', key, 'released_at')}
  end
  redis.call('HSET', key, 'reason', reason, 'released_at', at)
  redis.call('EXPIRE', key, ttl)
  local node = redis.call('HGET', key, 'node')
  local tenant = redis.call('HGET', key, 'tenant')
  if node then redis.call('SREM', p .. ':node-leases:' .. node, id) end
  if tenant then redis.call('SREM', p .. ':tenant-leases:' .. tenant, id) end
  return {1, reason, at}
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function now_us_string()  -- exact: Lua's tostring would round a number this large
  local t = redis.call('TIME')
  return t[1] .. string.format('%06d', tonumber(t[2]))
end
"""

# ARGV: prefix, node, address, capacity, used, queued, engines, expire_ms.
# Returns 'dead' (declared dead: may not rejoin under this id), 'new' (unknown: first beat, or
# the store lost its data) or 'ok'.
_BEAT = """
local p, node = ARGV[1], ARGV[2]
if redis.call('SISMEMBER', p .. ':dead', node) == 1 then return 'dead' end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local known = redis.call('ZSCORE', p .. ':nodes', node)
redis.call('ZADD', p .. ':nodes', now, node)
local key = p .. ':node:' .. node
redis.call('HSET', key, 'address', ARGV[3], 'capacity', ARGV[4], 'used', ARGV[5],
  'queued', ARGV[6], 'engines', ARGV[7])
redis.call('PEXPIRE', key, ARGV[8])
if known then return 'ok' end
return 'new'
"""

# ARGV: prefix, dead_after_ms, tombstone_ttl_s. Declares every silent node dead and ends its
# live leases node_lost, all at once. Returns {node, lease, node, lease, ...} of what it ended
# (a node with no leases appears with lease '').
_REAP = (
    _END
    + """
local p = ARGV[1]
local now = now_ms()
local silent = redis.call('ZRANGEBYSCORE', p .. ':nodes', '-inf', now - tonumber(ARGV[2]))
local ended = {}
for _, node in ipairs(silent) do
  redis.call('ZREM', p .. ':nodes', node)
  redis.call('SADD', p .. ':dead', node)
  redis.call('DEL', p .. ':node:' .. node)
  local leases = redis.call('SMEMBERS', p .. ':node-leases:' .. node)
  table.insert(ended, node)
  table.insert(ended, '')
  for _, id in ipairs(leases) do
    local result = end_lease(p, id, 'node_lost', now_us_string(), tonumber(ARGV[3]))
    if result[1] == 1 then
      table.insert(ended, node)
      table.insert(ended, id)
    end
  end
  redis.call('DEL', p .. ':node-leases:' .. node)
end
return ended
"""
)

# ARGV: prefix, id, node, tenant, token, engine, expires_at, max_leases (-1: none).
# Returns 'ok', 'dead' (this node was declared dead), 'exists' or 'quota'.
_GRANT = """
local p, id, node, tenant = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('SISMEMBER', p .. ':dead', node) == 1 then return 'dead' end
local key = p .. ':lease:' .. id
if redis.call('EXISTS', key) == 1 then return 'exists' end
local max = tonumber(ARGV[8])
if max >= 0 and redis.call('SCARD', p .. ':tenant-leases:' .. tenant) >= max then
  return 'quota'
end
redis.call('HSET', key, 'node', node, 'tenant', tenant, 'token', ARGV[5], 'engine', ARGV[6],
  'expires_at', ARGV[7])
redis.call('SADD', p .. ':node-leases:' .. node, id)
redis.call('SADD', p .. ':tenant-leases:' .. tenant, id)
return 'ok'
"""

# ARGV: prefix, id, reason, released_at_us, ttl_s, node, tenant, token, engine.
# Records the outcome unless one is there; creates the record if the store lost it.
# Returns {1 if this call ended it, reason, released_at_us}.
_FINISH = (
    _END
    + """
local p, id = ARGV[1], ARGV[2]
local key = p .. ':lease:' .. id
if redis.call('EXISTS', key) == 0 then
  redis.call('HSET', key, 'node', ARGV[6], 'tenant', ARGV[7], 'token', ARGV[8],
    'engine', ARGV[9], 'reason', '')
end
return end_lease(p, id, ARGV[3], ARGV[4], tonumber(ARGV[5]))
"""
)

# ARGV: prefix, id, expires_at. A live lease's new expiry; nothing for an ended one.
_EXTEND = """
local key = ARGV[1] .. ':lease:' .. ARGV[2]
if redis.call('EXISTS', key) == 0 then return 0 end
local reason = redis.call('HGET', key, 'reason')
if reason and reason ~= '' then return 0 end
redis.call('HSET', key, 'expires_at', ARGV[3])
return 1
"""


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
        self._beat = self.redis.register_script(_BEAT)
        self._reap = self.redis.register_script(_REAP)
        self._grant = self.redis.register_script(_GRANT)
        self._finish = self.redis.register_script(_FINISH)
        self._extend = self.redis.register_script(_EXTEND)

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
    ) -> str:
        return str(
            await self._call(
                self._beat, node, address, capacity, used, queued, ",".join(engines), expire_ms
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
    ) -> None:
        answer = await self._call(
            self._grant,
            lease_id,
            node,
            tenant,
            token_hex,
            engine,
            expires_at,
            -1 if max_leases is None else max_leases,
        )
        if answer == "quota":
            raise LimitExceeded(
                "tenant_max_leases",
                f"tenant {tenant!r} holds its maximum of {max_leases} leases across the "
                "cluster; release one first",
            )
        if answer == "dead":
            raise Unavailable("this node was declared dead by the cluster; it is rejoining")

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
        try:
            fields = await self.redis.hgetall(f"{self.prefix}:lease:{lease_id}")
            if not fields:
                return None
            address = await self.redis.hget(f"{self.prefix}:node:{fields['node']}", "address")
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
                )
            )
        return found

    async def live_lease_count(self) -> int:
        """Every node's live leases, summed."""
        return sum(node.leases for node in await self.nodes())
