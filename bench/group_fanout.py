"""Group fanout through a real node, from separate client processes on loopback.

    python bench/group_fanout.py [--part a|b|both] [--reps 3] [--json]
        (a) [--members 10000] [--messages 30] [--gap 0.5] [--client-procs-a 2]
        (b) [--members-b 500] [--window 8] [--duration 5] [--warmup 1] [--client-procs 1]

(a) The in-node time of one push to a 10,000-member group with every member online. A
node is started with ``IM_TRACE_FANOUT=1`` (services/delivery.py then logs, for every
conversation push, the time from ``Delivery.to_conv``, called in the commit's callback,
to the frame queued on every local peer, and to the end of the Outbox flush that hands it
to all the sockets), ``IM_GROUP_MAX_MEMBERS=20000``, long auth and idle timeouts, cheap
scrypt and no rate limit. The client processes (``--client-procs-a``, default 2: 10,000
sockets are more than a third of the per-process open file limit away from the node's)
open one connection per member and register every user; the owner logs in and creates the
group (GROUP_CREATE with 499 members, then GROUP_INVITE in chunks of 500); then every
member logs in (nothing of this is timed). The owner then sends ``--messages`` group
messages one at a time (the next ``--gap`` s after the previous ack). Printed: the median
and p90 over the messages of the in-node times (queued, flushed), and the end-to-end
time the clients see, from the SEND to the last of the other 9,999 members receiving its
push (clocks: CLOCK_MONOTONIC, shared by the processes of one machine).

(b) Deliveries/s with a 500-member group, every member online: the owner keeps
``--window`` group SENDs in flight (one new per ack) for warmup + duration s; deliveries
are the MSG_PUSH frames the 499 other members receive in the last ``duration`` s. The
baseline, in the same run with the same client code and frames: bench/baseline_relay.py,
a bare picows server that forwards each frame to all the other 499 connections (padded to
the size of the node's MSG_PUSH) and acks the sender. Medians over ``--reps``; the order
node/relay alternates (the first repetition runs the node first, to learn the sizes).

Every process started is stopped by pid on exit, Ctrl-C included; temporary dirs removed.
"""
from __future__ import annotations

import argparse
import array
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib
from benchlib import (BENCH_DIR, CpuWindow, call, median, node_command, node_env, percentile, rss_kib, server_codec,
                      start_clients, start_server, stop, stop_clients)

CONTENT = "hello, this is a short chat message"
SETUP_TIMEOUT = 1800.0


# -- client process -----------------------------------------------------------------------------------

def client_process(pipe: Any, spec: dict[str, Any]) -> None:
    benchlib.run_client(pipe, _client, spec)


async def _client(pipe: Any, spec: dict[str, Any]) -> None:
    import asyncio

    from benchclient import Conn, fleet, serve_commands

    from edgeim.core_ext import bodies
    from edgeim.core_ext.codec import encode_frame
    from edgeim.core_ext.protocol import Flag, Op

    conns, commands = fleet(spec["url"], spec["prefix"])
    op_push, op_error, op_send = int(Op.MSG_PUSH), int(Op.ERROR), int(Op.SEND)

    async def create_group(owner: int, members: list[int]) -> int:
        c = conns[owner]
        _, reply = await c.request(Op.GROUP_CREATE, bodies.GroupCreate(name="fanout", members=members[:499]))
        group = bodies.decode(reply, bodies.GroupInfo).group
        chunks = [members[k:k + 500] for k in range(499, len(members), 500)]
        await asyncio.gather(*(c.request(Op.GROUP_INVITE, bodies.GroupUsers(group=group, users=chunk))
                               for chunk in chunks))
        return group

    def record(c: Conn, op: int, payload: memoryview, now: float) -> None:
        if op == op_push:
            c.state.append(now)

    async def listen() -> int:
        for c in conns.values():
            c.state = array.array("d")
            c.on_push = record
        return len(conns)

    async def series(owner: int, group: int, count: int, gap: float) -> list[float]:
        """Send ``count`` group messages one at a time; the SEND times."""
        c = conns[owner]
        sent = []
        for k in range(count):
            sent.append(time.monotonic())
            await c.request(Op.SEND, bodies.Send(cmid=f"series-{k:06d}", content=CONTENT), target=group, flags=Flag.GROUP)
            await asyncio.sleep(gap)
        return sent

    async def collect(count: int) -> list[tuple[int, float, float]]:
        """Per message k: how many of this process's members got it, the first and last arrival."""
        out = []
        for k in range(count):
            times = [c.state[k] for c in conns.values() if len(c.state) > k]
            out.append((len(times), min(times) if times else 0.0, max(times) if times else 0.0))
        for c in conns.values():
            c.on_push = None
        return out

    async def stream(owner: int | None, group: int, window: int, start: float, measure_from: float,
                     measure_to: float) -> dict[str, Any]:
        counts = {"pushes": 0, "window_pushes": 0, "acks": 0, "window_acks": 0, "errors": 0,
                  "push_bytes": 0, "ack_bytes": 0}
        latencies = array.array("d")

        def on_push(c: Conn, op: int, payload: memoryview, now: float) -> None:
            if op == op_push:
                counts["pushes"] += 1
                if measure_from <= now < measure_to:
                    counts["window_pushes"] += 1
                    counts["push_bytes"] = len(payload)

        for c in conns.values():
            c.on_push = on_push
        sender = conns.get(owner) if owner is not None else None
        in_flight: dict[int, float] = {}
        cmid = [0]

        def send(now: float) -> None:
            cmid[0] += 1
            req = sender.new_req()  # type: ignore[union-attr]
            body = bodies.encode(bodies.Send(cmid=f"stream-{cmid[0]:010d}", content=CONTENT))
            sender.send_frame(encode_frame(op_send, req, group, body, Flag.GROUP))  # type: ignore[union-attr]
            in_flight[req] = now

        def on_reply(c: Conn, op: int, req_id: int, payload: memoryview, now: float) -> None:
            sent = in_flight.pop(req_id, None)
            if sent is None:
                return
            if op == op_error:
                counts["errors"] += 1
            else:
                counts["acks"] += 1
                if measure_from <= now < measure_to:
                    counts["window_acks"] += 1
                    counts["ack_bytes"] = len(payload)
                    latencies.append(now - sent)
            if now < measure_to:
                send(now)

        if sender is not None:
            sender.on_reply = on_reply
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        if sender is not None:
            now = time.monotonic()
            for _ in range(window):
                send(now)
        await asyncio.sleep(max(0.0, measure_from - time.monotonic()))
        cpu_from = time.process_time()
        await asyncio.sleep(max(0.0, measure_to - time.monotonic()))
        cpu_to = time.process_time()
        deadline = time.monotonic() + 10
        while in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)  # the pushes of the last acks
        for c in conns.values():
            c.on_push = None
            c.on_reply = None
        return dict(counts, unanswered=len(in_flight), latencies=latencies.tobytes(), cpu_s=cpu_to - cpu_from)

    commands.update(create_group=create_group, listen=listen, series=series, collect=collect, stream=stream)
    await serve_commands(pipe, commands)


# -- parent -------------------------------------------------------------------------------------------

def _traces(log_path: Path, offset: int, msg: str) -> list[dict[str, Any]]:
    """The node's log lines ``msg`` ("fanout trace", "gc trace") from byte ``offset`` on."""
    with open(log_path, "rb") as f:
        f.seek(offset)
        lines = f.read().decode(errors="replace").splitlines()
    return [json.loads(line) for line in lines if f'"{msg}"' in line]


def _setup_group(clients: benchlib.Clients, n: int, procs: int, owner: int = 0) -> tuple[int, float]:
    """Connect and register n users (index i in process i % procs), log in the owner, create
    the group of all of them, log everyone else in. Returns the group id and the seconds."""
    t0 = time.monotonic()
    per_proc = [list(range(p, n, procs)) for p in range(procs)]
    call(clients, "connect", [(idx,) for idx in per_proc], SETUP_TIMEOUT, per_client=True)
    ids: dict[int, int] = {}
    for part in call(clients, "register", (), SETUP_TIMEOUT):
        ids.update(part)
    owner_proc = owner % procs
    _, conn = clients[owner_proc]
    conn.send(("login", ([owner],)))
    benchlib.receive(conn, "ok", SETUP_TIMEOUT)
    conn.send(("create_group", (owner, [ids[i] for i in range(n) if i != owner])))
    group = benchlib.receive(conn, "ok", SETUP_TIMEOUT)
    call(clients, "login", [([i for i in idx if i != owner],) for idx in per_proc], SETUP_TIMEOUT, per_client=True)
    return group, time.monotonic() - t0


def part_a(args: argparse.Namespace) -> dict[str, Any]:
    n, procs = args.members, args.client_procs_a
    with tempfile.TemporaryDirectory(prefix="edgeim-bench-fanout-a-") as tmp:
        log_path = Path(tmp) / "server.log"
        env = node_env(args.codec, IM_TRACE_FANOUT="1", IM_GROUP_MAX_MEMBERS=str(max(20000, n)),
                       IM_AUTH_TIMEOUT="3600", IM_IDLE_TIMEOUT="3600", IM_SQLITE_SYNC=args.sqlite_sync)
        server, url = start_server(node_command(Path(tmp) / "data"), log_path, env)
        clients: benchlib.Clients = []
        try:
            clients = start_clients(client_process, [dict(url=url, prefix="fan") for _ in range(procs)])
            group, setup_s = _setup_group(clients, n, procs)
            print(f"  (a) {n} members online, set-up {setup_s:.0f} s; server RSS {rss_kib(server.pid) / 1024:.0f} MiB",
                  file=sys.stderr, flush=True)
            time.sleep(1.0)
            call(clients, "listen", (), 60)
            offset = log_path.stat().st_size
            cpu = CpuWindow(server.pid, [proc.pid for proc, _ in clients])
            cpu.start()
            _, conn = clients[0]
            conn.send(("series", (0, group, args.messages, args.gap)))
            sent = benchlib.receive(conn, "ok", args.messages * (args.gap + 30) + 60)
            time.sleep(1.0)
            window = cpu.stop()
            parts = call(clients, "collect", (args.messages,), 120)
            call(clients, "close", (), 120)
        finally:
            stop_clients(clients)
            stop(server)
        traces = [t for t in _traces(log_path, offset, "fanout trace") if t.get("members") == n]
        gcs = _traces(log_path, offset, "gc trace")
        codec = server_codec(log_path)
    e2e, received = [], []
    for k in range(args.messages):
        got = sum(p[k][0] for p in parts)
        received.append(got)
        last = max(p[k][2] for p in parts if p[k][0]) if got else float("nan")
        e2e.append((last - sent[k]) * 1e3)
    e2e_sorted = sorted(e2e)
    flushed = sorted(t["flushed_us"] / 1e3 for t in traces)
    queued = sorted(t["queued_us"] / 1e3 for t in traces)
    return {
        "members": n, "messages": args.messages, "setup_s": setup_s, "server_codec": codec,
        "traces": len(traces), "receivers_per_message": received,
        "in_node_flushed_ms": flushed, "in_node_queued_ms": queued, "e2e_ms": e2e,
        "in_node_flushed_p50_ms": percentile(flushed, 0.5) if flushed else None,
        "in_node_flushed_p90_ms": percentile(flushed, 0.9) if flushed else None,
        "in_node_queued_p50_ms": percentile(queued, 0.5) if queued else None,
        "in_node_queued_p90_ms": percentile(queued, 0.9) if queued else None,
        "e2e_p50_ms": percentile(e2e_sorted, 0.5), "e2e_p90_ms": percentile(e2e_sorted, 0.9),
        "frame_bytes": traces[0]["frame_bytes"] if traces else None,
        # collections over 5 ms during the series: pauses of the loop
        "gc_pauses_ms": [g["ms"] for g in gcs],
        "gc_pause_generations": [g.get("generation") for g in gcs],
        "window": window,
    }


def run_b(kind: str, args: argparse.Namespace, sizes: dict[str, int]) -> dict[str, Any]:
    n, procs = args.members_b, args.client_procs
    with tempfile.TemporaryDirectory(prefix=f"edgeim-bench-fanout-b-{kind}-") as tmp:
        log_path = Path(tmp) / "server.log"
        if kind == "edgeim":
            env = node_env(args.codec, IM_AUTH_TIMEOUT="600", IM_SQLITE_SYNC=args.sqlite_sync)
            server, url = start_server(node_command(Path(tmp) / "data"), log_path, env)
        else:
            cmd = [sys.executable, str(BENCH_DIR / "baseline_relay.py"), "--port", "0"]
            if sizes:
                cmd += ["--push-bytes", str(sizes["push"]), "--ack-bytes", str(sizes["ack"])]
            server, url = start_server(cmd, log_path)
        clients: benchlib.Clients = []
        try:
            clients = start_clients(client_process, [dict(url=url, prefix="grp") for _ in range(procs)])
            if kind == "edgeim":
                group, setup_s = _setup_group(clients, n, procs)
            else:
                call(clients, "connect", [(list(range(p, n, procs)),) for p in range(procs)], SETUP_TIMEOUT, per_client=True)
                group, setup_s = 1, 0.0
            time.sleep(0.5)
            start = time.monotonic() + 0.3
            measure_from, measure_to = start + args.warmup, start + args.warmup + args.duration
            for p, (_, conn) in enumerate(clients):
                conn.send(("stream", (0 if p == 0 else None, group, args.window, start, measure_from, measure_to)))
            time.sleep(max(0.0, measure_from - time.monotonic()))
            cpu = CpuWindow(server.pid)
            cpu.start()
            time.sleep(max(0.0, measure_to - time.monotonic()))
            parts = [benchlib.receive(conn, "ok", 120) for _, conn in clients]
            window = cpu.stop(sum(p["cpu_s"] for p in parts))
            call(clients, "close", (), 60)
            rss = benchlib.rss_peak_kib(server.pid) / 1024
        finally:
            stop_clients(clients)
            stop(server)
    latencies: list[float] = []
    for p in parts:
        latencies.extend(array.array("d", p["latencies"]))
    latencies.sort()
    total = {k: sum(p[k] for p in parts) for k in ("pushes", "window_pushes", "acks", "window_acks", "errors", "unanswered")}
    deliveries = total["window_pushes"] / args.duration
    return dict(
        window, kind=kind, setup_s=setup_s, other_processes_pct=benchlib.other_processes_pct(window),
        deliveries=deliveries,
        msgs=total["window_acks"] / args.duration,
        p50_ms=percentile(latencies, 0.5) * 1e3 if latencies else None,
        p99_ms=percentile(latencies, 0.99) * 1e3 if latencies else None,
        server_cpu_us_per_delivery=window["server_cpu_s"] / total["window_pushes"] * 1e6 if total["window_pushes"] else None,
        push_bytes=max(p["push_bytes"] for p in parts), ack_bytes=max(p["ack_bytes"] for p in parts),
        server_rss_peak_mib=rss,
        # every acked message should reach the n - 1 others
        pushes_total=total["pushes"], expected_pushes=total["acks"] * (n - 1),
        errors=total["errors"], unanswered=total["unanswered"],
    )


B_ROWS = [  # key, label, format, ratio
    ("deliveries", "deliveries/s (pushes received)", "{:,.0f}", True),
    ("msgs", "group msgs/s (acks)", "{:,.1f}", True),
    ("p50_ms", "send -> ack p50 ms", "{:.2f}", True),
    ("p99_ms", "send -> ack p99 ms", "{:.2f}", True),
    ("server_cpu_pct", "server CPU %", "{:.0f}", True),
    ("server_loop_cpu_pct", "  of which event-loop thread", "{:.0f}", True),
    ("server_cpu_us_per_delivery", "server CPU us per delivery", "{:.2f}", True),
    ("client_cpu_pct", "client CPU %", "{:.0f}", True),
    ("machine_busy_pct", "machine CPU % busy, all processes", "{:.0f}", False),
    ("irq_softirq_pct", "  of which irq+softirq (no process)", "{:.0f}", False),
    ("other_processes_pct", "  of which other processes", "{:.0f}", False),
    ("push_bytes", "push frame bytes", "{:.0f}", True),
    ("server_rss_peak_mib", "server peak RSS MiB", "{:.1f}", True),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["a", "b", "both"], default="both")
    parser.add_argument("--members", type=int, default=10_000, help="(a) group members, all online (default 10000)")
    parser.add_argument("--messages", type=int, default=30, help="(a) group messages sent one at a time (default 30)")
    parser.add_argument("--gap", type=float, default=0.5, help="(a) seconds between an ack and the next send (default 0.5)")
    parser.add_argument("--client-procs-a", type=int, default=2, help="(a) client processes (default 2)")
    parser.add_argument("--members-b", type=int, default=500, help="(b) group members, all online (default 500)")
    parser.add_argument("--window", type=int, default=8, help="(b) group SENDs in flight (default 8)")
    parser.add_argument("--duration", type=float, default=5.0, help="(b) measured seconds (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="(b) unmeasured seconds first (default 1)")
    parser.add_argument("--client-procs", type=int, default=1, help="(b) client processes (default 1)")
    parser.add_argument("--reps-a", type=int, default=1, help="(a) repetitions (default 1: the set-up takes minutes)")
    parser.add_argument("--sqlite-sync", choices=["FULL", "NORMAL"], default="FULL", help="IM_SQLITE_SYNC of the node")
    benchlib.add_common_args(parser)
    args = parser.parse_args()

    benchlib.sigterm_unwinds()
    out: dict[str, Any] = {"config": vars(args), "machine": benchlib.machine()}
    problems: list[str] = []
    try:
        if args.part in ("a", "both"):
            runs_a = []
            for rep in range(args.reps_a):
                print(f"(a) rep {rep + 1}/{args.reps_a}", file=sys.stderr, flush=True)
                runs_a.append(part_a(args))
            out["a"] = {"runs": runs_a}
            for i, r in enumerate(runs_a):
                if r["traces"] != args.messages:
                    problems.append(f"(a) rep {i + 1}: {r['traces']} traces for {args.messages} messages")
                short = [k for k, got in enumerate(r["receivers_per_message"]) if got != args.members - 1]
                if short:
                    problems.append(f"(a) rep {i + 1}: messages {short[:5]} reached fewer than {args.members - 1} members")
                if benchlib.other_processes_pct(r["window"]) > benchlib.NOISY_CPU_PCT:
                    problems.append(f"(a) rep {i + 1}: other processes used {benchlib.other_processes_pct(r['window']):.0f} % CPU"
                                    " during the series")
        if args.part in ("b", "both"):
            kinds = ["edgeim", "baseline"]
            runs_b: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
            sizes: dict[str, int] = {}
            for rep in range(args.reps):
                for kind in kinds if rep % 2 == 0 else kinds[::-1]:
                    r = run_b(kind, args, sizes)
                    runs_b[kind].append(r)
                    if kind == "edgeim" and not sizes:
                        sizes = {"push": r["push_bytes"], "ack": r["ack_bytes"]}
                    print(f"(b) rep {rep + 1}/{args.reps} {kind:8} {r['deliveries']:10,.0f} deliveries/s"
                          f"  {r['msgs']:7,.1f} msgs/s  server CPU {r['server_cpu_pct']:3.0f} %"
                          f"  client CPU {r['client_cpu_pct']:3.0f} %  other CPU {r['other_processes_pct']:3.0f} %",
                          file=sys.stderr, flush=True)
            medians_b = {k: {key: median([r[key] for r in rs]) for key, *_ in B_ROWS} for k, rs in runs_b.items()}
            out["b"] = {"runs": runs_b, "medians": medians_b, "sizes": sizes,
                        "ratio_edgeim_baseline": medians_b["edgeim"]["deliveries"] / medians_b["baseline"]["deliveries"]
                        if medians_b["baseline"]["deliveries"] else None}
            problems += benchlib.noisy(runs_b)
            problems += [f"(b) {k} rep {i + 1}: {r['errors']} errors, {r['unanswered']} unanswered,"
                         f" {r['pushes_total']} pushes for {r['expected_pushes']} expected"
                         for k, rs in runs_b.items() for i, r in enumerate(rs)
                         if r["errors"] or r["unanswered"] or r["pushes_total"] != r["expected_pushes"]]
    except KeyboardInterrupt:
        print("interrupted; every process started was stopped", file=sys.stderr)
        sys.exit(130)
    out["warnings"] = problems

    if args.json:
        print(json.dumps(out, indent=2))
        return
    if "a" in out:
        runs_a = out["a"]["runs"]
        print(f"(a) one push to a group of {args.members} members, all online ({args.client_procs_a} client procs),"
              f" {args.messages} messages one at a time, {args.gap:g} s apart; node codec={runs_a[0]['server_codec']},"
              f" sqlite_sync={args.sqlite_sync}, push frame {runs_a[0]['frame_bytes']} B")
        print(f"{'':52}{'p50':>10}{'p90':>10}{'max':>10}")
        for r in runs_a:
            rows = [("in node: to_conv -> queued on every peer, ms", r["in_node_queued_ms"]),
                    ("in node: to_conv -> Outbox flush done, ms", r["in_node_flushed_ms"]),
                    ("end to end: SEND -> last member received, ms", sorted(r["e2e_ms"]))]
            for label, values in rows:
                if values:
                    print(f"{label:52}{percentile(values, 0.5):>10.2f}{percentile(values, 0.9):>10.2f}{values[-1]:>10.2f}")
            print(f"{'GC pauses > 5 ms during the series: count, max ms':52}{len(r['gc_pauses_ms']):>10}"
                  f"{max(r['gc_pauses_ms'], default=0):>10.1f}  (generations"
                  f" {','.join(str(g) for g in r['gc_pause_generations']) or '-'})")
            print(f"{'set-up s (not timed)':52}{r['setup_s']:>10.0f}")
            print(f"{'server CPU % over the series (mostly idle gaps)':52}{r['window']['server_cpu_pct']:>10.0f}")
            print(f"{'client CPU % over the series':52}{r['window']['client_cpu_pct']:>10.0f}")
            print(f"{'other processes CPU % over the series':52}{benchlib.other_processes_pct(r['window']):>10.0f}")
        if len(runs_a) > 1:
            print(f"median over the {len(runs_a)} reps of each rep's p50 and p90:")
            for label, key in (("in node: to_conv -> Outbox flush done, ms", "in_node_flushed"),
                               ("end to end: SEND -> last member received, ms", "e2e")):
                p50 = median([r[f"{key}_p50_ms"] for r in runs_a])
                p90 = median([r[f"{key}_p90_ms"] for r in runs_a])
                print(f"{label:52}{p50:>10.2f}{p90:>10.2f}")
        print()
    if "b" in out:
        m = out["b"]["medians"]
        print(f"(b) group of {args.members_b} members, all online, {args.window} group SENDs in flight, {args.duration:g} s"
              f" measured after {args.warmup:g} s, {args.reps} reps (medians), {args.client_procs} client proc(s);"
              f" baseline: bench/baseline_relay.py forwarding to the {args.members_b - 1} others")
        rows = [(label, m["edgeim"][key], m["baseline"][key], has_ratio, fmt) for key, label, fmt, has_ratio in B_ROWS]
        print(benchlib.table(rows, ("edgeim", "relay")))
    for problem in problems:
        print("warning:", problem)


if __name__ == "__main__":
    main()
