"""What a group message may cost: the account is charged by the members it reaches (pushes
and bytes), the node by all group messages together, and a member who does not read is
dropped once its backlog would pass ``max_write_buffer``; each refusal has its documented
code, nothing is stored for it, and the others are served."""
from __future__ import annotations

import asyncio

import pytest
from harness import new_user

from edgeim.core_ext.protocol import ErrorCode
from edgeim.sdk import Client, ServerError


async def group_of(server, n: int) -> tuple[list[Client], int]:
    """``n`` connected users, the first the owner of a group of all of them."""
    members = []
    for _ in range(n):
        client = Client(server.url)
        await client.connect()
        await new_user(client)
        members.append(client)
    info = await members[0].group_create("g", [c.user_id for c in members[1:]])
    return members, info.group


async def close_all(clients: list[Client]) -> None:
    for client in clients:
        await client.close()


async def test_a_group_message_is_charged_once_per_member_it_reaches(serve_factory):
    server = serve_factory(user_fanout_rate=0.001, user_fanout_burst=11)
    members, group = await group_of(server, 5)
    owner, friend = members[0], members[1]
    try:
        acks = [await owner.send_group(group, f"g{n}") for n in range(2)]  # 2 x 5 members: 10 of 11
        with pytest.raises(ServerError) as err:
            await owner.send_group(group, "one group message too many")
        assert err.value.code == ErrorCode.RATE_LIMITED
        assert await owner.send(friend.user_id, "a private message costs one") is not None
        stored = (await friend.history(acks[0].conv)).msgs
    finally:
        await close_all(members)
    assert [m.content for m in stored] == ["g0", "g1"]


async def test_a_group_message_is_charged_its_size_per_member_it_reaches(serve_factory):
    server = serve_factory(user_fanout_bytes_rate=1, user_fanout_bytes_burst=100_000)
    members, group = await group_of(server, 5)
    owner, friend = members[0], members[1]
    try:
        ack = await owner.send_group(group, "a" * 15_000)  # 5 x 15,000 bytes: 75,000 of 100,000
        with pytest.raises(ServerError) as err:
            await owner.send_group(group, "b" * 15_000)
        assert err.value.code == ErrorCode.RATE_LIMITED
        assert await owner.send(friend.user_id, "c" * 15_000) is not None  # alone, it fits what is left
        stored = (await friend.history(ack.conv)).msgs
    finally:
        await close_all(members)
    assert [m.content[0] for m in stored] == ["a"]


async def test_the_node_budget_counts_every_accounts_group_messages_but_not_private_ones(serve_factory):
    server = serve_factory(node_fanout_rate=0.001)
    members, group = await group_of(server, 3)
    owner, other = members[0], members[1]
    try:
        ack = await owner.send_group(group, "first")
        with pytest.raises(ServerError) as err:
            await other.send_group(group, "another account, the same node")
        assert err.value.code == ErrorCode.RATE_LIMITED
        assert "node" in err.value.message
        assert await other.send(owner.user_id, "private") is not None
        stored = (await other.history(ack.conv)).msgs
    finally:
        await close_all(members)
    assert [m.content for m in stored] == ["first"]


async def test_a_member_who_stops_reading_is_dropped_and_the_others_get_every_message(serve_factory):
    server = serve_factory(max_write_buffer=300_000)
    members, group = await group_of(server, 3)
    owner, deaf, reader = members
    try:
        deaf._transport.underlying_transport.pause_reading()
        payload = "z" * 30_000
        sent = 0
        while deaf.connected and sent < 400:  # up to 12 MB for a client that reads none of it
            await owner.send_group(group, f"{sent:04}{payload}")
            sent += 1
        deaf._transport.underlying_transport.resume_reading()
        assert await asyncio.wait_for(deaf.wait_closed(), 10) is None  # dropped, no close frame
        got = [(await asyncio.wait_for(reader.pushes.get(), 5)).content[:4] for _ in range(sent)]
        assert got == [f"{n:04}" for n in range(sent)]
        await owner.send_group(group, "still serving")
        assert (await asyncio.wait_for(reader.pushes.get(), 5)).content == "still serving"
    finally:
        await close_all(members)
