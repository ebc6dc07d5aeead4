"""What a group message may cost: the account is charged by the members it reaches (pushes
and bytes), the node by all group messages together, and a member who does not read is
dropped once its backlog would pass ``max_write_buffer``; a group's joins and leaves are
refused, and its typing signals dropped, past the pushes a second they may make. Each
refusal has its documented code, nothing is stored or changed for it, and the others are
served."""
from __future__ import annotations

import asyncio

import pytest
from harness import new_user, next_event, nothing_pending

from edgeim.core_ext.protocol import ErrorCode, Op
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



async def test_while_the_node_holds_too_much_a_laggard_goes_first_and_readers_stay(serve_factory):
    # a node bound of one byte: always passed, so each connection may hold 4 MiB / 16
    server = serve_factory(max_write_buffer=4 * 1024 * 1024, node_max_write_buffer=1, rate=100_000, burst=100_000)
    members, group = await group_of(server, 3)
    owner, deaf, reader = members
    try:
        deaf._transport.underlying_transport.pause_reading()
        sent = 200  # 6 MB: the socket buffers and 256 KiB, not the socket buffers and 4 MiB
        for n in range(sent):
            await owner.send_group(group, f"{n:04}" + "z" * 30_000)
        deaf._transport.underlying_transport.resume_reading()
        assert await asyncio.wait_for(deaf.wait_closed(), 10) is None
        got = [(await asyncio.wait_for(reader.pushes.get(), 5)).content[:4] for _ in range(sent)]
        assert got == [f"{n:04}" for n in range(sent)] and reader.connected
    finally:
        await close_all(members)

# -- joins, leaves and typing: each group's pushes are budgeted by its audience ------------------

async def test_a_groups_typing_past_its_budget_is_dropped_not_refused(serve_factory):
    # a bucket of 0.01 push a second: the first signal is relayed, the rest of the minute dropped
    server = serve_factory(group_typing_rate=0.01, typing_rate=1000, typing_burst=1000)
    members, group = await group_of(server, 5)
    owner, typist, watcher = members[0], members[1], members[2]
    conv = f"g{group}"
    try:
        for client in members[1:]:
            await next_event(client, Op.GROUP_PUSH)  # "created"
        for _ in range(5):
            await typist.typing(conv)  # every one answered TYPING_OK
        await owner.typing(conv)  # another typist of the same group: the group's budget is spent
        first = await next_event(watcher, Op.TYPING_PUSH)
        assert first.user == typist.user_id
        assert await nothing_pending(watcher, messages=False)  # the rest were dropped
        # the members are not harmed otherwise: messages still reach them
        await owner.send_group(group, "still here")
        assert (await asyncio.wait_for(watcher.pushes.get(), 5)).content == "still here"
    finally:
        await close_all(members)


async def test_joins_and_leaves_of_a_group_past_its_budget_are_refused_with_nothing_changed(serve_factory):
    # 3 members to start: a join costs 3, a leave 4 (the members it is announced to)
    server = serve_factory(group_join_rate=0.001, group_join_burst=8)
    members, group = await group_of(server, 3)
    owner = members[0]
    await owner.group_update(group, join_mode="open")
    async with Client(server.url) as joiner, Client(server.url) as late:
        await new_user(joiner)
        await new_user(late)
        try:
            assert (await joiner.group_join(group)).status == "joined"  # 3 of 8
            await joiner.group_quit(group)  # 4: 7 of 8
            with pytest.raises(ServerError) as join_err:
                await late.group_join(group)
            with pytest.raises(ServerError) as quit_err:
                await members[1].group_quit(group)
            assert join_err.value.code == quit_err.value.code == ErrorCode.RATE_LIMITED
            assert {m.user for m in await owner.group_members(group)} == {c.user_id for c in members}
            # other groups have budgets of their own
            other = await owner.group_create("another", [], join_mode="open")
            assert (await late.group_join(other.group)).status == "joined"
        finally:
            await close_all(members)
