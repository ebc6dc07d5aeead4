"""ReadSlots: one user's reads queue among themselves, never in front of another user's."""
from __future__ import annotations

import asyncio

from edgeim.backends.protocols import UserId
from edgeim.services.messages import ReadSlots

A, B = UserId(1), UserId(2)


async def test_a_user_has_at_most_n_reads_in_flight_and_others_are_not_held_up():
    slots = ReadSlots(2)
    inside: list[tuple[UserId, int]] = []
    gates = {n: asyncio.Event() for n in range(5)}

    async def read(user: UserId, n: int) -> None:
        async with slots.slot(user):
            inside.append((user, n))
            await gates[n].wait()

    a_reads = [asyncio.create_task(read(A, n)) for n in range(4)]
    await asyncio.sleep(0)  # let them all try
    assert inside == [(A, 0), (A, 1)]
    b_read = asyncio.create_task(read(B, 4))
    await asyncio.sleep(0)
    assert inside[-1] == (B, 4)  # B goes at once although A has two waiting
    gates[0].set()
    await a_reads[0]
    await asyncio.sleep(0)
    assert inside[-1] == (A, 2)  # the slot A freed went to A's next, in order
    for n in (1, 2, 3, 4):
        gates[n].set()
    await asyncio.gather(*a_reads[1:], b_read)
    assert slots._busy == {} and slots._waiting == {}


async def test_a_cancelled_waiter_gives_its_turn_on():
    slots = ReadSlots(1)
    release = asyncio.Event()
    order: list[str] = []

    async def read(name: str, wait: bool) -> None:
        async with slots.slot(A):
            order.append(name)
            if wait:
                await release.wait()

    first = asyncio.create_task(read("first", True))
    await asyncio.sleep(0)
    second = asyncio.create_task(read("second", False))
    third = asyncio.create_task(read("third", False))
    await asyncio.sleep(0)
    second.cancel()
    release.set()
    await first
    await third
    assert order == ["first", "third"]
    assert slots._busy == {} and slots._waiting == {}
