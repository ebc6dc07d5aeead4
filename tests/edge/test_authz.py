"""The authorization matrix, table-driven, against a real ``im serve`` with the product
defaults (only friends send 1:1; only friends add to groups, the members of the world
chose "anyone"): each row is one request by someone who must be refused
(a stranger, a non-member, a removed member, a blocked user, a muted member, a member
acting as an admin, an admin acting as the owner). The request gets its error code and
changes nothing: a snapshot of everything the world's reads show is the same after it.

One node serves the module (it holds no event loop); each row builds a fresh world of
new users and groups on it, so rows do not see each other's effects.
"""
from __future__ import annotations

import time
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest

from edgeim.core_ext.protocol import ErrorCode
from edgeim.sdk import Client, ServerError

from harness import ServeProcess, new_user

FORBIDDEN, NOT_FRIENDS, BLOCKED, MUTED, NOT_FOUND, CONFLICT, REPLY_NOT_FOUND = (
    ErrorCode.FORBIDDEN, ErrorCode.NOT_FRIENDS, ErrorCode.BLOCKED, ErrorCode.MUTED, ErrorCode.NOT_FOUND,
    ErrorCode.CONFLICT, ErrorCode.REPLY_NOT_FOUND)
USER_NOT_FOUND, BAD_CREDENTIALS, INVALID_ARGUMENT = (
    ErrorCode.USER_NOT_FOUND, ErrorCode.BAD_CREDENTIALS, ErrorCode.INVALID_ARGUMENT)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> ServeProcess:
    server = ServeProcess(tmp_path_factory.mktemp("authz"), "cython", strangers_may_send=0,
                          group_add_default="friends")
    server.start()
    yield server
    server.stop()


class World:
    """owner, admin, admin2, member, muted (a member muted for an hour) and removed (kicked
    after its message, seq 2, which follows the owner's, seq 1) in ``group`` (join by
    approval), with those messages in it and a pending join request from
    ``stranger``; owner and member are friends with one private message; ``blocker``
    blocked ``blocked``, who owns ``own_group`` alone; ``invitee`` has a pending invitation
    to ``group`` from the owner (its group_add rule is the default: friends). ``deleted_id``
    was the owner's friend and deleted the account; the owner has an avatar file
    (``owner_avatar``)."""

    owner: Client
    admin: Client
    admin2: Client
    member: Client
    muted: Client
    removed: Client
    stranger: Client
    blocked: Client
    blocker: Client
    invitee: Client
    group: int
    own_group: int
    group_file: str  # a file the owner uploaded to the group, and one to the friends' conversation
    private_file: str
    group_msg: int  # the ids of the owner's group message and of the friends' private one
    private_msg: int
    deleted_id: int
    owner_avatar: str

    @property
    def gconv(self) -> str:
        return f"g{self.group}"

    def conv(self, a: Client | int, b: Client | int) -> str:
        low, high = sorted(c if isinstance(c, int) else c.user_id for c in (a, b))
        return f"p{low}_{high}"


@pytest.fixture
async def world(node: ServeProcess) -> AsyncIterator[World]:
    w = World()
    roles = ("owner", "admin", "admin2", "member", "muted", "removed", "stranger", "blocked", "blocker", "invitee")
    made: list[Client] = []
    try:
        for role in roles:
            client = Client(node.url)
            made.append(client)
            await client.connect()
            await new_user(client)
            setattr(w, role, client)
        o = w.owner
        joining = (w.admin, w.admin2, w.member, w.muted, w.removed)
        for client in joining:  # strangers to the owner: they let anyone add them
            await client.settings(group_add="anyone")
        info = await o.group_create("guarded", [c.user_id for c in joining] + [w.invitee.user_id])
        assert (sorted(info.added), info.invited) == (sorted(c.user_id for c in joining), [w.invitee.user_id])
        w.group = info.group
        await o.group_set_role(w.group, w.admin.user_id, "admin")
        await o.group_set_role(w.group, w.admin2.user_id, "admin")
        await o.group_mute(w.group, w.muted.user_id, int(time.time() * 1000) + 3_600_000)
        w.group_msg = (await o.send_group(w.group, "members only")).msg_id
        await w.removed.send_group(w.group, "before I go")
        await o.group_kick(w.group, w.removed.user_id)
        assert (await w.stranger.group_join(w.group, "please")).status == "pending"
        await o.friend_request(w.member.user_id)
        await w.member.friend_accept(o.user_id)
        w.private_msg = (await o.send(w.member.user_id, "between friends")).msg_id
        await w.blocker.block(w.blocked.user_id)
        w.own_group = (await w.blocked.group_create("mine")).group
        await o.pin_message(w.gconv, 1)  # message pins: one in each conversation
        await w.member.pin_message(w.conv(o, w.member), 1)
        w.group_file = await o.upload(w.gconv, b"members only", "text/plain")
        w.private_file = await o.upload(w.conv(o, w.member), b"between friends", "text/plain")
        w.owner_avatar = (await o.upload_avatar(b"\x89PNG", "image/png")).avatar
        deleted = Client(node.url)
        made.append(deleted)
        await deleted.connect()
        _, w.deleted_id = await new_user(deleted)
        await o.friend_request(w.deleted_id)
        await deleted.friend_accept(o.user_id)
        await deleted.send(o.user_id, "goodbye")
        await deleted.account_delete("secret-pw")
        yield w
    finally:
        for client in made:
            await client.close()


async def snapshot(w: World) -> dict[str, Any]:
    """Everything the rows could change, as the entitled users read it."""
    o, g = w.owner, w.group
    return {
        "info": await o.group_info(g),
        "members": await o.group_members(g),
        "group history": (await o.history(w.gconv)).msgs,
        "group reactions": (await o.history(w.gconv)).reactions,
        "friends' reactions": (await o.history(w.conv(o, w.member))).reactions,
        "join requests": (await o.group_join_requests(g)).requests,
        "friends' history": (await o.history(w.conv(o, w.member))).msgs,
        "stranger's history": (await o.history(w.conv(o, w.stranger))).msgs,
        "blocked history": (await w.blocker.history(w.conv(w.blocker, w.blocked))).msgs,
        "owner's list": await o.conversations(),
        "member's list": await w.member.conversations(),
        "blocker's list": await w.blocker.conversations(),
        "owner's friends": await o.friends(),
        "owner's requests": await o.friend_requests(),
        "blocker's requests": await w.blocker.friend_requests(),
        "own group": await w.blocked.group_members(w.own_group),
        "blocked's groups": await w.blocked.groups(),
        "removed's groups": await w.removed.groups(),
        "invitee's groups": await w.invitee.groups(),
        "invitee's invitations": await w.invitee.group_invitations(),
        "stranger's invitations": await w.stranger.group_invitations(),
        "invitee's settings": await w.invitee.settings(),
        # rich messaging: the settings are the only thing stored besides call records
        # (which land in the histories above)
        "owner's settings": await o.settings(),
        "blocker's settings": await w.blocker.settings(),
        # per-user views and message pins: the members' own views, the pins
        "member's group history": (await w.member.history(w.gconv)).msgs,
        "member's friends' history": (await w.member.history(w.conv(o, w.member))).msgs,
        "group pins": (await w.member.pins(w.gconv)).pins,
        "friends' pins": (await o.pins(w.conv(o, w.member))).pins,
        # files: still there, as their members see them
        "files": [(await o.file_download_grant(key)).size for key in (w.group_file, w.private_file)],
        # accounts and profiles
        "profiles": await o.users([c.user_id for c in (o, w.member, w.stranger)] + [w.deleted_id]),
        "deleted's history": (await o.history(w.conv(o, w.deleted_id))).msgs,
    }


async def on_a_call(w: World, attempt: Callable[[int], Awaitable[Any]]) -> Any:
    """``attempt(call)`` on a call the owner is ringing the member with (a refused request
    on a call stores nothing; the call rings on, unanswered, after the row)."""
    call = (await w.owner.call_invite(w.member.user_id, "audio", "v=0 offer")).call
    return await attempt(call)


Attempt = Callable[[World], Awaitable[Any]]
ROWS: list[tuple[str, Attempt, ErrorCode]] = [
    # strangers
    ("stranger SEND 1:1", lambda w: w.stranger.send(w.owner.user_id, "hi"), NOT_FRIENDS),
    ("stranger SYNC private", lambda w: w.stranger.sync(w.conv(w.owner, w.member)), FORBIDDEN),
    ("stranger HISTORY private", lambda w: w.stranger.history(w.conv(w.owner, w.member)), FORBIDDEN),
    ("stranger READ private", lambda w: w.stranger.read(w.conv(w.owner, w.member), 1), FORBIDDEN),
    ("stranger READERS private", lambda w: w.stranger.readers(w.conv(w.owner, w.member), 1), FORBIDDEN),
    ("stranger CONV_SET private", lambda w: w.stranger.conv_set(w.conv(w.owner, w.member), pinned=True), FORBIDDEN),
    ("stranger FRIEND_ACCEPT unasked", lambda w: w.stranger.friend_accept(w.owner.user_id), NOT_FOUND),
    ("stranger FRIEND_REMARK", lambda w: w.stranger.friend_remark(w.owner.user_id, "mine"), NOT_FRIENDS),
    ("stranger FRIEND_DELETE", lambda w: w.stranger.friend_delete(w.owner.user_id), NOT_FRIENDS),
    # non-members of the group (the stranger has a request pending)
    ("non-member SEND group", lambda w: w.stranger.send_group(w.group, "let me in"), FORBIDDEN),
    ("non-member SYNC group", lambda w: w.stranger.sync(w.gconv), FORBIDDEN),
    ("non-member HISTORY group", lambda w: w.stranger.history(w.gconv), FORBIDDEN),
    ("non-member READ group", lambda w: w.stranger.read(w.gconv, 1), FORBIDDEN),
    ("non-member READERS group", lambda w: w.stranger.readers(w.gconv, 1), FORBIDDEN),
    ("non-member GROUP_MEMBERS", lambda w: w.stranger.group_members_page(w.group), FORBIDDEN),
    ("non-member GROUP_INVITE", lambda w: w.stranger.group_invite(w.group, [w.stranger.user_id]), FORBIDDEN),
    ("non-member GROUP_APPROVE self", lambda w: w.stranger.group_approve(w.group, w.stranger.user_id), FORBIDDEN),
    ("non-member GROUP_KICK", lambda w: w.stranger.group_kick(w.group, w.member.user_id), FORBIDDEN),
    ("non-member GROUP_QUIT", lambda w: w.stranger.group_quit(w.group), FORBIDDEN),
    ("non-member GROUP_UPDATE", lambda w: w.stranger.group_update(w.group, name="mine"), FORBIDDEN),
    ("non-member GROUP_JOIN_REQUESTS", lambda w: w.stranger.group_join_requests(w.group), FORBIDDEN),
    ("non-member GROUP_MUTE_ALL", lambda w: w.stranger.group_mute_all(w.group, True), FORBIDDEN),
    ("non-member GROUP_DISSOLVE", lambda w: w.stranger.group_dissolve(w.group), FORBIDDEN),
    # a removed (kicked) member
    ("removed SEND group", lambda w: w.removed.send_group(w.group, "still here?"), FORBIDDEN),
    ("removed SYNC group", lambda w: w.removed.sync(w.gconv), FORBIDDEN),
    ("removed HISTORY group", lambda w: w.removed.history(w.gconv), FORBIDDEN),
    ("removed READ group", lambda w: w.removed.read(w.gconv, 1), FORBIDDEN),
    ("removed CONV_SET group", lambda w: w.removed.conv_set(w.gconv, pinned=True), FORBIDDEN),
    ("removed GROUP_MEMBERS", lambda w: w.removed.group_members_page(w.group), FORBIDDEN),
    ("removed GROUP_QUIT", lambda w: w.removed.group_quit(w.group), FORBIDDEN),
    ("removed GROUP_INVITE", lambda w: w.removed.group_invite(w.group, [w.removed.user_id]), FORBIDDEN),
    ("removed READERS group", lambda w: w.removed.readers(w.gconv, 1), FORBIDDEN),
    # a blocked user
    ("blocked SEND 1:1", lambda w: w.blocked.send(w.blocker.user_id, "hi"), BLOCKED),
    ("blocked FRIEND_REQUEST", lambda w: w.blocked.friend_request(w.blocker.user_id, "hi"), BLOCKED),
    ("blocked GROUP_INVITE", lambda w: w.blocked.group_invite(w.own_group, [w.blocker.user_id]), BLOCKED),
    ("blocked GROUP_CREATE with", lambda w: w.blocked.group_create("trap", [w.blocker.user_id]), BLOCKED),
    # a muted member
    ("muted SEND group", lambda w: w.muted.send_group(w.group, "hear me"), MUTED),
    # a member acting as an admin
    ("member GROUP_INVITE (approval)", lambda w: w.member.group_invite(w.group, [w.stranger.user_id]), FORBIDDEN),
    ("member GROUP_JOIN_REQUESTS", lambda w: w.member.group_join_requests(w.group), FORBIDDEN),
    ("member GROUP_APPROVE", lambda w: w.member.group_approve(w.group, w.stranger.user_id), FORBIDDEN),
    ("member GROUP_KICK", lambda w: w.member.group_kick(w.group, w.muted.user_id), FORBIDDEN),
    ("member GROUP_MUTE", lambda w: w.member.group_mute(w.group, w.admin.user_id, 0), FORBIDDEN),
    ("member GROUP_UNMUTE other", lambda w: w.member.group_mute(w.group, w.muted.user_id, 0), FORBIDDEN),
    ("member GROUP_MUTE_ALL", lambda w: w.member.group_mute_all(w.group, True), FORBIDDEN),
    ("member GROUP_UPDATE", lambda w: w.member.group_update(w.group, notice="mine now"), FORBIDDEN),
    ("muted GROUP_MUTE self off", lambda w: w.muted.group_mute(w.group, w.muted.user_id, 0), FORBIDDEN),
    # an admin acting as the owner (or on the owner)
    ("admin GROUP_DISSOLVE", lambda w: w.admin.group_dissolve(w.group), FORBIDDEN),
    ("admin GROUP_SET_ROLE", lambda w: w.admin.group_set_role(w.group, w.member.user_id, "admin"), FORBIDDEN),
    ("admin GROUP_TRANSFER", lambda w: w.admin.group_transfer(w.group, w.admin.user_id), FORBIDDEN),
    ("admin GROUP_UPDATE join_mode", lambda w: w.admin.group_update(w.group, join_mode="open"), FORBIDDEN),
    ("admin GROUP_KICK owner", lambda w: w.admin.group_kick(w.group, w.owner.user_id), FORBIDDEN),
    ("admin GROUP_MUTE owner", lambda w: w.admin.group_mute(w.group, w.owner.user_id, 1), FORBIDDEN),
    # an admin acting on an equal
    ("admin GROUP_KICK admin", lambda w: w.admin.group_kick(w.group, w.admin2.user_id), FORBIDDEN),
    ("admin GROUP_MUTE admin", lambda w: w.admin.group_mute(w.group, w.admin2.user_id, 1), FORBIDDEN),
    # the owner
    ("owner GROUP_QUIT", lambda w: w.owner.group_quit(w.group), FORBIDDEN),
    # group invitations: only the invitee answers theirs, and an invitee is no member yet
    ("stranger GROUP_INVITATION_ACCEPT another's", lambda w: w.stranger.group_invitation_accept(w.group), NOT_FOUND),
    ("stranger GROUP_INVITATION_DECLINE another's", lambda w: w.stranger.group_invitation_decline(w.group), NOT_FOUND),
    ("removed GROUP_INVITATION_ACCEPT", lambda w: w.removed.group_invitation_accept(w.group), NOT_FOUND),
    ("owner GROUP_INVITATION_ACCEPT own group", lambda w: w.owner.group_invitation_accept(w.group), CONFLICT),
    ("inviter GROUP_INVITATION_DECLINE for the invitee", lambda w: w.owner.group_invitation_decline(w.group),
     NOT_FOUND),
    ("invitee GROUP_INVITATION_ACCEPT another group", lambda w: w.invitee.group_invitation_accept(w.own_group),
     NOT_FOUND),
    ("invitee SEND group", lambda w: w.invitee.send_group(w.group, "am I in?"), FORBIDDEN),
    ("invitee SYNC group", lambda w: w.invitee.sync(w.gconv), FORBIDDEN),
    ("invitee GROUP_MEMBERS", lambda w: w.invitee.group_members_page(w.group), FORBIDDEN),
    ("invitee GROUP_INVITE", lambda w: w.invitee.group_invite(w.group, [w.stranger.user_id]), FORBIDDEN),
    ("blocked GROUP_CREATE with, friends only", lambda w: w.blocked.group_create("trap", [w.blocker.user_id,
                                                                                       w.invitee.user_id]), BLOCKED),
    # recall, mentions and search
    ("stranger RECALL private", lambda w: w.stranger.recall(w.conv(w.owner, w.member), 1), FORBIDDEN),
    ("non-member RECALL group", lambda w: w.stranger.recall(w.gconv, 1), FORBIDDEN),
    ("removed RECALL group", lambda w: w.removed.recall(w.gconv, 1), FORBIDDEN),
    ("member RECALL another's", lambda w: w.member.recall(w.gconv, 1), FORBIDDEN),
    ("admin RECALL owner's", lambda w: w.admin.recall(w.gconv, 1), FORBIDDEN),
    ("peer RECALL sender's private", lambda w: w.member.recall(w.conv(w.owner, w.member), 1), FORBIDDEN),
    ("member SEND mention_all", lambda w: w.member.send_group(w.group, "all of you", mention_all=True), FORBIDDEN),
    ("stranger SEARCH private", lambda w: w.stranger.search("between", w.conv(w.owner, w.member)), FORBIDDEN),
    ("non-member SEARCH group", lambda w: w.stranger.search("members", w.gconv), FORBIDDEN),
    ("removed SEARCH group", lambda w: w.removed.search("members", w.gconv), FORBIDDEN),
    # edits and replies
    ("stranger EDIT private", lambda w: w.stranger.edit(w.conv(w.owner, w.member), 1, "mine"), FORBIDDEN),
    ("peer EDIT sender's private", lambda w: w.member.edit(w.conv(w.owner, w.member), 1, "mine"), FORBIDDEN),
    ("non-member EDIT group", lambda w: w.stranger.edit(w.gconv, 1, "mine"), FORBIDDEN),
    ("member EDIT another's", lambda w: w.member.edit(w.gconv, 1, "mine"), FORBIDDEN),
    ("admin EDIT owner's", lambda w: w.admin.edit(w.gconv, 1, "mine"), FORBIDDEN),
    ("removed EDIT own group message", lambda w: w.removed.edit(w.gconv, 2, "after all"), FORBIDDEN),
    ("member SEND 1:1 quoting the group", lambda w: w.member.send(w.owner.user_id, "re", reply_to=w.group_msg),
     REPLY_NOT_FOUND),
    ("member SEND group quoting 1:1", lambda w: w.member.send_group(w.group, "re", reply_to=w.private_msg),
     REPLY_NOT_FOUND),
    ("admin SEND group quoting others' 1:1", lambda w: w.admin.send_group(w.group, "re", reply_to=w.private_msg),
     REPLY_NOT_FOUND),
    ("removed SEND group quoting", lambda w: w.removed.send_group(w.group, "re", reply_to=w.group_msg), FORBIDDEN),
    # rich messaging: calls (someone else's call is not found: whose calls exist is not told)
    ("stranger CALL_INVITE", lambda w: w.stranger.call_invite(w.owner.user_id, "audio", "v=0"), NOT_FRIENDS),
    ("blocked CALL_INVITE", lambda w: w.blocked.call_invite(w.blocker.user_id, "video", "v=0"), BLOCKED),
    ("stranger CALL_ACCEPT", lambda w: on_a_call(w, lambda c: w.stranger.call_accept(c, "v=0")), NOT_FOUND),
    ("stranger CALL_REJECT", lambda w: on_a_call(w, lambda c: w.stranger.call_reject(c)), NOT_FOUND),
    ("stranger CALL_CANCEL", lambda w: on_a_call(w, lambda c: w.stranger.call_cancel(c)), NOT_FOUND),
    ("stranger CALL_HANGUP", lambda w: on_a_call(w, lambda c: w.stranger.call_hangup(c)), NOT_FOUND),
    ("stranger CALL_ICE", lambda w: on_a_call(w, lambda c: w.stranger.call_ice(c, "candidate:1")), NOT_FOUND),
    ("caller CALL_ACCEPT own call", lambda w: on_a_call(w, lambda c: w.owner.call_accept(c, "v=0")), FORBIDDEN),
    ("caller CALL_REJECT own call", lambda w: on_a_call(w, lambda c: w.owner.call_reject(c)), FORBIDDEN),
    ("callee CALL_CANCEL", lambda w: on_a_call(w, lambda c: w.member.call_cancel(c)), FORBIDDEN),
    # typing
    ("stranger TYPING private", lambda w: w.stranger.typing(w.conv(w.owner, w.member)), FORBIDDEN),
    ("stranger TYPING 1:1", lambda w: w.stranger.typing(w.conv(w.stranger, w.owner)), NOT_FRIENDS),
    ("blocked TYPING 1:1", lambda w: w.blocked.typing(w.conv(w.blocked, w.blocker)), BLOCKED),
    ("non-member TYPING group", lambda w: w.stranger.typing(w.gconv), FORBIDDEN),
    ("removed TYPING group", lambda w: w.removed.typing(w.gconv), FORBIDDEN),
    ("muted TYPING group", lambda w: w.muted.typing(w.gconv), MUTED),
    # presence (SETTINGS only ever acts on the caller's own settings: no row)
    ("stranger PRESENCE", lambda w: w.stranger.presence([w.owner.user_id]), NOT_FRIENDS),
    ("stranger PRESENCE_SUBSCRIBE", lambda w: w.stranger.presence_subscribe([w.owner.user_id]), NOT_FRIENDS),
    ("blocked PRESENCE", lambda w: w.blocked.presence([w.blocker.user_id]), BLOCKED),
    ("blocked PRESENCE_SUBSCRIBE", lambda w: w.blocked.presence_subscribe([w.blocker.user_id]), BLOCKED),
    # files: grants only for the conversation the file is (to be) in
    ("stranger FILE_UPLOAD private", lambda w: w.stranger.file_upload_grant(w.conv(w.owner, w.member), "x.txt", 1,
                                                                          "text/plain"), FORBIDDEN),
    ("non-member FILE_UPLOAD group", lambda w: w.stranger.file_upload_grant(w.gconv, "x.txt", 1, "text/plain"),
     FORBIDDEN),
    ("removed FILE_UPLOAD group", lambda w: w.removed.file_upload_grant(w.gconv, "x.txt", 1, "text/plain"), FORBIDDEN),
    ("stranger FILE_DOWNLOAD private", lambda w: w.stranger.file_download_grant(w.private_file), FORBIDDEN),
    ("non-member FILE_DOWNLOAD group", lambda w: w.stranger.file_download_grant(w.group_file), FORBIDDEN),
    ("removed FILE_DOWNLOAD group", lambda w: w.removed.file_download_grant(w.group_file), FORBIDDEN),
    ("stranger FILE_UPLOAD another's avatar space", lambda w: w.stranger.file_upload_grant(
        f"a{w.owner.user_id}", "x.png", 1, "image/png"), FORBIDDEN),
    # accounts and profiles: a wrong password changes nothing; a deleted user is nobody
    ("member PASSWORD_CHANGE wrong old", lambda w: w.member.password_change("wrong-pw", "new-secret"),
     BAD_CREDENTIALS),
    ("member ACCOUNT_DELETE wrong password", lambda w: w.member.account_delete("wrong-pw"), BAD_CREDENTIALS),
    ("stranger PROFILE_SET another's avatar file", lambda w: w.stranger.profile_set(avatar=w.owner_avatar),
     INVALID_ARGUMENT),
    ("stranger FRIEND_REQUEST deleted", lambda w: w.stranger.friend_request(w.deleted_id), USER_NOT_FOUND),
    ("owner GROUP_INVITE deleted", lambda w: w.owner.group_invite(w.group, [w.deleted_id]), USER_NOT_FOUND),
    ("owner GROUP_CREATE with deleted", lambda w: w.owner.group_create("ghosts", [w.deleted_id]), USER_NOT_FOUND),
    ("owner SEND deleted ex-friend", lambda w: w.owner.send(w.deleted_id, "still there?"), USER_NOT_FOUND),
    ("owner BLOCK deleted", lambda w: w.owner.block(w.deleted_id), USER_NOT_FOUND),
    # reactions: only in a conversation one reads (and not to one who blocked you)
    ("stranger REACT private", lambda w: w.stranger.react(w.conv(w.owner, w.member), 1, "\U0001f44d"), FORBIDDEN),
    ("non-member REACT group", lambda w: w.stranger.react(w.gconv, 1, "\U0001f44d"), FORBIDDEN),
    ("removed REACT group", lambda w: w.removed.react(w.gconv, 1, "\U0001f44d"), FORBIDDEN),
    ("removed UNREACT group", lambda w: w.removed.unreact(w.gconv, 1, "\U0001f44d"), FORBIDDEN),
    ("blocked REACT 1:1", lambda w: w.blocked.react(w.conv(w.blocked, w.blocker), 1, "\U0001f44d"), BLOCKED),
    # forwards: from a conversation one reads, into one one may write to (SEND's rules)
    ("stranger FORWARD from private", lambda w: w.stranger.forward(w.owner.user_id, w.conv(w.owner, w.member), [1]),
     FORBIDDEN),
    ("non-member FORWARD from group", lambda w: w.stranger.forward(w.owner.user_id, w.gconv, [1]), FORBIDDEN),
    ("removed FORWARD from group", lambda w: w.removed.forward(w.group, w.gconv, [1], group=True), FORBIDDEN),
    ("member FORWARD into another's group", lambda w: w.member.forward(w.own_group, w.gconv, [1], group=True),
     FORBIDDEN),
    ("member FORWARD to a stranger", lambda w: w.member.forward(w.stranger.user_id, w.gconv, [1]), NOT_FRIENDS),
    ("muted FORWARD into group", lambda w: w.muted.forward(w.group, w.gconv, [1], group=True), MUTED),
    # per-user views: only of a conversation one is in
    ("stranger DELETE_FOR_ME private", lambda w: w.stranger.delete_for_me(w.conv(w.owner, w.member), [1]), FORBIDDEN),
    ("non-member DELETE_FOR_ME group", lambda w: w.stranger.delete_for_me(w.gconv, [1]), FORBIDDEN),
    ("removed DELETE_FOR_ME group", lambda w: w.removed.delete_for_me(w.gconv, [1]), FORBIDDEN),
    ("stranger CLEAR_HISTORY private", lambda w: w.stranger.clear_history(w.conv(w.owner, w.member)), FORBIDDEN),
    ("non-member CLEAR_HISTORY group", lambda w: w.stranger.clear_history(w.gconv), FORBIDDEN),
    ("removed CLEAR_HISTORY group", lambda w: w.removed.clear_history(w.gconv), FORBIDDEN),
    # message pins: a group's owner and admins, either user of a private conversation
    ("member PIN_MESSAGE group", lambda w: w.member.pin_message(w.gconv, 1), FORBIDDEN),
    ("member UNPIN_MESSAGE group", lambda w: w.member.unpin_message(w.gconv, 1), FORBIDDEN),
    ("muted PIN_MESSAGE group", lambda w: w.muted.pin_message(w.gconv, 1), FORBIDDEN),
    ("non-member PIN_MESSAGE group", lambda w: w.stranger.pin_message(w.gconv, 1), FORBIDDEN),
    ("non-member UNPIN_MESSAGE group", lambda w: w.stranger.unpin_message(w.gconv, 1), FORBIDDEN),
    ("non-member PINS group", lambda w: w.stranger.pins(w.gconv), FORBIDDEN),
    ("removed PIN_MESSAGE group", lambda w: w.removed.pin_message(w.gconv, 1), FORBIDDEN),
    ("removed PINS group", lambda w: w.removed.pins(w.gconv), FORBIDDEN),
    ("stranger PIN_MESSAGE private", lambda w: w.stranger.pin_message(w.conv(w.owner, w.member), 1), FORBIDDEN),
    ("stranger UNPIN_MESSAGE private", lambda w: w.stranger.unpin_message(w.conv(w.owner, w.member), 1), FORBIDDEN),
    ("stranger PINS private", lambda w: w.stranger.pins(w.conv(w.owner, w.member)), FORBIDDEN),
]


@pytest.mark.parametrize("attempt, code", [row[1:] for row in ROWS], ids=[row[0] for row in ROWS])
async def test_refused_and_nothing_changes(world: World, attempt: Attempt, code: ErrorCode) -> None:
    before = await snapshot(world)

    with pytest.raises(ServerError) as err:
        await attempt(world)

    assert err.value.code == code, err.value
    after = await snapshot(world)
    assert after == before
