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

import redis.asyncio as aioredis

from .protocols import ConvId, NodeId, Route, UserId

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


# KEYS[1] the prefix of number keys; ARGV node, ttl_ms, numbers -> the number leased, or -1.
# A node that holds a number keeps it (restarts after a crash get theirs back once it expires).
_LEASE = """
local free = -1
for n = 0, tonumber(ARGV[3]) - 1 do
  local key = KEYS[1] .. n
  local holder = redis.call('GET', key)
  if holder == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    return n
  end
  if not holder and free < 0 then free = n end
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


def _ms(ttl: float) -> int:
    return max(1, int(ttl * 1000))


class RedisRoutes:
    """``Routes`` over one Redis server (redis-py's asyncio client; hiredis parses replies
    when it is installed).

    ``url``: ``redis://host:port/db``; or pass a ready ``client`` (its responses must not be
    decoded: this class decodes what it reads). Nothing is connected until the first call;
    an unreachable server raises redis-py's ``ConnectionError`` from that call. ``close``
    releases connections only: the routes are shared, they stay for the other nodes.
    """

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, prefix: str = "im:",
                 client: aioredis.Redis | None = None) -> None:
        self.prefix = prefix
        self._owns_client = client is None
        self._redis: aioredis.Redis = client if client is not None else aioredis.from_url(url)
        self._bind = self._redis.register_script(_BIND)
        self._renew = self._redis.register_script(_RENEW)
        self._unbind = self._redis.register_script(_UNBIND)
        self._lease = self._redis.register_script(_LEASE)
        self._renew_lease = self._redis.register_script(_RENEW_LEASE)

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
        number = int(await self._lease(keys=[f"{self.prefix}num:"], args=[node, _ms(ttl), numbers]))
        if number < 0:
            raise RuntimeError(f"all {numbers} node numbers are leased: too many nodes")
        return number

    async def renew_number(self, number: int, node: NodeId, ttl: float) -> bool:
        """Keep the lease; False if it lapsed and another node took the number."""
        return bool(await self._renew_lease(keys=[f"{self.prefix}num:{number}"], args=[node, _ms(ttl)]))

    async def close(self) -> None:
        """Close the connections (of a client this object made; a passed-in one is the
        caller's)."""
        if self._owns_client:
            await self._redis.aclose()
