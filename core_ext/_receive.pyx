# cython: language_level=3
"""Compiled receiving half of a connection: ``Receiver.on_ws_frame``, the code picows runs
for every frame a client sends. Same behaviour as the pure-Python twin ``receive_py.py``
(the reference, which says what it does and which hooks the subclass implements).

picows declares ``WSListener.on_ws_frame`` cpdef, so this override is called from its
reader in C, with no Python call. The frame's type and FIN bit and the transport's close
state are read as C struct members (picows ships ``picows.pxd``) and the op tables are C
arrays: what is left of Python on the common path is the loop's clock, the frame budget,
the header's tuple, the body's msgspec decoder and the handler.
"""
from picows.picows cimport WSFrame, WSListener, WSMsgType, WSTransport

import msgspec

from . import bodies
from ._codec import decode_request, encode_frame
from .errors import AuthError, FrameError, RateLimited
from .protocol import ErrorCode, Op
from .receive_py import ANONYMOUS, AUTH_OPS, AUTHENTICATED, LOGGING_IN, MAX_IN_FLIGHT, OPEN_OPS

__all__ = ["Receiver", "ANONYMOUS", "LOGGING_IN", "AUTHENTICATED", "MAX_IN_FLIGHT", "OPEN_OPS", "AUTH_OPS"]

cdef int _AUTHENTICATED = AUTHENTICATED
cdef int _MAX_IN_FLIGHT = MAX_IN_FLIGHT
cdef int _PING = Op.PING
cdef object _DecodeError = msgspec.DecodeError
cdef bytes _PONG = encode_frame(Op.PONG, 0, 0, b"")
cdef object _EMPTY_MAP = bodies.EMPTY_MAP

# by the header's op byte: one load instead of a dict or frozenset lookup
cdef list _decoders = [None] * 256
cdef bint _open_op[256]
cdef bint _auth_op[256]
cdef int _i
for _i in range(256):
    _decoders[_i] = bodies.REQUEST_DECODERS.get(_i)
    _open_op[_i] = _i in OPEN_OPS
    _auth_op[_i] = _i in AUTH_OPS


cdef class Receiver(WSListener):
    # the subclass sets them all before its connection opens (receive_py.Receiver)
    cdef public object loop
    cdef public WSTransport transport
    cdef public object _handlers
    cdef public object _spawn
    cdef public object _frames  # a Bucket (_buckets.pyx)
    cdef public object frames_in
    cdef public int state
    cdef public int in_flight
    cdef public bint _auth_busy
    cdef public double last_active
    cdef public object peer
    cdef public object frames_out

    cpdef send_frame(self, frame):
        if self.frames_out is not None:
            self.frames_out[frame[1]] += 1
        self.peer.send(frame)

    cpdef on_ws_frame(self, WSTransport transport, WSFrame frame):
        cdef WSMsgType msg_type = frame.msg_type
        cdef double now
        cdef int op
        if self.transport.is_close_frame_sent:  # closing: only the client's CLOSE matters
            if msg_type == WSMsgType.CLOSE:
                self.transport.disconnect(False)
            return
        now = self.loop.time()
        self.last_active = now
        if msg_type != WSMsgType.BINARY or not frame.fin:
            if msg_type == WSMsgType.CLOSE:
                self._on_other_frame(frame)
            elif self._frames.take(1.0, now):
                self._on_other_frame(frame)
            else:
                self._over_rate(0)
            return
        try:
            op_, flags, req_id, target, body = decode_request(frame.get_payload_as_memoryview())
        except FrameError as exc:
            if self._frames.take(1.0, now):
                self._bad_frame(exc.req_id, exc)
            else:
                self._over_rate(exc.req_id)
            return
        if not self._frames.take(1.0, now):
            self._over_rate(req_id)
            return
        op = op_
        if self.frames_in is not None:
            self.frames_in[op] += 1
        try:
            request = _decoders[op].decode(body if len(body) else _EMPTY_MAP)
        except _DecodeError as exc:
            self._bad_frame(req_id, FrameError(f"bad {Op(op).name} body: {exc}", ErrorCode.BAD_BODY))
            return
        except (UnicodeDecodeError, RecursionError) as exc:  # bad UTF-8 in a str, nesting too deep
            self._bad_frame(req_id, FrameError(f"bad {Op(op).name} body: {type(exc).__name__}: {exc}",
                                               ErrorCode.BAD_BODY))
            return
        if op == _PING:
            self.send_frame(_PONG if req_id == 0 else encode_frame(Op.PONG, req_id, 0, b""))
            return
        if self.state != _AUTHENTICATED and not _open_op[op]:
            self.error(req_id, AuthError(f"{Op(op).name} needs a login first"))
            return
        if self.in_flight >= _MAX_IN_FLIGHT:
            self.error(req_id, RateLimited(f"more than {MAX_IN_FLIGHT} requests in progress"))
            return
        if _auth_op[op]:
            # password hashing is slow on purpose: one registration or login at a time per connection
            if self._auth_busy:
                self.error(req_id, RateLimited("a registration or login is already in progress"))
                return
            self._auth_busy = True
        try:
            pending = self._handlers[op_](self, req_id, flags, target, request)
        except Exception as exc:
            self._auth_busy = False
            self._fail(op_, req_id, exc)
            return
        if pending is None:
            self._auth_busy = False
            return
        self.in_flight += 1
        self._spawn(self._run(op_, req_id, pending))
