"""What operators reach on the node's HTTP port (edge/http.py): ``/metrics`` (Prometheus),
``/version``, and, behind the admin token, the admin API under ``/admin/`` and
``/debug/stacks``. The ``im`` commands (cli/admin.py) are its client: they never open a
node's database behind its back.

Every admin answer is JSON; a refusal is ``{"error": "..."}`` with its status: 401 no or a
wrong token, 403 the admin API is off (``admin_token = "off"``), 400 a bad request, 404 no
such user or group, 409 a conflict (a username taken). docs/operations.md lists the routes.
"""
from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import sys
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import msgspec
from aiohttp import web

from ..backends.protocols import GroupId, SetDisabled, UserId
from ..core_ext import bodies
from ..core_ext.codec import IMPLEMENTATION, encode_frame
from ..core_ext.errors import ImError
from ..core_ext.protocol import ErrorCode, Op
from ..ops.gcwatch import garbage_census
from ..ops.metrics import CONTENT_TYPE, render
from .metrics import node_registry
from ..ops.version import VERSION
from .http import HttpServer

if TYPE_CHECKING:
    from .node import Node

__all__ = ["add_ops_routes", "version_info"]

log = logging.getLogger("edgeim.admin")

#: most rows one list request returns
MAX_PAGE = 1000

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def version_info() -> dict[str, Any]:
    """What ``/version`` and ``im version`` say."""
    return {"version": VERSION, "python": sys.version.split()[0], "codec": IMPLEMENTATION,
            "frozen": bool(getattr(sys, "frozen", False))}


def add_ops_routes(server: HttpServer, node: Node) -> None:
    """``/version``, ``/metrics`` (when metrics are on), the admin API and ``/debug/stacks``."""
    token = node.admin_token.encode()

    def admin(handler: _Handler) -> _Handler:
        async def checked(request: web.Request) -> web.StreamResponse:
            if not token:
                return _error(403, "the admin API is off on this node (admin_token is \"off\")")
            given = request.headers.get("Authorization", "")
            if not given.startswith("Bearer ") or not hmac.compare_digest(given[7:].strip().encode(), token):
                return _error(401, "a valid admin token is needed (Authorization: Bearer <token>)",
                              {"WWW-Authenticate": 'Bearer realm="edgeim admin"'})
            try:
                return await handler(request)
            except _Refused as refused:
                return _error(refused.status, str(refused))
            except ImError as exc:  # a service refused (no such group, ...)
                return _error(404 if exc.code in (ErrorCode.NOT_FOUND, ErrorCode.USER_NOT_FOUND) else 400, exc.message)
        return checked

    async def version(request: web.Request) -> web.Response:
        return web.json_response({**version_info(), "node": node.id})

    server.add("GET", "/version", version)
    if node.config.metrics:
        registry = node_registry(node)

        metrics_token = node.config.metrics_token.encode()

        async def metrics(request: web.Request) -> web.Response:
            # with a token, whoever holds it; without, the node's own host only: the port is
            # public (files, the web app), the numbers are not
            if metrics_token:
                given = request.headers.get("Authorization", "")
                if not given.startswith("Bearer ") or not hmac.compare_digest(given[7:].strip().encode(),
                                                                              metrics_token):
                    return _error(401, "a valid metrics token is needed (Authorization: Bearer <token>)",
                                  {"WWW-Authenticate": 'Bearer realm="edgeim metrics"'})
            elif not _loopback(request.remote):
                return _error(403, "/metrics answers other hosts only with metrics_token set"
                                   " (IM_METRICS_TOKEN or metrics_token_file)")
            return web.Response(body=render(registry), headers={"Content-Type": CONTENT_TYPE})

        server.add("GET", "/metrics", metrics)

    ops = _AdminApi(node)
    for method, path, handler in (
        ("GET", "/admin/node", ops.node_info),
        ("GET", "/admin/stats", ops.stats),
        ("POST", "/admin/drain", ops.drain),
        ("GET", "/admin/users", ops.users),
        ("POST", "/admin/users", ops.create_user),
        ("GET", "/admin/users/{user}", ops.user),
        ("POST", "/admin/users/{user}/disable", ops.disable),
        ("POST", "/admin/users/{user}/enable", ops.enable),
        ("POST", "/admin/users/{user}/kick", ops.kick),
        ("POST", "/admin/users/{user}/delete", ops.delete),
        ("GET", "/admin/groups", ops.groups),
        ("GET", "/admin/groups/{group}", ops.group),
        ("POST", "/admin/groups/{group}/dissolve", ops.dissolve),
        ("GET", "/debug/stacks", ops.stacks),
        ("POST", "/debug/gc", ops.gc),
    ):
        server.add(method, path, admin(handler))


def _is_id(ref: str) -> bool:
    """Is ``ref`` an id: ASCII digits (``isdigit`` alone takes "²", which ``int`` refuses)
    below 2^63?"""
    return ref.isascii() and ref.isdigit() and int(ref) < 2**63


def _loopback(address: str | None) -> bool:
    """Is the client on this host (127.0.0.0/8, ::1, or 127.x mapped into IPv6)?"""
    try:
        ip = ipaddress.ip_address((address or "").split("%")[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(value), status=status, content_type="application/json")


def _int(request: web.Request, name: str, default: int, low: int = 0, high: int = 2**63 - 1) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _Refused(400, f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise _Refused(400, f"{name} must be {low}..{high}")
    return value


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _Refused(400, "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise _Refused(400, "the body must be a JSON object")
    return body


def _bad_user(error: str) -> str:
    """A sentence for a refused new account (a msgspec validation error of ``Register``),
    with the limits read from the body's own constraints."""
    import msgspec.inspect

    limits = {f.name: f.type for f in msgspec.inspect.type_info(bodies.Register).fields}  # type: ignore[attr-defined]
    for name, rule in limits.items():
        if f"`{name}`" not in error and f"$.{name}`" not in error:
            continue
        if "missing" in error:
            return f"a {name} is needed"
        low, high = getattr(rule, "min_length", None), getattr(rule, "max_length", None)
        size = f"{low} to {high} characters" if low else f"at most {high} characters"
        allowed = ", made of letters, digits and . _ -" if getattr(rule, "pattern", None) else ""
        return f"the {name} must be {size}{allowed}" if high else f"the {name} must be text"
    return f"bad user: {error}"


def _user_json(user: Any) -> dict[str, Any]:
    return {"id": user.id, "username": user.username, "nickname": user.nickname, "created_at": user.created_at,
            "disabled": user.disabled, "deleted": user.deleted}


def _group_json(record: Any, members: int) -> dict[str, Any]:
    return {"id": record.id, "name": record.name, "owner": record.owner, "members": members,
            "join_mode": record.join_mode, "mute_all": record.mute_all, "max_members": record.max_members,
            "created_at": record.created_at}


class _AdminApi:
    """The handlers; each answers JSON. Users are named by id or by username."""

    def __init__(self, node: Node) -> None:
        self.node = node

    async def node_info(self, request: web.Request) -> web.Response:
        return _json(self.node.info())

    async def stats(self, request: web.Request) -> web.Response:
        return _json(self.node.stats())

    async def drain(self, request: web.Request) -> web.Response:
        """Answered at once; the node then drains and exits (``Node.stopping``)."""
        node = self.node
        log.warning("drain requested through the admin API", extra={"node": node.id})
        node.stopping.set()
        return _json({"node": node.id, "draining": True, "timeout": node.config.drain_timeout}, 202)

    async def _find_user(self, ref: str) -> Any:
        store = self.node.store
        user = await store.get_user(UserId(int(ref))) if _is_id(ref) else None
        if user is None:
            user = await store.get_user_by_name(ref)
        if user is None:
            raise _Refused(404, f"no user {ref!r}")
        return user

    async def users(self, request: web.Request) -> web.Response:
        after = _int(request, "after", 0)
        limit = _int(request, "limit", 100, 1, MAX_PAGE)
        users = await self.node.store.list_users(UserId(after), limit)
        return _json({"users": [_user_json(u) for u in users], "more": len(users) == limit})

    async def create_user(self, request: web.Request) -> web.Response:
        body = await _body(request)
        try:
            req = msgspec.convert({k: body[k] for k in ("username", "password", "nickname") if k in body},
                                  bodies.Register)
        except msgspec.ValidationError as exc:
            raise _Refused(400, _bad_user(str(exc))) from None
        try:
            user = await self.node.auth.register(req.username, req.password, req.nickname, "admin-api", lambda: True)
        except ImError as exc:
            raise _Refused(409 if exc.code == ErrorCode.USERNAME_TAKEN else 400, exc.message) from None
        log.info("user created through the admin API", extra={"user": user.id})
        return _json(_user_json(user), 201)

    async def user(self, request: web.Request) -> web.Response:
        user = await self._find_user(request.match_info["user"])
        routes = await self.node.routes.lookup([user.id])
        sessions = sorted(({"terminal": r.terminal, "node": r.node} for r in routes), key=lambda s: s["terminal"])
        return _json({**_user_json(user), "sessions": sessions})

    async def disable(self, request: web.Request) -> web.Response:
        user = await self._find_user(request.match_info["user"])
        await self.node.store.apply(SetDisabled(user.id, True))
        kicked = await self._kick(user.id, "", "disabled")
        log.warning("user disabled through the admin API", extra={"user": user.id, "kicked": kicked})
        return _json({"id": user.id, "username": user.username, "disabled": True, "kicked": kicked})

    async def enable(self, request: web.Request) -> web.Response:
        user = await self._find_user(request.match_info["user"])
        await self.node.store.apply(SetDisabled(user.id, False))
        log.warning("user enabled through the admin API", extra={"user": user.id})
        return _json({"id": user.id, "username": user.username, "disabled": False})

    async def delete(self, request: web.Request) -> web.Response:
        """Delete the account for good (as ACCOUNT_DELETE does, without its password): its
        groups handed over or dissolved, its sessions closed on every node. 409 if it was
        deleted already."""
        user = await self._find_user(request.match_info["user"])
        if user.deleted:
            raise _Refused(409, f"user {user.username!r} was deleted already")
        try:
            done = await self.node.accounts.delete(user.id)
        except ImError as exc:
            raise _Refused(409 if exc.code == ErrorCode.ACCOUNT_DELETED else 400, exc.message) from None
        log.warning("user deleted through the admin API", extra={"user": user.id, "groups": done.groups,
                                                                   "erased": done.erased, "closed": done.closed})
        return _json({"id": user.id, "username": user.username, "deleted": True, "groups": done.groups,
                      "friends": done.friends, "erased": done.erased, "closed": done.closed})

    async def kick(self, request: web.Request) -> web.Response:
        user = await self._find_user(request.match_info["user"])
        terminal = request.query.get("terminal", "")
        kicked = await self._kick(user.id, terminal, "kicked")
        log.warning("user kicked through the admin API", extra={"user": user.id, "terminal": terminal,
                                                                  "kicked": kicked})
        return _json({"id": user.id, "username": user.username, "kicked": kicked})

    async def _kick(self, user_id: UserId, terminal: str, reason: str) -> list[dict[str, str]]:
        """Close the user's sessions (one terminal, or all) on whichever node holds them:
        a KICKED push with ``reason``, then close 4001."""
        node = self.node
        kicked = []
        for route in await node.routes.lookup([user_id]):
            if terminal and route.terminal != terminal:
                continue
            frame = encode_frame(Op.KICKED, 0, user_id, bodies.encode(bodies.Kicked(reason=reason,
                                                                                    terminal=route.terminal)))
            await node.delivery.kick(route.node, frame, user_id, route.terminal)
            kicked.append({"terminal": route.terminal, "node": route.node})
        return kicked

    async def groups(self, request: web.Request) -> web.Response:
        after = _int(request, "after", 0)
        limit = _int(request, "limit", 100, 1, MAX_PAGE)
        rows = await self.node.store.list_groups(GroupId(after), limit)
        groups = [_group_json(g, n) for g, n in rows]
        if request.query.get("names"):  # for people: the owners' usernames beside their ids
            names = await self._names([g["owner"] for g in groups])
            groups = [{**g, "owner_name": names.get(g["owner"], "")} for g in groups]
        return _json({"groups": groups, "more": len(rows) == limit})

    async def _names(self, ids: list[int]) -> dict[int, str]:
        """The usernames of ``ids`` (those that exist)."""
        return {p.user: p.username for p in await self.node.users.profiles([UserId(i) for i in ids])}

    def _group_id(self, request: web.Request) -> GroupId:
        ref = request.match_info["group"]
        if not _is_id(ref):
            raise _Refused(400, f"a group id is a number, got {ref!r}")
        return GroupId(int(ref))

    async def group(self, request: web.Request) -> web.Response:
        records = await self.node.store.load_group(self._group_id(request))
        if records is None:
            raise _Refused(404, f"no group {request.match_info['group']}")
        members = [{"user": m.user, "role": m.role, "muted_until": m.muted_until, "joined_at": m.joined_at}
                   for m in records.members[:MAX_PAGE]]
        group = {**_group_json(records.group, len(records.members)), "notice": records.group.notice,
                 "member_list": members, "join_requests": len(records.requests)}
        if request.query.get("names"):  # for people: usernames beside the ids
            names = await self._names([group["owner"], *(m["user"] for m in members)])
            group["owner_name"] = names.get(group["owner"], "")
            for member in members:
                member["username"] = names.get(member["user"], "")
        return _json(group)

    async def dissolve(self, request: web.Request) -> web.Response:
        """As the owner would: members get the GROUP_PUSH "dissolved" (its actor: the owner)."""
        groups = self.node.groups
        group = await groups.get(self._group_id(request))  # NOT_FOUND: 404
        await groups.dissolve(group, group.record.owner)
        log.warning("group dissolved through the admin API", extra={"group": group.id})
        return _json({"id": group.id, "dissolved": True})

    async def gc(self, request: web.Request) -> web.Response:
        """A full collection that counts, by type, what it finds unreachable (reference
        cycles), frozen objects included: what the node leaks to the cycle collector. The
        event loop waits meanwhile (two full collections): for diagnosis, not for probes."""
        census = garbage_census(_int(request, "limit", 30, 1, 1000))
        log.warning("garbage census through the admin API", extra={"unreachable": census["unreachable"],
                                                                   "seconds": census["seconds"]})
        return _json(census)

    async def stacks(self, request: web.Request) -> web.Response:
        """Every thread's stack and every asyncio task's, as text (for a node that hangs)."""
        out = [f"edgeim {VERSION} node {self.node.id} at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n"]
        names = {t.ident: t.name for t in threading.enumerate()}
        for ident, frame in sys._current_frames().items():
            out.append(f"\n--- thread {names.get(ident, ident)} ---\n")
            out.extend(traceback.format_stack(frame))
        tasks = asyncio.all_tasks(self.node.loop)
        out.append(f"\n--- {len(tasks)} asyncio tasks ---\n")
        for task in tasks:
            out.append(f"\n{task!r}\n")
            for frame in task.get_stack(limit=20):
                out.extend(traceback.format_stack(frame, limit=1))
        return web.Response(text="".join(out))
