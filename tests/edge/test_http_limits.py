"""The HTTP port against slow clients (issue 17, item 8): clients that trickle their headers,
stall a body or never read an answer are closed, the port holds a bounded number of
connections, and meanwhile /healthz and WebSocket logins work, even on a node whose
open-files limit is below the number of slow clients. /metrics asks for its token."""
from __future__ import annotations

import asyncio
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from harness import ServeProcess, new_user

from edgeim.edge.admin import _loopback
from edgeim.sdk import Client

#: slow clients: more than the node may open files (OPEN_FILES)
SLOW = 400
OPEN_FILES = 256  # the automatic cap is a quarter: 64 HTTP connections


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read()


def metric(node: ServeProcess, name: str) -> float:
    text = get(node.http_url + "/metrics")[1].decode()
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert found, name
    return float(found[1])


async def until_closed(reader: asyncio.StreamReader) -> bytes:
    """What the node sent before it closed the connection (b"" if nothing; "reset" if it
    aborted it); TimeoutError if it is still open after 30 s."""
    try:
        return await asyncio.wait_for(reader.read(), 30)
    except ConnectionResetError:
        return b"reset"


@pytest.fixture
def node(tmp_path: Path):
    server = ServeProcess(tmp_path / "data", http_header_timeout=3, http_body_timeout=3)
    server.open_files = OPEN_FILES
    server.start()
    yield server
    server.stop()


async def test_slow_header_clients_leave_healthz_and_websocket_logins_unharmed(node):
    host, port = "127.0.0.1", node.http_port
    slow = []
    for _ in range(SLOW):  # each sends half a request line and headers, then nothing
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        slow.append((reader, writer))
    await asyncio.gather(*(w.drain() for _, w in slow))

    healthz = await asyncio.to_thread(get, node.http_url + "/healthz")
    async with Client(node.url) as client:
        name, user_id = await new_user(client)  # REGISTER and LOGIN over the WebSocket port
    async with Client(node.url) as again:
        logged_in = await again.login(name, "secret-pw", "phone")

    closed = await asyncio.gather(*(until_closed(r) for r, _ in slow))
    for _, writer in slow:
        writer.close()

    assert healthz == (200, b"ok\n")
    assert user_id > 0 and logged_in
    assert set(closed) <= {b"", b"reset"}  # every slow one closed, none answered
    assert metric(node, "edgeim_http_connections") <= OPEN_FILES // 4
    evicted = metric(node, 'edgeim_http_closed_total{reason="evicted"}')
    late = metric(node, 'edgeim_http_closed_total{reason="header_timeout"}')
    assert evicted + late >= SLOW and late > 0


async def test_keep_alive_serves_requests_in_turn_then_an_idle_connection_is_closed(node):
    reader, writer = await asyncio.open_connection("127.0.0.1", node.http_port)
    answers = []
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 2)  # two pipelined
    await writer.drain()
    for n in range(3):
        if n == 2:  # and one more after the answers
            writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        length = int(re.search(rb"Content-Length: (\d+)", head)[1])
        answers.append(head.split(b"\r\n", 1)[0] + b" " + await reader.readexactly(length))

    rest = await until_closed(reader)  # then nothing: idle past the header deadline
    writer.close()

    assert answers == [b"HTTP/1.1 200 OK ok\n", b"HTTP/1.1 200 OK ok\n", b"HTTP/1.1 200 OK ready\n"]
    assert rest in (b"", b"reset")


async def test_a_stalled_request_body_is_cut(tmp_path: Path):
    token = "admin-" + "0123456789abcdef" * 2
    node = ServeProcess(tmp_path / "data", http_body_timeout=2, admin_token=token)
    node.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", node.http_port)
        # a body promised, a few bytes sent, then silence
        writer.write(f"POST /admin/users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                     "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"user".encode())
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 30)
        writer.close()
        cut = metric(node, 'edgeim_http_closed_total{reason="body_timeout"}')
        healthz = get(node.http_url + "/healthz")
    finally:
        node.stop()

    assert answer == b""  # closed, no answer: the request never arrived whole
    assert cut == 1
    assert healthz == (200, b"ok\n")


async def test_a_client_that_never_reads_its_download_is_cut(tmp_path: Path):
    app = tmp_path / "app"
    (app / "assets").mkdir(parents=True)
    (app / "index.html").write_text("<!doctype html>")
    (app / "assets" / "big.bin").write_bytes(b"\0" * (32 * 1024 * 1024))
    node = ServeProcess(tmp_path / "data", http_body_timeout=2, web_dir=app)
    node.start()
    try:
        node.proc.stdout.readline()  # "web app: ..."
        reader, writer = await asyncio.open_connection("127.0.0.1", node.http_port, limit=1024)
        writer.transport.pause_reading()  # never read: the node's buffers fill
        writer.write(b"GET /assets/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        for _ in range(300):
            if metric(node, 'edgeim_http_closed_total{reason="body_timeout"}') >= 1:
                break
            await asyncio.sleep(0.1)
        cut = metric(node, 'edgeim_http_closed_total{reason="body_timeout"}')
        writer.close()
    finally:
        node.stop()

    assert cut == 1


def test_metrics_need_the_token_when_one_is_set(serve_factory):
    token = "metrics-" + "fedcba9876543210"
    node = serve_factory(metrics_token=token)

    without = get(node.http_url + "/metrics")
    wrong = get(node.http_url + "/metrics", {"Authorization": "Bearer metrics-0000000000000000"})
    right = get(node.http_url + "/metrics", {"Authorization": f"Bearer {token}"})

    assert without[0] == 401 and wrong[0] == 401
    assert right[0] == 200 and b"edgeim_http_connections" in right[1]


def test_without_a_token_metrics_answer_only_this_host():
    assert _loopback("127.0.0.1") and _loopback("::1") and _loopback("::ffff:127.0.0.5")
    assert not _loopback("10.0.0.1") and not _loopback("192.0.2.7") and not _loopback("2001:db8::1")
    assert not _loopback(None) and not _loopback("not an address")
