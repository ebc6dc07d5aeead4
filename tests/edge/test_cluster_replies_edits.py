"""Replies and edits across the three nodes of tests/edge/test_cluster.py (MariaDB or TiDB,
Redis, RocketMQ): a reply's quote and an edit reach every device on every node, once; the
lists of other nodes follow an edit; an edit's change revision is the store's, whichever node made it,
so a device that was offline syncs every edit whatever node it lands on."""
from __future__ import annotations

import asyncio

from harness import new_user, next_event, nothing_pending
from test_cluster import connect, nodes  # noqa: F401 - the cluster's fixtures

from edgeim.core_ext import bodies
from edgeim.core_ext.protocol import ErrorCode, Op
from edgeim.sdk import Client, ServerError


def pconv(a: Client, b: Client) -> str:
    low, high = sorted((a.user_id, b.user_id))
    return f"p{low}_{high}"


async def test_replies_and_edits_cross_nodes_in_private(nodes, connect):  # noqa: F811
    a, b, c = nodes
    alice, alice_c, bob_b, bob_c = await connect(a), await connect(c), await connect(b), await connect(c)
    alice_name, _ = await new_user(alice)
    await alice_c.login(alice_name, "secret-pw", "pad")
    bob_name, _ = await new_user(bob_b, "ios")
    await bob_c.login(bob_name, "secret-pw", "web")
    conv = pconv(alice, bob_b)

    original = await alice.send(bob_b.user_id, "meet at the old bridge")
    for device in (bob_b, bob_c, alice_c):
        assert (await asyncio.wait_for(device.pushes.get(), 20)).seq == original.seq
    reply = await bob_b.send(alice.user_id, "which one?", reply_to=original.msg_id)
    for device in (alice, alice_c, bob_c):  # every device but the sending one, on every node
        pushed = await asyncio.wait_for(device.pushes.get(), 20)
        assert (pushed.seq, pushed.reply.id, pushed.reply.sender, pushed.reply.snippet) == (
            reply.seq, original.msg_id, alice.user_id, "meet at the old bridge")

    edited = await alice.edit(conv, original.seq, "meet at the new bridge")
    for device in (alice_c, bob_b, bob_c):
        pushed = await next_event(device, Op.EDIT_PUSH, 20)
        assert (pushed.seq, pushed.content, pushed.rev) == (original.seq, "meet at the new bridge", 1)
    for device in (alice, alice_c, bob_b, bob_c):  # once: nothing more is on its way
        await asyncio.sleep(0.3)
        assert await nothing_pending(device)
    # the other nodes' reads show the edit, and the quote as it is now
    page = await bob_c.sync(conv)
    assert [(m.content, m.edited_at) for m in page.msgs] == [("meet at the new bridge", edited.edited_at),
                                                              ("which one?", 0)]
    assert page.msgs[1].reply.snippet == "meet at the new bridge"
    assert (await bob_c.search("new bridge")).msgs[0].seq == original.seq
    assert (await bob_c.search("old bridge")).msgs == []


async def test_edits_in_a_group_cross_nodes_and_an_offline_device_syncs_them(nodes, connect):  # noqa: F811
    a, b, c = nodes
    owner, member_b, member_c = await connect(a), await connect(b), await connect(c)
    owner_name, _ = await new_user(owner)
    for client in (member_b, member_c):
        await new_user(client)
    info = await owner.group_create("everywhere", [member_b.user_id, member_c.user_id])
    for member in (member_b, member_c):
        await next_event(member, Op.GROUP_PUSH, 20)
    conv = f"g{info.group}"
    one = await member_b.send_group(info.group, "draft one")
    two = await member_c.send_group(info.group, "draft two")
    for member, n in ((owner, 2), (member_b, 1), (member_c, 1)):
        for _ in range(n):
            await asyncio.wait_for(member.pushes.get(), 20)

    # edits made on two nodes share one change revision sequence (the store's)
    assert (await member_b.edit(conv, one.seq, "final one")).rev == 1
    assert (await member_c.edit(conv, two.seq, "final two")).rev == 2
    for member, expected in ((owner, [one.seq, two.seq]), (member_b, [two.seq]), (member_c, [one.seq])):
        got = [await next_event(member, Op.EDIT_PUSH, 20) for _ in expected]
        assert sorted(m.seq for m in got) == expected
    await asyncio.sleep(0.3)
    assert await nothing_pending(owner)

    # a member removed on another node may not edit any more
    await owner.group_kick(info.group, member_c.user_id)
    await next_event(member_c, Op.GROUP_PUSH, 20)

    async def edit_again() -> None:  # (the same text: until the kick arrives, it changes nothing one can read)
        await member_c.edit(conv, two.seq, "final two")

    deadline = asyncio.get_running_loop().time() + 10
    while True:  # the kick reaches c's node through the bus
        try:
            await edit_again()
        except ServerError as err:
            if err.code == ErrorCode.FORBIDDEN:
                break
            raise
        assert asyncio.get_running_loop().time() < deadline, "a removed member kept editing"
        await asyncio.sleep(0.05)

    # a device of the owner that logs in on node c afterwards syncs every edit once
    async with Client(c.url) as later:
        await later.login(owner_name, "secret-pw", "tablet")
        edits, _ = await later.sync_changes(conv)
        assert [(m.seq, m.content) for m in edits] == [(one.seq, "final one"), (two.seq, "final two")]  # once each
        assert later.revs[conv] == edits[-1].rev >= 2
        page = await later.sync(conv, bodies.MAX_SEQ, changes_after=later.revs[conv])
        assert page.changed == []


async def test_changes_on_three_nodes_at_once_take_one_revision_each_in_commit_order(nodes, connect):  # noqa: F811
    """Edits on one node and reactions on two others, all at once, in one conversation:
    each change takes its own revision (no two alike, none skipped), and the order of the
    revisions is the order the changes committed in (the last edit's text is the text)."""
    a, b, c = nodes
    owner, member_b, member_c = await connect(a), await connect(b), await connect(c)
    owner_name, _ = await new_user(owner)
    for client in (member_b, member_c):
        await new_user(client)
    info = await owner.group_create("at once", [member_b.user_id, member_c.user_id])
    for member in (member_b, member_c):
        await next_event(member, Op.GROUP_PUSH, 20)
    conv = f"g{info.group}"
    one = await member_b.send_group(info.group, "v")
    two = await owner.send_group(info.group, "w")

    edits = [member_b.edit(conv, one.seq, f"v{i}") for i in range(4)]
    reactions = [who.react(conv, seq, emoji) for who in (owner, member_c) for seq in (one.seq, two.seq)
                 for emoji in ("👍", "🎉")]
    done = await asyncio.gather(*edits, *reactions)
    revs = [m.rev for m in done]
    assert sorted(revs) == list(range(1, len(done) + 1))
    newest_edit = max(done[:len(edits)], key=lambda m: m.rev)

    async with Client(c.url) as later:
        await later.login(owner_name, "secret-pw", "tablet")
        changed, reactions_now = await later.sync_changes(conv)
        assert [(m.seq, m.rev) for m in changed] == sorted(
            [(one.seq, max(revs[i] for i, m in enumerate(done) if m.seq == one.seq)),
             (two.seq, max(revs[i] for i, m in enumerate(done) if m.seq == two.seq))], key=lambda x: x[1])
        assert {m.seq: m.content for m in changed}[one.seq] == newest_edit.content
        assert {r.seq: sorted(x.count for x in r.reactions) for r in reactions_now} == {
            one.seq: [2, 2], two.seq: [2, 2]}
        assert later.revs[conv] == len(done)
