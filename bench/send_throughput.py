"""1:1 send throughput of a real node, load from separate client processes on loopback.

    python bench/send_throughput.py [--pairs 50] [--window 16] [--duration 10] [--warmup 2]
        [--reps 3] [--client-procs 1] [--codec cython|python] [--sqlite-sync FULL|NORMAL] [--json]

Each repetition starts ``python -m edgeim.cli serve --port 0`` on a fresh data dir (password
hashing made cheap and the rate limits raised out of the way: benchlib.NODE_ENV; none of
that is what is measured; and ``IM_STRANGERS_MAY_SEND=1``, since 1:1 sends are friends-only
by default and the pairs are strangers), connects ``pairs`` senders and ``pairs`` receivers, registers and logs in
every one of them (not timed), then each sender keeps ``window`` SENDs in flight to its own
receiver, one new SEND per ack, for ``warmup`` + ``duration`` seconds; only the last
``duration`` seconds count. Printed, as medians over the repetitions:

- acks/s: SENDs acknowledged per second; an ack means the message is committed to SQLite;
- pushes/s: MSG_PUSH frames received per second by the receivers;
- send -> ack latency p50/p90/p99;
- CPU over the measured window (100 % = one core): of the server (all threads, its
  event-loop thread alone, and per message), of the client processes, and of the whole
  machine (busy and iowait, every process: other load shows up there and is flagged);
- the server's peak RSS (VmHWM), and the codec each side runs.

The baseline is measured in the same run, with the same client processes, client code and
frame sizes: bench/baseline_echo.py, a picows server that answers each frame at once with a
same-size reply. Its round trips/s, latency and RSS are printed beside the node's, with
the ratio node/baseline. Every process started here is stopped by pid on exit, Ctrl-C
included; the temporary data dirs are removed.
"""
from __future__ import annotations

import argparse
import array
import asyncio
import json
import multiprocessing
import multiprocessing.connection
import os
import re
import signal
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import (BENCH_DIR, NOISY_CPU_PCT, PASSWORD, cpu_seconds, die_with_parent, machine_ticks, node_command,
                      node_env, percentile, receive, rss_peak_kib, server_codec, start_server, stop)
from benchlib import machine as _machine
from benchlib import median as _median_of

CONTENT = "hello, this is a short chat message"  # the same as bench/store_append.py
SETUP_TIMEOUT = 120.0  # seconds for starting a server, connecting and logging everyone in
DRAIN_TIMEOUT = 10.0  # seconds after the window for in-flight acks and pushes to arrive
_HEADER = struct.Struct("<xBxxI")  # op and req_id out of the 20-byte frame header


# -- client process -----------------------------------------------------------------------------

def client_process(conn: multiprocessing.connection.Connection, spec: dict[str, Any]) -> None:
    """Entry point of one load-generator process: set up, report ready, wait for the start
    time from the parent, run, send the counts and latency samples back."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    import uvloop
    try:
        result = uvloop.run(_client(conn, spec))
    except BaseException as exc:  # report, so the parent does not wait for nothing
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        raise
    conn.send(("result", result))


async def _client(conn: multiprocessing.connection.Connection, spec: dict[str, Any]) -> dict[str, Any]:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

    from edgeim.core_ext import bodies
    from edgeim.core_ext.codec import IMPLEMENTATION, encode_frame
    from edgeim.core_ext.protocol import MAX_FRAME_SIZE, SUBPROTOCOL_PREFIX, VERSION, Op

    loop = asyncio.get_running_loop()
    monotonic = time.monotonic
    window: int = spec["window"]
    edgeim: bool = spec["kind"] == "edgeim"
    # window bounds, set when the parent says go; until then nothing is counted
    clock = {"start": float("inf"), "from": float("inf"), "to": float("inf")}
    latencies = array.array("d")
    op_error, op_push, op_send = int(Op.ERROR), int(Op.MSG_PUSH), int(Op.SEND)
    send_body, encode_body = bodies.Send, bodies.encode

    class Peer(WSListener):
        """One connection: a sender (SENDs and their acks) or a receiver (pushes)."""

        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name
            self.transport: WSTransport = None  # type: ignore[assignment]
            self.user_id = 0
            self.target = 0
            self.next_req = 0
            self.setup: dict[int, asyncio.Future[tuple[int, bytes]]] = {}
            self.in_flight: dict[int, float] = {}
            self.acks = self.window_acks = self.errors = 0
            self.pushes = self.window_pushes = 0
            self.cmid_prefix = f"{name}-"
            self.closed = asyncio.Event()

        def on_ws_connected(self, transport: WSTransport) -> None:
            self.transport = transport

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            self.closed.set()
            for future in self.setup.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"{self.name}: connection closed"))

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type is not WSMsgType.BINARY:
                if frame.msg_type is WSMsgType.CLOSE:
                    transport.send_close(frame.get_close_code())
                    transport.disconnect()
                return
            now = monotonic()
            payload = frame.get_payload_as_memoryview()
            op, req_id = _HEADER.unpack_from(payload)
            if req_id == 0:
                if op == op_push:
                    self.pushes += 1
                    if clock["from"] <= now < clock["to"]:
                        self.window_pushes += 1
                return
            sent_at = self.in_flight.pop(req_id, None)
            if sent_at is None:
                future = self.setup.pop(req_id, None)
                if future is not None and not future.done():
                    future.set_result((op, bytes(payload[20:])))
                return
            if op == op_error:
                self.errors += 1
            else:
                self.acks += 1
                if clock["from"] <= now < clock["to"]:
                    self.window_acks += 1
                    latencies.append(now - sent_at)
            if now < clock["to"]:
                self.send(now)

        def send(self, now: float) -> None:
            self.next_req += 1
            req_id = self.next_req
            # fixed-width cmid: every SEND frame has the same size
            body = encode_body(send_body(cmid=f"{self.cmid_prefix}{req_id:010d}", content=CONTENT))
            self.transport.send(WSMsgType.BINARY, encode_frame(op_send, req_id, self.target, body))
            self.in_flight[req_id] = now

        async def request(self, op: int, body: Any) -> tuple[int, bytes]:
            self.next_req += 1
            future: asyncio.Future[tuple[int, bytes]] = loop.create_future()
            self.setup[self.next_req] = future
            self.transport.send(WSMsgType.BINARY, encode_frame(op, self.next_req, 0, encode_body(body)))
            reply_op, reply = await future
            if reply_op == op_error:
                error = bodies.decode(reply, bodies.Error)
                raise RuntimeError(f"{self.name}: {Op(op).name} refused: {error.code} {error.message}")
            return reply_op, reply

        async def log_in(self) -> None:
            username = f"bench_{self.name}"
            _, reply = await self.request(Op.REGISTER, bodies.Register(username=username, password=PASSWORD))
            self.user_id = bodies.decode(reply, bodies.RegisterOk).user_id
            await self.request(Op.LOGIN, bodies.Login(username=username, password=PASSWORD, terminal="bench"))

    async def connect(peer: Peer) -> Peer:
        await ws_connect(lambda: peer, spec["url"], max_frame_size=MAX_FRAME_SIZE,
                         extra_headers={"Sec-WebSocket-Protocol": f"{SUBPROTOCOL_PREFIX}{VERSION}"})
        return peer

    senders = [Peer(f"s{i:04d}") for i in spec["pairs"]]
    receivers = [Peer(f"r{i:04d}") for i in spec["pairs"]]
    peers = senders + receivers

    async def set_up() -> None:
        await asyncio.gather(*(connect(p) for p in peers))
        if edgeim:
            await asyncio.gather(*(p.log_in() for p in peers))
        for i, (sender, receiver) in zip(spec["pairs"], zip(senders, receivers)):
            sender.target = receiver.user_id or i + 1  # the echo server ignores it; same size

    await asyncio.wait_for(set_up(), SETUP_TIMEOUT)
    conn.send(("ready", None))
    start, measure_from, measure_to = await loop.run_in_executor(None, conn.recv)

    await asyncio.sleep(max(0.0, start - monotonic()))
    clock["start"], clock["from"], clock["to"] = start, measure_from, measure_to
    now = monotonic()
    for sender in senders:
        for _ in range(window):
            sender.send(now)
    await asyncio.sleep(max(0.0, measure_from - monotonic()))
    cpu_from = time.process_time()
    await asyncio.sleep(max(0.0, measure_to - monotonic()))
    cpu_to = time.process_time()

    # no new SENDs after the window: wait for the acks in flight, then for their pushes
    deadline = monotonic() + DRAIN_TIMEOUT
    while monotonic() < deadline:
        acks = sum(s.acks for s in senders)
        in_flight = sum(len(s.in_flight) for s in senders)
        if in_flight == 0 and (not edgeim or sum(r.pushes for r in receivers) >= acks):
            break
        await asyncio.sleep(0.02)
    for peer in peers:
        if not peer.transport.is_disconnected:
            peer.transport.send_close()
            peer.transport.disconnect()
    for peer in peers:
        await asyncio.wait_for(peer.closed.wait(), 5.0)

    with open("/proc/self/status") as f:
        rss_peak_kib = int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))  # type: ignore[union-attr]
    return {
        "window_acks": sum(s.window_acks for s in senders),
        "window_pushes": sum(r.window_pushes for r in receivers),
        "acks": sum(s.acks for s in senders),
        "pushes": sum(r.pushes for r in receivers),
        "errors": sum(s.errors for s in senders),
        "unanswered": sum(len(s.in_flight) for s in senders),
        "latencies": latencies.tobytes(),
        "cpu_s": cpu_to - cpu_from,
        "rss_peak_kib": rss_peak_kib,
        "codec": IMPLEMENTATION,
        "frame_bytes": 20 + len(encode_body(send_body(cmid=f"s0000-{0:010d}", content=CONTENT))),
    }


# -- parent: one run ----------------------------------------------------------------------------

def run_once(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    """One server, the client processes, one measured window: the numbers of one repetition."""
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix=f"edgeim-bench-{kind}-") as tmp:
        log_path = Path(tmp) / "server.log"
        if kind == "edgeim":
            # 1:1 sends are friends-only by default; these pairs are strangers
            env = node_env(args.codec, IM_SQLITE_SYNC=args.sqlite_sync, IM_STRANGERS_MAY_SEND="1")
            server, url = start_server(node_command(Path(tmp) / "data"), log_path, env)
        else:
            server, url = start_server([sys.executable, str(BENCH_DIR / "baseline_echo.py"), "--port", "0"], log_path)
        clients: list[tuple[multiprocessing.Process, multiprocessing.connection.Connection]] = []
        try:
            codec = server_codec(log_path) if kind == "edgeim" else "-"
            for p in range(args.client_procs):
                parent_end, child_end = ctx.Pipe()
                spec = dict(url=url, kind=kind, window=args.window,
                            pairs=list(range(p, args.pairs, args.client_procs)))
                proc = ctx.Process(target=client_process, args=(child_end, spec), daemon=True)
                proc.start()
                child_end.close()
                clients.append((proc, parent_end))
            for _, conn in clients:
                receive(conn, "ready", SETUP_TIMEOUT + 30)
            start = time.monotonic() + 0.2
            measure_from, measure_to = start + args.warmup, start + args.warmup + args.duration
            for _, conn in clients:
                conn.send((start, measure_from, measure_to))
            time.sleep(max(0.0, measure_from - time.monotonic()))
            server_cpu, loop_cpu = cpu_seconds(server.pid), cpu_seconds(server.pid, thread=True)
            machine = machine_ticks()
            time.sleep(max(0.0, measure_to - time.monotonic()))
            server_cpu = cpu_seconds(server.pid) - server_cpu
            loop_cpu = cpu_seconds(server.pid, thread=True) - loop_cpu
            machine = [b - a for a, b in zip(machine, machine_ticks())]
            results = [receive(conn, "result", DRAIN_TIMEOUT + 30) for _, conn in clients]
            server_rss = rss_peak_kib(server.pid)
        finally:
            for proc, conn in clients:
                stop(proc)
                conn.close()
            stop(server)

    busy = (sum(machine) - machine[3] - machine[4]) / sum(machine) * 100 * (os.cpu_count() or 1)
    latencies: list[float] = []
    for r in results:
        latencies.extend(array.array("d", r["latencies"]))
    latencies.sort()
    total = {key: sum(r[key] for r in results)
             for key in ("window_acks", "window_pushes", "acks", "pushes", "errors", "unanswered", "cpu_s")}
    return {
        "kind": kind,
        "rate": total["window_acks"] / args.duration,
        "push_rate": total["window_pushes"] / args.duration if kind == "edgeim" else None,
        "p50_ms": percentile(latencies, 0.50) * 1e3 if latencies else float("nan"),
        "p90_ms": percentile(latencies, 0.90) * 1e3 if latencies else float("nan"),
        "p99_ms": percentile(latencies, 0.99) * 1e3 if latencies else float("nan"),
        "server_cpu_pct": server_cpu / args.duration * 100,
        # server CPU time per acked message (per round trip for the echo): less sensitive to
        # the machine's noise than the rates, since a slower run also burns less CPU
        "server_cpu_us_per_msg": server_cpu / total["window_acks"] * 1e6 if total["window_acks"] else None,
        "server_loop_cpu_pct": loop_cpu / args.duration * 100,
        "client_cpu_pct": total["cpu_s"] / args.duration * 100,
        # the whole machine, every process (other load is noise), and the time it sat in fsync
        "machine_busy_pct": busy,
        # busy minus ours: other processes (and unattributed kernel time); above ~20 % the
        # repetition ran on a loaded machine
        "other_cpu_pct": busy - (server_cpu + total["cpu_s"]) / args.duration * 100,
        "machine_iowait_pct": machine[4] / sum(machine) * 100 * (os.cpu_count() or 1),
        "server_rss_peak_mib": server_rss / 1024,
        "client_rss_peak_mib": max(r["rss_peak_kib"] for r in results) / 1024,
        # after the drain: every acked SEND should have been pushed, nothing left unanswered
        "acks_total": total["acks"],
        "pushes_total": total["pushes"] if kind == "edgeim" else None,
        "errors": total["errors"],
        "unanswered": total["unanswered"],
        "server_codec": codec,
        "client_codec": results[0]["codec"],
        "frame_bytes": results[0]["frame_bytes"],
    }


# -- report -------------------------------------------------------------------------------------

_ROWS = [  # key, label, format, whether the edgeim/baseline ratio means something
    ("rate", "msgs/s (acks | echo round trips)", "{:,.0f}", True),
    ("push_rate", "pushes/s at receivers", "{:,.0f}", False),
    ("p50_ms", "latency p50 ms", "{:.2f}", True),
    ("p90_ms", "latency p90 ms", "{:.2f}", True),
    ("p99_ms", "latency p99 ms", "{:.2f}", True),
    ("server_cpu_pct", "server CPU % (window)", "{:.0f}", True),
    ("server_loop_cpu_pct", "  of which event-loop thread", "{:.0f}", True),
    ("server_cpu_us_per_msg", "server CPU us per msg | round trip", "{:.1f}", True),
    ("client_cpu_pct", "client CPU % (window)", "{:.0f}", True),
    ("machine_busy_pct", "machine CPU % busy, all processes", "{:.0f}", False),
    ("other_cpu_pct", "  of which not server or client", "{:.0f}", False),
    ("machine_iowait_pct", "machine iowait %", "{:.0f}", False),
    ("server_rss_peak_mib", "server peak RSS MiB", "{:.1f}", True),
    ("client_rss_peak_mib", "client peak RSS MiB (max/proc)", "{:.1f}", False),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=50, help="sender/receiver connection pairs (default 50)")
    parser.add_argument("--window", type=int, default=16, help="SENDs in flight per sender (default 16)")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first (default 2)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions; medians are printed (default 3)")
    parser.add_argument("--client-procs", type=int, default=1, help="load-generator processes (default 1)")
    parser.add_argument("--codec", choices=["cython", "python"], default="cython",
                        help="server codec; python runs the node with EDGEIM_NO_EXT=1")
    parser.add_argument("--sqlite-sync", choices=["FULL", "NORMAL"], default="FULL", help="IM_SQLITE_SYNC of the node")
    parser.add_argument("--no-baseline", action="store_true", help="skip the echo baseline")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of the table")
    args = parser.parse_args()
    if not 1 <= args.client_procs <= args.pairs:
        parser.error("--client-procs must be 1..pairs")

    # SIGTERM unwinds like Ctrl-C, so the finally blocks stop every process we started
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    kinds = ["edgeim"] if args.no_baseline else ["edgeim", "baseline"]
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    try:
        for rep in range(args.reps):
            # alternate which server goes first, so a drift of the machine hits both
            for kind in kinds if rep % 2 == 0 else kinds[::-1]:
                result = run_once(kind, args)
                runs[kind].append(result)
                print(f"rep {rep + 1}/{args.reps} {kind:8} {result['rate']:9,.0f} msgs/s"
                      f"  p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:6.2f} ms"
                      f"  server CPU {result['server_cpu_pct']:3.0f} %  client CPU {result['client_cpu_pct']:3.0f} %"
                      f"  other CPU {result['other_cpu_pct']:3.0f} %",
                      file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("interrupted; every process started was stopped", file=sys.stderr)
        sys.exit(130)

    medians = {k: {key: _median_of([r[key] for r in rs]) for key, _, _, _ in _ROWS} for k, rs in runs.items()}
    ratio = None
    if "baseline" in medians and medians["baseline"]["rate"]:
        ratio = medians["edgeim"]["rate"] / medians["baseline"]["rate"]  # type: ignore[operator]
    first = runs["edgeim"][0]
    config = dict(vars(args), server_codec=first["server_codec"], client_codec=first["client_codec"],
                  frame_bytes=first["frame_bytes"])

    if args.json:
        print(json.dumps({"config": config, "machine": _machine(), "runs": runs, "medians": medians,
                          "ratio_edgeim_baseline": ratio}, indent=2))
        return

    print(f"{args.pairs} pairs x {args.window} in flight, {args.duration:g} s measured after {args.warmup:g} s"
          f" warm-up, {args.reps} reps (medians), {args.client_procs} client proc(s), SEND frame"
          f" {first['frame_bytes']} B; node: codec={first['server_codec']} sqlite_sync={args.sqlite_sync};"
          f" client codec={first['client_codec']}")
    header = f"{'':36}{'edgeim':>12}" + (f"{'baseline':>12}{'ratio':>8}" if ratio is not None else "")
    print(header)
    for key, label, fmt, has_ratio in _ROWS:
        line = f"{label:36}"
        for kind in kinds:
            value = medians[kind][key]
            line += f"{fmt.format(value) if value is not None else '-':>12}"
        if ratio is not None:
            a, b = medians["edgeim"][key], medians["baseline"][key]
            line += f"{a / b:>8.2f}" if has_ratio and a is not None and b else f"{'-':>8}"
        print(line)
    problems = [f"{k} rep {i + 1}: {r['errors']} error replies, {r['unanswered']} unanswered,"
                f" {r['acks_total']} acks vs {r['pushes_total']} pushes"
                for k, rs in runs.items() for i, r in enumerate(rs)
                if r["errors"] or r["unanswered"]
                or (r["pushes_total"] is not None and r["pushes_total"] != r["acks_total"])]
    problems += [f"{k} rep {i + 1}: other processes used {r['other_cpu_pct']:.0f} % CPU during the window"
                 for k, rs in runs.items() for i, r in enumerate(rs) if r["other_cpu_pct"] > NOISY_CPU_PCT]
    for problem in problems:
        print("warning:", problem)


if __name__ == "__main__":
    main()
