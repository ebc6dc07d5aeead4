"""The ``Files`` contract (backends/protocols.py), run against every implementation, with a
plain HTTP client doing what a client app does with a grant's URL.

Add an implementation by adding a branch to ``files``. "local" is ``LocalFiles`` behind a
real node HTTP listener (edge/http.py) on a free loopback port; "s3" is ``S3Files`` on the
SeaweedFS that tests/servers.py starts once per session, with a bucket of the test's own.
Expiry is checked with a one-second URL and a sleep past it: the test asserts that URLs
expire, not how fast. LocalFiles-only checks are in test_localfiles.py.
"""
from __future__ import annotations

import asyncio
import io
import os
import urllib.parse
from typing import AsyncIterator

import aiohttp
import pytest
import yarl
from servers import s3_server  # noqa: F401  (session fixture: a real S3 server)

from edgeim.backends.localfiles import LocalFiles
from edgeim.backends.protocols import FileStat, Files
from edgeim.edge.http import HttpServer, add_file_routes
from edgeim.ops.config import Config

KEY = "g7/AAAAAAAAAAAAAAAA/report.pdf"
OTHER = "g7/BBBBBBBBBBBBBBBB/report.pdf"
PDF = "application/pdf"
TTL = 300


@pytest.fixture(params=["local", "s3"])
async def files(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[Files]:
    if request.param == "local":
        local = LocalFiles(tmp_path / "files", os.urandom(32))
        http = HttpServer(Config.load({"http_port": 0, "data_dir": tmp_path}, env={}))
        add_file_routes(http, local)
        await local.open()
        await http.start()
        local.base_url = http.url
        yield local
        await http.stop()
        await local.close()
    elif request.param == "s3":
        from edgeim.backends.s3 import S3Files
        server = request.getfixturevalue("s3_server")
        s3 = S3Files(server.endpoint, server.access_key, server.secret_key, server.new_bucket())
        await s3.open()
        yield s3
        await s3.close()
    else:
        raise AssertionError(request.param)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def put(http: aiohttp.ClientSession, url: str, body: bytes, mime: str) -> int:
    """PUT ``body`` as a client would: its own length, the given type."""
    # (a BytesIO, not bytes: aiohttp warns about large bytes bodies, and warnings are errors)
    async with http.put(yarl.URL(url, encoded=True), data=io.BytesIO(body), headers={"Content-Type": mime}) as response:
        await response.read()
        return response.status


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, bytes, dict[str, str]]:
    async with http.get(yarl.URL(url, encoded=True)) as response:
        return response.status, await response.read(), dict(response.headers)


async def upload(http: aiohttp.ClientSession, files: Files, key: str, body: bytes, mime: str = PDF) -> None:
    grant = files.presign_put(key, len(body), mime, TTL)
    assert grant.method == "PUT"
    assert await put(http, grant.url, body, mime) == 200


def tampered(url: str) -> str:
    """The URL with the last digit of its signature changed."""
    head, last = url[:-1], url[-1]
    return head + ("0" if last != "0" else "1")


def with_path(url: str, key: str, old: str = KEY) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=parts.path.replace(old, key)))


# -- the way it is meant to be used --------------------------------------------------------------

async def test_put_then_get_the_same_bytes_and_type(files, http):
    body = os.urandom(3 * 1024 * 1024 + 17)  # several chunks and writes
    await upload(http, files, KEY, body)

    assert await files.stat(KEY) == FileStat(size=len(body), mime=PDF)
    status, got, headers = await get(http, files.presign_get(KEY, TTL, "report.pdf").url)
    assert status == 200
    assert got == body
    assert headers["Content-Type"] == PDF
    assert headers["Content-Disposition"] == 'attachment; filename="report.pdf"'


async def test_grants_say_what_to_send_and_until_when(files):
    import time
    grant = files.presign_put(KEY, 5, "text/plain", TTL)
    assert dict(grant.headers) == {"Content-Length": "5", "Content-Type": "text/plain"}
    assert abs(grant.expires_at - (time.time() + TTL)) < 5
    assert files.presign_get(KEY, TTL, "report.pdf").headers == ()


async def test_an_empty_file(files, http):
    await upload(http, files, KEY, b"", "text/plain")
    assert await files.stat(KEY) == FileStat(size=0, mime="text/plain")
    status, got, _ = await get(http, files.presign_get(KEY, TTL, "report.pdf").url)
    assert (status, got) == (200, b"")


async def test_a_second_put_replaces(files, http):
    await upload(http, files, KEY, b"first")
    await upload(http, files, KEY, b"again")
    status, got, _ = await get(http, files.presign_get(KEY, TTL, "report.pdf").url)
    assert (status, got) == (200, b"again")


async def test_nothing_there(files, http):
    assert await files.stat(KEY) is None
    status, _, _ = await get(http, files.presign_get(KEY, TTL, "report.pdf").url)
    assert status == 404


async def test_delete(files, http):
    await upload(http, files, KEY, b"bytes")
    await upload(http, files, OTHER, b"others")
    await files.delete(KEY)
    assert await files.stat(KEY) is None
    assert (await get(http, files.presign_get(KEY, TTL, "report.pdf").url))[0] == 404
    await files.delete(KEY)  # again: not an error
    assert await files.stat(OTHER) == FileStat(size=6, mime=PDF)


# -- what a URL does not allow ------------------------------------------------------------------

async def test_an_altered_signature_is_refused(files, http):
    grant = files.presign_put(KEY, 5, PDF, TTL)
    assert await put(http, tampered(grant.url), b"hello", PDF) == 403
    assert await files.stat(KEY) is None
    await upload(http, files, KEY, b"hello")
    assert (await get(http, tampered(files.presign_get(KEY, TTL, "report.pdf").url)))[0] == 403


async def test_an_altered_query_is_refused(files, http):
    grant = files.presign_put(KEY, 5, PDF, TTL)
    longer = grant.url.replace("Expires=300", "Expires=3000")
    assert longer != grant.url
    assert await put(http, longer, b"hello", PDF) == 403
    await upload(http, files, KEY, b"hello")
    renamed = files.presign_get(KEY, TTL, "report.pdf").url.replace("report.pdf%22", "evil.exe%22")
    assert "evil.exe" in renamed
    assert (await get(http, renamed))[0] == 403
    assert await files.stat(KEY) == FileStat(size=5, mime=PDF)


async def test_a_url_is_for_its_own_key_only(files, http):
    grant = files.presign_put(KEY, 5, PDF, TTL)
    assert await put(http, with_path(grant.url, OTHER), b"hello", PDF) == 403
    assert await files.stat(OTHER) is None
    await upload(http, files, KEY, b"hello")
    await upload(http, files, OTHER, b"other")
    assert (await get(http, with_path(files.presign_get(KEY, TTL, "report.pdf").url, OTHER)))[0] == 403


async def test_a_body_of_another_length_is_refused(files, http):
    grant = files.presign_put(KEY, 5, PDF, TTL)
    assert await put(http, grant.url, b"hello, and more", PDF) == 403
    assert await put(http, grant.url, b"hell", PDF) == 403
    assert await files.stat(KEY) is None


async def test_another_content_type_is_refused(files, http):
    grant = files.presign_put(KEY, 5, PDF, TTL)
    assert await put(http, grant.url, b"hello", "text/html") == 403
    assert await files.stat(KEY) is None


async def test_a_get_url_does_not_put_and_a_put_url_does_not_get(files, http):
    await upload(http, files, KEY, b"hello")
    assert await put(http, files.presign_get(KEY, TTL, "report.pdf").url, b"HELLO", PDF) == 403
    assert (await get(http, files.presign_put(KEY, 5, PDF, TTL).url))[0] == 403
    status, got, _ = await get(http, files.presign_get(KEY, TTL, "report.pdf").url)
    assert (status, got) == (200, b"hello")


async def test_expired_urls_are_refused(files, http):
    put_grant = files.presign_put(KEY, 5, PDF, 1)
    await upload(http, files, OTHER, b"other")
    get_grant = files.presign_get(OTHER, 1, "report.pdf")
    await asyncio.sleep(2.5)
    assert await put(http, put_grant.url, b"hello", PDF) == 403
    assert (await get(http, get_grant.url))[0] == 403
    assert await files.stat(KEY) is None


async def test_an_upload_cut_short_stores_nothing(files, http):
    body = os.urandom(256 * 1024)
    grant = files.presign_put(KEY, len(body), PDF, TTL)
    url = urllib.parse.urlsplit(grant.url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    head = [f"PUT {url.path}?{url.query} HTTP/1.1", f"Host: {url.netloc}", *(f"{n}: {v}" for n, v in grant.headers)]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body[: len(body) // 2])
    await writer.drain()
    writer.close()  # the client goes away half way
    await writer.wait_closed()
    assert await files.stat(KEY) is None
    # the same grant still works, and the object is the whole body
    assert await put(http, grant.url, body, PDF) == 200
    status, got, _ = await get(http, files.presign_get(KEY, TTL, "report.pdf").url)
    assert (status, got) == (200, body)
