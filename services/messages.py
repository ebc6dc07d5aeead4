"""1:1 messages: validation, ids, durable append, sync and history, with the
membership check (a user reads and writes only conversations they are part of)."""
from __future__ import annotations

import asyncio
import re
import time

from ..backends.protocols import ConvId, Conversation, NewMessage, Store, StoreClosed, StoredMessage, UserId
from ..core_ext.errors import RequestError, Unavailable
from ..core_ext.protocol import ErrorCode
from .ids import IdGenerator

__all__ = ["MessageService", "private_conv", "conv_members"]

_MAX_ID = 2**63 - 1  # ids are signed 64-bit in every store
_PRIVATE = re.compile(r"p([1-9][0-9]{0,19})_([1-9][0-9]{0,19})")


def private_conv(a: UserId, b: UserId) -> ConvId:
    """The id of the 1:1 conversation of a and b: ``p<low>_<high>``."""
    return ConvId(f"p{a}_{b}" if a < b else f"p{b}_{a}")


def conv_members(conv: str) -> tuple[UserId, UserId]:
    match = _PRIVATE.fullmatch(conv)
    if match is None:
        raise RequestError(f"not a conversation id: {conv!r}", ErrorCode.INVALID_ARGUMENT)
    low, high = int(match[1]), int(match[2])
    if low >= high:
        raise RequestError(f"not a conversation id: {conv!r}", ErrorCode.INVALID_ARGUMENT)
    return UserId(low), UserId(high)


class MessageService:
    def __init__(self, store: Store, ids: IdGenerator) -> None:
        self._store = store
        self._ids = ids
        # users are never deleted, so a user seen once exists for good: most sends skip the
        # store lookup of their receiver
        self._known_users: set[UserId] = set()

    def prepare_now(self, sender: UserId, to: UserId, cmid: str, type_: int, content: str) -> NewMessage | None:
        """``prepare`` without I/O: None when the receiver has to be looked up first."""
        if to == sender:
            raise RequestError("cannot send to yourself", ErrorCode.INVALID_ARGUMENT)
        if to not in self._known_users:
            if not 0 < to <= _MAX_ID:
                raise RequestError(f"no user {to}", ErrorCode.USER_NOT_FOUND)
            return None
        return self._new(sender, to, cmid, type_, content)

    async def prepare(self, sender: UserId, to: UserId, cmid: str, type_: int, content: str) -> NewMessage:
        """Validate a send and give it an id; nothing is stored yet."""
        new = self.prepare_now(sender, to, cmid, type_, content)
        if new is not None:
            return new
        if await self._store.get_user(to) is None:
            raise RequestError(f"no user {to}", ErrorCode.USER_NOT_FOUND)
        self._known_users.add(to)
        return self._new(sender, to, cmid, type_, content)

    def _new(self, sender: UserId, to: UserId, cmid: str, type_: int, content: str) -> NewMessage:
        return NewMessage(
            conv=private_conv(sender, to),
            sender=sender,
            to=to,
            cmid=cmid,
            type=type_,
            content=content,
            msg_id=self._ids.next(),
            ts=int(time.time() * 1000),
        )

    def commit(self, message: NewMessage) -> asyncio.Future[StoredMessage]:
        """Hand the message to the store now; the future resolves once it is durable.
        Commits are sequenced in call order, which keeps a connection's sends in its order."""
        try:
            return self._store.submit(message)
        except StoreClosed:
            raise Unavailable("the node is shutting down") from None

    async def sync(self, user: UserId, conv: str, after_seq: int, limit: int) -> tuple[list[StoredMessage], bool]:
        self.check_member(user, conv)
        rows = await self._store.messages_after(ConvId(conv), after_seq, limit + 1)
        return rows[:limit], len(rows) > limit

    async def history(self, user: UserId, conv: str, before_seq: int, limit: int) -> tuple[list[StoredMessage], bool]:
        self.check_member(user, conv)
        rows = await self._store.messages_before(ConvId(conv), before_seq, limit + 1)
        return rows[-limit:], len(rows) > limit

    async def conversations(self, user: UserId, offset: int, limit: int) -> tuple[list[Conversation], bool]:
        """One page of the user's conversations, most recent first."""
        rows = await self._store.conversations(user)
        return rows[offset:offset + limit], len(rows) > offset + limit

    @staticmethod
    def check_member(user: UserId, conv: str) -> None:
        if user not in conv_members(conv):
            raise RequestError(f"not a member of {conv}", ErrorCode.FORBIDDEN)
