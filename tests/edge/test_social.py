"""Friends and blocks against a real ``im serve`` with the product default (only friends
may send each other 1:1 messages): requests, accept, reject, delete, remarks, mutual
requests (also sent at the same moment), blocks, the friends-only rule and list paging,
each seen over the socket."""
from __future__ import annotations

import asyncio

import pytest

from edgeim.core_ext.protocol import ErrorCode, Op
from edgeim.sdk import Client, ServerError

from harness import new_user, next_event, nothing_pending, people


@pytest.fixture
def server(serve_factory):
    return serve_factory("cython", strangers_may_send=0)


async def befriend(a: Client, b: Client) -> None:
    await a.friend_request(b.user_id)
    await b.friend_accept(a.user_id)
    await next_event(b, Op.FRIEND_PUSH)  # "request"
    await next_event(a, Op.FRIEND_PUSH)  # "accepted"


async def refused(call, code: ErrorCode) -> None:
    with pytest.raises(ServerError) as err:
        await call
    assert err.value.code == code, err.value


async def test_request_then_accept_makes_both_friends(clients):
    alice, bob = await people(clients, 2)

    await alice.friend_request(bob.user_id, "hi, it's alice")
    request = await next_event(bob, Op.FRIEND_PUSH)
    pending = await bob.friend_requests()
    await bob.friend_accept(alice.user_id)
    accepted = await next_event(alice, Op.FRIEND_PUSH)

    assert (request.event, request.user, request.message) == ("request", alice.user_id, "hi, it's alice")
    assert [(r.user, r.message) for r in pending] == [(alice.user_id, "hi, it's alice")]
    assert (accepted.event, accepted.user) == ("accepted", bob.user_id)
    assert [f.user for f in await alice.friends()] == [bob.user_id]
    assert [f.user for f in await bob.friends()] == [alice.user_id]
    assert await bob.friend_requests() == []
    await refused(alice.friend_request(bob.user_id), ErrorCode.CONFLICT)  # already friends
    ack = await alice.send(bob.user_id, "friends may send")
    assert (await asyncio.wait_for(bob.pushes.get(), 5)).id == ack.msg_id


async def test_rejected_request_is_gone_and_may_be_sent_again(clients):
    alice, bob = await people(clients, 2)
    await alice.friend_request(bob.user_id)
    await next_event(bob, Op.FRIEND_PUSH)

    await bob.friend_reject(alice.user_id)

    assert await bob.friend_requests() == []
    assert await alice.friends() == [] and await bob.friends() == []
    await refused(bob.friend_accept(alice.user_id), ErrorCode.NOT_FOUND)
    assert await nothing_pending(alice)  # a rejection is silent
    await alice.friend_request(bob.user_id, "again")
    assert (await next_event(bob, Op.FRIEND_PUSH)).message == "again"


async def test_delete_tells_the_other_and_ends_friends_only_sends(clients):
    alice, bob = await people(clients, 2)
    await befriend(alice, bob)

    await alice.friend_delete(bob.user_id)
    deleted = await next_event(bob, Op.FRIEND_PUSH)

    assert (deleted.event, deleted.user) == ("deleted", alice.user_id)
    assert await alice.friends() == [] and await bob.friends() == []
    await refused(bob.send(alice.user_id, "still there?"), ErrorCode.NOT_FRIENDS)
    await refused(alice.friend_delete(bob.user_id), ErrorCode.NOT_FRIENDS)


async def test_remark_is_the_owners_own_note(clients):
    alice, bob = await people(clients, 2)
    await befriend(alice, bob)

    await alice.friend_remark(bob.user_id, "Bob from work")

    assert [(f.user, f.remark) for f in await alice.friends()] == [(bob.user_id, "Bob from work")]
    assert [(f.user, f.remark) for f in await bob.friends()] == [(alice.user_id, "")]


async def test_mutual_requests_make_friends(clients):
    alice, bob = await people(clients, 2)
    await alice.friend_request(bob.user_id)
    await next_event(bob, Op.FRIEND_PUSH)

    await bob.friend_request(alice.user_id)  # bob asks too: that is an accept
    accepted = await next_event(alice, Op.FRIEND_PUSH)

    assert (accepted.event, accepted.user) == ("accepted", bob.user_id)
    assert [f.user for f in await alice.friends()] == [bob.user_id]
    assert [f.user for f in await bob.friends()] == [alice.user_id]
    assert await alice.friend_requests() == [] and await bob.friend_requests() == []


async def test_requests_both_ways_at_once_make_friends(clients):
    alice, bob = await people(clients, 2)

    await asyncio.gather(alice.friend_request(bob.user_id), bob.friend_request(alice.user_id))

    assert [f.user for f in await alice.friends()] == [bob.user_id]
    assert [f.user for f in await bob.friends()] == [alice.user_id]
    assert await alice.friend_requests() == [] and await bob.friend_requests() == []
    ack = await alice.send(bob.user_id, "friends now")
    assert (await asyncio.wait_for(bob.pushes.get(), 5)).id == ack.msg_id


async def test_an_accept_or_delete_sent_twice_at_once_tells_the_other_once(clients):
    alice, bob = await people(clients, 2)
    bob_ios = await clients()
    await bob_ios.token_login(bob.token, "ios")
    await alice.friend_request(bob.user_id)

    await asyncio.gather(bob.friend_accept(alice.user_id), bob_ios.friend_accept(alice.user_id),
                         return_exceptions=True)
    accepted = await next_event(alice, Op.FRIEND_PUSH)
    assert await nothing_pending(alice)  # one "accepted"
    await asyncio.gather(bob.friend_delete(alice.user_id), bob_ios.friend_delete(alice.user_id),
                         return_exceptions=True)
    deleted = await next_event(alice, Op.FRIEND_PUSH)

    assert (accepted.event, deleted.event) == ("accepted", "deleted")
    assert await nothing_pending(alice)  # one "deleted"
    assert await alice.friends() == [] and await bob.friends() == []


async def test_block_refuses_sends_and_requests_until_unblocked(clients):
    alice, bob, carol = await people(clients, 3)
    await befriend(alice, bob)
    first = await alice.send(bob.user_id, "before the block")
    await asyncio.wait_for(bob.pushes.get(), 5)

    await bob.block(alice.user_id)
    await bob.block(carol.user_id)
    await bob.block(carol.user_id)  # idempotent
    assert await bob.blocks() == sorted([alice.user_id, carol.user_id])
    assert await alice.blocks() == []  # one-way
    await refused(alice.send(bob.user_id, "blocked"), ErrorCode.BLOCKED)
    await refused(carol.friend_request(bob.user_id), ErrorCode.BLOCKED)
    assert await nothing_pending(bob)
    assert await bob.friend_requests() == []
    assert [m.content for m in (await bob.history(first.conv)).msgs] == ["before the block"]
    assert [f.user for f in await bob.friends()] == [alice.user_id]  # a block keeps the friendship
    reply = await bob.send(alice.user_id, "bob may still write")  # a block is one-way
    assert (await asyncio.wait_for(alice.pushes.get(), 5)).id == reply.msg_id

    await bob.unblock(alice.user_id)
    await bob.unblock(carol.user_id)
    assert await bob.blocks() == []
    again = await alice.send(bob.user_id, "after the unblock")
    await carol.friend_request(bob.user_id)

    assert (await asyncio.wait_for(bob.pushes.get(), 5)).id == again.msg_id
    assert [r.user for r in await bob.friend_requests()] == [carol.user_id]
    assert [m.content for m in (await bob.history(first.conv)).msgs] == [
        "before the block", "bob may still write", "after the unblock"]


async def test_the_block_list_pages_and_survives_a_new_session(clients, server):
    bob = await clients()
    bob_name, _ = await new_user(bob)
    others = await people(clients, 3)
    for other in others:
        await bob.block(other.user_id)
    first = await bob.blocks_page(limit=2)
    rest = await bob.blocks_page(after=first.users[-1], limit=2)
    async with Client(server.url) as again:
        await again.login(bob_name, "secret-pw", "ios")
        listed = await again.blocks()

    ids = sorted(o.user_id for o in others)
    assert (first.users, first.has_more, rest.users, rest.has_more) == (ids[:2], True, ids[2:], False)
    assert listed == ids


async def test_only_friends_send_one_to_one_by_default(clients):
    alice, bob, stranger = await people(clients, 3)
    await befriend(alice, bob)

    await refused(stranger.send(bob.user_id, "hello?"), ErrorCode.NOT_FRIENDS)
    ack = await alice.send(bob.user_id, "hello friend")

    assert (await asyncio.wait_for(bob.pushes.get(), 5)).id == ack.msg_id
    assert [(c.peer, c.last_text) for c in await bob.conversations()] == [(alice.user_id, "hello friend")]
    assert await stranger.conversations() == []


async def test_friends_list_pages_by_id(clients):
    alice, *others = await people(clients, 6)
    for other in others:
        await befriend(alice, other)
    ids = sorted(o.user_id for o in others)

    pages, after = [], 0
    while True:
        page = await alice.friends_page(after=after, limit=2)
        pages.append(([f.user for f in page.friends], page.has_more))
        if not page.has_more:
            break
        after = page.friends[-1].user

    assert pages == [(ids[0:2], True), (ids[2:4], True), (ids[4:5], False)]
    assert [f.user for f in (await alice.friends_page(after=ids[3], limit=10)).friends] == ids[4:]
    assert [f.user for f in await alice.friends()] == ids
