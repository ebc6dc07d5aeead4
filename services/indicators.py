"""Typing indicators: an ephemeral signal relayed to the other members of a conversation
who are online, never stored, rate-limited per user.

Who may signal is who may send there: in a private conversation one of its two users,
within the 1:1 audience (``Audience``: blocks, friends only); in a group a member who is
not muted (``Groups.check_send``). The signal reaches every session of the other members
(the sender's own sessions are skipped), at most once, on every node.

A group's signals together may make ``group_pushes`` TYPING_PUSH frames a second (a
signal costs one per member): past that a signal is dropped, still answered TYPING_OK
(typing is a hint; the next one gets through), so many typists in a large group cannot
flood its members.
"""
from __future__ import annotations

import time
from typing import Awaitable, Callable, Iterable

from ..backends.protocols import ConvId, GroupId, UserId
from ..core_ext import bodies
from ..core_ext.codec import encode_frame
from ..core_ext.errors import RequestError
from ..core_ext.protocol import ErrorCode, Flag, Op
from .conversations import GROUP, parse_conv
from .groups import Groups
from .presence import Audience
from .quota import SharedBuckets, UserBuckets
from .state import State, UserState

__all__ = ["Typing"]


class Typing:
    def __init__(self, state: State, groups: Groups, audience: Audience,
                 to_users: Callable[[bytes, Iterable[UserId]], None],
                 to_conv: Callable[..., None], rate: float, burst: int,
                 clock: Callable[[], float] = time.monotonic, group_pushes: float = float("inf")) -> None:
        self._state = state
        self._groups = groups
        self._audience = audience
        self._to_users = to_users
        self._to_conv = to_conv
        self._buckets = UserBuckets(rate, float(burst), f"{rate:g} typing signals/s", clock)
        # per group, a second's worth; None: not kept
        self._group_budget = (SharedBuckets(group_pushes, group_pushes, clock)
                              if group_pushes != float("inf") else None)

    def signal_now(self, me: UserState, conv: str, typing: bool) -> Awaitable[None] | None:
        """Relay the signal; None when done, or an awaitable when the group must be loaded
        first. FORBIDDEN outside the conversation, the audience's or the group's refusal,
        RATE_LIMITED over the user's budget (checked first: a refused signal costs too)."""
        self._buckets.charge(me.id)
        kind, a, b = parse_conv(conv)
        body = bodies.encode(bodies.TypingEvent(conv=conv, user=me.id, typing=typing, ts=int(time.time() * 1000)))
        if kind == GROUP:
            group = self._state.groups.get(GroupId(a))
            if group is None:
                return self._group_later(me, conv, a, body)
            self._groups.check_send(group, me.id, int(time.time() * 1000))
            if self._within_budget(group.id, len(group.members)):
                self._to_conv(encode_frame(Op.TYPING_PUSH, 0, a, body, Flag.GROUP), ConvId(conv), UserId(0), "",
                              (me.id,))
            return None
        if me.id not in (a, b):
            raise RequestError(f"not a member of {conv}", ErrorCode.FORBIDDEN)
        other = UserId(b if me.id == a else a)
        self._audience.check(me, other)
        self._to_users(encode_frame(Op.TYPING_PUSH, 0, other, body), (other,))
        return None

    async def _group_later(self, me: UserState, conv: str, group_id: int, body: bytes) -> None:
        try:
            group = await self._groups.get(group_id)
        except RequestError:
            raise RequestError(f"not a member of {conv}", ErrorCode.FORBIDDEN) from None
        self._groups.check_send(group, me.id, int(time.time() * 1000))
        if self._within_budget(group.id, len(group.members)):
            self._to_conv(encode_frame(Op.TYPING_PUSH, 0, group_id, body, Flag.GROUP), ConvId(conv), UserId(0), "",
                          (me.id,))

    def _within_budget(self, group_id: int, members: int) -> bool:
        """May the group's typing signals make ``members`` more pushes now? (No: dropped.)"""
        return self._group_budget is None or self._group_budget.take(group_id, members)

    def forget(self, user: UserId) -> None:
        """The user has no session here any more."""
        self._buckets.forget(user)

