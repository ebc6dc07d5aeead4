"""``LocalFiles`` beyond the ``Files`` contract (test_files_contract.py): its signed URLs as
the node's HTTP listener serves them, with its clock moved by the test, and its directory."""
from __future__ import annotations

import asyncio
import io
import logging
import os
import urllib.parse
from typing import AsyncIterator

import aiohttp
import pytest
import yarl

from edgeim.backends.localfiles import LocalFiles
from edgeim.backends.protocols import FileQuotaExceeded, FileStat, FilesUnavailable
from edgeim.edge.http import HttpServer, add_file_routes
from edgeim.ops.config import Config

KEY = "p1_2/AAAAAAAAAAAAAAAA/notes.txt"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def files(tmp_path, clock) -> AsyncIterator[LocalFiles]:
    local = LocalFiles(tmp_path / "files", os.urandom(32), clock=clock)
    http = HttpServer(Config.load({"http_port": 0, "data_dir": tmp_path}, env={}))
    add_file_routes(http, local)
    await local.open()
    await http.start()
    local.base_url = http.url
    yield local
    await http.stop()


async def request(method: str, url: str, body: bytes | None = None, **headers: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as http:
        data = io.BytesIO(body) if body is not None else None
        async with http.request(method, yarl.URL(url, encoded=True), data=data,
                                headers={k.replace("_", "-"): v for k, v in headers.items()}) as response:
            return response.status, await response.read()


async def test_expiry_follows_the_clock(files, clock):
    grant = files.presign_put(KEY, 2, "text/plain", 60)
    assert grant.expires_at == int(clock.now) + 60
    clock.now += 61
    assert (await request("PUT", grant.url, b"hi", Content_Type="text/plain"))[0] == 403
    clock.now -= 2
    assert (await request("PUT", grant.url, b"hi", Content_Type="text/plain"))[0] == 200


async def test_a_url_dated_in_the_future_is_refused(files, clock):
    clock.now += 3600
    grant = files.presign_put(KEY, 2, "text/plain", 60)
    clock.now -= 3600
    status, reason = await request("PUT", grant.url, b"hi", Content_Type="text/plain")
    assert (status, reason) == (403, b"the URL is not valid yet\n")


async def test_a_put_needs_a_content_length(files):
    grant = files.presign_put(KEY, 2, "text/plain", 60)

    async def chunked() -> AsyncIterator[bytes]:
        yield b"hi"
    async with aiohttp.ClientSession() as http:
        async with http.put(yarl.URL(grant.url, encoded=True), data=chunked(),
                            headers={"Content-Type": "text/plain"}) as response:
            assert response.status == 411
    assert await files.stat(KEY) is None


async def test_altered_urls_say_why(files):
    grant = files.presign_put(KEY, 2, "text/plain", 60)
    doubled = grant.url + "&X-Im-Expires=60"
    assert await request("PUT", doubled, b"hi", Content_Type="text/plain") == (
        403, b"query parameter X-Im-Expires given twice\n")
    unsigned = grant.url.split("&X-Im-Signature=")[0]
    assert (await request("PUT", unsigned, b"hi", Content_Type="text/plain"))[0] == 403
    parts = urllib.parse.urlsplit(grant.url)
    for path in ("/files/p1_2/../../token.secret", "/files/p1_2/.hidden/x", "/files/" + "a" * 600):
        escaped = urllib.parse.urlunsplit(parts._replace(path=path))
        assert (await request("PUT", escaped, b"hi", Content_Type="text/plain"))[0] in (403, 404)
    assert await files.stat(KEY) is None


async def test_the_signature_does_not_cover_the_host(files):
    """A proxy in front of the node may change the Host header; the URL still works."""
    grant = files.presign_put(KEY, 2, "text/plain", 60)
    assert (await request("PUT", grant.url, b"hi", Content_Type="text/plain", Host="files.example.com"))[0] == 200


async def test_ranges(files):
    grant = files.presign_put(KEY, 10, "text/plain", 60)
    assert (await request("PUT", grant.url, b"0123456789", Content_Type="text/plain"))[0] == 200
    assert await request("GET", files.presign_get(KEY, 60, "notes.txt").url, Range="bytes=2-4") == (206, b"234")


async def test_a_cut_upload_leaves_no_file_and_no_error(files, caplog):
    grant = files.presign_put(KEY, 100_000, "text/plain", 60)
    url = urllib.parse.urlsplit(grant.url)
    with caplog.at_level(logging.WARNING):
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        head = f"PUT {url.path}?{url.query} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Length: 100000\r\n" \
               f"Content-Type: text/plain\r\n\r\n"
        writer.write(head.encode() + b"x" * 1000)
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        for _ in range(100):  # until the listener has seen the connection go and cleaned up
            if not list((files.root / "tmp").iterdir()):
                break
            await asyncio.sleep(0.02)
    assert list((files.root / "tmp").iterdir()) == []
    assert await files.stat(KEY) is None
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_open_clears_what_a_crash_left(tmp_path):
    local = LocalFiles(tmp_path / "files", os.urandom(32), base_url="http://127.0.0.1:1")
    await local.open()
    (local.root / "tmp" / "half-an-upload").write_bytes(b"x" * 10)
    await LocalFiles(tmp_path / "files", os.urandom(32)).open()
    assert list((local.root / "tmp").iterdir()) == []


async def test_deleting_removes_the_keys_directories(files):
    grant = files.presign_put(KEY, 2, "text/plain", 60)
    assert (await request("PUT", grant.url, b"hi", Content_Type="text/plain"))[0] == 200
    assert await files.stat(KEY) == FileStat(size=2, mime="text/plain")
    await files.delete(KEY)
    assert not (files.root / "objects" / "p1_2").exists()
    assert not (files.root / "meta" / "p1_2").exists()


async def test_keys_are_checked_before_signing(files):
    for key in ("../x", "a/../b", ".x", "a//b", "a/.b", "", "a" * 513):
        with pytest.raises(ValueError):
            files.presign_put(key, 1, "text/plain", 60)
    with pytest.raises(ValueError):
        files.presign_get(KEY, 8 * 24 * 3600, "notes.txt")  # longer than S3 allows


# -- the disk's reserve for the store, and each account's quota ----------------------------------

async def test_uploads_are_refused_before_the_disk_reserve(tmp_path):
    """A fake free-space reading: an upload that would leave less than ``min_free`` is
    refused at the grant's check (``room``) and at the PUT (507), and nothing is written."""
    free = {"bytes": 10_000}
    local = LocalFiles(tmp_path / "files", os.urandom(32), min_free=4_000, free_space=lambda: free["bytes"])
    http = HttpServer(Config.load({"http_port": 0, "data_dir": tmp_path}, env={}))
    add_file_routes(http, local)
    await local.open()
    await http.start()
    local.base_url = http.url
    try:
        await local.room(7, 6_000)  # leaves 4,000: allowed
        with pytest.raises(FilesUnavailable):
            await local.room(7, 6_001)
        grant = local.presign_put(KEY, 5_000, "text/plain", 60, owner=7)
        free["bytes"] = 8_000  # the store wrote meanwhile
        status, reason = await request("PUT", grant.url, b"x" * 5_000, Content_Type="text/plain")
        assert status == 507 and b"insufficient storage" in reason
        assert await local.stat(KEY) is None
        free["bytes"] = 10_000
        assert (await request("PUT", grant.url, b"x" * 5_000, Content_Type="text/plain"))[0] == 200
    finally:
        await http.stop()


async def test_an_owner_keeps_at_most_the_quota_across_restarts_and_deletes_give_room(files, tmp_path):
    files.quota = 100
    first = "g1/AAAAAAAAAAAAAAAA/a.txt"
    for key, size in ((first, 60), ("g1/BBBBBBBBBBBBBBBB/b.txt", 40)):
        grant = files.presign_put(key, size, "text/plain", 60, owner=7)
        assert (await request("PUT", grant.url, b"x" * size, Content_Type="text/plain"))[0] == 200
    with pytest.raises(FileQuotaExceeded):
        await files.room(7, 1)
    await files.room(8, 100)  # another owner's quota is its own
    grant = files.presign_put("g1/CCCCCCCCCCCCCCCC/c.txt", 1, "text/plain", 60, owner=7)
    assert (await request("PUT", grant.url, b"x", Content_Type="text/plain"))[0] == 507

    again = LocalFiles(tmp_path / "files", os.urandom(32), quota=100)  # a restart: counted from the disk
    await again.open()
    with pytest.raises(FileQuotaExceeded):
        await again.room(7, 1)
    await again.delete(first)
    await again.room(7, 60)
    with pytest.raises(FileQuotaExceeded):
        await again.room(7, 61)
