"""RedisRoutes beyond the Routes contract: several nodes sharing one Redis, atomic
replacement under concurrency, batched renewals, and no keys left behind.

Runs against the real redis-server of tests/servers.py, a fresh key prefix per test.
"""
from __future__ import annotations

import asyncio

import pytest
import redis
import redis.asyncio as aioredis

from edgeim.backends.protocols import ConvId, NodeId, Route, UserId
from edgeim.backends.redis import RedisRoutes

TTL = 30.0
SHORT_TTL = 0.05
A, B = NodeId("node-a"), NodeId("node-b")
U1, U2 = UserId(1), UserId(2)


@pytest.fixture
async def nodes(redis_server):
    """``nodes(n)``: n RedisRoutes (one per node) sharing one fresh prefix."""
    prefix = redis_server.new_prefix()
    made: list[RedisRoutes] = []

    def make(n: int) -> list[RedisRoutes]:
        new = [RedisRoutes(redis_server.url, prefix=prefix) for _ in range(n)]
        made.extend(new)
        return new

    yield make
    for r in made:
        await r.close()


@pytest.fixture
async def raw(redis_server):
    client = aioredis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def test_nodes_see_each_others_routes(nodes):
    a, b = nodes(2)
    assert await a.bind(U1, "web", A, TTL) is None
    assert await b.bind(U1, "web", B, TTL) == Route(U1, "web", A)  # the login moved to node B
    assert await a.lookup([U1]) == [Route(U1, "web", B)]
    assert await a.unbind(U1, "web", A) is False  # node A's late unbind leaves B's route
    assert await a.renew(U1, "web", A, TTL) is False
    assert await b.lookup([U1]) == [Route(U1, "web", B)]


async def test_concurrent_binds_replace_atomically(nodes):
    """20 nodes log the same (user, terminal) in at once: each bind replaces exactly one
    predecessor, so the replaced routes form one chain and the last binder holds it."""
    routes = nodes(20)
    names = [NodeId(f"n{i}") for i in range(20)]
    replaced = await asyncio.gather(*(r.bind(U1, "ios", n, TTL) for r, n in zip(routes, names)))
    olds = [r.node for r in replaced if r is not None]
    assert replaced.count(None) == 1
    assert len(set(olds)) == len(olds) == 19 and set(olds) < set(names)
    (winner,) = set(names) - set(olds)
    assert await routes[0].lookup([U1]) == [Route(U1, "ios", winner)]


async def test_renew_many_renews_only_what_the_node_owns(nodes):
    (r,) = nodes(1)
    await r.bind(U1, "web", A, SHORT_TTL)
    await r.bind(U1, "ios", B, TTL)
    await r.bind(U2, "web", A, SHORT_TTL)
    assert await r.renew_many([(U1, "web"), (U1, "ios"), (U2, "web"), (U2, "mac")], A, TTL) == [
        True, False, True, False]
    assert await r.renew_many([], A, TTL) == []
    await asyncio.sleep(SHORT_TTL * 3)
    assert set(await r.lookup([U1, U2])) == {Route(U1, "web", A), Route(U1, "ios", B), Route(U2, "web", A)}


async def test_expired_routes_leave_no_keys(nodes, raw):
    (r,) = nodes(1)
    await r.bind(U1, "web", A, SHORT_TTL)
    await r.bind(U1, "ios", A, 0.5)
    await r.bind(U2, "web", A, SHORT_TTL)
    await asyncio.sleep(SHORT_TTL * 3)
    key = f"{r.prefix}r:{U1}"
    assert await raw.hlen(key) == 2  # the expired field is invisible but still stored ...
    await r.bind(U1, "mac", A, TTL)
    assert await raw.hlen(key) == 2  # ... until the next write to the user's hash drops it
    assert not await raw.exists(f"{r.prefix}r:{U2}")  # a user whose routes all expired: no key
    await r.unbind(U1, "mac", A)
    await asyncio.sleep(0.6)
    assert not await raw.exists(key)


async def test_prefixes_are_separate(redis_server):
    one = RedisRoutes(redis_server.url, prefix=redis_server.new_prefix())
    two = RedisRoutes(redis_server.url, prefix=redis_server.new_prefix())
    try:
        await one.bind(U1, "web", A, TTL)
        await one.subscribe(A, [ConvId("g1")])
        assert await two.lookup([U1]) == []
        assert await two.nodes_of(ConvId("g1")) == []
    finally:
        await one.close()
        await two.close()


async def test_a_dead_node_is_unsubscribed_everywhere(nodes):
    a, b = nodes(2)
    convs = [ConvId(f"g{i}") for i in range(2500)]
    await a.subscribe(A, convs)
    await b.subscribe(B, convs[:10])
    await b.unsubscribe_node(A)  # any node (or an operator) may clean up after node A
    assert await a.nodes_of(convs[0]) == [B]
    assert await a.nodes_of(convs[-1]) == []


async def test_a_shared_client_is_left_open(redis_server):
    client = aioredis.from_url(redis_server.url)
    r = RedisRoutes(client=client, prefix=redis_server.new_prefix())
    await r.bind(U1, "web", A, TTL)
    await r.close()
    assert await client.ping()
    await client.aclose()


async def test_unreachable_server_raises_connection_error():
    from servers import free_port
    r = RedisRoutes(f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(redis.ConnectionError):
            await r.lookup([U1])
    finally:
        await r.close()


def test_the_hiredis_parser_is_used():
    assert redis.utils.HIREDIS_AVAILABLE


async def test_a_frozen_redis_fails_calls_within_the_timeout_instead_of_hanging(tmp_path):
    """SIGSTOP of the server: the TCP connection stays up and nothing answers. Each call
    raises redis-py's TimeoutError (a RedisError, which callers handle) well inside the
    test's bound; after SIGCONT the same object works again."""
    from servers import frozen, private_redis

    with private_redis(tmp_path / "frozen") as server:
        r = RedisRoutes(server.url, prefix=server.new_prefix(), timeout=0.5)
        try:
            await r.bind(U1, "web", A, TTL)  # a pooled connection exists before the freeze
            async with frozen(server.proc.pid):
                for call in (r.lookup([U1]), r.bind(U2, "web", A, TTL), r.renew_number(0, A, TTL), r.ping()):
                    with pytest.raises(redis.TimeoutError):
                        await asyncio.wait_for(call, 10)
            assert await asyncio.wait_for(r.lookup([U1]), 10) == [Route(U1, "web", A)]
        finally:
            await r.close()
