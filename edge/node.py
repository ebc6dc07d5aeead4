"""A node: the composition root. It wires the backends (store, routes, bus), the
in-memory state, the services and the edge, and owns startup and orderly shutdown."""
from __future__ import annotations

import asyncio
import fcntl
import hashlib
import hmac
import logging
import math
import os
import secrets
import shutil
import time
import urllib.parse
from pathlib import Path
from typing import Any, Coroutine

from ..backends.localfiles import LocalFiles
from ..backends.memory import LocalBus, MemoryRoutes
from ..backends.protocols import Files
from ..backends.protocols import Bus, ConvId, GroupId, NewMessage, NodeId, Refresh, Routes, Store, StoreUnavailable, UserId
from ..backends.sqlite import SqliteStore
from ..core_ext.fanout import Outbox, RoutingTable
from ..ops.config import ADMIN_OFF, ADMIN_TOKEN_FILE, Config
from ..services.accounts import Accounts
from ..services.auth import AuthService, Guesses, Hashing, Passwords, default_workers
from ..services.conversations import Conversations
from ..services.delivery import Delivery
from ..services.files import FileGrants, file_keys
from ..services.groups import Groups, Invitations, Membership
from ..services.conversations import is_group, parse_conv
from ..services.ids import IdGenerator, NumberLease
from ..services.messages import Messages
from ..services.pipeline import Pipeline
from ..services.calls import Calls
from ..services.indicators import Typing
from ..services.presence import CHANNEL, Audience, PresenceWatch
from ..services.quota import SendQuota
from ..services.reactions import Reactions
from ..services.social import Social
from ..services.state import State
from ..services.users import Users
from ..services.views import Views
from .api import Api
from .http import HttpServer, add_file_routes, add_health_routes, add_web_routes, web_app_dir
# operations: metrics, the admin API, the node registry, reload
import dataclasses
from ..backends.protocols import NodeInfo
from ..ops.logs import set_level
from ..ops.gcwatch import GcWatch
from ..ops.metrics import EDGE, LoopLag, monotonic_rate
from ..ops.version import VERSION
from .admin import add_ops_routes
from .presence import Presence
from .readiness import Readiness
from .server import EdgeServer
from .session import AUTHENTICATED, Session

__all__ = ["Node", "DataDirInUse"]

log = logging.getLogger("edgeim.node")

#: seconds a node's registry record lives without a newer announcement (every ROUTES_CHECK)
REGISTRY_TTL = 10.0
#: settings SIGHUP reloads (Node.reload); the others need a restart
RELOADABLE = ("log_level", "rate", "burst", "flood_limit", "bad_frame_limit", "auth_timeout", "idle_timeout",
              "max_write_buffer", "user_send_rate", "user_send_burst", "user_send_bytes_rate",
              "user_send_bytes_burst", "login_rate", "login_burst", "login_backlog", "login_account_failures",
              "login_account_lock", "login_account_lock_max", "max_sessions_per_user")
#: seconds between two renewals of the lease, which also tell whether the routes lost this
#: node's entries (Redis restarted empty): then they are written again at once
ROUTES_CHECK = 2.0
#: seconds between two readiness probes of each backend
PROBE_EVERY = 1.0


class DataDirInUse(RuntimeError):
    """Another running node holds the data dir (two writers would corrupt the seqs)."""


class CannotListen(OSError):
    """One of the node's two ports cannot be listened on (taken, or not an address here)."""

    def __init__(self, what: str, host: str, port: int, error: OSError) -> None:
        reason = os.strerror(error.errno) if error.errno else str(error)  # (asyncio's message repeats the address)
        super().__init__(error.errno, f"cannot listen on {host}:{port} (the {what} port): {reason}")
        self.what, self.host, self.port = what, host, port

    def __str__(self) -> str:
        return str(self.strerror)


class Node:
    """Wires each part with what it uses, explicitly: backends, then the in-memory state
    and the services over them, then the edge (routing table, presence, handlers, server)."""

    def __init__(self, config: Config, store: Store | None = None, routes: Routes | None = None, bus: Bus | None = None,
                 files: Files | None = None) -> None:
        self.config = config
        self.id = NodeId(config.node_id)
        self.loop = asyncio.get_running_loop()
        try:
            config.data_dir.mkdir(parents=True, exist_ok=True)
            secret = config.token_secret or _kept_secret(config.data_dir / "token.secret")
            # the admin API's bearer token ("" when it is off); with none set, one kept in the
            # data dir, so `im user ...` on this machine works out of the box
            self.admin_token_file = config.data_dir / ADMIN_TOKEN_FILE if not config.admin_token else None
            self.admin_token = ("" if config.admin_token == ADMIN_OFF else config.admin_token
                                or _kept_secret(config.data_dir / ADMIN_TOKEN_FILE))
        except OSError as exc:
            raise StoreUnavailable(f"cannot use data dir {config.data_dir}: {exc}") from None
        self.store = store or _store(config)
        self.routes = routes or _routes(config)
        self.bus = bus or _bus(config)
        self.files = files or _files(config, secret)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._lock_fd = -1
        self._keeper: asyncio.Task[None] | None = None
        self._expirer: asyncio.Task[None] | None = None

        self.table = RoutingTable()
        self.outbox = Outbox(self.loop)
        self.outbox.max_bytes = config.node_max_write_buffer
        # embedded routes and bus: no other node can exist, nothing is routed beyond this one
        self.delivery = Delivery(self.id, self.routes, self.bus, self.table, self.spawn, alone=not config.bus)
        self.state = State(self.store)
        self.auth = AuthService(self.store, secret, config.token_ttl,
                                Passwords(config.password_memory_kib, config.password_time_cost),
                                Hashing(default_workers(), config.login_backlog, config.login_rate, config.login_burst),
                                Guesses(config.login_account_failures, config.login_account_lock,
                                        config.login_account_lock_max))
        self.conversations = conversations = Conversations(self.store, self.state, self.delivery.to_users,
                                                           self.delivery.refresh)
        self.users = users = Users(self.store)
        self.groups = groups = Groups(self.store, self.state, Membership(
            self.delivery.to_users, self.delivery.to_conv, self.delivery.joined, self.delivery.left,
            self.delivery.refresh, self.delivery.reach,
        ), config.group_max_members, config.group_creates_per_hour,
            member_pushes=(config.group_join_rate, config.group_join_burst),
            invitations=Invitations(config.group_add_default, config.group_invite_ttl,
                                    config.group_invites_held, config.group_invites_sent,
                                    config.group_invites_per_hour))
        # its node number is leased at start; no id is made before (the fence is shut)
        self.ids = IdGenerator(valid_until=-math.inf)
        self.number_lease = NumberLease(self.routes, self.id, self.ids, config.number_lease)
        messages = Messages(self.store, self.state, users, self.ids, conversations, groups, config.strangers_may_send,
                            config.recall_window, on_new=self._shares_files, edit_window=config.edit_window,
                            reply_snippet=config.reply_snippet)
        self.pipeline = pipeline = Pipeline(self.store, conversations, self.delivery)
        social = Social(self.store, self.state, self.delivery.to_users, users.exists, self.delivery.refresh)
        quota = SendQuota(config.user_send_rate, config.user_send_burst, config.user_send_bytes_rate,
                          config.user_send_bytes_burst,
                          pushes=(config.user_fanout_rate, config.user_fanout_burst),
                          push_bytes=(config.user_fanout_bytes_rate, config.user_fanout_bytes_burst),
                          node_pushes=(config.node_fanout_rate, config.node_fanout_rate),
                          node_push_bytes=(config.node_fanout_bytes_rate, config.node_fanout_bytes_rate))
        self._quota = quota
        # rich messaging: presence watches, typing, calls
        audience = Audience(config.strangers_may_send)
        self.watch = PresenceWatch(self.id, self.store, self.routes, self.state, audience, self.delivery.to_conv,
                                   self.delivery.refresh, self.spawn, self.loop.call_later, config.presence_debounce,
                                   config.presence_rate, config.presence_burst, config.presence_max_watch)
        self.delivery.channels[CHANNEL] = self.watch.deliver
        self.typing = Typing(self.state, groups, audience, self.delivery.to_users, self.delivery.to_conv,
                             config.typing_rate, config.typing_burst, group_pushes=config.group_typing_rate)
        self.calls = Calls(self.routes, audience, users.exists,
                           lambda *record: pipeline.record(messages.server_message(*record)),
                           self.delivery.to_users, self.delivery.to_terminal, self.spawn, self.loop.call_later,
                           config.call_ring_timeout, config.call_ttl,
                           invites_per_minute=config.call_invites_per_minute)
        self.presence = Presence(self.id, config.route_ttl, self.table, self.routes, self.delivery, self.state, self.spawn,
                                 config.max_sessions_per_user, self._offline, watch=self.watch, calls=self.calls)
        self._file_grants = FileGrants(self.files, conversations.floor, config.file_max_size, config.file_types,
                                       config.file_grant_ttl, config.file_grants_per_minute,
                                       forwarded_to=self.store.file_convs)
        self.accounts = Accounts(self.id, self.store, self.state, users, self.auth, groups, self.routes, self.delivery,
                                 self._file_grants.avatar, config.profile_changes_per_hour,
                                 config.password_changes_per_hour, config.profile_bio_max,
                                 config.delete_erases_messages, config.profile_nickname_max)
        self.reactions = Reactions(self.store, conversations, self.delivery, config.reaction_max_emoji,
                                   config.reaction_max_per_user, config.reactions_per_minute)
        self.views = Views(self.store, self.state, conversations, self.delivery, config.max_message_pins,
                           config.view_changes_per_minute, config.pins_per_minute)
        self.api = Api(self.id, self.state, self.auth, self.presence, self.delivery, messages, pipeline, conversations,
                       social, groups, quota, files=self._file_grants, watch=self.watch, typing=self.typing, calls=self.calls,
                       users=users, accounts=self.accounts, reactions=self.reactions, forward_max=config.forward_max,
                       views=self.views)
        self._spawn_cb, self._release_cb = self.spawn, self.presence.release
        self.server = EdgeServer(config, self.loop, self._new_session, self.presence.renew, self.unready)
        # the HTTP listener: health, and the local files' signed URLs (S3 serves its own)
        self.http = HttpServer(config)
        add_health_routes(self.http, lambda: self.server.draining, self.unready)
        if isinstance(self.files, LocalFiles):
            add_file_routes(self.http, self.files)
        # operations: /metrics, /version, the admin API; the registry record; drain on request
        EDGE.on = config.metrics
        self.started_at = time.time()
        self.address = ""  # ws://host:port/ws once listening
        self.ws_port = 0  # the WebSocket port, once listening
        self.routes_ok = True  # False while the routes backend fails (the announcements tell)
        # each backend's last probe (/readyz): a backend that hangs is down within the deadline
        self.readiness = Readiness({
            "store": self._probe_store,
            "routes": self.routes.ping,
            "bus": self.bus.ping,
        }, PROBE_EVERY, config.backend_probe_timeout)
        self.stopping = asyncio.Event()  # set by the admin API's drain: the serving command stops the node
        self.loop_lag = LoopLag(self.loop) if config.metrics else None
        self.gc = GcWatch(self.loop, config.gc_freeze_every, config.gc_young)
        self._announcer: asyncio.Task[None] | None = None
        self._load_samples: list[tuple[float, int]] = []
        add_ops_routes(self.http, self)
        app = web_app_dir(config.web_dir)
        if app is not None:  # last: the app's catch-all route
            add_web_routes(self.http, app, lambda: self.ws_port, config.web_ws_url, config.recall_window,
                           config.edit_window)
        # what other nodes tell this one (nothing comes on embedded defaults)
        self.delivery.on_refresh = self._refresh
        self.delivery.on_message = pipeline.on_remote
        self.delivery.on_lost = self._lost
        self._resync: asyncio.Task[None] | None = None
        self._resync_again = False
        self.delivery.reloading = lambda: bool(self.state.reloading)
        self.delivery.settled = lambda: self.state.settled(*list(self.state.reloading))
        self.delivery.on_unsubscribed = self._unsubscribed

    def _new_session(self) -> Session:
        # the callbacks are bound once: a bound method made per session is two more objects
        # per connection for the cycle collector to traverse
        return Session(self.config, self.loop, self.outbox, self.api.handlers, self._spawn_cb, self.server.sessions,
                       self._release_cb)

    async def start(self) -> tuple[str, int]:
        """Open the backends and listen; on failure, release what was taken and raise."""
        self._lock_fd = _lock(self.config.data_dir)
        try:
            await self.store.open()
            # a number no other live node holds, for message ids; subscriptions left by an
            # earlier run under this node id (a crash) go
            await self.number_lease.acquire()
            await self.routes.unsubscribe_node(self.id)
            await self.bus.start(self.id, self.delivery.deliver)
            self._keeper = self.loop.create_task(self._keep_number())
            await self.files.open()
            self._expirer = self.loop.create_task(self._expire_unshared())
            try:
                await self.http.start()
            except OSError as exc:
                raise CannotListen("HTTP", self.config.host, self.config.http_port, exc) from None
            if isinstance(self.files, LocalFiles) and not self.files.base_url:
                self.files.base_url = self.http.url
                if self.config.host in ("0.0.0.0", "::", ""):
                    log.warning("file URLs name an address clients cannot reach: set IM_FILES_URL",
                                extra={"url": self.http.url})
            if self.config.cluster and isinstance(self.files, LocalFiles):
                log.warning("a cluster node keeps files on its own disk: set IM_FILES to an s3:// URL")
            try:
                host, port = await self.server.start()
            except OSError as exc:
                raise CannotListen("WebSocket", self.config.host, self.config.port, exc) from None
            self.ws_port = port
            self.address = f"ws://{f'[{host}]' if ':' in host else host}:{port}/ws"
            if self.loop_lag is not None:
                self.loop_lag.start()
            self.gc.start()  # last: what start-up made is frozen
            await self._announce()
            self._announcer = self.loop.create_task(self._keep_announcing())
            self.readiness.start()
            return host, port
        except BaseException:
            await self.readiness.stop()
            await self.http.stop()
            await self._close_backends()
            raise

    async def stop(self) -> None:
        """Drain sessions, let accepted requests finish (their appends commit), flush the store."""
        self.server.draining = True
        if self._announcer is not None:
            self._announcer.cancel()
            await self._announce()  # the registry says "draining" while it does
        await self.server.drain(self.config.drain_timeout)
        await self.http.stop()  # uploads in progress get a few seconds
        if self._keeper is not None:
            self._keeper.cancel()
        if self._expirer is not None:
            self._expirer.cancel()
        await self.readiness.stop()
        if self.loop_lag is not None:
            self.loop_lag.stop()
        self.gc.stop()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=self.config.drain_timeout)
        try:
            await self.routes.withdraw(self.id)
        except Exception:
            log.warning("could not withdraw from the node registry (the record expires)", exc_info=True)
        await self._close_backends()

    async def _close_backends(self) -> None:
        await self.bus.close()
        await self.routes.close()
        await self.store.close()
        await self.files.close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1

    def _shares_files(self, new: NewMessage) -> None:
        """A message about to be stored: the uploads it references are kept (not expired)."""
        keys = file_keys(new.type, new.content)
        if keys:
            self.spawn(self._file_grants.shared(keys))

    async def _expire_unshared(self) -> None:
        """Delete the uploads no message referenced within file_unshared_ttl: a sweep every
        tenth of it (at most every 10 min), so one is gone at most 1.1 TTL after its upload."""
        ttl = self.config.file_unshared_ttl
        while True:
            await asyncio.sleep(min(max(ttl / 10, 0.1), 600.0))
            try:
                expired = await self.files.expire(ttl)
            except Exception:
                log.exception("expiring unshared uploads failed")
                continue
            if expired:
                log.info("unshared uploads expired", extra={"files": expired})

    async def _keep_number(self) -> None:
        """Renew the node number's lease every ROUTES_CHECK seconds (``NumberLease``: ids are
        refused with 5001 while the lease is not known to be valid). Should it have lapsed
        (the routes were unreachable for its whole TTL, the node was frozen past it, or
        Redis restarted and lost every key), take a number again rather than risk another
        node's ids (the same one when it is free), and write this node's routes and
        subscriptions again: what lost the lease lost them too, and until then no other
        node could reach this node's users."""
        failing = False
        while True:
            await asyncio.sleep(ROUTES_CHECK)
            try:
                if await asyncio.wait_for(self.number_lease.renew(), ROUTES_CHECK * 2):
                    await self._restore_routes()
                failing = False
            except Exception:
                if not failing:  # once per outage, not every check
                    log.exception("node number lease renewal failed")
                failing = True

    async def _restore_routes(self) -> None:
        """Bind the route of every live session here again and subscribe again to the group
        conversations of the users online here (the routes lost them)."""
        sessions = [s for s in list(self.server.sessions) if s.state == AUTHENTICATED]
        for session in sessions:
            await self.presence.rebind(session)
        convs: set[str] = set()
        for user_id in {s.user_id for s in sessions}:
            user = self.state.users.get(user_id)
            if user is not None:
                convs.update(conv for conv in user.convs if is_group(conv))
        if convs:
            await self.routes.subscribe(self.id, [ConvId(c) for c in sorted(convs)])
        log.warning("routes written again", extra={"sessions": len(sessions), "convs": len(convs)})

    # -- operations: readiness, the registry, stats, reload ---------------------------------------

    async def _probe_store(self) -> None:
        """One indexed read; and, for the embedded store, room on the data dir's disk: a
        store that cannot write is not ready, even while no write has failed yet."""
        await self.store.get_user(UserId(0))
        if not self.config.store:
            free = await asyncio.to_thread(lambda: shutil.disk_usage(self.config.data_dir).free)
            if free < self.config.store_min_free:
                raise StoreUnavailable(f"the data dir has {free} bytes free (store_min_free: "
                                       f"{self.config.store_min_free})")

    def unready(self) -> str:
        """Why ``/readyz`` is 503 (backends down: failing, or not answering their probe in
        time), or "" when the node is ready but for a drain. Read from cached state: a
        request never waits on a backend."""
        down = [name for name, up in self.backends_up().items() if not up]
        if self.ids.fenced:
            down.append("ids")  # no confirmed node number lease: SEND answers 5001
        return ", ".join(f"{name} unavailable" for name in down)

    def ready(self) -> bool:
        return not self.server.draining and not self.unready()

    def backends_up(self) -> dict[str, bool]:
        up = self.readiness.up
        return {"store": self.store.healthy and up["store"], "routes": self.routes_ok and up["routes"],
                "bus": up["bus"]}

    def info(self) -> NodeInfo:
        """This node's registry record (``Routes.announce``), as of now."""
        now = time.time()
        state = "draining" if self.server.draining else "unready" if self.unready() else "ready"
        return NodeInfo(self.id, self.address, self.http.url, len(self.server.sessions),
                        round(monotonic_rate(self._load_samples, now, self.pipeline.acked), 1), VERSION,
                        int(self.started_at * 1000), int(now * 1000), state)

    def stats(self) -> dict[str, Any]:
        """What ``im stats`` prints: the node's record and its counters."""
        info = self.info()
        return {
            "node": info.id, "version": info.version, "state": info.state, "address": info.address,
            "http_url": info.http_url, "uptime_s": round(time.time() - self.started_at, 1),
            "connections": info.connections,
            "authenticated": sum(1 for s in list(self.server.sessions) if s.state == AUTHENTICATED),
            "users_online": len(self.state.users), "groups_loaded": len(self.state.groups),
            "messages": self.pipeline.acked, "messages_per_s": info.load,
            "frames_in": sum(EDGE.frames_in), "frames_out": sum(EDGE.frames_out) + sum(self.delivery.pushed),
            "errors": sum(EDGE.errors.values()), "logins": EDGE.logins[0], "logins_refused": EDGE.logins[1],
            "event_loop_lag_s": round(self.loop_lag.last, 4) if self.loop_lag is not None else None,
            "backends": self.backends_up(), "cluster": self.config.cluster, "metrics": self.config.metrics,
        }

    async def _announce(self) -> None:
        try:
            await self.routes.announce(self.info(), REGISTRY_TTL)
        except Exception:
            if self.routes_ok:  # once per outage
                log.exception("routes unavailable: the node registry announcement failed")
            self.routes_ok = False
        else:
            if not self.routes_ok:
                log.warning("routes available again")
            self.routes_ok = True

    async def _keep_announcing(self) -> None:
        """The node's registry record every ROUTES_CHECK seconds; a failure marks the
        routes down (``/readyz`` 503) until an announcement succeeds again."""
        while True:
            await asyncio.sleep(ROUTES_CHECK)
            await self._announce()

    def reload(self, config: Config) -> list[str]:
        """SIGHUP: take the log level and the limits of ``config``; the other settings need a
        restart (returned: the names of those that differ, which are ignored)."""
        old = self.config
        take = {name: getattr(config, name) for name in RELOADABLE}
        new = dataclasses.replace(old, **take)
        ignored = [f.name for f in dataclasses.fields(config)
                   if f.name not in RELOADABLE and getattr(config, f.name) != getattr(old, f.name)]
        self.config = self.server.config = new
        for session in list(self.server.sessions):
            session.config = new  # rate, burst, flood and bad-frame limits are read per frame
            if session.peer is not None:
                session.peer.max_bytes = new.max_write_buffer
        set_level(new.log_level)
        self._quota.set_rates(new.user_send_rate, new.user_send_burst, new.user_send_bytes_rate,
                              new.user_send_bytes_burst)
        self.auth.set_login_limits(new.login_rate, new.login_burst, new.login_backlog,
                                   (new.login_account_failures, new.login_account_lock, new.login_account_lock_max))
        self.presence._max_sessions = new.max_sessions_per_user  # (read at each login)
        log.warning("configuration reloaded", extra={"changed": sorted(n for n in RELOADABLE
                                                                       if getattr(old, n) != getattr(new, n)),
                                                     "ignored_need_restart": ignored})
        return ignored

    # -- news from other nodes ------------------------------------------------------------------

    def _refresh(self, refresh: Refresh) -> None:
        if refresh.profiles:  # changed or deleted elsewhere: read them anew when asked
            self.users.forget(refresh.profiles)
            if refresh.erased:
                for user in refresh.profiles:
                    self.accounts.erased_heads(user, int(time.time() * 1000))
        for user in refresh.users:
            if user in self.state.users:
                self.state.reload(f"u:{user}", self._reload_user(user))
        for group in refresh.groups:
            if group in self.state.groups:
                self.state.reload(f"g:{group}", self.state.reload_group(group))

    def _lost(self) -> None:
        """Pushes from another node were lost on the way here (a broker that went down, a
        node that could not route): what this node holds may be behind the store."""
        if self._resync is not None and not self._resync.done():
            self._resync_again = True
            return
        self._resync = asyncio.ensure_future(self._resync_all())
        self._tasks.add(self._resync)
        self._resync.add_done_callback(self._tasks.discard)

    async def _resync_all(self) -> None:
        """Read every user and group held here again from the store, then push each
        conversation head that moved to its members' devices here: the lists are true
        again, and each client syncs what it missed (docs/architecture.md)."""
        while True:
            self._resync_again = False
            self.users.clear()  # a profile change may have been lost too
            before = dict(self.state.heads)
            self._refresh(Refresh(tuple(self.state.users), tuple(self.state.groups)))
            try:
                await self.state.settled(*list(self.state.reloading))
            except Exception:
                log.exception("reading state again after lost pushes failed")
            moved = [head for conv, head in self.state.heads.items()
                     if (old := before.get(conv)) is None or old.seq < head.seq or old.recalled_by != head.recalled_by]
            self.pipeline.repush(moved)
            log.warning("pushes from another node were lost: state read again", extra={"heads_moved": len(moved)})
            if not self._resync_again:
                return

    async def _reload_user(self, user_id: UserId) -> None:
        changed = await self.state.reload_user(user_id)
        if changed is None or not self.table.online(user_id):
            return
        old, new = ({c for c in s.convs if is_group(c)} for s in changed)
        for conv in new - old:  # joined elsewhere: in memory for the list, as at a login
            await self.state.group(GroupId(parse_conv(conv)[1]))
        self.delivery.offline(user_id, old - new)  # groups they left elsewhere
        self.delivery.online(user_id, new - old)  # and joined

    def _unsubscribed(self, convs: list[ConvId]) -> None:
        """No member of these groups is online here: stop holding them (another node may
        change them unheard)."""
        for conv in convs:
            if is_group(conv):
                self.state.forget_group(GroupId(parse_conv(conv)[1]))

    def _offline(self, user_id: UserId) -> None:
        self._quota.forget(user_id)
        self.groups.forget(user_id)
        self.calls.forget(user_id)
        self.watch.forget_user(user_id)
        self.typing.forget(user_id)
        self.state.forget_user(user_id)
        self._file_grants.forget(user_id)
        self.accounts.forget(user_id)
        self.reactions.forget(user_id)
        self.views.forget(user_id)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a request as a task that shutdown waits for."""
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _store(config: Config) -> Store:
    if not config.store:
        return SqliteStore(config.data_dir / "edgeim.db", synchronous=config.sqlite_sync,
                           search_timeout=config.search_timeout)
    from ..backends.mysql import MysqlStore  # the cluster backends' clients are an extra
    return MysqlStore(config.store, read_timeout=config.store_timeout,
                      idle_transaction_timeout=config.store_idle_timeout, search_timeout=config.search_timeout)


def _routes(config: Config) -> Routes:
    if not config.routes:
        return MemoryRoutes()
    from ..backends.redis import RedisRoutes
    # redis://host:port/db?prefix=P: several deployments (or test runs) can share a server
    url, _, query = config.routes.partition("?")
    prefix = urllib.parse.parse_qs(query).get("prefix", ["im:"])[0]
    return RedisRoutes(url, prefix=prefix, timeout=config.routes_timeout)


def _files(config: Config, secret: str) -> Files:
    if config.files == "local":
        # the URLs' own key, derived from the token secret (a leaked URL shows nothing of it)
        key = hmac.new(secret.encode(), b"edgeim local files v1", hashlib.sha256).digest()
        return LocalFiles(config.data_dir / "files", key, config.files_url, min_free=config.files_min_free,
                          quota=config.file_quota)
    from ..backends.s3 import S3Files  # the minio SDK is in the cluster extra
    return S3Files.from_url(config.files)


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


def _kept_secret(path: Path) -> str:
    """A secret kept in the data dir (the token secret, the admin token), created on first
    start readable by its owner only, so tokens outlive restarts."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        secret = secrets.token_hex(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secret)
        return secret
