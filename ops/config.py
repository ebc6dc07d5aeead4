"""The one config object. Precedence: explicit values (CLI flags) > IM_* environment
variables > a TOML file (``--config`` or ``IM_CONFIG``) > defaults. Every field has an
``IM_<FIELD>`` variable, e.g. ``IM_PORT=9000``, and a key of the same name in the file
(``port = 9000``)."""
from __future__ import annotations

import dataclasses
import math
import os
import re
import socket
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

__all__ = ["Config", "ConfigError", "SECRET_FIELDS", "SECTIONS", "ADMIN_TOKEN_FILE", "ADMIN_OFF", "cpu_list",
           "field_docs", "flag", "masked", "settings_doc"]


#: shortest token secret accepted: 32 characters (e.g. 16 random bytes in hex, or more)
MIN_SECRET = 32
#: shortest admin (and metrics) token accepted
MIN_ADMIN_TOKEN = 16
#: the admin token kept in the data dir when none is set (created at first start, mode 0600)
ADMIN_TOKEN_FILE = "admin.token"
#: the admin_token that turns the admin API off
ADMIN_OFF = "off"
#: fewest different characters a secret (a token) may have: a random hex secret of 32
#: characters has fewer than 8 with a chance of 4 in 10^8, a hex token of 16 fewer than 6
#: with 3 in 10^5; a repeated letter or a short word repeated has fewer
MIN_SECRET_DISTINCT = 8
MIN_TOKEN_DISTINCT = 6


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names the setting."""


@dataclass(frozen=True, slots=True)
class Config:
    # A field's ``#:`` comment is its documentation: ``im serve --help``, ``im config show``
    # and docs/operations.md are made from it (a field without one shares the one above).
    #: address to listen on (0.0.0.0: every interface)
    host: str = "127.0.0.1"
    #: the WebSocket port; 0 picks a free one
    port: int = 8765
    #: where the SQLite store, the token secret, the admin token, the local files and the lock
    #: live
    data_dir: Path = Path("data")
    #: this node's id in the cluster (default: "<hostname>-<port>", or "<hostname>-<pid>" with port 0)
    node_id: str = ""
    #: debug, info, warning or error (SIGHUP reloads it)
    log_level: str = "info"
    #: HS256 secret for tokens, at least 32 characters of which 8 different (nodes of a
    #: cluster share it); empty: generated once and kept in <data_dir>/token.secret. Prefer
    #: the file or IM_TOKEN_SECRET to a flag, which anyone can read in the process list.
    token_secret: str = ""
    #: a file holding the token secret (read at start; instead of token_secret)
    token_secret_file: str = ""
    #: seconds a token may log in again (TOKEN_LOGIN)
    token_ttl: float = 7 * 24 * 3600.0
    #: close a connection that has not logged in after this many seconds (4002)
    auth_timeout: float = 10.0
    #: close a connection silent for this many seconds (4003); heartbeats keep it open
    idle_timeout: float = 90.0
    #: route entries live this long unless renewed by activity
    route_ttl: float = 120.0
    #: frames per second one connection may send, on average (4000 RATE_LIMITED beyond; SIGHUP
    #: reloads the limits)
    rate: float = 200.0
    #: frames one connection may send at once above its rate (the token bucket's size)
    burst: int = 400
    #: frames refused as over the rate that one connection may send before it is closed
    #: (4008 "flood"): a client that does not slow down on RATE_LIMITED
    flood_limit: int = 400
    #: malformed frames (bad header, unknown op, undecodable body, text messages) one
    #: connection may send, each answered with an ERROR, before it is closed (4008)
    bad_frame_limit: int = 32
    #: let several nodes share the port (SO_REUSEPORT); each needs its own data dir
    reuse_port: bool = False
    #: connections the kernel may hold for the node to accept (listen backlog; the kernel caps
    #: it at net.core.somaxconn). Past it new connections' SYNs are dropped and their clients
    #: wait a retransmit (1 s, 3 s, ...): keep it above the logins per second expected in a
    #: storm (e.g. every client reconnecting after a node restart)
    backlog: int = 4096
    #: bytes a connection may leave unread before it is dropped as a slow consumer (no close
    #: frame: it would queue behind what the client does not read)
    max_write_buffer: int = 4 * 1024 * 1024
    #: bytes all connections of the node may leave unread together; past it, one more than a
    #: sixteenth of max_write_buffer behind is dropped as its next frame is queued (0: no bound)
    node_max_write_buffer: int = 256 * 1024 * 1024
    #: SQLite synchronous mode: FULL (fsync every commit) or NORMAL (WAL: fsync at checkpoint)
    sqlite_sync: str = "FULL"
    #: argon2id cost of password hashes, memory in KiB (default: OWASP's minimum, 19 MiB);
    #: lower only for tests and benchmarks. Hashes of another cost are replaced at their
    #: user's next login.
    password_memory_kib: int = 19456
    #: argon2id cost of password hashes, passes (default: OWASP's minimum, 2)
    password_time_cost: int = 2
    #: password checks (REGISTER, LOGIN) per second per client address (4000 RATE_LIMITED beyond)
    login_rate: float = 5.0
    #: password checks one client address may ask for at once above its rate
    login_burst: int = 30
    #: password checks that may wait for a worker, node-wide; more are refused at once
    login_backlog: int = 32
    #: failed password checks (LOGIN) one account may have in a row on a node before its
    #: logins are refused (4000 RATE_LIMITED, before any hashing) for login_account_lock
    #: seconds; a success, or a day without failures, clears it. One check per account
    #: runs at a time.
    login_account_failures: int = 5
    #: seconds an account's logins are first refused for, twice as long after each further
    #: failure
    login_account_lock: float = 1.0
    #: the longest an account's logins are refused for after failures, in seconds
    login_account_lock_max: float = 900.0
    #: messages per second one account may send across all its sessions on a node (4000
    #: RATE_LIMITED beyond)
    user_send_rate: float = 50.0
    #: messages one account may send at once above its rate
    user_send_burst: int = 200
    #: content bytes per second one account may send across all its sessions on a node
    user_send_bytes_rate: float = 256 * 1024.0
    #: content bytes one account may send at once above its byte rate
    user_send_bytes_burst: int = 4 * 1024 * 1024
    #: pushes per second one account's messages may fan out to across its sessions on a node:
    #: a message costs one per member of its group, one if private (4000 RATE_LIMITED
    #: beyond; at the default a 2,000-member group takes five messages a second)
    user_fanout_rate: float = 10_000.0
    #: pushes one account's messages may fan out to at once above that rate
    user_fanout_burst: int = 20_000
    #: content bytes per second one account's messages may fan out: a message costs its
    #: size times the members it reaches (4000 RATE_LIMITED beyond)
    user_fanout_bytes_rate: float = 16 * 1024 * 1024.0
    #: content bytes one account's messages may fan out at once above that rate
    user_fanout_bytes_burst: int = 64 * 1024 * 1024
    #: pushes per second all group messages of a node may fan out to together, whoever
    #: sends them (a second's worth at once; group SENDs beyond: 4000 RATE_LIMITED; private
    #: messages are not counted)
    node_fanout_rate: float = 50_000.0
    #: content bytes per second all group messages of a node may fan out together (as
    #: node_fanout_rate)
    node_fanout_bytes_rate: float = 128 * 1024 * 1024.0
    #: live sessions (terminals) one account may have at once (4001 TOO_MANY_SESSIONS beyond)
    max_sessions_per_user: int = 10
    #: may users who are not friends send each other 1:1 messages? (default: friends only)
    strangers_may_send: bool = False
    #: members a new group may hold
    group_max_members: int = 2000
    #: groups one account may create per hour on a node (a bucket of that many, refilled
    #: evenly; 4000 RATE_LIMITED beyond)
    group_creates_per_hour: int = 30
    #: who may add a user who never chose (SETTINGS group_add) to a group: anyone, friends
    #: or nobody; the adds it does not allow become invitations the user accepts or declines
    group_add_default: str = "friends"
    #: seconds a group invitation stays pending before it expires
    group_invite_ttl: float = 7 * 24 * 3600.0
    #: pending group invitations one user may hold (3030 INVITATIONS_FULL beyond)
    group_invites_held: int = 100
    #: pending group invitations one user may have sent (3030 INVITATIONS_FULL beyond)
    group_invites_sent: int = 1000
    #: group invitations one account may send per hour on a node (a bucket of that many,
    #: refilled evenly; 4000 RATE_LIMITED beyond)
    group_invites_per_hour: int = 500
    #: seconds after sending during which a sender may recall a message (owners and admins
    #: of a group may recall any time)
    recall_window: float = 120.0
    #: seconds after sending during which a sender may edit a text message (EDIT; 3020
    #: EDIT_EXPIRED after it)
    edit_window: float = 172800.0
    #: characters of the quoted message's text a reply carries (its reply.snippet)
    reply_snippet: int = 100
    #: profile changes (PROFILE_SET) one account may make per hour on a node (a bucket of
    #: that many, refilled evenly; 4000 RATE_LIMITED beyond): each pushes to every friend
    #: and group member
    profile_changes_per_hour: int = 30
    #: password changes (PASSWORD_CHANGE) one account may make per hour on a node, as above;
    #: each hashes twice and closes the account's other sessions
    password_changes_per_hour: int = 5
    #: characters a profile's bio may hold (at most 1024; 3002 INVALID_ARGUMENT beyond)
    profile_bio_max: int = 256
    #: characters a nickname set with PROFILE_SET may hold (1..64; 3002 INVALID_ARGUMENT beyond)
    profile_nickname_max: int = 64
    #: when an account is deleted, erase the contents of every message it sent (each becomes
    #: a tombstone, as a recall does); off: they stay, shown as sent by a deleted user, in
    #: the other party's copy of the conversation
    delete_erases_messages: bool = False
    #: different emoji one message may carry as reactions (REACT beyond: 3023 REACTION_LIMIT)
    reaction_max_emoji: int = 20
    #: reactions one user may put on one message, each a different emoji (3023 beyond)
    reaction_max_per_user: int = 3
    #: reactions (added or taken back) one account may make a minute, as a bucket of that
    #: many (4000 RATE_LIMITED beyond)
    reactions_per_minute: int = 120
    #: messages one FORWARD may copy at once (3025 FORWARD_LIMIT beyond; at most 100)
    forward_max: int = 20
    #: message pins one conversation may hold (PIN_MESSAGE beyond: 3027 PINS_FULL)
    max_message_pins: int = 20
    #: DELETE_FOR_ME and CLEAR_HISTORY requests one account may make per minute on a node
    #: (a bucket of that many, refilled evenly; 4000 RATE_LIMITED beyond)
    view_changes_per_minute: int = 60
    #: PIN_MESSAGE and UNPIN_MESSAGE requests one account may make per minute on a node (as
    #: view_changes_per_minute)
    pins_per_minute: int = 30
    #: the store shared by a cluster's nodes, a MySQL-protocol server
    #: (mysql://user:pass@host:port/db, also tidb:// and mariadb://). The cluster backends
    #: are set all three or none (none: embedded SQLite, memory routes, in-process bus)
    store: str = ""
    #: the cluster's routes and node registry, Redis (redis://host:port/db, ?prefix=P)
    routes: str = ""
    #: the cluster's bus between nodes, a RocketMQ name server (rocketmq://host:port)
    bus: str = ""
    #: seconds a Redis command of the routes may take (connect, each reply) before it fails:
    #: a hung Redis fails routes calls instead of hanging them
    routes_timeout: float = 2.0
    #: seconds the store's connections wait on the database server for each reply (MySQL
    #: read/write timeout; connecting: 5 s at most); a hung server fails the call after it
    store_timeout: int = 10
    #: seconds the database server lets a transaction of this node sit idle (a frozen node)
    #: before it rolls it back and drops the connection, releasing its row locks (MariaDB
    #: idle_transaction_timeout, TiDB tidb_idle_transaction_timeout); 0: the server's default
    store_idle_timeout: int = 10
    #: seconds a backend (store, routes, bus) has to answer the node's readiness probe (one
    #: per second each) before /readyz answers 503 naming it
    backend_probe_timeout: float = 2.0
    #: seconds a node's number for message ids is leased for (renewed every 2 s); a node
    #: that cannot renew it makes no message id (SEND: 5001) once it may have lapsed
    number_lease: float = 60.0
    # -- the HTTP listener and files ------------------------------------------------------------
    #: the node's HTTP port (health, the local files' signed URLs); 0 picks a free one;
    #: default (-1): the WebSocket port + 1 (8766), or a free port when that one is 0
    http_port: int = -1
    #: where file bytes live: "local" (under <data_dir>/files, served on the HTTP port) or an
    #: S3-compatible server, s3://ACCESS_KEY:SECRET_KEY@host:port/bucket (?region=R&secure=1;
    #: clients reach that host with the signed URLs); a cluster needs s3 (one node's disk is
    #: not the others')
    files: str = "local"
    #: the base URL clients reach this node's HTTP listener at, for local files' URLs
    #: (default http://<host>:<http port>; set it behind a proxy or with host 0.0.0.0)
    files_url: str = ""
    #: the web chat app's built files, served at / of the HTTP port; empty: the app built in
    #: the package (web/app/dist, made by `make web`); "off": no app
    web_dir: str = ""
    #: the WebSocket URL the web app connects to (default ws://<the host the page was loaded
    #: from>:<port>/ws; set it behind a proxy, e.g. wss://chat.example.com/ws, or a path
    #: such as /ws: the page's own host and port)
    web_ws_url: str = ""
    #: seconds a client of the HTTP port has to send a request's line and headers, counted
    #: from when it connected or from its previous answer (idle keep-alive connections
    #: close then too)
    http_header_timeout: float = 10.0
    #: seconds a request body on the HTTP port may pause without a byte arriving, and an
    #: answer may wait for its client to read on; a stalled upload or download is cut
    http_body_timeout: float = 30.0
    #: connections the HTTP port holds at once; at the cap the one waiting longest for its
    #: request headers is closed to make room, and when all are busy with requests a new one
    #: gets 503. 0: a quarter of the process's open-file limit (ulimit -n), at most 4096
    http_max_connections: int = 0
    #: largest file, in bytes, an upload grant is given for (3010 FILE_TOO_LARGE beyond)
    file_max_size: int = 100 * 1024 * 1024
    #: mime types an upload grant is given for, comma-separated; "type/*" takes a whole
    #: type, "*" everything (3011 FILE_TYPE_REFUSED otherwise)
    file_types: str = ("image/*,video/*,audio/*,text/plain,application/pdf,application/zip,"
                       "application/gzip,application/json,application/msword,application/vnd.ms-excel,"
                       "application/vnd.ms-powerpoint,application/vnd.openxmlformats-officedocument.wordprocessingml.document,"
                       "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet,"
                       "application/vnd.openxmlformats-officedocument.presentationml.presentation,"
                       "application/octet-stream")
    #: seconds a file grant's signed URL stays good
    file_grant_ttl: float = 900.0
    #: upload and download grants one account may get per minute on a node (4000 RATE_LIMITED beyond)
    file_grants_per_minute: int = 600
    #: bytes of files one account may keep on this node's disk (local files; 3014
    #: FILE_QUOTA_EXCEEDED for an upload past it; 0: no bound)
    file_quota: int = 1024**3
    #: seconds after its upload that a file no message references is deleted (local files;
    #: on S3, set a lifecycle rule): a message that shares it later finds nothing
    file_unshared_ttl: float = 86400.0
    #: free bytes the disk of the local files keeps for the store: an upload grant (5001) or
    #: an upload (HTTP 507) that would leave less is refused, so messaging goes on
    files_min_free: int = 1024**3
    #: free bytes of the data dir below which /readyz says "store unavailable" (the embedded
    #: store is about to fail its commits)
    store_min_free: int = 64 * 1024**2
    # -- presence, typing and calls (rich messaging) ------------------------------------------
    #: seconds a user's presence changes are collected before their watchers get one push
    presence_debounce: float = 2.0
    #: PRESENCE and PRESENCE_SUBSCRIBE requests per second per account (4000 RATE_LIMITED
    #: beyond)
    presence_rate: float = 10.0
    #: PRESENCE and PRESENCE_SUBSCRIBE requests one account may make at once above its rate
    presence_burst: int = 50
    #: users one session may watch at once (4000 RATE_LIMITED beyond)
    presence_max_watch: int = 1000
    #: TYPING_PUSH frames per second one group's typing signals may make (one per member);
    #: past it a signal is dropped, still answered TYPING_OK (typing is a hint)
    group_typing_rate: float = 2000.0
    #: GROUP_PUSH frames per second one group's joins and leaves may make (one per member;
    #: 4000 RATE_LIMITED beyond, nothing changed)
    group_join_rate: float = 2000.0
    #: such pushes one group's joins and leaves may make at once above that rate
    group_join_burst: int = 40_000
    #: TYPING signals per second per account (4000 RATE_LIMITED beyond)
    typing_rate: float = 2.0
    #: TYPING signals one account may send at once above its rate
    typing_burst: int = 10
    #: seconds a call rings before it ends as missed
    call_ring_timeout: float = 60.0
    #: seconds an answered call is kept without a hang-up (a crashed node's calls end then)
    call_ttl: float = 4 * 3600.0
    #: call invitations one account may make per minute on a node (a bucket of that many,
    #: refilled evenly; 4000 RATE_LIMITED beyond)
    call_invites_per_minute: int = 10
    #: seconds a SEARCH may take, waiting for the search index included; past it the search
    #: is stopped and answered 3013 SEARCH_TIMEOUT (one search per account at a time: 4000
    #: RATE_LIMITED for a second). Searches run beside the reads, never before a SYNC
    search_timeout: float = 2.0
    # -- operations: admin API, metrics, lifecycle ----------------------------------------------
    #: bearer token of the admin API on the HTTP port (im user, group, cluster, stats), at
    #: least 16 characters of which 6 different (nodes of a cluster share it); empty:
    #: generated once and kept in <data_dir>/admin.token, where the im commands on the same
    #: machine find it; "off": the admin API is off (403). No flag: IM_ADMIN_TOKEN, the config
    #: file or admin_token_file (a flag shows it to anyone who lists processes)
    admin_token: str = ""
    #: a file holding the admin token (read at start; instead of admin_token)
    admin_token_file: str = ""
    #: serve /metrics (Prometheus text format) and count what it reports (--no-metrics or
    #: IM_METRICS=false: neither)
    metrics: bool = True
    #: bearer token /metrics asks for (Prometheus: authorization.credentials_file), at least
    #: 16 characters of which 6 different; empty: /metrics answers loopback clients only (403
    #: to others). No flag: IM_METRICS_TOKEN, the config file or metrics_token_file
    metrics_token: str = ""
    #: a file holding the metrics token (read at start; instead of metrics_token)
    metrics_token_file: str = ""
    #: seconds a draining node (SIGTERM, im cluster drain) waits for its clients to leave and
    #: its accepted requests to finish before it closes what remains and exits
    drain_timeout: float = 10.0
    #: seconds between two freezes of the objects that survived the young garbage collections
    #: (gc.freeze: no later collection traverses them, so a full collection's pause does not
    #: grow with the connections held); what start-up made is frozen too; 0: never
    #: (docs/architecture.md, "Garbage collection")
    gc_freeze_every: float = 5.0
    #: tracked objects the young generation gathers before it is collected (the first of
    #: gc.set_threshold; CPython's default is 700): fewer, slightly longer young collections,
    #: about 1 µs less of a send's CPU under send_1to1 (docs/benchmarks.md)
    gc_young: int = 10_000
    #: the CPUs the node's threads may run on, as Linux writes a CPU list ("1", "0-3",
    #: "2,5"); empty: wherever the kernel puts them. A node's event loop and its SQLite
    #: writer take turns holding the GIL: on one core each turn is a switch on that core,
    #: across two it is a wake-up of the other core. One node a core, pinned, spent about a
    #: tenth less CPU a send and ran steadier (docs/operations.md, "One node a core")
    cpus: str = ""

    @property
    def cluster(self) -> bool:
        """Does this node share users and messages with others (any cluster backend set)?"""
        return bool(self.store or self.routes or self.bus)

    @classmethod
    def load(cls, overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
             file: str | os.PathLike[str] | None = None) -> Config:
        """Build a Config from ``overrides`` (None values are ignored), then IM_* env vars,
        then the TOML ``file`` (default: the one IM_CONFIG names, if any), then defaults.
        Raises ConfigError naming the setting (or the file) that is wrong."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        file = file or env.get("IM_CONFIG") or None
        if file:
            values.update(_read_file(Path(file)))
        for f in fields(cls):
            raw = env.get(f"IM_{f.name.upper()}")
            if raw is not None and raw != "":
                values[f.name] = _convert(f.name, f.type, raw)
        for name, value in (overrides or {}).items():
            if value is not None:
                values[name] = value
        secret_file = values.pop("token_secret_file", "")
        if secret_file:
            if values.get("token_secret"):
                raise ConfigError("give token_secret or token_secret_file, not both")
            try:
                values["token_secret"] = Path(secret_file).read_text().strip()
            except OSError as exc:
                raise ConfigError(f"cannot read token_secret_file {secret_file}: {exc.strerror}") from None
        for name in ("admin_token", "metrics_token"):
            token_file = values.pop(f"{name}_file", "")
            if token_file:
                if values.get(name):
                    raise ConfigError(f"give {name} or {name}_file, not both")
                try:
                    values[name] = Path(token_file).read_text().strip()
                except OSError as exc:
                    raise ConfigError(f"cannot read {name}_file {token_file}: {exc.strerror}") from None
        config = cls(**values)
        config._validate()
        if not config.node_id:
            suffix = config.port or os.getpid()  # port 0 is picked at bind time: use the pid
            config = dataclasses.replace(config, node_id=f"{socket.gethostname()}-{suffix}")
        if config.http_port < 0:  # beside the WebSocket port; a free one when that one is picked too
            config = dataclasses.replace(config, http_port=config.port + 1 if 0 < config.port < 65535 else 0)
        return config

    def _validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0..65535, got {self.port}")
        if self.backlog < 1:
            raise ConfigError(f"backlog must be at least 1, got {self.backlog}")
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"log_level must be debug, info, warning or error, got {self.log_level!r}")
        if self.sqlite_sync.upper() not in ("FULL", "NORMAL"):
            raise ConfigError(f"sqlite_sync must be FULL or NORMAL, got {self.sqlite_sync!r}")
        for name in ("token_ttl", "auth_timeout", "idle_timeout", "route_ttl", "rate"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        if self.user_send_rate <= 0 or self.user_send_bytes_rate <= 0 or self.user_send_burst < 1 \
                or self.user_send_bytes_burst < 32 * 1024:
            raise ConfigError("user_send_* must be positive, the byte burst at least one message (32768)")
        if min(self.user_fanout_rate, self.user_fanout_bytes_rate, self.node_fanout_rate,
               self.node_fanout_bytes_rate) <= 0 or self.user_fanout_burst < 1 or self.user_fanout_bytes_burst < 1:
            raise ConfigError("user_fanout_* and node_fanout_* must be positive")
        if self.max_write_buffer < 0 or self.node_max_write_buffer < 0:
            raise ConfigError("max_write_buffer and node_max_write_buffer must be 0 or more bytes")
        if self.max_sessions_per_user < 1:
            raise ConfigError("max_sessions_per_user must be at least 1")
        if self.store and not self.store.startswith(("mysql://", "mariadb://", "tidb://")):
            raise ConfigError(f"store must be a mysql:// (or tidb://, mariadb://) URL, got {self.store!r}")
        if self.routes and not self.routes.startswith("redis://"):
            raise ConfigError(f"routes must be a redis:// URL, got {self.routes!r}")
        if self.bus and not self.bus.startswith("rocketmq://"):
            raise ConfigError(f"bus must be a rocketmq://host:port URL, got {self.bus!r}")
        if self.cluster:
            missing = [name for name in ("store", "routes", "bus") if not getattr(self, name)]
            if missing:
                raise ConfigError(f"a cluster node needs store, routes and bus; {', '.join(missing)} missing")
            if not self.token_secret:
                raise ConfigError("a cluster node needs the token secret its peers use (token_secret_file or "
                                  "IM_TOKEN_SECRET): a secret of its own would refuse their tokens")
        if not -1 <= self.http_port <= 65535:
            raise ConfigError(f"http_port must be 0..65535, got {self.http_port}")
        if self.files != "local" and not re.fullmatch(r"s3://[^:@/]+:[^@/]+@[^/@]+/[^/?]+/?(\?.*)?", self.files):
            # (the secret is not echoed: the message goes to logs)
            raise ConfigError("files must be local or s3://ACCESS_KEY:SECRET_KEY@host[:port]/bucket")
        if self.files_url and not self.files_url.startswith(("http://", "https://")):
            raise ConfigError(f"files_url must be an http:// or https:// URL, got {self.files_url!r}")
        if not 0 <= self.file_max_size <= 2**62:
            raise ConfigError("file_max_size must be 0 or more bytes")
        if not 1 <= self.file_grant_ttl <= 7 * 24 * 3600:
            raise ConfigError("file_grant_ttl must be 1..604800 seconds")
        if self.file_grants_per_minute < 1:
            raise ConfigError("file_grants_per_minute must be at least 1")
        if self.recall_window < 0:
            raise ConfigError("recall_window must be 0 or more seconds")
        if self.edit_window < 0:
            raise ConfigError("edit_window must be 0 or more seconds")
        if not 0 <= self.reply_snippet <= 1000:
            raise ConfigError("reply_snippet must be 0..1000 characters")
        for name in ("reaction_max_emoji", "reaction_max_per_user", "reactions_per_minute"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        if not 1 <= self.forward_max <= 100:
            raise ConfigError("forward_max must be 1 to 100")
        if self.presence_debounce < 0 or self.presence_rate <= 0 or self.presence_burst < 1 \
                or self.presence_max_watch < 1:
            raise ConfigError("presence_debounce must be ≥ 0, presence_rate positive, presence_burst and"
                              " presence_max_watch at least 1")
        if self.group_typing_rate <= 0 or self.group_join_rate <= 0 or self.group_join_burst < 1:
            raise ConfigError("group_typing_rate and group_join_rate must be positive, group_join_burst at least 1")
        if self.typing_rate <= 0 or self.typing_burst < 1:
            raise ConfigError("typing_rate must be positive, typing_burst at least 1")
        if self.call_ring_timeout <= 0 or self.call_ttl <= self.call_ring_timeout:
            raise ConfigError("call_ring_timeout must be positive and call_ttl longer than it")
        if self.file_unshared_ttl <= 0:
            raise ConfigError("file_unshared_ttl must be positive")
        if self.file_quota < 0 or self.files_min_free < 0 or self.store_min_free < 0:
            raise ConfigError("file_quota, files_min_free and store_min_free must be 0 or more")
        if not 0 < self.search_timeout <= 3600:
            raise ConfigError("search_timeout must be above 0 and at most 3600 s")
        if self.profile_changes_per_hour < 1 or self.password_changes_per_hour < 1:
            raise ConfigError("profile_changes_per_hour and password_changes_per_hour must be at least 1")
        if not 0 <= self.profile_bio_max <= 1024:
            raise ConfigError("profile_bio_max must be 0..1024 characters")
        if not 1 <= self.profile_nickname_max <= 64:
            raise ConfigError("profile_nickname_max must be 1..64 characters")
        if self.group_creates_per_hour < 1 or self.call_invites_per_minute < 1:
            raise ConfigError("group_creates_per_hour and call_invites_per_minute must be at least 1")
        if not 1 <= self.max_message_pins <= 100:
            raise ConfigError("max_message_pins must be 1..100")
        if self.view_changes_per_minute < 1 or self.pins_per_minute < 1:
            raise ConfigError("view_changes_per_minute and pins_per_minute must be at least 1")
        if not 2 <= self.group_max_members <= 1_000_000:
            raise ConfigError("group_max_members must be 2..1000000")
        if self.group_add_default not in ("anyone", "friends", "nobody"):
            raise ConfigError(f"group_add_default must be anyone, friends or nobody, got {self.group_add_default!r}")
        if not 1 <= self.group_invite_ttl <= 365 * 24 * 3600:
            raise ConfigError("group_invite_ttl must be 1..31536000 seconds")
        if self.group_invites_held < 1 or self.group_invites_sent < 1 \
                or self.group_invites_per_hour < 1:
            raise ConfigError("group_invites_held, group_invites_sent and"
                              " group_invites_per_hour must be at least 1")
        if not 8 <= self.password_memory_kib <= 4 * 1024 * 1024:
            raise ConfigError("password_memory_kib must be 8..4194304")
        if not 1 <= self.password_time_cost <= 20:
            raise ConfigError("password_time_cost must be 1..20")
        if self.login_rate <= 0 or self.login_burst < 1 or self.login_backlog < 1:
            raise ConfigError("login_rate must be positive, login_burst and login_backlog at least 1")
        if self.admin_token and self.admin_token != ADMIN_OFF and len(self.admin_token) < MIN_ADMIN_TOKEN:
            raise ConfigError(f"admin_token must be at least {MIN_ADMIN_TOKEN} characters (or \"off\")")
        if self.metrics_token and len(self.metrics_token) < MIN_ADMIN_TOKEN:
            raise ConfigError(f"metrics_token must be at least {MIN_ADMIN_TOKEN} characters")
        if self.login_account_failures < 1 or self.login_account_lock <= 0 \
                or self.login_account_lock_max < self.login_account_lock:
            raise ConfigError("login_account_failures must be at least 1, login_account_lock positive and"
                              " login_account_lock_max at least login_account_lock")
        for name in ("admin_token", "metrics_token"):
            token = getattr(self, name)
            if token and token != ADMIN_OFF and len(set(token)) < MIN_TOKEN_DISTINCT:
                raise ConfigError(f"{name} has fewer than {MIN_TOKEN_DISTINCT} different characters: use a random one "
                                  "(python -c 'import secrets; print(secrets.token_hex(16))')")
        if self.http_header_timeout <= 0 or self.http_body_timeout <= 0 or self.http_max_connections < 0:
            raise ConfigError("http_header_timeout and http_body_timeout must be positive, http_max_connections"
                              " 0 (automatic) or more")
        if self.drain_timeout <= 0:
            raise ConfigError("drain_timeout must be positive")
        if not 0 <= self.gc_freeze_every < math.inf:
            raise ConfigError(f"gc_freeze_every must be 0 (never) or positive seconds, got {self.gc_freeze_every}")
        if not 100 <= self.gc_young <= 1_000_000:
            raise ConfigError(f"gc_young must be 100..1000000, got {self.gc_young}")
        if self.cpus:
            cpu_list(self.cpus)  # ConfigError if it is not a CPU list of this machine
        if self.number_lease < 5:
            raise ConfigError("number_lease must be at least 5 seconds (it is renewed every 2 s)")
        if self.routes_timeout <= 0 or self.backend_probe_timeout <= 0:
            raise ConfigError("routes_timeout and backend_probe_timeout must be positive")
        if self.store_timeout < 1 or self.store_idle_timeout < 0:
            raise ConfigError("store_timeout must be at least 1 s, store_idle_timeout 0 or more")
        if self.token_secret and len(self.token_secret) < MIN_SECRET:
            raise ConfigError(f"token_secret must be at least {MIN_SECRET} characters (use a random one: "
                              "python -c 'import secrets; print(secrets.token_hex(32))')")
        if self.token_secret and len(set(self.token_secret)) < MIN_SECRET_DISTINCT:
            # a repeated letter or a word typed twice is not a secret: anyone could forge tokens
            raise ConfigError(f"token_secret has fewer than {MIN_SECRET_DISTINCT} different characters: use a "
                              "random one (python -c 'import secrets; print(secrets.token_hex(32))')")


#: what a value of each kind is, in words (for the messages of bad values)
_KIND_WORDS = {"int": "a whole number", "float": "a number", "bool": "true or false (or 1, 0, yes, no, on, off)",
               "str": "text", "Path": "a path"}


_CPU_RANGE = re.compile(r"(\d+)(?:-(\d+))?")


def cpu_list(text: str, label: str = "cpus") -> frozenset[int]:
    """The CPUs of a Linux CPU list ("1", "0-3", "2,5-6"); ConfigError naming ``label`` if
    it is not one, names none, or names a CPU this process may not run on (or the
    platform cannot pin threads)."""
    cpus: set[int] = set()
    for part in text.split(","):
        found = _CPU_RANGE.fullmatch(part.strip())
        if not found:
            raise ConfigError(f"{label} must be a CPU list such as 1, 0-3 or 2,5, got {text!r}")
        first, last = int(found[1]), int(found[2] or found[1])
        if last < first:
            raise ConfigError(f"{label}: the range {part.strip()} runs backwards")
        cpus.update(range(first, last + 1))
    if not hasattr(os, "sched_setaffinity"):
        raise ConfigError(f"{label}: this platform cannot pin threads to CPUs (Linux can)")
    allowed = os.sched_getaffinity(0)
    if not cpus <= allowed:
        raise ConfigError(f"{label}: CPU {min(cpus - allowed)} is not one this process may run on"
                          f" ({_cpu_text(allowed)})")
    return frozenset(cpus)


def _cpu_text(cpus: set[int]) -> str:
    """``cpus`` as a CPU list: runs as first-last."""
    runs: list[list[int]] = []
    for cpu in sorted(cpus):
        if runs and cpu == runs[-1][1] + 1:
            runs[-1][1] = cpu
        else:
            runs.append([cpu, cpu])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _convert(name: str, kind: Any, raw: str, label: str = "") -> Any:
    """``raw`` (an environment variable's text, or a flag's) as a value of ``kind``; a
    ConfigError naming ``label`` (default: the variable IM_<NAME>) if it is not one."""
    kind = kind if isinstance(kind, str) else kind.__name__
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "Path":
            return Path(raw)
        if kind == "bool":
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
    except ValueError:
        raise ConfigError(f"{label or 'IM_' + name.upper()} must be {_KIND_WORDS[kind]}, got {raw!r}") from None
    return raw


# -- the config file, secrets, documentation (operations) -----------------------------------------

#: the settings by what they are about: the panels of ``im serve --help`` and the tables
#: of docs/operations.md (each setting is in one; tests/ops/test_config_file.py checks)
SECTIONS: dict[str, tuple[str, ...]] = {
    "Network": ("host", "port", "http_port", "reuse_port", "backlog", "files_url", "web_dir", "web_ws_url",
                "http_header_timeout", "http_body_timeout", "http_max_connections"),
    "Storage": ("data_dir", "sqlite_sync", "files"),
    "Cluster": ("node_id", "store", "routes", "bus", "route_ttl", "routes_timeout", "store_timeout",
                "store_idle_timeout", "backend_probe_timeout", "number_lease"),
    "Limits": ("rate", "burst", "flood_limit", "bad_frame_limit", "auth_timeout", "idle_timeout", "max_write_buffer",
               "node_max_write_buffer",
               "login_rate", "login_burst", "login_backlog", "login_account_failures", "login_account_lock",
               "login_account_lock_max", "user_send_rate", "user_send_burst",
               "user_send_bytes_rate", "user_send_bytes_burst", "user_fanout_rate", "user_fanout_burst",
               "user_fanout_bytes_rate", "user_fanout_bytes_burst", "node_fanout_rate", "node_fanout_bytes_rate",
               "max_sessions_per_user", "group_max_members",
               "file_max_size", "file_types", "file_grants_per_minute", "file_quota", "file_unshared_ttl", "files_min_free",
               "store_min_free", "presence_rate", "presence_burst",
               "presence_max_watch", "typing_rate", "typing_burst", "group_typing_rate", "group_join_rate",
               "group_join_burst", "group_creates_per_hour", "group_invite_ttl", "group_invites_held",
               "group_invites_sent", "group_invites_per_hour", "call_invites_per_minute",
               "search_timeout", "profile_changes_per_hour", "password_changes_per_hour", "profile_bio_max",
               "profile_nickname_max", "view_changes_per_minute", "pins_per_minute"),
    "Security": ("token_secret", "token_secret_file", "token_ttl", "admin_token", "admin_token_file",
                 "metrics_token", "metrics_token_file",
                 "password_memory_kib", "password_time_cost", "file_grant_ttl"),
    "Messaging": ("strangers_may_send", "group_add_default", "recall_window", "edit_window", "reply_snippet",
                  "reaction_max_emoji", "reaction_max_per_user", "reactions_per_minute", "forward_max",
                  "max_message_pins", "presence_debounce", "call_ring_timeout", "call_ttl", "delete_erases_messages"),
    "Operations": ("log_level", "metrics", "drain_timeout", "gc_freeze_every", "gc_young", "cpus"),
}

#: settings that hold a secret: never a flag, masked by ``masked``
SECRET_FIELDS = frozenset({"token_secret", "admin_token", "metrics_token"})
_KINDS = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,), "Path": (str,)}


def _read_file(path: Path) -> dict[str, Any]:
    """The settings of a TOML file: top-level keys named as the fields (``data_dir`` or
    ``data-dir``), each of the field's type; anything else is a ConfigError."""
    import tomllib

    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    kinds = {f.name: (f.type if isinstance(f.type, str) else f.type.__name__) for f in fields(Config)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in kinds:
            raise ConfigError(f"config file {path}: unknown setting {key!r} (im serve --help lists them)")
        kind = kinds[name]
        if isinstance(value, bool) and kind != "bool" or not isinstance(value, _KINDS[kind]):
            words = "true or false" if kind == "bool" else _KIND_WORDS[kind]
            raise ConfigError(f"config file {path}: {key} must be {words}, got {value!r}")
        values[name] = Path(value) if kind == "Path" else float(value) if kind == "float" else value
    return values


def masked(config: Config) -> dict[str, Any]:
    """Every setting as plain JSON values, secrets replaced by ``***`` (the password in a
    backend URL too): what ``im config show`` prints."""
    shown: dict[str, Any] = {}
    for f in fields(config):
        value = getattr(config, f.name)
        if f.name in SECRET_FIELDS:
            value = "***" if value else ""
        elif isinstance(value, str) and "://" in value:
            # scheme://user:password@host: keep the user, hide the password
            value = re.sub(r"^([a-z0-9+]+://[^:@/]*):[^@/]*@", r"\1:***@", value)
        elif isinstance(value, Path):
            value = str(value)
        shown[f.name] = value
    return shown


def flag(name: str) -> str:
    """The ``im serve`` flag of a setting: ``--data-dir`` for ``data_dir``; a boolean's is
    the one that changes its default (``--reuse-port``, ``--no-metrics``); "" for a secret."""
    if name in SECRET_FIELDS:
        return ""
    f = next(f for f in fields(Config) if f.name == name)
    option = "--" + name.replace("_", "-")
    return "--no-" + option[2:] if f.type in ("bool", bool) and f.default else option


def settings_doc() -> str:
    """The settings as docs/operations.md lists them: a table per section (SECTIONS), each
    row made from the field's ``#:`` comment (tests/ops/test_config_file.py checks the doc)."""
    docs = field_docs()
    defaults = {f.name: f.default for f in fields(Config)}
    out = []
    for section, names in SECTIONS.items():
        out += [f"### {section}", "", "| setting (`IM_` variable, file key) | flag | default | what it does |",
                "|---|---|---|---|"]
        for name in names:
            value = defaults[name]
            shown = ("—" if value == "" else "port + 1" if name == "http_port" else str(value).lower()
                     if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) else str(value))
            if len(shown) > 40:
                shown = "(`im config show` prints it)"
            option = f"`{flag(name)}`" if flag(name) else "—"
            out.append(f"| `IM_{name.upper()}`, `{name}` | {option} | {shown} | {docs[name]} |")
        out.append("")
    return "\n".join(out)


def field_docs() -> dict[str, str]:
    """Each field's documentation: its ``#:`` comment lines in this file's Config class
    (a field without one shares the one above it). Read from the source, so a new field
    documents itself; empty strings if the source is not at hand."""
    try:
        source = Path(__file__).with_suffix(".py").read_text(encoding="utf-8")
    except OSError:
        return {f.name: "" for f in fields(Config)}
    body = source.split("class Config:", 1)[1].split("    @property", 1)[0]
    docs: dict[str, str] = {}
    pending: list[str] = []
    last = ""
    for line in body.splitlines():
        comment = re.match(r"    #: ?(.*)$", line)
        field = re.match(r"    (\w+): [^=]+=", line)
        if comment:
            pending.append(comment[1].strip())
        elif field:
            last = " ".join(pending) if pending else last
            docs[field[1]] = last
            pending = []
        elif re.match(r"    # ", line):
            pending = []
    return {f.name: docs.get(f.name, "") for f in fields(Config)}
