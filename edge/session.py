"""One client connection: limits, authentication state, replies.

What runs per frame is the ``Receiver`` this class extends (core_ext/receive_py.py, compiled
as core_ext/_receive.pyx): it parses the header, charges the frame budget and decodes the
body while the payload view is valid, then calls the op's handler. A handler answers at
once (lists served from memory) or returns an awaitable, which runs as a task (``_run``).
The Session holds the rest of the connection and the hooks the Receiver calls on its rare
paths. This module is the one place where exceptions become ERROR frames.

A session gets what it uses in its constructor: the config, the loop, the outbox its
frames go through, the handler table, the set of open sessions it joins while open, and
two callbacks; it knows nothing of the node.
"""
from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any, Awaitable, Callable, Coroutine, Mapping

import msgspec
from multidict import CIMultiDict, CIMultiDictProxy
from picows import WSCloseCode, WSFrame, WSMsgType, WSTransport

from ..backends.protocols import StoreUnavailable, UserId
from ..core_ext import bodies
from ..core_ext.buckets import Bucket
from ..core_ext.codec import encode_frame
from ..core_ext.errors import AuthError, FrameError, ImError, RateLimited, Unavailable
from ..core_ext.fanout import Outbox, Peer
from ..core_ext.protocol import CloseCode, ErrorCode, Op
from ..core_ext.receive import ANONYMOUS, AUTH_OPS, AUTHENTICATED, LOGGING_IN, Receiver
from ..ops.config import Config
from ..ops.metrics import EDGE

__all__ = ["Session", "Handler", "ANONYMOUS", "LOGGING_IN", "AUTHENTICATED"]

log = logging.getLogger("edgeim.session")

# metrics (ops/metrics.py): process-wide counters, bound once; ``EDGE.on`` False counts nothing
_FRAMES_IN = EDGE.frames_in
_FRAMES_OUT = EDGE.frames_out
#: seconds a closing connection may take to answer our CLOSE
CLOSE_WAIT = 2.0

#: handler(session, req_id, flags, target, body): None when it has answered already, else
#: an awaitable that answers (it runs as a task; what it raises becomes the ERROR frame)
Handler = Callable[["Session", int, int, int, Any], "Awaitable[None] | None"]


#: what a connection's upgrade request and response hold as headers once it is open
_NO_HEADERS = CIMultiDictProxy(CIMultiDict())


def _drop_handshake_headers(transport: WSTransport) -> None:
    """picows keeps the upgrade request and response on the transport for the connection's
    life, with their header multidicts: ~3 KiB per connection (bench/memory.py) that
    nothing reads after the handshake (the route has seen the request's). They are
    replaced by one shared empty, read-only multidict."""
    for message in (getattr(transport, "request", None), getattr(transport, "response", None)):
        if message is not None:
            message.headers = _NO_HEADERS


class Session(Receiver):
    # one per connection, so no __dict__ (bench/memory.py); an attribute added to
    # ``__init__`` must be named here too, unless the Receiver holds it (loop, transport,
    # _handlers, _spawn, _frames, frames_in, state, in_flight, _auth_busy, last_active,
    # peer, frames_out)
    __slots__ = ("config", "_outbox", "_registry", "_on_closed", "user_id", "terminal", "address",
                 "identity", "closed", "connected_at", "renewed_at", "_over_budget", "_bad_frames",
                 "write_paused", "send_gate")

    def __init__(self, config: Config, loop: asyncio.AbstractEventLoop, outbox: Outbox,
                 handlers: Mapping[int, Handler], spawn: Callable[[Coroutine[Any, Any, Any]], object],
                 registry: set[Session], on_closed: Callable[[Session], None]) -> None:
        super().__init__()
        self.config = config
        self.loop = loop
        self._outbox = outbox
        self._handlers = handlers
        self._spawn = spawn
        self._registry = registry  # the open connections of the node: this one is in it while open
        self._on_closed = on_closed
        self.transport: WSTransport = None  # type: ignore[assignment]  # set on connect
        self.peer: Peer = None  # type: ignore[assignment]  # set on connect
        self.user_id = UserId(0)
        self.terminal = ""
        #: the client's address (per-address budgets) and, once logged in, its credentials
        self.address = ""
        self.identity: Any = None
        self.state = ANONYMOUS
        self.closed = False
        now = loop.time()
        self.connected_at = now
        self.last_active = now
        self.renewed_at = now
        self._frames = Bucket(config.rate, config.burst, now)  # frames a second (``_over_rate``)
        self.frames_in = _FRAMES_IN if EDGE.on else None
        self.frames_out = _FRAMES_OUT if EDGE.on else None
        self._over_budget = 0
        self._bad_frames = 0
        #: requests in progress (answered later); handlers that answer later count theirs
        self.in_flight = 0
        self._auth_busy = False
        #: set while picows holds more unsent bytes than its high-water mark
        self.write_paused = False
        #: resolves when this connection's previous SEND has started its append: keeps the
        #: connection's sends in order without waiting for each commit (see the SEND handler)
        self.send_gate: asyncio.Future[None] | None = None

    # -- picows callbacks ---------------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        _drop_handshake_headers(transport)
        self.peer = Peer(self._outbox, transport, self)
        # a client that does not read is dropped as soon as its backlog would pass this
        self.peer.max_bytes = self.config.max_write_buffer
        peer = transport.underlying_transport.get_extra_info("peername")
        # interned: the connections of one client address share the string
        self.address = sys.intern(str(peer[0])) if isinstance(peer, tuple) and peer else "unknown"
        self._registry.add(self)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closed = True
        self._registry.discard(self)
        if self.peer is not None:
            self.peer.close()
        self._on_closed(self)
        if self.peer is not None:  # out of the routing table now: break the session <-> peer cycle
            self.peer.release()

    def _on_other_frame(self, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if msg_type is WSMsgType.PING:  # auto-pong is off so that pings count as activity
            self.transport.send_pong(frame.get_payload_as_bytes())
        elif msg_type is WSMsgType.CLOSE:
            self.flush()  # replies queued before the client's CLOSE still go out
            self.transport.send_close(frame.get_close_code())
            self.transport.disconnect()
        elif msg_type is WSMsgType.TEXT or msg_type is WSMsgType.CONTINUATION or msg_type is WSMsgType.BINARY:
            self._bad_frame(0, FrameError("only unfragmented binary messages are frames", ErrorCode.BAD_FRAME))
        # PONG only counts as activity

    async def _run(self, op: int, req_id: int, pending: Awaitable[None]) -> None:
        try:
            await pending
        except Exception as exc:
            self._fail(op, req_id, exc)
        finally:
            self.in_flight -= 1
            if op in AUTH_OPS:
                self._auth_busy = False

    # -- limits -------------------------------------------------------------------------------

    def _over_rate(self, req_id: int) -> None:
        """The frame budget refused a frame: an error, or a close once it keeps happening."""
        config = self.config
        self._over_budget += 1
        if self._over_budget > config.flood_limit:
            self.close(CloseCode.POLICY, "flood")
        else:
            self.error(req_id, RateLimited(f"over {config.rate:g} frames/s"))

    def _bad_frame(self, req_id: int, exc: ImError) -> None:
        self._bad_frames += 1
        if self._bad_frames > self.config.bad_frame_limit:
            self.close(CloseCode.POLICY, "too many bad frames")
        else:
            self.error(req_id, exc)

    # -- authentication state -------------------------------------------------------------------

    def begin_login(self) -> None:
        if self.state != ANONYMOUS:
            raise AuthError("already logged in (or logging in) on this connection", ErrorCode.ALREADY_AUTHENTICATED)
        self.state = LOGGING_IN

    def end_login(self, user_id: UserId | None, terminal: str = "") -> bool:
        """Finish a login: authenticated as (user_id, terminal), or back to anonymous when
        ``user_id`` is None or the connection is closing meanwhile (False then)."""
        if user_id is None or self.closing:
            self.state = ANONYMOUS
            return False
        self.user_id, self.terminal, self.state = user_id, terminal, AUTHENTICATED
        self.peer.user, self.peer.terminal = user_id, terminal
        return True

    # -- replies ------------------------------------------------------------------------------

    def reply(self, op: Op, req_id: int, body: msgspec.Struct | None, target: int = 0) -> None:
        self.send_frame(encode_frame(op, req_id, target, bodies.encode(body)))

    def reply_body(self, op: Op, req_id: int, body: bytes) -> None:
        """Reply with a body encoded already (a cached list page)."""
        self.send_frame(encode_frame(op, req_id, 0, body))

    def flush(self) -> None:
        self.peer.flush()

    def error(self, req_id: int, exc: ImError) -> None:
        if EDGE.on:
            EDGE.errors[int(exc.code)] = EDGE.errors.get(int(exc.code), 0) + 1
        self.reply(Op.ERROR, req_id, bodies.Error(code=int(exc.code), message=exc.message))

    def _fail(self, op: int, req_id: int, exc: BaseException) -> None:
        """The one mapping of a failed request to its ERROR frame: an ImError carries its
        code; anything else is a bug, logged, and the client sees INTERNAL."""
        if isinstance(exc, ImError):
            self.error(req_id, exc)
        elif isinstance(exc, StoreUnavailable):  # a full disk, a lost database: retry later
            log.warning("store unavailable", extra={"op": op, "error": str(exc)})
            self.error(req_id, Unavailable("storage is unavailable; retry later"))
        else:
            log.error("request failed", exc_info=exc, extra={"op": op, "req_id": req_id, "user": self.user_id})
            self.error(req_id, ImError("internal error"))

    def fail(self, op: int, req_id: int, exc: BaseException) -> None:
        """``_fail`` for a handler that answers from a callback (a SEND's commit)."""
        self._fail(op, req_id, exc)

    def close(self, code: CloseCode, reason: str = "") -> None:
        """Start the close handshake. The socket is dropped when the client answers, or
        after CLOSE_WAIT: closing it at once, with the client's frames still unread, would
        make the kernel reset the connection and the client could lose the close code."""
        if not self.closed and not self.transport.is_close_frame_sent:
            self.flush()  # what was queued before the close goes before it
            self.transport.send_close(WSCloseCode(int(code)), reason.encode())
            self.loop.call_later(CLOSE_WAIT, self.transport.disconnect, False)

    @property
    def closing(self) -> bool:
        return self.closed or self.transport.is_close_frame_sent

    def wanted(self) -> bool:
        """Is anyone still waiting for this connection's answers?"""
        return not self.closing

    def pause_writing(self) -> None:
        # backpressure: a client that does not read its replies stops being read
        self.write_paused = True
        self.transport.underlying_transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if not self.closed:
            self.transport.underlying_transport.resume_reading()

    def write_buffer_size(self) -> int:
        return self.transport.underlying_transport.get_write_buffer_size()

    def kick(self, frame: bytes) -> None:
        """Forced logout: the KICKED push, then close 4001."""
        self.send_frame(frame)
        self.close(CloseCode.REPLACED, "replaced")
