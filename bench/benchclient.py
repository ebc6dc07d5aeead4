"""The load-generator side shared by bench/lists.py, bench/group_fanout.py and bench/memory.py:
a raw picows client connection (``Conn``), account set-up over the protocol, and a client
process that runs the commands its parent sends over a pipe (connect N, register, log in,
run a measured window, ...), so that the parent orchestrates the phases across processes.

Imported only in client processes (it imports picows and edgeim). Not a test.
"""
from __future__ import annotations

import asyncio
import multiprocessing.connection
import re
import struct
import time
from typing import Any, Awaitable, Callable, Iterable

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

try:  # imported as edgeim.bench.benchclient (im bench), or with bench/ on sys.path (the scripts)
    from .benchlib import PASSWORD
except ImportError:
    from benchlib import PASSWORD
from edgeim.core_ext import bodies
from edgeim.core_ext.codec import encode_frame
from edgeim.core_ext.protocol import MAX_FRAME_SIZE, SUBPROTOCOL_PREFIX, VERSION, Op

HEADER = struct.Struct("<xBxxI")  # op and req_id out of the 20-byte frame header
OP_ERROR = int(Op.ERROR)
_EXTRA_HEADERS = {"Sec-WebSocket-Protocol": f"{SUBPROTOCOL_PREFIX}{VERSION}"}


class RequestFailed(RuntimeError):
    pass


class Conn(WSListener):
    """One client connection. Replies to ``request`` resolve its future; any other frame
    goes to ``on_push(conn, op, payload, now)`` (req_id 0) or ``on_reply(conn, op, req_id,
    payload, now)`` (a req_id ``request`` does not wait for: the benches' hot loops)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.transport: WSTransport = None  # type: ignore[assignment]
        self.user_id = 0
        self.next_req = 0
        self.pending: dict[int, asyncio.Future[tuple[int, bytes]]] = {}
        self.on_push: Callable[[Conn, int, memoryview, float], None] | None = None
        self.on_reply: Callable[[Conn, int, int, memoryview, float], None] | None = None
        self.is_closed = False
        self.state: Any = None  # what a bench keeps per connection

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.is_closed = True
        for future in self.pending.values():
            if not future.done():
                future.set_exception(ConnectionError(f"{self.name}: connection closed"))
        self.pending.clear()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is not WSMsgType.BINARY:
            if frame.msg_type is WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()
            return
        payload = frame.get_payload_as_memoryview()
        op, req_id = HEADER.unpack_from(payload)
        if req_id == 0:
            if self.on_push is not None:
                self.on_push(self, op, payload, time.monotonic())
            return
        future = self.pending.pop(req_id, None)
        if future is not None:
            if not future.done():
                future.set_result((op, bytes(payload[20:])))
            return
        if self.on_reply is not None:
            self.on_reply(self, op, req_id, payload, time.monotonic())

    def new_req(self) -> int:
        self.next_req += 1
        return self.next_req

    def send_frame(self, frame: bytes) -> None:
        self.transport.send(WSMsgType.BINARY, frame)

    async def request(self, op: int, body: Any, target: int = 0, flags: int = 0) -> tuple[int, bytes]:
        """Send one request and wait for its reply: (reply op, body bytes); an ERROR raises."""
        req_id = self.new_req()
        future: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self.pending[req_id] = future
        self.send_frame(encode_frame(op, req_id, target, bodies.encode(body), flags))
        reply_op, reply = await future
        if reply_op == OP_ERROR:
            error = bodies.decode(reply, bodies.Error)
            raise RequestFailed(f"{self.name}: {Op(op).name} refused: {error.code} {error.message}")
        return reply_op, reply

    async def register(self, username: str) -> int:
        _, reply = await self.request(Op.REGISTER, bodies.Register(username=username, password=PASSWORD))
        self.user_id = bodies.decode(reply, bodies.RegisterOk).user_id
        return self.user_id

    async def login(self, username: str, terminal: str = "bench") -> int:
        _, reply = await self.request(Op.LOGIN, bodies.Login(username=username, password=PASSWORD, terminal=terminal))
        self.user_id = bodies.decode(reply, bodies.LoginOk).user_id
        return self.user_id

    def close(self) -> None:
        if not self.is_closed and self.transport is not None and not self.transport.is_disconnected:
            self.transport.send_close()
            self.transport.disconnect()


async def connect(url: str, conn: Conn) -> Conn:
    await ws_connect(lambda: conn, url, max_frame_size=MAX_FRAME_SIZE, extra_headers=_EXTRA_HEADERS)
    return conn


async def limited(jobs: Iterable[Callable[[], Awaitable[Any]]], limit: int) -> list[Any]:
    """Run the jobs (coroutine factories) with at most ``limit`` at a time; results in order."""
    jobs = list(jobs)
    results: list[Any] = [None] * len(jobs)
    position = 0

    async def worker() -> None:
        nonlocal position
        while position < len(jobs):
            index = position
            position += 1
            results[index] = await jobs[index]()

    await asyncio.gather(*(worker() for _ in range(min(limit, len(jobs)) or 1)))
    return results


async def close_all(conns: Iterable[Conn], timeout: float = 10.0) -> None:
    conns = list(conns)
    for conn in conns:
        conn.close()
    deadline = time.monotonic() + timeout
    while any(not c.is_closed for c in conns) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


def rss_peak_kib() -> int:
    with open("/proc/self/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))  # type: ignore[union-attr]


Command = Callable[..., Awaitable[Any]]


async def serve_commands(pipe: multiprocessing.connection.Connection, commands: dict[str, Command]) -> None:
    """Run what the parent asks, one command at a time: it sends (name, args); this answers
    ("ok", result) or ("error", text). ("exit", ()) ends it."""
    loop = asyncio.get_running_loop()
    while True:
        name, args = await loop.run_in_executor(None, pipe.recv)
        if name == "exit":
            pipe.send(("ok", None))
            return
        try:
            result = await commands[name](*args)
        except Exception as exc:  # report; the parent stops everything
            pipe.send(("error", f"{name}: {type(exc).__name__}: {exc}"))
            raise
        pipe.send(("ok", result))


def fleet(url: str, prefix: str) -> tuple[dict[int, Conn], dict[str, Command]]:
    """Connections keyed by a global user index (user ``<prefix><index>``), and the commands
    that set them up: connect, register, register_via (many users over a few temporary
    connections), login, close. A bench adds its own commands to the dict."""
    conns: dict[int, Conn] = {}

    def name(i: int) -> str:
        return f"{prefix}{i:05d}"

    async def connect_(indices: list[int], concurrency: int = 100) -> int:
        new = {i: Conn(name(i)) for i in indices}
        conns.update(new)
        await limited([lambda c=c: connect(url, c) for c in new.values()], concurrency)
        return len(new)

    async def register(indices: list[int] | None = None, concurrency: int = 200) -> dict[int, int]:
        chosen = list(conns) if indices is None else indices
        ids = await limited([lambda i=i: conns[i].register(name(i)) for i in chosen], concurrency)
        return dict(zip(chosen, ids))

    async def register_via(indices: list[int], connections: int = 50) -> dict[int, int]:
        """Register users ``indices`` over ``connections`` temporary connections, then close them."""
        temp = [Conn(f"reg{k}") for k in range(min(connections, len(indices)) or 1)]
        await limited([lambda c=c: connect(url, c) for c in temp], 100)
        ids: dict[int, int] = {}

        async def worker(k: int) -> None:
            for i in indices[k::len(temp)]:
                ids[i] = await temp[k].register(name(i))

        await asyncio.gather(*(worker(k) for k in range(len(temp))))
        await close_all(temp)
        return ids

    async def login(indices: list[int] | None = None, concurrency: int = 200) -> int:
        chosen = list(conns) if indices is None else indices
        await limited([lambda i=i: conns[i].login(name(i)) for i in chosen], concurrency)
        return len(chosen)

    async def close() -> int:
        await close_all(conns.values())
        return rss_peak_kib()

    return conns, {"connect": connect_, "register": register, "register_via": register_via, "login": login,
                   "close": close}
