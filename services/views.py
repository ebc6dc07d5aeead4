"""Per-user views of conversations and message pins.

- **Delete for me** (DELETE_FOR_ME): a user hides messages from their own view, on every
  device of theirs; the other members keep them. The user's SYNC and HISTORY pages carry
  them as stubs (``hidden``, no content), their searches leave them out, their list entry
  shows the newest message they still see and does not count what they hid as unread.
- **Clear history** (CLEAR_HISTORY): a user clears their view of a conversation up to a
  seq: their reads start after it (as a group member's start after their join) and it
  counts as read, without moving their read cursor (nobody gets a read receipt).
- **Message pins** (PIN_MESSAGE, UNPIN_MESSAGE, PINS): a conversation's pinned messages,
  shared by its members, at most ``max_pins`` of them; a group's owner and admins pin,
  either user of a private conversation. A recalled message loses its pin.

What is per user lives in the user's ``UserConv`` (``cleared_seq``, ``view_ver``) and
the store's hidden messages; what the list needs of it is in memory (``ConvView``). The
user's other devices get a VIEW_PUSH, and their other nodes reload them (a Refresh); the
members get a PIN_PUSH. A device that was away finds the changes in the list
(``cleared_seq``, ``view_ver``), in its reads, and in PINS.
"""
from __future__ import annotations

import time
from typing import Callable

import msgspec

from ..backends.protocols import (
    PINS_FULL, ConvId, GroupId, HideMessages, Pin, PinMessage, Store, StoredMessage, UnpinMessage, UserConv, UserId,
)
from ..core_ext import bodies
from ..core_ext.codec import encode_frame
from ..core_ext.errors import RequestError
from ..core_ext.frames import message_body
from ..core_ext.protocol import MAX_BODY_SIZE, ErrorCode, Op
from .conversations import Conversations, is_group, parse_conv
from .delivery import Delivery
from .quota import UserBuckets
from .state import ConvView, State, UserState

__all__ = ["Views", "MAX_PINS", "stub"]

#: message pins a conversation may hold, by default (the setting ``max_message_pins``)
MAX_PINS = 20
#: room for a PINS_OK's own keys around its pins
_PINS_BUDGET = MAX_BODY_SIZE - 256


class Views:
    def __init__(self, store: Store, state: State, conversations: Conversations, delivery: Delivery,
                 max_pins: int = MAX_PINS, changes_per_minute: int = 60, pins_per_minute: int = 30,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._state = state
        self._conversations = conversations
        self._delivery = delivery
        self.max_pins = max_pins
        self._changes = UserBuckets(changes_per_minute / 60.0, float(changes_per_minute),
                                    f"{changes_per_minute} view changes (DELETE_FOR_ME, CLEAR_HISTORY) a minute", clock)
        self._pins = UserBuckets(pins_per_minute / 60.0, float(pins_per_minute),
                                 f"{pins_per_minute} message pins and unpins a minute", clock)

    def forget(self, user: UserId) -> None:
        """The user has no session here any more (their budgets are kept until refilled)."""
        self._changes.forget(user)
        self._pins.forget(user)

    # -- delete for me, clear history --------------------------------------------------------

    async def delete_for_me(self, user: UserState, conv: str, seqs: list[int], terminal: str) -> bodies.ViewEvent:
        """Hide ``seqs`` from the user's own view. Every seq must be a message the user may
        read (NOT_FOUND otherwise, and nothing is hidden). Repeating it changes nothing."""
        floor = await self._conversations.floor(user.id, conv)
        self._changes.charge(user.id)
        async with self._state.lock(("conv", user.id, conv)):  # another device's READ, CONV_SET, clear waits
            uc = await self._own(user, conv)
            head = self._state.heads.get(ConvId(conv))
            last = head.seq if head is not None else 0
            wrong = [seq for seq in seqs if not floor < seq <= last]
            if wrong:
                raise RequestError(f"no message {wrong[0]} in {conv} to delete", ErrorCode.NOT_FOUND)
            result = await self._store.apply(HideMessages(user.id, ConvId(conv), tuple(seqs), _now()))
            if result is None:  # left the conversation meanwhile
                raise RequestError(f"not a member of {conv}", ErrorCode.FORBIDDEN)
            hidden, ver = result
            uc = user.convs.get(ConvId(conv), uc)
            if hidden:
                await self._hid(user, msgspec.structs.replace(uc, view_ver=max(ver, uc.view_ver)), hidden)
                uc = user.convs.get(ConvId(conv), uc)
                event = bodies.ViewEvent(conv=conv, event="deleted", seqs=list(hidden), cleared_seq=uc.cleared_seq,
                                         view_ver=uc.view_ver)
                self._delivery.to_users(encode_frame(Op.VIEW_PUSH, 0, 0, bodies.encode(event)), (user.id,), user.id,
                                        terminal)
        return bodies.ViewEvent(conv=conv, event="deleted", seqs=sorted(set(seqs)), cleared_seq=uc.cleared_seq,
                                view_ver=uc.view_ver)

    async def _hid(self, user: UserState, uc: UserConv, hidden: tuple[int, ...]) -> None:
        """The hiding is durable: the user's state and list here follow, then their other nodes."""
        conv = uc.conv
        user.convs[conv] = uc
        old = user.views.get(conv) or ConvView()
        cursor = max(uc.read_seq, uc.joined_seq, uc.cleared_seq)
        kept = tuple(sorted(set(old.hidden) | {seq for seq in hidden if seq > cursor}))
        head = self._state.heads.get(conv)
        if head is not None and (head.seq in hidden or old.head_seq == head.seq):
            # the newest message is one the user hid: the list shows the newest they still see
            message = await self._store.last_visible(user.id, conv, max(uc.joined_seq, uc.cleared_seq))
            view = ConvView(kept, head.seq, message)
            if message is not None:
                self._state.view_heads.setdefault(conv, set()).add(user.id)
        else:
            view = ConvView(kept)
        user.views[conv] = view
        user.changed(conv)
        self._delivery.refresh(users=(user.id,))

    async def clear_history(self, user: UserState, conv: str, seq: int, terminal: str) -> bodies.ViewEvent:
        """Clear the user's view of ``conv`` up to ``seq`` (0 or past the newest message: up
        to the newest). A clear at or below the one already made changes nothing."""
        await self._conversations.floor(user.id, conv)
        self._changes.charge(user.id)
        async with self._state.lock(("conv", user.id, conv)):
            uc = await self._own(user, conv)
            head = self._state.heads.get(ConvId(conv))
            last = head.seq if head is not None else 0
            upto = min(seq, last) if seq else last
            if upto > uc.cleared_seq:
                uc = await self._conversations.put(
                    user, msgspec.structs.replace(uc, cleared_seq=upto, view_ver=uc.view_ver + 1))
                view = user.views.get(ConvId(conv))
                if view is not None:
                    kept = tuple(s for s in view.hidden if s > upto)
                    user.views[ConvId(conv)] = ConvView(kept) if view.head_seq <= upto else \
                        msgspec.structs.replace(view, hidden=kept)
                    user.changed(ConvId(conv))
                event = bodies.ViewEvent(conv=conv, event="cleared", seqs=[], cleared_seq=uc.cleared_seq,
                                         view_ver=uc.view_ver)
                self._delivery.to_users(encode_frame(Op.VIEW_PUSH, 0, 0, bodies.encode(event)), (user.id,), user.id,
                                        terminal)
        return bodies.ViewEvent(conv=conv, event="cleared", seqs=[], cleared_seq=uc.cleared_seq, view_ver=uc.view_ver)

    async def _own(self, user: UserState, conv: str) -> UserConv:
        uc = user.convs.get(ConvId(conv))
        if uc is None:
            await self._conversations.floor(user.id, conv)  # FORBIDDEN if they were removed meanwhile
            raise RequestError(f"{conv} is not in your list", ErrorCode.NOT_FOUND)
        return uc

    # -- what reads leave out ------------------------------------------------------------------

    async def hidden_in(self, user: UserId, conv: str, rows: list[StoredMessage]) -> set[int]:
        """The seqs of ``rows`` (ascending, of ``conv``) that ``user`` deleted for
        themselves. No store read for a user who never did in this conversation."""
        state = self._state.users.get(user)
        uc = state.convs.get(ConvId(conv)) if state is not None else None
        if not rows or uc is None or not uc.view_ver:
            return set()
        return set(await self._store.hidden_seqs(user, ConvId(conv), rows[0].seq - 1, rows[-1].seq))

    async def visible(self, user: UserId, rows: list[StoredMessage]) -> list[StoredMessage]:
        """``rows`` (a search's, of several conversations) without those ``user`` deleted
        for themselves."""
        by_conv: dict[str, list[StoredMessage]] = {}
        for m in rows:
            by_conv.setdefault(m.conv, []).append(m)
        hidden: set[tuple[str, int]] = set()
        for conv, found in by_conv.items():
            found.sort(key=lambda m: m.seq)
            hidden.update((conv, seq) for seq in await self.hidden_in(user, conv, found))
        return [m for m in rows if (m.conv, m.seq) not in hidden] if hidden else rows

    # -- message pins ----------------------------------------------------------------------

    async def pin(self, user: UserId, conv: str, seq: int, terminal: str) -> bodies.PinInfo:
        """Pin message ``seq`` of ``conv`` for its members: PINS_FULL past ``max_pins``,
        MESSAGE_RECALLED for a recalled one. Pinning a pinned message changes nothing and
        answers its pin."""
        floor = await self._may_pin(user, conv)
        if seq <= floor:
            raise RequestError(f"no message {seq} in {conv}", ErrorCode.NOT_FOUND)
        self._pins.charge(user)
        now = _now()
        result = await self._store.apply(PinMessage(ConvId(conv), seq, user, now, self.max_pins))
        if result == PINS_FULL:
            raise RequestError(f"{conv} has {self.max_pins} message pins, as many as it may: unpin one first",
                               ErrorCode.PINS_FULL)
        if result is None:
            found = await self._store.messages_after(ConvId(conv), seq - 1, 1)
            if found and found[0].seq == seq:
                raise RequestError(f"message {seq} of {conv} was recalled", ErrorCode.MESSAGE_RECALLED)
            raise RequestError(f"no message {seq} in {conv}", ErrorCode.NOT_FOUND)
        assert isinstance(result, Pin)
        if result.created:  # new: the members hear of it (not a pin made before, even in the same ms)
            self._push("pinned", conv, seq, user, now, user, terminal)
        return _pin_info(result)

    async def unpin(self, user: UserId, conv: str, seq: int, terminal: str) -> None:
        await self._may_pin(user, conv)
        self._pins.charge(user)
        if not await self._store.apply(UnpinMessage(ConvId(conv), seq)):
            raise RequestError(f"message {seq} of {conv} is not pinned", ErrorCode.NOT_FOUND)
        self._push("unpinned", conv, seq, user, _now(), user, terminal)

    async def pins(self, user: UserId, conv: str) -> bodies.PinList:
        """The conversation's message pins that ``user`` may read (a group member's, of the
        messages after their join), newest pin first; contents that would not fit the frame
        come without (``too_large``)."""
        floor = await self._conversations.floor(user, conv)
        out: list[bodies.PinInfo] = []
        total = 0
        for pin in await self._store.pins(ConvId(conv)):
            if pin.seq <= floor:
                continue
            info = _pin_info(pin)
            size = len(bodies.encode(info))
            if total + size > _PINS_BUDGET:
                info = msgspec.structs.replace(info, message=msgspec.structs.replace(info.message, content="",
                                                                                  too_large=True))
                size = len(bodies.encode(info))
            total += size
            out.append(info)
        return bodies.PinList(conv=conv, pins=out, max=self.max_pins)

    async def pinned(self, conv: str, seq: int) -> bool:
        """Is message ``seq`` of ``conv`` pinned (asked before a recall drops it)?"""
        return any(pin.seq == seq for pin in await self._store.pins(ConvId(conv)))

    def recalled(self, conv: str, seq: int, by: UserId, terminal: str) -> None:
        """A pinned message was recalled (its pin went with it): the members hear of it."""
        self._push("unpinned", conv, seq, by, _now(), by, terminal)

    async def _may_pin(self, user: UserId, conv: str) -> int:
        """The user's floor in ``conv``; FORBIDDEN unless they may pin there: either user of
        a private conversation, a group's owner and admins."""
        floor = await self._conversations.floor(user, conv)
        if is_group(conv):
            group = self._state.groups.get(GroupId(parse_conv(conv)[1]))  # loaded by floor()
            member = group.members.get(user) if group is not None else None
            if member is None or member.role == "member":
                raise RequestError("only the group's owner and admins may pin messages", ErrorCode.FORBIDDEN)
        return floor

    def _push(self, event: str, conv: str, seq: int, by: UserId, ts: int, skip_user: UserId,
              skip_terminal: str) -> None:
        """A PIN_PUSH to every device of the conversation's members but the one that acted."""
        frame = encode_frame(Op.PIN_PUSH, 0, 0, bodies.encode(bodies.PinEvent(event=event, conv=conv, seq=seq, by=by,
                                                                              ts=ts)))
        kind, a, b = parse_conv(conv)
        if is_group(conv):
            self._delivery.to_conv(frame, ConvId(conv), skip_user, skip_terminal)
        else:
            self._delivery.to_users(frame, (UserId(a), UserId(b)), skip_user, skip_terminal)


def _pin_info(pin: Pin) -> bodies.PinInfo:
    return bodies.PinInfo(conv=pin.conv, seq=pin.seq, by=pin.by, ts=pin.at, message=message_body(pin.message))


def _now() -> int:
    return int(time.time() * 1000)


def stub(m: StoredMessage) -> bodies.Message:
    """The page item of a message the reader deleted for themselves: no content, no mentions."""
    return msgspec.structs.replace(message_body(msgspec.structs.replace(m, content="", mentions="")), hidden=True)

