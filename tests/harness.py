"""Test harness: ``im serve`` as a real process on a free port, and user helpers."""
from __future__ import annotations

import asyncio
import os
import re
import resource
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from edgeim.core_ext.protocol import Op

from edgeim.sdk import Client

__all__ = ["ServeProcess", "new_user", "people", "everything_stored_for", "next_event", "nothing_pending",
           "log_tails"]


#: what every test node gets unless a test says otherwise
TEST_ENV = {"IM_PASSWORD_MEMORY_KIB": "256", "IM_PASSWORD_TIME_COST": "1",
            "IM_LOGIN_RATE": "1000000", "IM_LOGIN_BURST": "1000000", "IM_LOGIN_BACKLOG": "100000",
            "IM_LOGIN_ACCOUNT_FAILURES": "1000000",
            "IM_USER_SEND_RATE": "1000000", "IM_USER_SEND_BURST": "1000000",
            "IM_USER_SEND_BYTES_RATE": "1000000000", "IM_USER_SEND_BYTES_BURST": "1000000000",
            "IM_GROUP_CREATES_PER_HOUR": "1000000", "IM_CALL_INVITES_PER_MINUTE": "1000000",
            "IM_USER_FANOUT_RATE": "1000000000", "IM_USER_FANOUT_BURST": "1000000000",
            "IM_USER_FANOUT_BYTES_RATE": "1000000000000", "IM_USER_FANOUT_BYTES_BURST": "1000000000000",
            "IM_NODE_FANOUT_RATE": "1000000000", "IM_NODE_FANOUT_BYTES_RATE": "1000000000000",
            "IM_GROUP_TYPING_RATE": "1000000000", "IM_GROUP_JOIN_RATE": "1000000000",
            "IM_GROUP_JOIN_BURST": "1000000000", "IM_NODE_MAX_WRITE_BUFFER": "0",
            # a CI disk with less than the default reserves free must not fail every upload
            # or make every node unready; tests/edge/test_files.py sets them to test them
            "IM_FILES_MIN_FREE": "0", "IM_STORE_MIN_FREE": "0",
            "IM_PROFILE_CHANGES_PER_HOUR": "1000000", "IM_PASSWORD_CHANGES_PER_HOUR": "1000000"}


class ServeProcess:
    """``im serve`` in its own process; ``restart`` keeps the data dir."""

    def __init__(self, data_dir: Path, codec: str = "cython", **settings: object) -> None:
        self.data_dir = data_dir
        self.env = dict(os.environ)
        self.env.pop("EDGEIM_NO_EXT", None)
        if codec == "python":
            self.env["EDGEIM_NO_EXT"] = "1"
        # cheap password hashes and no per-address login budget keep the many logins of the
        # suite fast (every client is 127.0.0.1); the defaults are exercised by
        # tests/test_serve.py and tests/edge/test_login_limits.py
        for key, value in TEST_ENV.items():
            self.env.setdefault(key, value)
        self.env["IM_TOKEN_SECRET"] = "test-secret-" + uuid.uuid4().hex
        # most suites are about messaging, not the friends-only default; tests/edge/test_social.py
        # runs with the default
        self.env.setdefault("IM_STRANGERS_MAY_SEND", "1")
        # likewise, most suites put strangers in groups to test the groups, not consent;
        # tests/edge/test_group_consent.py runs with the product default (friends)
        self.env.setdefault("IM_GROUP_ADD_DEFAULT", "anyone")
        for key, value in settings.items():
            self.env[f"IM_{key.upper()}"] = str(value)
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.port = 0
        self.banner = ""
        #: the node's HTTP listener (health, local files): a free port at the first start,
        #: the same one on a restart, unless the test gave http_port
        self.http_port = int(settings.get("http_port", 0))  # type: ignore[call-overload]
        self.http_url = ""
        #: if set, the node's log (stderr) is appended to this file instead of a pipe: a
        #: long test would fill a pipe nobody reads, and the node would block on it
        self.log_path: Path | None = None
        #: if set, the node's open-files limit (soft and hard: it cannot raise it)
        self.open_files: int | None = None

    def _limits(self) -> None:  # in the child, before exec
        assert self.open_files is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.open_files, self.open_files))

    def start(self, port: int = 0) -> None:
        cmd = [sys.executable, "-m", "edgeim.cli", "serve", "--port", str(port or self.port), "--data-dir", str(self.data_dir),
               "--http-port", str(self.http_port)]
        if self.log_path is not None:
            with open(self.log_path, "a") as log:
                self.proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.PIPE, stderr=log, text=True,
                                             preexec_fn=self._limits if self.open_files is not None else None)
        else:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                         preexec_fn=self._limits if self.open_files is not None else None)
        assert self.proc.stdout is not None
        self.banner = self.proc.stdout.readline()
        match = re.search(r"listening on (ws://\S+)", self.banner)
        if match is None:  # e.g. its port is not free yet (restart retries): release the process and its pipes
            self.proc.kill()
            self.proc.wait()
            error = self.proc.stderr.read() if self.proc.stderr else ""
            self.proc.stdout.close()
            self.proc.stderr and self.proc.stderr.close()
            self.proc = None
            raise RuntimeError(f"im serve did not start: {self.banner!r} {error}")
        self.url = match[1]
        self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])
        http = re.search(r" and (http://\S+)", self.banner)
        if http is not None:
            self.http_url = http[1]
            self.http_port = int(self.http_url.rsplit(":", 1)[1])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.stderr = self.proc.stderr.read() if self.proc.stderr else ""
        self.proc.stdout and self.proc.stdout.close()
        self.proc.stderr and self.proc.stderr.close()
        self.proc = None
        return code

    def restart(self, sig: int = signal.SIGTERM) -> None:
        self.stop(sig)
        # the same port, so clients that reconnect find it; retry briefly while the old
        # socket is released
        for _ in range(50):
            try:
                self.start(self.port)
                return
            except RuntimeError:
                time.sleep(0.1)
        raise RuntimeError("could not restart im serve on its port")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def log_tails(folder: Path, lines: int = 40, width: int = 400) -> list[tuple[str, str]]:
    """The last ``lines`` lines of each ``*.log`` in ``folder`` (the node logs a test kept
    with ``ServeProcess.log_path``), each cut at ``width`` characters: (title, text) pairs,
    for a failed test's report (tests/conftest.py). A pytest tmp dir is gone after a few
    runs, so what a CI failure needs of the nodes' side goes into its report."""
    tails = []
    for log in sorted(folder.glob("*.log")):
        try:
            text = log.read_text(errors="replace")
        except OSError as exc:
            text = f"(unreadable: {exc})"
        last = [line[:width] for line in text.splitlines()[-lines:]]
        tails.append((f"node log {log.name}, last {len(last)} lines", "\n".join(last)))
    return tails


_names = (f"user{n}" for n in range(1_000_000))


async def new_user(client: Client, terminal: str = "web", password: str = "secret-pw") -> tuple[str, int]:
    """Register a fresh user with this client and log it in; returns (username, user id)."""
    name = next(_names)
    user_id = await client.register(name, password)
    await client.login(name, password, terminal)
    return name, user_id


async def people(clients: Any, n: int) -> list[Client]:
    """``n`` connected clients (from the ``clients`` fixture), each a fresh user logged in."""
    made = []
    for _ in range(n):
        client = await clients()
        await new_user(client)
        made.append(client)
    return made


async def everything_stored_for(url: str, username: str, password: str = "secret-pw") -> list:
    """Log in from a fresh device and sync every conversation from seq 0."""
    async with Client(url) as reader:
        await reader.login(username, password, "web")
        return await reader.sync_all(limit=200)


async def next_event(client: Client, op: Op, timeout: float = 5.0) -> Any:
    """The body of the next push of kind ``op`` on ``client.events``; pushes of other kinds
    before it are dropped. Fails (TimeoutError) if none comes within ``timeout``."""
    async def wait() -> Any:
        while True:
            kind, body = await client.events.get()
            if kind == op:
                return body
    return await asyncio.wait_for(wait(), timeout)


async def nothing_pending(client: Client, messages: bool = True) -> bool:
    """True if no push is waiting for ``client`` (with ``messages=False``: no push but
    MSG_PUSH): a PING round trip first, so every push the node queued for this connection
    before it has arrived."""
    await client.ping()
    return (client.pushes.empty() or not messages) and client.events.empty()
