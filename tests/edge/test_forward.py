"""FORWARD against a real ``im serve``, on both codec implementations: copies of messages
the caller can read, sent to a conversation the caller may write to under SEND's rules,
marked with their original sender, pushed and acked as sends; refusals change nothing;
files in forwarded messages stay downloadable by the new conversation's readers (a real
upload and download through the node's HTTP port)."""
from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from edgeim.core_ext import content
from edgeim.core_ext.protocol import ErrorCode, Op
from edgeim.sdk import Client, ServerError

from harness import new_user, next_event, nothing_pending


@pytest.fixture
def server(serve_factory, codec):
    return serve_factory(codec, forward_max=3)


async def refused(call, code: ErrorCode) -> ServerError:
    with pytest.raises(ServerError) as err:
        await call
    assert err.value.code == code, err.value
    return err.value


def private(a: int, b: int) -> str:
    return f"p{min(a, b)}_{max(a, b)}"


async def test_forward_private_messages_to_another_user(clients):
    alice, bob, carol = await clients(), await clients(), await clients()
    _, alice_id = await new_user(alice)
    _, bob_id = await new_user(bob)
    _, carol_id = await new_user(carol)
    first = await alice.send(bob_id, "the address is 12 Main St")
    second = await alice.send(bob_id, {"lat": 48.85, "lng": 2.35, "name": "here"}, type=content.LOCATION)
    await bob.pushes.get(), await bob.pushes.get()

    acks = await bob.forward(carol_id, first.conv, [second.seq, first.seq], cmid="fw-1")

    conv = private(bob_id, carol_id)
    assert [(a.conv, a.seq, a.cmid) for a in acks] == [(conv, 1, "fw-1/0"), (conv, 2, "fw-1/1")]
    got = [await asyncio.wait_for(carol.pushes.get(), 5) for _ in acks]
    assert [(m.seq, m.sender, m.forwarded_from, m.type) for m in got] == [
        (1, bob_id, alice_id, content.LOCATION), (2, bob_id, alice_id, content.TEXT)]
    assert got[1].content == "the address is 12 Main St" and got[0].content["name"] == "here"
    assert await nothing_pending(bob)  # the forwarding device has the reply
    page = await carol.history(conv)
    assert [(m.seq, m.forwarded_from, m.id) for m in page.msgs] == [(a.seq, alice_id, a.msg_id) for a in acks]

    # a retry of the same forward stores nothing twice and is acked with the same ids
    again = await bob.forward(carol_id, first.conv, [second.seq, first.seq], cmid="fw-1")
    assert [(a.msg_id, a.seq) for a in again] == [(a.msg_id, a.seq) for a in acks]
    assert len((await carol.history(conv)).msgs) == 2
    assert await nothing_pending(carol)

    # a copy of a copy keeps the first sender; hide_sender names nobody
    back = await carol.forward(alice_id, conv, [2])
    assert (await alice.pushes.get()).forwarded_from == alice_id and back[0].conv == private(alice_id, carol_id)
    await carol.forward(alice_id, conv, [2], hide_sender=True)
    assert (await alice.pushes.get()).forwarded_from == -1


async def test_forward_into_a_group_and_out_of_one(clients):
    owner, member, outsider = await clients(), await clients(), await clients()
    _, owner_id = await new_user(owner)
    _, member_id = await new_user(member)
    _, outsider_id = await new_user(outsider)
    group = await owner.group_create("forwards", [member_id])
    conv = f"g{group.group}"
    dm = await outsider.send(owner_id, "news for your group")

    acks = await owner.forward(group.group, dm.conv, [dm.seq], group=True)
    pushed = await asyncio.wait_for(member.pushes.get(), 5)
    assert (pushed.conv, pushed.seq, pushed.forwarded_from, pushed.content) == (
        conv, acks[0].seq, outsider_id, "news for your group")

    said = await member.send_group(group.group, "thanks")
    out = await member.forward(outsider_id, conv, [said.seq])
    got = await asyncio.wait_for(outsider.pushes.get(), 5)
    assert (got.conv, got.id, got.forwarded_from, got.content) == (out[0].conv, out[0].msg_id, member_id, "thanks")


async def test_refusals_change_nothing(clients):
    alice, bob, carol = await clients(), await clients(), await clients()
    _, alice_id = await new_user(alice)
    _, bob_id = await new_user(bob)
    _, carol_id = await new_user(carol)
    acks = [await alice.send(bob_id, f"m{i}") for i in range(5)]
    conv = acks[0].conv
    target = private(bob_id, carol_id)

    await refused(bob.forward(carol_id, conv, [1, 2, 3, 4]), ErrorCode.FORWARD_LIMIT)  # forward_max=3
    await refused(carol.forward(alice_id, conv, [1]), ErrorCode.FORBIDDEN)  # not hers to read
    await refused(bob.forward(carol_id, conv, [1, 99]), ErrorCode.NOT_FOUND)
    await alice.recall(conv, 3)
    await refused(bob.forward(carol_id, conv, [2, 3]), ErrorCode.MESSAGE_RECALLED)
    await refused(bob.forward(bob_id, conv, [1]), ErrorCode.INVALID_ARGUMENT)  # to oneself, as SEND
    await carol.block(bob_id)
    await refused(bob.forward(carol_id, conv, [1]), ErrorCode.BLOCKED)
    for group_id in (123456,):
        await refused(bob.forward(group_id, conv, [1], group=True), ErrorCode.NOT_FOUND)

    assert (await carol.history(target)).msgs == []
    assert await nothing_pending(carol)
    assert [c.conv for c in await bob.conversations()] == [conv]


async def test_group_rules_hold_for_a_forward(clients):
    owner, member, friend = await clients(), await clients(), await clients()
    _, owner_id = await new_user(owner)
    _, member_id = await new_user(member)
    _, friend_id = await new_user(friend)
    group = await owner.group_create("strict", [member_id])
    dm = await friend.send(member_id, "pass it on")
    await owner.group_mute(group.group, member_id, 2**41)
    await refused(member.forward(group.group, dm.conv, [dm.seq], group=True), ErrorCode.MUTED)
    await refused(friend.forward(group.group, dm.conv, [dm.seq], group=True), ErrorCode.FORBIDDEN)
    assert (await owner.history(f"g{group.group}")).msgs == []


async def test_friends_only_holds_for_a_forward(serve_factory):
    node = serve_factory(strangers_may_send=0)
    async with Client(node.url) as alice, Client(node.url) as bob, Client(node.url) as carol:
        _, alice_id = await new_user(alice)
        _, bob_id = await new_user(bob)
        _, carol_id = await new_user(carol)
        await alice.friend_request(bob_id)
        await bob.friend_accept(alice_id)
        ack = await alice.send(bob_id, "between friends")
        await refused(bob.forward(carol_id, ack.conv, [ack.seq]), ErrorCode.NOT_FRIENDS)
        assert (await carol.history(private(bob_id, carol_id))).msgs == []


async def test_a_forwarded_file_downloads_for_the_new_conversation(serve_factory):
    """The key names the conversation the file was uploaded to; a forward shares it with
    the target conversation, whose readers then get download grants; others still do not."""
    node = serve_factory()
    async with Client(node.url) as alice, Client(node.url) as bob, Client(node.url) as carol, \
            Client(node.url) as mallory:
        _, alice_id = await new_user(alice)
        _, bob_id = await new_user(bob)
        _, carol_id = await new_user(carol)
        await new_user(mallory)
        source = private(alice_id, bob_id)
        key = await alice.upload(source, b"%PDF-1.7 the plan", "application/pdf", name="plan.pdf")
        ack = await alice.send_typed(bob_id, content.File(key=key, name="plan.pdf", size=17, mime="application/pdf"))
        await refused(carol.file_download_grant(key), ErrorCode.FORBIDDEN)  # before the forward

        group = await bob.group_create("planning", [carol_id])
        await bob.forward(group.group, source, [ack.seq], group=True)
        copy = (await asyncio.wait_for(carol.pushes.get(), 5))
        assert copy.content["key"] == key and copy.forwarded_from == alice_id

        assert await carol.download(key) == b"%PDF-1.7 the plan"
        await refused(mallory.file_download_grant(key), ErrorCode.FORBIDDEN)
        # leaving the conversation it was forwarded to ends it
        await carol.group_quit(group.group)
        await refused(carol.file_download_grant(key), ErrorCode.FORBIDDEN)
        assert await alice.download(key) == b"%PDF-1.7 the plan"


class Unchecked(msgspec.Struct):
    """A FORWARD body as a client that does not check it would send it."""

    conv: Any
    seqs: Any
    cmid: Any


@pytest.mark.parametrize("body, field", [
    (Unchecked(conv="p1_2", seqs=[], cmid="c"), "seqs"),
    (Unchecked(conv="p1_2", seqs=list(range(1, 102)), cmid="c"), "seqs"),
    (Unchecked(conv="p1_2", seqs=[0], cmid="c"), "seqs"),
    (Unchecked(conv="p1_2", seqs=["1"], cmid="c"), "seqs"),
    (Unchecked(conv="p1_2", seqs=[1], cmid="c" * 61), "cmid"),
    (Unchecked(conv="", seqs=[1], cmid="c"), "conv"),
])
async def test_a_bad_forward_body_is_1003_naming_the_field(clients, body, field):
    alice, bob = await clients(), await clients()
    await new_user(alice)
    _, bob_id = await new_user(bob)
    err = await refused(alice.request(Op.FORWARD, body, target=bob_id), ErrorCode.BAD_BODY)
    assert field in err.message, err.message
    assert await alice.conversations() == []


async def test_a_forward_over_the_send_budget_shares_no_file(serve_factory):
    """The copies are charged to the send budget like SENDs; a forward refused there (4000)
    stores no copy and shares no file."""
    node = serve_factory(user_send_rate=0.001, user_send_burst=2)
    async with Client(node.url) as alice, Client(node.url) as bob, Client(node.url) as carol:
        _, alice_id = await new_user(alice)
        _, bob_id = await new_user(bob)
        _, carol_id = await new_user(carol)
        source = private(alice_id, bob_id)
        key = await alice.upload(source, b"budgeted", "text/plain", name="b.txt")
        ack = await alice.send_typed(bob_id, content.File(key=key, name="b.txt", size=8, mime="text/plain"))
        await alice.send(bob_id, "and a text")
        await refused(bob.forward(carol_id, source, [ack.seq, ack.seq + 1, ack.seq]), ErrorCode.RATE_LIMITED)
        await refused(carol.file_download_grant(key), ErrorCode.FORBIDDEN)
        assert (await carol.history(private(bob_id, carol_id))).msgs == []
        await bob.forward(carol_id, source, [ack.seq, ack.seq + 1])  # within the budget: both
        assert await carol.download(key) == b"budgeted"
