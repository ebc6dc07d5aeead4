"""``LocalFiles``: the embedded ``Files`` backend. Files live under one directory (the
node's ``<data_dir>/files``) and clients reach them through URLs that this node signs
and serves itself on its HTTP port (edge/http.py), in the shape of S3's presigned URLs:

    PUT /files/<key>?X-Im-Algorithm=IM1-HMAC-SHA256&X-Im-Date=20260101T120000Z
        &X-Im-Expires=900&X-Im-SignedHeaders=content-length%3Bcontent-type
        &X-Im-Signature=<64 hex digits>

The signature is HMAC-SHA256, under a key only the node knows, of the canonical request:

    <method>\\n<path>\\n<canonical query>\\n<signed header lines>\\n<signed header names>

where the canonical query is every parameter but ``X-Im-Signature``, each name and value
percent-encoded (RFC 3986 unreserved characters kept), sorted, joined with ``&``; and the
signed header lines are ``name:value\\n`` of the request's own values of the headers named
in ``X-Im-SignedHeaders`` (a PUT signs ``content-length`` and ``content-type``, so the
body's length and type are the granted ones; a GET signs none). A GET URL also carries
``response-content-disposition``, which is signed like every other parameter. A URL is
good from ``X-Im-Date`` for ``X-Im-Expires`` seconds (at most 7 days, as on S3).

On disk: ``objects/<key>`` holds the bytes, ``meta/<key>`` the content type,
``owners/<key>`` the account it is charged to (its quota), ``shared/<key>`` (empty) that a
message references it (an upload never shared is deleted by ``expire``), ``tmp/`` the
uploads in progress. An upload is written to ``tmp/``, flushed to disk, and renamed
into place (the content type first, then the bytes: the bytes' rename is the commit), so
a reader sees the old object or the whole new one, and an upload cut short leaves only a
temporary file, removed at once (or at the next ``open`` after a crash).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import os
import re
import shutil
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import AsyncIterator, Callable, Iterable, Mapping, Sequence

from .protocols import FileQuotaExceeded, FileStat, FilesUnavailable, SignedUrl

__all__ = ["LocalFiles", "FileRefused", "KEY_PATTERN", "MAX_EXPIRES", "ALGORITHM"]

ALGORITHM = "IM1-HMAC-SHA256"
#: the longest a signed URL may be good for, in seconds (S3's limit too)
MAX_EXPIRES = 7 * 24 * 3600
#: a URL dated this far in the future is refused (clock skew between signer and server;
#: here they are one process, so only a forged date gets near it)
_MAX_SKEW = 300
#: what a key may be: segments of safe characters, none starting with a dot (so no "..")
KEY_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*(?:/[A-Za-z0-9_-][A-Za-z0-9._-]*)*")
_MAX_KEY = 512
_PUT_HEADERS = "content-length;content-type"
_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
#: bytes handed to the writer thread at once
_WRITE_CHUNK = 1024 * 1024


class FileRefused(Exception):
    """A request to a signed URL that it does not allow: ``status`` is the HTTP status to
    answer with (403 altered, another key or method, other headers, expired; 404 no such
    object; 411 no Content-Length; 400 a body shorter than its Content-Length)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class LocalFiles:
    """Files under ``root``, signed with ``secret``. ``base_url`` is where clients reach
    the node's HTTP listener (``http://host:port``); the node sets it once it listens.
    ``clock`` gives unix seconds (tests move it).

    ``min_free``: bytes of the disk that uploads leave free (the store shares the disk: it
    must keep room to write); ``quota``: bytes of files one owner may keep (0: no bound).
    ``free_space()`` gives the disk's free bytes (tests give a fake)."""

    def __init__(self, root: Path, secret: bytes, base_url: str = "", clock: Callable[[], float] = time.time,
                 *, min_free: int = 0, quota: int = 0, free_space: Callable[[], int] | None = None) -> None:
        self.root = root
        self.base_url = base_url.rstrip("/")
        self._secret = secret
        self._clock = clock
        self._objects = root / "objects"
        self._meta = root / "meta"
        self._owners = root / "owners"
        self._shared = root / "shared"
        self._tmp = root / "tmp"
        self.min_free = min_free
        self.quota = quota
        self._free_space = free_space or (lambda: shutil.disk_usage(self.root).free)
        #: owner -> bytes of their stored files; and of their uploads in progress
        self._usage: dict[int, int] = {}
        self._pending: dict[int, int] = {}

    # -- the Files protocol --------------------------------------------------------------------

    async def open(self) -> None:
        def prepare() -> None:
            for path in (self._objects, self._meta, self._owners, self._shared):
                path.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(self._tmp, ignore_errors=True)  # uploads a crash cut short
            self._tmp.mkdir(parents=True, exist_ok=True)
            self._usage = self._count_usage()
        try:
            await asyncio.to_thread(prepare)
        except OSError as exc:
            raise FilesUnavailable(f"cannot use the files dir {self.root}: {exc}") from None

    async def close(self) -> None:
        pass

    def presign_put(self, key: str, size: int, mime: str, expires: int, owner: int = 0) -> SignedUrl:
        headers = (("Content-Length", str(size)), ("Content-Type", mime))
        extra = {"X-Im-SignedHeaders": _PUT_HEADERS}
        if owner:
            extra["X-Im-Owner"] = str(owner)  # signed like every parameter: who is charged
        return self._sign("PUT", key, expires, extra, headers)

    async def share(self, keys: Sequence[str]) -> None:
        ours = [key for key in keys if len(key) <= _MAX_KEY and KEY_PATTERN.fullmatch(key)]
        if ours:
            await asyncio.to_thread(self._mark_shared, ours)

    async def expire(self, older_than: float) -> int:
        """Uploads with an owner (this version's), never shared, stored before
        ``clock() - older_than``: deleted, their bytes given back to their owner's quota."""
        expired = await asyncio.to_thread(self._expire, self._clock() - older_than)
        for charged in expired:
            self._uncharge(charged)
        return len(expired)

    async def room(self, owner: int, size: int) -> None:
        free = await asyncio.to_thread(self._free_space)
        coming = sum(self._pending.values())  # uploads in progress: part of it is not written yet
        if free - coming - size < self.min_free:
            raise FilesUnavailable(f"the files' disk has {free} bytes free ({coming} more are being uploaded)"
                                   f" and keeps {self.min_free} for the store")
        if self.quota and owner:
            used = self._usage.get(owner, 0) + self._pending.get(owner, 0)
            if used + size > self.quota:
                raise FileQuotaExceeded(f"the account keeps {used} bytes of files, {self.quota} at most")

    def presign_get(self, key: str, expires: int, filename: str) -> SignedUrl:
        return self._sign("GET", key, expires, {"X-Im-SignedHeaders": "",
                                                "response-content-disposition": _disposition(filename)}, ())

    async def stat(self, key: str) -> FileStat | None:
        _check_key(key)
        return await asyncio.to_thread(self._stat, key)

    async def delete(self, key: str) -> None:
        _check_key(key)
        self._uncharge(await asyncio.to_thread(self._delete, key))

    # -- serving the signed URLs (edge/http.py) --------------------------------------------------

    def check(self, method: str, key: str, query: Iterable[tuple[str, str]], headers: Mapping[str, str]) -> None:
        """Is this request one that a URL of ours allows, now? Raises FileRefused (403)
        if not; a PUT without a Content-Length is 411."""
        params: dict[str, str] = {}
        for name, value in query:
            if name in params:
                raise FileRefused(403, f"query parameter {name} given twice")
            params[name] = value
        if method == "PUT" and "Content-Length" not in headers:
            raise FileRefused(411, "a PUT needs a Content-Length")
        if len(key) > _MAX_KEY or KEY_PATTERN.fullmatch(key) is None:
            raise FileRefused(403, "not a key of this server")
        signature = params.pop("X-Im-Signature", "")
        if params.get("X-Im-Algorithm") != ALGORITHM or not signature:
            raise FileRefused(403, "not a signed URL of this server")
        try:
            signed_at = dt.datetime.strptime(params["X-Im-Date"], _DATE_FORMAT).replace(tzinfo=dt.timezone.utc)
            expires = int(params["X-Im-Expires"])
        except (KeyError, ValueError):
            raise FileRefused(403, "X-Im-Date or X-Im-Expires missing or malformed") from None
        signed_headers = params.get("X-Im-SignedHeaders")
        if signed_headers != (_PUT_HEADERS if method == "PUT" else ""):
            raise FileRefused(403, f"this URL is not for {method}")
        expected = self._signature(method, key, params, [(h, headers.get(h, "")) for h in _names(signed_headers)])
        if not hmac.compare_digest(expected, signature):
            raise FileRefused(403, "the signature does not match (an altered URL, another key, method, size "
                                   "or content type)")
        now = self._clock()
        if not 1 <= expires <= MAX_EXPIRES:
            raise FileRefused(403, "X-Im-Expires out of range")
        if now > signed_at.timestamp() + expires:
            raise FileRefused(403, "the URL has expired")
        if signed_at.timestamp() > now + _MAX_SKEW:
            raise FileRefused(403, "the URL is not valid yet")

    async def receive(self, key: str, mime: str, size: int, chunks: AsyncIterator[bytes], owner: int = 0) -> None:
        """Store the ``size`` bytes ``chunks`` yields under ``key``, all or nothing (see the
        module doc), charged to ``owner``. Raises FileRefused(400) when ``chunks`` ends
        early or yields more, FileRefused(507) when it would leave the disk less free
        space than ``min_free`` or take ``owner`` past the quota (checked before a byte
        is written), FilesUnavailable when the disk refuses; nothing is stored then."""
        try:
            await self.room(owner, size)
        except (FilesUnavailable, FileQuotaExceeded) as exc:
            raise FileRefused(507, f"insufficient storage: {exc}") from None
        self._pending[owner] = self._pending.get(owner, 0) + size
        try:
            await self._receive(key, mime, size, chunks, owner)
        finally:
            left = self._pending[owner] - size
            if left:
                self._pending[owner] = left
            else:
                del self._pending[owner]

    async def _receive(self, key: str, mime: str, size: int, chunks: AsyncIterator[bytes], owner: int) -> None:
        loop = asyncio.get_running_loop()
        tmp = self._tmp / uuid.uuid4().hex
        try:
            f = await asyncio.to_thread(open, tmp, "wb")
        except OSError as exc:
            raise FilesUnavailable(f"cannot write {tmp}: {exc}") from None
        committed = False
        try:
            got = 0
            pending = bytearray()
            async for chunk in _reading(chunks):
                got += len(chunk)
                if got > size:
                    raise FileRefused(400, "the body is longer than its Content-Length")
                pending += chunk
                if len(pending) >= _WRITE_CHUNK:
                    await loop.run_in_executor(None, f.write, bytes(pending))
                    pending.clear()
            if got != size:
                raise FileRefused(400, f"the body ended after {got} of {size} bytes")
            replaced = await asyncio.to_thread(self._commit, f, bytes(pending), tmp, key, mime, owner)
            committed = True
            self._uncharge(replaced)
            if owner:
                self._usage[owner] = self._usage.get(owner, 0) + size
        except OSError as exc:
            raise FilesUnavailable(f"cannot store {key}: {exc}") from None
        finally:
            if not f.closed:
                await asyncio.to_thread(f.close)
            if not committed:
                await asyncio.to_thread(_unlink, tmp)

    async def local(self, key: str) -> tuple[Path, FileStat] | None:
        """Where ``key``'s bytes are, and their size and type; None if there is no object."""
        stat = await self.stat(key)
        return None if stat is None else (self._objects / key, stat)

    # -- internals -----------------------------------------------------------------------------

    def _sign(self, method: str, key: str, expires: int, extra: dict[str, str],
              headers: tuple[tuple[str, str], ...]) -> SignedUrl:
        _check_key(key)
        if not 1 <= expires <= MAX_EXPIRES:
            raise ValueError(f"expires must be 1..{MAX_EXPIRES} seconds")
        if not self.base_url:
            raise RuntimeError("LocalFiles.base_url is not set (the HTTP listener has not started)")
        now = int(self._clock())
        params = {"X-Im-Algorithm": ALGORITHM, "X-Im-Date": time.strftime(_DATE_FORMAT, time.gmtime(now)),
                  "X-Im-Expires": str(expires), **extra}
        lowered = [(name.lower(), value) for name, value in headers]
        params["X-Im-Signature"] = self._signature(method, key, params, lowered)
        url = f"{self.base_url}/files/{key}?{urllib.parse.urlencode(params, quote_via=urllib.parse.quote)}"
        return SignedUrl(method=method, url=url, headers=headers, expires_at=now + expires)

    def _signature(self, method: str, key: str, params: Mapping[str, str], headers: list[tuple[str, str]]) -> str:
        query = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in sorted(params.items()) if k != "X-Im-Signature")
        lines = "".join(f"{name}:{value.strip()}\n" for name, value in headers)
        canonical = f"{method}\n/files/{key}\n{query}\n{lines}\n{';'.join(name for name, _ in headers)}"
        return hmac.new(self._secret, canonical.encode(), hashlib.sha256).hexdigest()

    def _commit(self, f, tail: bytes, tmp: Path, key: str, mime: str,  # type: ignore[no-untyped-def]
                owner: int) -> tuple[int, int]:
        """Returns (owner, size) of the object it replaced ((0, 0): none)."""
        f.write(tail)
        f.flush()
        os.fsync(f.fileno())
        f.close()
        replaced = self._charged(key)
        target, meta, owned = self._objects / key, self._meta / key, self._owners / key
        for path in (target, meta, owned):
            path.parent.mkdir(parents=True, exist_ok=True)
        meta_tmp = tmp.with_suffix(".meta")
        meta_tmp.write_text(mime)
        os.replace(meta_tmp, meta)
        if owner:
            owner_tmp = tmp.with_suffix(".owner")
            owner_tmp.write_text(str(owner))
            os.replace(owner_tmp, owned)
        else:
            _unlink(owned)
        os.replace(tmp, target)  # the commit: the object appears whole
        _fsync_dir(target.parent)
        return replaced

    def _mark_shared(self, keys: list[str]) -> None:
        for key in keys:
            marker = self._shared / key
            try:
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.touch()
            except OSError:  # (a key that is a directory's name, a full disk: the file may expire)
                continue

    def _expire(self, before: float) -> list[tuple[int, int]]:
        expired = []
        for path in list(self._owners.rglob("*")):
            if not path.is_file():
                continue
            key = str(path.relative_to(self._owners))
            if (self._shared / key).exists():
                continue
            try:
                stored_at = (self._objects / key).stat().st_mtime
            except OSError:
                stored_at = 0.0  # no object (an owner file a crash left): clear it
            if stored_at < before:
                expired.append(self._delete(key))
        return expired

    def _charged(self, key: str) -> tuple[int, int]:
        """(owner, size) of the object at ``key``; (0, 0) when there is none or no owner."""
        try:
            owner = int((self._owners / key).read_text())
            return owner, (self._objects / key).stat().st_size
        except (OSError, ValueError):
            return 0, 0

    def _uncharge(self, charged: tuple[int, int]) -> None:
        owner, size = charged
        if owner and owner in self._usage:
            left = self._usage[owner] - size
            if left > 0:
                self._usage[owner] = left
            else:
                del self._usage[owner]

    def _count_usage(self) -> dict[int, int]:
        """At open: every owner's bytes, from ``owners/`` and the objects' sizes."""
        usage: dict[int, int] = {}
        for path in self._owners.rglob("*"):
            if path.is_file():
                owner, size = self._charged(str(path.relative_to(self._owners)))
                if owner:
                    usage[owner] = usage.get(owner, 0) + size
        return usage

    def _stat(self, key: str) -> FileStat | None:
        try:
            size = (self._objects / key).stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise FilesUnavailable(f"cannot read {key}: {exc}") from None
        try:
            mime = (self._meta / key).read_text()
        except FileNotFoundError:
            mime = "application/octet-stream"
        return FileStat(size=size, mime=mime)

    def _delete(self, key: str) -> tuple[int, int]:
        charged = self._charged(key)
        for base in (self._objects, self._meta, self._owners, self._shared):
            _unlink(base / key)
            # drop the directories the key made, up to the base, while they are empty
            parent = (base / key).parent
            while parent != base:
                try:
                    parent.rmdir()
                except OSError:
                    break
                parent = parent.parent
        return charged


async def _reading(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``chunks``, with a failure to read them (the client went away) as FileRefused(400):
    the client's doing, not the disk's."""
    iterator = chunks.__aiter__()
    while True:
        try:
            chunk = await iterator.__anext__()
        except StopAsyncIteration:
            return
        except Exception as exc:
            raise FileRefused(400, f"the body could not be read: {type(exc).__name__}") from None
        yield chunk


def _check_key(key: str) -> None:
    if len(key) > _MAX_KEY or KEY_PATTERN.fullmatch(key) is None:
        raise ValueError(f"not a file key: {key!r}")


def _names(signed_headers: str) -> list[str]:
    return [name for name in signed_headers.split(";") if name]


def _quote(value: str) -> str:
    return urllib.parse.quote(value, safe="-_.~")


def _disposition(filename: str) -> str:
    return f'attachment; filename="{filename}"'


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
