"""The peer of ``im bench``: Centrifugo v6.9.1, a well-known Go real-time server, built
once into a cache dir and started on loopback for the 1:1 delivery scenario.

``build()`` runs ``go install github.com/centrifugal/centrifugo/v6@v6.9.1`` (about 8 minutes
the first time) into ``~/.cache/edgeim/centrifugo-6.9.1/bin``; ``start_centrifugo`` writes
a config (loopback only, usage stats off, HMAC token secret, a ``dm`` namespace whose
channels any client may subscribe and publish to) and waits for its port.

What differs from edgeim, named in every report: Centrifugo stores nothing durably by
default (no history here), so a publish reply means "handed to the in-memory broker",
where an edgeim SEND_ACK means "committed to SQLite"; it speaks JSON over text frames.

The durable peer (``im bench run --peer-durable``) closes that gap: Centrifugo on its Redis
engine with a history in the ``dm`` namespace, and a Redis of its own (``start_redis``)
that appends every write to its AOF and fsyncs it before it answers (``appendfsync
always``). A publish reply then comes after the publication is in the channel's history
on disk, as an edgeim ack comes after the commit. Redis is the peer's store, so its CPU
counts as the peer's.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

VERSION = "6.9.1"
MODULE = f"github.com/centrifugal/centrifugo/v6@v{VERSION}"
SECRET = "edgeim-bench-centrifugo-secret-0123456789"


def home() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return Path(os.environ.get("EDGEIM_CENTRIFUGO_HOME") or base / "edgeim" / f"centrifugo-{VERSION}")


def binary() -> Path:
    return home() / "bin" / "centrifugo"


def go() -> str | None:
    return shutil.which("go") or next((p for p in ("/usr/local/go/bin/go",) if Path(p).exists()), None)


def build(log: Any = None) -> Path:
    """Build Centrifugo into the cache (no-op if there); raises RuntimeError if it cannot."""
    if binary().exists():
        return binary()
    tool = go()
    if tool is None:
        raise RuntimeError("building Centrifugo needs Go (https://go.dev/dl/, or /usr/local/go/bin/go)")
    env = dict(os.environ, GOBIN=str(binary().parent))
    ldflags = f"-X github.com/centrifugal/centrifugo/v6/internal/build.Version={VERSION}"
    done = subprocess.run([tool, "install", "-ldflags", ldflags, MODULE], env=env, stdout=log, stderr=log,
                          cwd=home().parent if home().parent.exists() else None)
    if done.returncode != 0 or not binary().exists():
        raise RuntimeError(f"go install {MODULE} failed (exit {done.returncode})")
    return binary()


def token(user_id: int) -> str:
    import jwt
    return jwt.encode({"sub": str(user_id), "exp": int(time.time()) + 3600}, SECRET, algorithm="HS256")


def channel(user_id: int) -> str:
    """The personal channel of a user: its receiver subscribes, its one publisher publishes."""
    return f"dm:u{user_id}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: the durable peer's history per channel: enough that a publication stays in it through a run
HISTORY = {"history_size": 1000, "history_ttl": "1h"}


def config(port: int, redis: str = "") -> dict[str, Any]:
    """Centrifugo's config: in memory, or with ``redis`` (host:port) the Redis engine and
    a history in ``dm``, so that a publish is answered once Redis has it."""
    dm: dict[str, Any] = {"name": "dm", "allow_subscribe_for_client": True, "allow_publish_for_client": True}
    cfg: dict[str, Any] = {
        "http_server": {"address": "127.0.0.1", "port": port},
        "usage_stats": {"disabled": True},
        "log": {"level": "error"},
        "client": {"token": {"hmac_secret_key": SECRET}, "allowed_origins": ["*"]},
        "channel": {"namespaces": [dm]},
    }
    if redis:
        dm.update(HISTORY)
        cfg["engine"] = {"type": "redis", "redis": {"address": [f"redis://{redis}"]}}
    return cfg


def start_redis(tmp: Path, timeout: float = 30.0,
                cpus: frozenset[int] = frozenset()) -> tuple[subprocess.Popen[bytes], str]:
    """A Redis for the durable peer on a free loopback port, its data in ``tmp``: every
    write appended to the AOF and fsynced before the reply (``appendfsync always``), no
    snapshots. Returns it and its host:port; RuntimeError without a ``redis-server``."""
    from .benchlib import pinned, stop
    server = shutil.which("redis-server")
    if server is None:
        raise RuntimeError("the durable peer needs redis-server on PATH (Debian: apt-get install redis-server)")
    port = _free_port()
    cmd = [server, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(tmp), "--save", "",
           "--appendonly", "yes", "--appendfsync", "always", "--daemonize", "no", "--protected-mode", "no"]
    with open(tmp / "redis.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=tmp, preexec_fn=pinned(cpus))
    if _wait_port(proc, port, timeout):
        return proc, f"127.0.0.1:{port}"
    stop(proc)
    raise RuntimeError(f"Redis did not start: {(tmp / 'redis.log').read_text()[-2000:]}")


def _wait_port(proc: subprocess.Popen[bytes], port: int, timeout: float) -> bool:
    """True once ``port`` takes a connection; False if ``proc`` ends or ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def start_centrifugo(tmp: Path, timeout: float = 30.0, cpus: frozenset[int] = frozenset(),
                     redis: str = "") -> tuple[subprocess.Popen[bytes], str]:
    """Start the cached Centrifugo on a free loopback port, on ``cpus`` if any, on the
    Redis at ``redis`` if given (``config``); returns it and its WebSocket URL."""
    from .benchlib import pinned, stop
    if not binary().exists():
        raise RuntimeError(f"Centrifugo is not built: run `im bench centrifugo --build` (go install {MODULE})")
    port = _free_port()
    cfg = tmp / "centrifugo.json"
    cfg.write_text(json.dumps(config(port, redis)))
    with open(tmp / "centrifugo.log", "wb") as log:
        proc = subprocess.Popen([str(binary()), "--config", str(cfg)], stdout=log, stderr=subprocess.STDOUT,
                                cwd=tmp, preexec_fn=pinned(cpus))
    if _wait_port(proc, port, timeout):
        return proc, f"ws://127.0.0.1:{port}/connection/websocket"
    stop(proc)
    raise RuntimeError(f"Centrifugo did not start: {(tmp / 'centrifugo.log').read_text()[-2000:]}")
