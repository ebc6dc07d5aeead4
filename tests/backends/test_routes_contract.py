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
from edgeim.backends.protocols import CallRecord, ConvId, NodeId, NodeInfo, Route, UserId

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


# -- presence and calls (rich messaging) ----------------------------------------------------

def _call(call_id: int, caller: UserId = U1, callee: UserId = U2) -> CallRecord:
    return CallRecord(call_id, caller, "web", callee, "video", "ringing", 1000)


async def test_hidden_marks_users_until_cleared(routes):
    assert await routes.hidden([U1, U2]) == set()
    await routes.set_hidden(U1, True)
    await routes.set_hidden(U1, True)  # twice is once
    assert await routes.hidden([U1, U2, U1]) == {U1}
    assert await routes.hidden([]) == set()
    await routes.set_hidden(U1, False)
    await routes.set_hidden(U3, False)  # never marked: no error
    assert await routes.hidden([U1, U2, U3]) == set()


async def test_a_call_is_stored_and_marks_both_users_busy(routes):
    call = _call(7)
    assert await routes.start_call(call, TTL) is None
    assert await routes.get_call(7) == call
    assert await routes.get_call(8) is None
    # either party is busy now, as caller or as callee; a third user is not
    assert await routes.start_call(_call(8, U3, U2), TTL) == U2
    assert await routes.start_call(_call(9, U1, U3), TTL) == U1
    assert await routes.start_call(_call(10, U2, U1), TTL) == U2  # both busy: the caller is named
    assert await routes.get_call(8) is None and await routes.get_call(9) is None


async def test_update_call_is_compare_and_set_on_the_state(routes):
    call = _call(7)
    await routes.start_call(call, TTL)
    accepted = CallRecord(7, U1, "web", U2, "video", "accepted", 1000, "ios", 2000)
    assert await routes.update_call(accepted, "ringing", TTL) is True
    assert await routes.get_call(7) == accepted
    # a second accept (another device, another node) finds it accepted already
    other = CallRecord(7, U1, "web", U2, "video", "accepted", 1000, "android", 2001)
    assert await routes.update_call(other, "ringing", TTL) is False
    assert await routes.get_call(7) == accepted
    assert await routes.update_call(_call(99), "ringing", TTL) is False  # no such call


async def test_end_call_gives_the_record_once_and_frees_both_users(routes):
    await routes.start_call(_call(7), TTL)
    assert await routes.end_call(7, "accepted") is None  # not in that state: nothing happens
    assert await routes.get_call(7) == _call(7)
    assert await routes.end_call(7, "ringing") == _call(7)
    assert await routes.end_call(7, "ringing") is None  # the second of two racing ends
    assert await routes.get_call(7) is None
    assert await routes.start_call(_call(8, U2, U1), TTL) is None  # both free again


async def test_a_call_and_its_marks_expire(routes):
    await routes.start_call(_call(7), SHORT_TTL)
    await expire()
    assert await routes.get_call(7) is None
    assert await routes.end_call(7, "ringing") is None
    assert await routes.start_call(_call(8), TTL) is None  # nobody is busy any more


async def test_update_call_extends_the_call(routes):
    await routes.start_call(_call(7), SHORT_TTL)
    accepted = CallRecord(7, U1, "web", U2, "video", "accepted", 1000, "ios", 2000)
    assert await routes.update_call(accepted, "ringing", TTL) is True
    await expire()
    assert await routes.get_call(7) == accepted
    assert await routes.start_call(_call(8, U3, U2), TTL) == U2  # the mark was extended too


# -- the node registry (operations: im cluster nodes, drain) -----------------------------------

def _node(node: NodeId, connections: int = 0, state: str = "ready") -> NodeInfo:
    return NodeInfo(node, f"ws://{node}:8765/ws", f"http://{node}:8766", connections, 12.5, "0.1.0",
                    1_700_000_000_000, 1_700_000_001_000, state)


async def test_registry_lists_announced_nodes_by_id_latest_record_wins(routes):
    assert await routes.nodes() == []
    await routes.announce(_node(B), TTL)
    await routes.announce(_node(A), TTL)
    await routes.announce(_node(A, connections=3, state="draining"), TTL)  # replaces A's record
    assert await routes.nodes() == [_node(A, connections=3, state="draining"), _node(B)]


async def test_registry_records_expire_and_withdraw_removes_one(routes):
    await routes.announce(_node(A), SHORT_TTL)
    await routes.announce(_node(B), TTL)
    await expire()
    assert await routes.nodes() == [_node(B)]
    await routes.withdraw(B)
    await routes.withdraw(B)  # twice is once
    assert await routes.nodes() == []


async def test_ping_answers(routes):
    assert await asyncio.wait_for(routes.ping(), 10) is None
