"""The sessions connected to this node, by user and terminal; local fanout; and the
outbox that turns each session's frames of one loop iteration into one write."""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from ..backends.protocols import Envelope, UserId

if TYPE_CHECKING:
    from .session import Session

__all__ = ["Hub", "Outbox"]

log = logging.getLogger("edgeim.hub")


class Outbox:
    """Sessions with frames queued in this loop iteration. Replies and pushes are queued
    (``Session.send_frame``) and written at the end of the iteration, one write per
    session: a commit batch that acks 16 sends of one connection costs one syscall."""

    __slots__ = ("_loop", "_dirty")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._dirty: list[Session] = []

    def add(self, session: Session) -> None:
        """``session`` has just queued its first frame of this iteration."""
        if not self._dirty:
            self._loop.call_soon(self.flush)
        self._dirty.append(session)

    def flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for session in dirty:
            try:
                session.flush()
            except Exception:  # one broken socket must not hold back the others' frames
                log.exception("write failed", extra={"user": session.user_id})


class Hub:
    """One live session per (user, terminal) on this node."""

    __slots__ = ("_users",)

    def __init__(self) -> None:
        self._users: dict[UserId, dict[str, Session]] = {}

    def __len__(self) -> int:
        return sum(len(terminals) for terminals in self._users.values())

    def attach(self, session: Session) -> Session | None:
        """Register an authenticated session; returns the one it replaced, if any."""
        terminals = self._users.setdefault(session.user_id, {})
        old = terminals.get(session.terminal)
        terminals[session.terminal] = session
        return old if old is not session else None

    def detach(self, session: Session) -> bool:
        """Forget the session if it is still the live one of its (user, terminal)."""
        terminals = self._users.get(session.user_id)
        if not terminals or terminals.get(session.terminal) is not session:
            return False
        del terminals[session.terminal]
        if not terminals:
            del self._users[session.user_id]
        return True

    def get(self, user_id: UserId, terminal: str) -> Session | None:
        terminals = self._users.get(user_id)
        return terminals.get(terminal) if terminals else None

    def deliver(self, envelope: Envelope) -> int:
        """Queue the envelope's frame (the same bytes object) for its users' sessions here;
        returns how many sessions it was queued for."""
        if envelope.kick_terminal:
            for user_id in envelope.user_ids:
                session = self.get(user_id, envelope.kick_terminal)
                if session is not None:
                    session.kick(envelope.frame)
            return 0
        queued = 0
        for user_id in envelope.user_ids:
            terminals = self._users.get(user_id)
            if not terminals:
                continue
            for terminal, session in terminals.items():
                if user_id == envelope.skip_user and terminal == envelope.skip_terminal:
                    continue
                session.send_frame(envelope.frame)
                queued += 1
        return queued
