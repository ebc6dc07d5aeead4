"""One suite for both fanouts (the pure-Python twin and the compiled ``_fanout``), against real
picows connections on loopback."""
from __future__ import annotations

import asyncio
import importlib.machinery

import pytest
from picows import WSListener, WSMsgType, ws_connect, ws_create_server

from edgeim.core_ext import _fanout, fanout_py  # the compiled fanout must be built: no skip
from edgeim.core_ext.codec_py import encode_frame
from edgeim.core_ext.protocol import MAX_BODY_SIZE, MAX_FRAME_SIZE, Op

IMPLEMENTATIONS = [fanout_py, _fanout]
# Bound on each wait, so a lost frame fails the test instead of hanging it; never a delay.
TIMEOUT = 5


@pytest.fixture(params=IMPLEMENTATIONS, ids=["python", "cython"])
def fanout(request):
    return request.param


class ServerSide(WSListener):
    """The server end of one connection: what ``write_frames`` is given."""

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


# payload sizes around the WebSocket length encodings (7-bit, 16-bit, 64-bit)
SIZES = [0, 1, 105, 106, 125 - 20, 126 - 20, 65535 - 20, MAX_BODY_SIZE]


def frames_of(sizes: list[int]) -> list[bytes]:
    return [encode_frame(Op.MSG_PUSH, 0, n, bytes(range(256)) * (size // 256) + b"x" * (size % 256))
            for n, size in enumerate(sizes)]


async def received(client: Client, count: int) -> list[bytes]:
    while len(client.frames) < count:
        client.received.clear()
        await asyncio.wait_for(client.received.wait(), TIMEOUT)
    return client.frames


@pytest.mark.parametrize("sizes", [[100], [100, 100, 100], SIZES, SIZES[::-1], [MAX_BODY_SIZE] * 3],
                         ids=["one", "three", "every-length-encoding", "reversed", "three-largest"])
async def test_frames_arrive_as_separate_messages_in_order(fanout, connections, sizes):
    (client, _, side), *_ = connections
    frames = frames_of(sizes)
    originals = [bytes(f) for f in frames]

    assert fanout.write_frames(side.transport, frames) == len(frames)

    assert await received(client, len(frames)) == originals
    assert frames == originals  # the frames are copied, never written into


async def test_the_same_frame_object_reaches_every_connection(fanout, connections):
    """Invariant 4: one encoding, the same bytes on every connection."""
    shared = frames_of([300])[0]
    for _, _, side in connections:
        fanout.write_frames(side.transport, [shared, shared])
    for client, _, _ in connections:
        assert await received(client, 2) == [shared, shared]


async def test_writes_interleave_in_order_with_picows_own_sends(fanout, connections):
    (client, _, side), *_ = connections
    first, batch, last = frames_of([10]), frames_of([20, 30, 40]), frames_of([50])
    side.transport.send(WSMsgType.BINARY, first[0])
    fanout.write_frames(side.transport, batch)
    side.transport.send(WSMsgType.BINARY, last[0])
    assert await received(client, 5) == first + batch + last


async def test_closing_or_gone_transports_get_nothing(fanout, connections):
    _, (closing, _, side_closing), (gone, gone_transport, side_gone), _ = connections
    side_closing.transport.send_close()
    gone_transport.disconnect()
    await asyncio.wait_for(side_gone.disconnected.wait(), TIMEOUT)

    assert fanout.write_frames(side_closing.transport, frames_of([1, 2])) == 0
    assert fanout.write_frames(side_gone.transport, frames_of([1, 2])) == 0
    await asyncio.wait_for(closing.closed.wait(), TIMEOUT)
    assert closing.frames == [] and gone.frames == []


async def test_nothing_to_write(fanout, connections):
    (_, _, side), *_ = connections
    assert fanout.write_frames(side.transport, []) == 0


@pytest.mark.parametrize("frames", [[bytearray(b"frame")], [memoryview(b"frame")], ["frame"], [None], (b"a",)])
async def test_frames_must_be_a_list_of_bytes(fanout, connections, frames):
    (_, _, side), *_ = connections
    with pytest.raises(TypeError):
        fanout.write_frames(side.transport, frames)


def test_receiver_must_be_a_transport(fanout):
    with pytest.raises(TypeError):
        fanout.write_frames(object(), [b"frame"])


def test_compiled_fanout_is_an_extension_module():
    assert _fanout.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


# -- a peer's bound on what its connection has not taken ----------------------------------------

async def test_a_peer_that_stops_reading_is_dropped_when_its_backlog_would_pass_the_bound(fanout, connections):
    (client, client_transport, side), *_ = connections
    client_transport.underlying_transport.pause_reading()  # a client that never reads
    outbox = fanout.Outbox(asyncio.get_running_loop())
    peer = fanout.Peer(outbox, side.transport, None)
    peer.max_bytes = 1_000_000
    frame = frames_of([MAX_BODY_SIZE])[0]
    sent = 0
    while not peer.closed:
        peer.send(frame)
        sent += 1
        if sent % 8 == 0:  # as the loop would: one flush per iteration
            outbox.flush()
            await asyncio.sleep(0)
    assert peer.overflowed
    # what the transport holds never passed the bound: the frame that would have was not queued
    assert side.transport.underlying_transport.get_write_buffer_size() <= peer.max_bytes
    await asyncio.wait_for(side.disconnected.wait(), TIMEOUT)
    peer.send(frame)  # a dropped peer takes nothing more, and does not fail
    assert peer.closed


async def test_a_peer_that_reads_is_not_dropped_however_much_it_is_sent(fanout, connections):
    (client, _, side), *_ = connections
    outbox = fanout.Outbox(asyncio.get_running_loop())
    peer = fanout.Peer(outbox, side.transport, None)
    peer.max_bytes = 4 * MAX_FRAME_SIZE
    frame = frames_of([MAX_BODY_SIZE])[0]
    for n in range(64):  # 64 frames: 16 times the bound, in iterations of 2 frames
        peer.send(frame)
        peer.send(frame)
        outbox.flush()
        await received(client, 2 * (n + 1))
    assert not peer.closed and not peer.overflowed


async def test_without_a_bound_nothing_is_dropped(fanout, connections):
    (_, client_transport, side), *_ = connections
    client_transport.underlying_transport.pause_reading()
    outbox = fanout.Outbox(asyncio.get_running_loop())
    peer = fanout.Peer(outbox, side.transport, None)
    frame = frames_of([MAX_BODY_SIZE])[0]
    for _ in range(128):  # 8 MiB
        peer.send(frame)
    outbox.flush()
    assert not peer.closed and not peer.overflowed


async def test_a_frame_must_be_bytes(fanout):
    outbox = fanout.Outbox(asyncio.get_running_loop())
    with pytest.raises(TypeError):
        fanout.Peer(outbox, None, None).send(None)


async def test_while_the_node_holds_too_much_the_laggard_goes_and_the_reader_stays(fanout, connections):
    (reader, _, reader_side), (_, deaf_transport, deaf_side), *_ = connections
    deaf_transport.underlying_transport.pause_reading()
    outbox = fanout.Outbox(asyncio.get_running_loop())
    outbox.max_bytes = 300_000  # all peers together; each alone may hold 4 MiB
    peers = [fanout.Peer(outbox, side.transport, None) for side in (reader_side, deaf_side)]
    for peer in peers:
        peer.max_bytes = 4 * 1024 * 1024
    keen, deaf = peers
    frame = frames_of([MAX_BODY_SIZE])[0]
    sent = 0
    while not deaf.closed and sent < 2000:  # up to 128 MB
        keen.send(frame)
        deaf.send(frame)
        outbox.flush()
        sent += 1
        await received(reader, sent)
    assert deaf.overflowed and not keen.closed
    # dropped at a sixteenth of its own bound, the node's being passed, not at 4 MiB
    assert deaf_side.transport.underlying_transport.get_write_buffer_size() <= 4 * 1024 * 1024 // 16
    keen.send(frame)  # the reader is served on
    outbox.flush()
    await received(reader, sent + 1)


async def test_what_the_peers_hold_is_counted_back_to_nothing(fanout, connections):
    (reader, _, side), *_ = connections
    outbox = fanout.Outbox(asyncio.get_running_loop())
    peer = fanout.Peer(outbox, side.transport, None)
    peer.max_bytes = 1_000_000
    frame = frames_of([1000])[0]
    for n in range(10):
        peer.send(frame)
    assert outbox.queued == 10 * len(frame)
    outbox.flush()
    await received(reader, 10)
    peer.refresh()
    assert outbox.queued == 0
    peer.send(frame)
    peer.close()  # gone with a frame queued: nothing is left counted
    assert outbox.queued == 0 and peer.closed


async def test_a_released_peer_lets_go_of_its_owner_and_writes_nothing(fanout, connections):
    """``release``: the session is gone; the peer holds neither it nor its transport (a
    session and its peer refer to each other: a cycle refcounting cannot free), and what
    was queued but not flushed is dropped, not written to the gone connection."""
    (reader, _, side), (other, _, other_side), *_ = connections
    outbox = fanout.Outbox(asyncio.get_running_loop())
    owner = object()
    peer = fanout.Peer(outbox, side.transport, owner)
    kept = fanout.Peer(outbox, other_side.transport, owner)
    peer.max_bytes = kept.max_bytes = 1_000_000
    frame = frames_of([100])[0]
    peer.send(frame)
    kept.send(frame)
    peer.release()
    peer.send(frame)
    outbox.flush()
    await received(other, 1)
    assert peer.owner is None and peer.transport is None and peer.closed
    assert kept.owner is owner
    assert outbox.queued == 0  # the released peer's frame is counted back
    # a frame on the same connection after it: had the released peer written, it came first
    marker = frames_of([7])[0]
    fanout.Peer(outbox, side.transport, owner).send(marker)
    outbox.flush()
    assert await received(reader, 1) == [marker] and other.frames == [frame]
