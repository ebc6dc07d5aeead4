"""A node: the composition root. It wires the backends (store, routes, bus), the
in-memory state, the services and the edge, and owns startup and orderly shutdown."""
from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import secrets
import urllib.parse
from pathlib import Path
from typing import Any, Coroutine

from ..backends.memory import LocalBus, MemoryRoutes
from ..backends.protocols import Bus, ConvId, GroupId, NodeId, Routes, Store, StoreUnavailable, UserId
from ..core_ext import bodies
from ..core_ext.protocol import HEADER_SIZE, Op
from ..backends.sqlite import SqliteStore
from ..core_ext.fanout import Outbox, RoutingTable
from ..ops.config import Config
from ..services.auth import AuthService, Hashing, Passwords, default_workers
from ..services.conversations import Conversations
from ..services.delivery import Delivery
from ..services.groups import Groups, Membership
from ..services.conversations import is_group, parse_conv
from ..services.ids import NODE_NUMBERS, IdGenerator
from ..services.messages import Messages, stored_message
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

#: seconds a node number is leased for; renewed every third of it
NUMBER_LEASE = 60.0


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
        self.store = store or _store(config)
        self.routes = routes or _routes(config)
        self.bus = bus or _bus(config)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._lock_fd = -1
        self._keeper: asyncio.Task[None] | None = None

        self.table = RoutingTable()
        self.outbox = Outbox(self.loop)
        self.delivery = Delivery(self.id, self.routes, self.bus, self.table, self.spawn)
        self.state = State(self.store)
        self.auth = AuthService(self.store, secret, config.token_ttl,
                                Passwords(config.password_memory_kib, config.password_time_cost),
                                Hashing(default_workers(), config.login_backlog, config.login_rate, config.login_burst))
        self.conversations = conversations = Conversations(self.store, self.state, self.delivery.to_users,
                                                           self.delivery.refresh)
        users = Users(self.store)
        groups = Groups(self.store, self.state, Membership(
            self.delivery.to_users, self.delivery.to_conv, self.delivery.joined, self.delivery.left,
            self.delivery.refresh,
        ), users.exists, config.group_max_members)
        self.ids = IdGenerator()  # its node number is leased at start
        messages = Messages(self.store, self.state, users, self.ids, conversations, groups, config.strangers_may_send,
                            config.recall_window)
        social = Social(self.store, self.state, self.delivery.to_users, users.exists, self.delivery.refresh)
        quota = SendQuota(config.user_send_rate, config.user_send_burst, config.user_send_bytes_rate,
                          config.user_send_bytes_burst)
        self._quota = quota
        self.presence = Presence(self.id, config.route_ttl, self.table, self.routes, self.delivery, self.state, self.spawn,
                                 config.max_sessions_per_user, self._offline)
        self.api = Api(self.id, self.state, self.auth, self.presence, self.delivery, messages, conversations, social,
                       groups, quota)
        self.server = EdgeServer(config, self.loop, self._new_session, self.presence.renew, lambda: self.store.healthy)
        # what other nodes tell this one (nothing comes on embedded defaults)
        self.delivery.on_refresh = self._refresh
        self.delivery.on_message = self._remote_message
        self.delivery.reloading = lambda: bool(self.state.reloading)
        self.delivery.settled = lambda: self.state.settled(*list(self.state.reloading))
        self.delivery.on_unsubscribed = self._unsubscribed

    def _new_session(self) -> Session:
        return Session(self.config, self.loop, self.outbox, self.api.handlers, self.spawn, self.server.sessions,
                       self.presence.release)

    async def start(self) -> tuple[str, int]:
        """Open the backends and listen; on failure, release what was taken and raise."""
        self._lock_fd = _lock(self.config.data_dir)
        try:
            await self.store.open()
            # a number no other live node holds, for message ids; subscriptions left by an
            # earlier run under this node id (a crash) go
            self.ids.set_node(await self.routes.lease_number(self.id, NUMBER_LEASE, NODE_NUMBERS))
            await self.routes.unsubscribe_node(self.id)
            await self.bus.start(self.id, self.delivery.deliver)
            self._keeper = self.loop.create_task(self._keep_number())
            return await self.server.start()
        except BaseException:
            await self._close_backends()
            raise

    async def stop(self) -> None:
        """Drain sessions, let accepted requests finish (their appends commit), flush the store."""
        await self.server.drain()
        if self._keeper is not None:
            self._keeper.cancel()
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

    async def _keep_number(self) -> None:
        """Renew the node number's lease; should it have lapsed (the routes were unreachable
        for its whole TTL), take a number again rather than risk another node's ids."""
        while True:
            await asyncio.sleep(NUMBER_LEASE / 3)
            try:
                if not await self.routes.renew_number(self.ids.node, self.id, NUMBER_LEASE):
                    self.ids.set_node(await self.routes.lease_number(self.id, NUMBER_LEASE, NODE_NUMBERS))
                    log.warning("node number lease lapsed; leased another", extra={"number": self.ids.node})
            except Exception:
                log.exception("node number lease renewal failed")

    # -- news from other nodes ------------------------------------------------------------------

    def _refresh(self, keys: tuple[str, ...]) -> None:
        for key in keys:
            kind, _, number = key.partition(":")
            if kind == "u" and int(number) in self.state.users:
                self.state.reload(key, self._reload_user(UserId(int(number))))
            elif kind == "g" and int(number) in self.state.groups:
                self.state.reload(key, self.state.reload_group(GroupId(int(number))))

    async def _reload_user(self, user_id: UserId) -> None:
        changed = await self.state.reload_user(user_id)
        if changed is None or not self.table.online(user_id):
            return
        old, new = ({c for c in s.convs if is_group(c)} for s in changed)
        self.delivery.offline(user_id, old - new)  # groups they left elsewhere
        self.delivery.online(user_id, new - old)  # and joined

    def _remote_message(self, frame: bytes) -> None:
        """A message committed or recalled on another node: this node's heads and lists follow."""
        stored = stored_message(bodies.decode(memoryview(frame)[HEADER_SIZE:], bodies.Message))
        if frame[1] == Op.RECALL_PUSH:
            self.conversations.recalled(stored)
        else:
            self.conversations.committed(stored)

    def _unsubscribed(self, convs: list[ConvId]) -> None:
        """No member of these groups is online here: stop holding them (another node may
        change them unheard)."""
        for conv in convs:
            if is_group(conv):
                self.state.forget_group(GroupId(parse_conv(conv)[1]))

    def _offline(self, user_id: UserId) -> None:
        self._quota.forget(user_id)
        self.state.forget_user(user_id)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a request as a task that shutdown waits for."""
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _store(config: Config) -> Store:
    if not config.store:
        return SqliteStore(config.data_dir / "edgeim.db", synchronous=config.sqlite_sync)
    from ..backends.mysql import MysqlStore  # the cluster backends' clients are an extra
    return MysqlStore(config.store)


def _routes(config: Config) -> Routes:
    if not config.routes:
        return MemoryRoutes()
    from ..backends.redis import RedisRoutes
    # redis://host:port/db?prefix=P: several deployments (or test runs) can share a server
    url, _, query = config.routes.partition("?")
    prefix = urllib.parse.parse_qs(query).get("prefix", ["im:"])[0]
    return RedisRoutes(url, prefix=prefix)


def _bus(config: Config) -> Bus:
    if not config.bus:
        return LocalBus()
    from ..backends.rocketmq import RocketMqBus
    return RocketMqBus(config.bus.removeprefix("rocketmq://").rstrip("/"))


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
