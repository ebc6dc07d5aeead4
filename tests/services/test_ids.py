"""Message ids and their fencing: a node mints ids only while the lease of its node
number is known to be valid, judged on a fake clock (no waiting)."""
from __future__ import annotations

import pytest

from edgeim.backends.memory import MemoryRoutes
from edgeim.backends.protocols import NodeId
from edgeim.core_ext.errors import Unavailable
from edgeim.core_ext.protocol import ErrorCode
from edgeim.services.ids import EPOCH_MS, LEASE_MARGIN, IdGenerator, NumberLease

TTL = 60.0
A, B = NodeId("a"), NodeId("b")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Unreachable(MemoryRoutes):
    """Routes whose number calls fail while ``down`` (Redis frozen or cut off)."""

    down = False

    async def renew_number(self, number, node, ttl):
        if self.down:
            raise ConnectionError("routes unreachable")
        return await super().renew_number(number, node, ttl)

    async def lease_number(self, node, ttl, numbers):
        if self.down:
            raise ConnectionError("routes unreachable")
        return await super().lease_number(node, ttl, numbers)


def node(routes: MemoryRoutes, name: NodeId, clock: Clock) -> tuple[IdGenerator, NumberLease]:
    ids = IdGenerator(clock=clock, valid_until=float("-inf"))
    return ids, NumberLease(routes, name, ids, TTL, clock)


def test_ids_increase_and_carry_the_node_number():
    ids = IdGenerator(5)
    made = [ids.next() for _ in range(10_000)]
    assert made == sorted(set(made))
    assert {(i >> 12) & 0x3FF for i in made} == {5}


def test_an_id_carries_the_millisecond_it_is_given_and_still_increases_when_it_goes_back():
    ids = IdGenerator(5)
    ts = EPOCH_MS + 123_456_789
    first, second = ids.next(ts), ids.next(ts - 1000)  # the second: a clock stepped back
    assert first >> 22 == second >> 22 == 123_456_789  # above 12 bits of count and 10 of node
    assert second > first
    assert ids.next(ts + 1) >> 22 == 123_456_790


def unavailable(ids: IdGenerator) -> bool:
    try:
        ids.next()
    except Unavailable as exc:
        assert exc.code == ErrorCode.UNAVAILABLE  # 5001: the client retries with the same cmid
        return True
    return False


async def test_no_id_before_a_lease_nor_after_it_lapsed_unrenewed():
    clock = Clock()
    routes = MemoryRoutes(clock=clock)
    ids, lease = node(routes, A, clock)
    assert unavailable(ids)
    assert await lease.acquire() == 0
    assert not unavailable(ids)
    clock.now += TTL - LEASE_MARGIN - 0.001
    assert not unavailable(ids)
    clock.now += 0.001  # the lease may end now (the routes' clock may be slightly ahead)
    assert unavailable(ids) and ids.fenced
    assert await lease.renew() is False  # not lapsed in the routes yet: renewed, same number
    assert not unavailable(ids) and ids.node == 0


async def test_renewals_keep_minting_open():
    clock = Clock()
    routes = MemoryRoutes(clock=clock)
    ids, lease = node(routes, A, clock)
    await lease.acquire()
    for _ in range(100):  # 100 renewals two seconds apart: 200 s, three times the TTL
        clock.now += 2.0
        assert await lease.renew() is False
        assert not unavailable(ids)


async def test_a_node_frozen_past_its_lease_mints_nothing_until_it_leased_another_number():
    clock = Clock()
    routes = MemoryRoutes(clock=clock)
    ids_a, lease_a = node(routes, A, clock)
    ids_b, lease_b = node(routes, B, clock)
    assert await lease_a.acquire() == 0
    clock.now += 75  # a is frozen 75 s; its number is free again, and b takes it
    assert await lease_b.acquire() == 0
    # a wakes: a frame buffered during the freeze is handled before its renewal runs
    assert unavailable(ids_a)
    assert await lease_a.renew() is True  # lapsed: leased again, another number
    assert ids_a.node == 1 and not unavailable(ids_a)
    assert {ids_a.next() >> 12 & 0x3FF, ids_b.next() >> 12 & 0x3FF} == {0, 1}


async def test_unreachable_routes_stop_minting_when_the_lease_may_have_ended_and_it_resumes_after():
    clock = Clock()
    routes = Unreachable(clock=clock)
    ids, lease = node(routes, A, clock)
    await lease.acquire()
    routes.down = True
    for _ in range(20):  # 40 s of failed renewals: the lease is still good
        clock.now += 2.0
        with pytest.raises(ConnectionError):
            await lease.renew()
    assert not unavailable(ids)
    clock.now += 20.0  # 60 s since the last success
    with pytest.raises(ConnectionError):
        await lease.renew()
    assert unavailable(ids)
    routes.down = False
    assert await lease.renew() is True  # lapsed meanwhile: leased again (the same number is free)
    assert ids.node == 0 and not unavailable(ids)


async def test_a_lease_counts_from_when_it_was_asked_for():
    """A slow answer does not stretch the lease: the fence counts from the request."""
    clock = Clock()

    class Slow(MemoryRoutes):
        async def lease_number(self, node, ttl, numbers):
            number = await super().lease_number(node, ttl, numbers)
            clock.now += 5.0  # the answer took 5 s to come back
            return number

    ids, lease = node(Slow(clock=clock), A, clock)
    await lease.acquire()
    assert ids.valid_until == 1000.0 + TTL - LEASE_MARGIN
