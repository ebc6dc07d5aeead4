"""Who may add whom to a group, against a real ``im serve`` with the product default
(``group_add_default`` = friends): a stranger's add becomes an invitation that the invitee
sees, accepts or declines, and nothing of the group changes until then; invitations are
bounded per invitee and per inviter and budgeted; "nobody" and "anyone"; a dissolved
group's invitations go; blocked adders are refused; the setting and the invitations
survive a restart; malformed requests are 1003 naming the field.

The attack this closes (issue 17, finding 11): anyone could put anyone in a group, which
reached a user who only accepts friends' messages and let a stranger push a victim's lists
past their limits."""
from __future__ import annotations

import asyncio
from typing import Callable

import msgspec
import pytest

from edgeim.core_ext import bodies
from edgeim.core_ext.protocol import ErrorCode, Op
from edgeim.sdk import Client, ServerError

from harness import ServeProcess, new_user, next_event, nothing_pending, people

PER_INVITEE, PER_INVITER = 4, 6


@pytest.fixture
def server(serve_factory: Callable[..., ServeProcess]) -> ServeProcess:
    # the product default, said out loud (the harness's is "anyone"), and small bounds
    return serve_factory(group_add_default="friends", group_invites_held=PER_INVITEE,
                         group_invites_sent=PER_INVITER)


async def refused(call, code: ErrorCode) -> ServerError:
    with pytest.raises(ServerError) as err:
        await call
    assert err.value.code == code, err.value
    return err.value


async def befriend(a: Client, b: Client) -> None:
    await a.friend_request(b.user_id)
    await b.friend_accept(a.user_id)
    for client in (a, b):  # the request, then the acceptance
        while not client.events.empty():
            client.events.get_nowait()


async def test_a_stranger_invites_a_friends_only_user_who_is_not_a_member(clients):
    stranger, victim, other = await people(clients, 3)

    created = await stranger.group_create("trap", [victim.user_id, other.user_id])

    assert (created.added, created.invited) == ([], sorted([victim.user_id, other.user_id]))
    assert (created.members, created.role) == (1, "owner")
    # the owner's "created" names the owner alone; each invitee gets "invited" by name
    event = await next_event(stranger, Op.GROUP_PUSH)
    assert (event.event, event.users) == ("created", [stranger.user_id])
    invited = await next_event(victim, Op.GROUP_PUSH)
    assert (invited.event, invited.group, invited.actor, invited.users) == (
        "invited", created.group, stranger.user_id, [victim.user_id])
    # not a member: no group in the list, no reading, no conversation
    assert await victim.groups() == []
    await refused(victim.group_members_page(created.group), ErrorCode.FORBIDDEN)
    await refused(victim.sync(f"g{created.group}"), ErrorCode.FORBIDDEN)
    assert await victim.conversations() == []
    assert [m.user for m in await stranger.group_members(created.group)] == [stranger.user_id]
    # what the victim sees: the invitation
    (entry,) = await victim.group_invitations()
    assert (entry.group, entry.inviter) == (created.group, stranger.user_id)
    assert entry.expires_at > entry.ts
    # a message to the group reaches nobody but its members
    await stranger.send_group(created.group, "hello?")
    assert await nothing_pending(victim)
    assert (await victim.settings()).group_add == "friends"


async def test_a_friend_adds_directly(clients):
    alice, bob, stranger = await people(clients, 3)
    await befriend(alice, bob)

    created = await alice.group_create("club", [bob.user_id, stranger.user_id])

    assert (created.added, created.invited, created.members) == ([bob.user_id], [stranger.user_id], 2)
    assert (await next_event(bob, Op.GROUP_PUSH)).event == "created"
    assert [g.group for g in await bob.groups()] == [created.group]
    assert [i.group for i in await stranger.group_invitations()] == [created.group]
    assert await bob.group_invitations() == []


async def test_a_stranger_cannot_flood_past_the_bound(clients):
    victim, *strangers = await people(clients, 3)
    first, second = strangers
    groups = [(await first.group_create(f"g{n}", [victim.user_id])).group for n in range(PER_INVITEE)]

    # one more, from the same stranger or another: refused whole, no group made
    err = await refused(first.group_create("one more", [victim.user_id]), ErrorCode.INVITATIONS_FULL)
    assert str(victim.user_id) in err.message
    await refused(second.group_create("mine too", [victim.user_id]), ErrorCode.INVITATIONS_FULL)
    own = (await second.group_create("empty")).group
    await refused(second.group_invite(own, [victim.user_id]), ErrorCode.INVITATIONS_FULL)
    assert sorted(g.group for g in await first.groups()) == groups
    assert [g.group for g in await second.groups()] == [own]
    assert [i.group for i in await victim.group_invitations()] == groups
    assert [m.user for m in await second.group_members(own)] == [second.user_id]

    # declining makes room
    await victim.group_invitation_decline(groups[0])
    assert (await second.group_invite(own, [victim.user_id])).invited == [victim.user_id]
    assert [i.group for i in await victim.group_invitations()] == groups[1:] + [own]


async def test_an_inviter_has_a_bound_too(clients):
    inviter, *targets = await people(clients, PER_INVITER + 2)
    group = (await inviter.group_create("many", [t.user_id for t in targets[:PER_INVITER]])).group
    assert [len(await t.group_invitations()) for t in targets] == [1] * PER_INVITER + [0]

    await refused(inviter.group_invite(group, [targets[-1].user_id]), ErrorCode.INVITATIONS_FULL)

    assert await targets[-1].group_invitations() == []
    # accepting one frees a place of the inviter's
    await targets[0].group_invitation_accept(group)
    assert (await inviter.group_invite(group, [targets[-1].user_id])).invited == [targets[-1].user_id]


async def test_accept_joins_with_the_usual_push(clients):
    owner, member, invitee = await people(clients, 3)
    await member.settings(group_add="anyone")
    created = await owner.group_create("team", [member.user_id, invitee.user_id])
    assert (created.added, created.invited) == ([member.user_id], [invitee.user_id])
    for client in (owner, member):
        assert (await next_event(client, Op.GROUP_PUSH)).event == "created"
    assert (await next_event(invitee, Op.GROUP_PUSH)).event == "invited"
    before = await owner.send_group(created.group, "before you came")

    info = await invitee.group_invitation_accept(created.group)

    assert (info.group, info.role, info.members) == (created.group, "member", 3)
    for client in (owner, member, invitee):
        event = await next_event(client, Op.GROUP_PUSH)
        assert (event.event, event.actor, event.users) == ("joined", owner.user_id, [invitee.user_id])
    assert await invitee.group_invitations() == []
    assert [g.group for g in await invitee.groups()] == [created.group]
    # a member from now on: reads what comes after the join, sends
    sent = await invitee.send_group(created.group, "thanks")
    assert (await asyncio.wait_for(owner.pushes.get(), 5)).id == sent.msg_id
    assert [m.seq for m in (await invitee.sync(f"g{created.group}")).msgs] == [before.seq + 1]
    # the invitation is spent
    await refused(invitee.group_invitation_accept(created.group), ErrorCode.CONFLICT)
    await refused(invitee.group_invitation_decline(created.group), ErrorCode.NOT_FOUND)


async def test_decline_leaves_the_group_as_it_was(clients):
    owner, invitee = await people(clients, 2)
    group = (await owner.group_create("team", [invitee.user_id])).group
    assert (await next_event(owner, Op.GROUP_PUSH)).event == "created"

    await invitee.group_invitation_decline(group)

    assert await invitee.group_invitations() == []
    await refused(invitee.group_invitation_accept(group), ErrorCode.NOT_FOUND)
    assert [m.user for m in await owner.group_members(group)] == [owner.user_id]
    assert await nothing_pending(owner)  # nobody is told
    # the owner may invite again
    assert (await owner.group_invite(group, [invitee.user_id])).invited == [invitee.user_id]


async def test_nobody_makes_every_add_an_invitation_even_a_friends(clients):
    friend, careful, relaxed, stranger = await people(clients, 4)
    await befriend(friend, careful)
    assert (await careful.settings(group_add="nobody")).group_add == "nobody"
    assert (await relaxed.settings(group_add="anyone")).group_add == "anyone"
    assert (await relaxed.settings()).group_add == "anyone"  # kept

    by_friend = await friend.group_create("ours", [careful.user_id])
    by_stranger = await stranger.group_create("any", [relaxed.user_id])

    assert (by_friend.added, by_friend.invited) == ([], [careful.user_id])
    assert (by_stranger.added, by_stranger.invited) == ([relaxed.user_id], [])
    assert [g.group for g in await relaxed.groups()] == [by_stranger.group]
    assert [i.group for i in await careful.group_invitations()] == [by_friend.group]


async def test_invite_splits_added_and_invited_and_does_not_repeat(clients):
    owner, open_one, invitee = await people(clients, 3)
    await open_one.settings(group_add="anyone")
    group = (await owner.group_create("team")).group
    assert (await next_event(owner, Op.GROUP_PUSH)).event == "created"

    done = await owner.group_invite(group, [open_one.user_id, invitee.user_id])

    assert (done.users, done.invited) == ([open_one.user_id], [invitee.user_id])
    assert (await next_event(invitee, Op.GROUP_PUSH)).event == "invited"
    again = await owner.group_invite(group, [invitee.user_id])
    assert (again.users, again.invited) == ([], [invitee.user_id])
    assert await nothing_pending(invitee)  # pending already: not pushed twice
    assert len(await invitee.group_invitations()) == 1


async def test_dissolving_removes_the_invitations(clients):
    owner, invitee = await people(clients, 2)
    group = (await owner.group_create("short", [invitee.user_id])).group
    assert (await next_event(invitee, Op.GROUP_PUSH)).event == "invited"

    await owner.group_dissolve(group)

    event = await next_event(invitee, Op.GROUP_PUSH)
    assert (event.event, event.group) == ("dissolved", group)
    assert await invitee.group_invitations() == []
    await refused(invitee.group_invitation_accept(group), ErrorCode.NOT_FOUND)
    await refused(invitee.group_invitation_decline(group), ErrorCode.NOT_FOUND)


async def test_a_blocked_adder_is_refused_and_nothing_is_stored(clients):
    blocker, blocked = await people(clients, 2)
    await blocker.block(blocked.user_id)

    await refused(blocked.group_create("trap", [blocker.user_id]), ErrorCode.BLOCKED)

    assert await blocker.group_invitations() == []
    assert await blocked.groups() == []


async def test_invitations_are_budgeted(serve_factory, clients):
    node = serve_factory(group_add_default="friends", group_invites_per_hour=3)
    inviter, *targets = [Client(node.url) for _ in range(5)]
    try:
        for client in (inviter, *targets):
            await client.connect()
            await new_user(client)
        group = (await inviter.group_create("budget", [t.user_id for t in targets[:3]])).group

        await refused(inviter.group_invite(group, [targets[3].user_id]), ErrorCode.RATE_LIMITED)

        assert await targets[3].group_invitations() == []
        await refused(inviter.group_create("more", [targets[3].user_id]), ErrorCode.RATE_LIMITED)
        assert [g.group for g in await inviter.groups()] == [group]
    finally:
        for client in (inviter, *targets):
            await client.close()


async def test_an_invitation_expires(serve_factory):
    node = serve_factory(group_add_default="friends", group_invite_ttl=1)
    owner, invitee = Client(node.url), Client(node.url)
    try:
        for client in (owner, invitee):
            await client.connect()
            await new_user(client)
        group = (await owner.group_create("soon gone", [invitee.user_id])).group
        (entry,) = await invitee.group_invitations()
        await asyncio.sleep(max(0.0, (entry.expires_at - entry.ts) / 1000) + 0.5)

        assert await invitee.group_invitations() == []
        await refused(invitee.group_invitation_accept(group), ErrorCode.NOT_FOUND)
        # and it no longer counts: a new one may be sent
        assert (await owner.group_invite(group, [invitee.user_id])).invited == [invitee.user_id]
    finally:
        for client in (owner, invitee):
            await client.close()


async def test_the_setting_and_invitations_survive_a_restart(server, clients):
    owner, invitee = await people(clients, 2)
    await invitee.settings(group_add="nobody")
    group = (await owner.group_create("durable", [invitee.user_id])).group
    name = (await invitee.users([invitee.user_id]))[0].username

    server.restart()

    again = Client(server.url)
    await again.connect()
    try:
        await again.login(name, "secret-pw")
        assert (await again.settings()).group_add == "nobody"
        assert [(i.group, i.inviter) for i in await again.group_invitations()] == [(group, owner.user_id)]
        assert (await again.group_invitation_accept(group)).role == "member"
    finally:
        await again.close()


async def test_invitations_come_in_pages(clients):
    invitee, *owners = await people(clients, PER_INVITEE + 1)
    groups = sorted([(await o.group_create(f"g{n}", [invitee.user_id])).group for n, o in enumerate(owners)])

    first = await invitee.group_invitations_page(0, 2)
    second = await invitee.group_invitations_page(first.invitations[-1].group, 2)
    last = await invitee.group_invitations_page(second.invitations[-1].group, 2)

    assert ([i.group for i in first.invitations], first.has_more) == (groups[:2], True)
    assert ([i.group for i in second.invitations], second.has_more) == (groups[2:4], False)
    assert (last.invitations, last.has_more) == ([], False)


@pytest.mark.parametrize("op, body, field", [
    (Op.SETTINGS, {"group_add": "everyone"}, "group_add"),
    (Op.SETTINGS, {"group_add": 1}, "group_add"),
    (Op.GROUP_INVITATION_ACCEPT, {"group": 0}, "group"),
    (Op.GROUP_INVITATION_ACCEPT, {}, "group"),
    (Op.GROUP_INVITATION_DECLINE, {"group": "1"}, "group"),
    (Op.GROUP_INVITATIONS, {"limit": 0}, "limit"),
    (Op.GROUP_INVITATIONS, {"after": -1}, "after"),
])
async def test_malformed_requests_are_refused_naming_the_field(clients, op, body, field):
    (user,) = await people(clients, 1)
    before = await user.settings()

    raw = msgspec.Raw(msgspec.msgpack.encode(body))
    err = await refused(user.request(op, raw), ErrorCode.BAD_BODY)  # type: ignore[arg-type]

    assert field in err.message
    assert await user.settings() == before
    assert await user.group_invitations() == []
