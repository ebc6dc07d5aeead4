"""``im``: the command line of edgeim."""
from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import resource
import signal
import sys
from dataclasses import Field, fields
from pathlib import Path
from typing import Callable, Optional

import typer

from rich.markup import escape

from ..ops.config import SECRET_FIELDS, SECTIONS, Config, ConfigError, _convert, cpu_list, field_docs, flag
from ..ops.logs import setup_logging
from .admin import flowed

app = typer.Typer(help="edgeim: a distributed instant-messaging server.", no_args_is_help=True)
log = logging.getLogger("edgeim.cli")

# -- im bench: the bench harness (cli/bench.py) --------------------------------------------------
from .bench import bench_app  # noqa: E402

app.add_typer(bench_app, name="bench")


@app.callback()
def main() -> None:
    """edgeim command line."""


# -- im serve: one option per Config field, generated ---------------------------------------------

#: the placeholder of a setting's value in ``im serve --help``, by the field's type
_METAVARS = {"int": "INT", "float": "NUM", "str": "TEXT", "Path": "PATH"}


def _kind(f: Field[object]) -> str:
    return f.type if isinstance(f.type, str) else f.type.__name__


def _shown(value: object) -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return text if len(text) <= 40 else "`im config show` prints it"


def _flag(f: Field[object]) -> str:
    return flag(f.name)


def _serve_options() -> list[inspect.Parameter]:
    """A ``--config`` option, then one per Config field but the secrets, named as the field,
    documented by its ``#:`` comment, in the panel of its section (ops/config.py SECTIONS).
    Values are taken as text and converted as the environment's are, so a bad one gets the
    same message (``--port must be a whole number``)."""
    docs = field_docs()
    panel = {name: section for section, names in SECTIONS.items() for name in names}
    params = [inspect.Parameter("config_file", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path],
                                default=typer.Option(None, "--config", metavar="FILE", help="A TOML file of settings"
                                                     " (keys as the option names, e.g. port = 9000) (env IM_CONFIG).",
                                                     rich_help_panel="Config file"))]
    for f in sorted(fields(Config), key=lambda f: list(panel).index(f.name)):
        if f.name in SECRET_FIELDS:
            continue
        kind = _kind(f)
        default = "" if f.default in ("", -1) or kind == "bool" else f"; default {_shown(f.default)}"
        doc = docs.get(f.name, "")
        help_text = f"{doc[:1].upper()}{doc[1:]} (env IM_{f.name.upper()}{default})."
        # a boolean is a flag that sets the other value than its default; --no-metrics
        # arrives as no_metrics=True (_overrides turns it into metrics=False)
        name = f"no_{f.name}" if kind == "bool" and f.default else f.name
        annotation, metavar = (Optional[bool], "") if kind == "bool" else (Optional[str], _METAVARS[kind])
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                                        default=typer.Option(None, _flag(f), help=escape(help_text), metavar=metavar,
                                                             show_default=False, rich_help_panel=panel[f.name])))
    return params


def serve(config_file: Optional[Path] = None, **flags: object) -> None:
    """Run one node. With no flags: embedded defaults (SQLite under ./data, in-memory
    routes, in-process bus) on 127.0.0.1:8765, HTTP (health, metrics, admin API) on 8766.

    Every setting is a flag, an IM_<NAME> environment variable and a key of the --config
    file; flags win over the environment, which wins over the file. The secrets have no
    flag (a flag shows them to anyone who lists processes): token_secret (IM_TOKEN_SECRET,
    or --token-secret-file), admin_token (IM_ADMIN_TOKEN, or --admin-token-file; with
    none, one is generated into DATA_DIR/admin.token, where the im admin commands find it)
    and metrics_token (IM_METRICS_TOKEN, or --metrics-token-file).

    SIGTERM or SIGINT drains the node and exits 0; SIGHUP reloads the log level and the
    limits from the same flags, environment and file. Exit codes: 0 stopped, 1 could not
    start, 2 a bad setting.
    """
    try:
        config = Config.load(_overrides(flags), file=config_file)
    except ConfigError as exc:
        typer.echo(f"im serve: {exc}", err=True)
        raise typer.Exit(2) from None
    setup_logging(config.log_level)
    _raise_open_files_limit()
    if config.cpus:
        _pin(cpu_list(config.cpus))

    def reload() -> Config:  # what SIGHUP reads: the same flags, the environment and file as now
        return Config.load(_overrides(flags), file=config_file)

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; this keeps odd platforms running
        asyncio.run(_serve(config, reload))
    else:
        uvloop.run(_serve(config, reload))


def _overrides(flags: dict[str, object]) -> dict[str, object]:
    """The flags given, as values of their settings' types (ConfigError naming the flag)."""
    kinds = {f.name: f for f in fields(Config)}
    values: dict[str, object] = {}
    for name, value in flags.items():
        if value is None:
            continue
        if name not in kinds:  # --no-metrics: no_metrics=True
            name, value = name.removeprefix("no_"), not value
        field = kinds[name]
        values[name] = _convert(name, _kind(field), value, _flag(field)) if isinstance(value, str) else value
    return values


flowed(serve)
serve.__signature__ = inspect.Signature(_serve_options())  # type: ignore[attr-defined]
serve.__annotations__ = {p.name: p.annotation for p in serve.__signature__.parameters.values()}  # type: ignore[attr-defined]
app.command(context_settings={"max_content_width": 120})(serve)


def _pin(cpus: frozenset[int]) -> None:
    """Keep every thread of this process on ``cpus`` (the cpus setting). Before the node
    starts its threads, which inherit the mask; each thread there is now (the kernel pins
    one thread a call) is pinned too."""
    for task in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(task), cpus)
        except ProcessLookupError:  # the thread ended since the listing: nothing to pin
            pass
    log.info("pinned to CPUs", extra={"cpus": sorted(cpus)})


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


async def _serve(config: Config, reload: Callable[[], Config] | None = None) -> None:
    from ..backends.protocols import StoreDamaged, StoreUnavailable
    from ..core_ext.codec import IMPLEMENTATION
    from ..edge.http import web_app_dir
    from ..edge.node import CannotListen, DataDirInUse, Node

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
    except CannotListen as exc:
        log.error("cannot listen", extra={"host": exc.host, "port": exc.port, "what": exc.what, "error": str(exc)})
        print(f"im serve: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    except OSError as exc:  # e.g. a backend's address that is not one of this machine's
        log.error("cannot start", extra={"error": str(exc)})
        print(f"im serve: cannot start: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)

    def on_hup() -> None:
        try:
            fresh = reload() if reload is not None else config
        except ConfigError as exc:  # the running settings stay
            log.error("reload refused: a bad setting", extra={"error": str(exc)})
            return
        node.reload(fresh)

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    url = f"ws://{host}:{port}/ws"
    log.info("listening", extra={"node": node.id, "url": url, "http": node.http.url, "data_dir": str(config.data_dir),
                                 "codec": IMPLEMENTATION})
    print(f"edgeim node {node.id} listening on {url} and {node.http.url} (data in {config.data_dir.resolve()})",
          flush=True)
    app = web_app_dir(config.web_dir)
    if app is not None:
        print(f"web app: {node.http.url}/" if (app / "index.html").is_file()
              else f"web app: not built ({app}/index.html is missing: run `make web`)", flush=True)
    if node.admin_token_file is not None:  # generated: say where, and how the im commands find it
        # (after the web app's line, which scripts and tests read second)
        where = f"in {Path.cwd()}" if config.data_dir == Path("data") else f"with --data-dir {config.data_dir}"
        print(f"admin token: {node.admin_token_file.resolve()} (im user, group, cluster and stats read it"
              f" when run {where})", flush=True)
    # SIGTERM/SIGINT, or a drain asked through the admin API (im cluster drain)
    drained = asyncio.ensure_future(node.stopping.wait())
    await asyncio.wait([asyncio.ensure_future(stop.wait()), drained], return_when=asyncio.FIRST_COMPLETED)
    log.info("stopping", extra={"node": node.id, "why": "drain requested" if drained.done() else "signal"})
    await node.stop()
    log.info("stopped", extra={"node": node.id})


# -- operations: version, config show, migrate, and the admin client (cli/admin.py) -------------------

@app.command()
@flowed
def version(as_json: bool = typer.Option(False, "--json", help="One JSON object.")) -> None:
    """The version of this edgeim (and its Python, and which codec it runs)."""
    from ..edge.admin import version_info

    info = version_info()
    if as_json:
        typer.echo(json.dumps(info))
    else:
        typer.echo(f"edgeim {info['version']} (python {info['python']}, codec {info['codec']}"
                   f"{', single-file executable' if info['frozen'] else ''})")


config_app = typer.Typer(help="The effective configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("show")
@flowed
def config_show(
    config_file: Optional[Path] = typer.Option(None, "--config", help="A TOML file of settings (env IM_CONFIG)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object: setting -> value."),
) -> None:
    """Print every setting as `im serve` would use it (environment, file, defaults), with
    where it came from; secrets are shown as ***. Exit 2 on a bad setting."""
    import os

    from ..ops.config import _read_file, masked

    try:
        config = Config.load(file=config_file)
        in_file = _read_file(Path(config_file or os.environ["IM_CONFIG"])) if (config_file or os.environ.get("IM_CONFIG")) else {}
    except ConfigError as exc:
        typer.echo(f"im config show: {exc}", err=True)
        raise typer.Exit(2) from None
    shown = masked(config)
    if as_json:
        typer.echo(json.dumps(shown))
        return
    width = max(len(name) for name in shown)
    for name, value in shown.items():
        source = "env" if os.environ.get(f"IM_{name.upper()}") else "file" if name in in_file else "default"
        typer.echo(f"{name:<{width}}  {json.dumps(value):<40}  {source}")


@app.command()
@flowed
def migrate(
    config_file: Optional[Path] = typer.Option(None, "--config", help="A TOML file of settings (env IM_CONFIG)."),
    data_dir: Optional[Path] = typer.Option(None, help="The data dir of an embedded node (env IM_DATA_DIR)."),
    store: Optional[str] = typer.Option(None, help="A cluster's store URL, mysql://... (env IM_STORE)."),
) -> None:
    """Bring the store's schema to this version's, then exit (a node also does so at start).
    An embedded node's data dir must not be in use (stop the node first). Exit codes: 0
    done, 1 the store cannot be opened or is damaged, 2 a bad setting."""
    try:
        config = Config.load({"data_dir": data_dir, "store": store}, file=config_file)
    except ConfigError as exc:
        typer.echo(f"im migrate: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        version = asyncio.run(_migrate(config))
    except Exception as exc:  # DataDirInUse, StoreDamaged, StoreUnavailable, a server refusing
        typer.echo(f"im migrate: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"schema at version {version} ({'store ' + config.store.split('@')[-1] if config.store else config.data_dir / 'edgeim.db'})")


async def _migrate(config: Config) -> int:
    from ..edge.node import _lock, _store

    if config.store:
        from ..backends.mysql import MIGRATIONS as steps
    else:
        from ..backends.sqlite import MIGRATIONS as steps  # type: ignore[assignment]
        config.data_dir.mkdir(parents=True, exist_ok=True)
    lock = -1 if config.store else _lock(config.data_dir)
    try:
        store = _store(config)
        await store.open()  # migrates
        await store.close()
    finally:
        if lock >= 0:
            import os
            os.close(lock)
    return len(steps)


from .admin import cluster_app, group_app, stats, user_app  # noqa: E402

app.add_typer(user_app, name="user")
app.add_typer(group_app, name="group")
app.add_typer(cluster_app, name="cluster")
app.command()(stats)
