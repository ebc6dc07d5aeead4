"""List requests served from memory: replies/s of CONVERSATIONS, FRIENDS, GROUPS and
GROUP_MEMBERS through a real node, from many connections on loopback, beside a bare
picows echo that answers with replies of the same sizes, measured in the same run.

    python bench/lists.py [--users 100] [--window 8] [--duration 5] [--warmup 1] [--reps 3]
        [--friends 15] [--groups 10] [--group-size 100] [--conv-page 20] [--member-page 100]
        [--client-procs 1] [--codec cython|python] [--json]

Set-up, not timed, over the protocol (node started like bench/send_throughput.py:
``IM_SCRYPT_LOG_N=10``, rate limit out of the way): ``--users`` connections, one user
logged in on each; user i asks users i+1..i+F to be friends and they accept (so every user
has 2F friends) and sends each of them one message (2F private conversations); user g
(g < G) creates group g with members g..g+S-1 (mod users) and sends one message in it.

Timed, one op after the other: every connection keeps ``--window`` requests of the op in
flight (a new one per reply) for warmup + duration s; only replies in the last
``duration`` s count:

- CONVERSATIONS with limit ``--conv-page`` (20): the newest conversations of the caller;
- FRIENDS (limit 100: all 2F friends);
- GROUPS (limit 100: all the caller's groups);
- GROUP_MEMBERS of one of the caller's groups, limit ``--member-page`` (100).

The baseline is bench/baseline_echo.py started with ``--reply-size OP=BYTES`` for each op,
BYTES being the node's mean reply size of that op in the first repetition, driven by the
same client code with the same request frames. The order node/baseline alternates
between repetitions (the first runs the node first, to learn the reply sizes). Printed per
op, medians over repetitions: replies/s, ratio to the echo, latency p50/p99, server CPU,
server CPU per reply, and the CPU of other processes (flagged above 20 % of a core).
"""
from __future__ import annotations

import argparse
import array
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib
from benchlib import (BENCH_DIR, CpuWindow, call, median, node_command, node_env, percentile, server_codec, start_clients,
                      start_server, stop, stop_clients)

TARGET = 50_000  # replies/s the list ops should reach
OPS = ["CONVERSATIONS", "FRIENDS", "GROUPS", "GROUP_MEMBERS"]
CONTENT = "hello, this is a short chat message"
SETUP_TIMEOUT = 600.0


# -- client process -----------------------------------------------------------------------------------

def client_process(pipe: Any, spec: dict[str, Any]) -> None:
    benchlib.run_client(pipe, _client, spec)


async def _client(pipe: Any, spec: dict[str, Any]) -> None:
    from benchclient import Conn, close_all, connect, limited, rss_peak_kib, serve_commands

    from edgeim.core_ext import bodies
    from edgeim.core_ext.codec import encode_frame
    from edgeim.core_ext.protocol import Flag, Op

    url: str = spec["url"]
    indices: list[int] = spec["indices"]  # the global user indices this process holds
    conns: dict[int, Conn] = {i: Conn(f"u{i:05d}") for i in indices}
    prefix: str = spec["prefix"]

    async def connect_all() -> None:
        await limited([lambda c=c: connect(url, c) for c in conns.values()], 100)

    async def accounts() -> dict[int, int]:
        async def one(i: int, c: Conn) -> None:
            await c.register(f"{prefix}{i:05d}")
            await c.login(f"{prefix}{i:05d}")
        await limited([lambda i=i, c=c: one(i, c) for i, c in conns.items()], 100)
        return {i: c.user_id for i, c in conns.items()}

    async def friend_requests(pairs: list[tuple[int, int]]) -> None:
        await limited([lambda i=i, u=u: conns[i].request(Op.FRIEND_REQUEST, bodies.FriendRequest(user=u))
                       for i, u in pairs], 200)

    async def friend_accepts(pairs: list[tuple[int, int]]) -> None:
        await limited([lambda i=i, u=u: conns[i].request(Op.FRIEND_ACCEPT, bodies.UserRef(user=u))
                       for i, u in pairs], 200)

    async def private_sends(pairs: list[tuple[int, int]]) -> None:
        await limited([lambda n=n, i=i, u=u: conns[i].request(
            Op.SEND, bodies.Send(cmid=f"setup-{i}-{n}", content=CONTENT), target=u)
            for n, (i, u) in enumerate(pairs)], 200)

    async def create_groups(jobs: list[tuple[int, str, list[int]]]) -> list[int]:
        async def one(i: int, name: str, members: list[int]) -> int:
            _, reply = await conns[i].request(Op.GROUP_CREATE, bodies.GroupCreate(name=name, members=members[:500]))
            group = bodies.decode(reply, bodies.GroupInfo).group
            for start in range(500, len(members), 500):
                await conns[i].request(Op.GROUP_INVITE, bodies.GroupUsers(group=group, users=members[start:start + 500]))
            await conns[i].request(Op.SEND, bodies.Send(cmid=f"group-{group}", content=CONTENT),
                                   target=group, flags=Flag.GROUP)
            return group
        return await limited([lambda j=j: one(*j) for j in jobs], 50)

    async def run(op_name: str, window: int, params: dict[int, int], limit: int,
                  start: float, measure_from: float, measure_to: float) -> dict[str, Any]:
        op = int(Op[op_name])
        if op_name == "CONVERSATIONS":
            body_of = lambda i: bodies.encode(bodies.Conversations(limit=limit))  # noqa: E731
        elif op_name == "GROUP_MEMBERS":
            body_of = lambda i: bodies.encode(bodies.GroupMembers(group=params.get(i, 1), limit=limit))  # noqa: E731
        else:
            body_of = lambda i: bodies.encode(bodies.ListPage(limit=limit))  # noqa: E731
        latencies = array.array("d")
        counts = {"replies": 0, "window": 0, "errors": 0, "bytes": 0}
        op_error = int(Op.ERROR)

        def on_reply(c: Conn, reply_op: int, req_id: int, payload: memoryview, now: float) -> None:
            in_flight, body = c.state
            sent = in_flight.pop(req_id, None)
            if sent is None:
                return
            if reply_op == op_error:
                counts["errors"] += 1
            else:
                counts["replies"] += 1
                if measure_from <= now < measure_to:
                    counts["window"] += 1
                    counts["bytes"] += len(payload)
                    latencies.append(now - sent)
            if now < measure_to:
                req = c.new_req()
                c.send_frame(encode_frame(op, req, 0, body))
                in_flight[req] = now

        for i, c in conns.items():
            c.state = ({}, body_of(i))
            c.on_reply = on_reply
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        now = time.monotonic()
        for c in conns.values():
            in_flight, body = c.state
            for _ in range(window):
                req = c.new_req()
                c.send_frame(encode_frame(op, req, 0, body))
                in_flight[req] = now
        await asyncio.sleep(max(0.0, measure_from - time.monotonic()))
        cpu_from = time.process_time()
        await asyncio.sleep(max(0.0, measure_to - time.monotonic()))
        cpu_to = time.process_time()
        deadline = time.monotonic() + 10
        while any(c.state[0] for c in conns.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        unanswered = sum(len(c.state[0]) for c in conns.values())
        for c in conns.values():
            c.on_reply = None
        return dict(counts, unanswered=unanswered, latencies=latencies.tobytes(), cpu_s=cpu_to - cpu_from)

    async def close() -> int:
        await close_all(conns.values())
        return rss_peak_kib()

    await serve_commands(pipe, dict(connect=connect_all, accounts=accounts, friend_requests=friend_requests,
                                    friend_accepts=friend_accepts, private_sends=private_sends,
                                    create_groups=create_groups, run=run, close=close))


# -- parent ---------------------------------------------------------------------------------------------

def _split(items: list[Any], procs: int) -> list[tuple[list[Any]]]:
    """Jobs keyed by user index, to the process that holds that user (index % procs)."""
    out: list[list[tuple[int, Any]]] = [[] for _ in range(procs)]
    for item in items:
        out[item[0] % procs].append(item)
    return [(jobs,) for jobs in out]


def run_once(kind: str, args: argparse.Namespace, sizes: dict[str, int], params: dict[int, int]) -> dict[str, Any]:
    """One server, set up (node), then one measured window per op."""
    n, procs = args.users, args.client_procs
    with tempfile.TemporaryDirectory(prefix=f"edgeim-bench-lists-{kind}-") as tmp:
        log_path = Path(tmp) / "server.log"
        if kind == "edgeim":
            server, url = start_server(node_command(Path(tmp) / "data"), log_path, node_env(args.codec))
        else:
            cmd = [sys.executable, str(BENCH_DIR / "baseline_echo.py"), "--port", "0"]
            from edgeim.core_ext.protocol import Op
            for op_name, size in sizes.items():
                cmd += ["--reply-size", f"{int(Op[op_name])}={size}"]
            server, url = start_server(cmd, log_path)
        clients: benchlib.Clients = []
        try:
            clients = start_clients(client_process, [dict(url=url, indices=list(range(p, n, procs)), prefix="lst")
                                                 for p in range(procs)])
            call(clients, "connect", (), SETUP_TIMEOUT)
            setup_s = 0.0
            if kind == "edgeim":
                t0 = time.monotonic()
                ids: dict[int, int] = {}
                for part in call(clients, "accounts", (), SETUP_TIMEOUT):
                    ids.update(part)
                f = args.friends
                forward = [(i, ids[(i + d) % n]) for i in range(n) for d in range(1, f + 1)]
                backward = [(i, ids[(i - d) % n]) for i in range(n) for d in range(1, f + 1)]
                call(clients, "friend_requests", _split(forward, procs), SETUP_TIMEOUT, per_client=True)
                call(clients, "friend_accepts", _split(backward, procs), SETUP_TIMEOUT, per_client=True)
                call(clients, "private_sends", _split(forward, procs), SETUP_TIMEOUT, per_client=True)
                jobs = [(g % n, f"group {g}", [ids[(g + d) % n] for d in range(1, args.group_size)])
                        for g in range(args.groups)]
                splits = _split(jobs, procs)
                gid: dict[str, int] = {}  # group name -> id
                for part, (held,) in zip(call(clients, "create_groups", splits, SETUP_TIMEOUT, per_client=True), splits):
                    gid.update({job[1]: group for job, group in zip(held, part)})
                # user i asks for the members of one of the groups it is in
                member_of = {i: [g for g in range(args.groups) if (i - g) % n < args.group_size] for i in range(n)}
                params.clear()
                params.update({i: gid[f"group {member_of[i][i % len(member_of[i])]}"] for i in range(n) if member_of[i]})
                setup_s = time.monotonic() - t0
                time.sleep(0.5)
            results: dict[str, Any] = {"kind": kind, "setup_s": setup_s, "ops": {}}
            for op_name in args.ops:
                limit = args.conv_page if op_name == "CONVERSATIONS" else args.member_page if op_name == "GROUP_MEMBERS" else 100
                start = time.monotonic() + 0.3
                measure_from, measure_to = start + args.warmup, start + args.warmup + args.duration
                for _, conn in clients:
                    conn.send(("run", (op_name, args.window, params, limit, start, measure_from, measure_to)))
                time.sleep(max(0.0, measure_from - time.monotonic()))
                cpu = CpuWindow(server.pid)
                cpu.start()
                time.sleep(max(0.0, measure_to - time.monotonic()))
                parts = [benchlib.receive(conn, "ok", 60) for _, conn in clients]
                window = cpu.stop(sum(p["cpu_s"] for p in parts))
                latencies: list[float] = []
                for p in parts:
                    latencies.extend(array.array("d", p["latencies"]))
                latencies.sort()
                replies = sum(p["window"] for p in parts)
                rate = replies / args.duration
                results["ops"][op_name] = dict(
                    window,
                    other_processes_pct=benchlib.other_processes_pct(window),
                    rate=rate,
                    p50_ms=percentile(latencies, 0.5) * 1e3 if latencies else None,
                    p99_ms=percentile(latencies, 0.99) * 1e3 if latencies else None,
                    server_cpu_us_per_reply=window["server_cpu_s"] / replies * 1e6 if replies else None,
                    reply_bytes=sum(p["bytes"] for p in parts) / replies if replies else None,
                    errors=sum(p["errors"] for p in parts),
                    unanswered=sum(p["unanswered"] for p in parts),
                )
                print(f"  {kind:8} {op_name:14} {rate:9,.0f} replies/s  server CPU {window['server_cpu_pct']:3.0f} %"
                      f"  client CPU {window['client_cpu_pct']:3.0f} %  irq {window['irq_softirq_pct']:3.0f} %"
                      f"  other CPU {benchlib.other_processes_pct(window):3.0f} %"
                      f"  reply {results['ops'][op_name]['reply_bytes'] or 0:,.0f} B", file=sys.stderr, flush=True)
                time.sleep(0.3)
            call(clients, "close", (), 60)
            results["server_rss_peak_mib"] = benchlib.rss_peak_kib(server.pid) / 1024
            results["server_codec"] = server_codec(log_path) if kind == "edgeim" else "-"
            return results
        finally:
            stop_clients(clients)
            stop(server)


ROWS = [  # key, label, format, ratio
    ("rate", "replies/s", "{:,.0f}", True),
    ("p50_ms", "latency p50 ms", "{:.2f}", True),
    ("p99_ms", "latency p99 ms", "{:.2f}", True),
    ("server_cpu_pct", "server CPU %", "{:.0f}", True),
    ("server_loop_cpu_pct", "  of which event-loop thread", "{:.0f}", True),
    ("server_cpu_us_per_reply", "server CPU us per reply", "{:.1f}", True),
    ("client_cpu_pct", "client CPU %", "{:.0f}", True),
    ("machine_busy_pct", "machine CPU % busy, all processes", "{:.0f}", False),
    ("irq_softirq_pct", "  of which irq+softirq (no process)", "{:.0f}", False),
    ("other_processes_pct", "  of which other processes", "{:.0f}", False),
    ("reply_bytes", "reply frame bytes (mean)", "{:,.0f}", True),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100, help="connections, one user each (default 100)")
    parser.add_argument("--window", type=int, default=8, help="requests in flight per connection (default 8)")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per op (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first, per op (default 1)")
    parser.add_argument("--friends", type=int, default=15, help="F: each user asks F others; 2F friends each (default 15)")
    parser.add_argument("--groups", type=int, default=10, help="groups (default 10)")
    parser.add_argument("--group-size", type=int, default=100, help="members per group (default 100)")
    parser.add_argument("--conv-page", type=int, default=20, help="CONVERSATIONS limit (default 20)")
    parser.add_argument("--member-page", type=int, default=100, help="GROUP_MEMBERS limit (default 100)")
    parser.add_argument("--client-procs", type=int, default=1, help="load-generator processes (default 1)")
    parser.add_argument("--ops", nargs="+", choices=OPS, default=OPS, help="the ops to measure (default: all four)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the echo baseline")
    benchlib.add_common_args(parser)
    args = parser.parse_args()
    if args.users <= 2 * args.friends or args.group_size > args.users:
        parser.error("need --users > 2 * --friends and --group-size <= --users")

    benchlib.sigterm_unwinds()
    kinds = ["edgeim"] if args.no_baseline else ["edgeim", "baseline"]
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    sizes: dict[str, int] = {}
    params: dict[int, int] = {}
    try:
        for rep in range(args.reps):
            for kind in kinds if rep % 2 == 0 else kinds[::-1]:
                print(f"rep {rep + 1}/{args.reps} {kind}", file=sys.stderr, flush=True)
                result = run_once(kind, args, sizes, params)
                runs[kind].append(result)
                if kind == "edgeim" and not sizes:
                    sizes.update({op: round(r["reply_bytes"]) for op, r in result["ops"].items() if r["reply_bytes"]})
    except KeyboardInterrupt:
        print("interrupted; every process started was stopped", file=sys.stderr)
        sys.exit(130)

    ops = args.ops
    medians = {k: {op: {key: median([r["ops"][op].get(key) for r in rs]) for key, *_ in ROWS} for op in ops}
               for k, rs in runs.items()}
    ratios = {op: (medians["edgeim"][op]["rate"] / medians["baseline"][op]["rate"]
                   if "baseline" in medians and medians["baseline"][op]["rate"] else None) for op in ops}
    problems = [f"{k} rep {i + 1} {op}: {r['ops'][op]['errors']} errors, {r['ops'][op]['unanswered']} unanswered"
                for k, rs in runs.items() for i, r in enumerate(rs) for op in ops
                if r["ops"][op]["errors"] or r["ops"][op]["unanswered"]]
    problems += [f"{k} rep {i + 1} {op}: other processes used {benchlib.other_processes_pct(r['ops'][op]):.0f} % CPU"
                 for k, rs in runs.items() for i, r in enumerate(rs) for op in ops
                 if benchlib.other_processes_pct(r["ops"][op]) > benchlib.NOISY_CPU_PCT]
    if args.json:
        print(json.dumps({"config": vars(args), "machine": benchlib.machine(), "target_replies_per_s": TARGET,
                          "reply_sizes": sizes, "runs": runs, "medians": medians, "ratio_edgeim_baseline": ratios,
                          "warnings": problems}, indent=2))
        return
    print(f"{args.users} connections x {args.window} in flight, {args.duration:g} s measured per op after"
          f" {args.warmup:g} s warm-up, {args.reps} reps (medians), {args.client_procs} client proc(s);"
          f" node codec={runs['edgeim'][0]['server_codec']}; each user: {2 * args.friends} friends"
          f" (a private conversation with each); {args.groups} groups of {args.group_size}; target {TARGET:,} replies/s")
    for op in ops:
        print(f"\n{op}" + (f" (limit {args.conv_page})" if op == "CONVERSATIONS" else
                           f" (limit {args.member_page})" if op == "GROUP_MEMBERS" else " (limit 100)"))
        rows = [(label, medians["edgeim"][op][key], medians.get("baseline", {}).get(op, {}).get(key), has_ratio, fmt)
                for key, label, fmt, has_ratio in ROWS]
        print(benchlib.table(rows, ("edgeim", "echo")))
        rate = medians["edgeim"][op]["rate"]
        print(f"{'vs target ' + format(TARGET, ','):40}{rate / TARGET:>12.2f}")
    print("\nserver peak RSS MiB: edgeim " + ", ".join(f"{r['server_rss_peak_mib']:.1f}" for r in runs["edgeim"])
          + ("; echo " + ", ".join(f"{r['server_rss_peak_mib']:.1f}" for r in runs["baseline"]) if "baseline" in runs else ""))
    print("set-up (not timed) s: " + ", ".join(f"{r['setup_s']:.1f}" for r in runs["edgeim"]))
    for problem in problems:
        print("warning:", problem)


if __name__ == "__main__":
    main()
