"""Reactions: a user's emoji on a message of a conversation they may read (REACT), kept by
the store with each message's summary, pushed to every device of the conversation's
members but the one that reacted (REACTION_PUSH), on every node.

Bounds, all settings: distinct emoji on one message (``reaction_max_emoji``), reactions of
one user on one message (``reaction_max_per_user``), and reactions a minute per account
(``reactions_per_minute``). The store checks the first two inside its write (two nodes
cannot both take the last place), so a refusal writes nothing.

A device that was away learns what changed from SYNC: every change takes the
conversation's next change revision, the one edits and recalls take too, and stamps the
message with it (``StoredMessage.rev``); a SYNC with ``changes_after`` lists the messages
changed after the revision the device had.
"""
from __future__ import annotations

import time
from typing import Callable

from ..backends.protocols import ConvId, Reacted, SetReaction, Store, StoredMessage, UserId
from ..core_ext import bodies
from ..core_ext.codec import encode_frame
from ..core_ext.errors import RequestError
from ..core_ext.frames_py import reactions as parse_reactions
from ..core_ext.protocol import ErrorCode, Flag, Op
from .conversations import Conversations, is_group, parse_conv
from .delivery import Delivery
from .quota import UserBuckets
from .state import UserState

__all__ = ["Reactions", "REACTION_USERS_SHOWN", "page_reactions"]

#: users a message's summary names per emoji (the first to react); the count is of all
REACTION_USERS_SHOWN = 10

_REACTION_PUSH = int(Op.REACTION_PUSH)
_GROUP = int(Flag.GROUP)


class Reactions:
    def __init__(self, store: Store, conversations: Conversations, delivery: Delivery, max_emoji: int,
                 max_per_user: int, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._conversations = conversations
        self._delivery = delivery
        self._max_emoji = max_emoji
        self._max_per_user = max_per_user
        self._buckets = UserBuckets(per_minute / 60.0, float(per_minute), f"{per_minute} reactions a minute", clock)
        self._stamped = 0  # the last reaction's time stamp (unix ms)

    def _stamp(self) -> int:
        """A reaction's time, unix ms, later than this node's previous one's: a message's
        summary lists the users of an emoji by time (then id), so two reactions taken in
        one millisecond keep the order this node took them in. (Past 1,000 a second the
        stamps run ahead of the clock by the excess.)"""
        self._stamped = max(int(time.time() * 1000), self._stamped + 1)
        return self._stamped

    async def react(self, user: UserState, terminal: str, req: bodies.React) -> bodies.ReactionEvent:
        """Add or take back ``user``'s reaction; the event (also the reply) once durable.
        Doing what is done already (the same emoji again, taking back one not there)
        changes nothing and pushes nothing."""
        self._buckets.charge(user.id)
        floor = await self._conversations.floor(user.id, req.conv)  # FORBIDDEN: not a reader
        if req.seq <= floor:
            raise RequestError(f"no message {req.seq} in {req.conv}", ErrorCode.NOT_FOUND)
        kind, a, b = parse_conv(req.conv)
        if not is_group(req.conv):
            other = b if a == user.id else a
            if UserId(other) in user.blocked_by:
                raise RequestError("this user blocked you", ErrorCode.BLOCKED)
        now = self._stamp()
        done: Reacted = await self._store.apply(SetReaction(
            ConvId(req.conv), req.seq, user.id, req.emoji, not req.remove, now, self._max_emoji,
            self._max_per_user, REACTION_USERS_SHOWN))
        if done.outcome == "missing" or done.message is None:
            raise RequestError(f"no message {req.seq} in {req.conv}", ErrorCode.NOT_FOUND)
        if done.outcome == "recalled":
            raise RequestError(f"message {req.seq} of {req.conv} was recalled", ErrorCode.MESSAGE_RECALLED)
        if done.outcome == "too_many_emoji":
            raise RequestError(f"a message takes at most {self._max_emoji} different emoji",
                               ErrorCode.REACTION_LIMIT)
        if done.outcome == "too_many_mine":
            raise RequestError(f"you may react to a message with at most {self._max_per_user} emoji",
                               ErrorCode.REACTION_LIMIT)
        event = _event(done.message, user.id, req.emoji, not req.remove, now)
        if done.outcome == "changed":
            self._push(done.message, event, user.id, terminal)
        return event

    def _push(self, message: StoredMessage, event: bodies.ReactionEvent, skip_user: UserId, skip_terminal: str) -> None:
        """To every device of the conversation's members but the reacting one: one frame,
        each node once (a group's by conversation id; a private one's two users by route)."""
        group = is_group(message.conv)
        frame = encode_frame(_REACTION_PUSH, 0, message.to if group else 0, bodies.encode(event),
                             _GROUP if group else 0)
        if group:
            self._delivery.to_conv(frame, message.conv, skip_user, skip_terminal)
        else:
            self._delivery.to_users(frame, (message.sender, UserId(message.to)), skip_user, skip_terminal)

    def forget(self, user: UserId) -> None:
        """The user has no session here any more."""
        self._buckets.forget(user)


def _event(message: StoredMessage, user: UserId, emoji: str, added: bool, now: int) -> bodies.ReactionEvent:
    return bodies.ReactionEvent(conv=message.conv, seq=message.seq, msg_id=message.id, user=user, emoji=emoji,
                                added=added, reactions=parse_reactions(message.reactions), rev=message.rev, ts=now)


def page_reactions(messages: list[StoredMessage], changed: bool = False) -> list[bodies.MessageReactions]:
    """The ``Page.reactions`` of a page's messages: each that has reactions; with
    ``changed`` (SYNC's ``changed``) each, an empty list saying that it has none now."""
    return [bodies.MessageReactions(seq=m.seq, rev=m.rev, reactions=parse_reactions(m.reactions))
            for m in messages if changed or m.reactions]
