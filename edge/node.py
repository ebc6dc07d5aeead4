"""A node: the composition root. It wires the backends (store, routes, bus), the
in-memory state, the services and the edge, and owns startup and orderly shutdown."""
from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import secrets
from pathlib import Path
from typing import Any, Coroutine

from ..backends.memory import LocalBus, MemoryRoutes
from ..backends.protocols import Bus, NodeId, Routes, Store, StoreUnavailable
from ..backends.sqlite import SqliteStore
from ..core_ext.fanout import Outbox, RoutingTable
from ..ops.config import Config
from ..services.auth import AuthService, Hashing, Passwords, default_workers
from ..services.conversations import Conversations
from ..services.delivery import Delivery
from ..services.groups import Groups, Membership
from ..services.ids import IdGenerator, node_number
from ..services.messages import Messages
from ..services.quota import SendQuota
from ..services.social import Social
from ..services.state import State
from ..services.users import Users
from .api import Api
from .presence import Presence
from .server import EdgeServer
from .session import Session

__all__ = ["Node", "DataDirInUse"]

log = logging.getLogger("edgeim.node")


class DataDirInUse(RuntimeError):
    """Another running node holds the data dir (two writers would corrupt the seqs)."""


class Node:
    """Wires each part with what it uses, explicitly: backends, then the in-memory state
    and the services over them, then the edge (routing table, presence, handlers, server)."""

    def __init__(self, config: Config, store: Store | None = None, routes: Routes | None = None, bus: Bus | None = None) -> None:
        self.config = config
        self.id = NodeId(config.node_id)
        self.loop = asyncio.get_running_loop()
        try:
            config.data_dir.mkdir(parents=True, exist_ok=True)
            secret = config.token_secret or _load_secret(config.data_dir)
        except OSError as exc:
            raise StoreUnavailable(f"cannot use data dir {config.data_dir}: {exc}") from None
        self.store = store or SqliteStore(config.data_dir / "edgeim.db", synchronous=config.sqlite_sync)
        self.routes = routes or MemoryRoutes()
        self.bus = bus or LocalBus()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._lock_fd = -1

        self.table = RoutingTable()
        self.outbox = Outbox(self.loop)
        self.delivery = Delivery(self.id, self.routes, self.bus, self.table, self.spawn)
        self.state = State(self.store)
        self.auth = AuthService(self.store, secret, config.token_ttl,
                                Passwords(config.password_memory_kib, config.password_time_cost),
                                Hashing(default_workers(), config.login_backlog, config.login_rate, config.login_burst))
        conversations = Conversations(self.store, self.state, self.delivery.to_users)
        users = Users(self.store)
        groups = Groups(self.store, self.state, Membership(
            self.delivery.to_users, self.delivery.to_conv, self.delivery.joined, self.delivery.left,
        ), users.exists, config.group_max_members)
        messages = Messages(self.store, self.state, users, IdGenerator(node_number(self.id)), conversations, groups,
                            config.strangers_may_send)
        social = Social(self.store, self.state, self.delivery.to_users, users.exists)
        quota = SendQuota(config.user_send_rate, config.user_send_burst, config.user_send_bytes_rate,
                          config.user_send_bytes_burst)
        self.presence = Presence(self.id, config.route_ttl, self.table, self.routes, self.delivery, self.state, self.spawn,
                                 config.max_sessions_per_user, quota.forget)
        self.api = Api(self.id, self.state, self.auth, self.presence, self.delivery, messages, conversations, social,
                       groups, quota)
        self.server = EdgeServer(config, self.loop, self._new_session, self.presence.renew, lambda: self.store.healthy)

    def _new_session(self) -> Session:
        return Session(self.config, self.loop, self.outbox, self.api.handlers, self.spawn, self.server.sessions,
                       self.presence.release)

    async def start(self) -> tuple[str, int]:
        """Open the backends and listen; on failure, release what was taken and raise."""
        self._lock_fd = _lock(self.config.data_dir)
        try:
            await self.store.open()
            await self.bus.start(self.id, self.delivery.deliver)
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


def _lock(data_dir: Path) -> int:
    try:
        fd = os.open(data_dir / "edgeim.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreUnavailable(f"cannot use data dir {data_dir}: {exc}") from None
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
