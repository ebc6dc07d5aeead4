"""Every list answers a page that fits a frame, whatever a user can be made to have, and
the pages together hold every entry once, against a real ``im serve``: conversations with
long names (put there by a stranger), groups with long notices, friend requests and
requests to join with long messages, and a catch-up over 10,000 conversations."""
from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from edgeim.core_ext import bodies
from edgeim.core_ext.protocol import MAX_BODY_SIZE, Op
from edgeim.sdk import Client

from harness import new_user, people

WIDE = "😀"  # 4 bytes in UTF-8: the longest names and messages the bounds allow


async def pages(client: Client, op: Op, request: Any, reply: type, items: str, key: Any) -> list[Any]:
    """Every page of a list by raw requests: each body is checked against the frame."""
    got: list[Any] = []
    while True:
        _, raw = await client.request(op, request)
        assert len(raw) <= MAX_BODY_SIZE
        page = bodies.decode(raw, reply)
        got.extend(getattr(page, items))
        if not page.has_more:
            return got
        assert getattr(page, items)  # a page that says more always moves on
        request = key(request, page)


async def gather_in_chunks(calls: list[Any], size: int = 200) -> list[Any]:
    done: list[Any] = []
    for start in range(0, len(calls), size):
        done.extend(await asyncio.gather(*(call() for call in calls[start:start + size])))
    return done


async def test_conversations_a_stranger_fills_with_long_names_are_paged(clients):
    victim, stranger, friend = await people(clients, 3)
    await gather_in_chunks([lambda n=n: stranger.group_create(f"{n:03d}" + WIDE * 61, [victim.user_id])
                            for n in range(240)])
    ack = await friend.send(victim.user_id, "hello")

    listed = await pages(victim, Op.CONVERSATIONS, bodies.Conversations(limit=bodies.MAX_LIST),
                         bodies.ConversationList, "convs",
                         lambda req, page: bodies.Conversations(cursor=page.next_cursor, limit=bodies.MAX_LIST))
    device = await clients()
    await device.token_login(victim.token, "ios")
    caught = await device.catch_up()

    assert len(listed) == 241 and len({c.conv for c in listed}) == 241
    assert listed[0].conv == ack.conv  # newest first
    assert caught == 1 and (await device.pushes.get()).content == "hello"


async def test_groups_with_long_notices_are_paged(clients):
    [owner] = await people(clients, 1)
    made = await gather_in_chunks([lambda: owner.group_create("g", notice=WIDE * 2048, avatar=WIDE * 512)
                                   for _ in range(25)])

    listed = await pages(owner, Op.GROUPS, bodies.ListPage(limit=100), bodies.GroupList, "groups",
                         lambda req, page: bodies.ListPage(after=page.groups[-1].group, limit=100))

    assert [g.group for g in listed] == sorted(g.group for g in made)
    assert [g.group for g in await owner.groups()] == [g.group for g in listed]


async def test_friend_requests_and_requests_to_join_with_long_messages_are_paged(clients):
    victim, *askers = await people(clients, 71)
    group = await victim.group_create("club", join_mode="approval")
    await asyncio.gather(*(a.friend_request(victim.user_id, WIDE * 256) for a in askers))
    await asyncio.gather(*(a.group_join(group.group, WIDE * 256) for a in askers))
    asked = sorted(a.user_id for a in askers)

    requests = await pages(victim, Op.FRIEND_REQUESTS, bodies.ListPage(limit=100), bodies.FriendRequestList,
                           "requests", lambda req, page: bodies.ListPage(after=page.requests[-1].user, limit=100))
    joins = await pages(victim, Op.GROUP_JOIN_REQUESTS, bodies.GroupJoinRequests(group=group.group),
                        bodies.JoinRequestList, "requests",
                        lambda req, page: bodies.GroupJoinRequests(group=group.group, after=page.requests[-1].user))

    assert [r.user for r in requests] == asked and all(r.message == WIDE * 256 for r in requests)
    assert [r.user for r in joins] == asked and all(r.message == WIDE * 256 for r in joins)
    assert [r.user for r in await victim.friend_requests()] == asked
    assert [r.user for r in (await victim.group_join_requests(group.group)).requests] == asked


class OldJoinRequests(msgspec.Struct):
    """GROUP_JOIN_REQUESTS as a client from before paging sends it."""

    group: int


async def test_join_requests_page_by_limit_and_a_request_without_paging_gets_the_first_page(clients):
    owner, *askers = await people(clients, 4)
    group = await owner.group_create("club", join_mode="approval")
    for a in askers:
        await a.group_join(group.group, "me")
    asked = sorted(a.user_id for a in askers)

    first = await owner.group_join_requests_page(group.group, limit=2)
    second = await owner.group_join_requests_page(group.group, after=first.requests[-1].user, limit=2)
    _, raw = await owner.request(Op.GROUP_JOIN_REQUESTS, OldJoinRequests(group=group.group))
    old = msgspec.msgpack.decode(raw)

    assert ([r.user for r in first.requests], first.has_more) == (asked[:2], True)
    assert ([r.user for r in second.requests], second.has_more) == (asked[2:], False)
    assert [r["user"] for r in old["requests"]] == asked and old["has_more"] is False


async def test_catch_up_over_ten_thousand_conversations(serve_factory):
    server = serve_factory(rate=1_000_000, burst=1_000_000)  # the set-up's 10,000 creates, not the test
    async with Client(server.url) as user, Client(server.url) as other, Client(server.url) as device:
        await new_user(user)
        await new_user(other)
        made = await gather_in_chunks([lambda n=n: user.group_create(f"g{n}") for n in range(10_000)])
        shared = await user.group_create("shared", [other.user_id])
        sent = [await other.send_group(shared.group, f"m{n}") for n in range(3)]
        # the list orders by the newest message's ms, then by conversation id: a later ms
        # for the private message, so that the order asserted below is the only one
        await asyncio.sleep(0.005)
        newest = await other.send(user.user_id, "private")
        await device.token_login(user.token, "ios")

        caught = await device.catch_up()
        listed = await device.conversations()
        got = [device.pushes.get_nowait() for _ in range(caught)]

    assert len(made) == 10_000 and len(listed) == 10_002
    assert sorted(m.content for m in got) == ["m0", "m1", "m2", "private"]
    assert listed[0].conv == newest.conv and listed[1].conv == sent[-1].conv
