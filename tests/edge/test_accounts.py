"""Accounts and profiles against a real ``im serve``: PROFILE_SET and its PROFILE_PUSH,
PASSWORD_CHANGE (other sessions closed, older tokens refused), ACCOUNT_DELETE and
``im user delete`` (sessions closed, logins refused, the graph dropped, groups handed
over, messages kept or erased), their refusals and budgets."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from harness import ServeProcess, new_user, next_event, nothing_pending

from edgeim.core_ext.protocol import CloseCode, ErrorCode, Op
from edgeim.sdk import Client, ServerError

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
ADMIN = "admin-" + uuid.uuid4().hex
IM = Path(sys.executable).with_name("im")


async def refused(request, code: int) -> ServerError:
    with pytest.raises(ServerError) as err:
        await request
    assert err.value.code == code, err.value
    return err.value


async def befriend(a: Client, b: Client) -> None:
    await a.friend_request(b.user_id)
    await b.friend_accept(a.user_id)
    await next_event(a, Op.FRIEND_PUSH)


def conv_of(a: int, b: int) -> str:
    return f"p{min(a, b)}_{max(a, b)}"


def im(node: ServeProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IM_ADMIN_TOKEN": ADMIN, "IM_ADMIN_URL": node.http_url}
    return subprocess.run([str(IM), *args], env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


# -- profiles ------------------------------------------------------------------------------------

async def test_a_profile_change_reaches_friends_and_members_once_per_device(clients, server):
    alice, alice_ios, friend, member, both, stranger = [await clients() for _ in range(6)]
    name, alice_id = await new_user(alice, "web")
    await alice_ios.login(name, "secret-pw", "ios")
    for client in (friend, member, both, stranger):
        await new_user(client)
    await befriend(alice, friend)
    await befriend(alice, both)
    info = await alice.group_create("club", [member.user_id, both.user_id])
    for client in (alice, alice_ios, friend, member, both):
        await nothing_pending(client)
        while not client.events.empty():
            client.events.get_nowait()

    profile = await alice.profile_set(nickname="Alice B.", avatar="https://pics.example.org/a.png", bio="hello ✓")
    assert (profile.user, profile.nickname, profile.avatar, profile.bio, profile.deleted) == (
        alice_id, "Alice B.", "https://pics.example.org/a.png", "hello ✓", False)
    for client in (alice_ios, friend, member, both):  # friends, members, her other device
        pushed = await next_event(client, Op.PROFILE_PUSH)
        assert (pushed.user, pushed.nickname, pushed.avatar, pushed.bio) == (alice_id, "Alice B.", profile.avatar,
                                                                             "hello ✓")
        assert await nothing_pending(client)  # once, though "both" is a friend and a member
    assert await nothing_pending(alice) and await nothing_pending(stranger)  # not the device that asked; no stranger
    for client in (friend, member, stranger):  # the lists show the new values
        (seen,) = await client.users([alice_id])
        assert (seen.nickname, seen.avatar, seen.bio) == ("Alice B.", profile.avatar, "hello ✓")
    assert (await stranger.user_find(name)).nickname == "Alice B."
    # only what is given changes
    again = await alice.profile_set(bio="")
    assert (again.nickname, again.avatar, again.bio) == ("Alice B.", profile.avatar, "")
    assert info.group  # the group stays as it was
    assert [m.user for m in await member.group_members(info.group)] == sorted([alice_id, member.user_id,
                                                                               both.user_id])


async def test_a_client_that_was_offline_sees_the_new_profile(clients, server):
    alice, bob = await clients(), await clients()
    _, alice_id = await new_user(alice)
    bob_name, _ = await new_user(bob)
    await befriend(alice, bob)
    assert (await bob.users([alice_id]))[0].nickname != "Later"  # bob's node read it once
    await bob.close()
    await alice.profile_set(nickname="Later", bio="changed while bob was away")
    back = await clients()
    await back.login(bob_name, "secret-pw")
    (seen,) = await back.users([alice_id])
    assert (seen.nickname, seen.bio) == ("Later", "changed while bob was away")
    assert [f.user for f in await back.friends()] == [alice_id]


async def test_bad_profiles_are_refused_and_change_nothing(serve_factory):
    node = serve_factory(profile_bio_max=10, profile_nickname_max=8)
    async with Client(node.url) as alice, Client(node.url) as bob:
        _, alice_id = await new_user(alice)
        await new_user(bob)
        before = await alice.profile_set(nickname="Alice", bio="short")
        for kwargs, code in (
            ({"bio": "x" * 11}, ErrorCode.INVALID_ARGUMENT),  # over the node's profile_bio_max
            ({"nickname": ""}, ErrorCode.BAD_BODY),
            ({"nickname": "   "}, ErrorCode.INVALID_ARGUMENT),
            ({"nickname": "x" * 9}, ErrorCode.INVALID_ARGUMENT),  # over the node's profile_nickname_max
            ({"nickname": "x" * 65}, ErrorCode.BAD_BODY),
            ({"avatar": "http://pics.example.org/a.png"}, ErrorCode.INVALID_ARGUMENT),  # not https
            ({"avatar": "javascript:alert(1)"}, ErrorCode.INVALID_ARGUMENT),
            ({"avatar": "https://"}, ErrorCode.INVALID_ARGUMENT),
            ({"avatar": "https://a.org/x y.png"}, ErrorCode.INVALID_ARGUMENT),
            ({"avatar": "https://user:pw@a.org/x.png"}, ErrorCode.INVALID_ARGUMENT),
            ({"avatar": f"a{alice_id}/AAAAAAAAAAAAAAAA/none.png"}, ErrorCode.NOT_FOUND),  # never uploaded
            ({"avatar": f"a{bob.user_id}/AAAAAAAAAAAAAAAA/x.png"}, ErrorCode.INVALID_ARGUMENT),  # not hers
            ({"avatar": "x" * 1025}, ErrorCode.BAD_BODY),
        ):
            err = await refused(alice.profile_set(**kwargs), code)
            if code == ErrorCode.BAD_BODY:
                assert next(iter(kwargs)) in err.message  # the field is named
        (now,) = await bob.users([alice_id])
        assert (now.nickname, now.avatar, now.bio) == (before.nickname, "", "short")
        assert await nothing_pending(bob)


async def test_an_avatar_file_is_uploaded_to_the_own_space_and_others_download_it(clients, server):
    alice, bob = await clients(), await clients()
    _, alice_id = await new_user(alice)
    await new_user(bob)
    await refused(alice.file_upload_grant(f"a{bob.user_id}", "x.png", 10, "image/png"), ErrorCode.FORBIDDEN)
    await refused(alice.file_upload_grant(f"a{alice_id}", "x.pdf", 10, "application/pdf"),
                  ErrorCode.FILE_TYPE_REFUSED)
    profile = await alice.upload_avatar(PNG, "image/png", "me.png")
    assert profile.avatar.startswith(f"a{alice_id}/") and profile.avatar.endswith("/me.png")
    (seen,) = await bob.users([alice_id])  # a stranger sees it, and may download it
    assert seen.avatar == profile.avatar
    assert await bob.download(seen.avatar) == PNG


async def test_profile_changes_are_budgeted_per_account_across_reconnects(serve_factory):
    node = serve_factory(profile_changes_per_hour=2)
    async with Client(node.url) as alice:
        name, alice_id = await new_user(alice)
        await alice.profile_set(nickname="one")
        await alice.profile_set(nickname="two")
        await refused(alice.profile_set(nickname="three"), ErrorCode.RATE_LIMITED)
    async with Client(node.url) as again:  # reconnecting gives nothing back
        await again.login(name, "secret-pw")
        await refused(again.profile_set(nickname="four"), ErrorCode.RATE_LIMITED)
        assert (await again.users([alice_id]))[0].nickname == "two"


# -- passwords -------------------------------------------------------------------------------------

async def test_a_password_change_closes_the_other_sessions_and_refuses_older_tokens(clients, server):
    web, ios, desktop = await clients(), await clients(), await clients()
    name, user_id = await new_user(web, "web", "old-secret")
    await ios.login(name, "old-secret", "ios")
    old_token = (await desktop.login(name, "old-secret", "desktop")).token
    changed = await web.password_change("old-secret", "new-secret")
    assert changed.closed == 2 and changed.token != old_token and web.token == changed.token
    for other in (ios, desktop):
        assert await asyncio.wait_for(other.wait_closed(), 10) == CloseCode.REPLACED
        assert other.kicked_reason == "password_changed"
    await web.ping()  # this session stays
    assert (await web.users([user_id]))[0].username == name
    async with Client(server.url) as late:
        await refused(late.token_login(old_token, "desktop"), ErrorCode.TOKEN_INVALID)
        await refused(late.login(name, "old-secret", "desktop"), ErrorCode.BAD_CREDENTIALS)
        await late.token_login(changed.token, "desktop")  # the fresh one works
    async with Client(server.url) as fresh:
        await fresh.login(name, "new-secret", "tv")


async def test_a_wrong_old_password_or_a_bad_new_one_changes_nothing(clients, server):
    web, ios = await clients(), await clients()
    name, _ = await new_user(web, "web", "old-secret")
    token = (await ios.login(name, "old-secret", "ios")).token
    await refused(web.password_change("not-it", "new-secret"), ErrorCode.BAD_CREDENTIALS)
    err = await refused(web.password_change("old-secret", "short"), ErrorCode.BAD_BODY)
    assert "new_password" in err.message
    await ios.ping()  # nobody was closed
    assert await nothing_pending(ios)
    async with Client(server.url) as other:
        await other.token_login(token, "tv")  # earlier tokens still work
    async with Client(server.url) as other:
        await other.login(name, "old-secret", "desktop")


async def test_password_changes_are_budgeted(serve_factory):
    node = serve_factory(password_changes_per_hour=1)
    async with Client(node.url) as web:
        await new_user(web, "web", "first-pw")
        await web.password_change("first-pw", "second-pw")
        await refused(web.password_change("second-pw", "third-pw"), ErrorCode.RATE_LIMITED)


# -- deleting an account ---------------------------------------------------------------------------

async def test_deleting_ones_account(clients, server):
    gone, gone_ios, friend, admin, member, alone_watch = [await clients() for _ in range(6)]
    name, gone_id = await new_user(gone, "web", "gone-pw")
    token = (await gone_ios.login(name, "gone-pw", "ios")).token
    for client in (friend, admin, member, alone_watch):
        await new_user(client)
    await befriend(gone, friend)
    sent = await gone.send(friend.user_id, "remember me")
    owned = await gone.group_create("owned", [member.user_id, admin.user_id])
    await gone.group_set_role(owned.group, admin.user_id, "admin")
    members_only = await gone.group_create("members", [member.user_id, friend.user_id])
    alone = await gone.group_create("alone")
    joined = await admin.group_create("theirs", [gone.user_id, member.user_id])
    for client in (friend, admin, member):
        await nothing_pending(client)
        while not client.events.empty():
            client.events.get_nowait()

    await refused(gone.account_delete("wrong-pw"), ErrorCode.BAD_CREDENTIALS)  # nothing changes
    assert [f.user for f in await friend.friends()] == [gone_id]
    assert (await friend.users([gone_id]))[0].deleted is False
    await gone_ios.ping()

    await gone.account_delete("gone-pw")
    assert await asyncio.wait_for(gone.wait_closed(), 10) == CloseCode.LOGGED_OUT
    assert await asyncio.wait_for(gone_ios.wait_closed(), 10) == CloseCode.REPLACED
    assert gone_ios.kicked_reason == "account_deleted"
    # the friend hears of it, and the friendship is gone
    assert (await next_event(friend, Op.FRIEND_PUSH)).event == "deleted"
    shown = await next_event(friend, Op.PROFILE_PUSH)
    assert (shown.user, shown.deleted, shown.nickname, shown.avatar, shown.bio) == (gone_id, True, "Deleted user",
                                                                                      "", "")
    assert await friend.friends() == []
    (profile,) = await member.users([gone_id])
    assert (profile.username, profile.nickname, profile.deleted) == (name, "Deleted user", True)
    await refused(member.user_find(name), ErrorCode.USER_NOT_FOUND)
    # the groups: owned -> the admin, members only -> the oldest member, alone -> dissolved
    assert (await admin.group_info(owned.group)).owner == admin.user_id
    # (both joined at its creation: the lower id of the two)
    assert (await member.group_info(members_only.group)).owner == min(member.user_id, friend.user_id)
    assert alone.group not in [g.group for g in await admin.groups()]
    for group in (owned.group, members_only.group, joined.group):
        assert gone_id not in [m.user for m in await member.group_members(group)]
    # the friend's copy of the conversation is kept, shown as sent by the deleted user
    page = await friend.sync(conv_of(gone_id, friend.user_id))
    assert [(m.sender, m.content) for m in page.msgs] == [(gone_id, "remember me")] and sent.seq == 1
    # logins are refused; the username is not freed
    async with Client(server.url) as late:
        await refused(late.login(name, "gone-pw"), ErrorCode.ACCOUNT_DELETED)
        await refused(late.token_login(token, "ios"), ErrorCode.ACCOUNT_DELETED)
        await refused(late.register(name, "another-pw"), ErrorCode.USERNAME_TAKEN)


async def test_erasing_setting_leaves_tombstones_for_the_other_party(serve_factory):
    node = serve_factory(delete_erases_messages=1)
    async with Client(node.url) as gone, Client(node.url) as bob:
        name, gone_id = await new_user(gone, "web")
        await new_user(bob)
        await gone.send(bob.user_id, "erase me")
        mine = await bob.send(gone_id, "my own words")
        await gone.account_delete("secret-pw")
        page = await bob.sync(conv_of(gone_id, bob.user_id))
        assert [(m.sender, m.content, m.recalled_by) for m in page.msgs] == [
            (gone_id, "", gone_id), (bob.user_id, "my own words", 0)]
        assert mine.seq == 2
        (entry,) = await bob.conversations()
        assert entry.last_text == "my own words"


async def test_im_user_delete(serve_factory):
    node = serve_factory(admin_token=ADMIN)
    async with Client(node.url) as gone, Client(node.url) as friend:
        name, gone_id = await new_user(gone)
        await new_user(friend)
        await befriend(gone, friend)
        unconfirmed = im(node, "user", "delete", name)
        assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr
        assert (await friend.users([gone_id]))[0].deleted is False  # not deleted without --yes
        done = im(node, "user", "delete", name, "--yes", "--json")
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        assert (answer["id"], answer["deleted"], answer["friends"], answer["closed"]) == (gone_id, True, 1, 1)
        assert await asyncio.wait_for(gone.wait_closed(), 10) == CloseCode.REPLACED
        assert gone.kicked_reason == "account_deleted"
        assert await friend.friends() == []
        again = im(node, "user", "delete", name, "--yes")
        assert again.returncode != 0 and "deleted already" in again.stderr
        assert json.loads(im(node, "user", "show", name, "--json").stdout)["deleted"] is True
