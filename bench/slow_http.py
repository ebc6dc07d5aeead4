"""Slow clients on the HTTP port, measured from outside (issue 17, item 8).

A node on default settings (real password cost) runs with a given open-files limit;
``--slow`` clients connect to its HTTP port and send half a request line and headers,
then nothing. Meanwhile, ten times, a /healthz request and a password LOGIN on a new
WebSocket connection are timed. Then it waits (at most 30 s) for the node to close the
slow connections, and prints the node's HTTP series and open files.

    .venv/bin/python bench/slow_http.py --slow 1100 --open-files 1024

``--node-python`` runs the node with another interpreter (an older checkout's virtualenv:
see bench/abuse.py), to measure before and after the same way. Not a test: nothing is
asserted.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request

from edgeim.sdk import Client


def _closed_or_open(reader: asyncio.StreamReader) -> "asyncio.Future[str]":
    async def wait() -> str:
        try:
            await asyncio.wait_for(reader.read(), 30)
            return "closed"
        except ConnectionResetError:
            return "closed"
        except asyncio.TimeoutError:
            return "open"
    return asyncio.ensure_future(wait())


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return str(reply.status)
    except Exception as exc:  # what a client of the node would see
        return type(exc).__name__


async def measure(args: argparse.Namespace) -> None:
    data = tempfile.mkdtemp(prefix="edgeim-slow-http-")
    env = dict(os.environ, IM_TOKEN_SECRET=os.urandom(24).hex())

    def limit() -> None:  # in the node's process: soft and hard, so it cannot raise it
        resource.setrlimit(resource.RLIMIT_NOFILE, (args.open_files, args.open_files))

    node = subprocess.Popen([args.node_python, "-m", "edgeim.cli", "serve", "--port", "0", "--http-port", "0",
                             "--data-dir", data], env=env, stdout=subprocess.PIPE,
                            stderr=open(os.path.join(data, "node.log"), "w"), text=True, preexec_fn=limit)
    assert node.stdout is not None
    banner = node.stdout.readline()
    ws = re.search(r"(ws://\S+)", banner)[1]  # type: ignore[index]
    http = re.search(r" and (http://\S+)", banner)[1]  # type: ignore[index]
    try:
        async with Client(ws) as c:
            await c.register("alice", "secret-pw")
        slow = []
        started = time.monotonic()
        for _ in range(args.slow):
            reader, writer = await asyncio.open_connection("127.0.0.1", int(http.rsplit(":", 1)[1]))
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            slow.append((reader, writer))
        print(f"{args.slow} slow clients connected in {time.monotonic() - started:.1f} s "
              f"(node open-files limit {args.open_files})")
        health, logins = [], []
        for n in range(10):
            t = time.monotonic()
            status = await asyncio.to_thread(_get, http + "/healthz")
            health.append(f"{(time.monotonic() - t) * 1000:.1f} ms {status}")
            t = time.monotonic()
            try:
                async with Client(ws) as c:
                    await asyncio.wait_for(c.login("alice", "secret-pw", f"t{n}"), 15)
                outcome = "ok"
            except Exception as exc:
                outcome = type(exc).__name__
            logins.append(f"{(time.monotonic() - t) * 1000:.1f} ms {outcome}")
        print("GET /healthz:", ", ".join(health))
        print("WebSocket LOGIN:", ", ".join(logins))
        started = time.monotonic()
        ends = await asyncio.gather(*(_closed_or_open(r) for r, _ in slow))
        print(f"slow clients closed by the node: {ends.count('closed')}, still open 30 s later: {ends.count('open')}"
              f" (waited {time.monotonic() - started:.1f} s)")
        for _, writer in slow:
            writer.close()
        text = await asyncio.to_thread(lambda: urllib.request.urlopen(http + "/metrics", timeout=10).read().decode())
        for line in text.splitlines():
            if line.startswith(("edgeim_http_", "process_open_fds", "process_max_fds")):
                print(" ", line)
    finally:
        node.terminate()
        node.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slow", type=int, default=900, help="clients that never finish their headers")
    parser.add_argument("--open-files", type=int, default=1024, help="the node's open-files limit")
    parser.add_argument("--node-python", default=sys.executable, help="interpreter that runs the node")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # this process holds the slow clients
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, args.slow + 256)), hard))
    asyncio.run(measure(args))


if __name__ == "__main__":
    main()
