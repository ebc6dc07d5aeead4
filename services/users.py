"""Which user ids exist, and their public profiles. Users are never deleted and their
usernames and nicknames never change, so an id seen once exists for good and a profile read
once stays true: most checks (a send's receiver, an invitee) and the profile lookups
(USER_FIND, USERS) are answered from memory."""
from __future__ import annotations

from ..backends.protocols import Store, User, UserId
from ..core_ext import bodies
from ..core_ext.errors import RequestError
from ..core_ext.protocol import ErrorCode

__all__ = ["Users"]

_MAX_ID = 2**63 - 1  # ids are signed 64-bit in every store
#: profiles kept in memory; past this the cache starts over (a profile is one cheap read)
_MAX_PROFILES = 100_000


class Users:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._known: set[UserId] = set()
        self._profiles: dict[UserId, bodies.UserProfile] = {}
        self._by_name: dict[str, UserId] = {}

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

    async def find(self, username: str) -> bodies.UserProfile:
        """The profile of the account named exactly ``username``; USER_NOT_FOUND if none."""
        user_id = self._by_name.get(username)
        if user_id is not None:
            return self._profiles[user_id]
        user = await self._store.get_user_by_name(username)
        if user is None:
            raise RequestError(f"no user named {username!r}", ErrorCode.USER_NOT_FOUND)
        return self._remember(user)

    async def profiles(self, ids: list[UserId]) -> list[bodies.UserProfile]:
        """The profiles of ``ids`` that exist, in the order asked, each once."""
        found: list[bodies.UserProfile] = []
        for user_id in dict.fromkeys(ids):
            profile = self._profiles.get(user_id)
            if profile is None:
                user = await self._store.get_user(user_id) if 0 < user_id <= _MAX_ID else None
                if user is None:
                    continue
                profile = self._remember(user)
            found.append(profile)
        return found

    def _remember(self, user: User) -> bodies.UserProfile:
        if len(self._profiles) >= _MAX_PROFILES:
            self._profiles.clear()
            self._by_name.clear()
        profile = bodies.UserProfile(user=user.id, username=user.username, nickname=user.nickname)
        self._profiles[user.id] = profile
        self._by_name[user.username] = user.id
        self._known.add(user.id)
        return profile
