"""Which user ids exist. Users are never deleted, so an id seen once exists for good: most
checks (a send's receiver, an invitee) are answered from memory."""
from __future__ import annotations

from ..backends.protocols import Store, UserId

__all__ = ["Users"]

_MAX_ID = 2**63 - 1  # ids are signed 64-bit in every store


class Users:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._known: set[UserId] = set()

    def known(self, user: UserId) -> bool:
        """True if ``user`` is known to exist without asking the store."""
        return user in self._known

    async def exists(self, user: UserId) -> bool:
        if user in self._known:
            return True
        if not 0 < user <= _MAX_ID or await self._store.get_user(user) is None:
            return False
        self._known.add(user)
        return True
