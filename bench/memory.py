"""Memory per idle connection of a real node: RSS with 10,000 connections, logged in and
idle, minus RSS before they connected, divided by 10,000; beside a bare picows echo
(bench/baseline_echo.py) holding as many idle connections, in the same run.

    python bench/memory.py [--connections 10000] [--client-procs 2] [--reps 3] [--settle 2] [--json]

Per repetition, node: start ``python -m edgeim.cli serve`` (cheap scrypt, no rate limit,
auth and idle timeouts of an hour so idle connections stay); register the N users over 50
temporary connections and close them (so the users exist and the scrypt threads have
run); wait ``--settle`` s and read the node's VmRSS (before); open the N connections from
``--client-procs`` processes (each raises its open file limit), read VmRSS (connected);
log every connection in as its own user, read VmRSS (logged in). Echo: start it, read
VmRSS, open the N connections, read VmRSS; the echo gets the node's picows options (read
buffer size, transport: edge/server.py) so both hold a connection alike. Printed, medians: KiB per connection
connected, and per connection logged in (what a login adds: the session state, the
user's in-memory state, the route and routing table entries). Target: < 10 KiB per idle
logged-in connection.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib
from benchlib import (BENCH_DIR, call, median, node_command, node_env, rss_kib, server_codec, start_clients, start_server,
                      stop, stop_clients)

TARGET_KIB = 10.0
SETUP_TIMEOUT = 1800.0


def client_process(pipe: Any, spec: dict[str, Any]) -> None:
    benchlib.run_client(pipe, _client, spec)


async def _client(pipe: Any, spec: dict[str, Any]) -> None:
    from benchclient import fleet, serve_commands
    _, commands = fleet(spec["url"], spec["prefix"])
    await serve_commands(pipe, commands)


def _echo_options() -> list[str]:
    """The node's picows options for the echo, so that both hold connections alike (a node
    without them gets picows's defaults, and so does the echo)."""
    from edgeim.edge import server
    options = []
    if getattr(server, "READ_BUFFER_SIZE", None):
        options += ["--read-buffer", str(server.READ_BUFFER_SIZE)]
    if getattr(server, "USE_AIOFASTNET", True) is False:
        options.append("--no-aiofastnet")
    return options


def _settled_rss(pid: int, settle: float) -> int:
    time.sleep(settle)
    return rss_kib(pid)


def run_once(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    n, procs = args.connections, args.client_procs
    per_proc = [list(range(p, n, procs)) for p in range(procs)]
    with tempfile.TemporaryDirectory(prefix=f"edgeim-bench-memory-{kind}-") as tmp:
        log_path = Path(tmp) / "server.log"
        if kind == "edgeim":
            env = node_env(args.codec, IM_AUTH_TIMEOUT="3600", IM_IDLE_TIMEOUT="3600")
            server, url = start_server(node_command(Path(tmp) / "data"), log_path, env)
        else:
            server, url = start_server([sys.executable, str(BENCH_DIR / "baseline_echo.py"), "--port", "0",
                                        *_echo_options()], log_path)
        clients: benchlib.Clients = []
        try:
            clients = start_clients(client_process, [dict(url=url, prefix="mem") for _ in range(procs)])
            started = rss_kib(server.pid)
            if kind == "edgeim":
                call(clients, "register_via", [(idx, 50 // procs) for idx in per_proc], SETUP_TIMEOUT, per_client=True)
            before = _settled_rss(server.pid, args.settle)
            t0 = time.monotonic()
            call(clients, "connect", [(idx,) for idx in per_proc], SETUP_TIMEOUT, per_client=True)
            connect_s = time.monotonic() - t0
            connected = _settled_rss(server.pid, args.settle)
            logged_in = None
            login_s = None
            if kind == "edgeim":
                t0 = time.monotonic()
                call(clients, "login", (), SETUP_TIMEOUT)
                login_s = time.monotonic() - t0
                logged_in = _settled_rss(server.pid, args.settle)
            peak = benchlib.rss_peak_kib(server.pid)
            call(clients, "close", (), 300)
        finally:
            stop_clients(clients)
            stop(server)
        codec = server_codec(log_path) if kind == "edgeim" else "-"
    return {
        "kind": kind, "server_codec": codec,
        "rss_started_mib": started / 1024, "rss_before_mib": before / 1024,
        "rss_connected_mib": connected / 1024,
        "rss_logged_in_mib": logged_in / 1024 if logged_in is not None else None,
        "rss_peak_mib": peak / 1024,
        "kib_per_conn_connected": (connected - before) / n,
        "kib_per_conn_logged_in": (logged_in - before) / n if logged_in is not None else None,
        "connect_s": connect_s, "login_s": login_s,
    }


ROWS = [
    ("kib_per_conn_logged_in", "KiB per connection, logged in", "{:.2f}", True),
    ("kib_per_conn_connected", "KiB per connection, connected only", "{:.2f}", True),
    ("rss_before_mib", "RSS before connecting, MiB", "{:.1f}", True),
    ("rss_connected_mib", "RSS connected, MiB", "{:.1f}", True),
    ("rss_logged_in_mib", "RSS logged in, MiB", "{:.1f}", False),
    ("rss_peak_mib", "peak RSS, MiB", "{:.1f}", True),
    ("connect_s", "seconds to connect all (not a benchmark)", "{:.1f}", False),
    ("login_s", "seconds to log all in (not a benchmark)", "{:.1f}", False),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=10_000, help="idle connections (default 10000)")
    parser.add_argument("--client-procs", type=int, default=2, help="client processes (default 2)")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds to wait before each RSS reading (default 2)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the echo baseline")
    benchlib.add_common_args(parser)
    args = parser.parse_args()

    benchlib.sigterm_unwinds()
    kinds = ["edgeim"] if args.no_baseline else ["edgeim", "baseline"]
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    try:
        for rep in range(args.reps):
            for kind in kinds if rep % 2 == 0 else kinds[::-1]:
                r = run_once(kind, args)
                runs[kind].append(r)
                print(f"rep {rep + 1}/{args.reps} {kind:8} connected {r['kib_per_conn_connected']:6.2f} KiB/conn"
                      + (f"  logged in {r['kib_per_conn_logged_in']:6.2f} KiB/conn" if r["kib_per_conn_logged_in"] else ""),
                      file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("interrupted; every process started was stopped", file=sys.stderr)
        sys.exit(130)
    medians = {k: {key: median([r[key] for r in rs]) for key, *_ in ROWS} for k, rs in runs.items()}
    if args.json:
        print(json.dumps({"config": vars(args), "machine": benchlib.machine(), "target_kib_per_conn": TARGET_KIB,
                          "echo_options": _echo_options(),
                          "runs": runs, "medians": medians}, indent=2))
        return
    print(f"{args.connections} idle connections from {args.client_procs} client procs, {args.reps} reps (medians);"
          f" node codec={runs['edgeim'][0]['server_codec']}; baseline: bench/baseline_echo.py"
          f" {' '.join(_echo_options()) or '(picows defaults)'} (connected, no login);"
          f" target < {TARGET_KIB:g} KiB per logged-in connection")
    base = medians.get("baseline", {})
    rows = [(label, medians["edgeim"][key], base.get(key), has_ratio, fmt) for key, label, fmt, has_ratio in ROWS]
    # the echo has no login: compare the node's logged-in figure with the echo's connected one
    rows[0] = (rows[0][0], rows[0][1], base.get("kib_per_conn_connected"), True, rows[0][4])
    print(benchlib.table(rows, ("edgeim", "echo"), label_width=44))


if __name__ == "__main__":
    main()
