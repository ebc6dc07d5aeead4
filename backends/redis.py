"""The cluster ``Routes``: the presence map and the conversation subscriptions in Redis.

Keys (every key starts with ``prefix``, so several deployments or tests share a server):

- ``{prefix}r:{user}``: a hash, terminal -> ``"{expires_at_ms}|{node}"``. One hash per
  user makes ``lookup`` of many users one pipelined round trip (HGETALL each) and keeps a
  user's terminals together. Redis 7.0 has no per-field TTL, so each entry carries its own
  expiry, read against the *server's* clock (``TIME``): every node compares against the
  same clock, whatever its own says. The hash as a whole expires (PEXPIREAT) when its
  latest entry does, so a user who vanishes leaves nothing behind; an expired entry of a
  live user is dropped by the next write to that user's hash.
- ``{prefix}s:{conv}``: a set of the nodes subscribed to a conversation.
- ``{prefix}n:{node}``: a set of the conversations a node subscribed to, so that
  ``unsubscribe_node`` can take a dead node out of every conversation.

Atomicity: ``bind``, ``renew`` and ``unbind`` are each one Lua script (Redis runs a script
without interleaving other commands), so "replace and return the old entry", "extend only
if it still names this node" and "remove only if it still names this node" hold against
any number of nodes.
"""
from __future__ import annotations

from typing import Any, Sequence

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from .protocols import CallRecord, ConvId, NodeId, NodeInfo, Route, UserId

__all__ = ["RedisRoutes"]

# Shared by the scripts: the server's time in ms, and a helper that drops the expired
# fields of KEYS[1] and makes the key expire with its newest entry (or deletes it).
_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function entry(value)
  if not value then return nil, nil end
  local sep = string.find(value, '|', 1, true)
  return tonumber(string.sub(value, 1, sep - 1)), string.sub(value, sep + 1)
end
local function tidy()
  local all = redis.call('HGETALL', KEYS[1])
  local latest = 0
  for i = 1, #all, 2 do
    local expires = entry(all[i + 1])
    if expires <= now then
      redis.call('HDEL', KEYS[1], all[i])
    elseif expires > latest then
      latest = expires
    end
  end
  if latest > 0 then redis.call('PEXPIREAT', KEYS[1], latest) end
end
"""

# KEYS[1] user hash; ARGV terminal, node, ttl_ms -> the node it replaced (live), or false
_BIND = _PRELUDE + """
local expires, node = entry(redis.call('HGET', KEYS[1], ARGV[1]))
redis.call('HSET', KEYS[1], ARGV[1], (now + tonumber(ARGV[3])) .. '|' .. ARGV[2])
tidy()
if expires and expires > now then return node end
return false
"""

# KEYS[1] user hash; ARGV terminal, node, ttl_ms -> 1 if renewed
_RENEW = _PRELUDE + """
local expires, node = entry(redis.call('HGET', KEYS[1], ARGV[1]))
if not expires or expires <= now or node ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], (now + tonumber(ARGV[3])) .. '|' .. ARGV[2])
tidy()
return 1
"""

# KEYS[1] user hash; ARGV terminal, node -> 1 if removed
_UNBIND = _PRELUDE + """
local expires, node = entry(redis.call('HGET', KEYS[1], ARGV[1]))
if not expires or expires <= now or node ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
tidy()
return 1
"""


# KEYS[1] the prefix of number keys; ARGV node, ttl_ms, numbers, preferred (-1: none) -> the
# number leased, or -1. A node that holds a number keeps it (restarts after a crash get theirs
# back once it expires); else the preferred one if it is free, else the lowest free one.
_LEASE = """
local free = -1
local preferred = tonumber(ARGV[4])
for n = 0, tonumber(ARGV[3]) - 1 do
  local key = KEYS[1] .. n
  local holder = redis.call('GET', key)
  if holder == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    return n
  end
  if not holder and (free < 0 or n == preferred) then free = n end
end
if free >= 0 then redis.call('SET', KEYS[1] .. free, ARGV[1], 'PX', ARGV[2]) end
return free
"""

# KEYS[1] the number's key; ARGV node, ttl_ms -> 1 if still this node's
_RENEW_LEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""


# Calls: ``{prefix}call:{id}`` is a hash (state, caller, callee, data = the msgpack record)
# and ``{prefix}busy:{user}`` the id of the call the user is in; all three expire together.

# KEYS call, busy caller, busy callee; ARGV state, data, id, ttl_ms, prefix -> 0, or 1/2 for
# the caller/callee already in a (live) call
_START_CALL = """
for i = 2, 3 do
  local other = redis.call('GET', KEYS[i])
  if other and redis.call('EXISTS', ARGV[5] .. 'call:' .. other) == 1 then return i - 1 end
end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'data', ARGV[2], 'caller', KEYS[2], 'callee', KEYS[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])
return 0
"""

# KEYS call; ARGV expect, state, data, ttl_ms, id -> 1 if replaced
_UPDATE_CALL = """
local v = redis.call('HMGET', KEYS[1], 'state', 'caller', 'callee')
if v[1] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'data', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
for i = 2, 3 do
  if redis.call('GET', v[i]) == ARGV[5] then redis.call('PEXPIRE', v[i], ARGV[4]) end
end
return 1
"""

# KEYS call; ARGV expect, id -> the record's data, or false
_END_CALL = """
local v = redis.call('HMGET', KEYS[1], 'state', 'data', 'caller', 'callee')
if v[1] ~= ARGV[1] then return false end
redis.call('DEL', KEYS[1])
for i = 3, 4 do
  if redis.call('GET', v[i]) == ARGV[2] then redis.call('DEL', v[i]) end
end
return v[2]
"""

_call_encoder = msgspec.msgpack.Encoder()
_call_decoder = msgspec.msgpack.Decoder(CallRecord)
_node_decoder = msgspec.msgpack.Decoder(NodeInfo)


def _ms(ttl: float) -> int:
    return max(1, int(ttl * 1000))


#: connections a node keeps to Redis at most, and seconds a command waits for one of them
POOL_SIZE = 64
POOL_WAIT = 10.0
#: seconds a command may take (connect, send, reply) before it fails with redis-py's
#: TimeoutError (the node's ``routes_timeout`` setting): a hung server must not hang callers
TIMEOUT = 2.0


class RedisRoutes:
    """``Routes`` over one Redis server (redis-py's asyncio client; hiredis parses replies
    when it is installed).

    ``url``: ``redis://host:port/db``; or pass a ready ``client`` (its responses must not be
    decoded: this class decodes what it reads). Nothing is connected until the first call;
    an unreachable server raises redis-py's ``ConnectionError`` from that call. ``close``
    releases connections only: the routes are shared, they stay for the other nodes.

    Deadlines: every call fails within about ``timeout`` seconds (connect, and each reply)
    when the server does not answer (stopped, frozen, a dropped network path): redis-py's
    ``TimeoutError``, a ``RedisError`` like every other failure here. A timed-out call is
    not retried (a server that did not answer in ``timeout`` would only double the wait),
    and a call waits at most ``POOL_WAIT`` for a free connection. A timed-out command may
    still have run on the server: every write here is safe to repeat.
    """

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, prefix: str = "im:",
                 client: aioredis.Redis | None = None, timeout: float = TIMEOUT) -> None:
        self.prefix = prefix
        self._owns_client = client is None
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.timeout = timeout
        # a connection of the pool that a Redis restart closed fails its next command once:
        # retry such a command on a new connection (commands that were never sent, or
        # scripts that are idempotent per call) rather than fail the node's request. A
        # timeout is not retried: the server is there but does not answer.
        # A blocking pool: at its limit a command waits for a free connection (redis-py's
        # default pool raises MaxConnectionsError, which failed logins in a burst of them)
        self._redis: aioredis.Redis = client if client is not None else aioredis.Redis(
            connection_pool=aioredis.BlockingConnectionPool.from_url(
                url, max_connections=POOL_SIZE, timeout=POOL_WAIT,
                socket_connect_timeout=timeout, socket_timeout=timeout,
                retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.5), 3,
                            supported_errors=(RedisConnectionError,)),
                retry_on_error=[RedisConnectionError]))
        #: node -> the number it last leased here: after Redis lost the leases (a restart),
        #: the node takes the same one again, so ids made meanwhile cannot collide with a
        #: number another node takes
        self._numbers: dict[str, int] = {}
        self._bind = self._redis.register_script(_BIND)
        self._renew = self._redis.register_script(_RENEW)
        self._unbind = self._redis.register_script(_UNBIND)
        self._lease = self._redis.register_script(_LEASE)
        self._renew_lease = self._redis.register_script(_RENEW_LEASE)
        self._start_call = self._redis.register_script(_START_CALL)
        self._update_call = self._redis.register_script(_UPDATE_CALL)
        self._end_call = self._redis.register_script(_END_CALL)

    def _user_key(self, user_id: UserId) -> str:
        return f"{self.prefix}r:{user_id}"

    def _conv_key(self, conv: ConvId) -> str:
        return f"{self.prefix}s:{conv}"

    def _node_key(self, node: NodeId) -> str:
        return f"{self.prefix}n:{node}"

    # -- (user, terminal) -> node --------------------------------------------------------

    async def bind(self, user_id: UserId, terminal: str, node: NodeId, ttl: float) -> Route | None:
        """Make ``node`` the route of (user, terminal) for ``ttl`` seconds; returns the live
        route it replaced (possibly on the same node), or None."""
        old = await self._bind(keys=[self._user_key(user_id)], args=[terminal, node, _ms(ttl)])
        if old is None:
            return None
        return Route(user_id, terminal, NodeId(old.decode()))

    async def renew(self, user_id: UserId, terminal: str, node: NodeId, ttl: float) -> bool:
        return bool(await self._renew(keys=[self._user_key(user_id)], args=[terminal, node, _ms(ttl)]))

    async def renew_many(self, entries: Sequence[tuple[UserId, str]], node: NodeId, ttl: float) -> list[bool]:
        """``renew`` of every (user, terminal) of ``node`` in one round trip (the sweep's
        heartbeat renewals); each result as ``renew`` would have answered."""
        if not entries:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for user_id, terminal in entries:
                await self._renew(keys=[self._user_key(user_id)], args=[terminal, node, _ms(ttl)], client=pipe)
            return [bool(r) for r in await pipe.execute()]

    async def unbind(self, user_id: UserId, terminal: str, node: NodeId) -> bool:
        """Remove the route only if it still names ``node`` (a late unbind never removes a
        newer login's route)."""
        return bool(await self._unbind(keys=[self._user_key(user_id)], args=[terminal, node]))

    async def lookup(self, user_ids: Sequence[UserId]) -> list[Route]:
        """Live routes of these users, every terminal: one round trip (TIME and an HGETALL
        per user, pipelined), expiry judged by the server's clock."""
        users = list(dict.fromkeys(user_ids))
        if not users:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.time()
            for user_id in users:
                pipe.hgetall(self._user_key(user_id))
            replies: list[Any] = await pipe.execute()
        seconds, micros = replies[0]
        now = seconds * 1000 + micros // 1000
        routes: list[Route] = []
        for user_id, entries in zip(users, replies[1:]):
            for terminal, value in entries.items():
                expires, _, node = value.partition(b"|")
                if int(expires) > now:
                    routes.append(Route(user_id, terminal.decode(), NodeId(node.decode())))
        return routes

    # -- conversation -> nodes ------------------------------------------------------------

    async def subscribe(self, node: NodeId, convs: Sequence[ConvId]) -> None:
        if not convs:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for conv in convs:
                pipe.sadd(self._conv_key(conv), node)
            pipe.sadd(self._node_key(node), *convs)
            await pipe.execute()

    async def unsubscribe(self, node: NodeId, convs: Sequence[ConvId]) -> None:
        if not convs:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for conv in convs:
                pipe.srem(self._conv_key(conv), node)
            pipe.srem(self._node_key(node), *convs)
            await pipe.execute()

    async def unsubscribe_node(self, node: NodeId) -> None:
        """Take ``node`` out of every conversation it subscribed to: for a node that starts
        again under the same name after a crash, or for an operator removing a dead node."""
        convs = [c.decode() for c in await self._redis.smembers(self._node_key(node))]
        for start in range(0, len(convs), 1000):
            await self.unsubscribe(node, [ConvId(c) for c in convs[start:start + 1000]])
        await self._redis.delete(self._node_key(node))

    async def nodes_of(self, conv: ConvId) -> list[NodeId]:
        return [NodeId(n.decode()) for n in await self._redis.smembers(self._conv_key(conv))]

    # -- node numbers ------------------------------------------------------------------------

    async def lease_number(self, node: NodeId, ttl: float, numbers: int) -> int:
        """A number in 0..numbers-1 held by no other live node, for ``ttl`` seconds (the
        node's part of every message id); the one ``node`` holds already, if any."""
        number = int(await self._lease(keys=[f"{self.prefix}num:"],
                                       args=[node, _ms(ttl), numbers, self._numbers.get(node, -1)]))
        if number < 0:
            raise RuntimeError(f"all {numbers} node numbers are leased: too many nodes")
        self._numbers[node] = number
        return number

    async def renew_number(self, number: int, node: NodeId, ttl: float) -> bool:
        """Keep the lease; False if it lapsed (another node may have taken the number, or
        Redis lost it: the node leases one again, see ``lease_number``)."""
        return bool(await self._renew_lease(keys=[f"{self.prefix}num:{number}"], args=[node, _ms(ttl)]))

    async def ping(self) -> None:
        """One round trip to the server (readiness probes); raises when it does not answer."""
        await self._redis.ping()

    # -- presence and calls (rich messaging) --------------------------------------------------

    async def set_hidden(self, user_id: UserId, hidden: bool) -> None:
        if hidden:
            await self._redis.sadd(f"{self.prefix}hidden", user_id)
        else:
            await self._redis.srem(f"{self.prefix}hidden", user_id)

    async def hidden(self, user_ids: Sequence[UserId]) -> set[UserId]:
        users = list(dict.fromkeys(user_ids))
        if not users:
            return set()
        flags = await self._redis.smismember(f"{self.prefix}hidden", users)
        return {u for u, flag in zip(users, flags) if flag}

    def _call_key(self, call_id: int) -> str:
        return f"{self.prefix}call:{call_id}"

    def _busy_key(self, user_id: UserId) -> str:
        return f"{self.prefix}busy:{user_id}"

    async def start_call(self, call: CallRecord, ttl: float) -> UserId | None:
        """One script: check both users' marks, store the call, mark both."""
        busy = int(await self._start_call(
            keys=[self._call_key(call.id), self._busy_key(call.caller), self._busy_key(call.callee)],
            args=[call.state, _call_encoder.encode(call), call.id, _ms(ttl), self.prefix]))
        return None if busy == 0 else (call.caller if busy == 1 else call.callee)

    async def get_call(self, call_id: int) -> CallRecord | None:
        data = await self._redis.hget(self._call_key(call_id), "data")
        return None if data is None else _call_decoder.decode(data)

    async def update_call(self, call: CallRecord, expect: str, ttl: float) -> bool:
        return bool(await self._update_call(keys=[self._call_key(call.id)],
                                            args=[expect, call.state, _call_encoder.encode(call), _ms(ttl), call.id]))

    async def end_call(self, call_id: int, expect: str) -> CallRecord | None:
        data = await self._end_call(keys=[self._call_key(call_id)], args=[expect, call_id])
        return None if data is None else _call_decoder.decode(data)

    # -- the node registry (operations) ----------------------------------------------------------
    # ``{prefix}node:{id}`` holds a node's record and expires with it; ``{prefix}nodes`` is the
    # set of ids, from which ``nodes`` drops those whose record expired.

    async def announce(self, info: NodeInfo, ttl: float) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(f"{self.prefix}node:{info.id}", _call_encoder.encode(info), px=_ms(ttl))
            pipe.sadd(f"{self.prefix}nodes", info.id)
            await pipe.execute()

    async def nodes(self) -> list[NodeInfo]:
        ids = sorted(n.decode() for n in await self._redis.smembers(f"{self.prefix}nodes"))
        if not ids:
            return []
        records = await self._redis.mget([f"{self.prefix}node:{n}" for n in ids])
        gone = [n for n, record in zip(ids, records) if record is None]
        if gone:
            await self._redis.srem(f"{self.prefix}nodes", *gone)
        return [_node_decoder.decode(r) for r in records if r is not None]

    async def withdraw(self, node: NodeId) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.delete(f"{self.prefix}node:{node}")
            pipe.srem(f"{self.prefix}nodes", node)
            await pipe.execute()

    async def close(self) -> None:
        """Close the connections (of a client this object made; a passed-in one is the
        caller's)."""
        if self._owns_client:
            await self._redis.aclose()
            await self._redis.connection_pool.disconnect()
