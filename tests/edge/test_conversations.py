"""The conversation list and per-user conversation state against a real ``im serve``:
previews and unread counts of both kinds, READ with its pushes (other devices, read
receipts), group readers (late joiners not counted), pin, mute, hide (also of a group
without messages), keyset paging while messages arrive, CONV_PUSH to the user's other
devices, and changes from two devices at once keeping each other."""
from __future__ import annotations

import asyncio

import pytest

from edgeim.core_ext.protocol import ErrorCode, Op
from edgeim.sdk import ServerError

from harness import next_event, nothing_pending, people


def by_activity(entries) -> bool:
    """True if ``entries`` are in list order: newest last message first (ties by id)."""
    return [e.conv for e in entries] == [e.conv for e in sorted(entries, key=lambda e: (-e.last_ts, e.conv))]


async def test_list_shows_both_kinds_with_preview_and_unread(clients):
    alice, bob, carol = await people(clients, 3)
    await bob.send(alice.user_id, "first from bob")
    await bob.send(alice.user_id, "second from bob")
    group = await carol.group_create("club", [alice.user_id, bob.user_id])
    await carol.send_group(group.group, "hello club " + "x" * 100)

    group_entry, private_entry = await alice.conversations()

    assert (group_entry.conv, group_entry.kind, group_entry.group, group_entry.peer, group_entry.name) == (
        f"g{group.group}", "group", group.group, 0, "club")
    assert (group_entry.last_seq, group_entry.last_from, group_entry.unread) == (1, carol.user_id, 1)
    assert group_entry.last_text.startswith("hello club") and len(group_entry.last_text) < 100  # a preview
    assert (private_entry.kind, private_entry.peer, private_entry.group, private_entry.name) == (
        "private", bob.user_id, 0, "")
    assert (private_entry.last_text, private_entry.last_from, private_entry.unread) == (
        "second from bob", bob.user_id, 2)
    mine = {c.conv: c.unread for c in await bob.conversations()}
    assert mine == {private_entry.conv: 0, group_entry.conv: 1}  # what bob sent is read by bob


async def test_read_moves_the_cursor_and_tells_other_devices_and_the_peer(clients):
    alice, bob = await people(clients, 2)
    acks = [await bob.send(alice.user_id, f"m{n}") for n in range(3)]
    conv = acks[0].conv
    alice_ios = await clients()
    await alice_ios.token_login(alice.token, "ios")

    mark = await alice.read(conv, 2)
    on_ios = await next_event(alice_ios, Op.READ_PUSH)
    receipt = await next_event(bob, Op.READ_PUSH)

    assert (mark.conv, mark.user, mark.seq) == (conv, alice.user_id, 2)
    assert (on_ios.conv, on_ios.user, on_ios.seq) == (conv, alice.user_id, 2)
    assert (receipt.conv, receipt.user, receipt.seq) == (conv, alice.user_id, 2)
    [entry] = await alice_ios.conversations()
    assert (entry.read_seq, entry.unread) == (2, 1)
    assert await nothing_pending(alice, messages=False)  # the reading device is not told

    assert (await alice.read(conv, 1)).seq == 2  # never backwards ...
    assert await nothing_pending(bob)
    assert (await alice.read(conv, 99)).seq == 3  # ... never past the newest
    assert (await next_event(bob, Op.READ_PUSH)).seq == 3
    assert [c.unread for c in await alice.conversations()] == [0]


async def test_group_readers_count_and_ids_without_the_sender(clients):
    alice, bob, carol, dave, erin = await people(clients, 5)
    group = await alice.group_create("readers", [bob.user_id, carol.user_id, dave.user_id])
    conv = f"g{group.group}"
    first = await alice.send_group(group.group, "read me")
    await alice.group_invite(group.group, [erin.user_id])  # joins after the message

    await bob.read(conv, first.seq)
    await dave.read(conv, first.seq)
    readers = await alice.readers(conv, first.seq)
    page = await carol.readers(conv, first.seq, limit=1)
    rest = await carol.readers(conv, first.seq, after=page.users[0], limit=1)

    assert (readers.count, readers.users, readers.has_more) == (2, sorted([bob.user_id, dave.user_id]), False)
    assert (page.count, len(page.users), page.has_more) == (2, 1, True)
    assert page.users + rest.users == readers.users and not rest.has_more
    second = await bob.send_group(group.group, "second")
    await carol.read(conv, second.seq)
    await erin.read(conv, second.seq)
    assert sorted((await alice.readers(conv, second.seq)).users) == sorted([carol.user_id, erin.user_id])
    assert (await alice.readers(conv, first.seq)).count == 3  # carol's cursor passed it too
    with pytest.raises(ServerError) as err:
        await erin.readers(conv, first.seq)  # before erin's time
    assert err.value.code == ErrorCode.FORBIDDEN


async def test_pin_puts_first_and_other_devices_hear_of_it(clients):
    alice, bob, carol, dave = await people(clients, 4)
    for other in (bob, carol, dave):
        await other.send(alice.user_id, "hi")
    before = await alice.conversations()
    last = before[-1]  # the least recent
    alice_ios = await clients()
    await alice_ios.token_login(alice.token, "ios")

    state = await alice.conv_set(last.conv, pinned=True)
    pushed = await next_event(alice_ios, Op.CONV_PUSH)
    listed = await alice_ios.conversations()

    assert (state.conv, state.pinned, state.muted, state.hidden) == (last.conv, True, False, False)
    assert pushed == state
    assert [c.conv for c in listed] == [last.conv] + [c.conv for c in before[:-1]]
    assert [c.pinned for c in listed] == [True, False, False]
    newest = await (carol if last.peer != carol.user_id else dave).send(alice.user_id, "newest, still below")
    listed = await alice.conversations()
    entry = next(c for c in listed if c.conv == newest.conv)
    assert listed[0].conv == last.conv and by_activity(listed[1:])
    assert entry.last_ts == max(c.last_ts for c in listed[1:])  # the top of the rest
    await alice.conv_set(last.conv, pinned=False)
    assert not (await next_event(alice_ios, Op.CONV_PUSH)).pinned
    listed = await alice.conversations()
    assert not any(c.pinned for c in listed) and by_activity(listed)


async def test_mute_is_a_flag_of_the_list_only(clients):
    alice, bob = await people(clients, 2)
    ack = await bob.send(alice.user_id, "hi")
    await asyncio.wait_for(alice.pushes.get(), 5)

    state = await alice.conv_set(ack.conv, muted=True)
    again = await bob.send(alice.user_id, "still delivered")

    assert state.muted and not state.pinned
    assert (await asyncio.wait_for(alice.pushes.get(), 5)).id == again.msg_id
    [entry] = await alice.conversations()
    assert (entry.muted, entry.unread) == (True, 2)
    assert not (await bob.conversations())[0].muted  # the peer's view is their own
    assert not (await alice.conv_set(ack.conv, muted=False)).muted


async def test_hidden_until_a_new_message(clients):
    alice, bob, carol = await people(clients, 3)
    ack = await bob.send(alice.user_id, "hide me")
    await carol.send(alice.user_id, "keep me")

    state = await alice.conv_set(ack.conv, hidden=True)
    hidden_list = [c.peer for c in await alice.conversations()]
    await bob.send(alice.user_id, "back again")
    shown = await alice.conversations()

    assert state.hidden
    assert hidden_list == [carol.user_id]
    assert [c.peer for c in shown] == [bob.user_id, carol.user_id]
    assert (shown[0].last_text, shown[0].unread) == ("back again", 2)
    assert not (await alice.conv_set(ack.conv)).hidden  # its state now: shown
    assert [c.peer for c in await bob.conversations()] == [alice.user_id]  # hiding is alice's own


async def test_cursor_paging_while_messages_arrive(clients):
    alice, *peers = await people(clients, 8)
    for peer in peers:
        await peer.send(alice.user_id, "hello")
    ordered = [c.peer for c in await alice.conversations()]  # newest first (ties: by conv id)
    by_id = {p.user_id: p for p in peers}

    seen: list[int] = []
    page = await alice.conversations_page(limit=3)
    seen += [c.peer for c in page.convs]
    assert seen == ordered[:3]
    # one conversation already shown and one not shown yet get new messages: both move
    # to the top, behind the cursor
    moved_shown, moved_unseen = by_id[ordered[1]], by_id[ordered[5]]
    await moved_shown.send(alice.user_id, "again")
    await moved_unseen.send(alice.user_id, "again")
    while page.has_more:
        page = await alice.conversations_page(page.next_cursor, limit=3)
        seen += [c.peer for c in page.convs]

    assert len(seen) == len(set(seen))  # none repeated
    untouched = {p.user_id for p in peers} - {moved_shown.user_id, moved_unseen.user_id}
    assert untouched <= set(seen)  # none of the untouched skipped
    everything = await alice.conversations()
    assert by_activity(everything)
    moved = [c for c in everything if c.peer in (moved_unseen.user_id, moved_shown.user_id)]
    assert min(c.last_ts for c in moved) >= max(c.last_ts for c in everything if c not in moved)
    with pytest.raises(ServerError) as err:
        await alice.conversations_page("not-a-cursor")
    assert err.value.code == ErrorCode.INVALID_ARGUMENT


async def test_conv_state_changes_reach_the_users_other_devices_only(clients):
    alice, bob = await people(clients, 2)
    ack = await bob.send(alice.user_id, "hi")
    alice_ios = await clients()
    await alice_ios.token_login(alice.token, "ios")

    await alice.conv_set(ack.conv, pinned=True, muted=True)
    pushed = await next_event(alice_ios, Op.CONV_PUSH)

    assert (pushed.conv, pushed.pinned, pushed.muted, pushed.hidden) == (ack.conv, True, True, False)
    assert await nothing_pending(alice, messages=False)
    assert await nothing_pending(bob)
    await alice.conv_set(ack.conv)  # nothing to change: nothing pushed
    assert await nothing_pending(alice_ios)


async def test_a_conv_set_that_changes_nothing_pushes_nothing(clients):
    alice, bob = await people(clients, 2)
    ack = await bob.send(alice.user_id, "hi")
    alice_ios = await clients()
    await alice_ios.token_login(alice.token, "ios")
    await alice.conv_set(ack.conv, pinned=True, hidden=True)
    await next_event(alice_ios, Op.CONV_PUSH)

    again = await alice.conv_set(ack.conv, pinned=True, muted=False, hidden=True)  # all as they are

    assert (again.pinned, again.muted, again.hidden) == (True, False, True)
    assert await nothing_pending(alice_ios)
    await alice.conv_set(ack.conv, muted=True)  # one flag changes: one push, with the others kept
    pushed = await next_event(alice_ios, Op.CONV_PUSH)
    assert (pushed.pinned, pushed.muted, pushed.hidden) == (True, True, True)


async def test_a_hidden_group_without_messages_comes_back_with_its_first(clients):
    alice, bob = await people(clients, 2)
    group = await alice.group_create("quiet", [bob.user_id])
    conv = f"g{group.group}"
    assert [c.conv for c in await bob.conversations()] == [conv]  # listed before any message

    assert (await bob.conv_set(conv, hidden=True)).hidden
    assert await bob.conversations() == []
    first = await alice.send_group(group.group, "the first message")

    assert [(c.conv, c.last_seq, c.unread) for c in await bob.conversations()] == [(conv, first.seq, 1)]


async def test_changes_from_two_devices_at_once_keep_each_other(server, clients):
    alice, bob = await people(clients, 2)
    acks = [await bob.send(alice.user_id, f"m{n}") for n in range(3)]
    conv = acks[0].conv
    alice_ios = await clients()
    await alice_ios.token_login(alice.token, "ios")

    pinned, mark, behind = await asyncio.gather(
        alice.conv_set(conv, pinned=True), alice_ios.read(conv, 3), alice.read(conv, 2))

    assert (pinned.pinned, mark.seq, behind.seq in (2, 3)) == (True, 3, True)
    [entry] = await alice.conversations()
    assert (entry.pinned, entry.read_seq, entry.unread) == (True, 3, 0)
    for client in (alice, alice_ios, bob):
        await client.close()
    server.restart()  # and in the store, not only in memory
    again = await clients()
    await again.token_login(alice.token, "web")
    [entry] = await again.conversations()
    assert (entry.pinned, entry.read_seq, entry.unread) == (True, 3, 0)
