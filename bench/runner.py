"""``im bench run``: one scenario against edgeim, the bare relay and (optionally)
Centrifugo, in the same run, with results as JMeter writes them.

For each server kind in turn: start the server(s) (unless running URLs are given), create
the users in bulk and what the scenario's [setup] asks (a setup process; not timed), spawn
the load processes (bench/loadgen.py), start them at one instant, print a live progress
line (elapsed, samples, throughput, errors), read the nodes' RSS with every connection
still open, then stop everything started, by pid. The load processes' JTL parts are merged
into ``OUT/<kind>.jtl``; ``OUT/summary.txt``, ``OUT/results.json`` and ``OUT/report.html``
hold the per-sampler tables and edgeim beside the bare relay (ratio) and the peer.

The bare relay (the kind "ceiling" in file names and results.json, as before) is
bench/baseline_relay.py --route: a bare picows server that answers every request frame at
once with a reply of the node's mean reply size for that op (learned from the edgeim run,
which therefore goes first) and relays a SEND to its receiver(s) plus an ack, driven by the
same load code with byte-for-byte the same frames. It is a baseline, not a limit: it keeps
no state, and edgeim, which answers list pages from memory, can be faster than it.
"""
from __future__ import annotations

import array
import dataclasses
import json
import multiprocessing.connection
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from . import benchlib, jtl, loadgen
from .scenario import Scenario, ScenarioError

SETUP_TIMEOUT = 900.0
#: the op each sampler type sends (its reply size is what the bare relay mimics)
SAMPLER_OPS = {"login": 0x03, "send_1to1": 0x10, "group_send": 0x10, "sync": 0x11, "history": 0x12,
               "conversations": 0x13, "friends": 0x24, "friend_requests": 0x25, "groups": 0x34, "group_members": 0x35,
               "file_upload_grant": 0x1A, "reply_1to1": 0x10, "edit": 0x59,
               "profile_set": 0x50, "react": 0x58, "forward": 0x5A, "delete_for_me": 0x60, "pin_message": 0x62,
               "pins": 0x64}
KINDS = ("edgeim", "ceiling", "centrifugo", "centrifugo_durable")
#: the kinds that are Centrifugo (its protocol, its own user ids)
PEERS = ("centrifugo", "centrifugo_durable")
#: what each kind is called in what people read (summaries, the report, docs/benchmarks.md);
#: the kinds stay the names of files and of results.json's keys
NAMES = {"edgeim": "edgeim", "ceiling": "bare relay", "centrifugo": "centrifugo",
         "centrifugo_durable": "centrifugo durable"}
#: what the bare relay is, and how to read a ratio column (a note of every run that has it)
RELAY_NOTE = ("bare relay: bench/baseline_relay.py --route, a bare picows server answering with the node's reply "
              "sizes and relaying SENDs: no store, no session, no codec; a baseline to compare with, not a limit "
              "(edgeim answers list pages from memory, and can be faster). Every ratio column is edgeim / that "
              "column: for throughput, below 1 means edgeim did fewer per second and above 1 more; for latency, "
              "above 1 means edgeim took that many times as long, below 1 less.")


class BenchError(RuntimeError):
    """A run that could not be carried out (a server that did not start, a load process that failed)."""


@dataclasses.dataclass
class KindResult:
    kind: str
    samples: list[jtl.Sample]
    stats: dict[str, jtl.Stats]
    pushes: int
    push_bytes: int
    rss_per_conn_kib: float | None
    connections: int
    cpu: dict[str, float]
    jtl_path: Path
    seconds: float
    servers: int = 1
    #: sampled MSG_PUSH delivery latencies (ms from the server's accept to the receiver)
    delivery_ms: list[float] = dataclasses.field(default_factory=list)


# -- users ------------------------------------------------------------------------------------------

def plan_users(scenario: Scenario, urls: list[str], tag: str) -> list[dict[str, Any]]:
    """Every virtual user: global index, name, thread group, rank in it, target URL (round
    robin over ``urls``) and peer index (send_1to1, SYNC, HISTORY go to the peer)."""
    users: list[dict[str, Any]] = []
    first: dict[str, int] = {}
    for g_no, group in enumerate(scenario.groups, 1):
        first[group.name] = len(users)
        for rank in range(group.users):
            index = len(users)
            users.append({"index": index, "name": f"b{tag}_{index:06d}", "group": group.name, "rank": rank,
                          "thread": f"{group.name} {g_no}-{rank + 1}", "url": urls[index % len(urls)],
                          "sent": 0, "conn": None})
    sizes = {g.name: g.users for g in scenario.groups}
    for user in users:
        group = next(g for g in scenario.groups if g.name == user["group"])
        peer_group = group.peer_group or group.name
        n = sizes[peer_group]
        rank = user["rank"] if peer_group != group.name else (user["rank"] + 1) % n
        user["peer"] = first[peer_group] + rank % n
    return users


def group_members(scenario: Scenario, count: int) -> list[list[int]]:
    """Members (global user indices) of each group of [setup]: consecutive users, wrapping."""
    size = min(scenario.setup.group_size, count)
    return [sorted({(g * size + j) % count for j in range(size)}) for g in range(scenario.setup.groups)]


def setup_main(pipe: Any, spec: dict[str, Any]) -> None:
    benchlib.run_client(pipe, _setup, spec)


async def _setup(pipe: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """Accounts, friendships, seeded messages and groups, over the protocol; not timed."""
    import asyncio

    from edgeim.core_ext import bodies
    from edgeim.core_ext.protocol import Flag, Op

    from .benchclient import Conn, close_all, connect, limited

    users: list[dict[str, Any]] = spec["users"]
    ids: dict[int, int] = {}
    by_url: dict[str, list[dict[str, Any]]] = {}
    for u in users:
        by_url.setdefault(u["url"], []).append(u)
    for url, share in by_url.items():
        temp = [Conn(f"reg{k}") for k in range(min(50, len(share)))]
        await limited([lambda c=c: connect(url, c) for c in temp], 50)

        async def worker(k: int, temp: list[Conn] = temp, share: list[dict[str, Any]] = share) -> None:
            for u in share[k::len(temp)]:
                ids[u["index"]] = await temp[k].register(u["name"])

        await asyncio.gather(*(worker(k) for k in range(len(temp))))
        await close_all(temp)
    count = len(users)
    friends, messages, memberships = spec["friends"], spec["messages"], spec["groups"]
    need = set(range(count)) if friends or messages else set()
    need |= {members[0] for members in memberships}
    conns = {i: Conn(users[i]["name"]) for i in sorted(need)}
    await limited([lambda i=i: connect(users[i]["url"], conns[i]) for i in conns], 100)
    await limited([lambda i=i: conns[i].login(users[i]["name"]) for i in conns], 100)
    pairs = sorted({(i, (i + k) % count) for i in range(count) for k in range(1, friends + 1) if (i + k) % count != i})
    pairs = [(a, b) for a, b in pairs if (b, a) not in set(pairs) or a < b]
    await limited([lambda a=a, b=b: conns[a].request(Op.FRIEND_REQUEST, bodies.FriendRequest(user=ids[b]))
                   for a, b in pairs], 100)
    await limited([lambda a=a, b=b: conns[b].request(Op.FRIEND_ACCEPT, bodies.UserRef(user=ids[a]))
                   for a, b in pairs], 100)
    await limited([lambda i=i, n=n: conns[i].request(Op.SEND, bodies.Send(cmid=f"setup-{n}", content=loadgen.CONTENT),
                                                     target=ids[users[i]["peer"]])
                   for i in range(count) for n in range(messages) if users[i]["peer"] != i], 100)
    group_ids: list[int] = []
    for g, members in enumerate(memberships):
        owner = conns[members[0]]
        others = [ids[m] for m in members[1:]]
        _, reply = await owner.request(Op.GROUP_CREATE, bodies.GroupCreate(name=f"bench{g}", members=others[:500]))
        group = bodies.decode(reply, bodies.GroupInfo).group
        for start in range(500, len(others), 500):
            await owner.request(Op.GROUP_INVITE, bodies.GroupUsers(group=group, users=others[start:start + 500]))
        await owner.request(Op.SEND, bodies.Send(cmid=f"group-{group}", content=loadgen.CONTENT),
                            target=group, flags=Flag.GROUP)
        group_ids.append(group)
    await close_all(conns.values())
    return {"ids": ids, "groups": group_ids}


# -- servers ----------------------------------------------------------------------------------------

def _start_servers(scenario: Scenario, kind: str, tmp: Path, urls: list[str], reply_sizes: dict[int, int],
                   push_bytes: int, cpus: frozenset[int] = frozenset()) -> tuple[list[Any], list[str]]:
    if kind == "edgeim":
        if urls:
            return [], urls
        env = benchlib.node_env("cython", IM_STRANGERS_MAY_SEND="1",
                                IM_GROUP_MAX_MEMBERS=str(max(2000, scenario.setup.group_size)),
                                IM_AUTH_TIMEOUT="600", IM_IDLE_TIMEOUT="600", IM_FILE_GRANTS_PER_MINUTE="1000000",
                                IM_PROFILE_CHANGES_PER_HOUR="1000000",
                                **dict(scenario.target.env))
        procs, found = [], []
        for n in range(scenario.target.nodes):
            proc, url = benchlib.start_server(benchlib.node_command(tmp / f"data{n}"), tmp / f"node{n}.log", env, 60.0,
                                              cpus)
            procs.append(proc)
            found.append(url)
        return procs, found
    if kind == "ceiling":
        cmd = [sys.executable, "-m", "edgeim.bench.baseline_relay", "--route", "--port", "0"]
        for op, size in sorted(reply_sizes.items()):
            cmd += ["--reply-size", f"{op}={size}"]
        if push_bytes:
            cmd += ["--push-bytes", str(push_bytes)]
        procs, found = [], []
        for n in range(scenario.target.nodes if not urls else len(urls)):
            proc, url = benchlib.start_server(cmd, tmp / f"ceiling{n}.log", cpus=cpus)
            procs.append(proc)
            found.append(url)
        return procs, found
    # as many Centrifugo processes as the scenario has nodes: one process holds at most
    # ~19,900 sockets here, so the online scenario's 51,000 connections need three; the
    # durable peer's Redis (one for all of them) goes last, so it stops after them
    from . import peer
    procs, found = [], []
    redis: tuple[Any, str] | None = None
    try:
        if kind == "centrifugo_durable":
            (tmp / "redis").mkdir()
            redis = peer.start_redis(tmp / "redis", cpus=cpus)
        for n in range(scenario.target.nodes):
            folder = tmp / f"centrifugo{n}"
            folder.mkdir()
            proc, url = peer.start_centrifugo(folder, cpus=cpus, redis=redis[1] if redis else "")
            procs.append(proc)
            found.append(url)
    except BaseException:
        for proc in procs + ([redis[0]] if redis else []):
            benchlib.stop(proc)
        raise
    return procs + ([redis[0]] if redis else []), found


# -- one kind ---------------------------------------------------------------------------------------

def run_kind(scenario: Scenario, kind: str, out: Path, urls: list[str], reply_sizes: dict[int, int],
             push_bytes: int, progress: Callable[[str], None], cpus: frozenset[int] = frozenset()) -> KindResult:
    tag = secrets.token_hex(3)
    with tempfile.TemporaryDirectory(prefix=f"edgeim-bench-{kind}-") as tmp_name:
        tmp = Path(tmp_name)
        servers, targets = _start_servers(scenario, kind, tmp, urls if kind not in PEERS else [], reply_sizes,
                                          push_bytes, cpus)
        clients: benchlib.Clients = []
        try:
            users = plan_users(scenario, targets, tag)
            memberships = group_members(scenario, len(users))
            if kind == "edgeim":
                progress(f"{kind}: creating {len(users):,} users and the [setup] data (not timed)\n")
                setup = benchlib.start_clients(setup_main, [{
                    "users": [{k: u[k] for k in ("index", "name", "url", "peer")} for u in users],
                    "friends": scenario.setup.friends, "messages": scenario.setup.messages,
                    "groups": memberships}])
                try:
                    made = benchlib.receive(setup[0][1], "result", SETUP_TIMEOUT)
                finally:
                    benchlib.stop_clients(setup)
                ids, group_ids = made["ids"], made["groups"]
            else:
                ids = {u["index"]: u["index"] + 1 for u in users}
                group_ids = [1_000_000 + g for g in range(len(memberships))]
            member_of: dict[int, list[int]] = {}
            for gid, members in zip(group_ids, memberships):
                for m in members:
                    member_of.setdefault(m, []).append(gid)
            for u in users:
                u["user_id"] = ids[u["index"]]
                u["peer_id"] = ids[u["peer"]]
                a, b = sorted((u["user_id"], u["peer_id"]))
                u["peer_conv"] = f"p{a}_{b}"
                u["group_ids"] = member_of.get(u["index"], [])
            if kind in PEERS:
                from . import peer
                for u in users:
                    u["token"] = peer.token(u["user_id"])
                    u["channel"] = peer.channel(u["user_id"])
                    u["peer_channel"] = peer.channel(u["peer_id"])
            rss_before = {p.pid: benchlib.rss_kib(p.pid) for p in servers}
            procs = max(1, min(scenario.processes, len(users)))
            specs = [{"scenario": scenario, "kind": kind, "users": users[p::procs],
                      "jtl": tmp / f"part{p}.jtl"} for p in range(procs)]
            clients = benchlib.start_clients(loadgen.process_main, specs)
            for _, conn in clients:
                benchlib.receive(conn, "ready", SETUP_TIMEOUT)
            window = benchlib.CpuWindow(servers[0].pid, [p.pid for p, _ in clients],
                                        [p.pid for p in servers[1:]]) if servers else None
            if window:
                window.start()
            t0 = time.monotonic() + 0.3
            for _, conn in clients:
                conn.send(("start", t0))
            _follow(NAMES[kind], clients, t0, scenario, progress)
            cpu = window.stop() if window else {}
            seconds = time.monotonic() - t0
            rss_after = {p.pid: benchlib.rss_kib(p.pid) for p in servers}
            for _, conn in clients:
                conn.send(("close", None))
            results = [benchlib.receive(conn, "result", 120.0) for _, conn in clients]
        finally:
            benchlib.stop_clients(clients)
            for proc in servers:
                benchlib.stop(proc)
        jtl_path = out / f"{kind}.jtl"
        jtl.merge([s["jtl"] for s in specs], jtl_path)
        (out / "logs").mkdir(exist_ok=True)
        for log in tmp.glob("*.log"):
            (out / "logs" / f"{kind}-{log.name}").write_bytes(log.read_bytes()[-200_000:])
    samples = _precise(results)
    connections = len(users)
    rss_per_conn = None
    if servers:
        grown = sum(rss_after[p] - rss_before[p] for p in rss_after)
        rss_per_conn = grown / connections
    return KindResult(kind, samples, jtl.summarize(samples), sum(r["pushes"] for r in results),
                      sum(r["push_bytes"] for r in results), rss_per_conn, connections, cpu, jtl_path, seconds,
                      len(servers), sorted(x for r in results for x in array.array("d", r.get("delivery_ms", b""))))


def _precise(results: list[dict[str, Any]]) -> list[jtl.Sample]:
    samples: list[jtl.Sample] = []
    for r in results:
        cols = {k: array.array(t, r["precise"][k]) for k, t in
                (("ts", "q"), ("elapsed", "d"), ("label", "B"), ("ok", "B"), ("bytes", "I"), ("sent", "I"))}
        labels = r["labels"]
        for ts, el, lab, ok, nb, sent in zip(cols["ts"], cols["elapsed"], cols["label"], cols["ok"], cols["bytes"],
                                             cols["sent"]):
            samples.append(jtl.Sample(ts, el, labels[lab], bool(ok), nb, sent))
    samples.sort(key=lambda s: s.timestamp_ms)
    return samples


def _follow(kind: str, clients: benchlib.Clients, t0: float, scenario: Scenario,
            progress: Callable[[str], None]) -> None:
    """Wait for every load process to finish its lanes, printing the progress line."""
    limit = max((g.ramp_up + (g.duration or 0)) for g in scenario.groups) + 600.0
    latest = {i: (0, 0) for i in range(len(clients))}
    done: set[int] = set()
    conns = {conn: i for i, (_, conn) in enumerate(clients)}
    last_print = 0.0
    while len(done) < len(clients):
        if time.monotonic() - t0 > limit:
            raise BenchError(f"{kind}: the load processes did not finish within {limit:.0f} s")
        for conn in multiprocessing.connection.wait(list(conns), timeout=0.5):
            i = conns[conn]
            try:
                tag, payload = conn.recv()  # type: ignore[union-attr]
            except EOFError:  # the process died without a word (killed, or crashed in C)
                proc = clients[i][0]
                proc.join(1.0)
                raise BenchError(f"{kind}: load process {i} exited (code {proc.exitcode}) in the timed part") from None
            if tag == "progress":
                latest[i] = payload
            elif tag == "done":
                done.add(i)
            else:
                raise BenchError(f"{kind}: load process {i} failed: {payload}")
        now = time.monotonic()
        if now - last_print >= 1.0:
            last_print = now
            samples = sum(s for s, _ in latest.values())
            errors = sum(e for _, e in latest.values())
            elapsed = max(0.001, now - t0)
            progress(f"\r{kind:10} elapsed {elapsed:6.1f} s  samples {samples:>10,}  {samples / elapsed:>9,.0f}/s"
                     f"  errors {errors:,}  finished {len(done)}/{len(clients)} procs")
    progress("\n")


# -- the whole run ----------------------------------------------------------------------------------

def run(scenario: Scenario, out: Path, urls: list[str] | None = None, peer: bool = False, ceiling: bool = True,
        progress: Callable[[str], None] | None = None, command: str = "",
        cpus: frozenset[int] = frozenset(), durable_peer: bool = False) -> dict[str, Any]:
    """Run ``scenario`` against edgeim, then the bare relay, then (``peer``) Centrifugo, then
    (``durable_peer``) Centrifugo on a Redis that fsyncs every write; write the JTLs,
    summary.txt, results.json and report.html into ``out``; return the results.
    ``cpus``: every server the run starts runs on those CPUs only (the load generator
    wherever the kernel puts it)."""
    say = progress or (lambda text: None)
    out.mkdir(parents=True, exist_ok=True)
    urls = list(urls or scenario.target.urls)
    kinds = ["edgeim"]
    if ceiling and scenario.ceiling_kind != "none":
        kinds.append("ceiling")
    if peer or durable_peer:
        types = {s.type for g in scenario.groups for s in g.samplers}
        if not types <= {"login", "send_1to1"}:
            raise ScenarioError(f"{scenario.name}: the Centrifugo peer runs login and send_1to1 only, not "
                                f"{', '.join(sorted(types - {'login', 'send_1to1'}))}")
        kinds += [k for k, wanted in zip(PEERS, (peer, durable_peer)) if wanted]
    results: dict[str, KindResult] = {}
    reply_sizes: dict[int, int] = {}
    push_bytes = 0
    for kind in kinds:
        results[kind] = run_kind(scenario, kind, out, urls if kind not in PEERS else [], reply_sizes, push_bytes,
                                 say, cpus)
        if kind == "edgeim":
            reply_sizes, push_bytes = _reply_sizes(scenario, results[kind])
    return write_outputs(scenario, out, results, command, cpus)


def _reply_sizes(scenario: Scenario, result: KindResult) -> tuple[dict[int, int], int]:
    by_op: dict[int, list[int]] = {}
    types = {s.label: s.type for g in scenario.groups for s in g.samplers}
    for s in result.samples:
        if s.success and s.bytes:
            by_op.setdefault(SAMPLER_OPS[types[s.label]], []).append(s.bytes)
    sizes = {op: max(20, round(sum(v) / len(v))) for op, v in by_op.items()}
    push = round(result.push_bytes / result.pushes) if result.pushes else 0
    return sizes, push


def comparison(scenario: Scenario, results: dict[str, KindResult], markdown: bool = False) -> str:
    """edgeim beside the bare relay (and the ratio) and the peer, per sampler: a text table,
    or with ``markdown`` the table docs/benchmarks.md quotes."""
    edge = results["edgeim"]
    others = [k for k in ("ceiling",) + PEERS if k in results]
    columns = ["edgeim"] + [c for k in others for c in (NAMES[k], "ratio")]
    widths = [9 if c == "ratio" else max(12, len(c) + 2) for c in columns]
    if markdown:
        lines = ["| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    else:
        lines = [f"{'':30}" + "".join(f"{c:>{w}}" for c, w in zip(columns, widths))]

    def row(name: str, values: dict[str, float | None], fmt: str, ratio: bool = True) -> None:
        a = values.get("edgeim")
        cells = [fmt.format(a) if a is not None else "-"]
        for k in others:
            v = values.get(k)
            cells.append(fmt.format(v) if v is not None else "-")
            cells.append((f"{a / v:.2f}" if a / v < 100 else f"{a / v:,.0f}") if ratio and a is not None and v else "-")
        if markdown:
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        else:
            lines.append(f"{name:30}" + "".join(f"{c:>{w}}" for c, w in zip(cells, widths)))

    labels = [label for label in edge.stats if label != "TOTAL"]
    for label in labels:
        row(f"{label} /s", {k: r.stats[label].throughput if label in r.stats else None for k, r in results.items()},
            "{:,.0f}")
        row(f"{label} median ms", {k: r.stats[label].median_ms if label in r.stats else None
                                   for k, r in results.items()}, "{:.2f}")
        row(f"{label} p99 ms", {k: r.stats[label].p99_ms if label in r.stats else None
                                for k, r in results.items()}, "{:.2f}")
        row(f"{label} error %", {k: r.stats[label].error_pct if label in r.stats else None
                                 for k, r in results.items()}, "{:.2f}", False)
    if len(labels) > 1:
        row("all samplers /s", {k: r.stats["TOTAL"].throughput if "TOTAL" in r.stats else None
                                for k, r in results.items()}, "{:,.0f}")
    if any(r.pushes for r in results.values()):
        row("pushes delivered /s", {k: r.pushes / r.seconds if r.seconds else None for k, r in results.items()},
            "{:,.0f}")
    for q, name in ((0.5, "median"), (0.99, "p99")):
        if any(r.delivery_ms for r in results.values()):
            row(f"delivery {name} ms", {k: r.delivery_ms[min(len(r.delivery_ms) - 1, int(q * len(r.delivery_ms)))]
                                        if r.delivery_ms else None for k, r in results.items()}, "{:.2f}", False)
    # CPU: the server's per sample is the figure least moved by other load on the machine
    # (a starved run is slower but also burns less CPU); "other" shows how starved it was
    # (of every server process the scenario started: all its nodes)
    if any(r.cpu for r in results.values()):
        row("server CPU us/sample", {k: r.cpu["server_cpu_s"] / r.stats["TOTAL"].samples * 1e6
                                     if r.cpu and r.stats.get("TOTAL") else None
                                     for k, r in results.items()}, "{:.1f}")
        # where one edgeim node's time goes: its event loop (the main thread) and the rest
        # (the store's writer, the bus's threads)
        one = {k: r for k, r in results.items() if k == "edgeim" and r.servers == 1 and r.cpu
               and "server_loop_cpu_s" in r.cpu and r.stats.get("TOTAL")}
        if one:
            row("  of it, the event loop", {k: r.cpu["server_loop_cpu_s"] / r.stats["TOTAL"].samples * 1e6
                                           for k, r in one.items()}, "{:.1f}", False)
            row("  of it, other threads", {k: (r.cpu["server_cpu_s"] - r.cpu["server_loop_cpu_s"])
                                           / r.stats["TOTAL"].samples * 1e6 for k, r in one.items()}, "{:.1f}", False)
    if any(r.cpu for r in results.values()):
        row("load processes CPU %", {k: r.cpu.get("client_cpu_pct") for k, r in results.items()}, "{:.0f}", False)
        row("other processes CPU %", {k: benchlib.other_processes_pct(r.cpu) if r.cpu else None
                                      for k, r in results.items()}, "{:.0f}", False)
    if any(r.rss_per_conn_kib is not None and r.connections >= 1000 for r in results.values()):
        row("connections", {k: float(r.connections) for k, r in results.items()}, "{:,.0f}", False)
        row("server RSS KiB/conn", {k: r.rss_per_conn_kib for k, r in results.items()}, "{:.1f}")
    return "\n".join(lines)


def _redis_share(result: KindResult) -> str:
    """What Redis (the durable peer's last server) took of its CPU a sample, for its note."""
    each, samples = result.cpu.get("server_cpu_s_each"), result.stats.get("TOTAL")
    if not each or not samples or not samples.samples:
        return ""
    return (f" (in this run Redis took {each[-1] / samples.samples * 1e6:.1f} µs a sample of"
            f" {sum(each) / samples.samples * 1e6:.1f})")


def cpus_note(cpus: frozenset[int], results: dict[str, KindResult]) -> str:
    """The note of a run with ``--cpus``: which servers it started ran on them."""
    started = []
    if results["edgeim"].servers:  # not a node given with --target
        started.append("the node with its threads")
    if "ceiling" in results:
        started.append("the bare relay")
    if any(k in results for k in PEERS):
        started.append("Centrifugo (whose Go runtime then uses as many threads at once as it has CPUs)")
    if "centrifugo_durable" in results:
        started.append("the durable peer's Redis")
    if not started:
        return f"--cpus {','.join(map(str, sorted(cpus)))}: this run started no server (the node was given)"
    listed = started[0] if len(started) == 1 else ", ".join(started[:-1]) + " and " + started[-1]
    return (f"every server this run started ran on CPU {','.join(map(str, sorted(cpus)))} only (--cpus), each in"
            f" its turn: {listed}; the load generator ran wherever the kernel put it")


def write_outputs(scenario: Scenario, out: Path, results: dict[str, KindResult], command: str = "",
                  cpus: frozenset[int] = frozenset()) -> dict[str, Any]:
    notes = []
    if cpus:
        notes.append(cpus_note(cpus, results))
    edge = results["edgeim"]
    other = edge.cpu.get("other_cpu_pct") if edge.cpu else None
    if edge.cpu and benchlib.other_processes_pct(edge.cpu) > benchlib.NOISY_CPU_PCT:
        notes.append(f"noise: other processes used about {benchlib.other_processes_pct(edge.cpu):.0f} % of a core "
                     f"during the edgeim run (machine busy {edge.cpu['machine_busy_pct']:.0f} %)")
    if "centrifugo" in results:
        notes.append("Centrifugo keeps no message durably by default (no history configured here): an edgeim "
                     "SEND_ACK means the message is committed to SQLite, a Centrifugo publish reply means it was "
                     "handed to the in-memory broker.")
    if "centrifugo_durable" in results:
        notes.append("centrifugo durable: Centrifugo on its Redis engine with a history in the channels' namespace, "
                     "on a Redis of its own that appends every write to its AOF and fsyncs it before it answers "
                     "(appendfsync always): a publish reply means the publication is on disk, as an edgeim "
                     "SEND_ACK does. Its server CPU is Centrifugo's and Redis's"
                     + _redis_share(results["centrifugo_durable"]) + ".")
    if "ceiling" in results:
        notes.append(RELAY_NOTE)
    text = [f"scenario {scenario.name}: {scenario.description}".strip(),
            f"users {scenario.users:,} in {len(scenario.groups)} thread group(s), {scenario.processes} load process(es)"]
    for kind, r in results.items():
        text += ["", f"== {NAMES[kind]} ({r.jtl_path.name})", jtl.summary_table(r.stats)]
    cmp_text = comparison(scenario, results)
    text += ["", "== side by side", cmp_text] + [f"note: {n}" for n in notes]
    (out / "summary.txt").write_text("\n".join(text) + "\n", encoding="utf-8")
    # the block docs/benchmarks.md quotes: the command, then edgeim | bare relay | ratio | peer
    (out / "summary.md").write_text(f"`{command or 'im bench run ' + scenario.name}`\n\n"
                                    + comparison(scenario, results, markdown=True) + "\n"
                                    + "".join(f"\n{n}\n" for n in notes), encoding="utf-8")
    jtl.html_report(out / "report.html", f"im bench: {scenario.name}",
                    {NAMES[k]: r.samples for k, r in results.items()}, cmp_text, notes)
    data = {
        "scenario": scenario.name, "description": scenario.description, "path": scenario.path,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "users": scenario.users, "processes": scenario.processes,
        "machine": benchlib.machine(),
        "kinds": {k: {"stats": {label: dataclasses.asdict(st) | {"throughput": st.throughput,
                                                                  "error_pct": st.error_pct}
                                for label, st in r.stats.items()},
                      "pushes": r.pushes, "seconds": r.seconds, "rss_per_conn_kib": r.rss_per_conn_kib,
                      "connections": r.connections, "cpu": r.cpu, "jtl": r.jtl_path.name,
                      "delivery_ms": {"samples": len(r.delivery_ms), **{
                          name: r.delivery_ms[min(len(r.delivery_ms) - 1, int(q * len(r.delivery_ms)))]
                          for q, name in ((0.5, "median"), (0.9, "p90"), (0.99, "p99")) if r.delivery_ms}}}
                  for k, r in results.items()},
        "other_cpu_pct": other, "notes": notes, "command": command,
    }
    (out / "results.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    data["text"] = "\n".join(text)
    return data


def default_out(scenario: Scenario) -> Path:
    return Path("bench-results") / f"{scenario.name}-{time.strftime('%Y%m%d-%H%M%S')}"

