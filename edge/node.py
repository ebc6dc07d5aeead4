"""A node: the composition root. It wires the backends (store, routes, bus), the
services and the hub behind one edge server, and owns startup and orderly shutdown."""
from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import secrets
from pathlib import Path
from typing import Any, Coroutine

from ..backends.memory import LocalBus, MemoryRoutes
from ..backends.protocols import Bus, NodeId, Routes, Store
from ..backends.sqlite import SqliteStore
from ..core_ext import bodies
from ..core_ext.codec import encode_frame
from ..core_ext.protocol import Op
from ..ops.config import Config
from ..services.auth import AuthService
from ..services.delivery import Delivery
from ..services.ids import IdGenerator, node_number
from ..services.messages import MessageService
from .hub import Hub, Outbox
from .server import EdgeServer
from .session import Session

__all__ = ["Node", "DataDirInUse"]

log = logging.getLogger("edgeim.node")


class DataDirInUse(RuntimeError):
    """Another running node holds the data dir (two writers would corrupt the seqs)."""


class Node:
    def __init__(self, config: Config, store: Store | None = None, routes: Routes | None = None, bus: Bus | None = None) -> None:
        self.config = config
        self.id = NodeId(config.node_id)
        self.loop = asyncio.get_running_loop()
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = store or SqliteStore(config.data_dir / "edgeim.db", synchronous=config.sqlite_sync)
        self.routes = routes or MemoryRoutes()
        self.bus = bus or LocalBus()
        self.hub = Hub()
        self.outbox = Outbox(self.loop)
        self.auth = AuthService(self.store, config.token_secret or _load_secret(config.data_dir), config.token_ttl, config.scrypt_log_n)
        self.messages = MessageService(self.store, IdGenerator(node_number(self.id)))
        self.delivery = Delivery(self.id, self.routes, self.bus, self.hub.deliver, self.spawn)
        self.server = EdgeServer(self)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._lock_fd = -1

    async def start(self) -> tuple[str, int]:
        """Open the backends and listen; on failure, release what was taken and raise."""
        self._lock_fd = _lock(self.config.data_dir)
        try:
            await self.store.open()
            await self.bus.start(self.id, self.hub.deliver)
            return await self.server.start()
        except BaseException:
            await self._close_backends()
            raise

    async def stop(self) -> None:
        """Drain sessions, let accepted requests finish (their appends commit), flush the store."""
        await self.server.drain()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=10)
        await self._close_backends()

    async def _close_backends(self) -> None:
        await self.bus.close()
        await self.routes.close()
        await self.store.close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a request as a task that shutdown waits for."""
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def bind(self, session: Session) -> None:
        """Make ``session`` the live one of its (user, terminal), here and in the routes;
        the one it replaces, on this node or another, is kicked."""
        old = self.hub.attach(session)
        kick = _kicked_frame(session)
        if old is not None:
            old.kick(kick)
        previous = await self.routes.bind(session.user_id, session.terminal, self.id, self.config.route_ttl)
        if previous is not None and previous.node != self.id:
            await self.delivery.kick(previous.node, kick, session.user_id, session.terminal)


    async def rebind(self, session: Session) -> None:
        """A live session whose route is gone: if a newer login took its (user, terminal)
        on another node, it is the stale one and goes; otherwise its route is restored
        (it expired, or the route store lost it)."""
        if session.closing or self.hub.get(session.user_id, session.terminal) is not session:
            return
        routes = await self.routes.lookup((session.user_id,))
        if any(r.terminal == session.terminal and r.node != self.id for r in routes):
            session.kick(_kicked_frame(session))
        else:
            await self.routes.bind(session.user_id, session.terminal, self.id, self.config.route_ttl)


def _kicked_frame(session: Session) -> bytes:
    body = bodies.Kicked(reason="replaced", terminal=session.terminal)
    return encode_frame(Op.KICKED, 0, session.user_id, bodies.encode(body))


def _lock(data_dir: Path) -> int:
    fd = os.open(data_dir / "edgeim.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DataDirInUse(f"data dir {data_dir} is in use by another running node") from None
    return fd


def _load_secret(data_dir: Path) -> str:
    """The token secret kept in the data dir, created on first start, so tokens outlive restarts."""
    path = data_dir / "token.secret"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        secret = secrets.token_hex(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secret)
        return secret
