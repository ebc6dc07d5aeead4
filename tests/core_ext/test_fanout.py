"""One suite for both fanouts (the pure-Python twin and the compiled ``_fanout``), against real
picows connections on loopback."""
from __future__ import annotations

import asyncio
import importlib.machinery

import pytest
from picows import WSListener, WSMsgType, ws_connect, ws_create_server

from edgeim.core_ext import _fanout, fanout_py  # the compiled fanout must be built: no skip
from edgeim.core_ext.codec_py import encode_frame
from edgeim.core_ext.protocol import MAX_BODY_SIZE, Op

IMPLEMENTATIONS = [fanout_py, _fanout]
# Bound on each wait, so a lost frame fails the test instead of hanging it; never a delay.
TIMEOUT = 5


@pytest.fixture(params=IMPLEMENTATIONS, ids=["python", "cython"])
def fanout(request):
    return request.param


class ServerSide(WSListener):
    """The server end of one connection: what ``send_all`` is given."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.disconnected = asyncio.Event()

    def on_ws_connected(self, transport):
        self.transport = transport
        self.server.accepted.put_nowait(self)

    def on_ws_disconnected(self, transport):
        self.disconnected.set()


class Server:
    def __init__(self) -> None:
        self.accepted: asyncio.Queue[ServerSide] = asyncio.Queue()


class Client(WSListener):
    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.received = asyncio.Event()
        self.closed = asyncio.Event()

    def on_ws_frame(self, transport, frame):
        if frame.msg_type == WSMsgType.BINARY:
            self.frames.append(frame.get_payload_as_bytes())
            self.received.set()
        elif frame.msg_type == WSMsgType.CLOSE:
            self.closed.set()
            transport.send_close(frame.get_close_code())
            transport.disconnect()


@pytest.fixture
async def connections():
    """Four loopback connections: ``[(client listener, client transport, server side), ...]``."""
    server = Server()
    ws_server = await ws_create_server(lambda request: ServerSide(server), "127.0.0.1", 0)
    port = ws_server.sockets[0].getsockname()[1]
    opened = []
    for _ in range(4):
        transport, client = await ws_connect(Client, f"ws://127.0.0.1:{port}/")
        side = await asyncio.wait_for(server.accepted.get(), TIMEOUT)
        opened.append((client, transport, side))
    yield opened
    for _, transport, side in opened:
        transport.disconnect()
        await asyncio.wait_for(side.disconnected.wait(), TIMEOUT)
    ws_server.close()
    await ws_server.wait_closed()


@pytest.mark.parametrize("body_size", [100, MAX_BODY_SIZE], ids=["small", "largest"])
async def test_same_bytes_to_every_live_transport(fanout, connections, body_size):
    (live_a, _, side_a), (live_b, _, side_b), (closing, _, side_closing), (gone, gone_transport, side_gone) = connections
    side_closing.transport.send_close()
    gone_transport.disconnect()
    await asyncio.wait_for(side_gone.disconnected.wait(), TIMEOUT)
    frame = encode_frame(Op.MSG_PUSH, 0, 7, bytes(range(256)) * (body_size // 256) + b"x" * (body_size % 256))
    original = bytes(frame)

    sent = fanout.send_all([side.transport for _, _, side in connections], frame)

    assert sent == 2
    for client in (live_a, live_b):
        await asyncio.wait_for(client.received.wait(), TIMEOUT)
        assert client.frames == [frame]
    await asyncio.wait_for(closing.closed.wait(), TIMEOUT)
    assert closing.frames == [] and gone.frames == []
    assert frame == original  # the shared frame is never written into


async def test_accepts_any_iterable(fanout, connections):
    transports = (side.transport for _, _, side in connections)
    frame = encode_frame(Op.KICKED, 0, 0, b"")

    assert fanout.send_all(transports, frame) == len(connections)
    for client, _, _ in connections:
        await asyncio.wait_for(client.received.wait(), TIMEOUT)
        assert client.frames == [frame]


def test_nothing_to_send_to(fanout):
    assert fanout.send_all([], b"frame") == 0


@pytest.mark.parametrize("frame", [bytearray(b"frame"), memoryview(b"frame"), "frame", None])
def test_frame_must_be_bytes(fanout, frame):
    with pytest.raises(TypeError):
        fanout.send_all([], frame)


def test_receivers_must_be_transports(fanout):
    with pytest.raises(TypeError):
        fanout.send_all([object()], b"frame")


def test_compiled_fanout_is_an_extension_module():
    assert _fanout.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
