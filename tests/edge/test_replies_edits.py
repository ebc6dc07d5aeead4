"""Replies and edits against a real ``im serve``, over live sockets, in private and group
conversations: what the sender's reply says, what every other device is pushed (once),
what SYNC, HISTORY, SEARCH and the conversation list show afterwards, how a device that
was offline learns of an edit, and that every refusal changes nothing."""
from __future__ import annotations

import asyncio
import struct
import time

import msgspec
import pytest

from edgeim.core_ext import bodies, content
from edgeim.core_ext.protocol import HEADER_FORMAT, ErrorCode, Flag, Op
from edgeim.sdk import Client, ServerError

from harness import new_user, next_event, nothing_pending


async def refused(call, code: ErrorCode) -> ServerError:
    with pytest.raises(ServerError) as err:
        await call
    assert err.value.code == code, err.value
    return err.value


def pconv(a: Client, b: Client) -> str:
    low, high = sorted((a.user_id, b.user_id))
    return f"p{low}_{high}"


async def entry(client: Client, conv: str) -> bodies.ConversationInfo:
    return next(c for c in await client.conversations() if c.conv == conv)


async def raw(client: Client, op: Op, body: dict, target: int = 0, flags: int = 0) -> tuple[int, bytes]:
    """A request whose body the SDK would refuse to build: (reply op, reply body)."""
    data = msgspec.msgpack.encode(body)
    req_id = 9_000_002
    frame = struct.pack(HEADER_FORMAT, 1, op, flags, req_id, target, len(data)) + data
    return await client.exchange_raw(frame, req_id)


async def group_of(owner: Client, *members: Client) -> int:
    info = await owner.group_create("crew", [m.user_id for m in members])
    for client in (owner, *members):
        assert (await next_event(client, Op.GROUP_PUSH)).event == "created"
    return info.group


def quoted(m: bodies.Message) -> tuple:
    assert m.reply is not None
    return m.reply.id, m.reply.seq, m.reply.sender, m.reply.type, m.reply.snippet, m.reply.recalled


# -- replies ------------------------------------------------------------------------------------

@pytest.mark.parametrize("codec", ["cython", "python"])
async def test_a_reply_carries_its_quote_to_every_reader(serve_factory, codec):
    server = serve_factory(codec, reply_snippet=12)
    async with Client(server.url) as alice, Client(server.url) as bob, Client(server.url) as alice_pad:
        alice_name, _ = await new_user(alice)
        await new_user(bob)
        await alice_pad.login(alice_name, "secret-pw", "pad")
        conv = pconv(alice, bob)
        original = await alice.send(bob.user_id, "the original message, long enough to be cut")
        assert (await bob.pushes.get()).seq == original.seq
        assert (await alice_pad.pushes.get()).seq == original.seq

        ack = await bob.send(alice.user_id, "a reply", reply_to=original.msg_id)

        expected = (original.msg_id, original.seq, alice.user_id, content.TEXT, "the original", False)
        for device in (alice, alice_pad):  # the other user's devices
            pushed = await device.pushes.get()
            assert (pushed.seq, pushed.content) == (ack.seq, "a reply")
            assert quoted(pushed) == expected
        for reader in (alice, bob):
            assert quoted((await reader.sync(conv)).msgs[-1]) == expected
            assert quoted((await reader.history(conv)).msgs[-1]) == expected
        assert (await alice.sync(conv)).msgs[0].reply is None  # not a reply: no key

        # the quoted message recalled afterwards: pages show it recalled, without its text
        await alice.recall(conv, original.seq)
        recalled = (original.msg_id, original.seq, alice.user_id, content.TEXT, "", True)
        assert quoted((await bob.history(conv)).msgs[-1]) == recalled
        # and a reply to a recalled message is pushed so from the start
        again = await bob.send(alice.user_id, "what did you say?", reply_to=original.msg_id)
        assert quoted(await alice.pushes.get()) == recalled
        assert quoted((await alice.sync(conv, again.seq - 1)).msgs[0]) == recalled


async def test_a_reply_in_a_group_and_to_a_typed_message(clients):
    alice, bob, carol = await clients(), await clients(), await clients()
    for c in (alice, bob, carol):
        await new_user(c)
    group = await group_of(alice, bob, carol)
    conv = f"g{group}"
    loc = {"lat": 48.85, "lng": 2.35, "name": "Paris", "address": "Place du Parvis"}
    where = await alice.send_group(group, loc, content.LOCATION)
    ack = await carol.send_group(group, "on my way", reply_to=where.msg_id, mentions=[alice.user_id])

    for reader in (alice, bob):
        got = (await reader.sync(conv, where.seq)).msgs
        assert [m.seq for m in got] == [ack.seq]
        assert quoted(got[0]) == (where.msg_id, where.seq, alice.user_id, content.LOCATION,
                                  "Paris Place du Parvis", False)
        assert got[0].mentions == [alice.user_id]  # the other keys as ever


async def test_a_reply_may_quote_only_what_its_sender_may_read(clients):
    alice, bob, carol = await clients(), await clients(), await clients()
    for c in (alice, bob, carol):
        await new_user(c)
    elsewhere = await alice.send(carol.user_id, "private to carol")
    group = await group_of(alice, bob)
    before = await alice.send_group(group, "before carol joined")
    await alice.group_invite(group, [carol.user_id])
    conv = f"g{group}"

    # another conversation's message, no message at all, one before the sender joined
    await refused(bob.send(alice.user_id, "re", reply_to=elsewhere.msg_id), ErrorCode.REPLY_NOT_FOUND)
    await refused(alice.send_group(group, "re", reply_to=elsewhere.msg_id), ErrorCode.REPLY_NOT_FOUND)
    await refused(alice.send_group(group, "re", reply_to=2**62), ErrorCode.REPLY_NOT_FOUND)
    await refused(carol.send_group(group, "re", reply_to=before.msg_id), ErrorCode.REPLY_NOT_FOUND)
    # nothing was stored: the conversations are as they were
    assert [m.seq for m in (await alice.sync(conv)).msgs] == [before.seq]
    assert pconv(alice, bob) not in {c.conv for c in await alice.conversations()}
    # the sends after a refused reply go on, in order
    ok = await alice.send_group(group, "fine", reply_to=before.msg_id)
    assert ok.seq == before.seq + 1

    # a malformed reply_to: 1003 naming the field
    op, body = await raw(alice, Op.SEND, {"cmid": "x1", "content": "hi", "reply_to": -1}, group, int(Flag.GROUP))
    assert op == Op.ERROR
    error = bodies.decode(body, bodies.Error)
    assert error.code == ErrorCode.BAD_BODY and "reply_to" in error.message


# -- edits --------------------------------------------------------------------------------------

async def test_an_edit_reaches_every_device_once_and_every_read_shows_it(serve_factory):
    server = serve_factory()
    async with Client(server.url) as alice, Client(server.url) as alice_pad, Client(server.url) as bob, \
            Client(server.url) as bob_phone:
        alice_name, _ = await new_user(alice)
        bob_name, _ = await new_user(bob)
        await alice_pad.login(alice_name, "secret-pw", "pad")
        await bob_phone.login(bob_name, "secret-pw", "phone")
        conv = pconv(alice, bob)
        first = await alice.send(bob.user_id, "see you at noon")
        last = await alice.send(bob.user_id, "bring the zebra papers")
        reply = await bob.send(alice.user_id, "ok", reply_to=first.msg_id)
        for device, n in ((bob, 2), (bob_phone, 3), (alice_pad, 3), (alice, 1)):
            for _ in range(n):
                await device.pushes.get()
            await device.ping()
            while not device.events.empty():  # read marks and the like: not what this test is about
                device.events.get_nowait()
        await asyncio.sleep(0.2)  # the search index is written behind the commits: let it catch up
        assert [m.seq for m in (await bob.search("zebra")).msgs] == [last.seq]

        edited = await alice.edit(conv, last.seq, "bring the giraffe papers")

        assert (edited.seq, edited.id, edited.content, edited.ts) == (last.seq, last.msg_id, "bring the giraffe papers",
                                                                     last.ts)
        assert edited.edited_at >= edited.ts and edited.rev == 1
        for device in (bob, bob_phone, alice_pad):  # every other device, once
            pushed = await next_event(device, Op.EDIT_PUSH)
            assert (pushed.conv, pushed.seq, pushed.content, pushed.edited_at, pushed.rev) == (
                conv, last.seq, "bring the giraffe papers", edited.edited_at, 1)
        for device in (bob, bob_phone, alice_pad, alice):  # nothing twice, nothing to the editing device
            assert await nothing_pending(device)
        for reader in (alice, bob):
            synced = {m.seq: m for m in (await reader.sync(conv)).msgs}
            assert (synced[last.seq].content, synced[last.seq].edited_at) == ("bring the giraffe papers",
                                                                             edited.edited_at)
            assert synced[first.seq].edited_at == 0
            assert (await reader.history(conv)).msgs[1].content == "bring the giraffe papers"
            listed = await entry(reader, conv)
            assert listed.last_seq == reply.seq and listed.unread == (0 if reader is bob else listed.unread)
        # the new text is found, the old is not
        assert [m.seq for m in (await bob.search("giraffe")).msgs] == [last.seq]
        assert (await bob.search("zebra")).msgs == []
        # a quote shows the quoted message as it is now
        await alice.edit(conv, first.seq, "see you at one")
        assert (await bob.history(conv)).msgs[-1].reply.snippet == "see you at one"
        # an edit is not a new message: the list's order and unread count stay
        assert (await entry(bob, conv)).last_seq == reply.seq


async def test_an_edit_of_the_newest_message_changes_the_preview(clients):
    alice, bob = await clients(), await clients()
    await new_user(alice)
    await new_user(bob)
    conv = pconv(alice, bob)
    ack = await alice.send(bob.user_id, "typo hre")
    await alice.edit(conv, ack.seq, "typo here")
    for reader in (alice, bob):
        assert (await entry(reader, conv)).last_text == "typo here"


async def test_a_device_offline_during_edits_learns_of_them_by_sync(serve_factory):
    server = serve_factory()
    async with Client(server.url) as alice, Client(server.url) as bob:
        await new_user(alice)
        bob_name, _ = await new_user(bob)
        conv = pconv(alice, bob)
        one = await alice.send(bob.user_id, "one")
        two = await alice.send(bob.user_id, "two")
        async with Client(server.url) as phone:  # bob's phone, current, then gone
            await phone.login(bob_name, "secret-pw", "phone")
            assert [m.content for m in (await phone.sync(conv)).msgs] == ["one", "two"]
            assert await phone.sync_changes(conv) == ([], []) and phone.revs[conv] == 0
        await alice.edit(conv, one.seq, "one!")
        await alice.edit(conv, two.seq, "two!")
        await alice.edit(conv, one.seq, "one!!")  # edited twice: comes once, as it is now

        async with Client(server.url) as phone:
            await phone.login(bob_name, "secret-pw", "phone")
            phone.revs[conv] = 0
            edits, _ = await phone.sync_changes(conv)
            assert [(m.seq, m.content, m.rev) for m in edits] == [(two.seq, "two!", 2), (one.seq, "one!!", 3)]
            assert phone.revs[conv] == 3
            assert await phone.sync_changes(conv) == ([], [])  # nothing twice
            # paging: one change a page
            page = await phone.sync(conv, bodies.MAX_SEQ, limit=1, changes_after=0)
            assert ([m.seq for m in page.changed], page.rev, page.changes_more) == ([two.seq], 2, True)
            page = await phone.sync(conv, bodies.MAX_SEQ, limit=1, changes_after=2)
            assert ([m.seq for m in page.changed], page.rev, page.changes_more) == ([one.seq], 3, False)
            # a SYNC without changes_after says nothing of changes (the keys left out)
            plain = await phone.sync(conv)
            assert (plain.changed, plain.rev) == ([], 0)


async def test_the_sdk_catches_up_edits_after_a_reconnect(serve_factory):
    server = serve_factory()
    async with Client(server.url) as alice, Client(server.url, auto_reconnect=True, reconnect_delay=0.05) as bob:
        await new_user(alice)
        await new_user(bob)
        conv = pconv(alice, bob)
        ack = await alice.send(bob.user_id, "draft")
        await bob.pushes.get()
        await bob.sync_changes(conv)  # current: revision 0
        bob._transport.disconnect(graceful=False)  # the connection drops (as a network would)
        await alice.edit(conv, ack.seq, "final")
        page = await next_event(bob, Op.SYNC_OK, timeout=20)  # after the reconnect: from catch_up_changes
        assert [(m.seq, m.content, m.rev) for m in page.changed] == [(ack.seq, "final", 1)]
        assert (page.conv, page.rev, bob.revs[conv]) == (conv, 1, 1)


async def test_edits_in_a_group_reach_every_member(clients):
    alice, bob, carol = await clients(), await clients(), await clients()
    for c in (alice, bob, carol):
        await new_user(c)
    group = await group_of(alice, bob, carol)
    conv = f"g{group}"
    ack = await bob.send_group(group, "hello all")
    for c in (alice, carol):
        await c.pushes.get()
    await bob.edit(conv, ack.seq, "hello everyone")
    for c in (alice, carol):
        pushed = await next_event(c, Op.EDIT_PUSH)
        assert (pushed.conv, pushed.seq, pushed.content) == (conv, ack.seq, "hello everyone")
        assert (await c.sync(conv)).msgs[-1].content == "hello everyone"
    await refused(alice.edit(conv, ack.seq, "not yours"), ErrorCode.FORBIDDEN)  # the owner neither
    await alice.group_mute(group, bob.user_id, int(time.time() * 1000) + 60_000)
    await refused(bob.edit(conv, ack.seq, "muted"), ErrorCode.MUTED)
    await alice.group_kick(group, bob.user_id)
    await refused(bob.edit(conv, ack.seq, "removed"), ErrorCode.FORBIDDEN)
    assert (await carol.sync(conv)).msgs[-1].content == "hello everyone"  # refusals change nothing


async def test_what_cannot_be_edited(serve_factory):
    server = serve_factory(recall_window=3600)
    async with Client(server.url) as alice, Client(server.url) as bob:
        await new_user(alice)
        await new_user(bob)
        conv = pconv(alice, bob)
        text = await alice.send(bob.user_id, "text")
        image = await alice.send(bob.user_id, {"key": "k/1", "width": 2, "height": 2, "size": 9, "mime": "image/png"},
                                 content.IMAGE)
        gone = await alice.send(bob.user_id, "regret")
        await alice.recall(conv, gone.seq)
        theirs = await bob.send(alice.user_id, "bob's")

        await refused(alice.edit(conv, theirs.seq, "mine now"), ErrorCode.FORBIDDEN)
        await refused(alice.edit(conv, image.seq, "a text"), ErrorCode.NOT_EDITABLE)
        await refused(alice.edit(conv, gone.seq, "back"), ErrorCode.NOT_EDITABLE)
        await refused(alice.edit(conv, 999, "none"), ErrorCode.NOT_FOUND)
        await refused(alice.edit("p999998_999999", 1, "not mine"), ErrorCode.FORBIDDEN)
        for body, field in (({"conv": conv, "seq": text.seq, "content": ""}, "content"),
                            ({"conv": conv, "seq": 0, "content": "x"}, "seq"),
                            ({"conv": conv, "seq": text.seq}, "content"),
                            ({"conv": conv, "seq": text.seq, "content": "x" * 40000}, "content")):
            op, reply = await raw(alice, Op.EDIT, body)
            error = bodies.decode(reply, bodies.Error)
            assert (op, error.code) == (Op.ERROR, ErrorCode.BAD_BODY) and field in error.message, error
        # nothing changed
        msgs = (await bob.sync(conv)).msgs
        assert [(m.content, m.edited_at) for m in msgs] == [("text", 0), (msgs[1].content, 0), ("", 0), ("bob's", 0)]
        # the recall is the only change
        assert [(m.seq, m.recalled_by) for m in (await bob.sync(conv, bodies.MAX_SEQ, changes_after=0)).changed] == [
            (gone.seq, alice.user_id)]


async def test_the_edit_window(serve_factory):
    server = serve_factory(edit_window=0)
    async with Client(server.url) as alice, Client(server.url) as bob:
        await new_user(alice)
        await new_user(bob)
        ack = await alice.send(bob.user_id, "final")
        await asyncio.sleep(0.01)
        await refused(alice.edit(pconv(alice, bob), ack.seq, "not final"), ErrorCode.EDIT_EXPIRED)
        assert (await bob.sync(pconv(alice, bob))).msgs[-1].content == "final"


async def test_edits_are_budgeted_like_sends(serve_factory):
    server = serve_factory(user_send_rate=1, user_send_burst=3)
    async with Client(server.url) as alice, Client(server.url) as bob:
        await new_user(alice)
        await new_user(bob)
        conv = pconv(alice, bob)
        ack = await alice.send(bob.user_id, "v0")
        outcomes = []
        for i in range(1, 6):
            try:
                outcomes.append((await alice.edit(conv, ack.seq, f"v{i}")).content)
            except ServerError as exc:
                outcomes.append(exc.code)
        assert ErrorCode.RATE_LIMITED in outcomes
        done = [o for o in outcomes if isinstance(o, str)]
        assert (await bob.sync(conv)).msgs[-1].content == (done[-1] if done else "v0")
