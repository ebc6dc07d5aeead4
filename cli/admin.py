"""``im user``, ``im group``, ``im cluster`` and ``im stats``: clients of a node's admin API
(edge/admin.py) on its HTTP port, authenticated with the admin token. They never open a
database: the node does every read and write, so its memory and its clients stay right.

``im cluster`` reads the node registry in Redis (``--routes`` / ``IM_ROUTES``) to find
the nodes; without it, it talks to the one node at ``--url``.

Tables for people, ``--json`` for scripts. Exit codes (docs/operations.md):

- 0: done
- 1: the node refused or failed (its message is printed)
- 2: bad usage or a bad setting
- 3: no such user, group or node
- 4: the node (or Redis) cannot be reached
- 5: the admin API refused: no token, a wrong one, or the API is off on that node; or no
  token was found (given, or in the data dir of a node on this machine)
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import time
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, NoReturn, Optional, Sequence

import typer

from ..ops.config import ADMIN_TOKEN_FILE

__all__ = ["user_app", "group_app", "cluster_app", "stats", "EXIT_FAILED", "EXIT_USAGE", "EXIT_NOT_FOUND",
           "EXIT_UNREACHABLE", "EXIT_REFUSED", "flowed"]

EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_UNREACHABLE, EXIT_REFUSED = 1, 2, 3, 4, 5
DEFAULT_URL = "http://127.0.0.1:8766"

user_app = typer.Typer(help="Accounts: create, list, show, disable (or enable), kick, delete.", no_args_is_help=True)
group_app = typer.Typer(help="Groups: list, show, dissolve.", no_args_is_help=True)
cluster_app = typer.Typer(help="The nodes: list them, drain one.", no_args_is_help=True)

# the options every command takes (a token given as a flag shows in the process list: prefer the env)
URL = typer.Option(DEFAULT_URL, "--url", envvar="IM_ADMIN_URL", help="The node's HTTP URL.")
TOKEN = typer.Option("", "--token", envvar="IM_ADMIN_TOKEN", show_default=False,
                     help="The admin token (prefer IM_ADMIN_TOKEN or --token-file).")
TOKEN_FILE = typer.Option(None, "--token-file", envvar="IM_ADMIN_TOKEN_FILE", help="A file holding the admin token.")
DATA_DIR = typer.Option(Path("data"), "--data-dir", envvar="IM_DATA_DIR",
                        help="The data dir of a node on this machine: with no token given, its admin.token is"
                             " used for a node at a loopback --url.")
JSON = typer.Option(False, "--json", help="Print JSON (for scripts) instead of a table.")


def _loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Admin:
    """One node's admin API over HTTP (urllib: a command is one or two requests).

    The token is the one given (``--token``, ``IM_ADMIN_TOKEN``, ``--token-file``), else,
    for a node on this machine (a loopback URL), the one that node keeps in its data dir
    (``<data_dir>/admin.token``, written at its first start when no token is set)."""

    def __init__(self, url: str, token: str, token_file: Optional[str], data_dir: Optional[Path] = None) -> None:
        if not url.startswith(("http://", "https://")):
            _fail(EXIT_USAGE, f"--url must be an http:// or https:// URL, got {url!r}")
        self.url = url.rstrip("/")
        #: where the token came from, for the message when the node refuses it
        self.source = "--token or IM_ADMIN_TOKEN"
        if not token and not token_file and data_dir is not None and _loopback(url):
            kept = data_dir / ADMIN_TOKEN_FILE
            if kept.is_file():
                token_file = str(kept)
            else:
                _fail(EXIT_REFUSED, f"no admin token: {kept} does not exist. Give the node's data dir (--data-dir or"
                                    " IM_DATA_DIR), or the token (IM_ADMIN_TOKEN or --token-file)")
        if token_file:
            try:
                with open(token_file) as f:
                    token = f.read().strip()
            except OSError as exc:
                _fail(EXIT_USAGE, f"cannot read the token file {token_file}: {exc.strerror}")
            self.source = f"the token in {token_file}"
        elif not token:
            _fail(EXIT_REFUSED, f"no admin token for the node at {self.url}: give IM_ADMIN_TOKEN or --token-file (a"
                                f" node keeps a generated one in its data dir, {ADMIN_TOKEN_FILE})")
        self.token = token

    def call(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None) -> Any:
        url = self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
        request = urllib.request.Request(url, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as err:
            try:
                answer = err.read()
            finally:
                err.close()
            try:
                message = json.loads(answer)["error"]
            except (ValueError, TypeError, KeyError):  # not the admin API's answer
                self._not_admin_api(err.code, str(err.reason))
            if err.code == 401:
                _fail(EXIT_REFUSED, f"the node at {self.url} refused {self.source}: it is not this node's admin"
                                    " token")
            if err.code == 403:
                _fail(EXIT_REFUSED, f"the node at {self.url} refused: {message}")
            code = {404: EXIT_NOT_FOUND, 400: EXIT_USAGE}.get(err.code, EXIT_FAILED)
            _fail(code, message)
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            _fail(EXIT_UNREACHABLE, f"cannot reach the node at {self.url}: {reason}")

    def _not_admin_api(self, status: int, reason: str) -> NoReturn:
        """``--url`` answers HTTP, but not as an admin API: the node's WebSocket port (which
        answers /healthz as the HTTP port does, but not /version), or something else."""
        if _probe(self.url + "/healthz") == (200, b"ok\n") and _probe(self.url + "/version")[0] == 404:
            parts = urllib.parse.urlsplit(self.url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            host = parts.netloc.rsplit(":", 1)[0] if parts.port else parts.netloc
            _fail(EXIT_USAGE, f"{self.url} is the WebSocket port of an edgeim node, not its HTTP port: the admin API"
                              " is on the HTTP port, the second URL `im serve` prints (by default the WebSocket"
                              f" port + 1: --url {parts.scheme}://{host}:{port + 1})")
        _fail(EXIT_USAGE, f"{self.url} is not the HTTP port of an edgeim node (it answered {status} {reason}): give"
                          " the second URL `im serve` prints (default http://127.0.0.1:8766)")


def _probe(url: str) -> tuple[int, bytes]:
    """The status and body of a GET (0 when nothing answers)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        err.close()
        return err.code, b""
    except (urllib.error.URLError, OSError):
        return 0, b""


def flowed(func: Any) -> Any:
    """Join each paragraph of ``func``'s docstring into one line, so that ``--help`` wraps
    it to the terminal instead of keeping the source's line breaks."""
    import inspect

    doc = inspect.getdoc(func) or ""
    func.__doc__ = "\n\n".join(" ".join(p.split()) for p in doc.split("\n\n"))
    return func


def _fail(code: int, message: str) -> NoReturn:
    typer.echo(f"im: {message}", err=True)
    raise typer.Exit(code)


def _print(value: Any, as_json: bool, columns: Sequence[str] = (), rows: Sequence[dict[str, Any]] | None = None) -> None:
    """JSON as it came (for scripts), or, for people, a table of ``rows`` (``columns``) or
    ``key  value`` lines, times as dates (``_cell``)."""
    if as_json:
        typer.echo(json.dumps(value))
        return
    if rows is None:
        width = max((len(k) for k in value), default=0)
        for key, item in value.items():
            if isinstance(item, list) and all(isinstance(i, dict) and {"terminal", "node"} <= i.keys() for i in item):
                text = _sessions(item)  # sessions, kicked: where they were
            else:
                text = json.dumps(item) if isinstance(item, (dict, list)) else _cell(item, key)
            typer.echo(f"{key:<{width}}  {text}".rstrip())
        return
    _table(columns, rows)


def _table(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    cells = [[_cell(row.get(c), c) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    typer.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in cells:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def _cell(value: Any, key: str = "") -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key.endswith(("_at", "_until")) and isinstance(value, int):  # milliseconds since the epoch
        return _date(value)
    if isinstance(value, float):
        return f"{value:g}"
    return "" if value is None else str(value)


def _date(ms: int) -> str:
    """A time (milliseconds since the epoch) as this machine's local date and time; "" for 0
    (never: not muted, no time)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) if ms else ""


def _sessions(sessions: Sequence[dict[str, Any]]) -> str:
    """Sessions as people read them: ``web on node-a, ios on node-b``."""
    return ", ".join(f"{s['terminal']} on {s['node']}" for s in sessions) or "none"


def _named(user_id: Any, name: Any) -> str:
    """A user as people read them: ``alice (1)``."""
    return f"{name} ({user_id})" if name else str(user_id)


def _next_page(command: str, page: dict[str, Any], rows: Sequence[dict[str, Any]], limit: int) -> None:
    """After a full page, how to ask for the next one (on stderr: the table stays a table)."""
    if page.get("more") and rows:
        typer.echo(f"more: {command} --after {rows[-1]['id']}" + (f" --limit {limit}" if limit != 100 else ""),
                   err=True)


# -- im user ---------------------------------------------------------------------------------------

@user_app.command("create")
@flowed
def user_create(
    username: str,
    password: Optional[str] = typer.Option(None, help="The password; prompted for (hidden) when not given.",
                                           show_default=False),
    nickname: str = typer.Option("", help="Display name (default: the username)."),
    url: str = URL, token: str = TOKEN, token_file: Optional[str] = TOKEN_FILE, data_dir: Path = DATA_DIR,
    as_json: bool = JSON,
) -> None:
    """Create an account (as REGISTER would)."""
    if password is None:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    user = Admin(url, token, token_file, data_dir).call("POST", "/admin/users",
                                              {"username": username, "password": password, "nickname": nickname})
    _print(user, as_json)


@user_app.command("list")
@flowed
def user_list(
    after: int = typer.Option(0, help="List ids above this one (the last id of the page before)."),
    limit: int = typer.Option(100, min=1, max=1000, help="At most this many."),
    url: str = URL, token: str = TOKEN, token_file: Optional[str] = TOKEN_FILE, data_dir: Path = DATA_DIR,
    as_json: bool = JSON,
) -> None:
    """Accounts by id, a page at a time."""
    page = Admin(url, token, token_file, data_dir).call("GET", "/admin/users", query={"after": after, "limit": limit})
    _print(page, as_json, ("id", "username", "nickname", "disabled", "deleted", "created_at"), page["users"])
    if not as_json:
        _next_page("im user list", page, page["users"], limit)


@user_app.command("show")
@flowed
def user_show(
    user: str = typer.Argument(..., help="A user id or username."),
    url: str = URL, token: str = TOKEN, token_file: Optional[str] = TOKEN_FILE, data_dir: Path = DATA_DIR,
    as_json: bool = JSON,
) -> None:
    """One account, with its live sessions (terminal and node)."""
    admin = Admin(url, token, token_file, data_dir)
    _print(admin.call("GET", f"/admin/users/{urllib.parse.quote(user, safe='')}"), as_json)


@user_app.command("disable")
@flowed
def user_disable(
    user: str = typer.Argument(..., help="A user id or username."),
    enable: bool = typer.Option(False, "--enable", help="Enable the account again instead."),
    url: str = URL, token: str = TOKEN, token_file: Optional[str] = TOKEN_FILE, data_dir: Path = DATA_DIR,
    as_json: bool = JSON,
) -> None:
    """Disable an account: its sessions are closed (KICKED "disabled", close 4001) and its
    logins refused (2006 ACCOUNT_DISABLED) until `--enable`."""
    path = f"/admin/users/{urllib.parse.quote(user, safe='')}/{'enable' if enable else 'disable'}"
    _print(Admin(url, token, token_file, data_dir).call("POST", path), as_json)


@user_app.command("kick")
@flowed
def user_kick(
    user: str = typer.Argument(..., help="A user id or username."),
    terminal: str = typer.Option("", help="Only this terminal's session (default: every one)."),
    url: str = URL, token: str = TOKEN, token_file: Optional[str] = TOKEN_FILE, data_dir: Path = DATA_DIR,
    as_json: bool = JSON,
) -> None:
    """Close the user's live sessions, on whichever nodes (KICKED "kicked", close 4001);
    they may log in again."""
    path = f"/admin/users/{urllib.parse.quote(user, safe='')}/kick"
    admin = Admin(url, token, token_file, data_dir)
    result = admin.call("POST", path, query={"terminal": terminal} if terminal else None)
    _print(result, as_json)


@user_app.command("delete")
@flowed
def user_delete(
    user: str = typer.Argument(..., help="A user id or username."),
    yes: bool = typer.Option(False, "--yes", help="Delete without asking (needed when not on a terminal)."),
    url: str = URL, token: str = TOKEN, token_file: Optional[str] = TOKEN_FILE, data_dir: Path = DATA_DIR,
    as_json: bool = JSON,
) -> None:
    """Delete an account for good: its sessions are closed on every node (KICKED
    "account_deleted", close 4001), its logins refused (2007 ACCOUNT_DELETED), its friendships
    and memberships removed, the groups it owned handed over (or dissolved when it was alone).
    Its messages stay in the other party's conversations (erased when the node's
    delete_erases_messages is on). The username is never freed. Cannot be undone."""
    if not yes:
        if not sys.stdin.isatty():
            _fail(EXIT_USAGE, "deleting an account cannot be undone: add --yes to confirm")
        if not typer.confirm(f"delete the account {user!r} for good?"):
            _fail(EXIT_FAILED, "not deleted")
    path = f"/admin/users/{urllib.parse.quote(user, safe='')}/delete"
    _print(Admin(url, token, token_file, data_dir).call("POST", path), as_json)


# -- im group --------------------------------------------------------------------------------------

@group_app.command("list")
@flowed
def group_list(
    after: int = typer.Option(0, help="List ids above this one."),
    limit: int = typer.Option(100, min=1, max=1000, help="At most this many."),
    url: str = URL, token: str = TOKEN, token_file: Optional[str] = TOKEN_FILE, data_dir: Path = DATA_DIR,
    as_json: bool = JSON,
) -> None:
    """Groups by id, a page at a time."""
    query = {"after": after, "limit": limit, **({} if as_json else {"names": 1})}  # names: for people
    page = Admin(url, token, token_file, data_dir).call("GET", "/admin/groups", query=query)
    if as_json:
        _print(page, as_json)
        return
    rows = [{**g, "owner": _named(g["owner"], g.get("owner_name"))} for g in page["groups"]]
    _table(("id", "name", "owner", "members", "join_mode", "created_at"), rows)
    _next_page("im group list", page, rows, limit)


@group_app.command("show")
@flowed
def group_show(
    group: int = typer.Argument(..., help="The group id."),
    url: str = URL, token: str = TOKEN, token_file: Optional[str] = TOKEN_FILE, data_dir: Path = DATA_DIR,
    as_json: bool = JSON,
) -> None:
    """One group, with its members (the first 1000)."""
    found = Admin(url, token, token_file, data_dir).call("GET", f"/admin/groups/{group}",
                                                         query=None if as_json else {"names": 1})
    if as_json:
        _print(found, as_json)
        return
    members = found.pop("member_list")
    owner = _named(found["owner"], found.pop("owner_name", ""))
    _print({**found, "owner": owner}, as_json)
    typer.echo("")
    _table(("user", "username", "role", "joined_at", "muted_until"), members)


@group_app.command("dissolve")
@flowed
def group_dissolve(
    group: int = typer.Argument(..., help="The group id."),
    url: str = URL, token: str = TOKEN, token_file: Optional[str] = TOKEN_FILE, data_dir: Path = DATA_DIR,
    as_json: bool = JSON,
) -> None:
    """Dissolve a group as its owner would (members get GROUP_PUSH "dissolved")."""
    _print(Admin(url, token, token_file, data_dir).call("POST", f"/admin/groups/{group}/dissolve"), as_json)


# -- im cluster, im stats ---------------------------------------------------------------------------

ROUTES = typer.Option("", "--routes", envvar="IM_ROUTES", show_default=False,
                      help="The cluster's Redis (redis://host:port/db?prefix=P): read the node registry there."
                           " Without it: the one node at --url.")


def _registry(routes: str) -> list[dict[str, Any]]:
    """The node registry's records, read from Redis."""
    import msgspec

    from ..backends.redis import RedisRoutes

    url, _, query = routes.partition("?")
    prefix = urllib.parse.parse_qs(query).get("prefix", ["im:"])[0]

    async def read() -> list[Any]:
        registry = RedisRoutes(url, prefix=prefix)
        try:
            return await registry.nodes()
        finally:
            await registry.close()

    try:
        return [msgspec.to_builtins(n) for n in asyncio.run(read())]
    except Exception as exc:  # redis-py's ConnectionError and the like
        _fail(EXIT_UNREACHABLE, f"cannot read the node registry at {url}: {exc}")


def _nodes(routes: str, admin: Admin) -> list[dict[str, Any]]:
    return _registry(routes) if routes else [admin.call("GET", "/admin/node")]


def _row(node: dict[str, Any]) -> dict[str, Any]:
    now = time.time() * 1000
    return {**node, "messages_per_s": node["load"], "uptime": _duration((now - node["started_at"]) / 1000),
            "health": node["state"] if now - node["heartbeat"] < 10_000 else "stale"}


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    return (f"{days}d" if days else "") + f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


@cluster_app.command("nodes")
@flowed
def cluster_nodes(
    routes: str = ROUTES, url: str = URL, token: str = TOKEN, token_file: Optional[str] = TOKEN_FILE,
    data_dir: Path = DATA_DIR,    as_json: bool = JSON,
) -> None:
    """Every live node: id, address, connections, messages/s, version, uptime, health."""
    rows = [_row(n) for n in _nodes(routes, Admin(url, token, token_file, data_dir))]
    _print(rows, as_json, ("id", "address", "connections", "messages_per_s", "version", "uptime", "health"), rows)


@cluster_app.command("drain")
@flowed
def cluster_drain(
    node: str = typer.Argument(..., help="The node id (as `im cluster nodes` lists it)."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait until the node has exited."),
    timeout: float = typer.Option(60.0, help="Seconds to wait with --wait."),
    routes: str = ROUTES, url: str = URL, token: str = TOKEN, token_file: Optional[str] = TOKEN_FILE,
    data_dir: Path = DATA_DIR,    as_json: bool = JSON,
) -> None:
    """Drain a node: it stops accepting connections, closes its clients with 1001 (they
    reconnect to another node), finishes the requests it accepted, and exits."""
    admin = Admin(url, token, token_file, data_dir)
    found = [n for n in _nodes(routes, admin) if n["id"] == node]
    if not found:
        _fail(EXIT_NOT_FOUND, f"no live node {node!r}" + ("" if routes else f" at {url} (give --routes for a cluster)"))
    target = Admin(found[0]["http_url"], admin.token, None)
    target.source = admin.source
    answer = target.call("POST", "/admin/drain")
    gone = False
    if wait:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not gone:
            time.sleep(0.2)
            try:
                urllib.request.urlopen(target.url + "/healthz", timeout=2).close()
            except (urllib.error.URLError, OSError):
                gone = True
        if not gone:
            _fail(EXIT_FAILED, f"node {node} is still up after {timeout:g} s")
    _print({**answer, "exited": gone}, as_json)


@flowed
def stats(url: str = URL, token: str = TOKEN, token_file: Optional[str] = TOKEN_FILE, data_dir: Path = DATA_DIR,
          as_json: bool = JSON) -> None:
    """One node's live numbers: connections, users online, messages, frames, errors, lag."""
    numbers = Admin(url, token, token_file, data_dir).call("GET", "/admin/stats")
    if as_json:
        _print(numbers, as_json)
        return
    people = {("uptime" if k == "uptime_s" else k): (_duration(v) if k == "uptime_s" else v)
              for k, v in numbers.items()}
    people["backends"] = ", ".join(f"{name} {'up' if up else 'DOWN'}" for name, up in numbers["backends"].items())
    _print(people, as_json)
