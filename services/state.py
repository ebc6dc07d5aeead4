"""What a node holds in memory so that lists are answered without a store query: each
loaded user's friends, requests, blocks and conversation states; each loaded group with
its members; and the newest message of every conversation it has seen.

The store is the truth and this is a cache of it that the write paths keep coherent: a
service changes the store (``Store.apply``) and, once that is durable, the loaded objects
here. On one node (embedded defaults) the node is the only writer, so the cache is exact.
Loads are single-flight: callers asking for the same user or group while it loads share
one store read, and a change that lands during a load makes it load again.
"""
from __future__ import annotations

import asyncio
import collections
import itertools
import weakref
from typing import Any, Awaitable, Callable, Iterable, TypeVar

import msgspec

from ..backends.protocols import (
    ConvId, Friend, FriendRequest, GroupId, GroupRecord, GroupRecords, Invitation, JoinRequest, Member, Store,
    StoredMessage, UserConv, UserId,
)

__all__ = ["UserState", "GroupState", "State", "ConvView", "ROLE_RANK"]

K = TypeVar("K")
V = TypeVar("V")

_CACHE_MAX = 64  # cached replies per user
#: conversations whose head or group changed, remembered for the users' list indexes
#: (``State.listed_since``); a user whose index is further behind checks every entry
_LIST_LOG = 16384
#: metrics (ops/metrics.py): list replies served from a user's cache, and built
LIST_CACHE = [0, 0]

#: owner > admin > member: an actor may act on members of a lower rank only
ROLE_RANK = {"owner": 3, "admin": 2, "member": 1}


class ConvView(msgspec.Struct, frozen=True):
    """What a user deleted for themselves in one conversation that their list shows
    (services/views.py): frozen, replaced at each change, so list entries built from it
    know when they are stale."""

    #: seqs the user hid above their read cursor (not counted as unread)
    hidden: tuple[int, ...] = ()
    #: while the conversation's newest message is ``head_seq`` (one the user hid), the
    #: list shows ``message`` instead, the newest they still see (None: none); 0: no stand-in
    head_seq: int = 0
    message: StoredMessage | None = None


class UserState:
    """One user's social graph and conversation states. ``version`` grows with every change,
    so cached replies built from it know when they are stale."""

    __slots__ = ("id", "friends", "requests_in", "requests_out", "blocked", "blocked_by", "convs", "version",
                 "cache", "invisible", "conv_index", "touched", "invitations", "group_add", "views")

    def __init__(self, user_id: UserId) -> None:
        self.id = user_id
        self.friends: dict[UserId, Friend] = {}
        self.requests_in: dict[UserId, FriendRequest] = {}
        self.requests_out: dict[UserId, FriendRequest] = {}
        self.blocked: set[UserId] = set()
        self.blocked_by: set[UserId] = set()
        self.convs: dict[ConvId, UserConv] = {}
        #: the user's setting: others see them offline (services/presence.py)
        self.invisible = False
        #: pending invitations to groups, by group (services/groups.py)
        self.invitations: dict[GroupId, Invitation] = {}
        #: who may add the user to a group; "" never chosen (the node's default)
        self.group_add = ""
        self.version = 0
        #: replies built from this state, by key; valid while their recorded versions hold
        self.cache: dict[Any, tuple[Any, bytes]] = {}
        #: the conversation list in its order, built at the first CONVERSATIONS and kept
        #: from what changed since (services/conversations.py ``ConvIndex``)
        self.conv_index: Any = None
        #: conversations whose state changed since the index last looked; None: any may have
        self.touched: set[ConvId] | None = None
        #: what the user deleted for themselves, per conversation, that their list shows
        self.views: dict[ConvId, ConvView] = {}

    def changed(self, conv: ConvId | None = None, *, convs: bool = True) -> None:
        """Something of the user changed: ``conv``'s state if given; with ``convs=False``
        nothing of their conversations (friends, blocks, settings); else anything."""
        self.version += 1
        self.cache.clear()
        if not convs or self.touched is None:
            return
        if conv is None:
            self.touched = None
        else:
            self.touched.add(conv)

    def cached(self, key: Any, versions: Any) -> bytes | None:
        """A reply cached under ``key`` if it was built at ``versions``."""
        found = self.cache.get(key)
        if found is not None and found[0] == versions:
            LIST_CACHE[0] += 1
            return found[1]
        LIST_CACHE[1] += 1
        return None

    def keep(self, key: Any, versions: Any, body: bytes) -> bytes:
        if len(self.cache) >= _CACHE_MAX:  # many cursors between two changes: start over
            self.cache.clear()
        self.cache[key] = (versions, body)
        return body


class GroupState:
    """One group: its record, members, pending join requests and invitations."""

    __slots__ = ("record", "members", "requests", "invitations", "dissolved", "version", "cache", "_sorted")

    def __init__(self, records: GroupRecords) -> None:
        self.record: GroupRecord = records.group
        self.members: dict[UserId, Member] = {m.user: m for m in records.members}
        self.requests: dict[UserId, JoinRequest] = {r.user: r for r in records.requests}
        self.invitations: dict[UserId, Invitation] = {i.invitee: i for i in records.invitations}
        #: set once its dissolution is durable: a change that waited its turn finds no group
        self.dissolved = False
        self.version = 0
        #: replies built from this group (member pages), until its next change
        self.cache: dict[Any, bytes] = {}
        self._sorted: list[UserId] | None = None

    @property
    def id(self) -> GroupId:
        return self.record.id

    def changed(self) -> None:
        self.version += 1
        self.cache.clear()
        self._sorted = None

    def sorted_members(self) -> list[UserId]:
        """Member ids ascending (the order of member pages), cached until the next change."""
        if self._sorted is None:
            self._sorted = sorted(self.members)
        return self._sorted

    def admins(self) -> list[UserId]:
        return [u for u, m in self.members.items() if m.role != "member"]


async def _after_previous(previous: asyncio.Future[Any], work: Any) -> None:
    try:
        await previous
    except Exception:  # logged by whoever waited for it; this reload reads anew anyway
        pass
    await work


class _Loader:
    """Single-flight loads into a dict: one store read per key at a time, repeated when
    the key was touched while it ran."""

    def __init__(self, loaded: dict[Any, Any], load: Callable[[Any], Awaitable[Any]],
                 on_loaded: Callable[[Any], None] | None = None) -> None:
        self.loaded = loaded
        self._load = load
        self._on_loaded = on_loaded
        self._loading: dict[Any, asyncio.Future[Any]] = {}
        self._stale: set[Any] = set()

    async def get(self, key: Any) -> Any:
        found = self.loaded.get(key)
        if found is not None:
            return found
        pending = self._loading.get(key)
        if pending is None:
            pending = self._loading[key] = asyncio.ensure_future(self._run(key))
            pending.add_done_callback(lambda _: self._loading.pop(key, None))
        return await asyncio.shield(pending)

    async def _run(self, key: Any) -> Any:
        while True:
            self._stale.discard(key)
            value = await self._load(key)
            if key not in self._stale:
                break
        if value is not None:
            self.loaded[key] = value
            if self._on_loaded is not None:
                self._on_loaded(key)
        return value

    def touch(self, key: Any) -> None:
        """A change of ``key`` became durable: a load running now read too early."""
        if key in self._loading:
            self._stale.add(key)


class State:
    """The node's loaded users, groups and conversation heads (see the module docstring)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.users: dict[UserId, UserState] = {}
        self.groups: dict[GroupId, GroupState] = {}
        #: conversation -> its newest message
        self.heads: dict[ConvId, StoredMessage] = {}
        #: grows with every new head: cached lists that order by last message check it
        self.heads_version = 0
        #: grows with every change of any group (names and sizes shown in lists)
        self.groups_version = 0
        #: conversation -> loaded users whose list shows a stand-in for its head (``ConvView.message``):
        #: a recall of that stand-in reaches them (may name users gone or views changed since)
        self.view_heads: dict[ConvId, set[UserId]] = {}
        #: the conversations whose head or group changed, newest last; ``listed`` counts
        #: every one ever appended (the users' list indexes catch up from it)
        self._listed_log: collections.deque[ConvId] = collections.deque(maxlen=_LIST_LOG)
        self.listed = 0
        self._locks: weakref.WeakValueDictionary[Any, asyncio.Lock] = weakref.WeakValueDictionary()
        #: reloads under way because another node changed the thing ("u:1", "g:2" -> task):
        #: a request that changes it waits for them (``settled``), so it checks fresh state
        self.reloading: dict[str, asyncio.Future[Any]] = {}
        self._users = _Loader(self.users, self._load_user)
        self._groups = _Loader(self.groups, self._load_group, self._group_listed)

    async def user(self, user_id: UserId) -> UserState:
        return await self._users.get(user_id)

    async def group(self, group_id: GroupId) -> GroupState | None:
        return await self._groups.get(group_id)

    def lock(self, key: Any) -> asyncio.Lock:
        """The lock that makes the changes of one thing (a group, a pair of users, a user's
        conversation) run one at a time on this node; gone when nobody holds or waits for it."""
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def touch_user(self, user_id: UserId) -> None:
        self._users.touch(user_id)

    def touch_group(self, group_id: GroupId) -> None:
        self._groups.touch(group_id)

    def listed_since(self, count: int) -> Iterable[ConvId] | None:
        """The conversations whose head or group changed since ``listed`` was ``count``
        (repeats possible), or None if that is further back than remembered."""
        behind = self.listed - count
        if behind > len(self._listed_log):
            return None
        return itertools.islice(reversed(self._listed_log), behind)

    def _list_changed(self, conv: ConvId) -> None:
        self._listed_log.append(conv)
        self.listed += 1

    def _group_listed(self, group_id: GroupId) -> None:
        self._list_changed(ConvId(f"g{group_id}"))

    def put_head(self, message: StoredMessage) -> None:
        head = self.heads.get(message.conv)
        if head is None or head.seq < message.seq:
            self.heads[message.conv] = message
            self.heads_version += 1
            self._listed_log.append(message.conv)
            self.listed += 1

    def replace_head(self, message: StoredMessage) -> None:
        """``message`` is a new version of a stored one (a tombstone): it replaces the head
        if it is the head."""
        head = self.heads.get(message.conv)
        if head is not None and head.seq == message.seq:
            self.heads[message.conv] = message
            self.heads_version += 1
            self._list_changed(message.conv)

    def group_changed(self, group: GroupState) -> None:
        group.changed()
        self.groups_version += 1
        self._group_listed(group.id)

    async def reload_user(self, user_id: UserId) -> tuple[UserState, UserState] | None:
        """Read a loaded user again from the store (another node changed them): (old, new),
        or None if this node does not hold them."""
        old = self.users.get(user_id)
        if old is None:
            return None
        self._users.touch(user_id)
        new = await self._load_user(user_id)
        if self.users.get(user_id) is not old:  # evicted or replaced meanwhile
            return None
        # the list index goes on: it checks every entry (touched None) and rebuilds those
        # whose state read back differs from what it was built from
        new.conv_index = old.conv_index
        self.users[user_id] = new
        return old, new

    async def reload_group(self, group_id: GroupId) -> None:
        """Read a loaded group again from the store (another node changed it)."""
        old = self.groups.get(group_id)
        if old is None:
            return
        self._groups.touch(group_id)
        new = await self._load_group(group_id)
        if self.groups.get(group_id) is not old:
            return
        if new is None:
            old.dissolved = True
            self.groups.pop(group_id, None)
        else:
            self.groups[group_id] = new
        self.groups_version += 1
        self._group_listed(group_id)

    def reload(self, key: str, work: Any) -> None:
        """Run ``work`` (a coroutine reloading ``key``) and let ``settled`` wait for it.
        A reload of a key under way goes first: two never overlap, so ``settled`` waits
        for both (a change may be announced twice, and the later read must not finish
        while the earlier one still works)."""
        previous = self.reloading.get(key)
        task = asyncio.ensure_future(work if previous is None else _after_previous(previous, work))
        self.reloading[key] = task
        task.add_done_callback(lambda done: self.reloading.pop(key, None) if self.reloading.get(key) is done else None)

    async def settled(self, *keys: str) -> None:
        """Wait for the reloads of these keys under way (see ``reload``)."""
        for key in keys:
            task = self.reloading.get(key) if key else None
            if task is not None:
                await asyncio.shield(task)

    def forget_user(self, user_id: UserId) -> None:
        """The user has no session here any more: another node may change them now, and
        this node would not hear of it."""
        self.users.pop(user_id, None)

    def forget_group(self, group_id: GroupId) -> None:
        self.groups.pop(group_id, None)
        self.groups_version += 1
        self._group_listed(group_id)

    async def _load_user(self, user_id: UserId) -> UserState:
        records = await self._store.load_user(user_id)
        state = UserState(user_id)
        state.friends = {f.user: f for f in records.friends}
        state.requests_in = {r.sender: r for r in records.requests_in}
        state.requests_out = {r.receiver: r for r in records.requests_out}
        state.blocked = set(records.blocked)
        state.blocked_by = set(records.blocked_by)
        state.convs = {c.conv: c for c in records.convs}
        state.invisible = records.invisible
        state.invitations = {i.group: i for i in records.invitations}
        state.group_add = records.group_add
        hidden: dict[ConvId, list[int]] = {}
        for conv, seq in records.hidden:
            hidden.setdefault(conv, []).append(seq)
        for conv, seqs in hidden.items():
            state.views[conv] = ConvView(tuple(seqs))
        for vh in records.view_heads:
            state.views[vh.conv] = ConvView(tuple(hidden.get(vh.conv, ())), vh.head_seq, vh.message)
            if vh.message is not None:
                self.view_heads.setdefault(vh.conv, set()).add(user_id)
        for head in records.heads:
            self.put_head(head)
        return state

    async def _load_group(self, group_id: GroupId) -> GroupState | None:
        records = await self._store.load_group(group_id)
        if records is None:
            return None
        if records.head is not None:
            self.put_head(records.head)
        return GroupState(records)
