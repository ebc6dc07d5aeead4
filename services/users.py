"""Which user ids exist, and their public profiles, answered from memory where a node has
read them once: most checks (a send's receiver, an invitee) and the profile lookups
(USER_FIND, USERS).

Profiles change (PROFILE_SET) and accounts are deleted (ACCOUNT_DELETE, im user delete):
the node that makes the change updates its own copy, and every other node of a cluster is
told to forget its copy (``Delivery.forget_profiles``), so its next read comes from the
store. A node that may have missed such news (lost pushes) forgets every profile.
A deleted account keeps its id and username for good (never reused): it shows as
"Deleted user" in USERS, and no longer exists for USER_FIND, friend requests, invitations
or sends."""
from __future__ import annotations

from typing import Iterable

from ..backends.protocols import Store, User, UserId
from ..core_ext import bodies
from ..core_ext.errors import RequestError
from ..core_ext.protocol import ErrorCode

__all__ = ["Users", "DELETED_NICKNAME", "profile_of"]

_MAX_ID = 2**63 - 1  # ids are signed 64-bit in every store
#: profiles kept in memory; past this the cache starts over (a profile is one cheap read)
_MAX_PROFILES = 100_000
#: the nickname a deleted account shows
DELETED_NICKNAME = "Deleted user"


def profile_of(user: User) -> bodies.UserProfile:
    """What others see of ``user``."""
    if user.deleted:
        return bodies.UserProfile(user=user.id, username=user.username, nickname=DELETED_NICKNAME, deleted=True)
    return bodies.UserProfile(user=user.id, username=user.username, nickname=user.nickname, avatar=user.avatar,
                              bio=user.bio)


class Users:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._known: set[UserId] = set()  # ids that exist and are not deleted
        self._profiles: dict[UserId, bodies.UserProfile] = {}
        self._by_name: dict[str, UserId] = {}

    def known(self, user: UserId) -> bool:
        """True if ``user`` is known to exist (and not deleted) without asking the store."""
        return user in self._known

    async def exists(self, user: UserId) -> bool:
        """The account exists and is not deleted."""
        if user in self._known:
            return True
        if not 0 < user <= _MAX_ID:
            return False
        found = await self._store.get_user(user)
        if found is None:
            return False
        return not self._remember(found).deleted

    async def find(self, username: str) -> bodies.UserProfile:
        """The profile of the account named exactly ``username``; USER_NOT_FOUND if none
        (or it was deleted)."""
        user_id = self._by_name.get(username)
        profile = self._profiles.get(user_id) if user_id is not None else None
        if profile is None:
            user = await self._store.get_user_by_name(username)
            profile = self._remember(user) if user is not None else None
        if profile is None or profile.deleted:
            raise RequestError(f"no user named {username!r}", ErrorCode.USER_NOT_FOUND)
        return profile

    async def profiles(self, ids: list[UserId]) -> list[bodies.UserProfile]:
        """The profiles of ``ids`` that exist (deleted ones as such), in the order asked, each once."""
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

    def changed(self, user: User) -> bodies.UserProfile:
        """This node changed ``user`` in the store (its profile, or deleted it): keep the new one."""
        self.forget((user.id,))
        return self._remember(user)

    def forget(self, ids: Iterable[UserId]) -> None:
        """Another node changed these users: the next read comes from the store."""
        for user_id in ids:
            self._known.discard(user_id)
            profile = self._profiles.pop(user_id, None)
            if profile is not None:
                self._by_name.pop(profile.username, None)

    def clear(self) -> None:
        """News from other nodes may have been lost: forget every profile."""
        self._known.clear()
        self._profiles.clear()
        self._by_name.clear()

    def _remember(self, user: User) -> bodies.UserProfile:
        if len(self._profiles) >= _MAX_PROFILES:
            self._profiles.clear()
            self._by_name.clear()
        profile = profile_of(user)
        self._profiles[user.id] = profile
        self._by_name[user.username] = user.id
        if not user.deleted:
            self._known.add(user.id)
        return profile
