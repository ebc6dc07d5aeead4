"""``S3Files``: the cluster ``Files`` backend, on any S3-compatible server (AWS S3, MinIO,
SeaweedFS, Ceph RGW) through the minio SDK. Clients PUT and GET the objects on the S3
server itself with presigned URLs, so every node of a cluster hands out URLs to the same
files and no node carries their bytes.

The download URL is minio's ``presigned_get_object``. The upload URL is signed here, with
the same Signature V4 query signing, because minio's presigned PUT signs the ``host``
header only: any body of any type would be accepted. Ours also signs ``content-length``
and ``content-type``, so the S3 server itself refuses (403) a body of another length or
type than the grant's, as the ``Files`` contract requires.

The clients must reach the S3 endpoint at the address the node uses (the presigned URLs
name it, and the signature covers it).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import urllib.parse
from typing import Any

from .localfiles import MAX_EXPIRES, KEY_PATTERN
from .protocols import FileStat, FilesUnavailable, SignedUrl

__all__ = ["S3Files", "parse_s3_url"]

_SERVICE = "s3"
#: seconds an S3 call may take before the backend counts as unavailable
_TIMEOUT = 30.0


def parse_s3_url(url: str) -> dict[str, Any]:
    """``s3://ACCESS:SECRET@host:port/bucket?region=R&secure=1`` -> S3Files' arguments.
    ``secure`` (HTTPS) is off unless given; ``region`` is ``us-east-1`` unless given.
    Raises ValueError naming what is missing."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "s3":
        raise ValueError("the files URL must start with s3://")
    bucket = parts.path.strip("/")
    if not (parts.username and parts.password and parts.hostname and bucket) or "/" in bucket:
        raise ValueError("the files URL must be s3://ACCESS_KEY:SECRET_KEY@host[:port]/bucket")
    query = urllib.parse.parse_qs(parts.query)
    endpoint = parts.hostname + (f":{parts.port}" if parts.port else "")
    return dict(endpoint=endpoint, access_key=urllib.parse.unquote(parts.username),
                secret_key=urllib.parse.unquote(parts.password), bucket=bucket,
                region=query.get("region", ["us-east-1"])[0],
                secure=query.get("secure", ["0"])[0].lower() in ("1", "true", "yes", "on"))


class S3Files:
    """Objects in ``bucket`` on the S3 server at ``endpoint`` (host:port), created at
    ``open`` if missing. The region is given, never asked for: presigning then needs no
    request to the server."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str, bucket: str, region: str = "us-east-1",
                 secure: bool = False) -> None:
        import urllib3
        from minio import Minio  # the cluster backends' clients are an extra

        self.endpoint = endpoint
        self.bucket = bucket
        self.region = region
        self._access_key = access_key
        self._secret_key = secret_key
        self._scheme = "https" if secure else "http"
        self._pool = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5.0, read=_TIMEOUT), maxsize=10,
            retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
        )
        self._client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure, region=region,
                             http_client=self._pool)

    @classmethod
    def from_url(cls, url: str) -> S3Files:
        return cls(**parse_s3_url(url))

    async def open(self) -> None:
        def ensure_bucket() -> None:
            if not self._client.bucket_exists(self.bucket):
                try:
                    self._client.make_bucket(self.bucket)
                except Exception as exc:  # another node made it meanwhile
                    if getattr(exc, "code", "") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
        try:
            await asyncio.to_thread(ensure_bucket)
        except Exception as exc:
            raise FilesUnavailable(f"cannot use bucket {self.bucket} on {self.endpoint}: {exc}") from None

    async def close(self) -> None:
        self._pool.clear()

    async def share(self, keys: Sequence[str]) -> None:
        """Nothing kept here: expiring uploads on S3 is the bucket's lifecycle rules' work."""

    async def expire(self, older_than: float) -> int:
        return 0

    async def room(self, owner: int, size: int) -> None:
        """Nothing to check here: the S3 server's capacity and the bucket's quotas are its own."""

    def presign_put(self, key: str, size: int, mime: str, expires: int, owner: int = 0) -> SignedUrl:
        _check(key, expires)
        now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        headers = (("Content-Length", str(size)), ("Content-Type", mime))
        url = self._presign_v4("PUT", key, now, expires, headers)
        return SignedUrl(method="PUT", url=url, headers=headers, expires_at=int(now.timestamp()) + expires)

    def presign_get(self, key: str, expires: int, filename: str) -> SignedUrl:
        _check(key, expires)
        now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        url = self._client.presigned_get_object(
            self.bucket, key, expires=dt.timedelta(seconds=expires), request_date=now,
            response_headers={"response-content-disposition": f'attachment; filename="{filename}"'},
        )
        return SignedUrl(method="GET", url=url, headers=(), expires_at=int(now.timestamp()) + expires)

    async def stat(self, key: str) -> FileStat | None:
        from minio.error import S3Error

        def head() -> FileStat | None:
            try:
                found = self._client.stat_object(self.bucket, key)
            except S3Error as exc:
                if exc.code in ("NoSuchKey", "NoSuchObject", "NotFound", "ResourceNotFound"):
                    return None
                raise
            return FileStat(size=found.size or 0, mime=found.content_type or "application/octet-stream")
        try:
            return await asyncio.to_thread(head)
        except Exception as exc:
            raise FilesUnavailable(f"cannot stat {key} in {self.bucket}: {exc}") from None

    async def delete(self, key: str) -> None:
        try:
            await asyncio.to_thread(self._client.remove_object, self.bucket, key)
        except Exception as exc:
            raise FilesUnavailable(f"cannot delete {key} from {self.bucket}: {exc}") from None

    def _presign_v4(self, method: str, key: str, now: dt.datetime, expires: int,
                    headers: tuple[tuple[str, str], ...]) -> str:
        """AWS Signature V4 in the query string (path-style URL), signing ``host`` and
        ``headers``; the payload is UNSIGNED-PAYLOAD, as in every presigned URL."""
        day, stamp = now.strftime("%Y%m%d"), now.strftime("%Y%m%dT%H%M%SZ")
        scope = f"{day}/{self.region}/{_SERVICE}/aws4_request"
        signed = {"host": self.endpoint, **{name.lower(): value for name, value in headers}}
        names = ";".join(sorted(signed))
        params = {"X-Amz-Algorithm": "AWS4-HMAC-SHA256", "X-Amz-Credential": f"{self._access_key}/{scope}",
                  "X-Amz-Date": stamp, "X-Amz-Expires": str(expires), "X-Amz-SignedHeaders": names}
        query = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in sorted(params.items()))
        path = "/" + _quote(self.bucket) + "/" + urllib.parse.quote(key, safe="/-_.~")
        canonical = "\n".join([method, path, query, "".join(f"{n}:{signed[n]}\n" for n in sorted(signed)), names,
                               "UNSIGNED-PAYLOAD"])
        to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        signing_key = ("AWS4" + self._secret_key).encode()
        for part in (day, self.region, _SERVICE, "aws4_request"):
            signing_key = hmac.new(signing_key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
        return f"{self._scheme}://{self.endpoint}{path}?{query}&X-Amz-Signature={signature}"


def _check(key: str, expires: int) -> None:
    if len(key) > 512 or KEY_PATTERN.fullmatch(key) is None:
        raise ValueError(f"not a file key: {key!r}")
    if not 1 <= expires <= MAX_EXPIRES:
        raise ValueError(f"expires must be 1..{MAX_EXPIRES} seconds")


def _quote(value: str) -> str:
    return urllib.parse.quote(value, safe="-_.~")
