"""One suite for both receivers (the pure-Python twin and the compiled ``_receive``): what
``on_ws_frame`` does with each kind of frame, and which hook it calls. The frames are
picows's own test frames; the transport is a real picows transport over one end of a
socket pair, so the compiled receiver reads its close state as it does on a node."""
from __future__ import annotations

import logging
import socket
from concurrent.futures import Future
from typing import Any

import msgspec
import pytest
from picows import WSMsgType, WSTransport
from picows.picows import _make_test_ws_frame

from edgeim.core_ext import _receive, bodies, content, receive_py  # the compiled receiver must be built: no skip
from edgeim.core_ext.buckets_py import Bucket
from edgeim.core_ext.codec_py import decode_frame, encode_frame
from edgeim.core_ext.errors import AuthError, FrameError, RateLimited
from edgeim.core_ext.protocol import ErrorCode, Flag, Op

IMPLEMENTATIONS = [receive_py, _receive]


@pytest.fixture(params=IMPLEMENTATIONS, ids=["python", "cython"])
def impl(request):
    yield request.param
    while OPEN:
        OPEN.pop().close()


#: the sockets of this test's transports, closed after it
OPEN: list[socket.socket] = []


class Underlying:
    """What picows's transport needs of the asyncio transport under it."""

    def __init__(self) -> None:
        self.sock, other = socket.socketpair()
        OPEN.extend((self.sock, other))
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.sock if name == "socket" else default

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:  # disconnect(graceful=False)
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def make(impl, *, burst: float = 100.0, handlers: dict[int, Any] | None = None, counted: bool = True):
    """A receiver whose hooks record what they are called with, on a fresh transport."""

    class Recorder(impl.Receiver):
        __slots__ = ("calls", "underlying")

        def _on_other_frame(self, frame):
            self.calls.append(("other", frame.msg_type))

        def _over_rate(self, req_id):
            self.calls.append(("over", req_id))

        def _bad_frame(self, req_id, exc):
            self.calls.append(("bad", req_id, exc))

        def send_frame(self, frame):
            self.calls.append(("frame", frame))

        def error(self, req_id, exc):
            self.calls.append(("error", req_id, exc))

        def _fail(self, op, req_id, exc):
            self.calls.append(("fail", op, req_id, exc))

        def _run(self, op, req_id, pending):
            return ("run", op, req_id, pending)

    r = Recorder()
    r.calls = []
    r.underlying = Underlying()
    r.loop = Clock()
    r.transport = WSTransport(False, r.underlying, logging.getLogger("test"), r.loop)
    r._handlers = handlers if handlers is not None else {}
    r._spawn = lambda run: r.calls.append(("spawn", run))
    r._frames = Bucket(0.0, burst, 0.0)  # no refill: ``burst`` frames in all
    r.frames_in = [0] * 256 if counted else None
    r.state = impl.ANONYMOUS
    r.in_flight = 0
    r._auth_busy = False
    r.last_active = 0.0
    return r


class Clock:
    """What the receiver and the transport use of the loop: ``time``, set by the test."""

    def __init__(self) -> None:
        self.now = 5.0

    def time(self) -> float:
        return self.now

    def create_future(self) -> Future[None]:
        return Future()


def binary(op: int, req_id: int, body: bytes = b"", target: int = 0, flags: int = 0):
    return _make_test_ws_frame(WSMsgType.BINARY, encode_frame(op, req_id, target, body, flags), True, False)


SEND = bodies.encode(bodies.Send(cmid="c1", content="hi"))


def test_a_request_of_a_logged_in_connection_reaches_its_handler_decoded_and_counted(impl):
    seen = []
    r = make(impl, handlers={Op.SEND: lambda s, *args: seen.append((s, *args))})
    r.state = impl.AUTHENTICATED
    r.loop.now = 9.5
    r.on_ws_frame(r.transport, binary(Op.SEND, 3, SEND, target=42, flags=int(Flag.GROUP)))
    assert len(seen) == 1
    session, req_id, flags, target, request = seen[0]
    assert (session, req_id, flags, target) == (r, 3, int(Flag.GROUP), 42)
    assert (request.cmid, request.content) == ("c1", "hi")
    assert r.frames_in[Op.SEND] == 1 and sum(r.frames_in) == 1
    assert r.last_active == 9.5
    assert r.calls == [] and r.in_flight == 0


def test_without_metrics_nothing_is_counted(impl):
    r = make(impl, handlers={Op.SEND: lambda *args: None}, counted=False)
    r.state = impl.AUTHENTICATED
    r.on_ws_frame(r.transport, binary(Op.SEND, 3, SEND))
    assert r.frames_in is None and r.calls == []


def test_a_frame_sent_goes_to_the_peer_and_is_counted_by_its_op(impl):
    r = make(impl)
    queued: list[bytes] = []
    r.peer = type("Peer", (), {"send": staticmethod(queued.append)})()
    r.frames_out = [0] * 256
    ack, pong = encode_frame(Op.SEND_ACK, 7, 0, b""), encode_frame(Op.PONG, 8, 0, b"")
    for frame in (ack, pong, ack):
        impl.Receiver.send_frame(r, frame)  # the Receiver's own, not the recorder's hook
    assert queued == [ack, pong, ack]
    assert (r.frames_out[Op.SEND_ACK], r.frames_out[Op.PONG], sum(r.frames_out)) == (2, 1, 3)
    r.frames_out = None  # metrics off: sent, not counted
    impl.Receiver.send_frame(r, ack)
    assert queued[-1] == ack and len(queued) == 4


def test_a_handler_that_answers_later_runs_as_a_task_and_counts_in_flight(impl):
    later = object()
    r = make(impl, handlers={Op.SEND: lambda *args: later})
    r.state = impl.AUTHENTICATED
    r.on_ws_frame(r.transport, binary(Op.SEND, 8, SEND))
    assert r.calls == [("spawn", ("run", Op.SEND, 8, later))]
    assert r.in_flight == 1


def test_what_a_handler_raises_goes_to_fail(impl):
    boom = ValueError("boom")

    def handler(*args):
        raise boom

    r = make(impl, handlers={Op.SEND: handler})
    r.state = impl.AUTHENTICATED
    r.on_ws_frame(r.transport, binary(Op.SEND, 4, SEND))
    assert r.calls == [("fail", Op.SEND, 4, boom)]
    assert r.in_flight == 0


def test_ping_is_answered_with_its_request_id_before_a_login(impl):
    r = make(impl)
    r.on_ws_frame(r.transport, binary(Op.PING, 0))
    r.on_ws_frame(r.transport, binary(Op.PING, 77))
    assert [decode_frame(call[1])[:3] for call in r.calls] == [(Op.PONG, 0, 0), (Op.PONG, 0, 77)]


def test_a_request_before_a_login_is_refused(impl):
    r = make(impl, handlers={Op.SEND: lambda *args: pytest.fail("not logged in")})
    r.on_ws_frame(r.transport, binary(Op.SEND, 5, SEND))
    [(kind, req_id, exc)] = r.calls
    assert (kind, req_id, type(exc), exc.code) == ("error", 5, AuthError, ErrorCode.NOT_AUTHENTICATED)
    assert "SEND needs a login first" in exc.message


def test_one_login_at_a_time_and_it_is_released_when_the_handler_answers_at_once(impl):
    login = bodies.encode(bodies.Login(username="alice", password="secret-pw", terminal="web"))
    answers: list[Any] = [object(), None]
    r = make(impl, handlers={Op.LOGIN: lambda *args: answers.pop(0)})
    r.on_ws_frame(r.transport, binary(Op.LOGIN, 1, login))  # answers later: busy
    assert r._auth_busy and r.in_flight == 1
    r.on_ws_frame(r.transport, binary(Op.LOGIN, 2, login))
    assert r.calls[-1][:2] == ("error", 2) and isinstance(r.calls[-1][2], RateLimited)
    r._auth_busy = False  # (Session._run does this when the first one is answered)
    r.on_ws_frame(r.transport, binary(Op.LOGIN, 3, login))  # answers at once: not busy after
    assert not r._auth_busy and answers == []


def test_more_than_the_requests_in_progress_allowed_is_refused(impl):
    r = make(impl, handlers={Op.SEND: lambda *args: pytest.fail("too many in flight")})
    r.state = impl.AUTHENTICATED
    r.in_flight = impl.MAX_IN_FLIGHT
    r.on_ws_frame(r.transport, binary(Op.SEND, 6, SEND))
    [(kind, req_id, exc)] = r.calls
    assert (kind, req_id, type(exc)) == ("error", 6, RateLimited)


def test_the_frame_budget_refuses_frames_of_every_kind(impl):
    r = make(impl, burst=1)
    r.on_ws_frame(r.transport, binary(Op.PING, 1))  # the one frame of the budget
    r.on_ws_frame(r.transport, binary(Op.PING, 2))
    r.on_ws_frame(r.transport, _make_test_ws_frame(WSMsgType.TEXT, b"x", True, False))
    bad = encode_frame(Op.PING, 9, 0, b"")
    r.on_ws_frame(r.transport, _make_test_ws_frame(WSMsgType.BINARY, bytes([99]) + bad[1:], True, False))
    assert [call[0] for call in r.calls] == ["frame", "over", "over", "over"]
    assert [call[1] for call in r.calls[1:]] == [2, 0, 9]


def test_a_close_frame_is_never_charged(impl):
    r = make(impl, burst=0)
    r.on_ws_frame(r.transport, _make_test_ws_frame(WSMsgType.CLOSE, b"\x03\xe8", True, False))
    assert r.calls == [("other", WSMsgType.CLOSE)]


def test_text_and_fragmented_frames_go_to_the_other_frame_hook(impl):
    r = make(impl)
    r.on_ws_frame(r.transport, _make_test_ws_frame(WSMsgType.TEXT, b"hello", True, False))
    r.on_ws_frame(r.transport, _make_test_ws_frame(WSMsgType.BINARY, encode_frame(Op.PING, 1, 0, b""), False, False))
    assert r.calls == [("other", WSMsgType.TEXT), ("other", WSMsgType.BINARY)]


def test_a_bad_header_and_a_bad_body_are_bad_frames_with_their_codes(impl):
    r = make(impl, handlers={Op.SEND: lambda *args: pytest.fail("bad body")})
    r.state = impl.AUTHENTICATED
    header = encode_frame(Op.SEND, 11, 0, b"")
    r.on_ws_frame(r.transport, _make_test_ws_frame(WSMsgType.BINARY, bytes([99]) + header[1:], True, False))
    r.on_ws_frame(r.transport, binary(Op.SEND, 12, bodies.encode(bodies.Login(username="alice", password="secret-pw",
                                                                               terminal="web"))))
    r.on_ws_frame(r.transport, binary(Op.SEND, 13, b"\x81\xa7content\xa2\xff\xfe"))  # not UTF-8
    assert [(call[0], call[1], type(call[2]), call[2].code) for call in r.calls] == [
        ("bad", 11, FrameError, ErrorCode.BAD_VERSION),
        ("bad", 12, FrameError, ErrorCode.BAD_BODY),
        ("bad", 13, FrameError, ErrorCode.BAD_BODY),
    ]
    assert r.calls[1][2].message.startswith("bad SEND body: ")


def test_once_our_close_is_sent_only_the_clients_close_counts(impl):
    r = make(impl, handlers={Op.SEND: lambda *args: pytest.fail("closing")})
    r.state = impl.AUTHENTICATED
    r.transport.send_close()
    r.loop.now = 99.0
    r.on_ws_frame(r.transport, binary(Op.SEND, 1, SEND))
    assert r.calls == [] and r.last_active == 0.0 and not r.underlying.closed
    r.on_ws_frame(r.transport, _make_test_ws_frame(WSMsgType.CLOSE, b"\x03\xe8", True, False))
    assert r.underlying.closed and r.calls == []


def test_a_text_is_bounded_in_utf8_bytes_as_well_as_in_characters(impl):
    seen = []
    r = make(impl, handlers={Op.SEND: lambda s, req_id, *args: seen.append(req_id)})
    r.state = impl.AUTHENTICATED
    most = content.MAX_CONTENT
    texts = {1: "x" * most, 2: "😀" * (most // 4), 3: "😀" * (most // 4 + 1), 4: "x" * (most + 1)}
    for req_id, text in texts.items():
        r.on_ws_frame(r.transport, binary(Op.SEND, req_id, msgpack_send(text)))
    assert seen == [1, 2]  # at the bound in characters, at the bound in bytes
    assert [(call[0], call[1], call[2].code) for call in r.calls] == [("bad", 3, ErrorCode.BAD_BODY),
                                                                      ("bad", 4, ErrorCode.BAD_BODY)]
    assert "over 32768 bytes in UTF-8" in r.calls[0][2].message


def msgpack_send(text: str) -> bytes:
    """A SEND body as a client may write it: not checked on the way out."""
    return msgspec.msgpack.encode({"cmid": "c1", "content": text})
