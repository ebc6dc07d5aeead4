"""Groups against a real ``im serve``: creation, group messages to every device of every
member, offline catch-up, late joiners, leaving, joining (open and by approval), roles,
mutes, updates, dissolution, member paging, the member limit, a restart, the SDK's resend
of group sends, and requests that race each other (joins for the last place, a kick and a
mute, a dissolution and an invite) leaving the group as one of their orders would."""
from __future__ import annotations

import asyncio
import signal
import time

import pytest

from edgeim.core_ext import bodies
from edgeim.core_ext.codec import decode_frame
from edgeim.core_ext.protocol import ErrorCode, Flag, Op
from edgeim.sdk import Client, ServerError

from harness import new_user, next_event, nothing_pending, people


async def refused(call, code: ErrorCode) -> None:
    with pytest.raises(ServerError) as err:
        await call
    assert err.value.code == code, err.value


async def new_group(owner: Client, members: list[Client], **kwargs) -> bodies.GroupInfo:
    """A group of ``owner`` and ``members``; each has seen its "created" push."""
    info = await owner.group_create("team", [m.user_id for m in members], **kwargs)
    for client in (owner, *members):
        assert (await next_event(client, Op.GROUP_PUSH)).event == "created"
    return info


def gconv(info: bodies.GroupInfo) -> str:
    return f"g{info.group}"


def outcome(result: bodies.JoinResult | BaseException) -> str:
    """A GROUP_JOIN's status, or the name of the error code it was refused with."""
    return result.status if isinstance(result, bodies.JoinResult) else ErrorCode(result.code).name


async def test_create_with_members_tells_every_member(clients):
    alice, bob, carol = await people(clients, 3)

    info = await alice.group_create("team", [bob.user_id, carol.user_id, bob.user_id], notice="hello")
    created = [await next_event(c, Op.GROUP_PUSH) for c in (alice, bob, carol)]

    everyone = sorted(c.user_id for c in (alice, bob, carol))
    assert (info.name, info.notice, info.owner, info.members, info.role) == ("team", "hello", alice.user_id, 3, "owner")
    for event in created:
        assert (event.event, event.group, event.actor, sorted(event.users)) == ("created", info.group, alice.user_id, everyone)
    assert [(m.user, m.role) for m in await bob.group_members(info.group)] == sorted(
        [(alice.user_id, "owner"), (bob.user_id, "member"), (carol.user_id, "member")])
    assert [(g.group, g.role) for g in await carol.groups()] == [(info.group, "member")]
    assert (await bob.group_info(info.group)).role == "member"


async def test_group_message_reaches_every_device_of_every_member_as_the_same_bytes(server):
    seen: dict[tuple[int, str], list[bytes]] = {}

    class Recording(Client):
        def _on_frame(self, data: bytes) -> None:
            if decode_frame(data)[0] == Op.MSG_PUSH:
                seen.setdefault((self.user_id, self.terminal), []).append(data)
            super()._on_frame(data)

    devices = {name: Recording(server.url) for name in ("a_ios", "a_web", "b_ios", "b_web", "c_web")}
    try:
        for client in devices.values():
            await client.connect()
        for user in ("a", "b", "c"):
            await devices[f"{user}_web"].register(f"grp_{user}", "secret-pw")
        for name, client in devices.items():
            user, terminal = name.split("_")
            await client.login(f"grp_{user}", "secret-pw", terminal)
        a, b, c = devices["a_web"], devices["b_web"], devices["c_web"]
        info = await a.group_create("team", [b.user_id, c.user_id])

        ack = await devices["a_ios"].send_group(info.group, "to every device", cmid="g-1")
        pushes = [await asyncio.wait_for(devices[n].pushes.get(), 5) for n in ("a_web", "b_ios", "b_web", "c_web")]
        await devices["a_ios"].ping()

        assert (ack.conv, ack.seq, ack.cmid) == (gconv(info), 1, "g-1")
        assert all((p.id, p.conv, p.seq, p.sender, p.to, p.content) ==
                   (ack.msg_id, ack.conv, 1, a.user_id, info.group, "to every device") for p in pushes)
        # every other device once, the sending connection not at all (it has the ack)
        assert set(seen) == {(a.user_id, "web"), (b.user_id, "ios"), (b.user_id, "web"), (c.user_id, "web")}
        assert all(len(frames) == 1 for frames in seen.values())
        frames = {frames[0] for frames in seen.values()}
        assert len(frames) == 1
        _, flags, _, target, _ = decode_frame(frames.pop())
        assert (flags, target) == (int(Flag.GROUP), info.group)  # routable without decoding the body
    finally:
        for client in devices.values():
            await client.close()


async def test_offline_member_catches_up_with_sync(server, clients):
    alice, bob, carol = await people(clients, 3)
    info = await new_group(alice, [bob, carol])
    carol_token = carol.token
    await carol.close()

    acks = [await alice.send_group(info.group, f"m{n}") for n in range(3)]
    acks.append(await bob.send_group(info.group, "from bob"))
    carol = await clients()
    await carol.token_login(carol_token, "web")
    caught_up = await carol.sync_all()

    assert [(m.seq, m.id) for m in caught_up] == [(a.seq, a.msg_id) for a in acks]
    assert [m.content for m in caught_up] == ["m0", "m1", "m2", "from bob"]
    [entry] = await carol.conversations()
    assert (entry.conv, entry.kind, entry.unread, entry.last_from) == (gconv(info), "group", 4, bob.user_id)


async def test_late_joiners_read_only_what_follows_their_join(clients):
    alice, bob, dave, erin = await people(clients, 4)
    info = await new_group(alice, [bob], join_mode="open")
    for n in range(3):
        await alice.send_group(info.group, f"before {n}")

    await alice.group_invite(info.group, [dave.user_id])
    assert (await next_event(dave, Op.GROUP_PUSH)).event == "joined"
    assert (await erin.group_join(info.group)).status == "joined"
    joined = await next_event(alice, Op.GROUP_PUSH)
    while joined.users != [erin.user_id]:  # dave's "joined" first
        joined = await next_event(alice, Op.GROUP_PUSH)

    for late in (dave, erin):
        assert (await late.sync(gconv(info), 0)).msgs == []
        assert (await late.history(gconv(info))).msgs == []
        [entry] = await late.conversations()
        assert (entry.unread, entry.last_seq) == (0, 3)
    after = await alice.send_group(info.group, "after")
    for late in (dave, erin):
        assert (await asyncio.wait_for(late.pushes.get(), 5)).id == after.msg_id
        assert [m.content for m in (await late.sync(gconv(info), 0)).msgs] == ["after"]
        assert [m.seq for m in (await late.history(gconv(info))).msgs] == [4]
        assert [c.unread for c in await late.conversations()] == [1]
    assert len((await bob.history(gconv(info))).msgs) == 4  # the members from the start see all


async def test_kicked_and_quit_members_get_nothing_more(clients):
    alice, bob, carol, dave = await people(clients, 4)
    info = await new_group(alice, [bob, carol, dave])
    await alice.send_group(info.group, "everyone")
    for c in (bob, carol, dave):
        await asyncio.wait_for(c.pushes.get(), 5)

    await alice.group_kick(info.group, bob.user_id)
    kicked = await next_event(bob, Op.GROUP_PUSH)
    await carol.group_quit(info.group)
    left = await next_event(alice, Op.GROUP_PUSH)
    while left.event != "left":
        left = await next_event(alice, Op.GROUP_PUSH)
    ack = await alice.send_group(info.group, "without bob and carol")

    assert (kicked.event, kicked.actor, kicked.users) == ("kicked", alice.user_id, [bob.user_id])
    assert (left.actor, left.users) == (carol.user_id, [carol.user_id])
    assert (await asyncio.wait_for(dave.pushes.get(), 5)).id == ack.msg_id
    for gone in (bob, carol):
        await gone.ping()
        assert gone.pushes.empty()
        await refused(gone.sync(gconv(info), 0), ErrorCode.FORBIDDEN)
        await refused(gone.history(gconv(info)), ErrorCode.FORBIDDEN)
        await refused(gone.send_group(info.group, "let me back"), ErrorCode.FORBIDDEN)
        assert await gone.groups() == [] and await gone.conversations() == []
    assert [m.user for m in await alice.group_members(info.group)] == sorted([alice.user_id, dave.user_id])


async def test_a_kick_and_a_quit_at_once_remove_once(clients):
    owner, member, other = await people(clients, 3)
    info = await new_group(owner, [member, other])

    kicked, quit = await asyncio.gather(owner.group_kick(info.group, member.user_id), member.group_quit(info.group),
                                        return_exceptions=True)

    assert [kicked, quit].count(None) == 1  # the one that came second found no member
    assert (await next_event(other, Op.GROUP_PUSH)).event in ("kicked", "left")
    assert await nothing_pending(other)  # told once
    assert [m.user for m in await owner.group_members(info.group)] == sorted([owner.user_id, other.user_id])


async def test_join_open_at_once_or_by_approval(clients):
    owner, admin, member, dave, erin, fred = await people(clients, 6)
    info = await new_group(owner, [admin, member])
    await owner.group_set_role(info.group, admin.user_id, "admin")
    for c in (owner, admin, member):
        assert (await next_event(c, Op.GROUP_PUSH)).event == "role"

    assert (await dave.group_join(info.group, "let me in")).status == "pending"
    asked = [await next_event(c, Op.GROUP_PUSH) for c in (owner, admin)]
    assert await nothing_pending(member)  # only admins hear of requests
    assert all((e.event, e.users) == ("join_request", [dave.user_id]) for e in asked)
    assert [(r.user, r.message) for r in (await admin.group_join_requests(info.group)).requests] == [
        (dave.user_id, "let me in")]
    await refused(dave.group_join(info.group), ErrorCode.CONFLICT)  # already pending
    await refused(dave.sync(gconv(info), 0), ErrorCode.FORBIDDEN)  # not a member yet

    await admin.group_approve(info.group, dave.user_id, True)
    joined = await next_event(dave, Op.GROUP_PUSH)
    assert (joined.event, joined.actor, joined.users) == ("joined", admin.user_id, [dave.user_id])
    assert (await dave.group_info(info.group)).role == "member"
    assert (await owner.group_join_requests(info.group)).requests == []

    assert (await erin.group_join(info.group)).status == "pending"
    await owner.group_approve(info.group, erin.user_id, False)
    rejected = await next_event(erin, Op.GROUP_PUSH)
    assert (rejected.event, rejected.users) == ("rejected", [erin.user_id])
    assert (await erin.group_info(info.group)).role == ""
    await refused(owner.group_approve(info.group, erin.user_id, True), ErrorCode.NOT_FOUND)

    await owner.group_update(info.group, join_mode="open")
    assert (await fred.group_join(info.group)).status == "joined"
    await refused(fred.group_join(info.group), ErrorCode.CONFLICT)
    assert sorted(m.user for m in await owner.group_members(info.group)) == sorted(
        c.user_id for c in (owner, admin, member, dave, fred))


async def test_an_invite_settles_a_pending_request_to_join(clients):
    owner, dave = await people(clients, 2)
    info = await new_group(owner, [])
    assert (await dave.group_join(info.group, "let me in")).status == "pending"

    await owner.group_invite(info.group, [dave.user_id])
    await owner.group_set_role(info.group, dave.user_id, "admin")

    assert (await owner.group_join_requests(info.group)).requests == []
    # approving the request that is no more must not add (and demote) dave again
    await refused(owner.group_approve(info.group, dave.user_id, True), ErrorCode.NOT_FOUND)
    assert {m.user: m.role for m in await owner.group_members(info.group)}[dave.user_id] == "admin"


async def test_joining_twice_at_once_joins_once(clients):
    owner, dave = await people(clients, 2)
    dave_ios = await clients()
    await dave_ios.token_login(dave.token, "ios")
    info = await new_group(owner, [], join_mode="open")

    results = await asyncio.gather(dave.group_join(info.group), dave_ios.group_join(info.group),
                                   return_exceptions=True)

    assert sorted(map(outcome, results)) == ["CONFLICT", "joined"]
    assert (await next_event(owner, Op.GROUP_PUSH)).users == [dave.user_id]
    assert await nothing_pending(owner)  # one "joined", not two
    assert [m.user for m in await owner.group_members(info.group)] == sorted([owner.user_id, dave.user_id])


async def test_roles_and_ownership_transfer(clients):
    alice, bob, carol = await people(clients, 3)
    info = await new_group(alice, [bob, carol])

    await alice.group_set_role(info.group, bob.user_id, "admin")
    role = await next_event(carol, Op.GROUP_PUSH)
    assert (role.event, role.users, role.role) == ("role", [bob.user_id], "admin")
    await bob.group_mute(info.group, carol.user_id, 0)  # an admin acts on members ...
    await refused(bob.group_set_role(info.group, carol.user_id, "admin"), ErrorCode.FORBIDDEN)  # ... not on roles

    await alice.group_transfer(info.group, bob.user_id)
    owner = await next_event(carol, Op.GROUP_PUSH)
    while owner.event != "owner":
        owner = await next_event(carol, Op.GROUP_PUSH)

    assert (owner.users, owner.role) == ([bob.user_id], "owner")
    group = await carol.group_info(info.group)
    assert group.owner == bob.user_id
    roles = {m.user: m.role for m in await carol.group_members(info.group)}
    assert roles == {alice.user_id: "admin", bob.user_id: "owner", carol.user_id: "member"}
    await refused(bob.group_quit(info.group), ErrorCode.FORBIDDEN)  # the owner cannot just leave
    await refused(alice.group_dissolve(info.group), ErrorCode.FORBIDDEN)  # no longer the owner
    await bob.group_set_role(info.group, alice.user_id, "member")
    assert {m.user: m.role for m in await carol.group_members(info.group)}[alice.user_id] == "member"


async def test_muted_member_and_muted_group(clients):
    owner, admin, member = await people(clients, 3)
    info = await new_group(owner, [admin, member])
    await owner.group_set_role(info.group, admin.user_id, "admin")
    until = int(time.time() * 1000) + 60_000

    await admin.group_mute(info.group, member.user_id, until)
    muted = await next_event(member, Op.GROUP_PUSH)
    while muted.event != "muted":
        muted = await next_event(member, Op.GROUP_PUSH)
    assert (muted.users, muted.until) == ([member.user_id], until)
    await refused(member.send_group(info.group, "hello?"), ErrorCode.MUTED)
    assert {m.user: m.muted_until for m in await owner.group_members(info.group)}[member.user_id] == until
    await admin.group_mute(info.group, member.user_id, 0)
    await member.send_group(info.group, "unmuted")

    await owner.group_mute_all(info.group, True)
    assert (await next_event(member, Op.GROUP_PUSH)).event in ("unmuted", "mute_all")
    assert (await member.group_info(info.group)).mute_all
    await refused(member.send_group(info.group, "quiet group"), ErrorCode.MUTED)
    await admin.send_group(info.group, "admins may speak")
    await owner.send_group(info.group, "so may the owner")
    await owner.group_mute_all(info.group, False)
    await member.send_group(info.group, "and now everyone")

    assert [m.content for m in (await owner.history(gconv(info))).msgs] == [
        "unmuted", "admins may speak", "so may the owner", "and now everyone"]


async def test_changes_made_at_once_keep_each_other(clients):
    owner, admin, member = await people(clients, 3)
    info = await new_group(owner, [admin, member])
    await owner.group_set_role(info.group, admin.user_id, "admin")
    until = int(time.time() * 1000) + 60_000

    await asyncio.gather(owner.group_update(info.group, name="renamed"), admin.group_mute_all(info.group, True),
                         owner.group_set_role(info.group, member.user_id, "admin"),
                         admin.group_mute(info.group, member.user_id, until), return_exceptions=True)

    group = await member.group_info(info.group)
    assert (group.name, group.mute_all) == ("renamed", True)
    row = {m.user: m for m in await owner.group_members(info.group)}[member.user_id]
    # the mute may have come first (admin on member) or been refused (admin on admin);
    # either way the promotion holds
    assert row.role == "admin" and row.muted_until in (0, until)


async def test_a_member_kicked_while_changing_stays_out(server, clients):
    """A kick and changes to the member (a mute) or by the member (their own view of the
    conversation) at once: whatever comes after the kick is refused, and nothing written
    behind it brings the member back, in memory or in the store."""
    owner, admin, member = await people(clients, 3)
    info = await new_group(owner, [admin, member])
    await owner.group_set_role(info.group, admin.user_id, "admin")
    first = await owner.send_group(info.group, "before the kick")

    kicked, muted, pinned, read = await asyncio.gather(
        owner.group_kick(info.group, member.user_id),
        admin.group_mute(info.group, member.user_id, int(time.time() * 1000) + 60_000),
        member.conv_set(gconv(info), pinned=True), member.read(gconv(info), first.seq), return_exceptions=True)

    assert kicked is None
    assert muted is None or muted.code == ErrorCode.NOT_FOUND  # before the kick, or refused
    assert all(not isinstance(r, BaseException) or r.code == ErrorCode.FORBIDDEN for r in (pinned, read))
    expected = sorted([owner.user_id, admin.user_id])
    assert [m.user for m in await owner.group_members(info.group)] == expected
    await refused(member.send_group(info.group, "back?"), ErrorCode.FORBIDDEN)
    assert await member.conversations() == []
    owner_token, member_token = owner.token, member.token
    for client in (owner, admin, member):
        await client.close()
    server.restart()  # the store agrees
    owner, member = await clients(), await clients()
    await owner.token_login(owner_token, "web")
    await member.token_login(member_token, "web")
    assert [m.user for m in await owner.group_members(info.group)] == expected
    assert await member.conversations() == [] and await member.groups() == []
    await owner.send_group(info.group, "after the restart")
    assert await nothing_pending(member)  # no push of the group's either


async def test_update_name_and_notice(clients):
    alice, bob = await people(clients, 2)
    info = await new_group(alice, [bob])

    updated = await alice.group_update(info.group, name="renamed", notice="read the rules")
    event = await next_event(bob, Op.GROUP_PUSH)

    assert (event.event, event.actor) == ("updated", alice.user_id)
    assert (updated.name, updated.notice, updated.avatar) == ("renamed", "read the rules", "")
    seen = await bob.group_info(info.group)
    assert (seen.name, seen.notice, seen.join_mode) == ("renamed", "read the rules", "approval")
    assert [c.name for c in await bob.conversations()] == ["renamed"]


async def test_dissolve_removes_the_group_for_everyone(clients):
    alice, bob, carol = await people(clients, 3)
    info = await new_group(alice, [bob, carol])
    await alice.send_group(info.group, "last words")

    await alice.group_dissolve(info.group)
    events = [await next_event(c, Op.GROUP_PUSH) for c in (bob, carol)]

    assert all((e.event, e.group, e.actor) == ("dissolved", info.group, alice.user_id) for e in events)
    for c in (alice, bob, carol):
        await refused(c.group_info(info.group), ErrorCode.NOT_FOUND)
        await refused(c.send_group(info.group, "anyone?"), ErrorCode.NOT_FOUND)
        await refused(c.sync(gconv(info), 0), ErrorCode.FORBIDDEN)
        assert await c.groups() == [] and await c.conversations() == []
    await refused(bob.group_join(info.group), ErrorCode.NOT_FOUND)


async def test_invites_and_joins_racing_a_dissolution_leave_nothing_behind(clients):
    owner, admin, invited, joiner = await people(clients, 4)
    info = await new_group(owner, [admin], join_mode="open")
    await owner.group_set_role(info.group, admin.user_id, "admin")

    results = await asyncio.gather(
        owner.group_dissolve(info.group), admin.group_invite(info.group, [invited.user_id]),
        joiner.group_join(info.group), admin.send_group(info.group, "last?"), return_exceptions=True)

    assert results[0] is None
    # each of the others came before the dissolution, or found no group
    assert all(not isinstance(r, BaseException) or getattr(r, "code", None) == ErrorCode.NOT_FOUND for r in results[1:])
    for c in (owner, admin, invited, joiner):
        assert await c.groups() == [] and await c.conversations() == []  # not UNAVAILABLE, not listed
        await refused(c.group_info(info.group), ErrorCode.NOT_FOUND)


async def test_members_page_by_id(clients):
    owner, *others = await people(clients, 5)
    info = await owner.group_create("big", [o.user_id for o in others])
    ids = sorted(c.user_id for c in (owner, *others))

    pages, after = [], 0
    while True:
        page = await owner.group_members_page(info.group, after=after, limit=2)
        pages.append(([m.user for m in page.members], page.has_more))
        if not page.has_more:
            break
        after = page.members[-1].user

    assert pages == [(ids[0:2], True), (ids[2:4], True), (ids[4:5], False)]
    assert [m.user for m in await others[0].group_members(info.group)] == ids


async def test_member_limit(serve_factory):
    server = serve_factory("cython", group_max_members=3)
    made = []
    for _ in range(5):
        client = Client(server.url)
        await client.connect()
        await new_user(client)
        made.append(client)
    owner, a, b, c, d = made
    try:
        await refused(owner.group_create("too big", [a.user_id, b.user_id, c.user_id]), ErrorCode.GROUP_FULL)
        assert await owner.groups() == []

        info = await owner.group_create("just right", [a.user_id, b.user_id], join_mode="open")
        assert (info.members, info.max_members) == (3, 3)
        await refused(owner.group_invite(info.group, [c.user_id]), ErrorCode.GROUP_FULL)
        await refused(d.group_join(info.group), ErrorCode.GROUP_FULL)
        await a.group_quit(info.group)
        assert (await d.group_join(info.group)).status == "joined"
        assert sorted(m.user for m in await owner.group_members(info.group)) == sorted(
            [owner.user_id, b.user_id, d.user_id])

        # two joins for the last place at once: one gets it
        second = await owner.group_create("one place left", [b.user_id], join_mode="open")
        results = await asyncio.gather(a.group_join(second.group), c.group_join(second.group), return_exceptions=True)
        assert sorted(map(outcome, results)) == ["GROUP_FULL", "joined"]
        assert len(await owner.group_members(second.group)) == 3
    finally:
        for client in made:
            await client.close()


async def test_group_survives_a_restart(server):
    made = []
    for _ in range(3):
        client = Client(server.url)
        await client.connect()
        name, _ = await new_user(client)
        made.append((client, name))
    (alice, alice_name), (bob, bob_name), (carol, _) = made
    info = await alice.group_create("durable", [bob.user_id, carol.user_id], notice="kept")
    await alice.group_set_role(info.group, bob.user_id, "admin")
    await alice.group_kick(info.group, carol.user_id)
    first = await alice.send_group(info.group, "before the restart")
    for client, _ in made:
        await client.close()

    server.restart()
    alice, bob = Client(server.url), Client(server.url)
    await alice.connect()
    await bob.connect()
    await alice.login(alice_name, "secret-pw", "web")
    await bob.login(bob_name, "secret-pw", "web")
    try:
        seen = await bob.group_info(info.group)
        roles = {m.user: m.role for m in await bob.group_members(info.group)}
        second = await alice.send_group(info.group, "after the restart")
        pushed = await asyncio.wait_for(bob.pushes.get(), 5)

        assert (seen.name, seen.notice, seen.owner, seen.members, seen.role) == (
            "durable", "kept", alice.user_id, 2, "admin")
        assert roles == {alice.user_id: "owner", bob.user_id: "admin"}
        assert (second.seq, pushed.id) == (first.seq + 1, second.msg_id)
        assert [m.content for m in (await bob.sync(gconv(info), 0)).msgs] == ["before the restart", "after the restart"]
        assert [g.group for g in await bob.groups()] == [info.group]
    finally:
        await alice.close()
        await bob.close()


async def test_sdk_resends_group_sends_after_the_node_restarts(server):
    resent_flags: list[int] = []

    class Watched(Client):
        def _transmit(self, cmid: str, retry: bool) -> None:
            if retry:
                resent_flags.append(self._unacked[cmid][1])
            super()._transmit(cmid, retry)

    alice, bob = Watched(server.url, auto_reconnect=True), Client(server.url)
    await alice.connect()
    await bob.connect()
    try:
        await new_user(alice)
        bob_name, _ = await new_user(bob)
        info = await alice.group_create("resent", [bob.user_id])
        await bob.close()

        sends = [asyncio.ensure_future(alice.send_group(info.group, f"r{n}")) for n in range(30)]
        await asyncio.sleep(0)  # the frames are written; the node goes before all are acked
        server.restart(signal.SIGKILL)
        acks = await asyncio.wait_for(asyncio.gather(*sends), 30)

        bob = Client(server.url)
        await bob.connect()
        await bob.login(bob_name, "secret-pw", "web")
        stored = (await bob.sync(gconv(info), 0, limit=100)).msgs
        assert resent_flags and all(f & Flag.GROUP for f in resent_flags)  # resent to the group ...
        assert all(a.conv == gconv(info) for a in acks)  # ... and stored there
        assert sorted(m.content for m in stored) == sorted(f"r{n}" for n in range(30))  # each once
        assert sorted(m.id for m in stored) == sorted(a.msg_id for a in acks)
    finally:
        await alice.close()
        await bob.close()
