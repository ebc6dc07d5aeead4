"""Reactions against a real ``im serve``, on both codec implementations: REACT adds and
takes back an emoji, every other device of the conversation's members gets one
REACTION_PUSH, HISTORY and SYNC show each message's reactions, the bounds (settings) and
refusals (which change nothing), and how a device that was away learns what changed
(SYNC ``changes_after``)."""
from __future__ import annotations

import msgspec
import pytest

from edgeim.core_ext import bodies
from edgeim.core_ext.protocol import ErrorCode, Op
from edgeim.sdk import Client, ServerError

from harness import new_user, next_event, nothing_pending

THUMBS, HEART, FIRE, PARTY = "\U0001f44d", "\u2764\ufe0f", "\U0001f525", "\U0001f389"


@pytest.fixture
def server(serve_factory, codec):
    return serve_factory(codec, reaction_max_emoji=3, reaction_max_per_user=2)


async def refused(call, code: ErrorCode) -> ServerError:
    with pytest.raises(ServerError) as err:
        await call
    assert err.value.code == code, err.value
    return err.value


async def reaction_pushes(client: Client) -> list[bodies.ReactionEvent]:
    """The REACTION_PUSHes waiting for ``client`` (other pushes dropped): a PING round trip
    first, so every push queued for it before has arrived."""
    await client.ping()
    found = []
    while not client.events.empty():
        kind, body = client.events.get_nowait()
        if kind == Op.REACTION_PUSH:
            found.append(body)
    return found


def counts(reactions: list[bodies.Reaction]) -> dict[str, tuple[int, list[int]]]:
    return {r.emoji: (r.count, r.users) for r in reactions}


def of(page: bodies.Page, seq: int) -> dict[str, tuple[int, list[int]]]:
    for entry in page.reactions:
        if entry.seq == seq:
            return counts(entry.reactions)
    return {}


async def test_a_reaction_in_a_private_conversation_reaches_every_other_device_once(clients):
    alice, bob = await clients(), await clients()
    name, alice_id = await new_user(alice, "ios")
    _, bob_id = await new_user(bob)
    alice_desktop = await clients()
    await alice_desktop.login(name, "secret-pw", "desktop")
    ack = await alice.send(bob_id, "lunch?")
    await bob.pushes.get()
    await alice_desktop.pushes.get()

    event = await bob.react(ack.conv, ack.seq, THUMBS)

    assert (event.conv, event.seq, event.msg_id, event.user, event.emoji, event.added) == (
        ack.conv, ack.seq, ack.msg_id, bob_id, THUMBS, True)
    assert counts(event.reactions) == {THUMBS: (1, [bob_id])} and event.rev == 1
    for device in (alice, alice_desktop):
        push = await next_event(device, Op.REACTION_PUSH)
        assert push == event
    assert await nothing_pending(bob)  # the reacting device has the reply, not a push
    for device in (alice, alice_desktop):
        assert await nothing_pending(device)  # once


async def test_reactions_show_in_history_and_sync_and_can_be_taken_back(clients):
    alice, bob = await clients(), await clients()
    _, alice_id = await new_user(alice)
    _, bob_id = await new_user(bob)
    first = await alice.send(bob_id, "one")
    second = await alice.send(bob_id, "two")

    await bob.react(first.conv, first.seq, THUMBS)
    await alice.react(first.conv, first.seq, THUMBS)
    await alice.react(first.conv, first.seq, HEART)
    again = await alice.react(first.conv, first.seq, HEART)  # once is enough: nothing changes
    assert counts(again.reactions) == {THUMBS: (2, [bob_id, alice_id]), HEART: (1, [alice_id])}

    for page in (await bob.history(first.conv), await alice.sync(first.conv, 0)):
        assert of(page, first.seq) == {THUMBS: (2, [bob_id, alice_id]), HEART: (1, [alice_id])}
        assert of(page, second.seq) == {}

    taken = await alice.unreact(first.conv, first.seq, THUMBS)
    assert not taken.added and counts(taken.reactions) == {THUMBS: (1, [bob_id]), HEART: (1, [alice_id])}
    push = await next_event(bob, Op.REACTION_PUSH)
    while push.rev != taken.rev:
        push = await next_event(bob, Op.REACTION_PUSH)
    assert push == taken
    assert of(await bob.history(first.conv), first.seq) == {THUMBS: (1, [bob_id]), HEART: (1, [alice_id])}


async def test_the_bounds_refuse_and_change_nothing(clients):
    """reaction_max_per_user=2, reaction_max_emoji=3 on this node."""
    alice, bob = await clients(), await clients()
    await new_user(alice)
    _, bob_id = await new_user(bob)
    ack = await alice.send(bob_id, "react to me")
    await alice.react(ack.conv, ack.seq, THUMBS)
    await alice.react(ack.conv, ack.seq, HEART)
    await refused(alice.react(ack.conv, ack.seq, FIRE), ErrorCode.REACTION_LIMIT)  # a third of hers
    await bob.react(ack.conv, ack.seq, FIRE)
    await refused(bob.react(ack.conv, ack.seq, PARTY), ErrorCode.REACTION_LIMIT)  # a fourth emoji
    await bob.react(ack.conv, ack.seq, THUMBS)  # one already there is fine

    page = await bob.history(ack.conv)
    assert set(of(page, ack.seq)) == {THUMBS, HEART, FIRE}
    assert of(page, ack.seq)[THUMBS][0] == 2


async def test_refusals(clients):
    alice, bob, carol = await clients(), await clients(), await clients()
    await new_user(alice)
    _, bob_id = await new_user(bob)
    await new_user(carol)
    ack = await alice.send(bob_id, "just us")
    await refused(carol.react(ack.conv, ack.seq, THUMBS), ErrorCode.FORBIDDEN)  # not hers to read
    await refused(bob.react(ack.conv, 99, THUMBS), ErrorCode.NOT_FOUND)
    await alice.recall(ack.conv, ack.seq)
    await refused(bob.react(ack.conv, ack.seq, THUMBS), ErrorCode.MESSAGE_RECALLED)
    assert (await bob.history(ack.conv)).reactions == []


class Unchecked(msgspec.Struct):
    """A REACT body as a client that does not check it would send it."""

    conv: str
    seq: int
    emoji: str


@pytest.mark.parametrize("emoji", ["", "ok", " ", "\U0001f44d" * 9, "a\U0001f44d", "\x00"])
async def test_a_bad_emoji_is_1003_naming_the_field(clients, emoji):
    alice, bob = await clients(), await clients()
    await new_user(alice)
    _, bob_id = await new_user(bob)
    ack = await alice.send(bob_id, "x")
    err = await refused(alice.request(Op.REACT, Unchecked(conv=ack.conv, seq=ack.seq, emoji=emoji)),
                        ErrorCode.BAD_BODY)
    assert "emoji" in err.message, err.message
    assert (await alice.history(ack.conv)).reactions == []


async def test_a_group_reaction_reaches_every_member_and_a_recall_clears_it(clients):
    owner, member, other = await clients(), await clients(), await clients()
    await new_user(owner)
    _, member_id = await new_user(member)
    _, other_id = await new_user(other)
    group = await owner.group_create("reacting", [member_id, other_id])
    conv = f"g{group.group}"
    ack = await owner.send_group(group.group, "party on friday")

    event = await member.react(conv, ack.seq, PARTY)
    for device in (owner, other):
        assert await next_event(device, Op.REACTION_PUSH) == event
    assert not await reaction_pushes(member)
    assert of(await other.sync(conv, 0), ack.seq) == {PARTY: (1, [member_id])}

    await owner.recall(conv, ack.seq)
    page = await other.sync(conv, 0, changes_after=event.rev)
    assert [m.seq for m in page.changed] == [] and page.rev > event.rev  # up to after_seq 0: none listed
    page = await other.sync(conv, ack.seq, changes_after=event.rev)
    assert [(m.seq, m.recalled_by != 0) for m in page.changed] == [(ack.seq, True)]
    assert [(r.seq, r.reactions) for r in page.reactions] == [(ack.seq, [])]


async def test_a_device_that_was_away_learns_the_reactions_from_sync(clients, server):
    """The recovery: a device remembers the highest ``rev`` it saw in a conversation; after
    a reconnect, SYNC from its last seq with ``changes_after`` = that revision lists the
    messages it had whose reactions changed meanwhile, with their reactions."""
    alice, bob = await clients(), await clients()
    name, alice_id = await new_user(alice, "ios")
    _, bob_id = await new_user(bob)
    acks = [await alice.send(bob_id, f"m{i}") for i in range(5)]
    conv = acks[0].conv
    seen = await bob.react(conv, acks[0].seq, THUMBS)
    last_seq, last_rev = acks[-1].seq, seen.rev
    await alice.close()  # alice's phone goes away

    await bob.react(conv, acks[2].seq, HEART)
    await bob.react(conv, acks[4].seq, FIRE)
    await bob.unreact(conv, acks[4].seq, FIRE)
    newer = await bob.send(alice_id, "are you there?")

    async with Client(server.url) as phone:
        await phone.login(name, "secret-pw", "ios")
        page = await phone.sync(conv, last_seq, changes_after=last_rev)
        assert [m.seq for m in page.msgs] == [newer.seq]
        assert sorted(m.seq for m in page.changed) == [acks[2].seq, acks[4].seq]
        assert of(page, acks[2].seq) == {HEART: (1, [bob_id])} and of(page, acks[4].seq) == {}
        assert page.rev == 4 and not page.changes_more
        # asked again from there: nothing new
        again = await phone.sync(conv, newer.seq, changes_after=page.rev)
        assert again.changed == [] and again.rev == page.rev
        # the SDK's helper pages through the changes (one message a page here)
        changed, reactions, rev = await phone.changes(conv, last_seq, 0, limit=1)
        assert [m.seq for m in changed] == [acks[0].seq, acks[2].seq, acks[4].seq] and rev == 4
        assert {r.seq: counts(r.reactions) for r in reactions} == {
            acks[0].seq: {THUMBS: (1, [bob_id])}, acks[2].seq: {HEART: (1, [bob_id])}, acks[4].seq: {}}


async def test_reactions_per_minute_is_a_budget_per_account(serve_factory):
    node = serve_factory(reactions_per_minute=2)
    async with Client(node.url) as alice, Client(node.url) as bob:
        await new_user(alice)
        _, bob_id = await new_user(bob)
        ack = await alice.send(bob_id, "x")
        await alice.react(ack.conv, ack.seq, THUMBS)
        await alice.unreact(ack.conv, ack.seq, THUMBS)
        await refused(alice.react(ack.conv, ack.seq, HEART), ErrorCode.RATE_LIMITED)
        await bob.react(ack.conv, ack.seq, HEART)  # another account's budget
        assert of(await bob.history(ack.conv), ack.seq) == {HEART: (1, [bob_id])}


async def test_edits_reactions_and_recalls_move_one_revision_and_come_back_after_a_reconnect(server):
    """One change revision per conversation: an edit, a reaction and a recall each take the
    next one; a device away learns all three from one SYNC key, and the SDK's reconnect
    catch-up hands them over as one page per conversation."""
    # (bob comes back 0.5 to 1 s after the drop: after alice's four changes)
    async with Client(server.url) as alice, Client(server.url, auto_reconnect=True, reconnect_delay=1.0) as bob:
        await new_user(alice)
        _, bob_id = await new_user(bob)
        acks = [await alice.send(bob_id, f"m{i}") for i in range(3)]
        conv = acks[0].conv
        for _ in acks:
            await bob.pushes.get()
        assert await bob.sync_changes(conv) == ([], []) and bob.revs[conv] == 0
        bob._transport.disconnect(graceful=False)  # bob's connection drops

        reacted = await alice.react(conv, acks[0].seq, THUMBS)
        edited = await alice.edit(conv, acks[1].seq, "m1, edited")
        recalled = await alice.recall(conv, acks[2].seq)
        again = await alice.react(conv, acks[1].seq, HEART)  # the edited one changes again: comes once
        assert (reacted.rev, edited.rev, recalled.rev, again.rev) == (1, 2, 3, 4)

        page = await next_event(bob, Op.SYNC_OK, timeout=20)  # after the reconnect: catch_up_changes
        assert page.conv == conv and page.rev == 4 and bob.revs[conv] == 4
        assert [(m.seq, m.rev, m.content, m.recalled_by) for m in page.changed] == [
            (acks[0].seq, 1, "m0", 0), (acks[2].seq, 3, "", alice.user_id), (acks[1].seq, 4, "m1, edited", 0)]
        assert {r.seq: counts(r.reactions) for r in page.reactions} == {
            acks[0].seq: {THUMBS: (1, [alice.user_id])}, acks[1].seq: {HEART: (1, [alice.user_id])},
            acks[2].seq: {}}
        assert await bob.sync_changes(conv) == ([], [])  # nothing twice
