"""Presence: who is online and on which terminals, watches of other users' presence with
debounced pushes, and the user's settings (invisible; group_add, which groups read).

A user's presence is what the Routes say: online, with the terminals that have a live
route, unless the Routes mark the user hidden (the invisible setting, copied there at
each login and change): then offline to everyone but the user.

Who may see whom: the audience of a 1:1 message (``Audience``): friends, or anyone when
strangers may send; never a user who blocked the viewer (BLOCKED).

Watching crosses nodes as a group conversation does. A session that watches user F makes
its node take the channel ``w<F>`` (``Routes.subscribe``). The nodes where F's sessions
come and go note each change (``changed``); a fixed window of ``debounce`` seconds per
user collapses the changes inside it, and when it closes the node reads F's presence
from the Routes and, if it is not what this node pushed last, sends one PRESENCE_PUSH
per node that took the channel (``Delivery.to_conv``). Each of those nodes gives it to
its sessions that watch F and may still see F (``_deliver``). So a connection flapping
faster than the window costs each watcher at most one push per window and node where
the flapping user has sessions; a push may repeat the state the watcher has (two nodes of
the user may both push the same change).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Coroutine, Hashable

from ..backends.protocols import ConvId, NodeId, Routes, SetSettings, Store, UserId
from ..core_ext import bodies
from ..core_ext.codec import encode_frame
from ..core_ext.errors import RateLimited, RequestError
from ..core_ext.protocol import ErrorCode, Op
from .quota import UserBuckets
from .state import State, UserState

__all__ = ["Audience", "PresenceWatch", "CHANNEL"]

#: the first character of a presence channel's id: ``w<user id>``
CHANNEL = "w"
_LAST_MAX = 100_000  # users whose last pushed presence a node remembers


class Audience:
    """Who may reach whom one to one (the rule of 1:1 SEND, for presence, typing and
    calls): raises BLOCKED if ``to`` blocked the sender, NOT_FRIENDS if only friends may
    reach each other and they are not."""

    def __init__(self, strangers_may_send: bool) -> None:
        self.strangers_may_send = strangers_may_send

    def check(self, sender: UserState, to: UserId) -> None:
        if to in sender.blocked_by:
            raise RequestError(f"user {to} blocked you", ErrorCode.BLOCKED)
        if not self.strangers_may_send and to not in sender.friends:
            raise RequestError(f"user {to} is not your friend", ErrorCode.NOT_FRIENDS)

    def allows(self, sender: UserState, to: UserId) -> bool:
        return to not in sender.blocked_by and (self.strangers_may_send or to in sender.friends)


class PresenceWatch:
    """Presence queries, watches and the invisible setting of the users online on this node.

    ``call_later(delay, fn)`` schedules the debounce (the loop's, injected so tests can
    drive time); ``clock`` is the rate limiter's."""

    def __init__(self, node: NodeId, store: Store, routes: Routes, state: State, audience: Audience,
                 to_channel: Callable[[bytes, ConvId], None], refresh: Callable[..., None],
                 spawn: Callable[[Coroutine[Any, Any, Any]], object], call_later: Callable[[float, Callable[[], None]], Any],
                 debounce: float, rate: float, burst: int, max_watch: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._node = node
        self._store = store
        self._routes = routes
        self._state = state
        self._audience = audience
        self._to_channel = to_channel
        self._refresh = refresh
        self._spawn = spawn
        self._call_later = call_later
        self._debounce = debounce
        self._max_watch = max_watch
        self._buckets = UserBuckets(rate, float(burst), f"{rate:g} presence requests/s", clock)
        #: watched user -> session key -> (viewer, send)
        self._watchers: dict[UserId, dict[Hashable, tuple[UserId, Callable[[bytes], None]]]] = {}
        #: session key -> the users it watches
        self._watching: dict[Hashable, set[UserId]] = {}
        #: users whose debounce window is open
        self._pending: set[UserId] = set()
        #: user -> the presence this node pushed last
        self._last: dict[UserId, bodies.UserPresence] = {}

    # -- queries --------------------------------------------------------------------------------

    async def query(self, viewer: UserState, users: list[int]) -> bodies.PresenceList:
        """The presence of ``users`` (each once, in the order asked). RATE_LIMITED over the
        user's budget; the audience's refusal for a user the viewer may not see."""
        self._buckets.charge(viewer.id)
        for user in users:
            if user != viewer.id:
                self._audience.check(viewer, UserId(user))
        return bodies.PresenceList(users=await self._read([UserId(u) for u in dict.fromkeys(users)], viewer.id))

    async def _read(self, users: list[UserId], viewer: UserId) -> list[bodies.UserPresence]:
        terminals: dict[UserId, list[str]] = {}
        for route in await self._routes.lookup(users):
            terminals.setdefault(route.user_id, []).append(route.terminal)
        hidden = await self._routes.hidden([u for u in users if u != viewer])
        return [_presence(u, () if u in hidden else terminals.get(u, ())) for u in users]

    # -- watches ----------------------------------------------------------------------------------

    async def watch(self, viewer: UserState, key: Hashable, send: Callable[[bytes], None],
                    users: list[int]) -> bodies.PresenceList:
        """Watch ``users`` from the session ``key`` (PRESENCE_PUSH through ``send`` when
        their presence changes, until ``unwatch`` or ``forget``); returns their presence
        now. INVALID_ARGUMENT for oneself, RATE_LIMITED past ``max_watch`` per session."""
        self._buckets.charge(viewer.id)
        wanted = [UserId(u) for u in dict.fromkeys(users)]
        for user in wanted:
            if user == viewer.id:
                raise RequestError("watch others' presence, not your own", ErrorCode.INVALID_ARGUMENT)
            self._audience.check(viewer, user)
        watching = self._watching.setdefault(key, set())
        if len(watching | set(wanted)) > self._max_watch:
            if not watching:
                del self._watching[key]
            raise RateLimited(f"a session watches at most {self._max_watch} users")
        channels = []
        for user in wanted:
            watching.add(user)
            sessions = self._watchers.setdefault(user, {})
            if not sessions:
                channels.append(ConvId(f"{CHANNEL}{user}"))
            sessions[key] = (viewer.id, send)
        if channels:
            await self._routes.subscribe(self._node, channels)
        return bodies.PresenceList(users=await self._read(wanted, viewer.id))

    async def unwatch(self, key: Hashable, users: list[int]) -> None:
        """Stop watching ``users`` from the session ``key`` (those it does not watch are ignored)."""
        watching = self._watching.get(key, set())
        channels = []
        for user in [UserId(u) for u in users if u in watching]:
            watching.discard(user)
            sessions = self._watchers.get(user, {})
            sessions.pop(key, None)
            if not sessions:
                self._watchers.pop(user, None)
                channels.append(ConvId(f"{CHANNEL}{user}"))
        if not watching:
            self._watching.pop(key, None)
        if channels:
            await self._routes.unsubscribe(self._node, channels)

    def forget(self, key: Hashable) -> None:
        """The session ``key`` is gone: its watches end."""
        watching = self._watching.get(key)
        if watching:
            self._spawn(self.unwatch(key, list(watching)))

    def forget_user(self, user: UserId) -> None:
        """The user has no session here any more."""
        self._buckets.forget(user)

    def deliver(self, frame: bytes, channel: str) -> int:
        """A PRESENCE_PUSH of channel ``w<user>`` (from this node or another): to the local
        sessions watching that user that may still see them (a block or an unfriending
        since the watch began stops it here)."""
        user = UserId(int(channel[len(CHANNEL):]))
        users = self._state.users
        given = 0
        for viewer, send in list(self._watchers.get(user, {}).values()):
            state = users.get(viewer)
            if state is not None and self._audience.allows(state, user):
                send(frame)
                given += 1
        return given

    # -- changes --------------------------------------------------------------------------------

    async def bound(self, user: UserState) -> None:
        """A session of ``user`` is about to be routed here: an invisible user is marked
        hidden first, so that no query sees them online meanwhile."""
        if user.invisible:
            await self._routes.set_hidden(user.id, True)

    def changed(self, user: UserId) -> None:
        """A session of ``user`` came or went here (or their visibility changed): their
        watchers get the presence as it is when the debounce window closes."""
        if user in self._pending:
            return
        self._pending.add(user)
        self._call_later(self._debounce, lambda: self._spawn(self._push(user)))

    async def _push(self, user: UserId) -> None:
        self._pending.discard(user)
        (now,) = await self._read([user], UserId(0))
        if self._last.get(user) == now:
            return
        if len(self._last) >= _LAST_MAX:
            self._last.pop(next(iter(self._last)))
        self._last[user] = now
        self._to_channel(encode_frame(Op.PRESENCE_PUSH, 0, user, bodies.encode(now)), ConvId(f"{CHANNEL}{user}"))

    async def settings(self, me: UserState, invisible: bool | None, group_add: str | None = None) -> None:
        """Change the caller's settings (None: as it is), in one write, durable on return.
        Going invisible (or visible) is pushed to watchers as offline (or as the user's
        presence); ``group_add`` is read by services/groups.py."""
        async with self._state.lock(("settings", me.id)):  # two at once: neither undoes the other
            new_invisible = me.invisible if invisible is None else invisible
            new_group_add = me.group_add if group_add is None else group_add
            if new_invisible == me.invisible and new_group_add == me.group_add:
                return
            await self._store.apply(SetSettings(me.id, new_invisible, new_group_add))
            visibility = new_invisible != me.invisible
            me.invisible, me.group_add = new_invisible, new_group_add
            me.changed(convs=False)
            self._refresh(users=(me.id,))  # the user's other nodes read the settings back
            if visibility:
                await self._routes.set_hidden(me.id, new_invisible)
                self.changed(me.id)



def _presence(user: UserId, terminals: Any) -> bodies.UserPresence:
    return bodies.UserPresence(user=user, online=bool(terminals),
                               terminals=[bodies.TerminalInfo(terminal=t) for t in sorted(terminals)])
