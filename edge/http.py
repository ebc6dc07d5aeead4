"""The node's HTTP listener (aiohttp), on its own port (``http_port``): ``/healthz`` and
``/readyz`` as on the WebSocket port, and what other parts of the node register on it
with ``add`` before ``start``: the local files' signed URLs (``add_file_routes``), later
metrics and an admin API. picows answers plain GETs on the WebSocket port but cannot
read a request body, hence a listener of its own.

The port is public (files, the web app), so slow clients are bounded here (``_Guard``):
aiohttp alone has no deadline for a request's headers or body, and a few hundred clients
trickling headers would hold as many file descriptors, which the WebSocket port needs."""
from __future__ import annotations

import asyncio
import logging
import resource
import socket
from pathlib import Path
from typing import Any, Awaitable, Callable, cast

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ..backends.localfiles import FileRefused, LocalFiles
from ..backends.protocols import FilesUnavailable
from ..ops.config import Config

__all__ = ["HttpServer", "Handler", "add_health_routes", "add_file_routes", "add_web_routes", "web_app_dir", "BUILT_WEB_APP"]

log = logging.getLogger("edgeim.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: where `make web` builds the web chat app, inside the package
BUILT_WEB_APP = Path(__file__).resolve().parent.parent / "web" / "app" / "dist"

#: seconds a stopping listener waits for requests in progress (an upload) before closing them
SHUTDOWN_TIMEOUT = 5.0


#: what a new client gets when every connection the port may hold is busy with a request
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
         b"Retry-After: 1\r\nConnection: close\r\n\r\nbusy\n")

#: why the guard closed connections (edgeim_http_closed_total's label)
CLOSE_REASONS = ("header_timeout", "body_timeout", "evicted", "refused")


def max_connections(setting: int) -> int:
    """The ``http_max_connections`` in force: the setting, or with 0 a quarter of the
    process's open-file limit (the WebSocket connections need the rest), at most 4096."""
    if setting > 0:
        return setting
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(16, min(4096, soft // 4 if soft != resource.RLIM_INFINITY else 4096))


class HttpServer:
    """One aiohttp application on ``config.host``:``config.http_port`` (0: a free port).
    Routes are added with ``add`` before ``start``; ``url`` is set once it listens."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.url = ""
        self._app = web.Application(middlewares=[_track_request])
        self._runner: web.AppRunner | None = None
        self.guard: _Guard | None = None  # once listening

    def add(self, method: str, path: str, handler: Handler) -> None:
        """Route ``method`` requests to ``path`` (aiohttp syntax: ``/files/{key:.+}``)."""
        self._app.router.add_route(method, path, handler)

    async def start(self) -> tuple[str, int]:
        sock = socket.socket(socket.AF_INET6 if ":" in self.config.host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.config.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self.config.host, self.config.http_port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        config = self.config
        self.guard = _Guard(asyncio.get_running_loop(), max_connections(config.http_max_connections),
                            config.http_header_timeout, config.http_body_timeout)
        # no access log: the node's logs are JSON lines of its own; a malformed request is one
        # short line at debug (_quiet), not a traceback per attempt
        self._runner = web.AppRunner(self._app, access_log=None, handle_signals=False,
                                     shutdown_timeout=SHUTDOWN_TIMEOUT, logger=_quiet,
                                     keepalive_timeout=config.http_header_timeout)
        await self._runner.setup()
        await _GuardedSite(self._runner, sock, self.guard).start()
        host, port = sock.getsockname()[:2]
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        return host, port

    async def stop(self) -> None:
        """Stop listening, let requests in progress finish (up to SHUTDOWN_TIMEOUT)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class _Guard:
    """What slow clients may hold on the HTTP port: at most ``cap`` connections. One that
    has not sent a whole request line and headers ``header_timeout`` seconds after it
    connected (or after its previous answer: idle keep-alive) is closed, and so is one
    whose request body stops arriving, or which stops reading its answer, for
    ``body_timeout``. At the cap, the connection that has waited longest for its headers
    is closed to make room for the new one (a client that sends its request at once, a
    health check, keeps its place); only when every one is busy with a request does the
    newcomer get 503. Closing is an abort: a client that reads nothing cannot keep a
    descriptor open with unsent bytes."""

    def __init__(self, loop: asyncio.AbstractEventLoop, cap: int, header_timeout: float,
                 body_timeout: float) -> None:
        self.loop = loop
        self.cap = cap
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.open: set[_Connection] = set()
        #: connections waiting for a request's headers, the longest waiting first
        self.waiting: dict[_Connection, None] = {}
        self.closed = dict.fromkeys(CLOSE_REASONS, 0)

    def admit(self, conn: _Connection) -> bool:
        if len(self.open) >= self.cap:
            if not self.waiting:
                self.closed["refused"] += 1
                return False
            self.drop(next(iter(self.waiting)), "evicted")
        self.open.add(conn)
        self.await_headers(conn)
        return True

    def await_headers(self, conn: _Connection) -> None:
        self.waiting[conn] = None
        conn.set_deadline(self.header_timeout, self._headers_late)

    def _headers_late(self, conn: _Connection) -> None:
        if conn in self.waiting:
            self.drop(conn, "header_timeout")

    def request_started(self, conn: _Connection, request: web.BaseRequest) -> None:
        self.waiting.pop(conn, None)
        conn.request = request
        conn.set_deadline(self.body_timeout, self._body_check)

    def request_done(self, conn: _Connection, request: web.BaseRequest) -> None:
        if conn.request is not request:  # the next (pipelined) request began first
            return
        conn.request = None
        if conn in self.open:
            self.await_headers(conn)

    def _body_check(self, conn: _Connection) -> None:
        """The body deadline: the client sent none of it for ``body_timeout`` while the
        node was reading (a handler that does not read leaves the socket paused: not the
        client's fault)."""
        request = conn.request
        if request is None or conn not in self.open or request.content.is_eof():
            return
        quiet = self.loop.time() - conn.last_read
        reading = conn.transport is not None and conn.transport.is_reading()
        if quiet >= self.body_timeout and reading:
            self.drop(conn, "body_timeout")
        else:
            conn.set_deadline(self.body_timeout - quiet if reading else self.body_timeout, self._body_check)

    def stalled(self, conn: _Connection) -> None:
        """The client stopped reading its answer (the write buffer passed its high mark)."""
        if conn in self.open:
            self.drop(conn, "body_timeout")

    def drop(self, conn: _Connection, reason: str) -> None:
        self.closed[reason] += 1
        self.forget(conn)
        if conn.transport is not None:
            conn.transport.abort()

    def forget(self, conn: _Connection) -> None:
        self.open.discard(conn)
        self.waiting.pop(conn, None)
        conn.cancel_timers()


class _Connection(asyncio.Protocol):
    """aiohttp's protocol of one connection, wrapped: every event is passed on, and the
    guard learns what the connection is doing (waiting for headers, in a request, not
    reading what it is sent)."""

    __slots__ = ("inner", "guard", "transport", "admitted", "request", "last_read", "_deadline", "_stall")

    def __init__(self, inner: asyncio.Protocol, guard: _Guard) -> None:
        self.inner = inner
        self.guard = guard
        self.transport: asyncio.Transport | None = None
        self.admitted = False
        self.request: web.BaseRequest | None = None
        self.last_read = guard.loop.time()
        self._deadline: asyncio.TimerHandle | None = None
        self._stall: asyncio.TimerHandle | None = None

    def set_deadline(self, delay: float, check: Callable[[_Connection], None]) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.guard.loop.call_later(delay, check, self)

    def cancel_timers(self) -> None:
        for timer in (self._deadline, self._stall):
            if timer is not None:
                timer.cancel()
        self._deadline = self._stall = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # (uvloop's is not a subclass)
        if not self.guard.admit(self):
            transport.write(_BUSY)
            transport.close()
            return
        self.admitted = True
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.last_read = self.guard.loop.time()
        if self.admitted:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.admitted else None

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.forget(self)
        self.transport = None
        if self.admitted:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._stall is None:
            self._stall = self.guard.loop.call_later(self.guard.body_timeout, self.guard.stalled, self)
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        self.inner.resume_writing()


@web.middleware
async def _track_request(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Tells the guard that a connection's request has begun (its headers are in) and, when
    the task that handles it ends (the answer written), that it waits for the next."""
    transport = request.transport
    conn = transport.get_protocol() if transport is not None else None
    if isinstance(conn, _Connection) and conn.admitted:
        conn.guard.request_started(conn, request)
        task = asyncio.current_task()
        if task is not None:
            task.add_done_callback(lambda _: conn.guard.request_done(conn, request))
    return await handler(request)


class _GuardedSite(web.SockSite):
    """aiohttp's site on our socket, each connection's protocol wrapped by the guard."""

    __slots__ = ("_guard",)

    def __init__(self, runner: web.AppRunner, sock: socket.socket, guard: _Guard) -> None:
        super().__init__(runner, sock)
        self._guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        assert server is not None
        guard = self._guard
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Connection(server(), guard), sock=self._sock, backlog=self._backlog)


class _QuietLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server logger. A malformed request, which anyone can send, would log a
    traceback of some 700 bytes each time: it is one short debug line instead. Failures of
    the node's own handlers (500) keep their traceback: they are bugs."""

    def exception(self, msg: object, *args: Any, exc_info: Any = True, **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            self.logger.debug("bad http request", extra={"status": exc_info.code,
                                                          "error": str(exc_info.message)[:120]})
        else:
            self.logger.error(msg, *args, exc_info=exc_info, **kwargs)

    def debug(self, msg: object, *args: Any, exc_info: Any = None, **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):  # not HTTP at all (aiohttp says so at debug)
            self.exception(msg, exc_info=exc_info)
        else:
            self.logger.debug(msg, *args, exc_info=exc_info, **kwargs)


_quiet = _QuietLogger(log, {})


def add_health_routes(server: HttpServer, draining: Callable[[], bool], unready: Callable[[], str]) -> None:
    """``/healthz`` and ``/readyz``, answered as on the WebSocket port (edge/server.py);
    ``unready`` names the backend that does not work ("" when all do)."""
    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        if draining():
            return web.Response(status=503, text="draining\n")
        problem = unready()
        if problem:
            return web.Response(status=503, text=f"{problem}\n")
        return web.Response(text="ready\n")

    server.add("GET", "/healthz", healthz)
    server.add("GET", "/readyz", readyz)


#: CORS on the files' URLs, so that a web app served from another origin can upload and
#: download: any origin may, since a signed, expiring URL is the whole authorization and no
#: cookie is involved (as S3's presigned URLs with a CORS rule allowing every origin)
_CORS = {"Access-Control-Allow-Origin": "*"}
_PREFLIGHT = {**_CORS, "Access-Control-Allow-Methods": "GET, PUT", "Access-Control-Allow-Headers": "Content-Type",
              "Access-Control-Max-Age": "600"}


def add_file_routes(server: HttpServer, files: LocalFiles) -> None:
    """PUT and GET ``/files/<key>``: the URLs ``LocalFiles`` signs, open to every origin
    (CORS, with OPTIONS preflights). Every refusal is a status with a one-line text body
    saying why (docs/protocol.md, section 14)."""
    async def preflight(request: web.Request) -> web.Response:
        return web.Response(status=204, headers=_PREFLIGHT)

    async def put(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        try:
            files.check("PUT", key, request.query.items(), request.headers)
            owner = request.query.get("X-Im-Owner", "0")  # signed: check() has seen to it
            await files.receive(key, request.headers.get("Content-Type", ""), int(request.headers["Content-Length"]),
                                request.content.iter_chunked(256 * 1024), int(owner) if owner.isascii() and owner.isdigit() else 0)
        except FileRefused as refused:
            return _refuse(refused.status, str(refused), request)
        except FilesUnavailable as exc:
            log.error("file upload failed", extra={"key": key, "error": str(exc)})
            return _refuse(503, "the file store is unavailable", request)
        return web.Response(status=200, headers=_CORS)

    async def get(request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        try:
            files.check("GET", key, request.query.items(), request.headers)
            found = await files.local(key)
        except FileRefused as refused:
            return _refuse(refused.status, str(refused), request)
        except FilesUnavailable as exc:
            log.error("file download failed", extra={"key": key, "error": str(exc)})
            return _refuse(503, "the file store is unavailable", request)
        if found is None:
            return _refuse(404, "no such file", request)
        path, stat = found
        return web.FileResponse(path, headers={
            "Content-Type": stat.mime,
            "Content-Disposition": request.query.get("response-content-disposition", "attachment"),
            "X-Content-Type-Options": "nosniff",  # served as the type it was granted for, never sniffed
            **_CORS,
        })

    server.add("PUT", "/files/{key:.+}", put)
    server.add("GET", "/files/{key:.+}", get)
    server.add("OPTIONS", "/files/{key:.+}", preflight)


def _refuse(status: int, reason: str, request: web.Request) -> web.Response:
    # (aiohttp reads and drops the rest of a refused upload's body for a few seconds, so
    # the client gets to read this answer rather than a reset connection)
    return web.Response(status=status, text=reason + "\n", headers=_CORS)


def web_app_dir(web_dir: str) -> Path | None:
    """The folder the ``web_dir`` setting names: the built app in the package when empty,
    None when "off"."""
    if web_dir == "off":
        return None
    return Path(web_dir) if web_dir else BUILT_WEB_APP


def add_web_routes(server: HttpServer, app_dir: Path, ws_port: Callable[[], int], ws_url: str = "",
                   recall_window: float = 120.0, edit_window: float = 172800.0) -> None:
    """The web chat app: its built files under ``/`` (``/`` is its index.html) and
    ``/web-config.json``, which tells the page where the WebSocket is: ``{"ws": ws_url}``
    when set to a URL, ``{"path": ws_url}`` when set to a path (on the page's own host and
    port: behind a proxy), else ``{"port": <WebSocket port>, "path": "/ws"}`` (on the
    page's own host); and ``recall_window`` and ``edit_window``, the node's settings in
    seconds, so the page offers Recall and Edit only while the server would accept them. The page adds its host itself:
    nothing of the request (its Host header) is echoed. Add it last: its catch-all route
    must not shadow the others."""
    root = app_dir.resolve()

    async def config(request: web.Request) -> web.Response:
        if ws_url.startswith("/"):
            answer: dict[str, object] = {"path": ws_url}
        elif ws_url:
            answer = {"ws": ws_url}
        else:
            answer = {"port": ws_port(), "path": "/ws"}
        answer["recall_window"] = recall_window
        answer["edit_window"] = edit_window
        return web.json_response(answer, headers={"Cache-Control": "no-cache"})

    async def page(request: web.Request) -> web.StreamResponse:
        wanted = request.match_info["path"] or "index.html"
        try:
            path = (root / wanted).resolve()
            found = path.is_relative_to(root) and path.is_file()
        except (ValueError, OSError):  # a NUL byte, a name too long: no such file
            found = False
        if not found:
            if not (root / "index.html").is_file():
                return web.Response(status=404, text="the web app is not built: run `make web`\n")
            return web.Response(status=404, text="not found\n")
        # the index names its assets by content hash: it must be fetched again, they need not
        cache = "no-cache" if path.name == "index.html" else "public, max-age=31536000, immutable"
        return web.FileResponse(path, headers={"Cache-Control": cache, "X-Content-Type-Options": "nosniff"})

    server.add("GET", "/web-config.json", config)
    server.add("GET", "/{path:.*}", page)
