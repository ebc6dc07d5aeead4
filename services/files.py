"""File grants: who may upload a file to a conversation or download one from it, within
which limits. The bytes go between the client and the ``Files`` backend over HTTP, with
the signed, expiring URLs a grant carries; the node only decides and signs.

A file's key names the conversation it was granted for: ``<conv>/<random>/<name>``
(``g7/Xq3...Zt/holiday.jpg``), so a download grant needs nothing but the key to decide:
the caller must be able to read that conversation (as for SYNC), or one the file was
forwarded to (FORWARD: ``Store.file_convs``), and the object must exist. Whoever holds a grant's URL can use it until it expires, as with any presigned
URL; grants are short (``file_grant_ttl``) for that reason.

Avatars have a space of their own, ``a<user id>`` in place of a conversation: only that
user uploads there (images only), and every logged-in user may download from it (a
profile is public to them). PROFILE_SET takes such a key once the upload exists.
"""
from __future__ import annotations

import json
import logging
import re
import secrets
import time
import unicodedata
from typing import Awaitable, Callable

from ..backends.protocols import ConvId, FileQuotaExceeded, Files, FilesUnavailable, UserId
from ..core_ext import bodies, content
from ..core_ext.errors import RequestError, Unavailable
from ..core_ext.protocol import ErrorCode
from .quota import UserBuckets

__all__ = ["FileGrants", "safe_name", "parse_types", "file_keys"]

log = logging.getLogger("edgeim.files")

#: what a key FILE_DOWNLOAD accepts: a conversation id, 16 random characters, a safe name
_KEY = re.compile(r"(p[0-9]{1,19}_[0-9]{1,19}|g[0-9]{1,19}|a[0-9]{1,19})/[A-Za-z0-9_-]{16}/([A-Za-z0-9_-][A-Za-z0-9._-]{0,99})")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_NAME = 100
_WITH_FILES = frozenset({content.IMAGE, content.FILE, content.VOICE, content.VIDEO})


def safe_name(name: str) -> str:
    """The file name as it goes into a key and a Content-Disposition: ASCII letters,
    digits, ``._-`` (accents dropped, anything else ``_``), no leading dot, at most 100
    characters keeping the extension; ``file`` if nothing is left."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    cleaned = _UNSAFE.sub("_", ascii_name).lstrip("._")
    if len(cleaned) > _MAX_NAME:
        stem, dot, ext = cleaned.rpartition(".")
        ext = ext[:16] if dot and stem else ""
        cleaned = cleaned[:_MAX_NAME - len(ext) - 1] + "." + ext if ext else cleaned[:_MAX_NAME]
    return cleaned or "file"


def file_keys(type_: int, stored: str) -> list[str]:
    """The file keys a message's stored content references (images, files, voice, video)."""
    if type_ not in _WITH_FILES:
        return []
    try:
        value = json.loads(stored)
    except ValueError:
        return []
    if not isinstance(value, dict):
        return []
    return [k for k in (value.get("key"), value.get("thumb_key")) if isinstance(k, str) and k]


def parse_types(spec: str) -> tuple[bool, frozenset[str], tuple[str, ...]]:
    """``"image/*,application/pdf"`` -> (all allowed?, exact types, ``type/`` prefixes)."""
    items = [item.strip().lower() for item in spec.split(",") if item.strip()]
    if "*" in items or "*/*" in items:
        return True, frozenset(), ()
    return (False, frozenset(i for i in items if not i.endswith("/*")),
            tuple(i[:-1] for i in items if i.endswith("/*")))


class FileGrants:
    """FILE_UPLOAD and FILE_DOWNLOAD. ``floor(user, conv)`` raises FORBIDDEN unless the user
    may read ``conv`` (services/conversations.py). Each grant, given or refused, takes one
    of the user's ``per_minute`` (4000 RATE_LIMITED beyond, as a token bucket with that
    burst)."""

    def __init__(self, files: Files, floor: Callable[[UserId, str], Awaitable[int]], max_size: int, types: str,
                 ttl: float, per_minute: int, clock: Callable[[], float] = time.monotonic,
                 forwarded_to: Callable[[str], Awaitable[list[ConvId]]] | None = None) -> None:
        self._files = files
        self._floor = floor
        self._forwarded_to = forwarded_to  # the conversations a file was forwarded to (Store.file_convs)
        self._max_size = max_size
        self._all_types, self._types, self._prefixes = parse_types(types)
        self._ttl = max(1, int(ttl))
        self._buckets = UserBuckets(per_minute / 60.0, float(per_minute), f"{per_minute} file grants a minute", clock)

    async def upload(self, user: UserId, req: bodies.FileUpload) -> bodies.FileUploadOk:
        self._buckets.charge(user)
        mime = req.mime.lower()
        if req.size > self._max_size:
            raise RequestError(f"files may be at most {self._max_size} bytes", ErrorCode.FILE_TOO_LARGE)
        if not self._allowed(mime):
            raise RequestError(f"files of type {mime} are not accepted", ErrorCode.FILE_TYPE_REFUSED)
        if req.conv.startswith("a"):  # the avatar space: the user's own, images only
            if req.conv != f"a{user}":
                raise RequestError("only your own avatar space (a<your id>) takes uploads", ErrorCode.FORBIDDEN)
            if not mime.startswith("image/"):
                raise RequestError("an avatar is an image (image/*)", ErrorCode.FILE_TYPE_REFUSED)
        else:
            await self._floor(user, req.conv)  # FORBIDDEN (or INVALID_ARGUMENT) for a conv not theirs
        try:  # uploads are refused before the disk is full: the store shares it
            await self._files.room(user, req.size)
        except FileQuotaExceeded as exc:
            raise RequestError(f"{exc}: delete files, or send smaller ones", ErrorCode.FILE_QUOTA_EXCEEDED) from None
        except FilesUnavailable as exc:
            raise Unavailable(f"no room for files now: {exc}") from None
        key = f"{req.conv}/{secrets.token_urlsafe(12)}/{safe_name(req.name)}"
        signed = self._files.presign_put(key, req.size, mime, self._ttl, user)
        return bodies.FileUploadOk(key=key, url=signed.url, expires_at=signed.expires_at,
                                   headers=[bodies.HttpHeader(name=n, value=v) for n, v in signed.headers])

    async def download(self, user: UserId, req: bodies.FileDownload) -> bodies.FileDownloadOk:
        self._buckets.charge(user)
        match = _KEY.fullmatch(req.key)
        if match is None:
            raise RequestError("not a file key of this server", ErrorCode.INVALID_ARGUMENT)
        if not match[1].startswith("a"):  # avatars: anyone logged in may see them
            try:
                await self._floor(user, match[1])  # FORBIDDEN: not in the conversation the file was granted for
            except RequestError as exc:  # ... unless forwarded to one the caller reads
                if exc.code != ErrorCode.FORBIDDEN or not await self._reads_a_forward(user, req.key):
                    raise
        try:
            found = await self._files.stat(req.key)
        except FilesUnavailable as exc:
            raise Unavailable(f"the file store is unavailable: {exc}") from None
        if found is None:
            raise RequestError("no such file (never uploaded, or deleted)", ErrorCode.NOT_FOUND)
        signed = self._files.presign_get(req.key, self._ttl, match[2])
        return bodies.FileDownloadOk(key=req.key, url=signed.url, expires_at=signed.expires_at, name=match[2],
                                     size=found.size, mime=found.mime)

    async def avatar(self, user: UserId, key: str) -> None:
        """``key`` may be ``user``'s avatar: a key of their own avatar space whose upload
        exists (INVALID_ARGUMENT, NOT_FOUND otherwise); it is kept from now on (shared)."""
        match = _KEY.fullmatch(key)
        if match is None or match[1] != f"a{user}":
            raise RequestError("avatar: not a file key of your avatar space (upload to conv a<your id>)",
                               ErrorCode.INVALID_ARGUMENT)
        try:
            found = await self._files.stat(key)
        except FilesUnavailable as exc:
            raise Unavailable(f"the file store is unavailable: {exc}") from None
        if found is None:
            raise RequestError("avatar: no such file (not uploaded yet, or deleted)", ErrorCode.NOT_FOUND)
        await self.shared([key])

    async def shared(self, keys: list[str]) -> None:
        """A message references ``keys``: they are kept (an upload never shared expires)."""
        try:
            await self._files.share(keys)
        except Exception:  # the message goes on; the file may expire unshared
            log.warning("could not mark files as shared", exc_info=True, extra={"keys": keys[:4]})

    async def _reads_a_forward(self, user: UserId, key: str) -> bool:
        """Was the file forwarded (FORWARD) to a conversation ``user`` may read?"""
        if self._forwarded_to is None:
            return False
        for conv in await self._forwarded_to(key):
            try:
                await self._floor(user, conv)
            except RequestError:
                continue
            return True
        return False

    def forget(self, user: UserId) -> None:
        """The user has no session here any more."""
        self._buckets.forget(user)


    def _allowed(self, mime: str) -> bool:
        return self._all_types or mime in self._types or mime.startswith(self._prefixes)
