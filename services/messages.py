"""Messages in private and group conversations: who may send, ids, the durable append,
and sync and history within what the reader may see."""
from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from typing import AsyncIterator

from ..backends.protocols import ConvId, GroupId, NewMessage, Store, StoreClosed, StoredMessage, UserId
from ..core_ext.errors import RequestError, Unavailable
from ..core_ext.protocol import MAX_BODY_SIZE, ErrorCode
from .conversations import Conversations, group_conv, private_conv
from .groups import Groups
from .ids import IdGenerator
from .state import State, UserState
from .users import Users

__all__ = ["Messages", "ReadSlots"]

_MAX_ID = 2**63 - 1  # ids are signed 64-bit in every store
#: content bytes a page can carry: a store read stops past this (the reply is cut there anyway)
PAGE_BYTES = MAX_BODY_SIZE
#: store reads (SYNC, HISTORY) of one user in flight at once
READS_PER_USER = 2


class Messages:
    def __init__(self, store: Store, state: State, users: Users, ids: IdGenerator, conversations: Conversations,
                 groups: Groups, strangers_may_send: bool) -> None:
        self._store = store
        self._state = state
        self._ids = ids
        self._conversations = conversations
        self._groups = groups
        self._strangers_may_send = strangers_may_send
        self._users = users
        self._reads = ReadSlots(READS_PER_USER)

    # -- sending --------------------------------------------------------------------------------

    def prepare_now(self, sender: UserState, target: int, group: bool, cmid: str, type_: int,
                    content: str) -> NewMessage | None:
        """Check and build a send without I/O; None when something must be loaded first."""
        if group:
            state = self._state.groups.get(GroupId(target))
            if state is None:
                return None
            self._groups.check_send(state, sender.id, int(time.time() * 1000))
            return self._new(group_conv(GroupId(target)), sender.id, target, (), cmid, type_, content)
        to = UserId(target)
        if to == sender.id:
            raise RequestError("cannot send to yourself", ErrorCode.INVALID_ARGUMENT)
        if not self._users.known(to) and to not in sender.friends:
            if not 0 < to <= _MAX_ID:
                raise RequestError(f"no user {to}", ErrorCode.USER_NOT_FOUND)
            return None
        self._check_private(sender, to)
        return self._new(private_conv(sender.id, to), sender.id, to, (sender.id, to), cmid, type_, content)

    async def prepare(self, sender: UserState, target: int, group: bool, cmid: str, type_: int,
                      content: str) -> NewMessage:
        new = self.prepare_now(sender, target, group, cmid, type_, content)
        if new is not None:
            return new
        if group:
            await self._groups.get(target)  # NOT_FOUND if there is no such group
        elif not await self._users.exists(UserId(target)):
            raise RequestError(f"no user {target}", ErrorCode.USER_NOT_FOUND)
        new = self.prepare_now(sender, target, group, cmid, type_, content)
        assert new is not None
        return new

    def _check_private(self, sender: UserState, to: UserId) -> None:
        if to in sender.blocked_by:
            raise RequestError("this user blocked you", ErrorCode.BLOCKED)
        if not self._strangers_may_send and to not in sender.friends:
            raise RequestError("only friends may send to each other here", ErrorCode.NOT_FRIENDS)

    def _new(self, conv: ConvId, sender: UserId, to: int, members: tuple[UserId, ...], cmid: str, type_: int,
             content: str) -> NewMessage:
        return NewMessage(
            conv=conv, sender=sender, to=to, cmid=cmid, type=type_, content=content,
            msg_id=self._ids.next(), ts=int(time.time() * 1000), members=members,
        )

    def commit(self, message: NewMessage) -> asyncio.Future[StoredMessage]:
        """Hand the message to the store now; the future resolves once it is durable.
        Commits are sequenced in call order, which keeps a connection's sends in its order."""
        try:
            return self._store.submit(message)
        except StoreClosed:
            raise Unavailable("the node is shutting down") from None

    # -- reading --------------------------------------------------------------------------------

    async def sync(self, user: UserId, conv: str, after_seq: int, limit: int) -> tuple[list[StoredMessage], bool]:
        floor = await self._conversations.floor(user, conv)
        async with self._reads.slot(user):
            rows = await self._store.messages_after(ConvId(conv), max(after_seq, floor), limit + 1, PAGE_BYTES)
        return rows[:limit], len(rows) > limit

    async def history(self, user: UserId, conv: str, before_seq: int, limit: int) -> tuple[list[StoredMessage], bool]:
        floor = await self._conversations.floor(user, conv)
        async with self._reads.slot(user):
            rows = await self._store.messages_before(ConvId(conv), before_seq, limit + 1, PAGE_BYTES)
        rows = [m for m in rows if m.seq > floor]
        return rows[-limit:], len(rows) > limit


class ReadSlots:
    """At most ``per_user`` store reads of one user in flight; the user's others wait here,
    not in the store's queue, so one account's many connections cannot fill the reader
    and every other user's read waits behind at most ``per_user`` reads of each user."""

    def __init__(self, per_user: int) -> None:
        self._per_user = per_user
        self._busy: dict[UserId, int] = {}
        self._waiting: dict[UserId, collections.deque[asyncio.Future[None]]] = {}

    @contextlib.asynccontextmanager
    async def slot(self, user: UserId) -> AsyncIterator[None]:
        if self._busy.get(user, 0) >= self._per_user:
            turn = asyncio.get_running_loop().create_future()
            self._waiting.setdefault(user, collections.deque()).append(turn)
            try:
                await turn  # the slot is handed over by the read that ends (busy stays counted)
            except BaseException:
                if not turn.cancelled() and turn.done():
                    self._release(user)  # handed over, then cancelled: pass it on
                raise
        else:
            self._busy[user] = self._busy.get(user, 0) + 1
        try:
            yield
        finally:
            self._release(user)

    def _release(self, user: UserId) -> None:
        waiting = self._waiting.get(user)
        while waiting:
            turn = waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self._waiting.pop(user, None)
        busy = self._busy[user] - 1
        if busy:
            self._busy[user] = busy
        else:
            del self._busy[user]
