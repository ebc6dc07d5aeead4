"""``im``: the command line of edgeim."""
from __future__ import annotations

import asyncio
import logging
import resource
import signal
import sys
from pathlib import Path
from typing import Optional

import typer

from ..ops.config import Config, ConfigError
from ..ops.logs import setup_logging

app = typer.Typer(help="edgeim: a distributed instant-messaging server.", no_args_is_help=True, add_completion=False)
log = logging.getLogger("edgeim.cli")


@app.callback()
def main() -> None:
    """edgeim command line."""


@app.command()
def serve(
    host: Optional[str] = typer.Option(None, help="Address to listen on [env IM_HOST; default 127.0.0.1]."),
    port: Optional[int] = typer.Option(None, help="Port; 0 picks a free one [env IM_PORT; default 8765]."),
    data_dir: Optional[Path] = typer.Option(None, help="Where the SQLite store and secrets live [env IM_DATA_DIR; default ./data]."),
    node_id: Optional[str] = typer.Option(None, help="Node id [env IM_NODE_ID; default <hostname>-<port>]."),
    token_secret_file: Optional[Path] = typer.Option(None, help="File holding the token secret (32+ characters; nodes of a cluster share it) [env IM_TOKEN_SECRET_FILE, or the secret itself in IM_TOKEN_SECRET; default: made once and kept in DATA_DIR/token.secret]."),
    log_level: Optional[str] = typer.Option(None, help="debug, info, warning or error [env IM_LOG_LEVEL; default info]."),
    idle_timeout: Optional[float] = typer.Option(None, help="Seconds of silence before a connection is closed [env IM_IDLE_TIMEOUT; default 90]."),
    auth_timeout: Optional[float] = typer.Option(None, help="Seconds to log in after connecting [env IM_AUTH_TIMEOUT; default 10]."),
    reuse_port: Optional[bool] = typer.Option(None, "--reuse-port", help="Share the port with other nodes (SO_REUSEPORT) [env IM_REUSE_PORT]."),
) -> None:
    """Run one node. With no flags: embedded defaults (SQLite under ./data, in-memory
    routes, in-process bus) on 127.0.0.1:8765."""
    try:
        config = Config.load(dict(
            host=host, port=port, data_dir=data_dir, node_id=node_id,
            token_secret_file=str(token_secret_file) if token_secret_file else None,
            log_level=log_level, idle_timeout=idle_timeout, auth_timeout=auth_timeout, reuse_port=reuse_port,
        ))
    except ConfigError as exc:
        typer.echo(f"im serve: {exc}", err=True)
        raise typer.Exit(2) from None
    setup_logging(config.log_level)
    _raise_open_files_limit()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; this keeps odd platforms running
        asyncio.run(_serve(config))
    else:
        uvloop.run(_serve(config))


def _raise_open_files_limit() -> None:
    """Raise the soft limit of open files to the hard one: each connection is a socket, and
    the usual soft limit (1024) would stop a node at about a thousand connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft >= hard:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:  # e.g. an infinite hard limit the kernel caps lower
        log.warning("cannot raise the open files limit", extra={"soft": soft, "hard": hard, "error": str(exc)})


async def _serve(config: Config) -> None:
    from ..backends.protocols import StoreDamaged, StoreUnavailable
    from ..core_ext.codec import IMPLEMENTATION
    from ..edge.node import DataDirInUse, Node

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        node = Node(config)
        host, port = await node.start()
    except (DataDirInUse, StoreDamaged, StoreUnavailable) as exc:
        log.error("cannot start", extra={"data_dir": str(config.data_dir), "error": str(exc)})
        print(f"im serve: cannot start: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    except OSError as exc:
        log.error("cannot listen", extra={"host": config.host, "port": config.port, "error": str(exc)})
        sys.exit(1)
    url = f"ws://{host}:{port}/ws"
    log.info("listening", extra={"node": node.id, "url": url, "data_dir": str(config.data_dir), "codec": IMPLEMENTATION})
    print(f"edgeim node {node.id} listening on {url} (data in {config.data_dir.resolve()})", flush=True)
    await stop.wait()
    log.info("stopping", extra={"node": node.id})
    await node.stop()
    log.info("stopped", extra={"node": node.id})
