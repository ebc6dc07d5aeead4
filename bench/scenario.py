"""Bench scenarios: a TOML file read the way a JMeter test plan reads.

A scenario has targets (nodes the bench starts, or URLs of running ones), thread groups
(virtual users, ramp-up, duration or loop count, think time, requests in flight per user),
samplers inside each group (the protocol operations a user performs, in order) and
assertions on each sampler. ``load_scenario`` turns a file into a ``Scenario`` or raises
``ScenarioError`` with a message naming the file and the bad key; nothing else is raised
for a bad file. The shipped scenarios live in ``scenarios/`` beside this module
(``shipped()``); docs/benchmarks.md documents the format.
"""
from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

__all__ = ["Scenario", "ThreadGroup", "Sampler", "Target", "Setup", "ScenarioError", "load_scenario",
           "shipped", "resolve", "SAMPLER_TYPES", "ASSERTIONS", "SCENARIO_DIR"]

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"

#: sampler type -> what it does (the label defaults to the type). "send" samplers are
#: measured against the relay ceiling, the others against the echo ceiling.
SAMPLER_TYPES = {
    "login": "connect a WebSocket and LOGIN (Connect column = the connect time)",
    "send_1to1": "SEND to the user's peer; sampled until its SEND_ACK",
    "group_send": "SEND to the user's first group (flag GROUP); sampled until its SEND_ACK",
    "sync": "SYNC of the conversation with the peer from seq 0",
    "history": "HISTORY of the conversation with the peer, newest page",
    "conversations": "CONVERSATIONS, first page",
    "friends": "FRIENDS, first page",
    "friend_requests": "FRIEND_REQUESTS, first page",
    "groups": "GROUPS, first page",
    "group_members": "GROUP_MEMBERS of the user's first group, first page",
    "file_upload_grant": "FILE_UPLOAD: ask for an upload URL for a 100 KiB image in the conversation with the peer",
    "reply_1to1": "SEND to the user's peer quoting the user's last acknowledged 1:1 message (reply_to; a plain"
                  " SEND before the first); sampled until its SEND_ACK",
    "edit": "EDIT of the user's last acknowledged 1:1 message (a SEND of it first, if none yet)",
    "profile_set": "PROFILE_SET: change the user's bio; sampled until PROFILE_SET_OK (each pushes PROFILE_PUSH to"
                   " every device of the user's friends and group members)",
    "react": "REACT on the first message of the conversation with the peer: adds an emoji, the next one takes it back",
    "forward": "FORWARD the first message of the conversation with the peer to the user's first group; sampled until FORWARD_OK",
    "delete_for_me": "DELETE_FOR_ME of one of the first five messages of the conversation with the peer, each in turn"
                     " (needs [setup] messages >= 5)",
    "pin_message": "PIN_MESSAGE of one of the first five messages of the conversation with the peer, UNPIN_MESSAGE of"
                   " it the next time (needs [setup] messages >= 5)",
    "pins": "PINS of the conversation with the peer",
}
#: samplers that act on the messages [setup] seeds in the conversation with the peer
SEEDED_TYPES = frozenset({"delete_for_me", "pin_message"})
#: messages they need there (seqs 1..SEEDED)
SEEDED = 5


def _unsupported() -> dict[str, str]:
    """Sampler types the installed protocol has no operation for, with the reason."""
    from ..core_ext import bodies
    from ..core_ext.protocol import Op
    missing = {}
    if not hasattr(Op, "FILE_UPLOAD"):
        missing["file_upload_grant"] = "this edgeim's protocol has no FILE_UPLOAD operation"
    if not hasattr(Op, "EDIT"):
        missing["edit"] = "this edgeim's protocol has no EDIT operation"
    if "reply_to" not in bodies.Send.__struct_fields__:
        missing["reply_1to1"] = "this edgeim's SEND has no reply_to"
    if not hasattr(Op, "PROFILE_SET"):
        missing["profile_set"] = "this edgeim's protocol has no PROFILE_SET operation"
    for kind, op in (("react", "REACT"), ("forward", "FORWARD")):
        if not hasattr(Op, op):
            missing[kind] = f"this edgeim's protocol has no {op} operation"
    if not hasattr(Op, "DELETE_FOR_ME"):
        for kind in ("delete_for_me", "pin_message", "pins"):
            missing[kind] = "this edgeim's protocol has no per-user views or message pins"
    return missing

SEND_TYPES = frozenset({"send_1to1", "group_send", "reply_1to1"})
ASSERTIONS = {
    "ack": "a reply with the request's id arrives within the sampler's timeout",
    "no_error": "the reply is not an ERROR frame",
    "seq_in_order": "SEND_ACK seqs rise per conversation on a connection; SYNC pages are in seq order",
}


class ScenarioError(ValueError):
    """A scenario file that cannot be run; the message names the file and what is wrong."""


@dataclasses.dataclass(frozen=True)
class Sampler:
    type: str
    label: str
    limit: int = 20  # page size of list/SYNC/HISTORY requests
    timeout: float = 10.0  # seconds for the reply
    assertions: tuple[str, ...] = ("ack", "no_error")


@dataclasses.dataclass(frozen=True)
class ThreadGroup:
    name: str
    users: int
    samplers: tuple[Sampler, ...]
    ramp_up: float = 0.0
    duration: float | None = None  # seconds of the loop; or loops
    loops: int | None = None
    think_time: float = 0.0  # seconds between two samples of one lane
    in_flight: int = 1  # lanes per user: samples a user keeps in flight on its one connection
    peer_group: str = ""  # whose users send_1to1/sync/history talk to ("" = this group)


@dataclasses.dataclass(frozen=True)
class Target:
    nodes: int = 1  # edgeim nodes the bench starts (independent nodes on embedded defaults)
    urls: tuple[str, ...] = ()  # or running nodes: users are spread over them round-robin
    env: tuple[tuple[str, str], ...] = ()  # extra IM_* settings of the nodes the bench starts


@dataclasses.dataclass(frozen=True)
class Setup:
    """Made before the timed part, not timed: accounts (always), then these."""
    friends: int = 0  # each user befriends the next ``friends`` users
    messages: int = 0  # messages each user sends to its peer (conversations to SYNC/HISTORY)
    groups: int = 0  # groups created ...
    group_size: int = 0  # ... each with this many members (consecutive users, wrapping)


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    groups: tuple[ThreadGroup, ...]
    target: Target
    setup: Setup
    processes: int = 1
    ceiling: str = "auto"  # relay | echo | none | auto (relay if any send sampler, else echo)
    path: str = ""

    @property
    def users(self) -> int:
        return sum(g.users for g in self.groups)

    @property
    def ceiling_kind(self) -> str:
        if self.ceiling != "auto":
            return self.ceiling
        sends = any(s.type in SEND_TYPES for g in self.groups for s in g.samplers)
        return "relay" if sends else "echo"

    def scaled(self, users: int | None = None, duration: float | None = None, processes: int | None = None,
               group_size: int | None = None, ramp_up: float | None = None) -> Scenario:
        """The same scenario with its user counts scaled to ``users`` in total (each group
        keeps its share, at least 1), every timed group running ``duration`` s, or another
        number of load processes, group size or ramp-up: the CLI's --users, --duration,
        --processes, --group-size, --ramp-up."""
        result = self
        if users is not None:
            if users < len(self.groups):
                raise ScenarioError(f"{self.name}: --users {users}: at least one per thread group ({len(self.groups)})")
            total = self.users
            groups = tuple(dataclasses.replace(g, users=max(1, round(g.users * users / total))) for g in self.groups)
            result = dataclasses.replace(result, groups=groups)
        if duration is not None:
            groups = tuple(dataclasses.replace(g, duration=duration, loops=None) if g.duration is not None else g
                           for g in result.groups)
            result = dataclasses.replace(result, groups=groups)
        if processes is not None:
            result = dataclasses.replace(result, processes=processes)
        if ramp_up is not None:
            if ramp_up < 0:
                raise ScenarioError(f"{self.name}: --ramp-up must be >= 0")
            result = dataclasses.replace(result, groups=tuple(dataclasses.replace(g, ramp_up=ramp_up)
                                                              for g in result.groups))
        if group_size is not None:
            result = dataclasses.replace(result, setup=dataclasses.replace(result.setup, group_size=group_size))
        _check(result, result.path or result.name)
        return result


def shipped() -> dict[str, Path]:
    """The scenarios that ship with edgeim: name -> file."""
    return {p.stem: p for p in sorted(SCENARIO_DIR.glob("*.toml"))}


def resolve(name_or_path: str) -> Path:
    """A shipped scenario's name, or a path to a TOML file."""
    found = shipped().get(name_or_path)
    if found is not None:
        return found
    path = Path(name_or_path)
    if path.is_file():
        return path
    raise ScenarioError(f"no scenario {name_or_path!r}: not a file, and the shipped ones are "
                        f"{', '.join(shipped()) or 'none'}")


def _take(table: dict[str, Any], where: str, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    if key not in table:
        if default is ...:
            raise ScenarioError(f"{where}: missing key {key!r}")
        return default
    value = table[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise ScenarioError(f"{where}: {key} must be {'/'.join(k.__name__ for k in kinds)}, got {value!r}")
    if not isinstance(value, kinds):
        raise ScenarioError(f"{where}: {key} must be {'/'.join(k.__name__ for k in kinds)}, got {value!r}")
    return value


def _unknown(table: dict[str, Any], where: str, known: set[str]) -> None:
    extra = sorted(set(table) - known)
    if extra:
        raise ScenarioError(f"{where}: unknown key(s) {', '.join(extra)} (known: {', '.join(sorted(known))})")


def _sampler(raw: Any, where: str) -> Sampler:
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: a sampler is a table ([[thread_group.sampler]])")
    _unknown(raw, where, {"type", "label", "limit", "timeout", "assert"})
    kind = _take(raw, where, "type", str)
    if kind not in SAMPLER_TYPES:
        raise ScenarioError(f"{where}: unknown sampler type {kind!r} (known: {', '.join(SAMPLER_TYPES)})")
    unsupported = _unsupported()
    if kind in unsupported:
        raise ScenarioError(f"{where}: sampler {kind!r} cannot run: {unsupported[kind]}")
    assertions = _take(raw, where, "assert", list, ["ack", "no_error"])
    for name in assertions:
        if name not in ASSERTIONS:
            raise ScenarioError(f"{where}: unknown assertion {name!r} (known: {', '.join(ASSERTIONS)})")
    limit = _take(raw, where, "limit", int, 20)
    if not 1 <= limit <= 100:
        raise ScenarioError(f"{where}: limit must be 1..100")
    timeout = float(_take(raw, where, "timeout", (int, float), 10.0))
    if timeout <= 0:
        raise ScenarioError(f"{where}: timeout must be > 0")
    label = _take(raw, where, "label", str, kind)
    if not label or "," in label or "\n" in label:
        raise ScenarioError(f"{where}: label must be non-empty, without commas or newlines")
    return Sampler(type=kind, label=label, limit=limit, timeout=timeout, assertions=tuple(assertions))


def _group(raw: Any, where: str) -> ThreadGroup:
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: a thread group is a table ([[thread_group]])")
    _unknown(raw, where, {"name", "users", "ramp_up", "duration", "loops", "think_time", "in_flight",
                          "peer_group", "sampler"})
    name = _take(raw, where, "name", str)
    where = f"{where} ({name})"
    users = _take(raw, where, "users", int)
    if users < 1:
        raise ScenarioError(f"{where}: users must be >= 1")
    duration = _take(raw, where, "duration", (int, float), None)
    loops = _take(raw, where, "loops", int, None)
    samplers = tuple(_sampler(s, f"{where} sampler {i + 1}") for i, s in enumerate(_take(raw, where, "sampler", list, [])))
    if samplers and (duration is None) == (loops is None):
        raise ScenarioError(f"{where}: give exactly one of duration (seconds) or loops")
    if duration is not None and duration <= 0 or loops is not None and loops < 1:
        raise ScenarioError(f"{where}: duration must be > 0 and loops >= 1")
    in_flight = _take(raw, where, "in_flight", int, 1)
    if not 1 <= in_flight <= 1000:
        raise ScenarioError(f"{where}: in_flight must be 1..1000")
    ramp_up = float(_take(raw, where, "ramp_up", (int, float), 0.0))
    think = float(_take(raw, where, "think_time", (int, float), 0.0))
    if ramp_up < 0 or think < 0:
        raise ScenarioError(f"{where}: ramp_up and think_time must be >= 0")
    if any(s.type == "login" for s in samplers[1:]) or (samplers and samplers[0].type == "login" and in_flight > 1):
        raise ScenarioError(f"{where}: login must be the first sampler, with in_flight = 1")
    return ThreadGroup(name=name, users=users, samplers=samplers, ramp_up=ramp_up,
                       duration=float(duration) if duration is not None else None, loops=loops, think_time=think,
                       in_flight=in_flight,
                       peer_group=_take(raw, where, "peer_group", str, ""))


def _check(scenario: Scenario, where: str) -> None:
    names = [g.name for g in scenario.groups]
    if len(set(names)) != len(names):
        raise ScenarioError(f"{where}: thread group names must differ")
    if not any(g.samplers for g in scenario.groups):
        raise ScenarioError(f"{where}: no thread group has a sampler")
    for g in scenario.groups:
        if g.peer_group and g.peer_group not in names:
            raise ScenarioError(f"{where}: thread group {g.name!r}: peer_group {g.peer_group!r} is not a thread group")
        kinds = {s.type for s in g.samplers}
        if kinds & {"group_send", "group_members"} and not (scenario.setup.groups and scenario.setup.group_size):
            raise ScenarioError(f"{where}: thread group {g.name!r} samples groups: set [setup] groups and group_size")
        if kinds & SEEDED_TYPES and scenario.setup.messages < SEEDED:
            raise ScenarioError(f"{where}: thread group {g.name!r} samples {sorted(kinds & SEEDED_TYPES)}: set [setup]"
                                f" messages to {SEEDED} or more")
    if not 1 <= scenario.processes <= 64:
        raise ScenarioError(f"{where}: [load] processes must be 1..64")
    if scenario.ceiling not in ("auto", "relay", "echo", "none"):
        raise ScenarioError(f"{where}: ceiling must be auto, relay, echo or none")
    # one process holds at most ~19,900 sockets (the hard open-files limit is 20,000)
    per_process = -(-scenario.users // scenario.processes)
    if per_process > 19_000:
        raise ScenarioError(f"{where}: {scenario.users} users over {scenario.processes} load processes is "
                            f"{per_process} sockets per process; at most 19,000 (raise [load] processes)")


def load_scenario(path: str | Path) -> Scenario:
    """Read and check a scenario file; raises ScenarioError (never another error) if bad."""
    path = Path(path)
    where = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"{where}: cannot read: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{where}: not valid TOML: {exc}") from None
    _unknown(data, where, {"name", "description", "ceiling", "target", "load", "setup", "thread_group"})
    target_raw = _take(data, where, "target", dict, {})
    _unknown(target_raw, f"{where} [target]", {"nodes", "urls", "env"})
    urls = _take(target_raw, f"{where} [target]", "urls", list, [])
    if not all(isinstance(u, str) and u.startswith(("ws://", "wss://")) for u in urls):
        raise ScenarioError(f"{where} [target]: urls must be ws:// or wss:// URLs")
    nodes = _take(target_raw, f"{where} [target]", "nodes", int, 1)
    if not 1 <= nodes <= 16:
        raise ScenarioError(f"{where} [target]: nodes must be 1..16")
    env = _take(target_raw, f"{where} [target]", "env", dict, {})
    if not all(k.startswith("IM_") and isinstance(v, str) for k, v in env.items()):
        raise ScenarioError(f"{where} [target]: env maps IM_* names to strings")
    load_raw = _take(data, where, "load", dict, {})
    _unknown(load_raw, f"{where} [load]", {"processes"})
    setup_raw = _take(data, where, "setup", dict, {})
    _unknown(setup_raw, f"{where} [setup]", {"friends", "messages", "groups", "group_size"})
    setup = Setup(**{k: _take(setup_raw, f"{where} [setup]", k, int, 0)
                     for k in ("friends", "messages", "groups", "group_size")})
    if min(dataclasses.astuple(setup)) < 0:
        raise ScenarioError(f"{where} [setup]: counts must be >= 0")
    groups_raw = _take(data, where, "thread_group", list)
    if not groups_raw:
        raise ScenarioError(f"{where}: no [[thread_group]]")
    scenario = Scenario(
        name=_take(data, where, "name", str, path.stem),
        description=_take(data, where, "description", str, ""),
        groups=tuple(_group(g, f"{where} thread_group {i + 1}") for i, g in enumerate(groups_raw)),
        target=Target(nodes=nodes, urls=tuple(urls), env=tuple(sorted(env.items()))),
        setup=setup,
        processes=_take(load_raw, f"{where} [load]", "processes", int, 1),
        ceiling=_take(data, where, "ceiling", str, "auto"),
        path=where,
    )
    _check(scenario, where)
    return scenario
