"""What one abusive client or account does to everyone else, measured from outside.

Three scenarios, each against a fresh node on default settings (except where a scenario
must lift a limit to stage its attack, named below), with the load generator in a
separate process:

- ``login-flood``: from 127.0.0.2, ``--flood-rate`` wrong-password LOGINs per second for
  ``--flood-seconds``, each on a new connection closed right after sending (abandoned).
  Meanwhile, from 127.0.0.1, a genuine user logs in with its password every 0.25 s (a new
  connection each). Reports the genuine logins' latency and failures, the node's CPU
  seconds, and how long the node stays busy after the flood ends.
- ``sync-hog``: one account with 16 connections, each repeating SYNC (limit 200) over a
  conversation of 220 messages of 32 KB; meanwhile another user SYNCs a small conversation
  every 50 ms and a third logs in with its password every 0.5 s. Reports their latencies
  before (no hog) and during. Staging lifts max_sessions_per_user to 16 and the per-account
  byte budget (the setup writes 7 MB from one account); reads are what is measured.
  (Outside login-flood, the staging lifts the per-address login budget: it logs in dozens
  of times from one address.)
- ``disk-fill``: 8 accounts x 4 connections send 32,000-character messages as fast as their
  acks come back (4 in flight each) for ``--seconds``; reports content stored per second
  over the whole window and over its second half (after any burst allowance), and how many
  sends were refused.

``--node-python`` runs the node with another interpreter, e.g. the virtualenv of an older
checkout, so that before and after are measured the same way:

    git worktree add /tmp/edgeim-before <commit> && python3 -m venv /tmp/edgeim-before/.venv
    /tmp/edgeim-before/.venv/bin/pip install -e /tmp/edgeim-before
    .venv/bin/python bench/abuse.py --node-python /tmp/edgeim-before/.venv/bin/python

Not a test: nothing is asserted.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (  # noqa: E402
    cpu_seconds, die_with_parent, machine, raise_nofile, receive, sigterm_unwinds, start_clients, start_server,
    stop, stop_clients,
)

PASSWORD = "bench-password"
SCENARIOS = ("login-flood", "sync-hog", "disk-fill")


# -- the load generator (a separate process) ----------------------------------------------------

def client_main(conn: Any, spec: dict[str, Any]) -> None:
    die_with_parent()
    raise_nofile()
    import uvloop
    try:
        result = uvloop.run(SCENARIO_CLIENTS[spec["scenario"]](spec))
    except BaseException as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        raise
    conn.send(("result", result))


async def _open(url: str, name: str, source: str = "127.0.0.1") -> Any:
    from benchclient import Conn
    from picows import ws_connect

    from edgeim.core_ext.protocol import MAX_FRAME_SIZE, SUBPROTOCOL_PREFIX, VERSION

    def bound(parsed: Any) -> socket.socket:  # unconnected, from ``source``: picows connects it
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((source, 0))
        return sock

    conn = Conn(name)
    await ws_connect(lambda: conn, url, max_frame_size=MAX_FRAME_SIZE, socket_factory=bound,
                     extra_headers={"Sec-WebSocket-Protocol": f"{SUBPROTOCOL_PREFIX}{VERSION}"})
    return conn


async def _login_latency(url: str, username: str) -> tuple[float, str]:
    """(seconds, outcome) of one password login on a new connection: "ok", an error code,
    or "closed" (e.g. the auth timeout)."""
    from edgeim.core_ext import bodies
    from edgeim.core_ext.protocol import Op
    started = time.monotonic()
    try:
        conn = await _open(url, "probe")
        try:
            await asyncio.wait_for(conn.request(Op.LOGIN, bodies.Login(username=username, password=PASSWORD,
                                                                      terminal="probe")), 60)
            outcome = "ok"
        finally:
            conn.close()
    except Exception as exc:  # refused (an ERROR frame), closed, or timed out
        text = str(exc)
        outcome = text.split("refused: ")[1].split()[0] if "refused: " in text else type(exc).__name__
    return time.monotonic() - started, outcome


async def _account(url: str, name: str, terminal: str = "bench", register: bool = True) -> Any:
    conn = await _open(url, name)
    if register:
        await conn.register(name)
    await conn.login(name, terminal)
    return conn


async def login_flood_client(spec: dict[str, Any]) -> dict[str, Any]:
    from edgeim.core_ext import bodies
    from edgeim.core_ext.codec import encode_frame
    from edgeim.core_ext.protocol import Op
    url = spec["url"]
    setup = await _open(url, "setup")
    await setup.register("genuine")
    setup.close()
    probes: list[tuple[float, float, str]] = []  # (started at, seconds, outcome)
    start = time.monotonic()
    flood_end = start + spec["flood_seconds"]
    end = flood_end + spec["tail_seconds"]

    async def probe_loop() -> None:
        tasks = []
        while time.monotonic() < end:
            at = time.monotonic() - start

            async def one(at: float = at) -> None:
                seconds, outcome = await _login_latency(url, "genuine")
                probes.append((at, seconds, outcome))
            tasks.append(asyncio.ensure_future(one()))
            await asyncio.sleep(0.25)
        await asyncio.gather(*tasks)

    sent = 0

    async def flood() -> None:
        nonlocal sent
        interval = 1.0 / spec["flood_rate"]
        next_at = time.monotonic()
        frame = encode_frame(Op.LOGIN, 1, 0, bodies.encode(bodies.Login(username="genuine", password="wrong-password",
                                                                        terminal="web")))
        pending: set[asyncio.Task[None]] = set()

        async def one() -> None:
            nonlocal sent
            try:
                conn = await _open(url, "flood", "127.0.0.2")
            except OSError:
                return
            conn.send_frame(frame)
            sent += 1
            conn.close()  # abandoned: nobody waits for the answer

        while time.monotonic() < flood_end:
            task = asyncio.ensure_future(one())
            pending.add(task)
            task.add_done_callback(pending.discard)
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.gather(*pending)

    await asyncio.gather(probe_loop(), flood())
    return {"probes": probes, "flood_sent": sent}


async def sync_hog_client(spec: dict[str, Any]) -> dict[str, Any]:
    from edgeim.core_ext import bodies
    from edgeim.core_ext.protocol import Op
    url = spec["url"]
    hog = await _account(url, "hog", "t0")
    peer = await _account(url, "peer")
    victim = await _account(url, "victim")
    friend = await _account(url, "friend")
    big = "x" * 32_000
    for n in range(220):
        _, reply = await peer.request(Op.SEND, bodies.Send(cmid=f"h{n}", content=big), target=hog.user_id)
    conv = bodies.decode(reply, bodies.SendAck).conv
    for n in range(10):
        _, reply = await friend.request(Op.SEND, bodies.Send(cmid=f"v{n}", content="hello"), target=victim.user_id)
    small = bodies.decode(reply, bodies.SendAck).conv
    hogs = [hog] + [await _account(url, "hog", f"t{n}", register=False) for n in range(1, 16)]
    syncs: list[tuple[str, float]] = []
    logins: list[tuple[str, float, str]] = []
    phase = "quiet"
    stop_at = time.monotonic() + spec["quiet_seconds"] + spec["seconds"]

    async def victim_loop() -> None:
        while time.monotonic() < stop_at:
            t = time.monotonic()
            await victim.request(Op.SYNC, bodies.Sync(conv=small, after_seq=0, limit=10))
            syncs.append((phase, time.monotonic() - t))
            await asyncio.sleep(0.05)

    async def login_loop() -> None:
        while time.monotonic() < stop_at:
            seconds, outcome = await _login_latency(url, "friend")
            logins.append((phase, seconds, outcome))
            await asyncio.sleep(0.5)

    hogged = {"ok": 0, "refused": 0}

    async def hog_loop(conn: Any) -> None:
        while time.monotonic() < stop_at:
            if phase == "hog":
                try:
                    await conn.request(Op.SYNC, bodies.Sync(conv=conv, after_seq=0, limit=200))
                    hogged["ok"] += 1
                except Exception:  # rate limited: keep going
                    hogged["refused"] += 1
                    await asyncio.sleep(0.01)
            else:
                await asyncio.sleep(0.05)

    async def phases() -> None:
        nonlocal phase
        await asyncio.sleep(spec["quiet_seconds"])
        phase = "hog"

    await asyncio.gather(victim_loop(), login_loop(), phases(), *(hog_loop(c) for c in hogs))
    return {"syncs": syncs, "logins": logins, "hog_syncs": hogged}


async def disk_fill_client(spec: dict[str, Any]) -> dict[str, Any]:
    from benchclient import RequestFailed

    from edgeim.core_ext import bodies
    from edgeim.core_ext.protocol import Op
    url = spec["url"]
    sink = await _account(url, "sink")
    senders = []
    for a in range(8):
        first = await _account(url, f"filler{a}", "t0")
        senders.append(first)
        senders += [await _account(url, f"filler{a}", f"t{n}", register=False) for n in range(1, 4)]
    content = "y" * 32_000
    acked: list[float] = []  # when each ack came, relative to the start
    refused = 0
    start = time.monotonic()
    end = start + spec["seconds"]

    async def pump(conn: Any) -> None:
        nonlocal refused
        n = 0
        while time.monotonic() < end:
            n += 1
            try:
                await conn.request(Op.SEND, bodies.Send(cmid=f"{conn.name}-{id(conn)}-{n}", content=content),
                                   target=sink.user_id)
                acked.append(time.monotonic() - start)
            except RequestFailed:
                refused += 1
                await asyncio.sleep(0.05)

    await asyncio.gather(*(pump(conn) for conn in senders for _ in range(4)))
    return {"acked_at": acked, "refused": refused, "bytes": len(content)}


SCENARIO_CLIENTS = {"login-flood": login_flood_client, "sync-hog": sync_hog_client, "disk-fill": disk_fill_client}


# -- the parent: a node per scenario, the client process, the report -----------------------------

def run(scenario: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    data = workdir / scenario
    env = {"IM_STRANGERS_MAY_SEND": "1", "IM_SQLITE_SYNC": args.sqlite_sync}
    if scenario != "login-flood":  # the set-up logs in dozens of times from one address
        env.update(IM_LOGIN_RATE="1000000", IM_LOGIN_BURST="1000000")
    if scenario == "sync-hog":
        env.update(IM_MAX_SESSIONS_PER_USER="16", IM_USER_SEND_BYTES_RATE="1000000000",
                   IM_USER_SEND_BYTES_BURST="1000000000", IM_USER_SEND_RATE="100000", IM_USER_SEND_BURST="100000")
    cmd = [args.node_python, "-m", "edgeim.cli", "serve", "--port", "0", "--data-dir", str(data)]
    node, url = start_server(cmd, workdir / f"{scenario}.log", env={**os.environ, **env})
    clients = []
    try:
        spec = {"scenario": scenario, "url": url, "flood_rate": args.flood_rate, "flood_seconds": args.flood_seconds,
                "tail_seconds": args.tail_seconds, "seconds": args.seconds, "quiet_seconds": 3.0}
        cpu_before = cpu_seconds(node.pid)
        clients = start_clients(client_main, [spec])
        result = receive(clients[0][1], "result", 900)
        result["node_cpu_s"] = cpu_seconds(node.pid) - cpu_before
        if scenario == "login-flood":
            result["busy_after_s"] = _busy_for(node.pid)
        return result
    finally:
        stop_clients(clients)
        stop(node)


def _busy_for(pid: int, idle_pct: float = 5.0, limit: float = 120.0) -> float:
    """Seconds until the node's CPU use over one second falls under ``idle_pct``."""
    started = time.monotonic()
    last = cpu_seconds(pid)
    while time.monotonic() - started < limit:
        time.sleep(1.0)
        now = cpu_seconds(pid)
        if (now - last) * 100 < idle_pct:
            return round(time.monotonic() - started - 1.0, 1)
        last = now
    return limit


def summary(scenario: str, r: dict[str, Any]) -> dict[str, Any]:
    def p(values: list[float], q: float) -> float | None:
        values = sorted(values)
        return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1) if values else None

    if scenario == "login-flood":
        ok = [s for _, s, o in r["probes"] if o == "ok"]
        return {"flood_logins_sent": r["flood_sent"], "genuine_logins": len(r["probes"]),
                "genuine_failed": sum(1 for *_, o in r["probes"] if o != "ok"),
                "genuine_outcomes": sorted({o for *_, o in r["probes"]}),
                "genuine_login_ms_p50": p(ok, 0.5), "genuine_login_ms_p90": p(ok, 0.9),
                "genuine_login_ms_max": p(ok, 1.0), "node_cpu_s": round(r["node_cpu_s"], 1),
                "node_busy_after_flood_s": r["busy_after_s"]}
    if scenario == "sync-hog":
        out: dict[str, Any] = {}
        for phase in ("quiet", "hog"):
            syncs = [s for ph, s in r["syncs"] if ph == phase]
            logins = [s for ph, s, o in r["logins"] if ph == phase and o == "ok"]
            out[f"{phase}_other_sync_ms_p50"] = p(syncs, 0.5)
            out[f"{phase}_other_sync_ms_p90"] = p(syncs, 0.9)
            out[f"{phase}_login_ms_p50"] = p(logins, 0.5)
        out["hog_syncs_answered"] = r["hog_syncs"]["ok"]
        out["hog_syncs_refused"] = r["hog_syncs"]["refused"]
        return out
    acked, size = r["acked_at"], r["bytes"]
    window = max(acked) if acked else 1.0
    half = [t for t in acked if t >= window / 2]
    return {"stored_mb_per_s": round(len(acked) * size / window / 1e6, 2),
            "stored_mb_per_s_second_half": round(len(half) * size / (window / 2) / 1e6, 2),
            "sends_refused": r["refused"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", default=list(SCENARIOS), help=f"any of {', '.join(SCENARIOS)} (default: all)")
    parser.add_argument("--node-python", default=sys.executable, help="interpreter that runs the node")
    parser.add_argument("--flood-rate", type=float, default=100.0, help="abandoned LOGINs per second (login-flood)")
    parser.add_argument("--flood-seconds", type=float, default=5.0)
    parser.add_argument("--tail-seconds", type=float, default=10.0, help="genuine logins go on this long after the flood")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window (sync-hog, disk-fill)")
    parser.add_argument("--sqlite-sync", default="FULL")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    sigterm_unwinds()
    results = {}
    with tempfile.TemporaryDirectory(prefix="edgeim-bench-abuse-") as tmp:
        for scenario in args.scenarios:
            results[scenario] = summary(scenario, run(scenario, args, Path(tmp)))
    if args.json:
        print(json.dumps({"machine": machine(), "node_python": args.node_python, "results": results}, indent=2))
        return
    print(f"node: {args.node_python}")
    for scenario, values in results.items():
        print(f"\n{scenario}")
        for key, value in values.items():
            print(f"  {key:36} {value}")


if __name__ == "__main__":
    main()
