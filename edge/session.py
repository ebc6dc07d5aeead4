"""One client connection: frame parsing, limits, authentication state and the requests.

``on_ws_frame`` runs per frame and stays synchronous: it parses the header (Cython
codec), charges the rate limit and decodes the body while the payload view is valid;
requests that wait on I/O continue as tasks. This module is the one place where
exceptions become ERROR frames.
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Awaitable, Callable

import msgspec
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from ..backends.protocols import StoredMessage, UserId
from ..core_ext import bodies
from ..core_ext.codec import decode_request, encode_frame
from ..core_ext.errors import AuthError, FrameError, ImError, RateLimited
from ..core_ext.fanout import write_frames
from ..core_ext.protocol import MAX_BODY_SIZE, CloseCode, ErrorCode, Op
from ..services.auth import Identity

if TYPE_CHECKING:
    from .node import Node

__all__ = ["Session"]

log = logging.getLogger("edgeim.session")

ANONYMOUS, LOGGING_IN, AUTHENTICATED = 0, 1, 2
_OPEN_OPS = frozenset({Op.PING, Op.REGISTER, Op.LOGIN, Op.TOKEN_LOGIN})
_AUTH_OPS = frozenset({Op.REGISTER, Op.LOGIN, Op.TOKEN_LOGIN})
_PONG = encode_frame(Op.PONG, 0, 0, b"")
#: seconds a closing connection may take to answer our CLOSE
CLOSE_WAIT = 2.0
#: requests one connection may have in progress; more get RATE_LIMITED
MAX_IN_FLIGHT = 256
#: room in a reply body for the page's own keys around its messages
_PAGE_BUDGET = MAX_BODY_SIZE - 256


class Session(WSListener):
    def __init__(self, node: Node) -> None:
        super().__init__()
        self.node = node
        self.transport: WSTransport = None  # type: ignore[assignment]  # set on connect
        self.user_id = UserId(0)
        self.terminal = ""
        self.state = ANONYMOUS
        self.closed = False
        now = node.loop.time()
        self.connected_at = now
        self.last_active = now
        self.renewed_at = now
        self._tokens = float(node.config.burst)
        self._tokens_at = now
        self._over_budget = 0
        self._bad_frames = 0
        self._in_flight = 0
        self._auth_busy = False
        #: set while picows holds more unsent bytes than its high-water mark
        self.write_paused = False
        #: frames queued in this loop iteration (None: nothing queued); see Outbox
        self._out: list[bytes] | None = None
        # resolves when this connection's previous SEND has started its append: keeps the
        # connection's sends in order without waiting for each commit
        self._send_gate: asyncio.Future[None] | None = None

    # -- picows callbacks ---------------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.node.server.sessions.add(self)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closed = True
        self.node.server.sessions.discard(self)
        if self.state == AUTHENTICATED and self.node.hub.detach(self):
            self.node.spawn(self.node.routes.unbind(self.user_id, self.terminal, self.node.id))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if self.transport.is_close_frame_sent:  # closing: only the client's CLOSE matters
            if msg_type is WSMsgType.CLOSE:
                self.transport.disconnect(graceful=False)
            return
        now = self.node.loop.time()
        self.last_active = now
        if msg_type is not WSMsgType.BINARY or not frame.fin:
            if msg_type is WSMsgType.CLOSE or self._charge(now, 0):
                self._on_other_frame(frame)
            return
        try:
            op, flags, req_id, target, body = decode_request(frame.get_payload_as_memoryview())
        except FrameError as exc:
            if self._charge(now, exc.req_id):
                self._bad_frame(exc.req_id, exc)
            return
        if not self._charge(now, req_id):
            return
        try:
            request = bodies.decode(body, bodies.REQUEST_BODIES[op])
        except msgspec.DecodeError as exc:
            self._bad_frame(req_id, FrameError(f"bad {Op(op).name} body: {exc}", ErrorCode.BAD_BODY))
            return
        if op == Op.PING:
            self.send_frame(_PONG if req_id == 0 else encode_frame(Op.PONG, req_id, 0, b""))
            return
        if self.state != AUTHENTICATED and op not in _OPEN_OPS:
            self.error(req_id, AuthError(f"{Op(op).name} needs a login first"))
            return
        if self._in_flight >= MAX_IN_FLIGHT:
            self.error(req_id, RateLimited(f"more than {MAX_IN_FLIGHT} requests in progress"))
            return
        if op == Op.SEND and self._send_now(req_id, target, request):
            return
        if op in _AUTH_OPS:
            # scrypt is slow on purpose: one registration or login at a time per connection
            if self._auth_busy:
                self.error(req_id, RateLimited("a registration or login is already in progress"))
                return
            self._auth_busy = True
        self._in_flight += 1
        if op == Op.SEND:
            # the gate is set now, not when the task starts, so that a SEND read right
            # after this one cannot take the fast path ahead of it
            previous, self._send_gate = self._send_gate, self.node.loop.create_future()
            handler = self.on_send(req_id, target, request, previous, self._send_gate)
        else:
            handler = _HANDLERS[op](self, req_id, flags, target, request)
        self.node.spawn(self._run(op, req_id, handler))

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

    # -- limits -------------------------------------------------------------------------------

    def _charge(self, now: float, req_id: int) -> bool:
        """Token bucket: False (and an error or a close) when the frame is over budget."""
        config = self.node.config
        tokens = min(float(config.burst), self._tokens + (now - self._tokens_at) * config.rate)
        self._tokens_at = now
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return True
        self._tokens = tokens
        self._over_budget += 1
        if self._over_budget > config.flood_limit:
            self.close(CloseCode.POLICY, "flood")
        else:
            self.error(req_id, RateLimited(f"over {config.rate:g} frames/s"))
        return False

    def _bad_frame(self, req_id: int, exc: ImError) -> None:
        self._bad_frames += 1
        if self._bad_frames > self.node.config.bad_frame_limit:
            self.close(CloseCode.POLICY, "too many bad frames")
        else:
            self.error(req_id, exc)

    # -- replies ------------------------------------------------------------------------------

    def reply(self, op: Op, req_id: int, body: msgspec.Struct | None, target: int = 0) -> None:
        self.send_frame(encode_frame(op, req_id, target, bodies.encode(body)))

    def send_frame(self, frame: bytes) -> None:
        """Queue ``frame``; what is queued in one loop iteration goes out in one write."""
        if self.closed:
            return
        if self._out is None:
            self._out = [frame]
            self.node.outbox.add(self)
        else:
            self._out.append(frame)

    def flush(self) -> None:
        frames, self._out = self._out, None
        if frames:
            write_frames(self.transport, frames)

    def error(self, req_id: int, exc: ImError) -> None:
        self.reply(Op.ERROR, req_id, bodies.Error(code=int(exc.code), message=exc.message))

    def _fail(self, op: int, req_id: int, exc: BaseException) -> None:
        """The one mapping of a failed request to its ERROR frame: an ImError carries its
        code; anything else is a bug, logged, and the client sees INTERNAL."""
        if isinstance(exc, ImError):
            self.error(req_id, exc)
        else:
            log.error("request failed", exc_info=exc, extra={"op": op, "req_id": req_id, "user": self.user_id})
            self.error(req_id, ImError("internal error"))

    def close(self, code: CloseCode, reason: str = "") -> None:
        """Start the close handshake. The socket is dropped when the client answers, or
        after CLOSE_WAIT: closing it at once, with the client's frames still unread, would
        make the kernel reset the connection and the client could lose the close code."""
        if not self.closed and not self.transport.is_close_frame_sent:
            self.flush()  # what was queued before the close goes before it
            self.transport.send_close(WSCloseCode(int(code)), reason.encode())
            self.node.loop.call_later(CLOSE_WAIT, self.transport.disconnect, False)

    @property
    def closing(self) -> bool:
        return self.closed or self.transport.is_close_frame_sent

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

    async def _run(self, op: int, req_id: int, handler: Awaitable[None]) -> None:
        try:
            await handler
        except Exception as exc:
            self._fail(op, req_id, exc)
        finally:
            self._in_flight -= 1
            if op in _AUTH_OPS:
                self._auth_busy = False

    # -- requests -----------------------------------------------------------------------------

    async def on_register(self, req_id: int, flags: int, target: int, req: bodies.Register) -> None:
        user = await self.node.auth.register(req.username, req.password, req.nickname)
        self.reply(Op.REGISTER_OK, req_id, bodies.RegisterOk(user_id=user.id))

    async def on_login(self, req_id: int, flags: int, target: int, req: bodies.Login) -> None:
        await self._authenticate(req_id, Op.LOGIN_OK, req.terminal, lambda: self.node.auth.login(req.username, req.password))

    async def on_token_login(self, req_id: int, flags: int, target: int, req: bodies.TokenLogin) -> None:
        await self._authenticate(req_id, Op.TOKEN_LOGIN_OK, req.terminal, lambda: self.node.auth.token_login(req.token))

    async def _authenticate(self, req_id: int, ok: Op, terminal: str, check: Callable[[], Awaitable[Identity]]) -> None:
        if self.state != ANONYMOUS:
            raise AuthError("already logged in (or logging in) on this connection", ErrorCode.ALREADY_AUTHENTICATED)
        self.state = LOGGING_IN
        try:
            identity = await check()
        except BaseException:
            self.state = ANONYMOUS
            raise
        if self.closing:  # e.g. the auth timeout closed it meanwhile: do not kick anyone
            self.state = ANONYMOUS
            return
        self.user_id, self.terminal, self.state = identity.user_id, terminal, AUTHENTICATED
        await self.node.bind(self)
        self.reply(ok, req_id, bodies.LoginOk(
            user_id=identity.user_id, token=identity.token, expires_at=identity.expires_at,
            terminal=terminal, node=self.node.id,
        ))

    async def on_logout(self, req_id: int, flags: int, target: int, req: bodies.Empty) -> None:
        self.reply(Op.LOGOUT_OK, req_id, None)
        self.close(CloseCode.LOGGED_OUT, "logged out")

    def _send_now(self, req_id: int, target: int, req: bodies.Send) -> bool:
        """The common SEND, without a task: receiver known, no earlier send of this
        connection still being validated. False when ``on_send`` has to do it."""
        if self._send_gate is not None and not self._send_gate.done():
            return False
        messages = self.node.messages
        try:
            new = messages.prepare_now(self.user_id, UserId(target), req.cmid, req.type, req.content)
            if new is None:
                return False
            pending = messages.commit(new)
        except ImError as exc:
            self.error(req_id, exc)
            return True
        self._in_flight += 1
        pending.add_done_callback(lambda done: self._on_committed(req_id, done))
        return True

    def _on_committed(self, req_id: int, done: asyncio.Future[StoredMessage]) -> None:
        self._in_flight -= 1
        error = done.exception()
        if error is None:
            self._acked(req_id, done.result())
        else:
            self._fail(Op.SEND, req_id, error)

    def _acked(self, req_id: int, stored: StoredMessage) -> None:
        """Ack a durable message, then push it (unless it is a retry's original). The ack
        queues behind the pushes already on their way, so a connection sees each
        conversation's seqs in order: never the ack of n+1 before the push of n."""
        ack = encode_frame(Op.SEND_ACK, req_id, 0, bodies.encode(bodies.SendAck(
            cmid=stored.cmid, msg_id=stored.id, conv=stored.conv, seq=stored.seq, ts=stored.ts,
        )))
        self.node.delivery.then(self.send_frame, ack)
        if not stored.duplicate:  # a retry's original was pushed already (or is synced)
            frame = encode_frame(Op.MSG_PUSH, 0, stored.to, bodies.encode(_message_body(stored)))
            self.node.delivery.push(frame, (stored.to, stored.sender), self.user_id, self.terminal)

    async def on_send(self, req_id: int, target: int, req: bodies.Send,
                      previous: asyncio.Future[None] | None, mine: asyncio.Future[None]) -> None:
        """The SEND that needs I/O first (its receiver is not known yet), or that waits
        behind one that does (``previous``); it resolves ``mine`` once it is in the store's
        queue, so the connection's sends keep their order either way."""
        messages = self.node.messages
        try:
            new = await messages.prepare(self.user_id, UserId(target), req.cmid, req.type, req.content)
            if previous is not None and not previous.done():
                await previous
            pending = messages.commit(new)
        finally:
            # the next send may go once this one is in the store's queue, or, if this one
            # failed, once the one before it is: the chain of gates is never broken
            if previous is None or previous.done():
                mine.set_result(None)
            else:
                previous.add_done_callback(lambda _: mine.set_result(None))
        self._acked(req_id, await pending)

    async def on_sync(self, req_id: int, flags: int, target: int, req: bodies.Sync) -> None:
        rows, more = await self.node.messages.sync(self.user_id, req.conv, req.after_seq, req.limit)
        self.reply(Op.SYNC_OK, req_id, _page(req.conv, rows, more, keep_newest=False))

    async def on_history(self, req_id: int, flags: int, target: int, req: bodies.History) -> None:
        rows, more = await self.node.messages.history(self.user_id, req.conv, req.before_seq, req.limit)
        self.reply(Op.HISTORY_OK, req_id, _page(req.conv, rows, more, keep_newest=True))

    async def on_conversations(self, req_id: int, flags: int, target: int, req: bodies.Conversations) -> None:
        convs, more = await self.node.messages.conversations(self.user_id, req.offset, req.limit)
        self.reply(Op.CONVERSATIONS_OK, req_id, bodies.ConversationList(convs=[
            bodies.ConversationInfo(conv=c.conv, peer=c.peer, last_seq=c.last_seq, last_ts=c.last_ts) for c in convs
        ], has_more=more))


def _message_body(m: StoredMessage) -> bodies.Message:
    return bodies.Message(
        id=m.id, conv=m.conv, seq=m.seq, sender=m.sender, to=m.to, cmid=m.cmid, type=m.type, content=m.content, ts=m.ts,
    )


def _page(conv: str, rows: list[StoredMessage], more: bool, keep_newest: bool) -> bodies.Page:
    """A page that fits in one frame: as many of ``rows`` as the byte budget holds, from the
    oldest (SYNC pages forwards) or the newest (HISTORY pages backwards); ``has_more`` is
    set when some had to stay out. One message always fits (its content is capped)."""
    msgs = [_message_body(m) for m in rows]
    total = kept = 0
    for message in reversed(msgs) if keep_newest else msgs:
        total += len(bodies.encode(message))
        if total > _PAGE_BUDGET:
            break
        kept += 1
    if kept < len(msgs):
        msgs, more = (msgs[len(msgs) - kept:] if keep_newest else msgs[:kept]), True
    return bodies.Page(conv=conv, msgs=msgs, has_more=more)


_HANDLERS: dict[int, Callable[..., Awaitable[None]]] = {
    Op.REGISTER: Session.on_register,
    Op.LOGIN: Session.on_login,
    Op.TOKEN_LOGIN: Session.on_token_login,
    Op.LOGOUT: Session.on_logout,
    Op.SYNC: Session.on_sync,
    Op.HISTORY: Session.on_history,
    Op.CONVERSATIONS: Session.on_conversations,
}
