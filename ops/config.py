"""The one config object. Precedence: explicit values (CLI flags) > IM_* environment
variables > defaults. Every field has an ``IM_<FIELD>`` variable, e.g. ``IM_PORT=9000``."""
from __future__ import annotations

import dataclasses
import os
import socket
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

__all__ = ["Config", "ConfigError"]


#: shortest token secret accepted: 32 characters (e.g. 16 random bytes in hex, or more)
MIN_SECRET = 32


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names the setting."""


@dataclass(frozen=True, slots=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8765
    data_dir: Path = Path("data")
    node_id: str = ""  # default: "<hostname>-<port>" (or "<hostname>-<pid>" with port 0)
    log_level: str = "info"
    #: HS256 secret for tokens, at least 32 characters (nodes of a cluster share it); empty:
    #: generated once and kept in <data_dir>/token.secret. Prefer the file or IM_TOKEN_SECRET
    #: to a flag, which anyone can read in the process list.
    token_secret: str = ""
    #: a file holding the token secret (read at start; instead of token_secret)
    token_secret_file: str = ""
    token_ttl: float = 7 * 24 * 3600.0
    #: close a connection that has not logged in after this many seconds (4002)
    auth_timeout: float = 10.0
    #: close a connection silent for this many seconds (4003); heartbeats keep it open
    idle_timeout: float = 90.0
    #: route entries live this long unless renewed by activity
    route_ttl: float = 120.0
    #: per-connection token bucket: frames per second and burst
    rate: float = 200.0
    burst: int = 400
    #: frames over budget, or malformed frames, before the connection is closed (4008)
    flood_limit: int = 400
    bad_frame_limit: int = 32
    #: let several nodes share the port (SO_REUSEPORT); each needs its own data dir
    reuse_port: bool = False
    #: bytes a connection may leave unread before it is dropped as a slow consumer (no close
    #: frame: it would queue behind what the client does not read)
    max_write_buffer: int = 4 * 1024 * 1024
    #: SQLite synchronous mode: FULL (fsync every commit) or NORMAL (WAL: fsync at checkpoint)
    sqlite_sync: str = "FULL"
    #: argon2id cost of password hashes: memory in KiB and passes (default: OWASP's minimum,
    #: 19 MiB and 2); lower only for tests and benchmarks. Hashes of another cost are
    #: replaced at their user's next login.
    password_memory_kib: int = 19456
    password_time_cost: int = 2
    #: password checks (REGISTER, LOGIN) per second per client address, and the burst
    login_rate: float = 5.0
    login_burst: int = 30
    #: password checks that may wait for a worker, node-wide; more are refused at once
    login_backlog: int = 32
    #: what one account may send across all its sessions on a node: messages per second and
    #: burst, content bytes per second and burst (4000 RATE_LIMITED beyond)
    user_send_rate: float = 50.0
    user_send_burst: int = 200
    user_send_bytes_rate: float = 256 * 1024.0
    user_send_bytes_burst: int = 4 * 1024 * 1024
    #: live sessions (terminals) one account may have at once (4001 TOO_MANY_SESSIONS beyond)
    max_sessions_per_user: int = 10
    #: may users who are not friends send each other 1:1 messages? (default: friends only)
    strangers_may_send: bool = False
    #: members a new group may hold
    group_max_members: int = 2000
    #: seconds after sending during which a sender may recall a message (owners and admins
    #: of a group may recall any time)
    recall_window: float = 120.0
    #: cluster backends, all three or none (none: embedded SQLite, memory routes, in-process
    #: bus): a MySQL-protocol store shared by the nodes (mysql://user:pass@host:port/db, also
    #: tidb:// and mariadb://), Redis for routes (redis://host:port/db), a RocketMQ name
    #: server for the bus (rocketmq://host:port)
    store: str = ""
    routes: str = ""
    bus: str = ""

    @property
    def cluster(self) -> bool:
        """Does this node share users and messages with others (any cluster backend set)?"""
        return bool(self.store or self.routes or self.bus)

    @classmethod
    def load(cls, overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> Config:
        """Build a Config from ``overrides`` (None values are ignored), then IM_* env vars."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
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
        config = cls(**values)
        config._validate()
        if not config.node_id:
            suffix = config.port or os.getpid()  # port 0 is picked at bind time: use the pid
            config = dataclasses.replace(config, node_id=f"{socket.gethostname()}-{suffix}")
        return config

    def _validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0..65535, got {self.port}")
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
        if self.recall_window < 0:
            raise ConfigError("recall_window must be 0 or more seconds")
        if not 2 <= self.group_max_members <= 1_000_000:
            raise ConfigError("group_max_members must be 2..1000000")
        if not 8 <= self.password_memory_kib <= 4 * 1024 * 1024:
            raise ConfigError("password_memory_kib must be 8..4194304")
        if not 1 <= self.password_time_cost <= 20:
            raise ConfigError("password_time_cost must be 1..20")
        if self.login_rate <= 0 or self.login_burst < 1 or self.login_backlog < 1:
            raise ConfigError("login_rate must be positive, login_burst and login_backlog at least 1")
        if self.token_secret and len(self.token_secret) < MIN_SECRET:
            raise ConfigError(f"token_secret must be at least {MIN_SECRET} characters (use a random one: "
                              "python -c 'import secrets; print(secrets.token_hex(32))')")


def _convert(name: str, kind: Any, raw: str) -> Any:
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
        raise ConfigError(f"IM_{name.upper()} must be a {kind}, got {raw!r}") from None
    return raw
