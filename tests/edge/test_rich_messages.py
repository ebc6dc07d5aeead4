"""Recall, @mentions, typed content and message search against a real ``im serve``, over
live sockets: what the sender's reply says, what the other devices are pushed, and what
SYNC, HISTORY, SEARCH and the conversation list show afterwards (on other devices too)."""
from __future__ import annotations

import struct

import msgspec
import pytest

from edgeim.core_ext import bodies, content
from edgeim.core_ext.protocol import HEADER_FORMAT, ErrorCode, Op
from edgeim.sdk import Client, ServerError

from harness import new_user, next_event, people


async def refused(call, code: ErrorCode) -> None:
    with pytest.raises(ServerError) as err:
        await call
    assert err.value.code == code, err.value


def pconv(a: Client, b: Client) -> str:
    low, high = sorted((a.user_id, b.user_id))
    return f"p{low}_{high}"


async def entry(client: Client, conv: str) -> bodies.ConversationInfo:
    return next(c for c in await client.conversations() if c.conv == conv)


async def raw_send(client: Client, target: int, body: dict, flags: int = 0) -> tuple[int, bytes]:
    """A SEND whose body the SDK would refuse to build: (reply op, reply body)."""
    data = msgspec.msgpack.encode(body)
    req_id = 9_000_001
    frame = struct.pack(HEADER_FORMAT, 1, Op.SEND, flags, req_id, target, len(data)) + data
    return await client.exchange_raw(frame, req_id)


async def group_of(owner: Client, *members: Client) -> int:
    info = await owner.group_create("crew", [m.user_id for m in members])
    for client in (owner, *members):
        assert (await next_event(client, Op.GROUP_PUSH)).event == "created"
    return info.group


# -- recall ------------------------------------------------------------------------------------

async def test_recall_leaves_a_tombstone_everywhere(clients, server):
    alice, bob = await clients(), await clients()
    alice_name, _ = await new_user(alice)
    await new_user(bob)
    conv = pconv(alice, bob)
    await alice.send(bob.user_id, "first")
    ack = await alice.send(bob.user_id, "oops, wrong chat")
    assert (await bob.pushes.get()).content == "first"
    assert (await bob.pushes.get()).content == "oops, wrong chat"

    tombstone = await alice.recall(conv, ack.seq)

    assert (tombstone.seq, tombstone.content, tombstone.recalled_by) == (ack.seq, "", alice.user_id)
    assert tombstone.recalled_at >= tombstone.ts
    pushed = await next_event(bob, Op.RECALL_PUSH)
    assert (pushed.conv, pushed.seq, pushed.content, pushed.recalled_by) == (conv, ack.seq, "", alice.user_id)
    for reader in (alice, bob):
        synced = (await reader.sync(conv)).msgs
        assert [(m.content, m.recalled_by) for m in synced] == [("first", 0), ("", alice.user_id)]
        assert (await reader.history(conv)).msgs[-1].recalled_by == alice.user_id
        listed = await entry(reader, conv)
        assert (listed.last_seq, listed.last_text, listed.last_recalled) == (ack.seq, "", True)

    await refused(alice.recall(conv, ack.seq), ErrorCode.CONFLICT)  # twice
    await refused(bob.recall(conv, 1), ErrorCode.FORBIDDEN)  # not the sender
    await refused(alice.recall(conv, 99), ErrorCode.NOT_FOUND)
    async with Client(server.url) as later:  # a device that logs in afterwards reads the tombstone too
        await later.login(alice_name, "secret-pw", "pad")
        assert (await later.sync(conv)).msgs[-1].recalled_by == alice.user_id
        assert (await entry(later, conv)).last_recalled


async def test_the_recall_window(serve_factory):
    server = serve_factory(recall_window=0)
    async with Client(server.url) as owner, Client(server.url) as admin, Client(server.url) as member:
        for client in (owner, admin, member):
            await new_user(client)
        group = await group_of(owner, admin, member)
        await owner.group_set_role(group, admin.user_id, "admin")
        own = await owner.send_group(group, "from the owner")
        said = await member.send_group(group, "from a member")
        again = await member.send_group(group, "and again")

        await refused(member.recall(f"g{group}", said.seq), ErrorCode.RECALL_EXPIRED)
        await refused(admin.recall(f"g{group}", own.seq), ErrorCode.FORBIDDEN)  # admins not the owner's
        assert (await admin.recall(f"g{group}", said.seq)).recalled_by == admin.user_id
        assert (await owner.recall(f"g{group}", again.seq)).recalled_by == owner.user_id
        assert (await owner.recall(f"g{group}", own.seq)).recalled_by == owner.user_id  # any time, as owner

        msgs = (await member.sync(f"g{group}")).msgs
        assert [(m.seq, m.recalled_by) for m in msgs] == [
            (own.seq, owner.user_id), (said.seq, admin.user_id), (again.seq, owner.user_id)]


# -- mentions -----------------------------------------------------------------------------------

async def test_a_mention_flags_the_entry_on_every_device_until_read(clients, server):
    alice, carol, bob, bob_phone = await clients(), await clients(), await clients(), await clients()
    await new_user(alice)
    await new_user(carol)
    bob_name, _ = await new_user(bob)
    await bob_phone.login(bob_name, "secret-pw", "phone")
    group = await group_of(alice, bob, carol)
    assert (await next_event(bob_phone, Op.GROUP_PUSH)).event == "created"
    conv = f"g{group}"

    ack = await alice.send_group(group, "@bob look", mentions=[bob.user_id])

    pushed = await bob.pushes.get()
    assert (pushed.mentions, pushed.mention_all) == ([bob.user_id], False)
    assert (await entry(bob, conv)).mentioned and (await entry(bob_phone, conv)).mentioned
    assert not (await entry(carol, conv)).mentioned
    assert not (await entry(alice, conv)).mentioned

    await bob.read(conv, ack.seq)
    await next_event(bob_phone, Op.READ_PUSH)
    assert not (await entry(bob, conv)).mentioned and not (await entry(bob_phone, conv)).mentioned


async def test_mention_everyone_and_its_rules(clients, server):
    alice, bob, dave, carol = *(await people(clients, 3)), await clients()
    carol_name, _ = await new_user(carol)
    group = await group_of(alice, bob, carol)
    conv = f"g{group}"
    await carol.close()  # offline: the flag must come from the store at her next login

    await refused(bob.send_group(group, "hey all", mention_all=True), ErrorCode.FORBIDDEN)
    await refused(bob.send_group(group, "hey you", mentions=[dave.user_id]), ErrorCode.INVALID_ARGUMENT)
    await refused(_private_mention(bob, alice), ErrorCode.INVALID_ARGUMENT)
    await alice.send_group(group, "meeting now", mention_all=True)

    assert (await bob.pushes.get()).mention_all
    assert (await entry(bob, conv)).mentioned
    async with Client(server.url) as back:
        await back.login(carol_name, "secret-pw", "web")
        assert (await entry(back, conv)).mentioned
        assert (await back.sync(conv)).msgs[-1].mention_all


async def _private_mention(sender: Client, to: Client) -> None:
    op, body = await raw_send(sender, to.user_id, {"cmid": "pm-1", "content": "psst", "mentions": [to.user_id]})
    if op == Op.ERROR:
        error = bodies.decode(body, bodies.Error)
        raise ServerError(error.message, error.code)


# -- typed content ------------------------------------------------------------------------------

IMAGE = {"key": "p1_2/abc/cat.png", "width": 640, "height": 480, "size": 12345, "mime": "image/png"}


async def test_typed_contents_are_checked_and_kept(clients):
    alice, bob = await people(clients, 2)
    conv = pconv(alice, bob)

    await alice.send_typed(bob.user_id, content.Image(**IMAGE))
    await alice.send_typed(bob.user_id, content.Location(lat=31.23, lng=121.47, name="The Bund"))
    await alice.send_typed(bob.user_id, content.Contact(user=alice.user_id, name="me"))
    custom = {"kind": "poll", "options": ["tea", "coffee"], "extra": {"nested": True}}
    await alice.send(bob.user_id, custom, type=150)

    got = [await bob.pushes.get() for _ in range(4)]
    assert [(m.type, m.content) for m in got] == [
        (content.IMAGE, IMAGE),
        (content.LOCATION, {"lat": 31.23, "lng": 121.47, "name": "The Bund", "address": ""}),
        (content.CONTACT, {"user": alice.user_id, "name": "me"}),
        (150, custom),
    ]
    assert [(m.type, m.content) for m in (await bob.sync(conv)).msgs] == [(m.type, m.content) for m in got]
    listed = await entry(bob, conv)
    assert (listed.last_type, listed.last_text) == (150, "")


@pytest.mark.parametrize("type_, value", [
    (content.IMAGE, {k: v for k, v in IMAGE.items() if k != "width"}),  # a required key missing
    (content.IMAGE, {**IMAGE, "width": 0}),  # out of bounds
    (content.IMAGE, {**IMAGE, "mime": "not a mime"}),
    (content.FILE, {"key": "k", "name": "", "size": 1, "mime": "text/plain"}),
    (content.LOCATION, {"lat": 91.0, "lng": 0.0}),
    (content.TEXT, {"text": "a map is not text"}),
    (content.IMAGE, "a string is not an image"),
    (content.CALL, {"call": "c", "kind": "audio", "caller": 1, "callee": 2, "status": "missed"}),  # server only
    (42, {"anything": 1}),  # a reserved type
    (200, "application types carry maps"),
])
async def test_a_content_that_does_not_match_its_type_is_bad_body(clients, type_, value):
    alice, bob = await people(clients, 2)

    op, body = await raw_send(alice, bob.user_id, {"cmid": "t-1", "type": type_, "content": value})

    assert op == Op.ERROR
    assert bodies.decode(body, bodies.Error).code == ErrorCode.BAD_BODY
    assert (await bob.sync(pconv(alice, bob))).msgs == []


# -- search -------------------------------------------------------------------------------------

async def test_search_finds_only_what_the_reader_may_see(clients):
    alice, bob, carol, dave = await people(clients, 4)
    ab = pconv(alice, bob)
    await alice.send(bob.user_id, "the Quarterly report is due")
    await bob.send(alice.user_id, "which report?")
    await alice.send(bob.user_id, "unrelated chatter")
    oops = await alice.send(bob.user_id, "report with a typo")
    await alice.recall(ab, oops.seq)
    await alice.send(carol.user_id, "carol's own report")
    group = await group_of(alice, bob)
    await alice.send_group(group, "group report before dave")
    await alice.group_invite(group, [dave.user_id])
    await alice.send_group(group, "group report after dave joined")
    await alice.send_typed(bob.user_id, content.File(key=f"{ab}/x/q3-report.pdf", name="q3-report.pdf", size=10,
                                                     mime="application/pdf"))
    await alice.send(bob.user_id, "你好，世界")

    found = await bob.search("REPORT")
    texts = [m.content if isinstance(m.content, str) else m.content["name"] for m in found.msgs]
    assert texts == ["q3-report.pdf", "group report after dave joined", "group report before dave",
                     "which report?", "the Quarterly report is due"]
    assert [m.id for m in found.msgs] == sorted((m.id for m in found.msgs), reverse=True)

    first = await bob.search("report", limit=2)
    rest = await bob.search("report", before=first.msgs[-1].id, limit=10)
    assert first.has_more and not rest.has_more
    assert [m.id for m in first.msgs + rest.msgs] == [m.id for m in found.msgs]

    assert [m.content for m in (await dave.search("group report")).msgs] == ["group report after dave joined"]
    assert [m.content for m in (await carol.search("report")).msgs] == ["carol's own report"]
    assert [m.content for m in (await bob.search("report", conv=ab)).msgs][-1] == "the Quarterly report is due"
    assert [m.content for m in (await bob.search("你好")).msgs] == ["你好，世界"]  # under three characters
    assert [m.content for m in (await bob.search("世界")).msgs] == ["你好，世界"]
    assert (await bob.search("typo")).msgs == []  # recalled
    await refused(bob.search("   "), ErrorCode.INVALID_ARGUMENT)


async def test_a_search_past_the_search_timeout_is_answered_3013_and_reads_go_on(serve_factory):
    """A node whose search timeout is over before any search can run (1 µs): the search is
    stopped and answered SEARCH_TIMEOUT; the connection, SYNC and sends go on."""
    server = serve_factory(search_timeout="0.000001")
    async with Client(server.url) as alice, Client(server.url) as bob:
        await new_user(alice)
        await new_user(bob)
        sent = await alice.send(bob.user_id, "a haystack with a needle")
        conv = pconv(alice, bob)
        await refused(bob.search("needle"), ErrorCode.SEARCH_TIMEOUT)
        await refused(bob.search("ne", conv=conv), ErrorCode.SEARCH_TIMEOUT)  # the short-query way too
        assert [m.id for m in (await bob.sync(conv)).msgs] == [sent.msg_id]
        again = await alice.send(bob.user_id, "still here")
        assert [m.id for m in (await bob.sync(conv, after_seq=sent.seq)).msgs] == [again.msg_id]
