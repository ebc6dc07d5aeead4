"""Event-loop pauses with many long-lived connections: the longest pause of each node's
loop, and its full (generation 2) garbage collections, while 50,000 logged-in connections
stay mostly idle under a light message load and a trickle of reconnects.

    python bench/gc_pause.py [--connections 50000] [--nodes 3] [--client-procs 4] [--rate 50]
                             [--churn 10] [--window 120] [--reps 1] [--compare-freeze] [--json]

One process may hold at most as many sockets as its hard open-files limit (20,000 on the
machine of docs/benchmarks.md, and raising it needs CAP_SYS_RESOURCE), so the connections
are spread over ``--nodes`` independent nodes (each its own embedded store; user ``i`` is
on node ``i % nodes``) and ``--client-procs`` client processes (each raises its soft limit
to the hard one; their connections come from 64 loopback source addresses). Per
repetition: start the nodes (cheap scrypt, no rate limits, auth and idle timeouts of an
hour); register the users over 50 temporary connections per node (not timed); connect
them all, log them all in (the login phase); then the window: each client process sends
1:1 messages between its users on the same node at ``--rate``/procs per second in total
(each answered by a SEND_ACK and pushed to the receiver) and closes and reopens (connect,
LOGIN) ``--churn``/procs connections per second.

Read from each node's ``/metrics`` (the node measures itself): ``edgeim_event_loop_lag_max_seconds``
(the longest lateness of a 0.25 s timer in the last minute: a GC pause, a long callback,
CPU starvation), polled every 10 s in the login phase and at 60 s and 120 s of the
window, so the two readings cover the window exactly; ``edgeim_gc_collections`` and
``edgeim_gc_seconds`` of generation 2 (gc.callbacks timing), read at the window's start
and end; ``edgeim_gc_frozen_objects``. The client processes measure each SEND's ack time
(the longest is a pause as a client sees it, the store's commit included).

``--compare-freeze`` runs the nodes a second time with ``IM_GC_FREEZE_EVERY=0`` (no
gc.freeze) in the same run: the baseline of the freezing (docs/architecture.md).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import benchlib
from benchlib import call, median, node_command, node_env, start_clients, start_server, stop, stop_clients

SETUP_TIMEOUT = 1800.0
POLL_S = 10.0
#: loopback source addresses the connections are spread over (bench/loadgen.py: past ~14K
#: connections from one address to one node, each connect() blocks for milliseconds)
SOURCE_ADDRESSES = 64


def client_process(pipe: Any, spec: dict[str, Any]) -> None:
    benchlib.run_client(pipe, _client, spec)


async def _client(pipe: Any, spec: dict[str, Any]) -> None:
    import asyncio
    import random

    from benchclient import Conn, close_all, limited, serve_commands
    from picows import ws_connect

    from edgeim.core_ext import bodies
    from edgeim.core_ext.protocol import MAX_FRAME_SIZE, SUBPROTOCOL_PREFIX, VERSION, Op

    urls: list[str] = spec["urls"]
    prefix: str = spec["prefix"]
    conns: dict[int, Conn] = {}
    headers = {"Sec-WebSocket-Protocol": f"{SUBPROTOCOL_PREFIX}{VERSION}"}

    def name(i: int) -> str:
        return f"{prefix}{i:06d}"

    async def open_conn(i: int, login: bool) -> Conn:
        conn = Conn(name(i))
        await ws_connect(lambda: conn, urls[i % len(urls)], max_frame_size=MAX_FRAME_SIZE, extra_headers=headers,
                         websocket_handshake_timeout=60, local_addr=(f"127.0.1.{1 + i % SOURCE_ADDRESSES}", 0))
        if login:
            await conn.login(name(i))
        return conn

    async def register(indices: list[int]) -> int:
        by_node: dict[int, list[int]] = {}
        for i in indices:
            by_node.setdefault(i % len(urls), []).append(i)
        done = 0
        for node, chosen in by_node.items():
            temp = [Conn(f"reg{node}-{k}") for k in range(min(25, len(chosen)))]
            await limited([lambda c=c: ws_connect(lambda: c, urls[node], max_frame_size=MAX_FRAME_SIZE,
                                                  extra_headers=headers) for c in temp], 50)

            async def worker(k: int) -> None:
                nonlocal done
                for i in chosen[k::len(temp)]:
                    await temp[k].register(name(i))
                    done += 1

            await asyncio.gather(*(worker(k) for k in range(len(temp))))
            await close_all(temp)
        return done

    async def connect(indices: list[int]) -> int:
        async def one(i: int) -> None:
            conns[i] = await open_conn(i, login=False)
        await limited([lambda i=i: one(i) for i in indices], 100)
        return len(indices)

    async def login() -> int:
        # a connection the node dropped during the handshake (a storm of them) is opened again
        async def one(i: int) -> None:
            if conns[i].is_closed or conns[i].transport is None:
                conns[i] = await open_conn(i, login=False)
            await conns[i].login(conns[i].name)
        await limited([lambda i=i: one(i) for i in list(conns)], 200)
        return len(conns)

    async def load(rate: float, churn: float, seconds: float) -> dict[str, Any]:
        """SENDs at ``rate``/s between users of the same node, ``churn``/s reconnects."""
        rng = random.Random(len(conns))
        indices = sorted(conns)
        acks: list[float] = []
        counts = {"sent": 0, "skipped": 0, "errors": 0, "churned": 0, "churn_errors": 0}
        pending: set[asyncio.Task[Any]] = set()

        async def send_one(k: int) -> None:
            sender = conns[indices[k]]
            receiver = conns[indices[(k + len(urls)) % len(indices)]]  # the next user of the same node
            if sender.is_closed or not receiver.user_id:  # reconnecting (churn)
                counts["skipped"] += 1
                return
            t0 = time.monotonic()
            try:
                await asyncio.wait_for(sender.request(Op.SEND, bodies.Send(cmid=f"{sender.name}-{counts['sent']}",
                                                                           content="hello, a light load"),
                                                      target=receiver.user_id), 30)
                acks.append(time.monotonic() - t0)
            except Exception:
                counts["errors"] += 1

        async def churn_one(k: int) -> None:
            index = indices[k]
            old = conns[index]
            try:
                old.close()
                conns[index] = await open_conn(index, login=True)
                counts["churned"] += 1
            except Exception:
                counts["churn_errors"] += 1

        def spawn(coro: Any) -> None:
            task = asyncio.ensure_future(coro)
            pending.add(task)
            task.add_done_callback(pending.discard)

        start = time.monotonic()
        next_send = next_churn = start
        while time.monotonic() - start < seconds:
            now = time.monotonic()
            while rate and next_send <= now:
                spawn(send_one(rng.randrange(len(indices))))
                counts["sent"] += 1
                next_send += 1.0 / rate
            while churn and next_churn <= now:
                spawn(churn_one(rng.randrange(len(indices))))
                next_churn += 1.0 / churn
            await asyncio.sleep(0.01)
        if pending:
            await asyncio.wait(list(pending), timeout=30)
        acks.sort()
        return {**counts, "acked": len(acks), "ack_max_ms": acks[-1] * 1e3 if acks else None,
                "ack_p99_ms": acks[min(len(acks) - 1, int(0.99 * len(acks)))] * 1e3 if acks else None}

    async def close() -> int:
        await close_all(conns.values(), 30)
        return len(conns)

    await serve_commands(pipe, {"register": register, "connect": connect, "login": login, "load": load,
                                "close": close})


# -- the nodes' /metrics ----------------------------------------------------------------------------

def _http_url(log_path: Path, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(r'"http": "(http://[^"]+)"', log_path.read_text())
        if found:
            return found.group(1)
        time.sleep(0.1)
    raise RuntimeError(f"no HTTP URL in {log_path}")


def scrape(http_url: str) -> dict[str, float]:
    """The samples of the node's /metrics this bench reads, by name with labels."""
    with urllib.request.urlopen(f"{http_url}/metrics", timeout=30) as reply:
        text = reply.read().decode()
    wanted = ("edgeim_event_loop_lag_max_seconds", "edgeim_gc_collections_total", "edgeim_gc_seconds_total",
              "edgeim_gc_frozen_objects", "edgeim_gc_freezes_total", "edgeim_connections", "process_resident_memory")
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(wanted):
            key, _, value = line.rpartition(" ")
            values[key] = values.get(key, 0.0) + float(value) if key.startswith("edgeim_connections") \
                else float(value)
    return values


def _gen2(values: dict[str, float], what: str) -> float:
    return values.get(f'edgeim_gc_{what}_total{{generation="2"}}', 0.0)


# -- one repetition ---------------------------------------------------------------------------------

def run_once(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    n, procs, k = args.connections, args.client_procs, args.nodes
    per_proc = [list(range(p, n, procs)) for p in range(procs)]
    extra = {"IM_AUTH_TIMEOUT": "3600", "IM_IDLE_TIMEOUT": "3600", "IM_STRANGERS_MAY_SEND": "1"}
    if kind == "no-freeze":
        extra["IM_GC_FREEZE_EVERY"] = "0"
    with tempfile.TemporaryDirectory(prefix=f"edgeim-bench-gc-{kind}-") as tmp:
        servers, urls, http = [], [], []
        clients: benchlib.Clients = []
        try:
            for node in range(k):
                log_path = Path(tmp) / f"node{node}.log"
                server, url = start_server(node_command(Path(tmp) / f"data{node}"), log_path,
                                           node_env(args.codec, **extra))
                servers.append(server)
                urls.append(url)
                http.append(_http_url(log_path))
            clients = start_clients(client_process, [dict(urls=urls, prefix="gcp") for _ in range(procs)])
            t0 = time.monotonic()
            call(clients, "register", [(idx,) for idx in per_proc], SETUP_TIMEOUT, per_client=True)
            register_s = time.monotonic() - t0
            print(f"  {kind}: {n} users registered in {register_s:.0f} s", file=sys.stderr, flush=True)

            # the login phase: connect and log in everyone, polling the nodes meanwhile
            before_login = [scrape(h) for h in http]
            t0 = time.monotonic()
            login_lag = [0.0] * k
            for (_, conn), indices in zip(clients, per_proc):
                conn.send(("connect", (indices,)))
            _poll_until(clients, http, login_lag, "connect")
            for _, conn in clients:
                conn.send(("login", ()))
            _poll_until(clients, http, login_lag, "login")
            login_s = time.monotonic() - t0
            load_login = os.getloadavg()[0]  # other processes on the machine stretch every pause
            after_login = [scrape(h) for h in http]
            for i, values in enumerate(after_login):
                login_lag[i] = max(login_lag[i], values.get("edgeim_event_loop_lag_max_seconds", 0.0))
            print(f"  {kind}: {n} connected and logged in in {login_s:.0f} s", file=sys.stderr, flush=True)

            # the window: light load; lag read at +60 s and at the end, each covering the last minute
            w0 = time.monotonic()
            start = [scrape(h) for h in http]
            for _, conn in clients:
                conn.send(("load", (args.rate / procs, args.churn / procs, args.window)))
            window_lag = [0.0] * k
            for at in range(60, int(args.window) + 1, 60):
                time.sleep(max(0.0, w0 + at - time.monotonic()))
                for i, h in enumerate(http):
                    window_lag[i] = max(window_lag[i], scrape(h).get("edgeim_event_loop_lag_max_seconds", 0.0))
            end = [scrape(h) for h in http]
            load_window = os.getloadavg()[0]
            loads = [benchlib.receive(conn, "ok", SETUP_TIMEOUT) for _, conn in clients]
            # what the first node's collector cannot reach after the window, frozen objects
            # included (POST /debug/gc): what freezing would leak, and what waits for a collection
            token = (Path(tmp) / "data0" / "admin.token").read_text().strip()
            request = urllib.request.Request(f"{http[0]}/debug/gc?limit=15", method="POST",
                                             headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(request, timeout=120) as reply:
                census = json.loads(reply.read())
            rss = [benchlib.rss_kib(s.pid) / 1024 for s in servers]
            call(clients, "close", (), 300)
        finally:
            stop_clients(clients)
            for server in servers:
                stop(server)
    acks = [x["ack_max_ms"] for x in loads if x["ack_max_ms"] is not None]
    return {
        "kind": kind, "register_s": register_s, "login_s": login_s,
        "login_longest_pause_s": login_lag,
        "login_gen2": [_gen2(b, "collections") - _gen2(a, "collections") for a, b in zip(before_login, after_login)],
        "login_gen2_s": [_gen2(b, "seconds") - _gen2(a, "seconds") for a, b in zip(before_login, after_login)],
        "window_longest_pause_s": window_lag,
        "window_gen2": [_gen2(b, "collections") - _gen2(a, "collections") for a, b in zip(start, end)],
        "window_gen2_s": [_gen2(b, "seconds") - _gen2(a, "seconds") for a, b in zip(start, end)],
        "frozen_objects": [e.get("edgeim_gc_frozen_objects", 0.0) for e in end],
        "connections": [e.get('edgeim_connections{terminal="bench"}', 0.0) for e in end],
        "rss_mib": rss,
        "sent": sum(x["sent"] for x in loads), "acked": sum(x["acked"] for x in loads),
        "send_errors": sum(x["errors"] for x in loads), "churned": sum(x["churned"] for x in loads),
        "churn_errors": sum(x["churn_errors"] for x in loads),
        "ack_max_ms": max(acks) if acks else None,
        "census_node0": census,
        "loadavg_1min_end_of_login": load_login, "loadavg_1min_end_of_window": load_window,
    }


def _poll_until(clients: benchlib.Clients, http: list[str], lag: list[float], name: str) -> None:
    """Wait for every client's answer to ``name``, reading the nodes' last-minute lag
    every POLL_S seconds meanwhile (overlapping readings cover the whole phase)."""
    waiting = list(range(len(clients)))
    deadline = time.monotonic() + SETUP_TIMEOUT
    next_poll = time.monotonic() + POLL_S
    while waiting:
        if time.monotonic() > deadline:
            raise RuntimeError(f"client processes: no answer to {name!r}")
        for c in list(waiting):
            if clients[c][1].poll(0.05):
                tag, payload = clients[c][1].recv()
                if tag != "ok":
                    raise RuntimeError(f"client process failed: {payload}")
                waiting.remove(c)
        if time.monotonic() >= next_poll:
            next_poll += POLL_S
            for i, h in enumerate(http):
                lag[i] = max(lag[i], scrape(h).get("edgeim_event_loop_lag_max_seconds", 0.0))


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per kind: medians over the repetitions of the per-run figures (a run's longest pause
    is the longest over its nodes; gen-2 counts and seconds are per node, median node)."""
    def per_run(key: str, how: Any) -> float | None:
        return median([how(r[key]) for r in runs])
    return {
        "window_longest_pause_s": per_run("window_longest_pause_s", max),
        "window_gen2_per_node": per_run("window_gen2", median),
        "window_gen2_s_per_node": per_run("window_gen2_s", median),
        "login_longest_pause_s": per_run("login_longest_pause_s", max),
        "login_gen2_per_node": per_run("login_gen2", median),
        "login_gen2_s_per_node": per_run("login_gen2_s", median),
        "frozen_objects_per_node": per_run("frozen_objects", median),
        "rss_mib_per_node": per_run("rss_mib", median),
        "ack_max_ms": median([r["ack_max_ms"] for r in runs]),
    }


ROWS = [
    ("window_longest_pause_s", "longest loop pause in the window, s", "{:.3f}"),
    ("window_gen2_per_node", "full collections per node in the window", "{:.0f}"),
    ("window_gen2_s_per_node", "seconds in them per node", "{:.3f}"),
    ("ack_max_ms", "longest SEND ack in the window, ms", "{:.0f}"),
    ("login_longest_pause_s", "longest loop pause while logging in, s", "{:.3f}"),
    ("login_gen2_per_node", "full collections per node logging in", "{:.0f}"),
    ("login_gen2_s_per_node", "seconds in them per node", "{:.3f}"),
    ("frozen_objects_per_node", "frozen objects per node (gc.freeze)", "{:.0f}"),
    ("rss_mib_per_node", "RSS per node, MiB", "{:.0f}"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=50_000, help="logged-in connections (default 50000)")
    parser.add_argument("--nodes", type=int, default=3, help="nodes they are spread over (default 3)")
    parser.add_argument("--client-procs", type=int, default=4, help="client processes (default 4)")
    parser.add_argument("--rate", type=float, default=50.0, help="1:1 SENDs per second in the window (default 50)")
    parser.add_argument("--churn", type=float, default=10.0, help="reconnects per second in the window (default 10)")
    parser.add_argument("--window", type=float, default=120.0, help="seconds of the window, a multiple of 60 (default 120)")
    parser.add_argument("--compare-freeze", action="store_true", help="also run the nodes with IM_GC_FREEZE_EVERY=0")
    benchlib.add_common_args(parser, reps=1)
    args = parser.parse_args()
    if args.window < 60 or args.window % 60:
        parser.error("--window must be a multiple of 60 s (the lag readings cover a minute each)")

    benchlib.sigterm_unwinds()
    kinds = ["edgeim", "no-freeze"] if args.compare_freeze else ["edgeim"]
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    try:
        for rep in range(args.reps):
            for kind in kinds if rep % 2 == 0 else kinds[::-1]:
                r = run_once(kind, args)
                runs[kind].append(r)
                print(f"run {json.dumps(r)}", file=sys.stderr, flush=True)  # kept should a later run fail
                print(f"rep {rep + 1}/{args.reps} {kind:9} longest pause: window"
                      f" {max(r['window_longest_pause_s']):.3f} s, login {max(r['login_longest_pause_s']):.3f} s;"
                      f" full collections per node in the window {r['window_gen2']}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("interrupted; every process started was stopped", file=sys.stderr)
        sys.exit(130)
    summary = {kind: _summary(rs) for kind, rs in runs.items()}
    if args.json:
        print(json.dumps({"config": vars(args), "machine": benchlib.machine(), "runs": runs, "medians": summary},
                         indent=2))
        return
    print(f"{args.connections} logged-in connections over {args.nodes} nodes from {args.client_procs} client procs;"
          f" window {args.window:g} s: {args.rate:g} SENDs/s, {args.churn:g} reconnects/s; {args.reps} reps (medians)")
    other = summary.get("no-freeze", {})
    rows = [(label, summary["edgeim"][key], other.get(key), True, fmt) for key, label, fmt in ROWS]
    print(benchlib.table(rows, ("edgeim", "no-freeze"), label_width=44))


if __name__ == "__main__":
    main()
