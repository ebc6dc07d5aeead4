"""Accounts and credentials: registration, password login, JWT tokens.

Passwords are stored as salted scrypt hashes (``scrypt$<log2 n>$<r>$<p>$<salt>$<hash>``);
hashing runs in a worker thread because it is deliberately slow (~0.1 s at the default cost).
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import jwt

from ..backends.protocols import Store, User, UserId, UsernameTaken
from ..core_ext.errors import AuthError, RequestError
from ..core_ext.protocol import ErrorCode

__all__ = ["AuthService", "Identity", "hash_password", "verify_password"]

T = TypeVar("T")
_R, _P = 8, 1
# a hash of a random password, verified when the user does not exist, so a login takes as
# long for a missing user as for a wrong password (no user enumeration by timing)
_DUMMY_SALT = os.urandom(16)


def hash_password(password: str, log_n: int = 14, salt: bytes | None = None) -> str:
    salt = os.urandom(16) if salt is None else salt
    digest = hashlib.scrypt(password.encode(), salt=salt, n=1 << log_n, r=_R, p=_P, maxmem=256 << 20)
    return "$".join(("scrypt", str(log_n), str(_R), str(_P), _b64(salt), _b64(digest)))


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, log_n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=1 << int(log_n), r=int(r), p=int(p), maxmem=256 << 20
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: UserId
    token: str
    expires_at: int  # unix seconds


class AuthService:
    def __init__(self, store: Store, secret: str, token_ttl: float, scrypt_log_n: int = 14) -> None:
        self._store = store
        self._secret = secret
        self._ttl = token_ttl
        self._log_n = scrypt_log_n
        # scrypt is CPU-bound: more threads than cores only make every login slower
        self._hashing = asyncio.Semaphore(os.cpu_count() or 1)

    async def _off_loop(self, fn: Callable[..., T], *args: Any) -> T:
        async with self._hashing:
            return await asyncio.to_thread(fn, *args)

    async def register(self, username: str, password: str, nickname: str) -> User:
        pw_hash = await self._off_loop(hash_password, password, self._log_n)
        try:
            return await self._store.create_user(username, pw_hash, nickname or username)
        except UsernameTaken:
            raise RequestError(f"username {username!r} is taken", ErrorCode.USERNAME_TAKEN) from None

    async def login(self, username: str, password: str) -> Identity:
        user = await self._store.get_user_by_name(username)
        stored = user.password_hash if user else hash_password_dummy(self._log_n)
        ok = await self._off_loop(verify_password, password, stored)
        if user is None or not ok:
            raise AuthError("wrong username or password", ErrorCode.BAD_CREDENTIALS)
        return self.issue(user.id)

    async def token_login(self, token: str) -> Identity:
        claims = self._claims(token)
        user_id = UserId(int(claims["sub"]))
        if await self._store.get_user(user_id) is None:
            raise AuthError("token names no user", ErrorCode.TOKEN_INVALID)
        # keep the token the client has; it stays valid until its own expiry
        return Identity(user_id, token, int(claims["exp"]))

    def issue(self, user_id: UserId) -> Identity:
        now = int(time.time())
        exp = now + int(self._ttl)
        token = jwt.encode({"sub": str(user_id), "iat": now, "exp": exp}, self._secret, algorithm="HS256")
        return Identity(user_id, token, exp)

    def _claims(self, token: str) -> dict:
        try:
            claims = jwt.decode(token, self._secret, algorithms=["HS256"], options={"require": ["exp", "sub"]})
            int(claims["sub"])
            return claims
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired", ErrorCode.TOKEN_EXPIRED) from None
        except (jwt.InvalidTokenError, ValueError):
            raise AuthError("token invalid", ErrorCode.TOKEN_INVALID) from None


_dummy_hashes: dict[int, str] = {}


def hash_password_dummy(log_n: int) -> str:
    found = _dummy_hashes.get(log_n)
    if found is None:
        found = _dummy_hashes[log_n] = hash_password("\0", log_n, _DUMMY_SALT)
    return found
