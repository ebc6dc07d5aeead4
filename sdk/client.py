"""The asyncio client SDK: one WebSocket to an edge node, requests correlated by req_id,
pushes on a queue, sends retried with the same cmid after a reconnect.

    client = Client("ws://127.0.0.1:8765/ws")
    await client.connect()
    await client.login("alice", "secret-pw", terminal="desktop")
    ack = await client.send(bob_id, "hi")
    message = await client.pushes.get()

Every request op has a typed method: it returns the decoded reply body (None for an
empty one) and raises ServerError, whose ``code`` is the ErrorCode, for an ERROR reply.
Methods named after a list (``friends``, ``groups``, ``group_members``, ...) read every
page; their ``*_page`` twins read one.

Reconnects and exactly-once delivery to the application (``auto_reconnect=True``):

    client = Client(["ws://node-a/ws", "ws://node-b/ws", "ws://node-c/ws"], auto_reconnect=True)

- After a drop (not a kick, a logout or ``close()``) the client connects to the **next**
  URL in turn, waiting ``reconnect_delay`` doubled per failed attempt up to
  ``max_reconnect_delay``, each wait scaled by a random factor in [0.5, 1) so that the
  clients of a dead node do not all come back at the same instant. It logs in with its
  token, resends every unacknowledged send with its original cmid (flag RETRY: the server
  stores each once and acks it with the original ids), then ``catch_up()``: every message
  it missed goes into ``pushes``, then ``catch_up_changes()``: what changed meanwhile in
  the messages it holds (edits, reactions, recalls) goes into ``events``.
  ``reconnects`` counts the reconnections made.
- ``pushes`` gets each message (conv, seq) **at most once**, whether it came as a push, from
  a catch-up, or both; a catch-up puts a conversation's messages in seq order, and live
  pushes that come while it runs wait behind it. The client's own sends are not put there
  (their SEND_ACK is the answer). Memory per conversation: ``last_seqs[conv]``, the seq up
  to which it holds every message, and the few seqs above it that came across a gap.
- A push that leaves a gap (a push lost between nodes) makes the client SYNC that
  conversation after ``gap_sync_delay`` seconds if the gap is still open then.
- ``last_seqs`` is where a catch-up starts: an application that keeps messages across
  restarts sets it before connecting; a conversation without an entry is caught up from
  its first message.

Gray failures (a node or a backend that hangs rather than dies):

- A SEND answered ``5001 UNAVAILABLE`` (a backend of the node is down, or the node cannot
  make message ids for now) is sent again with the same cmid, up to ``send_retries`` times,
  waiting ``reconnect_delay`` doubled per attempt (capped, jittered) before each; only the
  last refusal reaches the application. The server stores a cmid once, so a retry of a
  send that was in fact stored is acked with the original ids.
- Heartbeat: every ``heartbeat`` seconds the client sends PING; with no answer within
  ``heartbeat_timeout`` it treats the connection as dead and drops it, so a client on a
  frozen node fails over to the next URL (``auto_reconnect``) within about
  ``heartbeat + heartbeat_timeout`` seconds, even when it sends nothing.
"""
from __future__ import annotations

import asyncio
import io
import itertools
import logging
import os
import random
import uuid
from typing import Any, Iterable, Sequence

import msgspec
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from ..core_ext import bodies, content
from ..core_ext.codec import decode_frame, encode_frame
from ..core_ext.errors import ImError
from ..core_ext.protocol import MAX_FRAME_SIZE, SUBPROTOCOL_PREFIX, VERSION, ErrorCode, Flag, Op

__all__ = ["Client", "ServerError", "Disconnected", "FileTransferError"]

log = logging.getLogger("edgeim.sdk")

#: the typed contents ``send_typed`` takes, and their message types
_CONTENT_TYPES: dict[type, int] = {schema: type_ for type_, schema in content.SCHEMAS.items() if type_ != content.CALL}

#: pushes that go to ``Client.events``
_EVENTS = frozenset({Op.FRIEND_PUSH, Op.GROUP_PUSH, Op.READ_PUSH, Op.CONV_PUSH, Op.RECALL_PUSH})
#: rich messaging pushes, also on ``Client.events``: TYPING_PUSH, PRESENCE_PUSH, CALL_PUSH
_EVENTS |= {Op.TYPING_PUSH, Op.PRESENCE_PUSH, Op.CALL_PUSH}
#: edits: EDIT_PUSH, also on ``Client.events`` (and, as SYNC_OK pages, what ``catch_up_changes`` finds)
_EVENTS |= {Op.EDIT_PUSH}
#: accounts and profiles: PROFILE_PUSH (a friend's or group member's new profile, or deletion)
_EVENTS |= {Op.PROFILE_PUSH}
#: reactions: REACTION_PUSH, on ``Client.events``
_EVENTS |= {Op.REACTION_PUSH}
#: per-user views and message pins, also on ``Client.events``: PIN_PUSH, VIEW_PUSH
_EVENTS |= {Op.PIN_PUSH, Op.VIEW_PUSH}


class FileTransferError(Exception):
    """The HTTP server refused a file's PUT or GET: ``status`` and its one-line reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status


class ServerError(ImError):
    """The server answered a request with an ERROR frame; ``code`` is its ErrorCode."""


class Disconnected(ConnectionError):
    """The connection closed before the reply came; ``close_code`` says why, if known."""

    def __init__(self, message: str, close_code: int | None = None) -> None:
        super().__init__(message)
        self.close_code = close_code


class _Listener(WSListener):
    def __init__(self, client: Client) -> None:
        super().__init__()
        self._client = client

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.BINARY:
            self._client._on_frame(frame.get_payload_as_bytes())
        elif frame.msg_type is WSMsgType.CLOSE:
            self._client.close_code = int(frame.get_close_code())
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._client._on_disconnected(transport)


class Client:
    """One user's connection from one terminal.

    ``url`` is one node's URL or a list of them (a cluster): ``connect`` takes the first
    that answers. With ``auto_reconnect`` the client reconnects after a drop (not after a
    kick, a logout or ``close()``) to the next URL in turn, logs in again with its token,
    resends every unacknowledged send with its original cmid (the server stores each once
    and acks it with the same ids) and catches up (see the module docstring).
    """

    def __init__(self, url: str | Sequence[str], *, terminal: str = "web", auto_reconnect: bool = False,
                 reconnect_delay: float = 0.2, max_reconnect_delay: float = 5.0, request_timeout: float = 30.0,
                 max_in_flight: int = 128, gap_sync_delay: float | None = 0.5, send_retries: int = 5,
                 heartbeat: float | None = 15.0, heartbeat_timeout: float = 10.0) -> None:
        self.urls = [url] if isinstance(url, str) else list(url)
        if not self.urls:
            raise ValueError("Client needs at least one URL")
        self._url_index = 0
        #: the URL of the node this client is (or was last) connected to
        self.url = self.urls[0]
        self.terminal = terminal
        self.auto_reconnect = auto_reconnect
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay
        self.gap_sync_delay = gap_sync_delay
        self.request_timeout = request_timeout
        #: times a SEND refused with 5001 UNAVAILABLE is sent again (same cmid) before the
        #: refusal reaches the application; 0: at once
        self.send_retries = send_retries
        #: seconds between PINGs on an open connection (None or 0: none), and how long one
        #: may go unanswered before the connection is dropped as dead
        self.heartbeat = heartbeat
        self.heartbeat_timeout = heartbeat_timeout
        #: SENDs sent again after a 5001 UNAVAILABLE, and connections dropped for a missed PONG
        self.send_retried = 0
        self.heartbeats_missed = 0
        #: reconnections made after drops (each: logged in again, unacked sends resent)
        self.reconnects = 0
        self.user_id = 0
        self.token = ""
        self.close_code: int | None = None
        #: MSG_PUSH bodies as they arrive (1:1 and group messages)
        self.pushes: asyncio.Queue[bodies.Message] = asyncio.Queue()
        #: the other pushes, as (op, decoded body): FRIEND_PUSH, GROUP_PUSH, READ_PUSH, CONV_PUSH, RECALL_PUSH,
        #: EDIT_PUSH, REACTION_PUSH, and after a reconnect ``(SYNC_OK, page)`` for each
        #: conversation in which ``catch_up_changes`` found changes (``page.changed``)
        self.events: asyncio.Queue[tuple[Op, Any]] = asyncio.Queue()
        #: ERROR frames that answer no request (req_id 0), e.g. a refused text message
        self.errors: asyncio.Queue[bodies.Error] = asyncio.Queue()
        #: set when the server sent KICKED (another login on this terminal)
        self.kicked = asyncio.Event()
        #: the KICKED push's reason ("replaced", "password_changed", "account_deleted", ...)
        self.kicked_reason = ""
        #: per conversation, the seq up to which this client holds every message (pushes and
        #: acks move it only when they are the next seq; a gap is left to sync_all)
        self.last_seqs: dict[str, int] = {}
        #: per conversation, the change revision up to which this client knows every change
        #: in place (edits, reactions, recalls; moved by ``sync_changes``: a push alone does
        #: not say no change came before it)
        self.revs: dict[str, int] = {}
        self._transport: WSTransport | None = None
        self._req_ids = itertools.count(1)
        # the server answers more than 256 requests in progress with RATE_LIMITED: queue here
        self._window = asyncio.Semaphore(max_in_flight)
        self._waiting: dict[int, asyncio.Future[tuple[int, bytes]]] = {}
        # cmid -> (target, flags, content, type, future): what a resend after a reconnect needs
        self._unacked: dict[str, tuple[int, int, bodies.Send, asyncio.Future[bodies.SendAck]]] = {}
        self._closing = False
        self._reconnecting: asyncio.Task[None] | None = None
        self._disconnected = asyncio.Event()
        # delivery to the application, deduplicated by (conv, seq): per conversation,
        # last_seqs is the contiguous high-water mark and _above the seqs held beyond a gap
        self._above: dict[str, set[int]] = {}
        self._gap_checks: dict[str, asyncio.TimerHandle] = {}
        self._gap_syncing: set[str] = set()
        self._hold_depth = 0  # catch-ups running: live pushes wait in _held behind them
        self._held: list[bodies.Message] = []
        # while a reconnect runs, new sends wait in _unacked: it resends them after the login
        self._paused = False
        self._background: set[asyncio.Task[Any]] = set()
        # cmid -> 5001 refusals so far, and the timers of the retries waiting
        self._refusals: dict[str, int] = {}
        self._retry_timers: dict[str, asyncio.TimerHandle] = {}
        self._heartbeat: asyncio.Task[None] | None = None
        self._last_rx = 0.0  # loop time of the last frame received

    # -- connection ---------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect to the current URL; if it cannot be reached, to each other one in turn
        (the last failure is raised when none answers)."""
        for tries in range(len(self.urls)):
            try:
                await self._open(self.urls[self._url_index])
                return
            except Exception:
                if tries == len(self.urls) - 1:
                    raise
                self._url_index = (self._url_index + 1) % len(self.urls)

    async def _open(self, url: str) -> None:
        self._disconnected.clear()
        self.close_code = None
        self.url = url
        self._transport, _ = await ws_connect(
            lambda: _Listener(self), url,
            extra_headers={"Sec-WebSocket-Protocol": f"{SUBPROTOCOL_PREFIX}{VERSION}"},
            max_frame_size=MAX_FRAME_SIZE,
        )
        if self.heartbeat and (self._heartbeat is None or self._heartbeat.done()):
            self._heartbeat = asyncio.ensure_future(self._beat())

    async def _beat(self) -> None:
        """PING every ``heartbeat`` seconds while connected; a PING unanswered within
        ``heartbeat_timeout`` drops the connection (a frozen node keeps its socket open and
        answers nothing): the reconnect then goes to the next URL."""
        assert self.heartbeat
        while not self._closing:
            await asyncio.sleep(self.heartbeat)
            transport = self._transport
            if transport is None or transport.is_disconnected:
                if self._reconnecting is None or self._reconnecting.done():
                    return  # gone for good: the next connect() starts the heartbeat again
                continue
            if self._paused:
                continue  # a reconnect is logging in
            sent = asyncio.get_running_loop().time()
            try:
                await asyncio.wait_for(self.request(Op.PING), self.heartbeat_timeout)
            except asyncio.TimeoutError:
                # silent since the PING went (a busy connection still delivers other frames)
                if transport is self._transport and not transport.is_disconnected and self._last_rx < sent:
                    self.heartbeats_missed += 1
                    log.info("no PONG from %s within %s s: dropping the connection", self.url, self.heartbeat_timeout)
                    transport.disconnect(graceful=False)
            except (ServerError, ConnectionError):
                pass  # answered (or already gone): the connection is not silent

    async def close(self) -> None:
        self._closing = True
        if self._reconnecting:
            self._reconnecting.cancel()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        for timer in self._retry_timers.values():
            timer.cancel()
        self._retry_timers.clear()
        for task in list(self._background):
            task.cancel()
        for handle in self._gap_checks.values():
            handle.cancel()
        self._gap_checks.clear()
        self._fail_unacked(Disconnected("client closed", self.close_code))
        if self._transport is not None and not self._transport.is_disconnected:
            self._transport.send_close(WSCloseCode.OK)
            self._transport.disconnect()
            await self._transport.wait_disconnected()

    async def wait_closed(self) -> int | None:
        """Wait until the connection is gone; returns the server's close code, if any."""
        await self._disconnected.wait()
        return self.close_code

    @property
    def connected(self) -> bool:
        return self._transport is not None and not self._transport.is_disconnected

    # -- requests -----------------------------------------------------------------------------

    async def request(self, op: Op, body: msgspec.Struct | None = None, *, target: int = 0, flags: int = 0) -> tuple[int, bytes]:
        """Send one request and wait for its reply: ``(reply op, body bytes)``.
        Raises ServerError for an ERROR reply, Disconnected if the connection goes first."""
        async with self._window:
            if not self.connected:
                raise Disconnected("not connected", self.close_code)
            req_id = next(self._req_ids) & 0xFFFFFFFF or next(self._req_ids)
            future: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
            self._waiting[req_id] = future
            try:
                self._transport.send(WSMsgType.BINARY, encode_frame(op, req_id, target, bodies.encode(body), flags))  # type: ignore[union-attr]
                reply_op, reply = await asyncio.wait_for(future, self.request_timeout)
            finally:
                self._waiting.pop(req_id, None)
        if reply_op == Op.ERROR:
            error = bodies.decode(reply, bodies.Error)
            code = ErrorCode(error.code) if error.code in ErrorCode._value2member_map_ else ErrorCode.INTERNAL
            raise ServerError(error.message, code)
        return reply_op, reply

    def send_raw(self, data: bytes | str, msg_type: WSMsgType = WSMsgType.BINARY) -> None:
        """Send bytes as they are (tests of bad input use this)."""
        self._transport.send(msg_type, data)  # type: ignore[union-attr]

    async def exchange_raw(self, data: bytes, req_id: int) -> tuple[int, bytes]:
        """Send a hand-made frame and wait for the reply carrying ``req_id``: ``(op, body)``,
        ERROR replies included (nothing is raised for them)."""
        future: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self._waiting[req_id] = future
        try:
            self.send_raw(data)
            return await asyncio.wait_for(future, self.request_timeout)
        finally:
            self._waiting.pop(req_id, None)

    async def ping(self) -> None:
        await self.request(Op.PING)

    async def register(self, username: str, password: str, nickname: str = "") -> int:
        _, body = await self.request(Op.REGISTER, bodies.Register(username=username, password=password, nickname=nickname))
        return bodies.decode(body, bodies.RegisterOk).user_id

    async def login(self, username: str, password: str, terminal: str | None = None) -> bodies.LoginOk:
        self.terminal = terminal or self.terminal
        _, body = await self.request(Op.LOGIN, bodies.Login(username=username, password=password, terminal=self.terminal))
        return self._logged_in(bodies.decode(body, bodies.LoginOk))

    async def token_login(self, token: str | None = None, terminal: str | None = None) -> bodies.LoginOk:
        self.terminal = terminal or self.terminal
        _, body = await self.request(Op.TOKEN_LOGIN, bodies.TokenLogin(token=token or self.token, terminal=self.terminal))
        return self._logged_in(bodies.decode(body, bodies.LoginOk))

    def _logged_in(self, ok: bodies.LoginOk) -> bodies.LoginOk:
        self.user_id, self.token = ok.user_id, ok.token
        return ok

    async def logout(self) -> None:
        self._closing = True
        await self.request(Op.LOGOUT)

    async def user_find(self, username: str) -> bodies.UserProfile:
        """The profile of the account named exactly ``username`` (ServerError 3000 if none)."""
        return await self._call(Op.USER_FIND, bodies.UserFind(username=username))

    async def users(self, ids: Iterable[int]) -> list[bodies.UserProfile]:
        """The profiles of up to 100 ids; unknown ids are left out."""
        return (await self._call(Op.USERS, bodies.UserIds(users=list(ids)))).users

    async def send(self, to: int, content: str | dict[str, Any], type: int = 1,
                   cmid: str | None = None, *, reply_to: int = 0) -> bodies.SendAck:
        """Send a message and wait for its ack (the message is durable when this returns).
        ``content`` is a string for text (type 1), else a map of its type's schema (see
        ``edgeim.core_ext.content``; ``send_image`` and its siblings build them). Without
        ``auto_reconnect`` a drop raises Disconnected; with it, the send is retried on the
        next connection with the same cmid. ``reply_to``: the id of an earlier message of
        the conversation this one quotes (ServerError 3021 if there is none you may read)."""
        return await self._send(to, 0, bodies.Send(cmid=cmid or uuid.uuid4().hex, content=content, type=type,
                                                   reply_to=reply_to))

    async def send_group(self, group_id: int, content: str | dict[str, Any], type: int = 1, cmid: str | None = None,
                         *, mentions: Iterable[int] = (), mention_all: bool = False,
                         reply_to: int = 0) -> bodies.SendAck:
        """``send`` to a group's conversation (header target = the group, flag GROUP),
        mentioning ``mentions`` (members) or, for the owner and admins, everyone."""
        body = bodies.Send(cmid=cmid or uuid.uuid4().hex, content=content, type=type, mentions=list(mentions),
                           mention_all=mention_all, reply_to=reply_to)
        return await self._send(group_id, int(Flag.GROUP), body)

    async def _send(self, target: int, flags: int, body: bodies.Send) -> bodies.SendAck:
        cmid = body.cmid
        future: asyncio.Future[bodies.SendAck] = asyncio.get_running_loop().create_future()
        self._unacked[cmid] = (target, flags, body, future)
        try:
            self._transmit(cmid, retry=False)
            return await future
        finally:
            self._unacked.pop(cmid, None)
            self._refusals.pop(cmid, None)
            timer = self._retry_timers.pop(cmid, None)
            if timer is not None:
                timer.cancel()

    def _transmit(self, cmid: str, retry: bool) -> None:
        if self._paused:
            return  # a reconnect is under way: it sends this one after the login, in order
        # a resend keeps the original's flags (GROUP above all: the target is a group id)
        target, flags, body, future = self._unacked[cmid]
        if retry:
            flags |= int(Flag.RETRY)
        task = asyncio.ensure_future(self.request(Op.SEND, body, target=target, flags=flags))

        def done(t: asyncio.Future[tuple[int, bytes]]) -> None:
            if future.done():
                return
            exc = t.exception()
            if exc is None:
                ack = bodies.decode(t.result()[1], bodies.SendAck)
                self._saw(ack.conv, ack.seq)
                future.set_result(ack)
            elif (isinstance(exc, ServerError) and exc.code == ErrorCode.UNAVAILABLE and not self._closing
                    and self._refusals.get(cmid, 0) < self.send_retries):
                # a backend of the node is down for now: the same cmid again, a little later
                refusals = self._refusals[cmid] = self._refusals.get(cmid, 0) + 1
                self._retry_timers[cmid] = asyncio.get_running_loop().call_later(
                    self._backoff(refusals - 1), self._retry_refused, cmid)
            elif not (isinstance(exc, (Disconnected, asyncio.TimeoutError)) and self.auto_reconnect and not self._closing):
                future.set_exception(exc)
            elif isinstance(exc, asyncio.TimeoutError) and self._transport is not None:
                # no answer on a connection that looks open: treat it as dead; the
                # reconnect resends this send with the others
                self._transport.disconnect(graceful=False)
            # else: kept in _unacked, resent after the reconnect

        task.add_done_callback(done)

    def _retry_refused(self, cmid: str) -> None:
        self._retry_timers.pop(cmid, None)
        if cmid in self._unacked and not self._closing:
            self.send_retried += 1
            self._transmit(cmid, retry=True)  # (while a reconnect runs, it resends this one)

    async def sync(self, conv: str, after_seq: int = 0, limit: int = 100,
                   changes_after: int | None = None) -> bodies.Page:
        """One SYNC page of ``conv`` after ``after_seq``; with ``changes_after`` (a change
        revision: ``page.rev`` of the previous such SYNC, 0 the first time) also the
        messages up to ``after_seq`` changed in place since, as they are now: edited, their
        reactions changed, recalled (``changed``; ``sync_changes`` pages through them and
        keeps the revision)."""
        _, body = await self.request(Op.SYNC, bodies.Sync(conv=conv, after_seq=after_seq, limit=limit,
                                                          changes_after=changes_after))
        page = bodies.decode(body, bodies.Page)
        if page.msgs and after_seq <= self.last_seqs.get(conv, 0):
            # a page is every message from after_seq + 1 on: no gap up to its last seq
            self._covered(conv, page.msgs[-1].seq)
        return page

    async def sync_all(self, limit: int = 100) -> list[bodies.Message]:
        """Every message above ``last_seqs`` in every conversation, in seq order per
        conversation, returned (pushed ones included; ``catch_up`` puts only the new ones
        into ``pushes``)."""
        caught_up: list[bodies.Message] = []
        for conv in await self.conversations():
            after = self.last_seqs.get(conv.conv, 0)
            while conv.last_seq > after:
                page = await self.sync(conv.conv, after, limit)
                caught_up.extend(page.msgs)
                if not page.msgs or not page.has_more:
                    break
                after = page.msgs[-1].seq
        return caught_up

    async def catch_up(self, limit: int = 100) -> int:
        """Put into ``pushes`` every message this client has not had yet, in every
        conversation (above ``last_seqs``, minus what came as a push already), in seq order
        per conversation; live pushes that arrive meanwhile wait behind it. The client's own
        sends still waiting for their ack are left out. Returns how many were put.
        The reconnect calls it; an application may too (when it comes to the foreground)."""
        self._hold_depth += 1
        try:
            lasts = {c.conv: c.last_seq for c in await self.conversations()}
            for conv, above in self._above.items():  # a gap the list may not show yet
                lasts[conv] = max(lasts.get(conv, 0), max(above))
            put = 0
            for conv, last in lasts.items():
                if last > self.last_seqs.get(conv, 0):
                    put += await self._catch_up_conv(conv, last, limit)
            return put
        finally:
            self._release_held()

    async def _catch_up_conv(self, conv: str, last: int, limit: int) -> int:
        """SYNC ``conv`` from its mark to its end; put what is new into ``pushes``.
        ``last``: a seq the conversation had reached before this started."""
        put = 0
        after = self.last_seqs.get(conv, 0)
        while True:
            _, body = await self.request(Op.SYNC, bodies.Sync(conv=conv, after_seq=after, limit=limit))
            page = bodies.decode(body, bodies.Page)
            if not page.msgs:
                if after <= self.last_seqs.get(conv, 0):
                    self._covered(conv, last)  # nothing up to ``last`` is this user's to read
                return put
            for message in page.msgs:
                # the page is every message from after + 1 on that this user may read: the
                # seqs skipped are not theirs (a group before their join)
                self._covered(conv, message.seq - 1)
                if self._mark(conv, message.seq) and not (message.sender == self.user_id
                                                          and message.cmid in self._unacked):
                    self.pushes.put_nowait(message)
                    put += 1
            if not page.has_more:
                return put
            after = page.msgs[-1].seq

    async def send_typed(self, target: int, item: msgspec.Struct, *, group: bool = False, cmid: str | None = None,
                         mentions: Iterable[int] = (), mention_all: bool = False) -> bodies.SendAck:
        """Send a typed content: ``item`` is one of ``content.Image``, ``File``, ``Voice``,
        ``Video``, ``Location`` or ``Contact``, e.g.
        ``await client.send_typed(bob, content.Image(key=k, width=640, height=480, size=n, mime="image/png"))``."""
        type_ = _CONTENT_TYPES[type(item)]
        value = {k: v for k, v in msgspec.structs.asdict(item).items() if v is not None}
        if group:
            return await self.send_group(target, value, type_, cmid, mentions=mentions, mention_all=mention_all)
        return await self.send(target, value, type_, cmid)

    async def edit(self, conv: str, seq: int, text: str) -> bodies.Message:
        """Replace the text of your own text message ``seq`` of ``conv`` (within the
        server's edit window); returns the edited message (``edited_at`` set). The
        conversation's other devices get an EDIT_PUSH on ``events``."""
        return await self._call(Op.EDIT, bodies.Edit(conv=conv, seq=seq, content=text))

    async def changes(self, conv: str, up_to_seq: int = bodies.MAX_SEQ, after_rev: int = 0,
                      limit: int = 100) -> tuple[list[bodies.Message], list[bodies.MessageReactions], int]:
        """What changed in place in ``conv`` after change revision ``after_rev`` (edits,
        reactions, recalls) among its messages up to ``up_to_seq`` (those a device already
        had): the messages as they are now, each once, their reactions, and the revision to
        ask from next time (SYNC ``changes_after``, every page). A message the user deleted
        for themselves comes as its ``hidden`` stub."""
        changed: list[bodies.Message] = []
        reactions: list[bodies.MessageReactions] = []
        rev = after_rev
        while True:
            page = await self.sync(conv, up_to_seq, limit, changes_after=rev)
            changed.extend(page.changed)
            reactions.extend(r for r in page.reactions if r.seq <= up_to_seq)
            moved = page.rev > rev
            rev = max(rev, page.rev)
            if not page.changes_more or not moved:
                return changed, reactions, rev

    async def sync_changes(self, conv: str, limit: int = 100) -> tuple[list[bodies.Message],
                                                                      list[bodies.MessageReactions]]:
        """``changes`` of every message of ``conv`` since ``revs[conv]`` (0: since sent);
        ``revs[conv]`` moves past them."""
        changed, reactions, rev = await self.changes(conv, bodies.MAX_SEQ, self.revs.get(conv, 0), limit)
        self.revs[conv] = max(self.revs.get(conv, 0), rev)
        return changed, reactions

    async def catch_up_changes(self, limit: int = 100) -> int:
        """Put on ``events``, as ``(SYNC_OK, page)``, what changed in place while this
        client was away in the conversations it holds messages of (``last_seqs``; the
        others it has nothing to update in): ``sync_changes`` of each, one page per
        conversation with changes (``page.changed`` the messages as they are now, to put
        in place of those held; ``page.reactions`` theirs; ``page.rev`` the revision now).
        A change pushed before may come again: replacing is idempotent. Returns how many
        messages were put. The reconnect calls it."""
        put = 0
        for conv in [c for c, seq in self.last_seqs.items() if seq > 0]:
            changed, reactions = await self.sync_changes(conv, limit)
            if changed:
                self.events.put_nowait((Op.SYNC_OK, bodies.Page(conv=conv, msgs=[], has_more=False, reactions=reactions,
                                                                 changed=changed, rev=self.revs[conv])))
                put += len(changed)
        return put

    async def react(self, conv: str, seq: int, emoji: str) -> bodies.ReactionEvent:
        """Add the reaction ``emoji`` to message ``seq`` of ``conv`` (adding it again does
        nothing); returns the message's reactions now. The conversation's other devices
        get a REACTION_PUSH on ``events``."""
        return await self._call(Op.REACT, bodies.React(conv=conv, seq=seq, emoji=emoji))

    async def unreact(self, conv: str, seq: int, emoji: str) -> bodies.ReactionEvent:
        """Take back the caller's reaction ``emoji`` from message ``seq`` of ``conv``."""
        return await self._call(Op.REACT, bodies.React(conv=conv, seq=seq, emoji=emoji, remove=True))

    async def forward(self, to: int, conv: str, seqs: Iterable[int], *, group: bool = False,
                      hide_sender: bool = False, cmid: str | None = None) -> list[bodies.SendAck]:
        """Forward messages ``seqs`` of ``conv`` to user ``to`` (or, with ``group``, group
        ``to``) as new messages of the caller marked ``forwarded_from``; their acks, in
        order, once all are durable. The same ``cmid`` again stores nothing twice."""
        body = bodies.Forward(conv=conv, seqs=list(seqs), cmid=cmid or uuid.uuid4().hex, hide_sender=hide_sender)
        _, reply = await self.request(Op.FORWARD, body, target=to, flags=int(Flag.GROUP) if group else 0)
        return bodies.decode(reply, bodies.ForwardOk).acks

    async def recall(self, conv: str, seq: int) -> bodies.Message:
        """Recall message ``seq`` of ``conv``; returns its tombstone (content gone,
        ``recalled_by`` and ``recalled_at`` set). The conversation's other devices get a
        RECALL_PUSH on ``events``."""
        return await self._call(Op.RECALL, bodies.Recall(conv=conv, seq=seq))

    async def search(self, query: str, conv: str = "", before: int = 0, limit: int = 20) -> bodies.SearchPage:
        """One page of the caller's messages whose text contains ``query``, newest first;
        the next page is ``before=page.msgs[-1].id``."""
        return await self._call(Op.SEARCH, bodies.Search(query=query, conv=conv, before=before, limit=limit))

    async def history(self, conv: str, before_seq: int = 0, limit: int = 50) -> bodies.Page:
        _, body = await self.request(Op.HISTORY, bodies.History(conv=conv, before_seq=before_seq, limit=limit))
        return bodies.decode(body, bodies.Page)

    async def conversations(self) -> list[bodies.ConversationInfo]:
        """Every conversation, most recent first (all pages)."""
        convs: list[bodies.ConversationInfo] = []
        cursor = ""
        while True:
            _, body = await self.request(Op.CONVERSATIONS, bodies.Conversations(cursor=cursor, limit=bodies.MAX_LIST))
            page = bodies.decode(body, bodies.ConversationList)
            convs.extend(page.convs)
            if not page.has_more or not page.convs:
                return convs
            cursor = page.next_cursor

    async def conversations_page(self, cursor: str = "", limit: int = 100) -> bodies.ConversationList:
        """One page of the list: from the top (``cursor=""``) or after an earlier page's
        ``next_cursor``."""
        return await self._call(Op.CONVERSATIONS, bodies.Conversations(cursor=cursor, limit=limit))

    async def conv_set(self, conv: str, *, pinned: bool | None = None, muted: bool | None = None,
                       hidden: bool | None = None) -> bodies.ConvState:
        """Pin, mute or hide ``conv`` in this user's list; None leaves a flag as it is."""
        return await self._call(Op.CONV_SET, bodies.ConvSet(conv=conv, pinned=pinned, muted=muted, hidden=hidden))

    async def read(self, conv: str, seq: int) -> bodies.ReadMark:
        """Mark ``conv`` read up to ``seq``."""
        return await self._call(Op.READ, bodies.Read(conv=conv, seq=seq))

    async def readers(self, conv: str, seq: int, after: int = 0, limit: int = 100) -> bodies.ReadersPage:
        return await self._call(Op.READERS, bodies.Readers(conv=conv, seq=seq, after=after, limit=limit))

    # -- per-user views and message pins -----------------------------------------------------

    async def delete_for_me(self, conv: str, seqs: Iterable[int]) -> bodies.ViewEvent:
        """Hide messages ``seqs`` of ``conv`` from this user's own view (every device of
        theirs; the other members keep them). From now on this user's SYNC and HISTORY
        pages carry them as stubs (``Message.hidden``, no content). The user's other
        devices get a VIEW_PUSH on ``events``."""
        return await self._call(Op.DELETE_FOR_ME, bodies.DeleteForMe(conv=conv, seqs=list(seqs)))

    async def clear_history(self, conv: str, seq: int = 0) -> bodies.ViewEvent:
        """Clear this user's own view of ``conv`` up to ``seq`` (0: up to its newest
        message): reads start after it and its unread count goes to 0. The user's other
        devices get a VIEW_PUSH on ``events``."""
        return await self._call(Op.CLEAR_HISTORY, bodies.ClearHistory(conv=conv, seq=seq))

    async def pin_message(self, conv: str, seq: int) -> bodies.PinInfo:
        """Pin message ``seq`` of ``conv`` (a group's owner and admins; either user of a
        private conversation). The members' devices get a PIN_PUSH on ``events``."""
        return await self._call(Op.PIN_MESSAGE, bodies.MessageRef(conv=conv, seq=seq))

    async def unpin_message(self, conv: str, seq: int) -> None:
        await self._call(Op.UNPIN_MESSAGE, bodies.MessageRef(conv=conv, seq=seq))

    async def pins(self, conv: str) -> bodies.PinList:
        """The message pins of ``conv`` (newest pin first) with their messages."""
        return await self._call(Op.PINS, bodies.ConvRef(conv=conv))

    # -- friends --------------------------------------------------------------------------------

    async def friend_request(self, user: int, message: str = "") -> None:
        await self._call(Op.FRIEND_REQUEST, bodies.FriendRequest(user=user, message=message))

    async def friend_accept(self, user: int) -> None:
        await self._call(Op.FRIEND_ACCEPT, bodies.UserRef(user=user))

    async def friend_reject(self, user: int) -> None:
        await self._call(Op.FRIEND_REJECT, bodies.UserRef(user=user))

    async def friend_delete(self, user: int) -> None:
        await self._call(Op.FRIEND_DELETE, bodies.UserRef(user=user))

    async def friends_page(self, after: int = 0, limit: int = 100) -> bodies.FriendList:
        """Friends with ids above ``after``, ascending."""
        return await self._call(Op.FRIENDS, bodies.ListPage(after=after, limit=limit))

    async def friends(self) -> list[bodies.FriendInfo]:
        """Every friend (all pages), by id."""
        return await self._all(self.friends_page, "friends", lambda f: f.user)

    async def friend_requests_page(self, after: int = 0, limit: int = 100) -> bodies.FriendRequestList:
        """Pending requests to this user from ids above ``after``, ascending."""
        return await self._call(Op.FRIEND_REQUESTS, bodies.ListPage(after=after, limit=limit))

    async def friend_requests(self) -> list[bodies.FriendRequestInfo]:
        """Every pending request to this user (all pages)."""
        return await self._all(self.friend_requests_page, "requests", lambda r: r.user)

    async def blocks_page(self, after: int = 0, limit: int = 100) -> bodies.BlockList:
        """Users this user blocked, ids above ``after``, ascending."""
        return await self._call(Op.BLOCKS, bodies.ListPage(after=after, limit=limit))

    async def blocks(self) -> list[int]:
        """Every user this user blocked (all pages), by id."""
        return await self._all(self.blocks_page, "users", lambda u: u)

    async def friend_remark(self, user: int, remark: str) -> None:
        await self._call(Op.FRIEND_REMARK, bodies.FriendRemark(user=user, remark=remark))

    async def block(self, user: int) -> None:
        await self._call(Op.BLOCK, bodies.UserRef(user=user))

    async def unblock(self, user: int) -> None:
        await self._call(Op.UNBLOCK, bodies.UserRef(user=user))

    # -- groups ---------------------------------------------------------------------------------

    async def group_create(self, name: str, members: Iterable[int] = (), *, avatar: str = "", notice: str = "",
                           join_mode: str = "approval") -> bodies.GroupCreated:
        """The new group; ``added`` lists the members added, ``invited`` those whose
        group_add setting made the add an invitation."""
        return await self._call(Op.GROUP_CREATE, bodies.GroupCreate(
            name=name, members=list(members), avatar=avatar, notice=notice, join_mode=join_mode))

    async def group_dissolve(self, group: int) -> None:
        await self._call(Op.GROUP_DISSOLVE, bodies.GroupRef(group=group))

    async def group_update(self, group: int, *, name: str | None = None, avatar: str | None = None,
                           notice: str | None = None, join_mode: str | None = None) -> bodies.GroupInfo:
        """Change what is given (None leaves it as it is); returns the group as it is now."""
        return await self._call(Op.GROUP_UPDATE, bodies.GroupUpdate(
            group=group, name=name, avatar=avatar, notice=notice, join_mode=join_mode))

    async def group_info(self, group: int) -> bodies.GroupInfo:
        return await self._call(Op.GROUP_INFO, bodies.GroupRef(group=group))

    async def groups_page(self, after: int = 0, limit: int = 100) -> bodies.GroupList:
        return await self._call(Op.GROUPS, bodies.ListPage(after=after, limit=limit))

    async def groups(self) -> list[bodies.GroupInfo]:
        """Every group this user is a member of (all pages), by id."""
        return await self._all(self.groups_page, "groups", lambda g: g.group)

    async def group_members_page(self, group: int, after: int = 0, limit: int = 100) -> bodies.MemberList:
        """Members with ids above ``after``, ascending."""
        return await self._call(Op.GROUP_MEMBERS, bodies.GroupMembers(group=group, after=after, limit=limit))

    async def group_members(self, group: int) -> list[bodies.MemberInfo]:
        """Every member (all pages), by id."""
        return await self._all(lambda after, limit: self.group_members_page(group, after, limit), "members",
                               lambda m: m.user)

    async def group_invite(self, group: int, users: Iterable[int]) -> bodies.GroupUsersDone:
        """``users`` lists those added, ``invited`` those sent an invitation instead."""
        return await self._call(Op.GROUP_INVITE, bodies.GroupUsers(group=group, users=list(users)))

    async def group_invitations_page(self, after: int = 0, limit: int = 100) -> bodies.InvitationList:
        """This user's pending group invitations, groups with ids above ``after``, ascending."""
        return await self._call(Op.GROUP_INVITATIONS, bodies.ListPage(after=after, limit=limit))

    async def group_invitations(self) -> list[bodies.InvitationInfo]:
        """Every pending group invitation of this user (all pages), by group id."""
        return await self._all(self.group_invitations_page, "invitations", lambda i: i.group)

    async def group_invitation_accept(self, group: int) -> bodies.GroupInfo:
        """Join ``group`` on its pending invitation; returns the group as it is now."""
        return await self._call(Op.GROUP_INVITATION_ACCEPT, bodies.GroupRef(group=group))

    async def group_invitation_decline(self, group: int) -> None:
        await self._call(Op.GROUP_INVITATION_DECLINE, bodies.GroupRef(group=group))

    async def group_join(self, group: int, message: str = "") -> bodies.JoinResult:
        """Join an open group (status "joined") or ask to join one ("pending")."""
        return await self._call(Op.GROUP_JOIN, bodies.GroupJoin(group=group, message=message))

    async def group_join_requests_page(self, group: int, after: int = 0, limit: int = 100) -> bodies.JoinRequestList:
        """Pending requests to join from users with ids above ``after``, ascending."""
        return await self._call(Op.GROUP_JOIN_REQUESTS, bodies.GroupJoinRequests(group=group, after=after, limit=limit))

    async def group_join_requests(self, group: int) -> bodies.JoinRequestList:
        """Every pending request to join (all pages), by user id."""
        requests = await self._all(lambda after, limit: self.group_join_requests_page(group, after, limit), "requests",
                                   lambda r: r.user)
        return bodies.JoinRequestList(group=group, requests=requests, has_more=False)

    async def group_approve(self, group: int, user: int, accept: bool = True) -> None:
        await self._call(Op.GROUP_APPROVE, bodies.GroupApprove(group=group, user=user, accept=accept))

    async def group_quit(self, group: int) -> None:
        await self._call(Op.GROUP_QUIT, bodies.GroupRef(group=group))

    async def group_kick(self, group: int, user: int) -> None:
        await self._call(Op.GROUP_KICK, bodies.GroupUser(group=group, user=user))

    async def group_set_role(self, group: int, user: int, role: str) -> None:
        """``role`` is "admin" or "member"."""
        await self._call(Op.GROUP_SET_ROLE, bodies.GroupSetRole(group=group, user=user, role=role))

    async def group_transfer(self, group: int, user: int) -> None:
        await self._call(Op.GROUP_TRANSFER, bodies.GroupUser(group=group, user=user))

    async def group_mute(self, group: int, user: int, until: int) -> None:
        """Mute ``user`` until ``until`` (unix ms); 0 lifts the mute."""
        await self._call(Op.GROUP_MUTE, bodies.GroupMute(group=group, user=user, until=until))

    async def group_mute_all(self, group: int, muted: bool = True) -> None:
        await self._call(Op.GROUP_MUTE_ALL, bodies.GroupMuteAll(group=group, muted=muted))

    # -- calls, typing, presence, settings -----------------------------------------------------

    async def call_invite(self, to: int, kind: str, sdp: str) -> bodies.CallStarted:
        """Ring every online device of ``to`` with this device's SDP offer; ``kind`` is
        "audio" or "video". Events of the call come as CALL_PUSH on ``events``."""
        return await self._call(Op.CALL_INVITE, bodies.CallInvite(to=to, kind=kind, sdp=sdp))

    async def call_accept(self, call: int, sdp: str) -> None:
        """Answer a ringing call on this device with its SDP answer."""
        await self._call(Op.CALL_ACCEPT, bodies.CallAnswer(call=call, sdp=sdp))

    async def call_reject(self, call: int) -> None:
        await self._call(Op.CALL_REJECT, bodies.CallRef(call=call))

    async def call_cancel(self, call: int) -> None:
        """Stop ringing a call this device started."""
        await self._call(Op.CALL_CANCEL, bodies.CallRef(call=call))

    async def call_hangup(self, call: int) -> None:
        await self._call(Op.CALL_HANGUP, bodies.CallRef(call=call))

    async def call_ice(self, call: int, candidate: str) -> None:
        """Relay one ICE candidate to the other device of an answered call."""
        await self._call(Op.CALL_ICE, bodies.CallIce(call=call, candidate=candidate))

    async def typing(self, conv: str, typing: bool = True) -> None:
        """Tell the other members of ``conv`` online that this user is (or stopped) typing."""
        await self._call(Op.TYPING, bodies.Typing(conv=conv, typing=typing))

    async def presence(self, users: Iterable[int]) -> list[bodies.UserPresence]:
        """Whether these users are online, and on which terminals."""
        return (await self._call(Op.PRESENCE, bodies.PresenceUsers(users=list(users)))).users

    async def presence_subscribe(self, users: Iterable[int]) -> list[bodies.UserPresence]:
        """Watch these users' presence from this session (PRESENCE_PUSH on ``events`` when
        it changes); returns their presence now."""
        return (await self._call(Op.PRESENCE_SUBSCRIBE, bodies.PresenceUsers(users=list(users)))).users

    async def presence_unsubscribe(self, users: Iterable[int]) -> None:
        await self._call(Op.PRESENCE_UNSUBSCRIBE, bodies.PresenceUsers(users=list(users)))

    async def settings(self, *, invisible: bool | None = None, group_add: str | None = None) -> bodies.UserSettings:
        """This user's settings, after changing what is given (None leaves it as it is).
        ``group_add``: who may add this user to a group, "anyone", "friends" or "nobody"
        (the others' adds become invitations)."""
        return await self._call(Op.SETTINGS, bodies.Settings(invisible=invisible, group_add=group_add))  # type: ignore[arg-type]

    # -- accounts and profiles ------------------------------------------------------------------

    async def profile_set(self, *, nickname: str | None = None, avatar: str | None = None,
                          bio: str | None = None) -> bodies.UserProfile:
        """PROFILE_SET: change this user's profile (None leaves a field as it is); returns
        the new profile. ``avatar``: "" (none), a key from ``upload_avatar`` or an https URL.
        Friends and group members get PROFILE_PUSH on ``events``."""
        return await self._call(Op.PROFILE_SET, bodies.ProfileSet(nickname=nickname, avatar=avatar, bio=bio))

    async def upload_avatar(self, data: bytes | str | os.PathLike[str], mime: str,
                            name: str | None = None) -> bodies.UserProfile:
        """Upload an image to this user's avatar space (conv ``a<user id>``) and make it the avatar."""
        key = await self.upload(f"a{self.user_id}", data, mime, name or "avatar")
        return await self.profile_set(avatar=key)

    async def password_change(self, old_password: str, new_password: str) -> bodies.PasswordChanged:
        """PASSWORD_CHANGE: the account's other sessions are closed and every earlier token
        refused; this session stays, and ``token`` becomes the fresh one it returns."""
        changed = await self._call(Op.PASSWORD_CHANGE, bodies.PasswordChange(old_password=old_password,
                                                                             new_password=new_password))
        self.token = changed.token
        return changed

    async def account_delete(self, password: str) -> None:
        """ACCOUNT_DELETE: delete this account for good; the server closes the connection
        after the reply (this client does not reconnect)."""
        self._closing = True
        try:
            await self._call(Op.ACCOUNT_DELETE, bodies.AccountDelete(password=password))
        except BaseException:
            self._closing = False
            raise
        self.token = ""

    # -- files ----------------------------------------------------------------------------------

    async def file_upload_grant(self, conv: str, name: str, size: int, mime: str) -> bodies.FileUploadOk:
        """FILE_UPLOAD: a URL to PUT one file of ``size`` bytes and type ``mime`` at, for
        ``conv``; the PUT must carry exactly the grant's ``headers`` before ``expires_at``."""
        return await self._call(Op.FILE_UPLOAD, bodies.FileUpload(name=name, size=size, mime=mime, conv=conv))

    async def file_download_grant(self, key: str) -> bodies.FileDownloadOk:
        """FILE_DOWNLOAD: a URL to GET the file ``key`` at, with its name, size and type."""
        return await self._call(Op.FILE_DOWNLOAD, bodies.FileDownload(key=key))

    async def upload(self, conv: str, data: bytes | str | os.PathLike[str], mime: str, name: str | None = None) -> str:
        """Upload ``data`` (bytes, or the path of a file) to ``conv``: the grant, then the
        HTTP PUT. Returns the file's key, for a message that shares it. Raises ServerError
        when the grant is refused, FileTransferError when the PUT is."""
        import aiohttp  # only the file methods need an HTTP client
        import yarl

        if isinstance(data, (bytes, bytearray, memoryview)):
            size, name, source = len(data), name or "file", None
        else:
            size, name, source = os.path.getsize(data), name or os.path.basename(data), data
        grant = await self.file_upload_grant(conv, name, size, mime)
        headers = {h.name: h.value for h in grant.headers}
        with open(source, "rb") if source is not None else io.BytesIO(bytes(data)) as body:  # type: ignore[arg-type]
            async with aiohttp.ClientSession() as http:
                async with http.put(yarl.URL(grant.url, encoded=True), data=body, headers=headers) as response:
                    if response.status != 200:
                        raise FileTransferError(response.status, (await response.text()).strip())
        return grant.key

    async def download(self, key: str) -> bytes:
        """The bytes of the file ``key``: the grant, then the HTTP GET. Raises ServerError
        when the grant is refused, FileTransferError when the GET is."""
        import aiohttp
        import yarl

        grant = await self.file_download_grant(key)
        async with aiohttp.ClientSession() as http:
            async with http.get(yarl.URL(grant.url, encoded=True)) as response:
                if response.status != 200:
                    raise FileTransferError(response.status, (await response.text()).strip())
                return await response.read()

    # -- request helpers ------------------------------------------------------------------------

    async def _call(self, op: Op, body: msgspec.Struct) -> Any:
        """``request`` and decode the reply as ``bodies.OPS`` declares it; None for Empty."""
        reply_kind = bodies.OPS[op][1]
        _, reply = await self.request(op, body)
        return None if reply_kind is bodies.Empty else bodies.decode(reply, reply_kind)

    @staticmethod
    async def _all(page: Any, field: str, key: Any) -> list[Any]:
        """Every item of an id-keyed list: pages of MAX_LIST until ``has_more`` is off."""
        items: list[Any] = []
        after = 0
        while True:
            got = await page(after, bodies.MAX_LIST)
            chunk = getattr(got, field)
            items.extend(chunk)
            if not got.has_more or not chunk:
                return items
            after = key(chunk[-1])

    # -- incoming -----------------------------------------------------------------------------

    def _saw(self, conv: str, seq: int) -> None:
        """This client's own send was acked: the application has it (never a push)."""
        self._mark(conv, seq)

    def _mark(self, conv: str, seq: int) -> bool:
        """Note that the application has (conv, seq); False if it had it already."""
        high = self.last_seqs.get(conv, 0)
        if seq <= high:
            return False
        if seq == high + 1:
            self._advance(conv, seq)
            return True
        above = self._above.setdefault(conv, set())
        if seq in above:
            return False
        above.add(seq)
        self._gap(conv)
        return True

    def _covered(self, conv: str, seq: int) -> None:
        """The application has every message of ``conv`` up to ``seq`` (a SYNC page)."""
        if seq > self.last_seqs.get(conv, 0):
            self._advance(conv, seq)

    def _advance(self, conv: str, high: int) -> None:
        """Move the mark to ``high``, then over the seqs held beyond it that now join it."""
        above = self._above.get(conv)
        if above:
            while high + 1 in above:
                high += 1
            above = {seq for seq in above if seq > high}
            if above:
                self._above[conv] = above
            else:
                del self._above[conv]
        self.last_seqs[conv] = high

    def _deliver(self, message: bodies.Message) -> None:
        """A live push: to ``pushes`` unless the application has it (or, while a catch-up
        runs, behind it)."""
        if self._hold_depth:
            self._held.append(message)
        elif self._mark(message.conv, message.seq):
            self.pushes.put_nowait(message)

    def _gap(self, conv: str) -> None:
        """A seq came beyond a gap: SYNC the conversation if the gap is still open after
        ``gap_sync_delay`` (a push lost between nodes; or one merely late: then nothing)."""
        if self.gap_sync_delay is None or conv in self._gap_checks:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._gap_checks[conv] = loop.call_later(self.gap_sync_delay, self._gap_due, conv)

    def _gap_due(self, conv: str) -> None:
        self._gap_checks.pop(conv, None)
        # when not connected, or a catch-up runs, that catch-up covers the gap
        if (conv in self._above and conv not in self._gap_syncing and self.connected and not self._paused
                and not self._closing):
            self._spawn(self._fill_gap(conv))

    async def _fill_gap(self, conv: str) -> None:
        self._gap_syncing.add(conv)
        self._hold_depth += 1
        try:
            await self._catch_up_conv(conv, 0, 100)
        except (ServerError, ConnectionError, asyncio.TimeoutError) as exc:
            log.debug("gap sync of %s failed: %s", conv, exc)
        finally:
            self._gap_syncing.discard(conv)
            self._release_held()

    def _release_held(self) -> None:
        self._hold_depth -= 1
        if not self._hold_depth:
            held, self._held = self._held, []
            for message in held:
                self._deliver(message)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _on_frame(self, data: bytes) -> None:
        if self.heartbeat:
            self._last_rx = asyncio.get_running_loop().time()
        try:
            op, _flags, req_id, _target, body = decode_frame(data)
        except ImError:
            log.warning("undecodable frame from server", exc_info=True)
            return
        if req_id:
            future = self._waiting.get(req_id)
            if future is not None and not future.done():
                future.set_result((op, bytes(body)))
        elif op == Op.MSG_PUSH:
            self._deliver(bodies.decode(body, bodies.Message))
        elif op == Op.KICKED:
            self._closing = True  # a kicked client must not log itself back in
            self.kicked_reason = bodies.decode(body, bodies.Kicked).reason
            self.kicked.set()
        elif op == Op.ERROR:
            self.errors.put_nowait(bodies.decode(body, bodies.Error))
        elif op in _EVENTS:
            self.events.put_nowait((Op(op), bodies.decode(body, bodies.PUSHES[op])))

    def _on_disconnected(self, transport: WSTransport) -> None:
        if transport is not self._transport:
            return
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(Disconnected("connection closed", self.close_code))
        self._disconnected.set()
        if self.auto_reconnect and not self._closing and self.token:
            self._paused = True
            # a reconnect under way (its login or catch-up failed with this drop) goes on by itself
            if self._reconnecting is None or self._reconnecting.done():
                self._reconnecting = asyncio.ensure_future(self._reconnect())
        else:
            self._fail_unacked(Disconnected("connection closed", self.close_code))

    def _backoff(self, attempt: int) -> float:
        """The wait before reconnect attempt ``attempt`` (0, 1, ...): doubling, capped,
        jittered so that the clients of one dead node spread out."""
        return min(self.max_reconnect_delay, self.reconnect_delay * 2 ** attempt) * random.uniform(0.5, 1.0)

    async def _reconnect(self) -> None:
        """Until connected and caught up: the next URL, token login, resend, catch-up;
        any step that fails starts over with the next URL after a longer wait."""
        attempt = 0
        while not self._closing:
            await asyncio.sleep(self._backoff(attempt))
            attempt += 1
            self._url_index = (self._url_index + 1) % len(self.urls)
            try:
                await self._open(self.urls[self._url_index])
                await self.token_login()
            except Exception as exc:  # refused, handshake failed, login refused: try again later
                if isinstance(exc, ServerError) and exc.code in (ErrorCode.TOKEN_EXPIRED, ErrorCode.TOKEN_INVALID,
                                                                 ErrorCode.ACCOUNT_DELETED):
                    self._closing = True  # the token will not do: the application must log in
                    self._paused = False
                    self._fail_unacked(exc)
                    self._drop()
                    return
                self._drop()
                continue
            self.reconnects += 1
            attempt = 0
            self._paused = False
            for cmid in list(self._unacked):  # in the order they were first sent
                self._transmit(cmid, retry=True)
            try:
                await self.catch_up()
                await self.catch_up_changes()
            except (ServerError, ConnectionError, asyncio.TimeoutError) as exc:
                log.debug("catch-up after reconnect failed: %s", exc)
            if self.connected or self._closing:
                return
            self._paused = True  # dropped again meanwhile: once more, from the top

    def _drop(self) -> None:
        """Abandon the current connection (a failed attempt), if it is open."""
        if self._transport is not None and not self._transport.is_disconnected:
            self._transport.disconnect(graceful=False)

    def _fail_unacked(self, exc: BaseException) -> None:
        for *_, future in self._unacked.values():
            if not future.done():
                future.set_exception(exc)

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
