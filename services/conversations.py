"""Conversations: ids, who may read them, and each user's own view of them (the list with
its last message and unread count, read cursors, pin, mute, hide), answered from memory.

A conversation is private (two users, id ``p<low>_<high>``) or a group's (``g<group id>``).
Its messages are stored once; what is per user (read cursor, pinned, muted, hidden) lives
in that user's ``UserConv`` and changes only when that user acts.
"""
from __future__ import annotations

import bisect
import re
from typing import Callable, Iterable

import msgspec

from ..backends.protocols import ConvId, GroupId, GroupRecord, SetUserConv, Store, StoredMessage, UserConv, UserId
from ..core_ext import bodies, content
from ..core_ext.codec import encode_frame
from ..core_ext.errors import RequestError
from ..core_ext.protocol import ErrorCode, Op
from .pages import fit
from .state import ConvView, State, UserState

__all__ = ["Conversations", "private_conv", "group_conv", "parse_conv", "is_group", "PRIVATE", "GROUP"]

PRIVATE, GROUP = "private", "group"
_CONV = re.compile(r"p([1-9][0-9]{0,18})_([1-9][0-9]{0,18})|g([1-9][0-9]{0,18})")
_MAX_ID = 2**63 - 1
_PREVIEW = 64  # characters of the newest message shown in a list entry
_CURSOR = re.compile(r"([01])\.(-?[0-9]{1,20})\.(\S{1,64})")


def private_conv(a: UserId, b: UserId) -> ConvId:
    """The id of the private conversation of a and b: ``p<low>_<high>``. (Not wrapped in
    ``ConvId``: a NewType is a Python call at run time, and this runs for every SEND.)"""
    return f"p{a}_{b}" if a < b else f"p{b}_{a}"  # type: ignore[return-value]


def group_conv(group: GroupId) -> ConvId:
    return ConvId(f"g{group}")


def is_group(conv: str) -> bool:
    return conv.startswith("g")


def parse_conv(conv: str) -> tuple[str, int, int]:
    """``(PRIVATE, low, high)`` or ``(GROUP, group id, 0)``; INVALID_ARGUMENT if ``conv``
    is not exactly an id of one of those shapes."""
    match = _CONV.fullmatch(conv)
    if match is not None:
        if match[3] is not None:
            group = int(match[3])
            if group <= _MAX_ID:
                return GROUP, group, 0
        else:
            low, high = int(match[1]), int(match[2])
            if low < high <= _MAX_ID:
                return PRIVATE, low, high
    raise RequestError(f"not a conversation id: {conv!r}", ErrorCode.INVALID_ARGUMENT)


class Conversations:
    def __init__(self, store: Store, state: State, notify: Callable[[bytes, tuple[UserId, ...], UserId, str], None],
                 refresh: Callable[..., None]) -> None:
        self._store = store
        self._state = state
        # refresh(users=...): other nodes holding these users reload them
        self._refresh = refresh
        # notify(frame, users, skip_user, skip_terminal): a push to every device of users
        self._notify = notify

    # -- who may read ------------------------------------------------------------------------

    async def floor(self, user: UserId, conv: str) -> int:
        """The seq below which ``user`` may not read ``conv`` (a group member's join seq; 0
        in a private conversation). FORBIDDEN for a conversation the user is not part of."""
        kind, a, b = parse_conv(conv)
        if kind == PRIVATE:
            if user != a and user != b:
                raise RequestError(f"not a member of {conv}", ErrorCode.FORBIDDEN)
            return 0
        group = await self._state.group(GroupId(a))
        if group is None or group.dissolved or user not in group.members:
            raise RequestError(f"not a member of {conv}", ErrorCode.FORBIDDEN)
        return group.members[user].joined_seq

    def cleared(self, user: UserId, conv: str) -> int:
        """The seq up to which ``user`` cleared their view of ``conv`` (CLEAR_HISTORY): their
        reads start after it (0: never cleared, or the user is not loaded here)."""
        state = self._state.users.get(user)
        uc = state.convs.get(ConvId(conv)) if state is not None else None
        return uc.cleared_seq if uc is not None else 0

    # -- the list ----------------------------------------------------------------------------

    def page(self, user: UserState, cursor: str, limit: int) -> bytes:
        """One CONVERSATIONS_OK body: pinned first, then by last activity, from after
        ``cursor`` (keyset paging: entries that move to the top while a client pages are
        not repeated, and the rest do not shift), at most ``limit`` entries and as many as
        fit a frame. Costs the entries that changed since the user's last page (their
        ``ConvIndex``) plus the page's own, not the length of the list."""
        state = self._state
        key = ("convs", cursor, limit)
        versions = (user.version, state.listed)  # what the index follows: the user, heads and groups
        cached = user.cached(key, versions)
        if cached is not None:
            return cached
        after = _parse_cursor(cursor) if cursor else None
        index = user.conv_index
        if index is None:
            index = user.conv_index = ConvIndex()
        index.sync(user, state)
        keys, entries = index.keys, index.entries
        start = bisect.bisect_right(keys, after) if after is not None else 0
        shown, more = fit((entries[keys[i][2]].encoded for i in range(start, len(keys))), limit)
        next_cursor = _cursor(keys[start + len(shown) - 1]) if more else ""
        body = bodies.encode(bodies.ConversationList(convs=shown, next_cursor=next_cursor, has_more=more))  # type: ignore[arg-type]
        return user.keep(key, versions, body)

    # -- per-user state ------------------------------------------------------------------------

    async def read(self, user: UserState, conv: str, seq: int, terminal: str) -> bodies.ReadMark:
        """Move the user's read cursor up to ``seq`` (never back, never past the newest
        message); the user's other devices and, in a private conversation, the peer get a
        READ_PUSH."""
        await self.floor(user.id, conv)
        async with self._state.lock(("conv", user.id, conv)):  # another device's READ or CONV_SET waits
            uc = user.convs.get(ConvId(conv))
            if uc is None:
                await self.floor(user.id, conv)  # FORBIDDEN if they were removed meanwhile
                raise RequestError(f"nothing to read in {conv}", ErrorCode.NOT_FOUND)
            head = self._state.heads.get(ConvId(conv))
            seq = min(seq, head.seq if head else 0)
            if seq > uc.read_seq:
                uc = await self._put(user, msgspec.structs.replace(uc, read_seq=seq))
                mark = bodies.ReadMark(conv=conv, user=user.id, seq=uc.read_seq)
                kind, a, b = parse_conv(conv)
                others = (a if b == user.id else b,) if kind == PRIVATE else ()
                self._notify(encode_frame(Op.READ_PUSH, 0, 0, bodies.encode(mark)), (user.id, *others), user.id,
                             terminal)
        return bodies.ReadMark(conv=conv, user=user.id, seq=uc.read_seq)

    async def set_flags(self, user: UserState, req: bodies.ConvSet, terminal: str) -> bodies.ConvState:
        """Pin, mute or hide the conversation in the user's own list (hiding lasts until
        a newer message arrives); the user's other devices get a CONV_PUSH when what they
        see of it changed."""
        await self.floor(user.id, req.conv)
        async with self._state.lock(("conv", user.id, req.conv)):  # another device's READ or CONV_SET waits
            uc = user.convs.get(ConvId(req.conv))
            if uc is None:
                await self.floor(user.id, req.conv)  # FORBIDDEN if they were removed meanwhile
                raise RequestError(f"{req.conv} is not in your list", ErrorCode.NOT_FOUND)
            changes: dict[str, object] = {}
            if req.pinned is not None:
                changes["pinned"] = req.pinned
            if req.muted is not None:
                changes["muted"] = req.muted
            if req.hidden is not None:
                head = self._state.heads.get(uc.conv)
                # shown again by the next message: hidden below last seq + 1 (1 in a group
                # without messages, which is listed too)
                changes["hidden_seq"] = (head.seq if head else 0) + 1 if req.hidden else 0
            # what is already so is neither stored nor pushed: a repeated CONV_SET must not
            # cost the user's other devices a push each time
            changes = {name: value for name, value in changes.items() if getattr(uc, name) != value}
            before = self.view(user, uc)
            if changes:
                uc = await self._put(user, msgspec.structs.replace(uc, **changes))
            view = self.view(user, uc)
            if view != before:
                self._notify(encode_frame(Op.CONV_PUSH, 0, 0, bodies.encode(view)), (user.id,), user.id, terminal)
            return view

    async def put(self, user: UserState, uc: UserConv) -> UserConv:
        """Store the user's changed state in a conversation (see ``_put``); the caller holds
        the lock of (user, conv)."""
        return await self._put(user, uc)

    async def _put(self, user: UserState, uc: UserConv) -> UserConv:
        """Store ``uc``, then make it the user's state in memory; returns that state. The
        read cursor never goes back: the user's own sends move it in memory meanwhile
        without passing here. A user who left the conversation meanwhile keeps no state
        (the store changes existing rows only)."""
        await self._store.apply(SetUserConv(user.id, uc))
        self._refresh(users=(user.id,))  # the user's devices on other nodes
        current = user.convs.get(uc.conv)
        if current is None:
            return uc
        uc = msgspec.structs.replace(uc, read_seq=max(uc.read_seq, current.read_seq))
        user.convs[uc.conv] = uc
        user.changed(uc.conv)
        return uc

    def view(self, user: UserState, uc: UserConv) -> bodies.ConvState:
        head = self._state.heads.get(uc.conv)
        hidden = (head.seq if head else 0) < uc.hidden_seq
        return bodies.ConvState(conv=uc.conv, pinned=uc.pinned, muted=uc.muted, hidden=hidden)

    async def readers(self, user: UserId, req: bodies.Readers) -> bodies.ReadersPage:
        """Who has read ``conv`` up to ``seq``: members whose read cursor is there, the
        message's sender left out."""
        floor = await self.floor(user, req.conv)
        if req.seq <= floor:
            raise RequestError(f"seq {req.seq} is not yours to see", ErrorCode.FORBIDDEN)
        found = await self._store.messages_after(ConvId(req.conv), req.seq - 1, 1)
        if not found or found[0].seq != req.seq:
            raise RequestError(f"no message {req.seq} in {req.conv}", ErrorCode.NOT_FOUND)
        count, users = await self._store.readers(ConvId(req.conv), req.seq, found[0].sender, UserId(req.after),
                                                 req.limit + 1)
        return bodies.ReadersPage(conv=req.conv, seq=req.seq, count=count, users=users[:req.limit],
                                  has_more=len(users) > req.limit)

    # -- kept coherent by the write paths --------------------------------------------------------

    def committed(self, message: StoredMessage) -> None:
        """A new message is durable: it is its conversation's head, the sender has read up
        to it, and a private conversation is in both users' lists (the store made their
        rows in the same commit). A group's conversation enters a list only by joining:
        a sender removed while the message was on its way does not get it back."""
        state = self._state
        state.put_head(message)
        if message.mentions:
            self._mentioned(message)
        private = message.conv[:1] != "g"
        # whose own state it can change: both users of a private conversation; in a group
        # only the sender (the others' unread counts follow the head)
        for user_id in ((message.sender, message.to) if private else (message.sender,)):
            user = state.users.get(user_id)
            if user is None:
                state.touch_user(user_id)  # a load running now may have read too early
                continue
            uc = user.convs.get(message.conv)
            if uc is None:
                if not private:
                    continue
                uc = UserConv(message.conv)
            elif user_id != message.sender or uc.read_seq >= message.seq:
                continue
            if user_id == message.sender:
                uc = msgspec.structs.replace(uc, read_seq=message.seq)
            user.convs[message.conv] = uc
            user.changed(message.conv)


    def _mentioned(self, message: StoredMessage) -> None:
        """The mentioned users loaded here are flagged in memory, as the store flagged them."""
        state = self._state
        if message.mentions == "*":
            group = state.groups.get(GroupId(message.to))
            users = [u for u in group.members if u in state.users] if group is not None else []
        else:
            users = [UserId(int(u)) for u in message.mentions.split(",")]
        for user_id in users:
            user = state.users.get(user_id)
            uc = user.convs.get(message.conv) if user is not None else None
            if user is None or uc is None or uc.mention_seq >= message.seq:
                continue
            user.convs[message.conv] = msgspec.structs.replace(uc, mention_seq=message.seq)
            user.changed(message.conv)

    def recalled(self, tombstone: StoredMessage) -> None:
        """A message was recalled (here or on another node): if it is its conversation's
        newest, the lists' previews show the tombstone (so do those of the users whose list
        shows it in place of a newer message they deleted for themselves)."""
        state = self._state
        state.replace_head(tombstone)
        users = state.view_heads.get(tombstone.conv)
        for user_id in list(users) if users else ():
            user = state.users.get(user_id)
            view = user.views.get(tombstone.conv) if user is not None else None
            if user is None or view is None or view.message is None:
                users.discard(user_id)  # gone, or no stand-in any more
            elif view.message.seq == tombstone.seq:
                user.views[tombstone.conv] = msgspec.structs.replace(view, message=tombstone)
                user.changed(tombstone.conv)

    def edited(self, message: StoredMessage) -> None:
        """A message was edited (here or on another node): if it is its conversation's
        newest, the lists' previews show the new text."""
        self._state.replace_head(message)


class _Entry:
    """One conversation of a user's list: what it was built from (frozen records: every
    change replaces them), its place in the order, and its bytes."""

    __slots__ = ("uc", "head", "record", "key", "encoded", "view")

    def __init__(self, uc: UserConv, head: StoredMessage | None, record: GroupRecord | None,
                 key: tuple[int, int, str] | None, encoded: bytes, view: ConvView | None = None) -> None:
        self.uc = uc
        self.head = head
        self.record = record
        self.key = key  # None: not listed (hidden, or its group is not loaded)
        self.encoded = encoded
        self.view = view  # what the user deleted for themselves here (services/views.py)


class ConvIndex:
    """A user's conversation list in its order (``keys``, ascending) with each entry
    encoded, kept up to date from what changed: the user's own conversations they touched
    (``UserState.touched``) and the conversations whose head or group changed on the node
    (``State.listed_since``). An entry is rebuilt only if its head is another object, or
    its user state or group record another value, than it was built from. When it cannot
    tell what changed (a change of the user it was not told the conversation of, the user
    read back from the store, or the node's log of changes went past it), it checks every
    entry that way: no entry is rebuilt that did not change, and no sort."""

    __slots__ = ("keys", "entries", "listed")

    def __init__(self) -> None:
        self.keys: list[tuple[int, int, str]] = []
        self.entries: dict[ConvId, _Entry] = {}
        self.listed = -1  # State.listed when last synced; -1: never

    def sync(self, user: UserState, state: State) -> None:
        changed = state.listed_since(self.listed) if self.listed >= 0 else None
        if user.touched is None or changed is None:
            convs: Iterable[ConvId] = list(user.convs)
            for gone in [c for c in self.entries if c not in user.convs]:
                self._update(user, state, gone)
        else:
            convs = set(user.touched)
            convs.update(changed)
        for conv in convs:
            self._update(user, state, conv)
        user.touched = set()
        self.listed = state.listed

    def _update(self, user: UserState, state: State, conv: ConvId) -> None:
        uc = user.convs.get(conv)
        old = self.entries.get(conv)
        if uc is None:
            if old is not None:
                self._unplace(old)
                del self.entries[conv]
            return
        head = state.heads.get(conv)
        group = state.groups.get(GroupId(int(conv[1:]))) if is_group(conv) else None
        record = group.record if group is not None else None
        view = user.views.get(conv)
        if old is not None:
            # a user or group read back from the store (another node changed it) is new
            # objects of mostly equal values: compared by value, its unchanged entries stay
            if old.head is head and (old.uc is uc or old.uc == uc) and (old.record is record or old.record == record) \
                    and (old.view is view or old.view == view):
                return
            self._unplace(old)
        entry = self.entries[conv] = _entry(user.id, conv, uc, head, record, view)
        if entry.key is not None:
            bisect.insort(self.keys, entry.key)

    def _unplace(self, entry: _Entry) -> None:
        if entry.key is not None:
            i = bisect.bisect_left(self.keys, entry.key)
            if i < len(self.keys) and self.keys[i] == entry.key:
                del self.keys[i]


def _entry(user: UserId, conv: ConvId, uc: UserConv, head: StoredMessage | None, record: GroupRecord | None,
           view: ConvView | None = None) -> _Entry:
    """A list entry of ``conv`` for ``user``; its key is None when it is not listed. What
    the user deleted for themselves or cleared is neither shown nor counted as unread: the
    last message is the newest they still see (or none)."""
    last_seq = head.seq if head is not None else 0
    if last_seq < uc.hidden_seq:  # hidden, and no message since
        return _Entry(uc, head, record, None, b"", view)
    kind, a, b = parse_conv(conv)
    if kind == GROUP:
        if record is None:  # not loaded (or gone)
            return _Entry(uc, head, record, None, b"", view)
        peer, group_id, name = 0, a, record.name
        last_ts = head.ts if head is not None else record.created_at
    else:
        if head is None:
            return _Entry(uc, head, record, None, b"", view)
        peer, group_id, name = (b if a == user else a), 0, ""
        last_ts = head.ts
    cursor = max(uc.read_seq, uc.joined_seq, uc.cleared_seq)
    unread = max(0, last_seq - cursor)
    shown = head
    mentioned = uc.mention_seq > cursor
    if head is not None and head.seq <= uc.cleared_seq:
        shown = None
    elif view is not None:
        if head is not None and view.head_seq == head.seq:
            shown = view.message
        if view.hidden:
            unread -= sum(1 for seq in view.hidden if cursor < seq <= last_seq)
            mentioned = mentioned and uc.mention_seq not in view.hidden
    if shown is not None:
        last_ts = shown.ts
    info = bodies.ConversationInfo(
        conv=conv, kind=kind, peer=peer, group=group_id, name=name, last_seq=last_seq, last_ts=last_ts,
        last_from=shown.sender if shown else 0, last_type=shown.type if shown else 0,
        last_text=shown.content[:_PREVIEW] if shown and shown.type == content.TEXT else "",
        unread=max(0, unread), read_seq=uc.read_seq,
        pinned=uc.pinned, muted=uc.muted, mentioned=mentioned,
        last_recalled=bool(shown and shown.recalled_by), cleared_seq=uc.cleared_seq, view_ver=uc.view_ver,
    )
    return _Entry(uc, head, record, (0 if uc.pinned else 1, -last_ts, conv), bodies.encode(info), view)


def _cursor(key: tuple[int, int, str]) -> str:
    return f"{key[0]}.{key[1]}.{key[2]}"


def _parse_cursor(cursor: str) -> tuple[int, int, str]:
    match = _CURSOR.fullmatch(cursor)
    if match is None:
        raise RequestError(f"not a cursor from this server: {cursor!r}", ErrorCode.INVALID_ARGUMENT)
    return int(match[1]), int(match[2]), match[3]
