"""Files against a real ``im serve``: FILE_UPLOAD and FILE_DOWNLOAD grants, the bytes moved
with a plain HTTP client on the grants' URLs, who may get a grant, the limits and their
errors. Each flow runs on a node with embedded defaults (files under its data dir, served
on its HTTP port) and on a node whose IM_FILES is the SeaweedFS S3 server that
tests/servers.py starts (presigned URLs on the S3 server itself)."""
from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
import yarl
from servers import s3_server  # noqa: F401  (session fixture: a real S3 server)

from edgeim.core_ext import content
from edgeim.core_ext.protocol import ErrorCode, Op
from edgeim.sdk import Client, ServerError

from harness import ServeProcess, new_user, next_event

PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(50_000)

Connect = Callable[[], Awaitable[Client]]


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest) -> dict[str, object]:
    """The settings that put a node's files on this backend."""
    if request.param == "local":
        return {}
    server = request.getfixturevalue("s3_server")
    return {"files": server.url(server.new_bucket())}


@pytest.fixture
def make_node(serve_factory: Callable[..., ServeProcess], backend: dict[str, object]) -> Callable[..., ServeProcess]:
    return lambda **settings: serve_factory(**{**backend, **settings})


@pytest.fixture
async def connect() -> AsyncIterator[Callable[[ServeProcess], Awaitable[Client]]]:
    """``await connect(node)``: a fresh user logged in on ``node``; closed at the end."""
    made: list[Client] = []

    async def make(node: ServeProcess) -> Client:
        client = Client(node.url)
        await client.connect()
        made.append(client)
        await new_user(client)
        return client

    yield make
    for client in made:
        await client.close()


async def refused(call: Awaitable[object], code: ErrorCode) -> ServerError:
    with pytest.raises(ServerError) as err:
        await call
    assert err.value.code == code, err.value
    return err.value


async def http_get(url: str) -> tuple[int, bytes, dict[str, str]]:
    async with aiohttp.ClientSession() as http:
        async with http.get(yarl.URL(url, encoded=True)) as response:
            return response.status, await response.read(), dict(response.headers)


async def http_put(url: str, body: bytes, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as http:
        async with http.put(yarl.URL(url, encoded=True), data=io.BytesIO(body), headers=headers) as response:
            await response.read()
            return response.status


async def group_of(owner: Client, *members: Client) -> int:
    info = await owner.group_create("files", [m.user_id for m in members])
    for client in (owner, *members):
        assert (await next_event(client, Op.GROUP_PUSH)).event == "created"
    return info.group


# -- the flow ----------------------------------------------------------------------------------

async def test_an_image_shared_in_a_group(make_node, connect):
    node = make_node()
    alice, bob = await connect(node), await connect(node)
    group = await group_of(alice, bob)

    grant = await alice.file_upload_grant(f"g{group}", "Holiday photo.png", len(PNG), "image/png")
    assert grant.key.startswith(f"g{group}/") and grant.key.endswith("/Holiday_photo.png")
    assert {h.name: h.value for h in grant.headers} == {"Content-Length": str(len(PNG)), "Content-Type": "image/png"}
    assert grant.expires_at > time.time() + 60
    assert await http_put(grant.url, PNG, {h.name: h.value for h in grant.headers}) == 200
    await alice.send_typed(group, content.Image(key=grant.key, width=64, height=48, size=len(PNG), mime="image/png"),
                           group=True)

    shared = (await bob.pushes.get()).content
    assert shared["key"] == grant.key
    download = await bob.file_download_grant(shared["key"])
    assert (download.key, download.name, download.size, download.mime) == (
        grant.key, "Holiday_photo.png", len(PNG), "image/png")
    status, got, headers = await http_get(download.url)
    assert (status, got, headers["Content-Type"]) == (200, PNG, "image/png")
    assert headers["Content-Disposition"] == 'attachment; filename="Holiday_photo.png"'


async def test_the_sdk_uploads_bytes_and_paths(make_node, connect, tmp_path):
    node = make_node()
    alice, bob = await connect(node), await connect(node)
    conv = f"p{min(alice.user_id, bob.user_id)}_{max(alice.user_id, bob.user_id)}"
    path = tmp_path / "notes.pdf"
    path.write_bytes(b"%PDF-1.7 " + os.urandom(200_000))

    from_bytes = await alice.upload(conv, b"hello bob", "text/plain", name="hi.txt")
    from_path = await bob.upload(conv, path, "application/pdf")

    assert from_path.endswith("/notes.pdf")
    assert await bob.download(from_bytes) == b"hello bob"
    assert await alice.download(from_path) == path.read_bytes()
    assert (await alice.file_download_grant(from_path)).size == path.stat().st_size


async def test_a_url_is_good_for_its_grant_only(make_node, connect):
    node = make_node()
    alice = await connect(node)
    group = await group_of(alice)
    grant = await alice.file_upload_grant(f"g{group}", "a.pdf", 10, "application/pdf")
    headers = {h.name: h.value for h in grant.headers}

    assert await http_put(grant.url, b"0123456789" * 2, {"Content-Type": "application/pdf"}) == 403  # too large
    assert await http_put(grant.url, b"0123456789", {"Content-Type": "text/html"}) == 403  # another type
    assert await http_put(grant.url[:-1] + ("0" if grant.url[-1] != "0" else "1"), b"0123456789", headers) == 403
    await refused(alice.file_download_grant(grant.key), ErrorCode.NOT_FOUND)  # nothing was stored
    assert await http_put(grant.url, b"0123456789", headers) == 200
    assert (await alice.file_download_grant(grant.key)).size == 10


async def test_grants_expire(make_node, connect):
    node = make_node(file_grant_ttl=1)
    alice = await connect(node)
    group = await group_of(alice)
    grant = await alice.file_upload_grant(f"g{group}", "a.pdf", 3, "application/pdf")
    key = await alice.upload(f"g{group}", b"abc", "application/pdf")
    download = await alice.file_download_grant(key)

    await asyncio.sleep(2.5)
    assert await http_put(grant.url, b"abc", {h.name: h.value for h in grant.headers}) == 403
    assert (await http_get(download.url))[0] == 403
    await refused(alice.file_download_grant(grant.key), ErrorCode.NOT_FOUND)


# -- who may -------------------------------------------------------------------------------------

async def test_only_members_of_the_conversation(make_node, connect):
    node = make_node()
    alice, bob, carol, mallory = [await connect(node) for _ in range(4)]
    group = await group_of(alice, bob, carol)
    private = f"p{min(alice.user_id, bob.user_id)}_{max(alice.user_id, bob.user_id)}"
    in_group = await alice.upload(f"g{group}", b"for the group", "text/plain")
    in_private = await alice.upload(private, b"for bob", "text/plain")

    assert await carol.download(in_group) == b"for the group"
    assert await bob.download(in_private) == b"for bob"
    # not in the conversation the file was granted for: neither the file nor a new grant
    await refused(mallory.file_download_grant(in_group), ErrorCode.FORBIDDEN)
    await refused(mallory.file_download_grant(in_private), ErrorCode.FORBIDDEN)
    await refused(carol.file_download_grant(in_private), ErrorCode.FORBIDDEN)
    await refused(mallory.file_upload_grant(f"g{group}", "x.txt", 1, "text/plain"), ErrorCode.FORBIDDEN)
    await refused(mallory.file_upload_grant(private, "x.txt", 1, "text/plain"), ErrorCode.FORBIDDEN)
    # a member who leaves loses access
    await alice.group_kick(group, carol.user_id)
    await refused(carol.file_download_grant(in_group), ErrorCode.FORBIDDEN)
    await refused(carol.file_upload_grant(f"g{group}", "x.txt", 1, "text/plain"), ErrorCode.FORBIDDEN)
    assert await bob.download(in_group) == b"for the group"


async def test_keys_that_are_not_files_of_this_server(make_node, connect):
    node = make_node()
    alice = await connect(node)
    group = await group_of(alice)
    for key in ("../../etc/passwd", f"g{group}/short/x.txt", f"g{group}/AAAAAAAAAAAAAAAA/.hidden", "x"):
        await refused(alice.file_download_grant(key), ErrorCode.INVALID_ARGUMENT)
    await refused(alice.file_download_grant(f"g{group}/AAAAAAAAAAAAAAAA/never.txt"), ErrorCode.NOT_FOUND)
    await refused(alice.file_upload_grant("nonsense", "x.txt", 1, "text/plain"), ErrorCode.INVALID_ARGUMENT)
    await refused(alice.file_upload_grant(f"g{group}", "x.txt", 1, "not a type"), ErrorCode.BAD_BODY)
    await refused(alice.file_upload_grant(f"g{group}", "x.txt", -1, "text/plain"), ErrorCode.BAD_BODY)


# -- limits --------------------------------------------------------------------------------------

async def test_size_and_type_limits(make_node, connect):
    node = make_node(file_max_size=1000, file_types="image/*, application/pdf")
    alice = await connect(node)
    conv = f"g{await group_of(alice)}"

    await refused(alice.file_upload_grant(conv, "big.png", 1001, "image/png"), ErrorCode.FILE_TOO_LARGE)
    await refused(alice.file_upload_grant(conv, "page.html", 10, "text/html"), ErrorCode.FILE_TYPE_REFUSED)
    await refused(alice.file_upload_grant(conv, "clip.mp4", 10, "video/mp4"), ErrorCode.FILE_TYPE_REFUSED)
    assert (await alice.file_upload_grant(conv, "ok.png", 1000, "IMAGE/PNG")).headers[1].value == "image/png"
    assert await alice.download(await alice.upload(conv, b"%PDF", "application/pdf")) == b"%PDF"


async def test_grants_per_minute(make_node, connect):
    node = make_node(file_grants_per_minute=3)
    alice, bob = await connect(node), await connect(node)
    conv = f"g{await group_of(alice, bob)}"
    key = await alice.upload(conv, b"one", "text/plain")  # 1
    await alice.file_download_grant(key)  # 2
    await alice.file_upload_grant(conv, "x.txt", 1, "text/plain")  # 3

    await refused(alice.file_upload_grant(conv, "x.txt", 1, "text/plain"), ErrorCode.RATE_LIMITED)
    await refused(alice.file_download_grant(key), ErrorCode.RATE_LIMITED)
    assert await bob.download(key) == b"one"  # per account
    await alice.ping()  # and the connection stays


async def test_a_restart_keeps_the_files_and_their_urls(make_node, connect):
    node = make_node()
    alice = await connect(node)
    key = await alice.upload(f"g{await group_of(alice)}", b"kept", "text/plain")
    url = (await alice.file_download_grant(key)).url
    await alice.close()

    node.restart()
    assert (await http_get(url))[:2] == (200, b"kept")  # same port, same signing key
    again = await connect(node)
    await refused(again.file_download_grant(key), ErrorCode.FORBIDDEN)  # someone else


# -- a cluster: nodes share the files on S3 --------------------------------------------------------

async def test_a_file_uploaded_on_one_node_is_had_on_another(tmp_path, s3_server, mysql_server, redis_server,
                                                            rocketmq_server, connect):
    database = mysql_server.new_database()
    shared = dict(store=mysql_server.url(database), routes=f"{redis_server.url}?prefix={redis_server.new_prefix()}",
                  bus=f"rocketmq://{rocketmq_server.namesrv}", token_secret="cluster-secret-" + os.urandom(16).hex(),
                  files=s3_server.url(s3_server.new_bucket()))
    run = os.urandom(4).hex()
    nodes = [ServeProcess(tmp_path / name, node_id=f"{run}-{name}", **shared) for name in "ab"]
    try:
        for node in nodes:
            node.start()
        alice, bob, mallory = await connect(nodes[0]), await connect(nodes[1]), await connect(nodes[1])
        group = await group_of(alice, bob)
        key = await alice.upload(f"g{group}", PNG, "image/png", name="shared.png")

        grant = await bob.file_download_grant(key)
        assert (grant.name, grant.size, grant.mime) == ("shared.png", len(PNG), "image/png")
        assert (await http_get(grant.url))[:2] == (200, PNG)
        await refused(mallory.file_download_grant(key), ErrorCode.FORBIDDEN)
        assert await alice.download(await bob.upload(f"g{group}", b"back", "text/plain")) == b"back"
    finally:
        for node in nodes:
            if node.alive:
                node.stop()
        mysql_server.drop_database(database)


# -- the node's HTTP port --------------------------------------------------------------------------

def test_the_http_port_answers_health(serve_factory):
    node = serve_factory()
    assert node.http_url and node.http_port != node.port
    for path, body in (("/healthz", b"ok\n"), ("/readyz", b"ready\n")):
        with urllib.request.urlopen(node.http_url + path, timeout=5) as response:
            assert (response.status, response.read()) == (200, body)
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(node.http_url + "/files/g1/AAAAAAAAAAAAAAAA/x.txt", timeout=5)
    assert err.value.code == 403  # not a signed URL
    err.value.close()
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(node.http_url + "/nothing", timeout=5)
    assert err.value.code == 404
    err.value.close()


def serve_once(tmp_path, **env: str) -> subprocess.CompletedProcess[str]:
    """``im serve`` that is expected to stop by itself at start."""
    return subprocess.run([sys.executable, "-m", "edgeim.cli", "serve", "--port", "0", "--data-dir", str(tmp_path)],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60)


def test_a_bad_files_setting_stops_the_node_with_a_message(tmp_path):
    done = serve_once(tmp_path, IM_FILES="ftp://nowhere")
    assert done.returncode == 2 and "files must be local or s3://" in done.stderr and "listening" not in done.stdout


def test_an_unreachable_s3_server_stops_the_node(tmp_path):
    done = serve_once(tmp_path, IM_FILES="s3://k:s@127.0.0.1:9/bucket")
    assert done.returncode == 1 and "listening" not in done.stdout
    assert "cannot start: cannot use bucket bucket on 127.0.0.1:9" in done.stderr


# -- what files may take from the disk: a reserve for the store, a quota per account -------------

def readyz(base: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(base + "/readyz", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


async def test_with_the_disk_short_of_room_uploads_are_refused_and_messages_go_on(serve_factory, connect):
    """files_min_free above the disk's free space stands for a disk nearly full: upload
    grants are refused with 5001 before any byte is written, sends are still acked; with
    store_min_free above it too, /readyz says the store is unavailable."""
    node = serve_factory(files_min_free=2**62)
    alice, bob = await connect(node), await connect(node)
    await refused(alice.file_upload_grant(f"p{min(alice.user_id, bob.user_id)}_{max(alice.user_id, bob.user_id)}",
                                          "a.pdf", 10, "application/pdf"), ErrorCode.UNAVAILABLE)
    ack = await alice.send(bob.user_id, "messaging goes on")
    assert [m.content for m in (await bob.sync(ack.conv)).msgs] == ["messaging goes on"]
    assert await asyncio.to_thread(readyz, node.http_url) == (200, "ready\n")

    low = serve_factory(store_min_free=2**62)
    for _ in range(100):  # the probe runs once a second
        status, text = await asyncio.to_thread(readyz, low.http_url)
        if status == 503:
            break
        await asyncio.sleep(0.1)
    assert (status, text) == (503, "store unavailable\n")


async def test_an_account_keeps_at_most_its_quota_of_files_even_after_a_restart(serve_factory):
    node = serve_factory(file_quota=100)
    async with Client(node.url) as alice, Client(node.url) as bob:
        alice_name, _ = await new_user(alice)
        await new_user(bob)
        group = await group_of(alice)
        await alice.upload(f"g{group}", b"x" * 60, "application/pdf")
        first = await alice.file_upload_grant(f"g{group}", "b.pdf", 40, "application/pdf")
        second = await alice.file_upload_grant(f"g{group}", "c.pdf", 40, "application/pdf")  # grants reserve nothing
        err = await refused(alice.file_upload_grant(f"g{group}", "d.pdf", 41, "application/pdf"),
                            ErrorCode.FILE_QUOTA_EXCEEDED)
        assert "100" in err.message
        assert await http_put(first.url, b"y" * 40, {h.name: h.value for h in first.headers}) == 200
        assert await http_put(second.url, b"z" * 40, {h.name: h.value for h in second.headers}) == 507
        await refused(alice.file_download_grant(second.key), ErrorCode.NOT_FOUND)
        await refused(alice.file_upload_grant(f"g{group}", "e.pdf", 1, "application/pdf"),
                      ErrorCode.FILE_QUOTA_EXCEEDED)
        await bob.upload(f"g{await group_of(bob)}", b"b" * 100, "application/pdf")  # each account its own

    node.restart()
    async with Client(node.url) as again:
        await again.login(alice_name, "secret-pw", "web")
        await refused(again.file_upload_grant(f"g{group}", "f.pdf", 1, "application/pdf"),
                      ErrorCode.FILE_QUOTA_EXCEEDED)


async def test_uploads_no_message_shares_expire_and_give_their_room_back(serve_factory):
    node = serve_factory(file_unshared_ttl=1, file_quota=100)
    async with Client(node.url) as alice, Client(node.url) as bob:
        await new_user(alice)
        await new_user(bob)
        conv = f"p{min(alice.user_id, bob.user_id)}_{max(alice.user_id, bob.user_id)}"
        kept = await alice.upload(conv, b"k" * 30, "application/pdf")
        await alice.send_typed(bob.user_id, content.File(key=kept, name="kept.pdf", size=30, mime="application/pdf"))
        dropped = await alice.upload(conv, b"d" * 70, "application/pdf")  # never in a message
        await refused(alice.file_upload_grant(conv, "more.pdf", 70, "application/pdf"), ErrorCode.FILE_QUOTA_EXCEEDED)

        for _ in range(200):  # swept every 0.1 s once a second old
            try:
                await alice.file_download_grant(dropped)
            except ServerError as err:
                assert err.code == ErrorCode.NOT_FOUND
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("an upload no message shares was kept")
        grant = await bob.file_download_grant(kept)  # older than the unshared one: shared, so kept
        assert (await http_get(grant.url))[1] == b"k" * 30
        await alice.file_upload_grant(conv, "more.pdf", 70, "application/pdf")  # its room is back
