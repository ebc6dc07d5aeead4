"""Accounts and profiles on three ``im serve`` nodes on the cluster backends (the fixtures of
test_cluster.py): a profile change reaches every device once and every node's USERS, a
password change closes the sessions on the other nodes and its older tokens everywhere,
a deletion closes them and changes what every node shows."""
from __future__ import annotations

import asyncio

import pytest
from harness import new_user, next_event, nothing_pending
from test_cluster import connect, nodes  # noqa: F401  (fixtures: three nodes, clients)

from edgeim.core_ext.protocol import CloseCode, ErrorCode, Op
from edgeim.sdk import Client, ServerError


async def eventually(check, timeout: float = 10.0) -> bool:
    """Until ``check()`` is true (news crossing the bus); False if it never is in time."""
    async def attempts() -> bool:
        while not await check():
            await asyncio.sleep(0.05)
        return True
    try:
        return await asyncio.wait_for(attempts(), timeout)
    except asyncio.TimeoutError:
        return False


async def befriend(a: Client, b: Client) -> None:
    await a.friend_request(b.user_id)
    await next_event(b, Op.FRIEND_PUSH, 20)
    await b.friend_accept(a.user_id)
    await next_event(a, Op.FRIEND_PUSH, 20)


async def drain_events(*clients: Client) -> None:
    for client in clients:
        await nothing_pending(client)
        while not client.events.empty():
            client.events.get_nowait()


async def test_a_profile_change_crosses_nodes(nodes, connect):
    a, b, c = nodes
    alice, bob_b, bob_c, carol_c, stranger_b = [await connect(n) for n in (a, b, c, c, b)]
    _, alice_id = await new_user(alice)
    bob_name, _ = await new_user(bob_b, "ios")
    await bob_c.login(bob_name, "secret-pw", "web")
    await new_user(carol_c)
    await new_user(stranger_b)
    await befriend(alice, bob_b)
    info = await alice.group_create("far", [carol_c.user_id, bob_b.user_id])
    await next_event(carol_c, Op.GROUP_PUSH, 20)
    # node b holds alice's profile for a user who is neither friend nor member: no push reaches it
    assert (await stranger_b.users([alice_id]))[0].bio == ""
    await drain_events(bob_b, bob_c, carol_c, stranger_b)

    await alice.profile_set(nickname="Alice Far", bio="from node a")
    for device in (bob_b, bob_c, carol_c):  # bob: friend and member, one push per device
        pushed = await next_event(device, Op.PROFILE_PUSH, 20)
        assert (pushed.user, pushed.nickname, pushed.bio) == (alice_id, "Alice Far", "from node a")
    # a group message queued after the change reaches them all: a second PROFILE_PUSH, had
    # there been one, came before it (pushes from one node arrive in order)
    after = await alice.send_group(info.group, "after the change")
    for device in (bob_b, bob_c, carol_c):
        assert (await asyncio.wait_for(device.pushes.get(), 20)).id == after.msg_id
        assert all(kind != Op.PROFILE_PUSH for kind, _ in _drained(device))
    # every node answers the new profile, also the one that only cached it
    assert await eventually(lambda: _bio_is(stranger_b, alice_id, "from node a"))
    (seen,) = await carol_c.users([alice_id])
    assert seen.nickname == "Alice Far"
    assert info.group


def _drained(client: Client) -> list:
    events = []
    while not client.events.empty():
        events.append(client.events.get_nowait())
    return events


async def _bio_is(client: Client, user: int, bio: str) -> bool:
    return (await client.users([user]))[0].bio == bio


async def test_a_password_change_closes_sessions_and_tokens_on_every_node(nodes, connect):
    a, b, c = nodes
    web_a, ios_b, desk_c = await connect(a), await connect(b), await connect(c)
    name, _ = await new_user(web_a, "web", "old-secret")
    await ios_b.login(name, "old-secret", "ios")
    old_token = (await desk_c.login(name, "old-secret", "desktop")).token
    changed = await web_a.password_change("old-secret", "new-secret")
    assert changed.closed == 2
    for other in (ios_b, desk_c):
        assert await asyncio.wait_for(other.wait_closed(), 20) == CloseCode.REPLACED
        assert other.kicked_reason == "password_changed"
    await web_a.ping()
    late = await connect(c)
    with pytest.raises(ServerError) as err:
        await late.token_login(old_token, "desktop")
    assert err.value.code == ErrorCode.TOKEN_INVALID
    fresh = await connect(b)
    await fresh.token_login(changed.token, "tv")


async def test_a_deletion_crosses_nodes(nodes, connect):
    a, b, c = nodes
    gone_a, gone_c, friend_b, member_c = await connect(a), await connect(c), await connect(b), await connect(c)
    name, gone_id = await new_user(gone_a, "web", "gone-pw")
    await gone_c.login(name, "gone-pw", "ios")
    await new_user(friend_b)
    await new_user(member_c)
    await befriend(gone_a, friend_b)
    info = await gone_a.group_create("handed", [member_c.user_id, friend_b.user_id])
    await next_event(member_c, Op.GROUP_PUSH, 20)
    await gone_a.send(friend_b.user_id, "kept for you")
    await drain_events(friend_b, member_c)

    await gone_a.account_delete("gone-pw")
    assert await asyncio.wait_for(gone_c.wait_closed(), 20) == CloseCode.REPLACED
    assert gone_c.kicked_reason == "account_deleted"
    assert (await next_event(friend_b, Op.FRIEND_PUSH, 20)).event == "deleted"
    assert (await next_event(member_c, Op.PROFILE_PUSH, 20)).deleted is True
    # the lists answer from memory: node b's reload of friend_b may be a bus hop behind the push
    assert await eventually(lambda: _no_friends(friend_b))
    assert await eventually(lambda: _owner_is(member_c, info.group, min(member_c.user_id, friend_b.user_id)))
    (shown,) = await member_c.users([gone_id])
    assert (shown.deleted, shown.nickname) == (True, "Deleted user")
    page = await friend_b.sync(f"p{min(gone_id, friend_b.user_id)}_{max(gone_id, friend_b.user_id)}")
    assert [(m.sender, m.content) for m in page.msgs] == [(gone_id, "kept for you")]
    late = await connect(b)
    with pytest.raises(ServerError) as err:
        await late.login(name, "gone-pw")
    assert err.value.code == ErrorCode.ACCOUNT_DELETED
    with pytest.raises(ServerError) as err:  # node b no longer takes the deleted user as a friend
        await friend_b.friend_request(gone_id)
    assert err.value.code == ErrorCode.USER_NOT_FOUND


async def _no_friends(client: Client) -> bool:
    return await client.friends() == []


async def _owner_is(client: Client, group: int, owner: int) -> bool:
    return (await client.group_info(group)).owner == owner
