"""Per-user views and message pins against a real ``im serve``: delete for me and clear
history (in 1:1 and group conversations: the reader's pages, list entry, unread count and
search follow, the other members keep theirs, the user's other devices get a VIEW_PUSH and
one that was away finds it all on reconnect), message pins (who may, the bound, the
pushes to every member device, a recall dropping its pin, PINS after a reconnect), bad
bodies and budgets."""
from __future__ import annotations

import msgspec
import pytest

from edgeim.core_ext import bodies
from edgeim.core_ext.codec import encode_frame
from edgeim.core_ext.protocol import ErrorCode, Op
from edgeim.sdk import Client, ServerError

from harness import new_user, next_event, nothing_pending, people


async def texts(client: Client, conv: str, **kw: int) -> list[tuple[int, str, bool]]:
    page = await client.history(conv, limit=kw.get("limit", 50))
    return [(m.seq, m.content, m.hidden) for m in page.msgs]


async def no_push(client: Client, *ops: Op) -> bool:
    """True if no push of these kinds is waiting for ``client`` (a PING round trip first);
    the other pushes waiting are dropped."""
    await client.ping()
    seen = []
    while not client.events.empty():
        seen.append(client.events.get_nowait()[0])
    return not set(seen) & set(ops)


async def entry(client: Client, conv: str) -> bodies.ConversationInfo:
    [found] = [c for c in await client.conversations() if c.conv == conv]
    return found


# -- delete for me ------------------------------------------------------------------------------

async def test_delete_for_me_in_a_private_conversation_hides_from_me_only(clients):
    alice, bob = await people(clients, 2)
    acks = [await bob.send(alice.user_id, f"m{n}") for n in (1, 2, 3)]
    conv = acks[0].conv
    alice_ios = await clients()
    await alice_ios.token_login(alice.token, "ios")

    done = await alice.delete_for_me(conv, [2])
    pushed = await next_event(alice_ios, Op.VIEW_PUSH)

    assert (done.conv, done.event, done.seqs, done.view_ver) == (conv, "deleted", [2], 1)
    assert (pushed.event, pushed.seqs, pushed.view_ver) == ("deleted", [2], 1)
    assert await texts(alice, conv) == [(1, "m1", False), (2, "", True), (3, "m3", False)]
    assert [(m.seq, m.hidden, m.content) for m in (await alice_ios.sync(conv)).msgs] == [
        (1, False, "m1"), (2, True, ""), (3, False, "m3")]
    assert await texts(bob, conv) == [(1, "m1", False), (2, "m2", False), (3, "m3", False)]  # bob keeps his
    assert await nothing_pending(alice, messages=False)  # the deleting device is not told
    assert await no_push(bob, Op.VIEW_PUSH)  # nor the other member

    again = await alice.delete_for_me(conv, [2])  # repeated: nothing changes, nobody is told
    assert (again.seqs, again.view_ver) == ([2], 1)
    assert await nothing_pending(alice_ios)


async def test_the_list_shows_the_newest_visible_message_and_unread_follows(clients):
    alice, bob = await people(clients, 2)
    acks = [await bob.send(alice.user_id, f"m{n}") for n in (1, 2, 3)]
    conv = acks[0].conv
    assert (await entry(alice, conv)).unread == 3

    await alice.delete_for_me(conv, [3])  # the newest, unread
    mine = await entry(alice, conv)
    assert (mine.last_text, mine.last_seq, mine.unread, mine.view_ver) == ("m2", 3, 2, 1)
    theirs = await entry(bob, conv)
    assert (theirs.last_text, theirs.unread) == ("m3", 0)

    await bob.recall(conv, 2)  # the message the list shows in place of the hidden newest is recalled
    mine = await entry(alice, conv)
    assert (mine.last_text, mine.last_recalled, mine.last_seq) == ("", True, 3)

    await alice.delete_for_me(conv, [1, 2])
    mine = await entry(alice, conv)
    assert (mine.last_text, mine.last_from, mine.unread, mine.view_ver) == ("", 0, 0, 2)

    await bob.send(alice.user_id, "m4")  # a new message is seen, and the preview is it
    mine = await entry(alice, conv)
    assert (mine.last_text, mine.last_seq, mine.unread) == ("m4", 4, 1)


async def test_delete_for_me_in_a_group_and_a_device_away_finds_it_on_reconnect(clients, server):
    alice, bob, carol = await people(clients, 3)
    group = await alice.group_create("club", [bob.user_id, carol.user_id])
    conv = f"g{group.group}"
    for n in (1, 2, 3):
        await carol.send_group(group.group, f"g{n}")
    await bob.read(conv, 3)

    await bob.delete_for_me(conv, [1, 3])

    assert await texts(bob, conv) == [(1, "", True), (2, "g2", False), (3, "", True)]
    assert [t for _, t, _ in await texts(alice, conv)] == ["g1", "g2", "g3"]
    assert (await entry(bob, conv)).last_text == "g2"
    assert (await entry(alice, conv)).last_text == "g3"
    # a device that was away: the entry's view_ver tells it, its reads carry the stubs
    async with Client(server.url) as away:
        await away.token_login(bob.token, "desktop")
        found = await entry(away, conv)
        assert (found.view_ver, found.last_text, found.unread) == (1, "g2", 0)
        assert [m.hidden for m in (await away.sync(conv)).msgs] == [True, False, True]
    # search leaves out what bob deleted for himself, not what alice has
    assert [m.seq for m in (await bob.search("g", conv=conv)).msgs] == [2]
    assert sorted(m.seq for m in (await alice.search("g", conv=conv)).msgs) == [1, 2, 3]


async def test_delete_for_me_refusals_change_nothing(clients):
    alice, bob, carol = await people(clients, 3)
    ack = await bob.send(alice.user_id, "hi")
    group = await alice.group_create("late", [bob.user_id])
    await alice.send_group(group.group, "before carol")
    await alice.group_invite(group.group, [carol.user_id])

    with pytest.raises(ServerError) as info:
        await alice.delete_for_me(ack.conv, [1, 2])  # 2 does not exist
    assert info.value.code == ErrorCode.NOT_FOUND
    with pytest.raises(ServerError) as info:
        await carol.delete_for_me(ack.conv, [1])  # not hers
    assert info.value.code == ErrorCode.FORBIDDEN
    with pytest.raises(ServerError) as info:
        await carol.delete_for_me(f"g{group.group}", [1])  # before she joined
    assert info.value.code == ErrorCode.NOT_FOUND
    assert await texts(alice, ack.conv) == [(1, "hi", False)]
    assert (await entry(alice, ack.conv)).view_ver == 0


# -- clear history --------------------------------------------------------------------------------

async def test_clear_history_of_a_group_clears_my_view_only(clients, server):
    alice, bob = await people(clients, 2)
    group = await alice.group_create("clear", [bob.user_id])
    conv = f"g{group.group}"
    for n in (1, 2, 3):
        await alice.send_group(group.group, f"c{n}")
    bob_ios = await clients()
    await bob_ios.token_login(bob.token, "ios")
    assert (await entry(bob, conv)).unread == 3

    done = await bob.clear_history(conv)
    pushed = await next_event(bob_ios, Op.VIEW_PUSH)

    assert (done.event, done.cleared_seq, done.view_ver) == ("cleared", 3, 1)
    assert (pushed.event, pushed.cleared_seq) == ("cleared", 3)
    mine = await entry(bob, conv)
    assert (mine.unread, mine.cleared_seq, mine.last_text, mine.read_seq) == (0, 3, "", 0)  # not a read receipt
    assert (await bob.sync(conv)).msgs == [] and (await bob.history(conv)).msgs == []
    assert (await bob.search("c", conv=conv)).msgs == []
    assert [t for _, t, _ in await texts(alice, conv)] == ["c1", "c2", "c3"]  # alice keeps hers
    assert await no_push(alice, Op.VIEW_PUSH, Op.READ_PUSH)

    await alice.send_group(group.group, "after")  # what comes after the clear is seen
    assert [(m.seq, m.content) for m in (await bob_ios.sync(conv)).msgs] == [(4, "after")]
    mine = await entry(bob, conv)
    assert (mine.unread, mine.last_text) == (1, "after")
    async with Client(server.url) as away:  # a device that was away
        await away.token_login(bob.token, "desktop")
        assert (await entry(away, conv)).cleared_seq == 3
        assert [m.seq for m in (await away.history(conv)).msgs] == [4]

    again = await bob.clear_history(conv, 2)  # below the clear already made: nothing changes
    assert (again.cleared_seq, again.view_ver) == (3, 1)


async def test_clear_history_of_a_private_conversation(clients):
    alice, bob = await people(clients, 2)
    acks = [await alice.send(bob.user_id, f"p{n}") for n in (1, 2)]
    conv = acks[0].conv

    await alice.clear_history(conv, 1)

    assert await texts(alice, conv) == [(2, "p2", False)]
    assert [t for _, t, _ in await texts(bob, conv)] == ["p1", "p2"]
    with pytest.raises(ServerError) as info:
        await (await people(clients, 1))[0].clear_history(conv)
    assert info.value.code == ErrorCode.FORBIDDEN


async def test_a_change_to_a_message_deleted_or_cleared_for_me_never_shows_its_content(clients):
    """SYNC's ``changed`` lists a message the reader deleted for themselves as its stub, as
    pages do, and one they cleared not at all; the other member sees both as they are."""
    alice, bob = await people(clients, 2)
    acks = [await bob.send(alice.user_id, f"q{n}") for n in (1, 2, 3)]
    conv = acks[0].conv
    await alice.delete_for_me(conv, [acks[1].seq])
    await alice.clear_history(conv, acks[0].seq)
    for ack in acks:
        await bob.edit(conv, ack.seq, f"q{ack.seq}, edited")

    page = await alice.sync(conv, bodies.MAX_SEQ, changes_after=0)
    assert [(m.seq, m.hidden, m.content, m.rev) for m in page.changed] == [
        (acks[1].seq, True, "", 2), (acks[2].seq, False, f"q{acks[2].seq}, edited", 3)]
    assert page.rev == 3 and not page.changes_more
    theirs = await bob.sync(conv, bodies.MAX_SEQ, changes_after=0)
    assert [(m.seq, m.hidden, m.content) for m in theirs.changed] == [
        (ack.seq, False, f"q{ack.seq}, edited") for ack in acks]


# -- message pins ---------------------------------------------------------------------------------

async def test_group_pins_by_admins_pushed_to_every_member_device(clients, server):
    alice, bob, carol = await people(clients, 3)
    group = await alice.group_create("pins", [bob.user_id, carol.user_id])
    conv = f"g{group.group}"
    first = await bob.send_group(group.group, "pin me")
    carol_ios = await clients()
    await carol_ios.token_login(carol.token, "ios")
    alice_ios = await clients()
    await alice_ios.token_login(alice.token, "ios")

    pin = await alice.pin_message(conv, first.seq)

    assert (pin.conv, pin.seq, pin.by, pin.message.content) == (conv, first.seq, alice.user_id, "pin me")
    for device in (bob, carol, carol_ios, alice_ios):
        pushed = await next_event(device, Op.PIN_PUSH)
        assert (pushed.event, pushed.conv, pushed.seq, pushed.by) == ("pinned", conv, first.seq, alice.user_id)
    for device in (alice, bob, carol, carol_ios, alice_ios):  # each device once; the pinning one not
        assert await no_push(device, Op.PIN_PUSH)

    with pytest.raises(ServerError) as info:
        await bob.pin_message(conv, first.seq)  # a member may not
    assert info.value.code == ErrorCode.FORBIDDEN
    with pytest.raises(ServerError) as info:
        await bob.unpin_message(conv, first.seq)
    assert info.value.code == ErrorCode.FORBIDDEN
    await alice.group_set_role(group.group, bob.user_id, "admin")
    second = await carol.send_group(group.group, "and me")
    await bob.pin_message(conv, second.seq)  # an admin may
    assert (await next_event(carol_ios, Op.PIN_PUSH)).by == bob.user_id
    listed = await carol.pins(conv)
    assert [(p.seq, p.by) for p in listed.pins] == [(second.seq, bob.user_id), (first.seq, alice.user_id)]
    assert listed.max == 20

    async with Client(server.url) as away:  # a device that was away reads them
        await away.token_login(carol.token, "desktop")
        assert [p.message.content for p in (await away.pins(conv)).pins] == ["and me", "pin me"]

    await alice.unpin_message(conv, first.seq)
    assert (await next_event(carol_ios, Op.PIN_PUSH)).event == "unpinned"
    assert [p.seq for p in (await carol.pins(conv)).pins] == [second.seq]
    with pytest.raises(ServerError) as info:
        await alice.unpin_message(conv, first.seq)  # not pinned any more
    assert info.value.code == ErrorCode.NOT_FOUND


async def test_pins_in_a_private_conversation_are_bounded_and_a_recall_drops_one(clients, serve_factory):
    server = serve_factory(max_message_pins=2, strangers_may_send=True)
    alice, bob = Client(server.url), Client(server.url)
    async with alice, bob:
        await new_user(alice)
        await new_user(bob)
        acks = [await alice.send(bob.user_id, f"x{n}") for n in (1, 2, 3)]
        conv = acks[0].conv

        await alice.pin_message(conv, 1)
        assert (await next_event(bob, Op.PIN_PUSH)).seq == 1
        await bob.pin_message(conv, 2)  # either of the two may
        assert (await next_event(alice, Op.PIN_PUSH)).by == bob.user_id
        again = await bob.pin_message(conv, 2)  # pinned already: answered, not pushed
        assert again.by == bob.user_id
        with pytest.raises(ServerError) as info:
            await alice.pin_message(conv, 3)
        assert info.value.code == ErrorCode.PINS_FULL
        assert [p.seq for p in (await bob.pins(conv)).pins] == [2, 1]
        assert await nothing_pending(alice, messages=False) and await nothing_pending(bob, messages=False)

        await alice.recall(conv, 1)  # the pinned message goes, and its pin
        pushed = await next_event(bob, Op.PIN_PUSH)
        assert (pushed.event, pushed.seq, pushed.by) == ("unpinned", 1, alice.user_id)
        assert [p.seq for p in (await bob.pins(conv)).pins] == [2]
        with pytest.raises(ServerError) as info:
            await alice.pin_message(conv, 1)
        assert info.value.code == ErrorCode.MESSAGE_RECALLED
        with pytest.raises(ServerError) as info:
            await alice.pin_message(conv, 9)
        assert info.value.code == ErrorCode.NOT_FOUND
        await alice.pin_message(conv, 3)  # room again
        assert [p.seq for p in (await alice.pins(conv)).pins] == [3, 2]


async def test_a_late_member_sees_only_the_pins_of_what_they_may_read(clients):
    alice, bob = await people(clients, 2)
    group = await alice.group_create("late pins", [])
    conv = f"g{group.group}"
    old = await alice.send_group(group.group, "before bob")
    await alice.pin_message(conv, old.seq)
    await alice.group_invite(group.group, [bob.user_id])
    new = await alice.send_group(group.group, "after bob")
    await alice.pin_message(conv, new.seq)

    assert [p.seq for p in (await bob.pins(conv)).pins] == [new.seq]
    assert [p.seq for p in (await alice.pins(conv)).pins] == [new.seq, old.seq]


# -- bad bodies and budgets -----------------------------------------------------------------------

@pytest.mark.parametrize("op, body, field", [
    (Op.DELETE_FOR_ME, {"conv": "p1_2", "seqs": []}, "$.seqs"),
    (Op.DELETE_FOR_ME, {"conv": "p1_2", "seqs": list(range(1, bodies.MAX_DELETE + 2))}, "$.seqs"),
    (Op.DELETE_FOR_ME, {"conv": "p1_2", "seqs": [0]}, "$.seqs[0]"),
    (Op.DELETE_FOR_ME, {"conv": "p1_2"}, "seqs"),
    (Op.CLEAR_HISTORY, {"conv": "p1_2", "seq": -1}, "$.seq"),
    (Op.CLEAR_HISTORY, {"seq": 1}, "conv"),
    (Op.PIN_MESSAGE, {"conv": "p1_2", "seq": 0}, "$.seq"),
    (Op.UNPIN_MESSAGE, {"conv": "p1_2", "seq": "1"}, "$.seq"),
    (Op.PINS, {"conv": 5}, "$.conv"),
])
async def test_bad_bodies_name_the_field(clients, op, body, field):
    [alice] = await people(clients, 1)
    frame = encode_frame(op, 77, 0, msgspec.msgpack.encode(body))
    reply_op, reply = await alice.exchange_raw(frame, 77)
    error = bodies.decode(reply, bodies.Error)
    assert (reply_op, error.code) == (Op.ERROR, ErrorCode.BAD_BODY)
    assert field in error.message


async def test_view_and_pin_budgets_refuse_without_changing_anything(serve_factory):
    server = serve_factory(view_changes_per_minute=2, pins_per_minute=1, strangers_may_send=True)
    alice, bob = Client(server.url), Client(server.url)
    async with alice, bob:
        await new_user(alice)
        await new_user(bob)
        acks = [await bob.send(alice.user_id, f"b{n}") for n in (1, 2, 3)]
        conv = acks[0].conv
        await alice.delete_for_me(conv, [1])
        await alice.delete_for_me(conv, [2])
        with pytest.raises(ServerError) as info:
            await alice.delete_for_me(conv, [3])
        assert info.value.code == ErrorCode.RATE_LIMITED
        with pytest.raises(ServerError) as info:
            await alice.clear_history(conv)
        assert info.value.code == ErrorCode.RATE_LIMITED
        assert await texts(alice, conv) == [(1, "", True), (2, "", True), (3, "b3", False)]
        assert (await entry(alice, conv)).cleared_seq == 0

        await alice.pin_message(conv, 3)
        with pytest.raises(ServerError) as info:
            await alice.pin_message(conv, 2)
        assert info.value.code == ErrorCode.RATE_LIMITED
        assert [p.seq for p in (await bob.pins(conv)).pins] == [3]
