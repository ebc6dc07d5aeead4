"""The ``Routes`` contract (backends/protocols.py), run against every implementation.

Add an implementation by adding a branch to ``routes``. TTL expiry is checked with a short
real ttl and a sleep past it: the test asserts that entries expire, not how fast. "redis"
runs against a real redis-server that tests/servers.py starts once per session, with a
fresh key prefix per test; Redis-only checks are in test_redis_routes.py.
"""
from __future__ import annotations

import asyncio

import pytest

from edgeim.backends.memory import MemoryRoutes
from edgeim.backends.redis import RedisRoutes
from edgeim.backends.protocols import ConvId, NodeId, Route, UserId

TTL = 30.0  # long enough never to expire during a test
SHORT_TTL = 0.05

A, B = NodeId("node-a"), NodeId("node-b")
U1, U2, U3 = UserId(1), UserId(2), UserId(3)


@pytest.fixture(params=["memory", "redis"])
async def routes(request: pytest.FixtureRequest):
    if request.param == "memory":
        r = MemoryRoutes()
    elif request.param == "redis":
        server = request.getfixturevalue("redis_server")  # started only if a redis test runs
        r = RedisRoutes(server.url, prefix=server.new_prefix())
    else:
        raise AssertionError(request.param)
    yield r
    await r.close()


async def expire() -> None:
    await asyncio.sleep(SHORT_TTL * 3)


async def test_bind_then_lookup(routes):
    assert await routes.bind(U1, "web", A, TTL) is None
    assert await routes.bind(U1, "ios", B, TTL) is None
    assert await routes.bind(U2, "web", A, TTL) is None
    assert set(await routes.lookup([U1, U2, U3])) == {
        Route(U1, "web", A), Route(U1, "ios", B), Route(U2, "web", A)
    }
    assert await routes.lookup([U3]) == []
    assert await routes.lookup([]) == []
    assert await routes.lookup([U2, U2]) == [Route(U2, "web", A)]


async def test_bind_replaces_and_returns_the_old_route(routes):
    await routes.bind(U1, "web", A, TTL)
    assert await routes.bind(U1, "web", B, TTL) == Route(U1, "web", A)
    assert await routes.lookup([U1]) == [Route(U1, "web", B)]
    assert await routes.bind(U1, "web", B, TTL) == Route(U1, "web", B)  # same node again


async def test_unbind_only_by_the_node_that_owns_the_route(routes):
    await routes.bind(U1, "web", A, TTL)
    await routes.bind(U1, "web", B, TTL)  # re-login on node B
    assert await routes.unbind(U1, "web", A) is False  # late unbind from the old node
    assert await routes.lookup([U1]) == [Route(U1, "web", B)]
    assert await routes.unbind(U1, "web", B) is True
    assert await routes.lookup([U1]) == []
    assert await routes.unbind(U1, "web", B) is False
    assert await routes.unbind(U2, "ios", A) is False


async def test_renew_only_by_the_owner(routes):
    await routes.bind(U1, "web", A, TTL)
    assert await routes.renew(U1, "web", A, TTL) is True
    assert await routes.renew(U1, "web", B, TTL) is False
    assert await routes.renew(U1, "ios", A, TTL) is False
    assert await routes.lookup([U1]) == [Route(U1, "web", A)]


async def test_entries_expire_after_ttl(routes):
    await routes.bind(U1, "web", A, SHORT_TTL)
    await routes.bind(U1, "ios", A, TTL)
    await expire()
    assert await routes.lookup([U1]) == [Route(U1, "ios", A)]
    assert await routes.renew(U1, "web", A, TTL) is False
    assert await routes.unbind(U1, "web", A) is False
    assert await routes.bind(U1, "web", B, TTL) is None  # an expired route is not "replaced"
    assert set(await routes.lookup([U1])) == {Route(U1, "web", B), Route(U1, "ios", A)}


async def test_renew_extends_the_ttl(routes):
    await routes.bind(U1, "web", A, SHORT_TTL)
    assert await routes.renew(U1, "web", A, TTL) is True
    await expire()
    assert await routes.lookup([U1]) == [Route(U1, "web", A)]


async def test_subscriptions_map_conversations_to_nodes(routes):
    c1, c2, c3 = ConvId("g1"), ConvId("g2"), ConvId("g3")
    await routes.subscribe(A, [c1, c2])
    await routes.subscribe(B, [c2])
    await routes.subscribe(A, [c1])  # twice is once
    await routes.subscribe(A, [])
    assert sorted(await routes.nodes_of(c2)) == [A, B]
    assert await routes.nodes_of(c1) == [A]
    assert await routes.nodes_of(c3) == []
    await routes.unsubscribe(A, [c2, c3])  # c3 was never subscribed: no error
    await routes.unsubscribe(B, [])
    assert await routes.nodes_of(c2) == [B]
    await routes.unsubscribe(A, [c1])
    assert await routes.nodes_of(c1) == []


# -- memory only --------------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_node_numbers_are_leased_one_node_each(routes):
    a, b = await routes.lease_number(A, TTL, 4), await routes.lease_number(B, TTL, 4)
    assert a != b and {a, b} <= {0, 1, 2, 3}
    assert await routes.lease_number(A, TTL, 4) == a  # a node keeps its number
    assert await routes.renew_number(a, A, TTL) is True
    assert await routes.renew_number(a, B, TTL) is False  # not B's
    others = [await routes.lease_number(NodeId(f"n{i}"), TTL, 4) for i in range(2)]
    assert sorted([a, b, *others]) == [0, 1, 2, 3]
    with pytest.raises(RuntimeError, match="too many nodes"):
        await routes.lease_number(NodeId("one-too-many"), TTL, 4)


async def test_a_lapsed_node_number_goes_to_another_node(routes):
    a = await routes.lease_number(A, SHORT_TTL, 1)
    await expire()
    assert await routes.lease_number(B, TTL, 1) == a
    assert await routes.renew_number(a, A, TTL) is False


async def test_unsubscribe_node_takes_it_out_of_every_conversation(routes):
    await routes.subscribe(A, [ConvId("g1"), ConvId("g2")])
    await routes.subscribe(B, [ConvId("g1")])
    await routes.unsubscribe_node(A)
    assert await routes.nodes_of(ConvId("g1")) == [B]
    assert await routes.nodes_of(ConvId("g2")) == []


async def test_memory_expired_entries_are_swept():
    clock = Clock()
    routes = MemoryRoutes(clock=clock)
    for user in range(1, 101):
        await routes.bind(UserId(user), "web", A, 10)
    assert len(routes) == 100
    clock.now = 11  # all expired; none of them is ever looked up again
    for user in range(1000, 1201):
        await routes.bind(UserId(user), "web", A, 10)
    assert len(routes) == 201 - 100 + 100 - 1 or len(routes) <= 201
    assert len(routes) == sum(1 for _ in await routes.lookup([UserId(u) for u in range(1000, 1201)]))
    await routes.close()
