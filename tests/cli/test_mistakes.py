"""Common mistakes get a plain sentence and the exit code of what went wrong: the admin
commands pointed at the WebSocket port (or at something else), a password that is too
short, a setting that is not a number, a port that is taken."""
from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from harness import ServeProcess

IM = Path(sys.executable).with_name("im")
TOKEN = "mistakes-admin-token"


def im(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(IM), *args], cwd=cwd, env={**os.environ, "IM_ADMIN_TOKEN": TOKEN, **env},
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def node(serve_factory) -> ServeProcess:
    return serve_factory(admin_token=TOKEN)


def test_the_websocket_port_is_named_as_such(tmp_path: Path, node: ServeProcess):
    ws_http = node.url.replace("ws://", "http://").removesuffix("/ws")
    done = im("stats", "--url", ws_http, cwd=tmp_path)
    assert done.returncode == 2  # a bad --url, not "no such user" (3)
    assert done.stderr.startswith(f"im: {ws_http} is the WebSocket port of an edgeim node, not its HTTP port")
    assert f"--url http://127.0.0.1:{node.port + 1}" in done.stderr
    assert "404" not in done.stderr


def test_a_server_that_is_not_a_node_is_named_as_such(tmp_path: Path):
    class Nothing(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Nothing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        done = im("user", "list", "--url", url, cwd=tmp_path)
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 2
    assert done.stderr.startswith(f"im: {url} is not the HTTP port of an edgeim node (it answered 404")


@pytest.mark.parametrize(("args", "message"), [
    (["frank", "--password", "123"], "im: the password must be 6 to 128 characters\n"),
    (["f", "--password", "secret-pw"], "im: the username must be 3 to 32 characters, made of letters, digits and"
                                       " . _ -\n"),
    (["frank smith", "--password", "secret-pw"], "im: the username must be 3 to 32 characters"),
])
def test_a_refused_new_account_says_why_in_a_sentence(tmp_path: Path, node: ServeProcess, args, message):
    done = im("user", "create", *args, "--url", node.http_url, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.startswith(message)
    assert "Expected" not in done.stderr and "$." not in done.stderr
    listed = im("user", "list", "--json", "--url", node.http_url, cwd=tmp_path)
    assert json.loads(listed.stdout)["users"] == []


@pytest.mark.parametrize(("env", "args", "message"), [
    ({"IM_PORT": "abc"}, [], "im serve: IM_PORT must be a whole number, got 'abc'\n"),
    ({"IM_RATE": "fast"}, [], "im serve: IM_RATE must be a number, got 'fast'\n"),
    ({"IM_METRICS": "maybe"}, [], "im serve: IM_METRICS must be true or false (or 1, 0, yes, no, on, off), got"
                                  " 'maybe'\n"),
    ({}, ["--http-port", "eighty"], "im serve: --http-port must be a whole number, got 'eighty'\n"),
])
def test_a_setting_that_is_not_a_number_is_a_sentence(tmp_path: Path, env, args, message):
    done = subprocess.run([str(IM), "serve", *args], cwd=tmp_path, env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 2 and done.stderr == message and done.stdout == ""


@pytest.mark.parametrize("which", ["HTTP", "WebSocket"])
def test_cannot_listen_names_the_port_that_is_taken(tmp_path: Path, which: str):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # the HTTP port is the WebSocket port + 1 by default
        ports = ["--port", str(port - 1)] if which == "HTTP" else ["--port", str(port), "--http-port", "0"]
        done = subprocess.run([str(IM), "serve", *ports, "--data-dir", str(tmp_path / "data")], cwd=tmp_path,
                              capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "listening on" not in done.stdout
    *logs, said = done.stderr.splitlines()
    assert said == f"im serve: cannot listen on 127.0.0.1:{port} (the {which} port): Address already in use"
    [entry] = [json.loads(line) for line in logs]
    assert (entry["msg"], entry["port"], entry["what"]) == ("cannot listen", port, which)
