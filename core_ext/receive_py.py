"""The receiving half of a connection, per frame: the pure-Python twin of ``_receive.pyx``
(the reference: it says what both do; the edge suites run the node on each).

``Receiver.on_ws_frame`` is what picows calls for every frame a client sends. It parses
the header, charges the connection's frame budget, decodes the body while the payload
view is valid, checks the login state and the requests in progress, and calls the op's
handler. A handler answers at once (it returns None) or returns an awaitable, which runs
as a task (``_run``).

Everything off that path is the subclass's (edge/session.py): it sets the fields below
and implements the hooks ``on_ws_frame`` calls on the rare paths:

- ``_on_other_frame(frame)``: a frame that is not one unfragmented binary message;
- ``_over_rate(req_id)``: the frame budget refused a frame;
- ``_bad_frame(req_id, exc)``: a frame or body that does not parse;
- ``error(req_id, exc)``: an error reply;
- ``_fail(op, req_id, exc)``: a handler raised;
- ``_run(op, req_id, awaitable)``: the coroutine that awaits a handler's answer.
"""
from __future__ import annotations

from typing import Any

import msgspec
from picows import WSFrame, WSListener, WSMsgType, WSTransport

from . import bodies
from .codec import decode_request, encode_frame
from .errors import AuthError, FrameError, RateLimited
from .protocol import ErrorCode, Op

__all__ = ["Receiver", "ANONYMOUS", "LOGGING_IN", "AUTHENTICATED", "MAX_IN_FLIGHT", "OPEN_OPS", "AUTH_OPS"]

#: a connection's login state (``Receiver.state``)
ANONYMOUS, LOGGING_IN, AUTHENTICATED = 0, 1, 2
#: requests one connection may have in progress; more get RATE_LIMITED
MAX_IN_FLIGHT = 256
#: the ops served before a login, and those that log in (one at a time per connection)
OPEN_OPS = frozenset({Op.PING, Op.REGISTER, Op.LOGIN, Op.TOKEN_LOGIN})
AUTH_OPS = frozenset({Op.REGISTER, Op.LOGIN, Op.TOKEN_LOGIN})

_PONG = encode_frame(Op.PONG, 0, 0, b"")
_DECODERS = bodies.REQUEST_DECODERS
_EMPTY_MAP = bodies.EMPTY_MAP


class Receiver(WSListener):
    # the subclass sets them all before its connection opens
    __slots__ = ("loop", "transport", "_handlers", "_spawn", "_frames", "frames_in", "state", "in_flight",
                 "_auth_busy", "last_active", "peer", "frames_out")

    loop: Any  # asyncio.AbstractEventLoop: its time() is the clock of the budgets
    transport: WSTransport
    _handlers: dict[int, Any]  # op -> handler(session, req_id, flags, target, body)
    _spawn: Any  # runs a coroutine as a task
    _frames: Any  # the connection's Bucket of frames a second
    frames_in: list[int] | None  # frames counted by op; None counts nothing
    state: int
    in_flight: int
    _auth_busy: bool
    last_active: float
    peer: Any  # the connection's Peer (core_ext/fanout.py): its queue of frames to write
    frames_out: list[int] | None  # frames sent counted by op; None counts nothing

    def send_frame(self, frame: bytes) -> None:
        """Queue ``frame`` on the connection's peer: what is queued in one loop iteration
        goes out in one write. Every reply and SEND_ACK comes through here."""
        if self.frames_out is not None:
            self.frames_out[frame[1]] += 1
        self.peer.send(frame)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if self.transport.is_close_frame_sent:  # closing: only the client's CLOSE matters
            if msg_type is WSMsgType.CLOSE:
                self.transport.disconnect(graceful=False)
            return
        now = self.loop.time()
        self.last_active = now
        if msg_type is not WSMsgType.BINARY or not frame.fin:
            if msg_type is WSMsgType.CLOSE:
                self._on_other_frame(frame)
            elif self._frames.take(1.0, now):
                self._on_other_frame(frame)
            else:
                self._over_rate(0)
            return
        try:
            op, flags, req_id, target, body = decode_request(frame.get_payload_as_memoryview())
        except FrameError as exc:
            if self._frames.take(1.0, now):
                self._bad_frame(exc.req_id, exc)
            else:
                self._over_rate(exc.req_id)
            return
        if not self._frames.take(1.0, now):
            self._over_rate(req_id)
            return
        if self.frames_in is not None:
            self.frames_in[op] += 1
        try:
            request = _DECODERS[op].decode(body if len(body) else _EMPTY_MAP)
        except msgspec.DecodeError as exc:
            self._bad_frame(req_id, FrameError(f"bad {Op(op).name} body: {exc}", ErrorCode.BAD_BODY))
            return
        except (UnicodeDecodeError, RecursionError) as exc:  # bad UTF-8 in a str, nesting too deep
            self._bad_frame(req_id, FrameError(f"bad {Op(op).name} body: {type(exc).__name__}: {exc}",
                                               ErrorCode.BAD_BODY))
            return
        if op == Op.PING:
            self.send_frame(_PONG if req_id == 0 else encode_frame(Op.PONG, req_id, 0, b""))
            return
        if self.state != AUTHENTICATED and op not in OPEN_OPS:
            self.error(req_id, AuthError(f"{Op(op).name} needs a login first"))
            return
        if self.in_flight >= MAX_IN_FLIGHT:
            self.error(req_id, RateLimited(f"more than {MAX_IN_FLIGHT} requests in progress"))
            return
        if op in AUTH_OPS:
            # password hashing is slow on purpose: one registration or login at a time per connection
            if self._auth_busy:
                self.error(req_id, RateLimited("a registration or login is already in progress"))
                return
            self._auth_busy = True
        try:
            pending = self._handlers[op](self, req_id, flags, target, request)
        except Exception as exc:
            self._auth_busy = False
            self._fail(op, req_id, exc)
            return
        if pending is None:
            self._auth_busy = False
            return
        self.in_flight += 1
        self._spawn(self._run(op, req_id, pending))

