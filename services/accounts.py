"""Accounts and profiles: a user changes their profile (nickname, avatar, bio) or password,
or deletes their account; an operator deletes one (the admin API, ``im user delete``).

- **Profiles.** The change is durable, then the node's copy is replaced, every other node
  forgets its own (``Delivery.forget_profiles``), and PROFILE_PUSH goes to the user's
  friends, the members of their groups and their own other devices: one frame per device,
  however many ways a device's user knows them (``Delivery.to_users`` of one set).
- **Passwords.** The old one is checked as a LOGIN checks it; the new hash and a new
  credential epoch are durable before the reply, so TOKEN_LOGIN refuses every earlier
  token; the account's other sessions, on every node, get KICKED ("password_changed")
  and close 4001; the caller's session stays, with a fresh token.
- **Deletion.** The account's groups are left first (an owned group handed over or
  dissolved: ``Groups.leave_for_good``); then one store change drops the rest of its graph
  and keeps the row as a deleted user (the id and username are never reused); friends
  get FRIEND_PUSH "deleted", everyone who saw the profile PROFILE_PUSH with ``deleted``;
  every session closes (KICKED "account_deleted", 4001). Messages stay in the other
  party's copy of each conversation, unless the node erases them (``erase``).

Each profile and password change is charged to the account's budget (per node, kept
across reconnects), as the other storing operations are.
"""
from __future__ import annotations

import time
from typing import Awaitable, Callable, Iterable

import msgspec

from ..backends.protocols import DeleteAccount, NodeId, Routes, SetProfile, Store, User, UserId
from ..core_ext import bodies
from ..core_ext.codec import encode_frame
from ..core_ext.errors import AuthError, RequestError
from ..core_ext.protocol import ErrorCode, Op
from .auth import AuthService, Identity
from .conversations import is_group, parse_conv
from .delivery import Delivery
from .groups import Groups
from .quota import UserBuckets
from .state import State
from .users import Users, profile_of

__all__ = ["Accounts", "Deleted", "check_avatar_url"]

#: KICKED reasons of the sessions an account change closes
PASSWORD_CHANGED = "password_changed"
ACCOUNT_DELETED = "account_deleted"


class Deleted(msgspec.Struct, frozen=True):
    """What a deletion did (the admin API answers it)."""

    user: UserId
    username: str
    groups: dict[str, str]  # group id -> "left" | "handed_over" | "dissolved"
    friends: int  # friendships removed
    erased: int  # messages whose content was erased
    closed: int  # sessions closed


def check_avatar_url(url: str) -> None:
    """An avatar URL must be https with a host, and plain printable ASCII (no spaces, no
    quotes or angle brackets: it goes into clients' markup)."""
    from urllib.parse import urlsplit

    if not url.isascii() or any(c in url for c in ' "<>\\\'`') or not url.isprintable():
        raise RequestError("avatar: a URL is printable ASCII without spaces or quotes", ErrorCode.INVALID_ARGUMENT)
    try:
        parts = urlsplit(url)
    except ValueError:
        raise RequestError("avatar: not a URL", ErrorCode.INVALID_ARGUMENT) from None
    if parts.scheme != "https" or not parts.hostname or parts.username or parts.password:
        raise RequestError("avatar: a URL must be https://host/... (no user or password)", ErrorCode.INVALID_ARGUMENT)


class Accounts:
    def __init__(self, node: NodeId, store: Store, state: State, users: Users, auth: AuthService, groups: Groups,
                 routes: Routes, delivery: Delivery, avatar_file: Callable[[UserId, str], Awaitable[None]] | None,
                 profile_changes_per_hour: int, password_changes_per_hour: int, bio_max: int, erase: bool,
                 nickname_max: int = 64, clock: Callable[[], float] = time.monotonic) -> None:
        self._node = node
        self._store = store
        self._state = state
        self._users = users
        self._auth = auth
        self._groups = groups
        self._routes = routes
        self._delivery = delivery
        self._avatar_file = avatar_file
        self.bio_max = bio_max
        self.nickname_max = nickname_max
        self.erase = erase
        self._profiles = UserBuckets(profile_changes_per_hour / 3600.0, float(profile_changes_per_hour),
                                     f"{profile_changes_per_hour} profile changes an hour", clock)
        self._passwords = UserBuckets(password_changes_per_hour / 3600.0, float(password_changes_per_hour),
                                      f"{password_changes_per_hour} password changes an hour", clock)

    def forget(self, user: UserId) -> None:
        """The user has no session here any more (a spent budget is kept until refilled)."""
        self._profiles.forget(user)
        self._passwords.forget(user)

    # -- profiles ---------------------------------------------------------------------------------

    async def set_profile(self, user_id: UserId, terminal: str, req: bodies.ProfileSet) -> bodies.UserProfile:
        self._profiles.charge(user_id)  # RATE_LIMITED past the account's budget
        async with self._state.lock(("account", user_id)):
            current = await self._live(user_id)
            nickname = current.nickname if req.nickname is None else req.nickname.strip()
            avatar = current.avatar if req.avatar is None else req.avatar
            bio = current.bio if req.bio is None else req.bio
            if not nickname or not nickname.isprintable():
                raise RequestError("nickname: printable characters, not only spaces", ErrorCode.INVALID_ARGUMENT)
            if len(nickname) > self.nickname_max:
                raise RequestError(f"nickname: at most {self.nickname_max} characters", ErrorCode.INVALID_ARGUMENT)
            if len(bio) > self.bio_max:
                raise RequestError(f"bio: at most {self.bio_max} characters", ErrorCode.INVALID_ARGUMENT)
            if avatar != current.avatar and avatar:
                await self._check_avatar(user_id, avatar)
            await self._store.apply(SetProfile(user_id, nickname, avatar, bio))
            profile = self._users.changed(msgspec.structs.replace(current, nickname=nickname, avatar=avatar, bio=bio))
            audience = await self._audience(user_id)
            self._delivery.forget_profiles((user_id,))  # ahead of the push: other nodes read it anew
            self._push_profile(profile, audience, terminal)
        return profile

    async def _check_avatar(self, user_id: UserId, avatar: str) -> None:
        if avatar.startswith("https://"):
            check_avatar_url(avatar)
        elif "/" in avatar and not avatar.startswith(("http:", "//")):
            if self._avatar_file is None:
                raise RequestError("avatar: this node keeps no files; use an https URL", ErrorCode.INVALID_ARGUMENT)
            await self._avatar_file(user_id, avatar)
        else:
            raise RequestError("avatar: a file key of your avatar space or an https:// URL", ErrorCode.INVALID_ARGUMENT)

    async def _audience(self, user_id: UserId, extra: Iterable[UserId] = ()) -> set[UserId]:
        """Who sees the user's profile change: their friends, the members of their groups,
        themselves (their other devices), and ``extra``."""
        user = self._state.users.get(user_id)
        records = None if user is not None else await self._store.load_user(user_id)
        friends = user.friends if user is not None else [f.user for f in records.friends]  # type: ignore[union-attr]
        convs = user.convs if user is not None else [c.conv for c in records.convs]  # type: ignore[union-attr]
        audience = {user_id, *friends, *extra}
        for conv in convs:
            if is_group(conv):
                group = await self._state.group(parse_conv(conv)[1])
                if group is not None:
                    audience.update(group.members)
        return audience

    def _push_profile(self, profile: bodies.UserProfile, audience: Iterable[UserId], skip_terminal: str) -> None:
        frame = encode_frame(Op.PROFILE_PUSH, 0, profile.user, bodies.encode(profile))
        self._delivery.to_users(frame, sorted(audience), skip_user=UserId(profile.user), skip_terminal=skip_terminal)

    # -- passwords --------------------------------------------------------------------------------

    async def change_password(self, identity: Identity, terminal: str, old: str, new: str, address: str,
                              wanted: Callable[[], bool]) -> tuple[Identity, int]:
        """The new identity of the caller's session, and how many other sessions were closed."""
        user_id = identity.user_id
        self._passwords.charge(user_id)
        async with self._state.lock(("account", user_id)):
            fresh = await self._auth.change_password(user_id, old, new, address, wanted)
            closed = await self.close_sessions(user_id, PASSWORD_CHANGED, keep=terminal)
        return fresh, closed

    async def close_sessions(self, user_id: UserId, reason: str, keep: str = "") -> int:
        """Close the account's sessions on every node (KICKED ``reason``, then 4001) but the
        one of terminal ``keep`` on this node; returns how many."""
        closed = 0
        for route in await self._routes.lookup([user_id]):
            if keep and route.node == self._node and route.terminal == keep:
                continue
            frame = encode_frame(Op.KICKED, 0, user_id, bodies.encode(bodies.Kicked(reason=reason,
                                                                                    terminal=route.terminal)))
            await self._delivery.kick(route.node, frame, user_id, route.terminal)
            closed += 1
        return closed

    # -- deletion ---------------------------------------------------------------------------------

    async def delete_own(self, user_id: UserId, password: str, terminal: str, address: str,
                         wanted: Callable[[], bool]) -> Deleted:
        """The user deletes their own account, password checked (nothing changes when it is
        wrong). The caller's session is left for the caller to close after its reply."""
        await self._auth.check_password(user_id, password, address, wanted)
        return await self.delete(user_id, keep=terminal)

    async def delete(self, user_id: UserId, keep: str = "") -> Deleted:
        """Delete the account (see the module docstring); NOT_FOUND if there is none,
        ACCOUNT_DELETED if it is deleted already."""
        async with self._state.lock(("account", user_id)):
            user = await self._store.get_user(user_id)
            if user is None:
                raise RequestError(f"no user {user_id}", ErrorCode.NOT_FOUND)
            if user.deleted:
                raise AuthError("this account was deleted already", ErrorCode.ACCOUNT_DELETED)
            records = await self._store.load_user(user_id)
            group_ids = [parse_conv(c.conv)[1] for c in records.convs if is_group(c.conv)]
            # groups read here only for this (no member online here): not kept, since this
            # node would not hear of their later changes
            passing = {g for g in group_ids if g not in self._state.groups}
            friends = [f.user for f in records.friends]
            others = {*friends, *(r.sender for r in records.requests_in), *(r.receiver for r in records.requests_out),
                      *records.blocked, *records.blocked_by}
            audience = await self._audience(user_id, friends)
            outcomes: dict[str, str] = {}
            for group_id in group_ids:
                group = await self._state.group(group_id)
                if group is not None and not group.dissolved:
                    outcome = await self._groups.leave_for_good(group, user_id)
                    if outcome:
                        outcomes[str(group_id)] = outcome
            now = int(time.time() * 1000)
            erased = await self._store.apply(DeleteAccount(user_id, now, erase=self.erase))
            gone = msgspec.structs.replace(user, password_hash="", nickname="", avatar="", bio="",
                                           epoch=user.epoch + 1, deleted_at=now)
            profile = self._users.changed(gone)
            self._forget_in_memory(user_id, others)
            if erased:
                self.erased_heads(user_id, now)
            # ahead of the pushes: other nodes reload the users and forget the profile
            self._delivery.refresh(users=sorted(others | {user_id}))
            self._delivery.forget_profiles((user_id,), erased=bool(erased))
            for friend in friends:
                body = bodies.encode(bodies.FriendEvent(event="deleted", user=user_id, message="", ts=now))
                self._delivery.to_users(encode_frame(Op.FRIEND_PUSH, 0, friend, body), (friend,))
            self._push_profile(profile, audience - {user_id}, "")
            closed = await self.close_sessions(user_id, ACCOUNT_DELETED, keep=keep)
            for group_id in passing:
                if group_id in self._state.groups:
                    self._state.forget_group(group_id)
        return Deleted(user_id, user.username, outcomes, len(friends), erased, closed)

    def _forget_in_memory(self, user_id: UserId, others: Iterable[UserId]) -> None:
        """The users loaded here lose the deleted account from their friends, requests and blocks."""
        for other in others:
            self._state.touch_user(other)
            state = self._state.users.get(other)
            if state is None:
                continue
            state.friends.pop(user_id, None)
            state.requests_in.pop(user_id, None)
            state.requests_out.pop(user_id, None)
            state.blocked.discard(user_id)
            state.blocked_by.discard(user_id)
            state.changed(convs=False)
        self._state.touch_user(user_id)
        mine = self._state.users.get(user_id)
        if mine is not None:
            mine.friends.clear()
            mine.requests_in.clear()
            mine.requests_out.clear()
            mine.blocked.clear()
            mine.blocked_by.clear()
            mine.changed(convs=False)

    def erased_heads(self, user_id: UserId, at: int) -> None:
        """The conversation heads in memory that ``user_id`` sent become tombstones (their
        account was deleted with its messages erased)."""
        for head in [h for h in self._state.heads.values() if h.sender == user_id and not h.recalled_by]:
            self._state.replace_head(msgspec.structs.replace(head, content="", mentions="", recalled_by=user_id,
                                                             recalled_at=at))

    async def _live(self, user_id: UserId) -> User:
        user = await self._store.get_user(user_id)
        if user is None or user.deleted:
            raise AuthError("this account was deleted", ErrorCode.ACCOUNT_DELETED)
        return user
