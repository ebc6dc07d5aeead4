"""Friends and blocks: requests, accept, reject, delete, remarks, block and unblock, and
the lists, answered from memory. Every change is durable before memory and pushes follow."""
from __future__ import annotations

import asyncio
import bisect
import itertools
import time
from typing import Awaitable, Callable, Iterator

from ..backends.protocols import (
    DropFriendRequest, DropFriendship, Friend, FriendRequest, PutFriendRequest, PutFriendship, SetBlock, SetRemark,
    Store, UserId,
)
from ..core_ext import bodies
from ..core_ext.codec import encode_frame
from ..core_ext.errors import RequestError
from ..core_ext.protocol import ErrorCode, Op
from .pages import fit
from .state import State, UserState

__all__ = ["Social"]

Notify = Callable[[bytes, tuple[UserId, ...], UserId, str], None]


class Social:
    def __init__(self, store: Store, state: State, notify: Notify, user_exists: Callable[[UserId], Awaitable[bool]],
                 refresh: Callable[..., None]) -> None:
        self._store = store
        self._state = state
        self._notify = notify
        self._user_exists = user_exists
        # refresh(users=...): other nodes holding these users reload them
        self._refresh = refresh

    # -- lists (memory only) --------------------------------------------------------------------

    def friends_page(self, user: UserState, after: int, limit: int) -> bytes:
        key = ("friends", after, limit)
        cached = user.cached(key, user.version)
        if cached is not None:
            return cached
        ids = sorted(user.friends)
        shown, more = fit((bodies.encode(bodies.FriendInfo(user=f, remark=user.friends[f].remark,
                                                           since=user.friends[f].since))
                           for f in _from(ids, after)), limit)
        body = bodies.encode(bodies.FriendList(friends=shown, has_more=more))  # type: ignore[arg-type]
        return user.keep(key, user.version, body)

    def requests_page(self, user: UserState, after: int, limit: int) -> bytes:
        requests = user.requests_in
        shown, more = fit((bodies.encode(bodies.FriendRequestInfo(user=u, message=requests[u].message,
                                                                  ts=requests[u].ts))
                           for u in _from(sorted(requests), after)), limit)
        return bodies.encode(bodies.FriendRequestList(requests=shown, has_more=more))  # type: ignore[arg-type]

    def blocks_page(self, user: UserState, after: int, limit: int) -> bytes:
        """The users ``user`` blocked, ascending by id, after ``after``."""
        shown, more = fit((bodies.encode(u) for u in _from(sorted(user.blocked), after)), limit)  # type: ignore[arg-type]
        return bodies.encode(bodies.BlockList(users=shown, has_more=more))  # type: ignore[arg-type]

    # -- changes: those between two users run one at a time on this node -------------------

    async def request(self, user: UserState, other: UserId, message: str) -> None:
        """Ask ``other`` to be friends. If ``other`` already asked this user, they become
        friends at once (both asked)."""
        async with self._pair(user.id, other):
            await self._request(user, other, message)

    async def reject(self, user: UserState, other: UserId) -> None:
        async with self._pair(user.id, other):
            await self._reject(user, other)

    async def delete(self, user: UserState, other: UserId) -> None:
        async with self._pair(user.id, other):
            await self._delete(user, other)

    async def remark(self, user: UserState, other: UserId, remark: str) -> None:
        async with self._pair(user.id, other):
            await self._remark(user, other, remark)

    async def block(self, user: UserState, other: UserId, blocked: bool) -> None:
        """Block (or unblock) ``other``: a blocked user's messages, friend requests and
        invitations to this user are refused with BLOCKED. Friendship is kept. Idempotent."""
        async with self._pair(user.id, other):
            await self._block(user, other, blocked)

    def _pair(self, a: UserId, b: UserId) -> asyncio.Lock:
        # one lock for both directions: A asking B and B asking A at once are one after the other
        return self._state.lock(("pair", min(a, b), max(a, b)))

    async def _request(self, user: UserState, other: UserId, message: str) -> None:
        await self._check_other(user, other)
        if other in user.friends:
            raise RequestError("already friends", ErrorCode.CONFLICT)
        if other in user.blocked_by:
            raise RequestError("this user blocked you", ErrorCode.BLOCKED)
        if other in user.requests_in:
            await self._accept(user, other)
            return
        now = _now()
        await self._store.apply(PutFriendRequest(user.id, other, message, now))
        request = FriendRequest(user.id, other, message, now)
        user.requests_out[other] = request
        user.changed(convs=False)
        peer = self._loaded(other)
        if peer is not None:
            peer.requests_in[user.id] = request
            peer.changed(convs=False)
        self._event("request", other, user.id, message, now)

    async def accept(self, user: UserState, other: UserId) -> None:
        async with self._pair(user.id, other):
            await self._accept(user, other)

    async def _accept(self, user: UserState, other: UserId) -> None:
        if other not in user.requests_in:
            raise RequestError(f"no friend request from {other}", ErrorCode.NOT_FOUND)
        now = _now()
        await self._store.apply(PutFriendship(user.id, other, now))
        peer = self._loaded(other)
        for me, them in ((user, other), (peer, user.id)):
            if me is None:
                continue
            me.friends[them] = _friend(them, now)
            me.requests_in.pop(them, None)
            me.requests_out.pop(them, None)
            me.changed(convs=False)
        self._event("accepted", other, user.id, "", now)

    async def _reject(self, user: UserState, other: UserId) -> None:
        if other not in user.requests_in:
            raise RequestError(f"no friend request from {other}", ErrorCode.NOT_FOUND)
        await self._store.apply(DropFriendRequest(other, user.id))
        self._refresh(users=(user.id, other))
        user.requests_in.pop(other, None)
        user.changed(convs=False)
        peer = self._loaded(other)
        if peer is not None:
            peer.requests_out.pop(user.id, None)
            peer.changed(convs=False)

    async def _delete(self, user: UserState, other: UserId) -> None:
        if other not in user.friends:
            raise RequestError(f"{other} is not your friend", ErrorCode.NOT_FRIENDS)
        await self._store.apply(DropFriendship(user.id, other))
        peer = self._loaded(other)
        for me, them in ((user, other), (peer, user.id)):
            if me is not None:
                me.friends.pop(them, None)
                me.changed(convs=False)
        self._event("deleted", other, user.id, "", _now())

    async def _remark(self, user: UserState, other: UserId, remark: str) -> None:
        friend = user.friends.get(other)
        if friend is None:
            raise RequestError(f"{other} is not your friend", ErrorCode.NOT_FRIENDS)
        await self._store.apply(SetRemark(user.id, other, remark))
        self._refresh(users=(user.id,))
        user.friends[other] = _friend(other, friend.since, remark)
        user.changed(convs=False)

    async def _block(self, user: UserState, other: UserId, blocked: bool) -> None:
        await self._check_other(user, other)
        if (other in user.blocked) == blocked:
            return
        await self._store.apply(SetBlock(user.id, other, blocked))
        self._refresh(users=(user.id, other))
        peer = self._loaded(other)
        if blocked:
            user.blocked.add(other)
            if peer is not None:
                peer.blocked_by.add(user.id)
        else:
            user.blocked.discard(other)
            if peer is not None:
                peer.blocked_by.discard(user.id)
        user.changed(convs=False)
        if peer is not None:
            peer.changed(convs=False)

    # -- helpers ----------------------------------------------------------------------------

    async def _check_other(self, user: UserState, other: UserId) -> None:
        if other == user.id:
            raise RequestError("that is you", ErrorCode.INVALID_ARGUMENT)
        if other not in user.friends and not await self._user_exists(other):
            raise RequestError(f"no user {other}", ErrorCode.USER_NOT_FOUND)

    def _loaded(self, user_id: UserId) -> UserState | None:
        """The other user's state if this node holds it (else the store has the change
        and the next load reads it); a load in flight is told to read again."""
        self._state.touch_user(user_id)
        return self._state.users.get(user_id)

    def _event(self, event: str, to: UserId, about: UserId, message: str, ts: int) -> None:
        self._refresh(users=(to, about))  # ahead of the push: its node reads the change back first
        body = bodies.encode(bodies.FriendEvent(event=event, user=about, message=message, ts=ts))
        self._notify(encode_frame(Op.FRIEND_PUSH, 0, to, body), (to,), UserId(0), "")


def _from(ids: list[UserId], after: int) -> Iterator[UserId]:
    """``ids`` (ascending) above ``after``, lazily."""
    return itertools.islice(ids, bisect.bisect_right(ids, after), None)


def _friend(user: UserId, since: int, remark: str = "") -> Friend:
    return Friend(user, remark, since)


def _now() -> int:
    return int(time.time() * 1000)
