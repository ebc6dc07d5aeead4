"""Who is connected here, as the cluster sees it: a login makes its session the live one
of its (user, terminal) in the routing table and in the routes (kicking the one it
replaces, on this node or another), keeps the route alive, and a departure lets go."""
from __future__ import annotations

import logging
from typing import Any, Callable, Coroutine

from ..backends.protocols import NodeId, Routes, UserId
from ..core_ext import bodies
from ..core_ext.codec import encode_frame
from ..core_ext.errors import RateLimited, Unavailable
from ..core_ext.fanout import RoutingTable
from ..core_ext.protocol import ErrorCode, Op
from ..services.calls import Calls
from ..services.conversations import is_group
from ..services.delivery import Delivery
from ..services.presence import PresenceWatch
from ..services.state import State
from .session import AUTHENTICATED, Session

__all__ = ["Presence"]

log = logging.getLogger("edgeim.presence")


class Presence:
    def __init__(self, node: NodeId, route_ttl: float, table: RoutingTable, routes: Routes, delivery: Delivery,
                 state: State, spawn: Callable[[Coroutine[Any, Any, Any]], object], max_sessions: int,
                 offline: Callable[[UserId], None], watch: PresenceWatch | None = None,
                 calls: Calls | None = None) -> None:
        self.node = node
        # rich messaging: presence watches (a session's come and go) and calls (a device leaving its call)
        self._watch = watch
        self._calls = calls
        self._max_sessions = max_sessions
        self._offline = offline
        self._ttl = route_ttl
        self._table = table
        self._routes = routes
        self._delivery = delivery
        self._state = state
        self._spawn = spawn

    async def check_room(self, user_id: UserId, terminal: str) -> None:
        """TOO_MANY_SESSIONS if the user has as many live sessions, on any node, as they may
        (a login on a terminal they already use replaces that session: it always fits)."""
        try:
            routes = await self._routes.lookup((user_id,))
        except Exception as exc:  # Redis down or hung (its calls time out): the login may be retried
            raise _unavailable(exc) from exc
        terminals = {r.terminal for r in routes}
        terminals.discard(terminal)
        if len(terminals) >= self._max_sessions:
            raise RateLimited(f"at most {self._max_sessions} live sessions per account; log out of one first",
                              ErrorCode.TOO_MANY_SESSIONS)

    async def bind(self, session: Session) -> None:
        """Make ``session`` (just authenticated) the live one of its (user, terminal), here
        and in the routes; the one it replaces, on this node or another, is kicked."""
        first = not self._table.online(session.user_id)
        old = self._table.attach(session.peer)
        kick = _kicked_frame(session)
        if old is not None:
            old.owner.kick(kick)
        if first:
            self._delivery.online(session.user_id, self._group_convs(session.user_id))
        user = self._state.users.get(session.user_id)
        try:
            if self._watch is not None and user is not None:
                await self._watch.bound(user)
            previous = await self._routes.bind(session.user_id, session.terminal, self.node, self._ttl)
        except Exception as exc:
            raise _unavailable(exc) from exc
        if previous is not None and previous.node != self.node:
            await self._delivery.kick(previous.node, kick, session.user_id, session.terminal)
        if self._watch is not None:
            self._watch.changed(session.user_id)

    async def renew(self, session: Session) -> None:
        if not await self._routes.renew(session.user_id, session.terminal, self.node, self._ttl):
            await self.rebind(session)

    async def rebind(self, session: Session) -> None:
        """A live session whose route is gone: if a newer login took its (user, terminal)
        on another node, it is the stale one and goes; otherwise its route is restored
        (it expired, or the route store lost it)."""
        if session.closing or self._table.get(session.user_id, session.terminal) is not session.peer:
            return
        routes = await self._routes.lookup((session.user_id,))
        if any(r.terminal == session.terminal and r.node != self.node for r in routes):
            session.kick(_kicked_frame(session))
        else:
            await self._routes.bind(session.user_id, session.terminal, self.node, self._ttl)

    def release(self, session: Session) -> None:
        """The connection is gone: forget it if it was still the live one of its (user,
        terminal), so a kicked session never removes the route of its replacement."""
        if session.state != AUTHENTICATED:
            return
        if self._watch is not None:
            self._watch.forget(session)  # its watches, whether it was the live one or not
        if not self._table.detach(session.peer):
            return
        if self._calls is not None:
            self._calls.departed(session.user_id, session.terminal)
        if not self._table.online(session.user_id):
            self._delivery.offline(session.user_id, self._group_convs(session.user_id))
            self._offline(session.user_id)
        self._spawn(self._unbind(session.user_id, session.terminal))

    async def _unbind(self, user_id: UserId, terminal: str) -> None:
        await self._routes.unbind(user_id, terminal, self.node)
        if self._watch is not None:  # after the unbind: the push reads the routes
            self._watch.changed(user_id)

    def _group_convs(self, user_id: UserId) -> list[Any]:
        user = self._state.users.get(user_id)
        return [] if user is None else [conv for conv in user.convs if is_group(conv)]


def _unavailable(exc: BaseException) -> Unavailable:
    """A routes call failed (the backend is down, or did not answer within its timeout):
    5001, which the client may retry, rather than an internal error."""
    log.warning("routes unavailable", extra={"error": str(exc) or type(exc).__name__})
    return Unavailable("routing is unavailable; retry later")


def _kicked_frame(session: Session) -> bytes:
    body = bodies.Kicked(reason="replaced", terminal=session.terminal)
    return encode_frame(Op.KICKED, 0, session.user_id, bodies.encode(body))
