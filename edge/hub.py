"""The sessions connected to this node, by user and terminal, and local fanout."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..backends.protocols import Envelope, UserId
from ..core_ext.fanout import send_all

if TYPE_CHECKING:
    from .session import Session

__all__ = ["Hub"]


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
        """Send the envelope's frame to its users here; returns how many sessions got it."""
        if envelope.kick_terminal:
            for user_id in envelope.user_ids:
                session = self.get(user_id, envelope.kick_terminal)
                if session is not None:
                    session.kick(envelope.frame)
            return 0
        transports = []
        for user_id in envelope.user_ids:
            terminals = self._users.get(user_id)
            if not terminals:
                continue
            for terminal, session in terminals.items():
                if user_id == envelope.skip_user and terminal == envelope.skip_terminal:
                    continue
                transports.append(session.transport)
        return send_all(transports, envelope.frame)
