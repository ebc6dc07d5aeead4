"""Messages in private and group conversations: who may send (the admission of a message
before the pipeline appends it: services/pipeline.py), ids, sync and history within what
the reader may see, recall, edits, replies and search."""
from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from typing import AsyncIterator, Callable

import msgspec

from ..backends.protocols import (
    ConvId, EditMessage, GroupId, NewMessage, Quote, RecallMessage, SearchTimeout, ShareFiles, Store, StoredMessage,
    UserId,
)
from ..core_ext import bodies, content
from ..core_ext.errors import RateLimited, RequestError
from ..core_ext.frames import message_body  # the one mapping of a stored message to its body
from ..core_ext.protocol import MAX_BODY_SIZE, ErrorCode
from .conversations import Conversations, group_conv, is_group, private_conv
from .files import file_keys
from .groups import Groups
from .ids import IdGenerator
from .state import GroupState, State, UserState
from .users import Users

__all__ = ["Messages", "ReadSlots", "message_body", "RECALL_WINDOW", "EDIT_WINDOW", "REPLY_SNIPPET"]

_MAX_ID = 2**63 - 1  # ids are signed 64-bit in every store
#: content bytes a page can carry: a store read stops past this (the reply is cut there anyway)
PAGE_BYTES = MAX_BODY_SIZE
#: store reads (SYNC, HISTORY) of one user in flight at once
READS_PER_USER = 2
#: how long after sending a sender may recall a message, by default (seconds)
RECALL_WINDOW = 120.0
#: how long after sending a sender may edit a text message, by default (seconds: 48 h)
EDIT_WINDOW = 172800.0
#: characters of the quoted text a reply carries, by default
REPLY_SNIPPET = 100


class Messages:
    def __init__(self, store: Store, state: State, users: Users, ids: IdGenerator, conversations: Conversations,
                 groups: Groups, strangers_may_send: bool, recall_window: float = RECALL_WINDOW,
                 on_new: Callable[[NewMessage], None] | None = None, edit_window: float = EDIT_WINDOW,
                 reply_snippet: int = REPLY_SNIPPET) -> None:
        self._store = store
        self._state = state
        self._ids = ids
        self._conversations = conversations
        self._groups = groups
        self._strangers_may_send = strangers_may_send
        self._users = users
        self._reads = ReadSlots(READS_PER_USER)
        self._searching: set[UserId] = set()  # users with a search in progress (one each)
        self._recall_window_ms = int(recall_window * 1000)
        self._on_new = on_new  # told of each message built (the files it shares are kept)
        self._edit_window_ms = int(edit_window * 1000)
        self._snippet = reply_snippet

    # -- sending --------------------------------------------------------------------------------

    def prepare_now(self, sender: UserState, target: int, group: bool, cmid: str, type_: int, text: str,
                    mentions: list[int] | None = None, everyone: bool = False) -> NewMessage | None:
        """Check and build a send without I/O; None when something must be loaded first.
        ``text`` is the content as stored (``content.stored``); ``mentions`` and
        ``everyone`` are a group message's mentions."""
        if group:
            state = self._state.groups.get(GroupId(target))
            if state is None:
                return None
            self._groups.check_send(state, sender.id, int(time.time() * 1000))
            mentioned = _mentions(state, sender.id, mentions, everyone) if mentions or everyone else ""
            return self._new(group_conv(GroupId(target)), sender.id, target, (), cmid, type_, text, mentioned)
        if mentions or everyone:
            raise RequestError("mentions are for group messages", ErrorCode.INVALID_ARGUMENT)
        to = UserId(target)
        if to == sender.id:
            raise RequestError("cannot send to yourself", ErrorCode.INVALID_ARGUMENT)
        if not self._users.known(to) and to not in sender.friends:
            if not 0 < to <= _MAX_ID:
                raise RequestError(f"no user {to}", ErrorCode.USER_NOT_FOUND)
            return None
        self._check_private(sender, to)
        return self._new(private_conv(sender.id, to), sender.id, to, (sender.id, to), cmid, type_, text)

    async def prepare(self, sender: UserState, target: int, group: bool, cmid: str, type_: int, text: str,
                      mentions: list[int] | None = None, everyone: bool = False, reply_to: int = 0) -> NewMessage:
        """``prepare_now``, loading what it needs first; a reply (``reply_to``) also reads
        the message it quotes (never on ``prepare_now``'s path: a send that does not
        reply costs nothing more)."""
        new = self.prepare_now(sender, target, group, cmid, type_, text, mentions, everyone)
        if new is None:
            if group:
                await self._groups.get(target)  # NOT_FOUND if there is no such group
            elif not await self._users.exists(UserId(target)):
                raise RequestError(f"no user {target}", ErrorCode.USER_NOT_FOUND)
            new = self.prepare_now(sender, target, group, cmid, type_, text, mentions, everyone)
            assert new is not None
        if reply_to:
            quote = await self._quoted(sender.id, new.conv, reply_to)
            new = msgspec.structs.replace(new, reply_to=reply_to, quote=quote)
        return new

    async def _quoted(self, user: UserId, conv: ConvId, msg_id: int) -> Quote:
        """The message ``msg_id`` a reply of ``user`` in ``conv`` quotes; 3021
        REPLY_NOT_FOUND unless it is a message of ``conv`` that ``user`` may read."""
        floor = await self._conversations.floor(user, conv)
        async with self._reads.slot(user):
            found = await self._store.messages_by_id(conv, [msg_id])
        if not found or found[0].seq <= floor:
            raise RequestError(f"no message {msg_id} in {conv} to reply to", ErrorCode.REPLY_NOT_FOUND)
        return self._quote(found[0])

    def _quote(self, m: StoredMessage) -> Quote:
        if m.recalled_by:
            return Quote(m.id, m.seq, m.sender, m.type, "", True)
        return Quote(m.id, m.seq, m.sender, m.type, content.searchable(m.type, m.content)[:self._snippet])

    async def with_quotes(self, user: UserId, conv: str, rows: list[StoredMessage]) -> list[StoredMessage]:
        """``rows`` (of one conversation) with the replies' quotes resolved as the quoted
        messages are now (recalled, edited): one store read for the page, none for a page
        without replies."""
        wanted = [m.reply_to for m in rows if m.reply_to]
        if not wanted:
            return rows
        async with self._reads.slot(user):
            found = {q.id: self._quote(q) for q in await self._store.messages_by_id(ConvId(conv), wanted)}
        return [msgspec.structs.replace(m, quote=found.get(m.reply_to)) if m.reply_to else m for m in rows]

    def _check_private(self, sender: UserState, to: UserId) -> None:
        if to in sender.blocked_by:
            raise RequestError("this user blocked you", ErrorCode.BLOCKED)
        if not self._strangers_may_send and to not in sender.friends:
            raise RequestError("only friends may send to each other here", ErrorCode.NOT_FRIENDS)

    def _new(self, conv: ConvId, sender: UserId, to: int, members: tuple[UserId, ...], cmid: str, type_: int,
             text: str, mentions: str = "") -> NewMessage:
        # (positional: NewMessage's field order; a call with keywords matches each name)
        ts = int(time.time() * 1000)  # one reading: the id's millisecond is the message's timestamp
        new = NewMessage(conv, sender, to, cmid, type_, text, self._ids.next(ts), ts, members, mentions)
        if self._on_new is not None:
            self._on_new(new)
        return new

    def server_message(self, conv: ConvId, sender: UserId, to: int, cmid: str, type_: int, text: str,
                       members: tuple[UserId, ...]) -> NewMessage:
        """A message the server writes (a call record: services/calls.py), unchecked, for
        ``Pipeline.record``."""
        return self._new(conv, sender, to, members, cmid, type_, text)

    # -- forwarding -----------------------------------------------------------------------------

    async def forward(self, sender: UserState, target: int, group: bool, req: bodies.Forward,
                      most: int) -> tuple[list[NewMessage], tuple[str, ...]]:
        """FORWARD, checked and built: messages ``req.seqs`` of ``req.conv``, which the
        sender must be able to read, as new messages of the sender to ``target`` under the
        rules of SEND (friends, blocks, membership, mutes), each marked with its original
        sender (``NewMessage.fwd``; -1 with ``hide_sender``; a copy of a copy keeps the
        first mark). At most ``most`` at once (3025); recalled ones (3024) and call records
        (3026) are refused, and nothing is forwarded then. Returns the copies and the keys of
        the files they reference that name another conversation than the target's: give
        them to ``share_files`` before the copies are appended."""
        if len(req.seqs) > most:
            raise RequestError(f"at most {most} messages may be forwarded at once", ErrorCode.FORWARD_LIMIT)
        floor = await self._conversations.floor(sender.id, req.conv)  # FORBIDDEN: not a reader
        found = await self._read_seqs(sender.id, ConvId(req.conv), sorted(set(req.seqs)))
        sources: list[StoredMessage] = []
        for seq in req.seqs:
            message = found.get(seq)
            if message is None or seq <= floor:
                raise RequestError(f"no message {seq} in {req.conv}", ErrorCode.NOT_FOUND)
            if message.recalled_by:
                raise RequestError(f"message {seq} of {req.conv} was recalled", ErrorCode.MESSAGE_RECALLED)
            if message.type == content.CALL:
                raise RequestError(f"message {seq} of {req.conv} is a call record", ErrorCode.NOT_FORWARDABLE)
            sources.append(message)
        news: list[NewMessage] = []
        for i, message in enumerate(sources):
            new = await self.prepare(sender, target, group, f"{req.cmid}/{i}", message.type, message.content)
            mark = -1 if req.hide_sender else (message.fwd or message.sender)
            news.append(msgspec.structs.replace(new, fwd=mark))
        keys = [key for m in sources for key in file_keys(m.type, m.content) if key.split("/", 1)[0] != news[0].conv]
        return news, tuple(dict.fromkeys(keys))

    async def share_files(self, conv: ConvId, keys: tuple[str, ...]) -> None:
        """Files forwarded into ``conv``: its readers may download them (``ShareFiles``),
        durable when this returns, so before the copies that reference them arrive."""
        if keys:
            await self._store.apply(ShareFiles(conv, keys))

    async def _read_seqs(self, user: UserId, conv: ConvId, seqs: list[int]) -> dict[int, StoredMessage]:
        """Messages ``seqs`` (ascending) of ``conv``: one read per run of close seqs."""
        found: dict[int, StoredMessage] = {}
        i = 0
        while i < len(seqs):
            j = i
            while j + 1 < len(seqs) and seqs[j + 1] - seqs[i] < bodies.MAX_PAGE:
                j += 1
            async with self._reads.slot(user):
                rows = await self._store.messages_after(conv, seqs[i] - 1, seqs[j] - seqs[i] + 1)
            wanted = set(seqs[i:j + 1])
            found.update((m.seq, m) for m in rows if m.seq in wanted)
            i = j + 1
        return found

    # -- recalling ------------------------------------------------------------------------------

    async def recall(self, user: UserId, conv: str, seq: int) -> StoredMessage:
        """Make message ``seq`` a tombstone. Its sender may, within the recall window; a
        group's owner may recall any message, its admins any but the owner's, at any time.
        Returns the tombstone, durable; the pipeline pushes it (``Pipeline.recalled``)."""
        floor = await self._conversations.floor(user, conv)
        if seq <= floor:
            raise RequestError(f"no message {seq} in {conv}", ErrorCode.NOT_FOUND)
        async with self._reads.slot(user):
            found = await self._store.messages_after(ConvId(conv), seq - 1, 1)
        if not found or found[0].seq != seq:
            raise RequestError(f"no message {seq} in {conv}", ErrorCode.NOT_FOUND)
        message = found[0]
        if message.recalled_by:
            raise RequestError(f"message {seq} of {conv} was recalled already", ErrorCode.CONFLICT)
        now = int(time.time() * 1000)
        if not self._may_recall(user, message, now):
            if message.sender == user:
                raise RequestError(f"messages may be recalled for {self._recall_window_ms // 1000} s after"
                                   " they are sent", ErrorCode.RECALL_EXPIRED)
            raise RequestError("only the sender, or a group's owner or admins, may recall a message",
                               ErrorCode.FORBIDDEN)
        tombstone = await self._store.apply(RecallMessage(ConvId(conv), seq, user, now))
        if tombstone is None:  # another recall won the race
            raise RequestError(f"message {seq} of {conv} was recalled already", ErrorCode.CONFLICT)
        return tombstone

    # -- editing --------------------------------------------------------------------------------

    async def edit(self, user: UserState, conv: str, seq: int, text: str) -> StoredMessage:
        """Replace the text of message ``seq``: its sender may, within the edit window, as
        long as they may still send there (a member of the group, not muted; not blocked
        by the other user). Text messages only (3022 NOT_EDITABLE for other types and
        recalled ones); 3020 EDIT_EXPIRED past the window. Returns the edited message,
        durable, with its quote resolved; the pipeline pushes it (``Pipeline.edited``)."""
        floor = await self._conversations.floor(user.id, conv)
        if seq <= floor:
            raise RequestError(f"no message {seq} in {conv}", ErrorCode.NOT_FOUND)
        now = int(time.time() * 1000)
        if is_group(conv):
            group = self._state.groups.get(GroupId(int(conv[1:])))  # loaded by floor()
            if group is not None:
                self._groups.check_send(group, user.id, now)
        async with self._reads.slot(user.id):
            found = await self._store.messages_after(ConvId(conv), seq - 1, 1)
        if not found or found[0].seq != seq:
            raise RequestError(f"no message {seq} in {conv}", ErrorCode.NOT_FOUND)
        message = found[0]
        if message.sender != user.id:
            raise RequestError("only its sender may edit a message", ErrorCode.FORBIDDEN)
        if message.recalled_by:
            raise RequestError(f"message {seq} of {conv} was recalled", ErrorCode.NOT_EDITABLE)
        if message.type != content.TEXT:
            raise RequestError(f"only text messages (type {content.TEXT}) may be edited", ErrorCode.NOT_EDITABLE)
        if now - message.ts > self._edit_window_ms:
            raise RequestError(f"messages may be edited for {self._edit_window_ms // 1000} s after they are sent",
                               ErrorCode.EDIT_EXPIRED)
        if not is_group(conv):
            self._check_private(user, UserId(message.to))
        edited = await self._store.apply(EditMessage(ConvId(conv), seq, user.id, text, now))
        if edited is None:  # a recall won the race
            raise RequestError(f"message {seq} of {conv} was recalled", ErrorCode.NOT_EDITABLE)
        return (await self.with_quotes(user.id, conv, [edited]))[0]

    def _may_recall(self, user: UserId, message: StoredMessage, now: int) -> bool:
        if message.sender == user and now - message.ts <= self._recall_window_ms:
            return True
        if not is_group(message.conv):
            return False
        group = self._state.groups.get(GroupId(message.to))  # loaded by floor()
        member = group.members.get(user) if group is not None else None
        if member is None or member.role == "member":
            return False
        author = group.members.get(message.sender)
        return member.role == "owner" or author is None or author.role != "owner"

    # -- searching ------------------------------------------------------------------------------

    async def search(self, user: UserState, req: bodies.Search,
                     gone: Callable[[], bool] | None = None) -> tuple[list[StoredMessage], bool]:
        """The newest messages of the user's conversations (or of ``req.conv``) whose text
        contains ``req.query``, before message id ``req.before``. One search per user at a
        time (4000 RATE_LIMITED for a second one), answered within the store's search
        timeout or 3013 SEARCH_TIMEOUT; ``gone()`` true (the client left) stops it.
        Searches do not take the user's read slots: a SYNC never waits for one."""
        text = " ".join(req.query.split())
        if not text:
            raise RequestError("the query is blank", ErrorCode.INVALID_ARGUMENT)
        if user.id in self._searching:
            raise RateLimited("one search at a time: wait for the answer to the previous one")
        self._searching.add(user.id)
        try:
            if req.conv:
                convs = [(ConvId(req.conv), max(await self._conversations.floor(user.id, req.conv),
                                                self._conversations.cleared(user.id, req.conv)))]
            else:
                convs = [(conv, max(uc.joined_seq, uc.cleared_seq)) for conv, uc in user.convs.items()]
            rows = await self._store.search(convs, text, req.before, req.limit + 1, gone)
        except SearchTimeout as exc:
            raise RequestError(f"{exc}: search one conversation, or a longer text",
                               ErrorCode.SEARCH_TIMEOUT) from None
        finally:
            self._searching.discard(user.id)
        return rows[:req.limit], len(rows) > req.limit

    # -- reading --------------------------------------------------------------------------------

    async def sync(self, user: UserId, conv: str, after_seq: int, limit: int) -> tuple[list[StoredMessage], bool]:
        # what the user cleared from their view (CLEAR_HISTORY) is read as before their join
        floor = max(await self._conversations.floor(user, conv), self._conversations.cleared(user, conv))
        async with self._reads.slot(user):
            rows = await self._store.messages_after(ConvId(conv), max(after_seq, floor), limit + 1, PAGE_BYTES)
        return rows[:limit], len(rows) > limit or _cut(rows)

    async def changed(self, user: UserId, conv: str, up_to_seq: int, after_rev: int,
                      limit: int) -> tuple[list[StoredMessage], int, bool]:
        """SYNC ``changes_after``: the messages the user may read, up to ``up_to_seq``,
        changed in place (edited, their reactions changed, recalled) after change revision
        ``after_rev``, as they are now (quotes resolved), each once, by revision, at most
        ``limit``; the revision they are complete up to, and whether more follow."""
        # what the user cleared from their view (CLEAR_HISTORY) is read as before their join
        floor = max(await self._conversations.floor(user, conv), self._conversations.cleared(user, conv))
        async with self._reads.slot(user):
            rows, top = await self._store.messages_changed(ConvId(conv), after_rev, up_to_seq, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        rev = rows[-1].rev if more else max(top, after_rev)
        return await self.with_quotes(user, conv, [m for m in rows if m.seq > floor]), rev, more

    async def history(self, user: UserId, conv: str, before_seq: int, limit: int) -> tuple[list[StoredMessage], bool]:
        floor = max(await self._conversations.floor(user, conv), self._conversations.cleared(user, conv))
        async with self._reads.slot(user):
            rows = await self._store.messages_before(ConvId(conv), before_seq, limit + 1, PAGE_BYTES)
        readable = [m for m in rows if m.seq > floor]
        # cut by bytes before reaching the floor: older readable ones may follow
        return readable[-limit:], len(readable) > limit or (len(readable) == len(rows) > 0 and _cut(rows))


def _cut(rows: list[StoredMessage]) -> bool:
    """Did the store stop reading at ``PAGE_BYTES`` (so more may follow, though fewer rows
    than asked came)? Its bytes are the stored text's, which can be more than the page's
    MessagePack needs: the page alone would not know it was cut."""
    total = 0
    for m in rows:
        total += len(m.content.encode())
    return total > PAGE_BYTES


def _mentions(group: GroupState, sender: UserId, mentions: list[int] | None, everyone: bool) -> str:
    """The stored form of a group message's mentions (``NewMessage.mentions``), checked:
    members only; everyone only from the owner and admins."""
    if everyone:
        if group.members[sender].role == "member":
            raise RequestError("only the owner and admins may mention everyone", ErrorCode.FORBIDDEN)
        return "*"
    users = list(dict.fromkeys(mentions or ()))
    strangers = [u for u in users if u not in group.members]
    if strangers:
        raise RequestError(f"not members of the group: {strangers[:5]}", ErrorCode.INVALID_ARGUMENT)
    return ",".join(map(str, users))


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
