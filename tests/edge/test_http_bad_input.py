"""Bad input on the HTTP port (issue 17, item 12): answered with a status, never a 500, and
logged in one short line, not a traceback an anonymous client can repeat at will."""
from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path

from harness import ServeProcess

TOKEN = "admin-" + "0123456789abcdef"


def get(url: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def test_a_number_that_is_not_ascii_is_no_id(serve_factory):
    node = serve_factory(admin_token=TOKEN)

    user = get(node.http_url + "/admin/users/%C2%B2")  # "²": str.isdigit says yes, int() no
    group = get(node.http_url + "/admin/groups/%C2%B2")
    dissolve = urllib.request.Request(node.http_url + "/admin/groups/%D9%A3/dissolve", method="POST",  # "٣"
                                      headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        urllib.request.urlopen(dissolve, timeout=10)
        dissolved = 200
    except urllib.error.HTTPError as refused:
        dissolved = refused.code

    assert user == (404, {"error": "no user '²'"})
    assert group[0] == 400 and "a group id is a number" in group[1]["error"]
    assert dissolved == 400


async def test_malformed_requests_are_one_short_line_each(tmp_path: Path):
    node = ServeProcess(tmp_path / "data", log_level="debug")
    node.log_path = tmp_path / "node.log"
    node.start()
    try:
        for request in (b"GET / HTTP/1.1\r\nHost: x\r\nnot a header\r\n\r\n",  # a bad header line
                        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 64,  # TLS to a plain port
                        b"GET /%s HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"):
            reader, writer = await asyncio.open_connection("127.0.0.1", node.http_port)
            writer.write(request)
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            assert answer.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request") or answer == b"", answer
    finally:
        node.stop()
    log = node.log_path.read_text()
    bad = [line for line in log.splitlines() if "bad http request" in line]

    assert len(bad) == 3
    assert all(len(line) < 300 for line in bad)
    assert "Traceback" not in log
