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
- ``group-flood``: ``--members`` accounts (default 2,000, the largest group on default
  settings) online in one group, ``--deaf`` of them (300) never reading; its owner posts
  ``--size``-byte messages to it at its message budget (50/s) for ``--seconds``, whatever
  is refused. Meanwhile a pair of friends outside the group sends SEND→ACK every 20 ms
  and logs in with a token every 0.5 s. Reports their latencies before (quiet) and
  during, the pushes/s the members got, the owner's sends acked and refused, the
  never-readers dropped, and the node's RSS before and at its peak. Staging lowers the
  password hash cost (2,000 registrations).
- ``group-churn``: ``--members`` minus ``--churners`` accounts online in one open group;
  ``--churners`` (20) other accounts join and leave it as fast as they are answered, and
  ``--typists`` (40) members send TYPING every 0.1 s, for ``--seconds``, beside the same
  pair of friends. Reports the pair's latencies, the GROUP_PUSH and TYPING_PUSH frames
  the members got a second, and how the requests were answered.

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
SCENARIOS = ("login-flood", "sync-hog", "disk-fill", "group-flood", "group-churn")


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


async def _big_group(url: str, count: int) -> tuple[list[Any], int, Any, Any, str]:
    """``count`` accounts online in one group (the first its owner), and a pair of friends
    outside it: (members, group, alice, bob, alice's token)."""
    from benchclient import limited

    from edgeim.core_ext import bodies
    from edgeim.core_ext.protocol import Op
    members = await limited([lambda n=n: _account(url, f"member{n}") for n in range(count)], 16)
    owner = members[0]
    ids = [m.user_id for m in members[1:]]
    _, reply = await owner.request(Op.GROUP_CREATE, bodies.GroupCreate(name="big", members=ids[:499]))
    group = bodies.decode(reply, bodies.GroupInfo).group
    for start in range(499, len(ids), 500):  # at most 500 a request
        await owner.request(Op.GROUP_INVITE, bodies.GroupUsers(group=group, users=ids[start:start + 500]))
    alice, bob = await _account(url, "alice"), await _account(url, "bob")
    tokens = await _open(url, "token")
    _, reply = await tokens.request(Op.LOGIN, bodies.Login(username="alice", password=PASSWORD, terminal="probe"))
    tokens.close()
    return members, group, alice, bob, bodies.decode(reply, bodies.LoginOk).token


async def _pair_probes(url: str, alice: Any, bob: Any, token: str, stop_at: float, phase: list[str],
                       sends: list[tuple[str, float]], logins: list[tuple[str, float, str]]) -> None:
    """The pair of friends: SEND->ACK every 20 ms, a TOKEN_LOGIN on a new connection every 0.5 s."""
    from edgeim.core_ext import bodies
    from edgeim.core_ext.protocol import Op

    async def pair_loop() -> None:
        n = 0
        while time.monotonic() < stop_at:
            n += 1
            t = time.monotonic()
            await alice.request(Op.SEND, bodies.Send(cmid=f"pair{n}", content="hello"), target=bob.user_id)
            sends.append((phase[0], time.monotonic() - t))
            await asyncio.sleep(0.02)

    async def login_loop() -> None:
        while time.monotonic() < stop_at:
            t = time.monotonic()
            try:
                conn = await _open(url, "probe")
                try:
                    await asyncio.wait_for(conn.request(Op.TOKEN_LOGIN, bodies.TokenLogin(token=token, terminal="probe")), 30)
                    result = "ok"
                finally:
                    conn.close()
            except Exception as exc:
                result = type(exc).__name__
            logins.append((phase[0], time.monotonic() - t, result))
            await asyncio.sleep(0.5)

    await asyncio.gather(pair_loop(), login_loop())


async def group_flood_client(spec: dict[str, Any]) -> dict[str, Any]:
    from benchclient import RequestFailed

    from edgeim.core_ext import bodies
    from edgeim.core_ext.protocol import Flag, Op
    from benchlib import rss_kib
    url, count, deaf_count = spec["url"], spec["members"], spec["deaf"]
    members, group, alice, bob, token = await _big_group(url, count)
    owner = members[0]
    deaf = members[count - deaf_count:]
    readers = members[1:count - deaf_count]
    pushes = [0]

    def on_push(conn: Any, op: int, payload: Any, now: float) -> None:
        if op == Op.MSG_PUSH:
            pushes[0] += 1

    for conn in readers:
        conn.on_push = on_push
    await asyncio.sleep(1.0)  # the "created" pushes are read
    for conn in deaf:
        conn.transport.underlying_transport.pause_reading()
    sends: list[tuple[str, float]] = []
    logins: list[tuple[str, float, str]] = []
    rss: list[tuple[str, int]] = []
    phase = ["quiet"]
    stop_at = time.monotonic() + spec["quiet_seconds"] + spec["seconds"]
    outcome = {"acked": 0, "refused": 0, "refusals": {}}
    pushes_at_attack = [0, 0.0]

    async def rss_loop() -> None:
        while time.monotonic() < stop_at:
            rss.append((phase[0], rss_kib(spec["node_pid"])))
            await asyncio.sleep(0.1)

    async def attack() -> None:
        await asyncio.sleep(spec["quiet_seconds"])
        phase[0] = "attack"
        pushes_at_attack[:] = [pushes[0], time.monotonic()]
        content = "x" * spec["size"]
        pending = set()

        async def one(n: int) -> None:
            try:
                await owner.request(Op.SEND, bodies.Send(cmid=f"flood{n}", content=content), target=group,
                                    flags=int(Flag.GROUP))
                outcome["acked"] += 1
            except RequestFailed as exc:
                outcome["refused"] += 1
                reason = str(exc).split("refused: ", 1)[-1][:60]
                outcome["refusals"][reason] = outcome["refusals"].get(reason, 0) + 1
            except ConnectionError:
                outcome["refusals"]["owner disconnected"] = 1

        n = 0
        next_at = time.monotonic()
        while time.monotonic() < stop_at and not owner.is_closed:
            n += 1
            task = asyncio.ensure_future(one(n))
            pending.add(task)
            task.add_done_callback(pending.discard)
            next_at += 1.0 / spec["send_rate"]
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.wait(pending, timeout=10) if pending else None

    await asyncio.gather(_pair_probes(url, alice, bob, token, stop_at, phase, sends, logins), rss_loop(), attack())
    elapsed = time.monotonic() - pushes_at_attack[1]
    return {"sends": sends, "logins": logins, "rss": rss, "owner": outcome,
            "pushes_per_s": (pushes[0] - pushes_at_attack[0]) / elapsed,
            "deaf_dropped": sum(1 for c in deaf if c.is_closed), "deaf": len(deaf),
            "readers_dropped": sum(1 for c in readers if c.is_closed)}


async def group_churn_client(spec: dict[str, Any]) -> dict[str, Any]:
    from benchclient import RequestFailed

    from edgeim.core_ext import bodies
    from edgeim.core_ext.protocol import Op
    url, churners_count, typists_count = spec["url"], spec["churners"], spec["typists"]
    members, group, alice, bob, token = await _big_group(url, spec["members"] - churners_count)
    await members[0].request(Op.GROUP_UPDATE, bodies.GroupUpdate(group=group, join_mode="open"))
    churners = [await _account(url, f"churner{n}") for n in range(churners_count)]
    typists = members[1:1 + typists_count]
    counts = {int(Op.GROUP_PUSH): 0, int(Op.TYPING_PUSH): 0}

    def on_push(conn: Any, op: int, payload: Any, now: float) -> None:
        if op in counts:
            counts[op] += 1

    for conn in members:
        conn.on_push = on_push
    await asyncio.sleep(1.0)
    sends: list[tuple[str, float]] = []
    logins: list[tuple[str, float, str]] = []
    phase = ["quiet"]
    stop_at = time.monotonic() + spec["quiet_seconds"] + spec["seconds"]
    outcomes: dict[str, int] = {}
    at_attack: list[Any] = [{}, 0.0]

    def count(what: str) -> None:
        outcomes[what] = outcomes.get(what, 0) + 1

    async def churn(conn: Any) -> None:
        while time.monotonic() < stop_at:
            for op, body in ((Op.GROUP_JOIN, bodies.GroupJoin(group=group)), (Op.GROUP_QUIT, bodies.GroupRef(group=group))):
                try:
                    await conn.request(op, body)
                    count(f"{op.name} ok")
                except RequestFailed as exc:
                    count(f"{op.name} {str(exc).split('refused: ', 1)[-1][:4]}")
                    await asyncio.sleep(0.01)

    async def type_on(conn: Any) -> None:
        while time.monotonic() < stop_at:
            try:
                await conn.request(Op.TYPING, bodies.Typing(conv=f"g{group}", typing=True))
                count("TYPING ok")
            except RequestFailed as exc:
                count(f"TYPING {str(exc).split('refused: ', 1)[-1][:4]}")
            await asyncio.sleep(0.1)

    async def attack() -> None:
        await asyncio.sleep(spec["quiet_seconds"])
        phase[0] = "attack"
        at_attack[:] = [dict(counts), time.monotonic()]
        await asyncio.gather(*(churn(c) for c in churners), *(type_on(c) for c in typists))

    await asyncio.gather(_pair_probes(url, alice, bob, token, stop_at, phase, sends, logins), attack())
    elapsed = time.monotonic() - at_attack[1]
    return {"sends": sends, "logins": logins, "outcomes": outcomes,
            "group_pushes_per_s": (counts[int(Op.GROUP_PUSH)] - at_attack[0][int(Op.GROUP_PUSH)]) / elapsed,
            "typing_pushes_per_s": (counts[int(Op.TYPING_PUSH)] - at_attack[0][int(Op.TYPING_PUSH)]) / elapsed}


SCENARIO_CLIENTS = {"login-flood": login_flood_client, "sync-hog": sync_hog_client, "disk-fill": disk_fill_client,
                    "group-flood": group_flood_client, "group-churn": group_churn_client}


# -- the parent: a node per scenario, the client process, the report -----------------------------

def run(scenario: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    data = workdir / scenario
    env = {"IM_STRANGERS_MAY_SEND": "1", "IM_SQLITE_SYNC": args.sqlite_sync}
    if scenario != "login-flood":  # the set-up logs in dozens of times from one address
        env.update(IM_LOGIN_RATE="1000000", IM_LOGIN_BURST="1000000")
    if scenario in ("group-flood", "group-churn"):  # 2,000 registrations: cheap hashes
        env.update(IM_PASSWORD_MEMORY_KIB="256", IM_PASSWORD_TIME_COST="1")
        # the set-up puts 2,000 strangers in one group: direct adds (consent is not what is measured)
        env.update(IM_GROUP_ADD_DEFAULT="anyone")
    if scenario == "sync-hog":
        env.update(IM_MAX_SESSIONS_PER_USER="16", IM_USER_SEND_BYTES_RATE="1000000000",
                   IM_USER_SEND_BYTES_BURST="1000000000", IM_USER_SEND_RATE="100000", IM_USER_SEND_BURST="100000")
    env.update({f"IM_{name.upper()}": value for name, value in (item.split("=", 1) for item in args.set)})
    cmd = [args.node_python, "-m", "edgeim.cli", "serve", "--port", "0", "--data-dir", str(data)]
    node, url = start_server(cmd, workdir / f"{scenario}.log", env={**os.environ, **env})
    clients = []
    try:
        spec = {"scenario": scenario, "url": url, "flood_rate": args.flood_rate, "flood_seconds": args.flood_seconds,
                "tail_seconds": args.tail_seconds, "seconds": args.seconds, "quiet_seconds": 3.0,
                "members": args.members, "deaf": args.deaf, "churners": args.churners, "typists": args.typists, "size": args.size, "send_rate": args.send_rate,
                "node_pid": node.pid}
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
    if scenario == "group-churn":
        out = {}
        for phase in ("quiet", "attack"):
            sends = [s for ph, s in r["sends"] if ph == phase]
            logins = [s for ph, s, o in r["logins"] if ph == phase and o == "ok"]
            out[f"{phase}_pair_send_ms_p50"] = p(sends, 0.5)
            out[f"{phase}_pair_send_ms_p99"] = p(sends, 0.99)
            out[f"{phase}_token_login_ms_p50"] = p(logins, 0.5)
            out[f"{phase}_token_login_ms_max"] = p(logins, 1.0)
            out[f"{phase}_token_logins_failed"] = sum(1 for ph, _, o in r["logins"] if ph == phase and o != "ok")
        out["group_pushes_per_s"] = round(r["group_pushes_per_s"])
        out["typing_pushes_per_s"] = round(r["typing_pushes_per_s"])
        out["requests"] = dict(sorted(r["outcomes"].items()))
        return out
    if scenario == "group-flood":
        out = {}
        for phase in ("quiet", "attack"):
            sends = [s for ph, s in r["sends"] if ph == phase]
            logins = [s for ph, s, o in r["logins"] if ph == phase and o == "ok"]
            out[f"{phase}_pair_send_ms_p50"] = p(sends, 0.5)
            out[f"{phase}_pair_send_ms_p99"] = p(sends, 0.99)
            out[f"{phase}_token_login_ms_p50"] = p(logins, 0.5)
            out[f"{phase}_token_login_ms_max"] = p(logins, 1.0)
            out[f"{phase}_token_logins_failed"] = sum(1 for ph, _, o in r["logins"] if ph == phase and o != "ok")
        quiet_rss = [kib for ph, kib in r["rss"] if ph == "quiet"]
        out["node_rss_mb_quiet"] = round(max(quiet_rss) / 1024) if quiet_rss else None
        out["node_rss_mb_peak"] = round(max(kib for _, kib in r["rss"]) / 1024)
        out["member_pushes_per_s"] = round(r["pushes_per_s"])
        out["owner_sends_acked"] = r["owner"]["acked"]
        out["owner_sends_refused"] = r["owner"]["refused"]
        out["owner_refusals"] = r["owner"]["refusals"]
        out["never_readers_dropped"] = f"{r['deaf_dropped']} of {r['deaf']}"
        out["readers_dropped"] = r["readers_dropped"]
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
    parser.add_argument("--set", action="append", default=[], metavar="SETTING=VALUE",
                        help="a node setting for every scenario, e.g. --set user_fanout_rate=1e9 (repeatable)")
    parser.add_argument("--members", type=int, default=2000, help="members of the group (group-flood)")
    parser.add_argument("--deaf", type=int, default=300, help="members who never read (group-flood)")
    parser.add_argument("--size", type=int, default=100, help="content bytes of each group message (group-flood)")
    parser.add_argument("--churners", type=int, default=20, help="accounts joining and leaving (group-churn)")
    parser.add_argument("--typists", type=int, default=40, help="members typing (group-churn)")
    parser.add_argument("--send-rate", type=float, default=50.0, help="group messages per second tried (group-flood)")
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
