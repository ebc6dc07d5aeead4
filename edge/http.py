"""The node's HTTP listener (aiohttp), on its own port (``http_port``): ``/healthz`` and
``/readyz`` as on the WebSocket port, and what other parts of the node register on it
with ``add`` before ``start``: the local files' signed URLs (``add_file_routes``), later
metrics and an admin API. picows answers plain GETs on the WebSocket port but cannot
read a request body, hence a listener of its own."""
from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Awaitable, Callable

from aiohttp import web

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


class HttpServer:
    """One aiohttp application on ``config.host``:``config.http_port`` (0: a free port).
    Routes are added with ``add`` before ``start``; ``url`` is set once it listens."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.url = ""
        self._app = web.Application()
        self._runner: web.AppRunner | None = None

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
        # no access log: the node's logs are JSON lines of its own
        self._runner = web.AppRunner(self._app, access_log=None, handle_signals=False,
                                     shutdown_timeout=SHUTDOWN_TIMEOUT)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        host, port = sock.getsockname()[:2]
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        return host, port

    async def stop(self) -> None:
        """Stop listening, let requests in progress finish (up to SHUTDOWN_TIMEOUT)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


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
            await files.receive(key, request.headers.get("Content-Type", ""), int(request.headers["Content-Length"]),
                                request.content.iter_chunked(256 * 1024))
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


def add_web_routes(server: HttpServer, app_dir: Path, ws_port: Callable[[], int], ws_url: str = "") -> None:
    """The web chat app: its built files under ``/`` (``/`` is its index.html) and
    ``/web-config.json``, which tells the page the WebSocket URL to use: ``ws_url`` if set
    (a path: on the page's own host and port, wss:// when a proxy says it took https), else
    the host the page was loaded from with the WebSocket port. Add it last: its
    catch-all route must not shadow the others."""
    root = app_dir.resolve()

    async def config(request: web.Request) -> web.Response:
        if ws_url.startswith("/"):  # a path on the page's own host and port (behind a proxy)
            secure = request.headers.get("X-Forwarded-Proto", request.scheme) == "https"
            url = f"{'wss' if secure else 'ws'}://{request.host}{ws_url}"
        else:
            url = ws_url or f"ws://{_hostname(request.host)}:{ws_port()}/ws"
        return web.json_response({"ws": url}, headers={"Cache-Control": "no-cache"})

    async def page(request: web.Request) -> web.StreamResponse:
        wanted = request.match_info["path"] or "index.html"
        path = (root / wanted).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            if not (root / "index.html").is_file():
                return web.Response(status=404, text="the web app is not built: run `make web`\n")
            return web.Response(status=404, text="not found\n")
        # the index names its assets by content hash: it must be fetched again, they need not
        cache = "no-cache" if path.name == "index.html" else "public, max-age=31536000, immutable"
        return web.FileResponse(path, headers={"Cache-Control": cache, "X-Content-Type-Options": "nosniff"})

    server.add("GET", "/web-config.json", config)
    server.add("GET", "/{path:.*}", page)


def _hostname(host: str) -> str:
    """The host part of a Host header ("[::1]:8766" -> "[::1]", "a.b:8766" -> "a.b")."""
    if host.startswith("["):
        return host[:host.index("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else (host or "127.0.0.1")
