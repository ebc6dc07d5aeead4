"""A distributed password-guessing flood against one account, measured from outside
(issue 17, item 9).

A node on default settings (real password cost, default login limits) holds ``victim``
and 20 other users (registered beforehand with the per-address budget lifted, then the
node restarts on defaults). From 200 loopback addresses, one connection each guesses the
victim's password for ``--seconds`` (pausing 0.2 s after a RATE_LIMITED); meanwhile the 20
other users log in with their passwords from 127.0.0.1, one after another. Prints the
guesses' answers by code (how many reached a hasher: the BAD_CREDENTIALS) and how many of
the other users' logins succeeded, with their latency.

    .venv/bin/python bench/guess_flood.py --seconds 12

``--node-python`` runs the node with another interpreter (an older checkout's virtualenv:
see bench/abuse.py). Not a test: nothing is asserted.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from picows import ws_connect

from edgeim.core_ext.protocol import MAX_FRAME_SIZE, SUBPROTOCOL_PREFIX, VERSION
from edgeim.sdk import Client, ServerError
from edgeim.sdk import client as sdk


class ClientFrom(Client):
    """A client connecting from ``source``, another loopback address."""

    def __init__(self, url: str, source: str) -> None:
        super().__init__(url)
        self._source = source

    async def _open(self, url: str) -> None:
        def bound(_: object) -> socket.socket:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((self._source, 0))
            return sock

        self._disconnected.clear()
        self.close_code = None
        self.url = url
        self._transport, _ = await ws_connect(lambda: sdk._Listener(self), url, socket_factory=bound,
                                              extra_headers={"Sec-WebSocket-Protocol": f"{SUBPROTOCOL_PREFIX}{VERSION}"},
                                              max_frame_size=MAX_FRAME_SIZE)


def _start(python: str, data: str, env: dict[str, str], port: str = "0") -> tuple[subprocess.Popen[str], str]:
    node = subprocess.Popen([python, "-m", "edgeim.cli", "serve", "--port", port, "--http-port", "0",
                             "--data-dir", data], env=env, stdout=subprocess.PIPE,
                            stderr=open(os.path.join(data, "node.log"), "a"), text=True)
    assert node.stdout is not None
    return node, re.search(r"(ws://\S+)", node.stdout.readline())[1]  # type: ignore[index]


async def measure(args: argparse.Namespace) -> None:
    data = tempfile.mkdtemp(prefix="edgeim-guess-flood-")
    env = dict(os.environ, IM_TOKEN_SECRET=os.urandom(24).hex())
    node, url = _start(args.node_python, data, {**env, "IM_LOGIN_RATE": "1000", "IM_LOGIN_BURST": "1000"})
    try:
        async with Client(url) as c:
            for name in ["victim"] + [f"user{n}" for n in range(20)]:
                await c.register(name, "secret-pw")
        node.terminate()
        node.wait(30)
        node, url = _start(args.node_python, data, env, url.rsplit(":", 1)[1].split("/")[0])
        answers: dict[Any, int] = {}
        stop = time.monotonic() + args.seconds

        async def guesser(source: str) -> None:
            n = 0
            while time.monotonic() < stop:
                try:
                    async with ClientFrom(url, source) as c:
                        while time.monotonic() < stop:
                            n += 1
                            try:
                                await c.login("victim", f"guess-{source}-{n}", "web")
                            except ServerError as err:
                                answers[err.code.name] = answers.get(err.code.name, 0) + 1
                                if err.code == 4000:
                                    await asyncio.sleep(0.2)
                except Exception as exc:  # e.g. the auth timeout closed the connection: another
                    answers[type(exc).__name__] = answers.get(type(exc).__name__, 0) + 1

        flood = [asyncio.create_task(guesser(f"127.0.{1 + i // 250}.{2 + i % 250}")) for i in range(200)]
        await asyncio.sleep(1)
        ok, failed, latency = 0, [], []
        for n in range(20):
            started = time.monotonic()
            try:
                async with Client(url) as c:
                    await asyncio.wait_for(c.login(f"user{n}", "secret-pw", "web"), 15)
                ok += 1
            except Exception as exc:
                failed.append(getattr(getattr(exc, "code", None), "name", type(exc).__name__))
            latency.append((time.monotonic() - started) * 1000)
        await asyncio.gather(*flood)
        latency.sort()
        print(f"guesses from 200 addresses over {args.seconds:g} s, answers: {answers}")
        print(f"other users' password logins: {ok}/20 ok {failed or ''}; "
              f"latency p50 {latency[10]:.0f} ms, max {latency[-1]:.0f} ms")
    finally:
        node.terminate()
        node.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=12.0, help="how long the flood lasts")
    parser.add_argument("--node-python", default=sys.executable, help="interpreter that runs the node")
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
