"""The cluster store's Lua scripts: each runs atomically in Redis (see `broker.cluster.store`)."""

from __future__ import annotations

# Shared by the scripts that end leases: sets the outcome unless one is already there.
END = """
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

# ARGV: prefix, node, address, capacity, used, queued, engines, expire_ms, draining ('1'/'0').
# Returns 'dead' (declared dead: may not rejoin under this id), 'new' (unknown: first beat, or
# the store lost its data) or 'ok'.
BEAT = """
local p, node = ARGV[1], ARGV[2]
if redis.call('EXISTS', p .. ':dead:' .. node) == 1 then return 'dead' end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local known = redis.call('ZSCORE', p .. ':nodes', node)
redis.call('ZADD', p .. ':nodes', now, node)
local key = p .. ':node:' .. node
redis.call('HSET', key, 'address', ARGV[3], 'capacity', ARGV[4], 'used', ARGV[5],
  'queued', ARGV[6], 'engines', ARGV[7], 'draining', ARGV[9])
redis.call('PEXPIRE', key, ARGV[8])
if known then return 'ok' end
return 'new'
"""

# ARGV: prefix, dead_after_ms, tombstone_ttl_s. Declares every silent node dead and ends its
# live leases node_lost, all at once. Returns {node, lease, node, lease, ...} of what it ended
# (a node with no leases appears with lease '').
REAP = (
    END
    + """
local p = ARGV[1]
local now = now_ms()
local silent = redis.call('ZRANGEBYSCORE', p .. ':nodes', '-inf', now - tonumber(ARGV[2]))
local ended = {}
for _, node in ipairs(silent) do
  redis.call('ZREM', p .. ':nodes', node)
  redis.call('SET', p .. ':dead:' .. node, '1', 'EX', 86400)
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

# A tenant's quota slots held for Acquires still opening their browser: reservation -> expiry
# (ms, Redis time). Counts with its live leases; expired ones are dropped as they are seen.
HELD = """
local function held(p, tenant)
  local key = p .. ':tenant-held:' .. tenant
  local t = redis.call('TIME')
  -- To the ms: the key expires at its latest score, which must not be in the past.
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  return key, redis.call('ZCARD', key), now
end
"""

# ARGV: prefix, tenant, reservation, max_leases, ttl_ms. Holds one slot of the tenant's
# cluster-wide quota before a browser is opened. Returns 'ok' or 'quota'.
RESERVE = (
    HELD
    + """
local p, tenant, reservation, max = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local key, count, now = held(p, tenant)
if redis.call('SCARD', p .. ':tenant-leases:' .. tenant) + count >= max then return 'quota' end
redis.call('ZADD', key, now + tonumber(ARGV[5]), reservation)
-- The key lives as long as its longest-held slot: a short one never expires the others.
local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', key, tonumber(last[2]))
return 'ok'
"""
)

# ARGV: prefix, tenant, reservation. Gives a held slot back (the Acquire failed or was granted).
UNRESERVE = """
redis.call('ZREM', ARGV[1] .. ':tenant-held:' .. ARGV[2], ARGV[3])
return 1
"""

# ARGV: prefix, id, node, tenant, token, engine, expires_at, max_leases (-1: none),
# reservation ('' for none: its slot becomes the lease's). The quota is checked again here.
# Returns 'ok', 'dead' (this node was declared dead), 'exists' or 'quota'.
GRANT = (
    HELD
    + """
local p, id, node, tenant = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('EXISTS', p .. ':dead:' .. node) == 1 then return 'dead' end
local key = p .. ':lease:' .. id
if redis.call('EXISTS', key) == 1 then return 'exists' end
local max = tonumber(ARGV[8])
local holds, count = held(p, tenant)
local mine = 0
if ARGV[9] ~= '' and redis.call('ZREM', holds, ARGV[9]) == 1 then mine = 1 end
if max >= 0 and redis.call('SCARD', p .. ':tenant-leases:' .. tenant) + count - mine >= max then
  return 'quota'
end
redis.call('HSET', key, 'node', node, 'tenant', tenant, 'token', ARGV[5], 'engine', ARGV[6],
  'expires_at', ARGV[7])
redis.call('SADD', p .. ':node-leases:' .. node, id)
redis.call('SADD', p .. ':tenant-leases:' .. tenant, id)
return 'ok'
"""
)

# ARGV: prefix, id, reason, released_at_us, ttl_s, node, tenant, token, engine.
# Records the outcome unless one is there; creates the record if the store lost it.
# Returns {1 if this call ended it, reason, released_at_us}.
FINISH = (
    END
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
EXTEND = """
local key = ARGV[1] .. ':lease:' .. ARGV[2]
if redis.call('EXISTS', key) == 0 then return 0 end
local reason = redis.call('HGET', key, 'reason')
if reason and reason ~= '' then return 0 end
redis.call('HSET', key, 'expires_at', ARGV[3])
return 1
"""


# Drops waiting Acquires whose ticket expired (their node died or stopped renewing them).
SWEEP = """
local function sweep(p)
  local waiting = redis.call('ZRANGE', p .. ':queue', 0, -1)
  for _, ticket in ipairs(waiting) do
    local tenant = redis.call('GET', p .. ':ticket:' .. ticket)
    if not tenant then
      redis.call('ZREM', p .. ':queue', ticket)
    end
  end
end
"""

# ARGV: prefix, ticket, tenant, queue_limit, max_queued (-1: none), ttl_ms.
# Returns 'ok', 'full' or 'tenant'.
ENQUEUE = (
    END
    + SWEEP
    + """
local p, ticket, tenant = ARGV[1], ARGV[2], ARGV[3]
sweep(p)
local mine = p .. ':queue:' .. tenant
for _, other in ipairs(redis.call('ZRANGE', mine, 0, -1)) do
  if redis.call('EXISTS', p .. ':ticket:' .. other) == 0 then redis.call('ZREM', mine, other) end
end
if redis.call('ZCARD', p .. ':queue') >= tonumber(ARGV[4]) then return 'full' end
local max = tonumber(ARGV[5])
if max >= 0 and redis.call('ZCARD', mine) >= max then return 'tenant' end
local t = redis.call('TIME')
local score = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZADD', p .. ':queue', score, ticket)
redis.call('ZADD', mine, now_ms(), ticket)
redis.call('SET', p .. ':ticket:' .. ticket, tenant, 'PX', ARGV[6])
return 'ok'
"""
)

# ARGV: prefix, ticket, ttl_ms. Renews the ticket; returns its place in the queue (0: first),
# or -1 if it is gone.
PLACE = (
    SWEEP
    + """
local p, ticket = ARGV[1], ARGV[2]
local key = p .. ':ticket:' .. ticket
if redis.call('EXISTS', key) == 0 then return -1 end
redis.call('PEXPIRE', key, ARGV[3])
sweep(p)
local rank = redis.call('ZRANK', p .. ':queue', ticket)
if rank == false then return -1 end
return rank
"""
)

# ARGV: prefix. The Acquires waiting cluster-wide (the queue-depth gauge): one ZCARD while the
# queue is empty; otherwise the expired tickets are swept first, so that the Acquires of a node
# that died while they waited are not counted once their tickets expire, even if no one queues.
QUEUE_DEPTH = (
    SWEEP
    + """
local p = ARGV[1]
if redis.call('ZCARD', p .. ':queue') == 0 then return 0 end
sweep(p)
return redis.call('ZCARD', p .. ':queue')
"""
)

# ARGV: prefix, ticket. Leaves the queue (served, or given up).
LEAVE = """
local p, ticket = ARGV[1], ARGV[2]
local tenant = redis.call('GET', p .. ':ticket:' .. ticket)
redis.call('ZREM', p .. ':queue', ticket)
if tenant then redis.call('ZREM', p .. ':queue:' .. tenant, ticket) end
redis.call('DEL', p .. ':ticket:' .. ticket)
return 1
"""
