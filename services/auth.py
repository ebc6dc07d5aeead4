"""Accounts and credentials: registration, password login, JWT tokens and their revocation.

A token carries the account's credential epoch (claim ``ep``; tokens without it: 0). A
new password moves the epoch on in the store, so TOKEN_LOGIN refuses every token issued
before it by comparing two integers of the user's row, which it reads anyway; LOGOUT
revokes one token by its id.

Passwords are stored as argon2id hashes (PHC strings, ``$argon2id$v=19$m=...``) at OWASP's
minimum cost by default (19 MiB, 2 passes, 1 lane); hashes of an older kind or cost
(scrypt, from earlier versions) still verify and are replaced at the user's next
successful login, so every account converges on the same cost and login time.

Hashing is slow on purpose, so it is the one thing a client can make the node do a lot
of with a little traffic. ``Hashing`` bounds it: one hash per core at a time, a bounded
backlog (over it: UNAVAILABLE at once), a budget per client address (over it:
RATE_LIMITED at once), and work whose requester has gone is dropped before it starts.
Token logins never hash.

Guessing one account's password from many addresses passes every per-address budget, so
``Guesses`` limits the password checks of each account (per node): one at a time, and
after a few failures none for a window that doubles with each further failure. It is
consulted before hashing, so a flood against one account costs a few hashes, and the
other users' logins keep the workers.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import os
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import jwt
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from ..backends.protocols import RevokeToken, SetCredentials, SetPasswordHash, Store, User, UserId, UsernameTaken
from ..core_ext.errors import AuthError, RateLimited, RequestError, Unavailable
from ..core_ext.protocol import ErrorCode

__all__ = ["AuthService", "Identity", "Passwords", "Hashing", "Guesses", "Gone"]

T = TypeVar("T")
log = logging.getLogger("edgeim.auth")
_MAX_ID = 2**63 - 1


class Gone(Unavailable):
    """The requester of a hash left before it started: nobody is waiting for the answer,
    so the work is dropped (the error frame to a closed connection goes nowhere)."""


class Passwords:
    """argon2id hashing at one cost; verification of that and of older hashes."""

    def __init__(self, memory_kib: int = 19456, time_cost: int = 2) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=1, type=Type.ID)
        # verified when the user does not exist, so that a login takes as long for a
        # missing user as for a wrong password (no user enumeration by timing)
        self.dummy = self._hasher.hash(secrets.token_hex(16))

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password: str, stored: str) -> bool:
        if stored.startswith("scrypt$"):
            return _verify_scrypt(password, stored)
        try:
            return self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        return stored.startswith("scrypt$") or self._hasher.check_needs_rehash(stored)


class Hashing:
    """Runs password hashes off the loop within bounds (see the module docstring).

    ``rate`` and ``burst`` make a token bucket per client address; ``backlog`` bounds the
    hashes waiting for a worker. The per-address table forgets the least recently seen
    addresses beyond ``max_addresses``.
    """

    def __init__(self, workers: int, backlog: int, rate: float, burst: int,
                 clock: Callable[[], float] = time.monotonic, max_addresses: int = 100_000) -> None:
        self._workers = asyncio.Semaphore(workers)
        self._backlog = backlog
        self._waiting = 0
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._max_addresses = max_addresses
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # address -> (tokens, at)

    def set_limits(self, rate: float, burst: int, backlog: int) -> None:
        """New per-address budget and backlog (SIGHUP); addresses start again from full."""
        self._rate, self._burst, self._backlog = rate, float(burst), backlog
        self._buckets.clear()

    def _charge(self, address: str) -> None:
        now = self._clock()
        tokens, at = self._buckets.pop(address, (self._burst, now))
        tokens = min(self._burst, tokens + (now - at) * self._rate)
        if tokens < 1.0:
            self._buckets[address] = (tokens, now)
            wait = (1.0 - tokens) / self._rate
            raise RateLimited(f"too many password attempts from your address; retry in {wait:.1f} s")
        self._buckets[address] = (tokens - 1.0, now)
        if len(self._buckets) > self._max_addresses:
            self._buckets.popitem(last=False)

    async def run(self, address: str, wanted: Callable[[], bool], fn: Callable[..., T], *args: Any) -> T:
        self._charge(address)
        if self._waiting >= self._backlog:
            raise Unavailable("the server is busy checking passwords; retry shortly")
        self._waiting += 1
        try:
            async with self._workers:
                if not wanted():
                    log.debug("password check dropped", extra={"address": address})
                    raise Gone("the client left")
                return await asyncio.to_thread(fn, *args)
        finally:
            self._waiting -= 1


class Guesses:
    """Password checks per account, on this node (see the module docstring).

    An account is a username as the store matches it (case-folded), whether or not it
    exists, so that refusals tell nothing about which names exist. Its password checks run
    one at a time (the others wait their turn, not hashing). After ``free`` consecutive
    failures it is locked for ``first_lock`` seconds, twice as long after each further one,
    at most ``max_lock``; a LOGIN of a locked account, or one whose turn comes while it is locked,
    is refused with RATE_LIMITED before any hashing. A successful login, or a day without a failure,
    clears the count. Reconnecting changes nothing: the count is the account's, not the
    connection's. At most ``max_accounts`` counts are kept, the least recently failed
    forgotten first (a locked one only when a few in a row are locked).
    """

    #: seconds without a failure after which an account's count is forgotten
    FORGET_AFTER = 24 * 3600.0

    def __init__(self, free: int, first_lock: float, max_lock: float, clock: Callable[[], float] = time.monotonic,
                 max_accounts: int = 100_000) -> None:
        self._free = free
        self._first_lock = first_lock
        self._max_lock = max_lock
        self._clock = clock
        self._max_accounts = max_accounts
        #: account -> (consecutive failures, locked until, last failure)
        self._failures: OrderedDict[str, tuple[int, float, float]] = OrderedDict()
        #: account -> (its turn lock, how many hold or wait for it)
        self._turns: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    def set_limits(self, free: int, first_lock: float, max_lock: float) -> None:
        self._free, self._first_lock, self._max_lock = free, first_lock, max_lock

    @staticmethod
    def key(username: str) -> str:
        return username.casefold()

    def _refuse_if_locked(self, account: str) -> None:
        entry = self._failures.get(account)
        if entry is None:
            return
        now = self._clock()
        _, until, last = entry
        if now - last >= self.FORGET_AFTER:
            del self._failures[account]
        elif now < until:
            raise RateLimited(f"too many failed logins for this account; retry in {max(1, round(until - now))} s")

    async def begin(self, account: str) -> None:
        """Before hashing: wait for the account's turn; RATE_LIMITED if it is locked."""
        self._refuse_if_locked(account)
        lock, users = self._turns.setdefault(account, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            await lock.acquire()
        except BaseException:
            self._leave(account, users)
            raise
        try:
            self._refuse_if_locked(account)  # failures while it waited
        except RateLimited:
            lock.release()
            self._leave(account, users)
            raise

    def end(self, account: str, ok: bool | None) -> None:
        """After the check: ``ok`` True (right password), False (wrong), None (no verdict:
        refused or dropped before it ran). Recorded before the next in line goes."""
        if ok:
            self._failures.pop(account, None)
        elif ok is False:
            now = self._clock()
            failures, _, last = self._failures.pop(account, (0, 0.0, now))
            if now - last >= self.FORGET_AFTER:
                failures = 0
            failures += 1
            over = failures - self._free  # the free-th failure locks for first_lock
            until = now + min(self._max_lock, self._first_lock * 2.0 ** min(over, 64)) if over >= 0 else 0.0
            self._failures[account] = (failures, until, now)
            self._trim(now)
        lock, users = self._turns[account]
        lock.release()
        self._leave(account, users)

    def _leave(self, account: str, users: list[int]) -> None:
        users[0] -= 1
        if not users[0]:
            del self._turns[account]

    def _trim(self, now: float) -> None:
        for _ in range(8):  # keep a few locked accounts; past that, the oldest goes anyway
            if len(self._failures) <= self._max_accounts:
                return
            account, entry = self._failures.popitem(last=False)
            if entry[1] > now:
                self._failures[account] = entry
        while len(self._failures) > self._max_accounts:
            self._failures.popitem(last=False)


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: UserId
    token: str
    expires_at: int  # unix seconds
    token_id: str  # the token's jti: what LOGOUT revokes


class AuthService:
    def __init__(self, store: Store, secret: str, token_ttl: float, passwords: Passwords, hashing: Hashing,
                 guesses: Guesses | None = None) -> None:
        self._store = store
        self._secret = secret
        self._ttl = token_ttl
        self._passwords = passwords
        self._hashing = hashing
        self._guesses = guesses or Guesses(5, 1.0, 900.0)

    async def register(self, username: str, password: str, nickname: str, address: str,
                       wanted: Callable[[], bool]) -> User:
        pw_hash = await self._hashing.run(address, wanted, self._passwords.hash, password)
        try:
            return await self._store.create_user(username, pw_hash, nickname or username)
        except UsernameTaken:
            raise RequestError(f"username {username!r} is taken", ErrorCode.USERNAME_TAKEN) from None

    async def login(self, username: str, password: str, address: str, wanted: Callable[[], bool]) -> Identity:
        account = Guesses.key(username)
        await self._guesses.begin(account)  # a locked account costs no hashing
        verdict: bool | None = None
        try:
            user = await self._store.get_user_by_name(username)
            stored = user.password_hash if user else self._passwords.dummy
            ok = await self._hashing.run(address, wanted, self._passwords.verify, password, stored)
            verdict = user is not None and ok
        finally:
            self._guesses.end(account, verdict)
        if not verdict:
            if user is not None and user.deleted:  # its hash is gone: no password matches
                raise AuthError("this account was deleted", ErrorCode.ACCOUNT_DELETED)
            raise AuthError("wrong username or password", ErrorCode.BAD_CREDENTIALS)
        assert user is not None
        if user.disabled:
            raise AuthError("this account is disabled", ErrorCode.ACCOUNT_DISABLED)
        if self._passwords.needs_rehash(stored):
            # an older kind or cost: replace it now that the password is known (not charged
            # to the client's budget: it is the server's choice)
            fresh = await asyncio.to_thread(self._passwords.hash, password)
            await self._store.apply(SetPasswordHash(user.id, fresh))
        return self.issue(user.id, user.epoch)

    async def token_login(self, token: str) -> Identity:
        claims = self._claims(token)
        user_id = UserId(int(claims["sub"]))
        user = await self._store.get_user(user_id)
        if user is None:
            raise AuthError("token names no user", ErrorCode.TOKEN_INVALID)
        if user.deleted:
            raise AuthError("this account was deleted", ErrorCode.ACCOUNT_DELETED)
        if user.disabled:
            raise AuthError("this account is disabled", ErrorCode.ACCOUNT_DISABLED)
        # the credential epoch: a new password (or a deletion) refuses every token issued
        # before it, with no list of tokens to keep (the user's row is read anyway)
        if claims.get("ep", 0) != user.epoch:
            raise AuthError("token revoked (the password was changed)", ErrorCode.TOKEN_INVALID)
        if await self._store.token_revoked(claims["jti"]):
            raise AuthError("token revoked (logged out)", ErrorCode.TOKEN_INVALID)
        # keep the token the client has; it stays valid until its own expiry or a LOGOUT
        return Identity(user_id, token, int(claims["exp"]), claims["jti"])

    async def check_password(self, user_id: UserId, password: str, address: str, wanted: Callable[[], bool]) -> User:
        """The account's own password, checked as a LOGIN checks it (the account's and the
        address's budgets of password checks): BAD_CREDENTIALS when wrong."""
        user = await self._store.get_user(user_id)
        if user is None or user.deleted:
            raise AuthError("this account was deleted", ErrorCode.ACCOUNT_DELETED)
        account = Guesses.key(user.username)
        await self._guesses.begin(account)
        verdict: bool | None = None
        try:
            verdict = await self._hashing.run(address, wanted, self._passwords.verify, password, user.password_hash)
        finally:
            self._guesses.end(account, verdict)
        if not verdict:
            raise AuthError("wrong password", ErrorCode.BAD_CREDENTIALS)
        return user

    async def change_password(self, user_id: UserId, old: str, new: str, address: str,
                              wanted: Callable[[], bool]) -> Identity:
        """A new password once the old one is checked: durable, with the credential epoch
        moved on (every token issued before is refused), before the new token returns."""
        await self.check_password(user_id, old, address, wanted)
        fresh = await self._hashing.run(address, wanted, self._passwords.hash, new)
        epoch = await self._store.apply(SetCredentials(user_id, fresh))
        return self.issue(user_id, epoch)

    async def revoke(self, identity: Identity) -> None:
        """The token cannot log in again (until it would have expired anyway)."""
        await self._store.apply(RevokeToken(identity.token_id, identity.expires_at))

    def set_login_limits(self, rate: float, burst: int, backlog: int,
                         account: tuple[int, float, float] | None = None) -> None:
        """New password-check limits (SIGHUP); ``account``: failures, first and longest lock."""
        self._hashing.set_limits(rate, burst, backlog)
        if account is not None:
            self._guesses.set_limits(*account)

    def issue(self, user_id: UserId, epoch: int = 0) -> Identity:
        """A token for ``user_id`` at the account's credential ``epoch`` (claim ``ep``)."""
        now = int(time.time())
        exp = now + int(self._ttl)
        jti = secrets.token_hex(12)
        claims = {"sub": str(user_id), "iat": now, "exp": exp, "jti": jti, "ep": epoch}
        token = jwt.encode(claims, self._secret, algorithm="HS256")
        return Identity(user_id, token, exp, jti)

    def _claims(self, token: str) -> dict[str, Any]:
        try:
            claims = jwt.decode(token, self._secret, algorithms=["HS256"], options={"require": ["exp", "sub", "jti"]})
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired", ErrorCode.TOKEN_EXPIRED) from None
        except jwt.InvalidTokenError:
            raise AuthError("token invalid", ErrorCode.TOKEN_INVALID) from None
        sub, jti, ep = claims["sub"], claims["jti"], claims.get("ep", 0)
        # a signed token with a nonsense subject is still just an invalid token
        if not (isinstance(sub, str) and sub.isdigit() and 0 < int(sub) <= _MAX_ID
                and isinstance(jti, str) and 0 < len(jti) <= 64 and type(ep) is int):
            raise AuthError("token invalid", ErrorCode.TOKEN_INVALID)
        return claims


def _verify_scrypt(password: str, stored: str) -> bool:
    """Hashes of earlier versions: ``scrypt$<log2 n>$<r>$<p>$<salt>$<hash>``."""
    try:
        _, log_n, r, p, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=1 << int(log_n), r=int(r),
                                p=int(p), maxmem=256 << 20)
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def default_workers() -> int:
    # hashing is CPU-bound: more threads than cores only make every login slower
    return os.cpu_count() or 1
