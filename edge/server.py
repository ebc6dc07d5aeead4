"""The picows listener: WebSocket upgrade with version negotiation, the HTTP health
endpoints on the same port, the sweep that enforces auth and idle timeouts and renews
routes, and the drain on shutdown."""
from __future__ import annotations

import asyncio
import inspect
import logging
from http import HTTPStatus
from typing import Awaitable, Callable

from picows import WSUpgradeRequest, WSUpgradeResponse, WSUpgradeResponseWithListener, ws_create_server

from ..core_ext.protocol import MAX_FRAME_SIZE, SUBPROTOCOL_PREFIX, SUPPORTED_VERSIONS, CloseCode
from ..ops.config import Config
from .session import AUTHENTICATED, Session

__all__ = ["EdgeServer", "negotiate"]

log = logging.getLogger("edgeim.edge")

#: each connection's picows read buffer starts at this size (picows's minimum); its pages
#: are resident, and picows's 16 KiB default was half of an idle connection's memory. A
#: larger frame grows that connection's buffer (up to MAX_FRAME_SIZE).
READ_BUFFER_SIZE = 2048
#: picows uses aiofastnet's transports when that is installed; uvloop's own transports take
#: ~5 KiB less per connection at the same CPU per message (bench/memory.py, bench/group_fanout.py)
USE_AIOFASTNET = False
#: one logger for every connection: given a logging.Logger, picows makes a child Logger per
#: connection (~0.6 KiB each); given an adapter, it uses it as it is
_PICOWS_LOG = logging.LoggerAdapter(logging.getLogger("picows.server"), {})
# (a picows without the option has no aiofastnet support: nothing to turn off)
_TRANSPORT_OPTIONS = ({"use_aiofastnet": USE_AIOFASTNET}
                      if "use_aiofastnet" in inspect.signature(ws_create_server).parameters else {})

_SUPPORTED = ", ".join(f"{SUBPROTOCOL_PREFIX}{v}" for v in SUPPORTED_VERSIONS)


def negotiate(offered: str | None) -> str | None:
    """The subprotocol to answer with: the highest version both sides support; ``""``
    when the client offered none (v1 is assumed); None when nothing offered is supported."""
    if not offered:
        return ""
    versions = []
    for token in offered.split(","):
        token = token.strip()
        if token.startswith(SUBPROTOCOL_PREFIX) and token[len(SUBPROTOCOL_PREFIX):].isdigit():
            version = int(token[len(SUBPROTOCOL_PREFIX):])
            if version in SUPPORTED_VERSIONS:
                versions.append(version)
    return f"{SUBPROTOCOL_PREFIX}{max(versions)}" if versions else None


class EdgeServer:
    """Listens, upgrades, and sweeps the open sessions. ``make_session`` builds the
    listener of a new connection (it joins ``sessions`` once connected); ``renew`` keeps
    the route of a live authenticated session; ``unready`` says which backend does not
    work ("" when all do: ``/readyz`` is 503 with that text while one does not)."""

    def __init__(self, config: Config, loop: asyncio.AbstractEventLoop, make_session: Callable[[], Session],
                 renew: Callable[[Session], Awaitable[None]], unready: Callable[[], str] = lambda: "") -> None:
        self.config = config
        self.loop = loop
        self._make_session = make_session
        self._renew = renew
        self._unready = unready
        self.sessions: set[Session] = set()
        self.draining = False
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> tuple[str, int]:
        config = self.config
        self._server = await ws_create_server(
            self._route,
            config.host,
            config.port,
            max_frame_size=MAX_FRAME_SIZE,
            websocket_handshake_timeout=5,
            disconnect_on_exception=True,
            # off: a session's PINGs must reach it, since they count as activity
            enable_auto_pong=False,
            reuse_port=config.reuse_port,
            backlog=config.backlog,
            read_buffer_init_size=READ_BUFFER_SIZE,
            logger_name=_PICOWS_LOG,
            **_TRANSPORT_OPTIONS,
        )
        self._sweeper = asyncio.create_task(self._sweep())
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    def _route(self, request: WSUpgradeRequest) -> WSUpgradeResponseWithListener | Session | None:
        path = request.path.split(b"?", 1)[0]
        if path == b"/ws":
            if self.draining:
                return _http(HTTPStatus.SERVICE_UNAVAILABLE, b"draining\n")
            chosen = negotiate(request.headers.get("Sec-WebSocket-Protocol"))
            if chosen is None:
                return _http(HTTPStatus.UPGRADE_REQUIRED, f"supported subprotocols: {_SUPPORTED}\n".encode(),
                             {"Sec-WebSocket-Protocol": _SUPPORTED})
            headers = {"Sec-WebSocket-Protocol": chosen} if chosen else None
            return WSUpgradeResponseWithListener(WSUpgradeResponse.create_101_response(headers), self._make_session())
        if path == b"/healthz":
            return _http(HTTPStatus.OK, b"ok\n")
        if path == b"/readyz":
            if self.draining:
                return _http(HTTPStatus.SERVICE_UNAVAILABLE, b"draining\n")
            problem = self._unready()
            if problem:
                return _http(HTTPStatus.SERVICE_UNAVAILABLE, f"{problem}\n".encode())
            return _http(HTTPStatus.OK, b"ready\n")
        return _http(HTTPStatus.NOT_FOUND, b"not found\n")

    async def _sweep(self) -> None:
        """Close connections past their auth or idle timeout or too far behind in reading;
        renew the routes of active ones."""
        config = self.config
        interval = min(1.0, config.auth_timeout / 4, config.idle_timeout / 4)
        renew_every = config.route_ttl / 3
        while True:
            await asyncio.sleep(interval)
            now = self.loop.time()
            renew = []
            for session in list(self.sessions):
                session.peer.refresh()  # what the node's connections hold, read again
                if session.state != AUTHENTICATED and now - session.connected_at > config.auth_timeout:
                    session.close(CloseCode.AUTH_TIMEOUT, "login timeout")
                elif now - session.last_active > config.idle_timeout:
                    session.close(CloseCode.IDLE_TIMEOUT, "idle")
                elif session.write_paused and session.write_buffer_size() > config.max_write_buffer:
                    # (the peer drops it as its frames are queued; this catches what picows
                    # wrote itself.) It does not read: the close frame would queue behind what it ignores
                    log.warning("slow consumer dropped", extra={"user": session.user_id})
                    session.transport.disconnect(graceful=False)
                elif session.state == AUTHENTICATED and now - session.renewed_at > renew_every:
                    session.renewed_at = now
                    renew.append(session)
            for session in renew:
                try:
                    await self._renew(session)
                except Exception:
                    log.exception("route renewal failed")

    async def drain(self, timeout: float = 10.0) -> None:
        """Stop accepting, close every session with 1001, wait for them to go."""
        self.draining = True
        if self._sweeper:
            self._sweeper.cancel()
        if self._server:
            self._server.close()
        for session in list(self.sessions):
            session.close(CloseCode.GOING_AWAY, "node shutting down")
        deadline = self.loop.time() + timeout
        while self.sessions and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
        for session in list(self.sessions):
            session.transport.disconnect(graceful=False)


def _http(status: HTTPStatus, body: bytes, headers: dict[str, str] | None = None) -> WSUpgradeResponseWithListener:
    response = WSUpgradeResponse.create_error_response(status, body, headers) if status >= 400 else \
        WSUpgradeResponse.create_ok_response(body, headers)
    return WSUpgradeResponseWithListener(response, None)
