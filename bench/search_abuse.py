"""What the worst searches do to everyone else's reads, measured from outside (issue 17, item 2).

Set-up, on one data dir: a node (``--node-python``) registers an attacker, a victim and a
friend of the victim; the attacker makes two groups: a big one and one of its own, where
it writes 40 messages of 32 KB of "a". The node stops; ``--messages`` messages are then
written straight into the SQLite file (``--big-group`` of them
in the big group, after the attacker joined, the rest in the private conversations of
other users), every one holding "the". The node starts again and, after ``--quiet``
seconds of quiet, the attacker runs the worst searches back to back for ``--seconds``:
"the" over everything it may read, 128 "a", 127 "a" and a "b", "the" in its own group;
meanwhile the victim SYNCs a small conversation every 50 ms and logs in with its password
on a new connection every 0.5 s. Reports the victim's SYNC
latency before and during, and each kind of search's latency and outcome (a request still
unanswered when the window ends counts as taking until then).

``--node-python`` runs the node with another interpreter (the virtualenv of an older
checkout), so that before and after are measured the same way on the same kind of data:

    .venv/bin/python bench/search_abuse.py --node-python /work/main/.venv/bin/python

Not a test: nothing is asserted.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import die_with_parent, machine, receive, sigterm_unwinds, start_clients, start_server, stop, stop_clients  # noqa: E402

SEARCHES = (("the, everything", "the", False), ("128 a", "a" * 128, False), ("127 a + b", "a" * 127 + "b", False),
            ("the, own group", "the", True))


def client_main(conn: Any, spec: dict[str, Any]) -> None:
    die_with_parent()
    import uvloop
    try:
        result = uvloop.run(setup(spec) if spec["phase"] == "setup" else measure(spec))
    except BaseException as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        raise
    conn.send(("result", result))


async def setup(spec: dict[str, Any]) -> dict[str, Any]:
    from abuse import _account

    from edgeim.core_ext import bodies
    from edgeim.core_ext.protocol import Op
    url = spec["url"]
    attacker = await _account(url, "attacker")
    victim = await _account(url, "victim")
    friend = await _account(url, "friend")
    _, reply = await attacker.request(Op.GROUP_CREATE, bodies.GroupCreate(name="big", members=[]))
    big = bodies.decode(reply, bodies.GroupInfo).group
    _, reply = await attacker.request(Op.GROUP_CREATE, bodies.GroupCreate(name="mine", members=[]))
    mine = bodies.decode(reply, bodies.GroupInfo).group
    for n in range(40):
        await attacker.request(Op.SEND, bodies.Send(cmid=f"a{n}", content="a" * 32_000), target=mine,
                               flags=_group_flag())
    for n in range(10):
        _, reply = await friend.request(Op.SEND, bodies.Send(cmid=f"v{n}", content="hello"), target=victim.user_id)
    small = bodies.decode(reply, bodies.SendAck).conv
    return {"attacker": attacker.user_id, "big": big, "mine": mine, "small": small}


def _group_flag() -> int:
    from edgeim.core_ext.protocol import Flag
    return int(Flag.GROUP)


async def measure(spec: dict[str, Any]) -> dict[str, Any]:
    from abuse import _account, _login_latency
    from benchclient import RequestFailed

    from edgeim.core_ext import bodies
    from edgeim.core_ext.protocol import Op
    url = spec["url"]
    attacker = await _account(url, "attacker", register=False)
    victim = await _account(url, "victim", "t2", register=False)
    syncs: list[tuple[str, float]] = []
    logins: list[tuple[str, float, str]] = []
    searches: list[tuple[str, float, str]] = []
    unanswered = {"sync": 0}
    phase = "quiet"
    stop_at = time.monotonic() + spec["quiet"] + spec["seconds"]

    async def victim_loop() -> None:
        while time.monotonic() < stop_at:
            t = time.monotonic()
            try:  # one not answered by the end of the window counts as taking until then
                await asyncio.wait_for(victim.request(Op.SYNC, bodies.Sync(conv=spec["small"], after_seq=0, limit=10)),
                                       max(0.1, stop_at - t))
            except asyncio.TimeoutError:
                unanswered["sync"] += 1
            syncs.append((phase, time.monotonic() - t))
            await asyncio.sleep(0.05)

    async def login_loop() -> None:  # a login reads the user from the store
        while time.monotonic() < stop_at:
            seconds, outcome = await _login_latency(url, "victim")
            logins.append((phase, seconds, outcome))
            await asyncio.sleep(0.5)

    async def attack() -> None:
        nonlocal phase
        await asyncio.sleep(spec["quiet"])
        phase = "search"
        n = 0
        while time.monotonic() < stop_at:
            name, query, own = SEARCHES[n % len(SEARCHES)]
            n += 1
            t = time.monotonic()
            try:
                await asyncio.wait_for(attacker.request(
                    Op.SEARCH, bodies.Search(query=query, conv=f"g{spec['mine']}" if own else "")), max(0.1, stop_at - t))
                outcome = "ok"
            except RequestFailed as exc:
                outcome = str(exc).split("refused: ")[1].split()[0]
            except asyncio.TimeoutError:
                outcome = "unanswered at the end"
            searches.append((name, time.monotonic() - t, outcome))

    await asyncio.gather(victim_loop(), login_loop(), attack())
    return {"syncs": syncs, "searches": searches, "syncs_unanswered": unanswered["sync"], "logins": logins}


def populate(db: Path, ids: dict[str, Any], messages: int, big_group: int) -> float:
    """``messages`` messages holding "the", straight into the store: ``big_group`` of them in
    the attacker's big group (after its join), the rest in other users' conversations."""
    from edgeim.backends.protocols import ConvId, NewMessage, UserId
    from edgeim.backends.sqlite import SqliteStore

    async def run() -> None:
        store = SqliteStore(db, synchronous="NORMAL")
        await store.open()
        try:
            base = 1 << 40
            for start in range(0, messages, 5000):
                batch = []
                for n in range(start, min(messages, start + 5000)):
                    if n < big_group:
                        conv, sender, to, members = f"g{ids['big']}", ids["attacker"], ids["big"], ()
                    else:
                        a = 1_000_000 + (n % 2000) * 2
                        conv, sender, to, members = f"p{a}_{a + 1}", a, a + 1, (UserId(a), UserId(a + 1))
                    batch.append(store.append(NewMessage(
                        conv=ConvId(conv), sender=UserId(sender), to=to, cmid=f"f{n}", type=1,
                        content=f"message {n}: the quick brown fox jumps over the lazy dog", msg_id=base + n,
                        ts=int(time.time() * 1000), members=members)))
                await asyncio.gather(*batch)
        finally:
            await store.close()
    started = time.monotonic()
    asyncio.run(run())
    return time.monotonic() - started


def summary(r: dict[str, Any]) -> dict[str, Any]:
    def p(values: list[float], q: float) -> float | None:
        values = sorted(values)
        return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1) if values else None
    out: dict[str, Any] = {}
    for phase in ("quiet", "search"):
        syncs = [s for ph, s in r["syncs"] if ph == phase]
        out[f"{phase}_other_sync_ms_p50"] = p(syncs, 0.5)
        out[f"{phase}_other_sync_ms_p90"] = p(syncs, 0.9)
        out[f"{phase}_other_sync_ms_max"] = p(syncs, 1.0)
    out["other_syncs_unanswered_at_the_end"] = r["syncs_unanswered"]
    for phase in ("quiet", "search"):
        ok = [s for ph, s, o in r["logins"] if ph == phase and o == "ok"]
        out[f"{phase}_password_login_ms_p50"] = p(ok, 0.5)
        out[f"{phase}_password_logins_failed"] = sum(1 for ph, _, o in r["logins"] if ph == phase and o != "ok")
    for name, _, _ in SEARCHES:
        runs = [(s, o) for n, s, o in r["searches"] if n == name]
        outcomes: dict[str, int] = {}
        for _, o in runs:
            outcomes[o] = outcomes.get(o, 0) + 1
        out[f"search '{name}'"] = (f"n={len(runs)} p50={p([s for s, _ in runs], 0.5)} ms"
                                   f" max={p([s for s, _ in runs], 1.0)} ms {outcomes}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--node-python", default=sys.executable, help="interpreter that runs the node")
    parser.add_argument("--messages", type=int, default=200_000, help="messages of other users holding 'the'")
    parser.add_argument("--big-group", type=int, default=25_000, help="of which in the attacker's big group")
    parser.add_argument("--quiet", type=float, default=3.0)
    parser.add_argument("--seconds", type=float, default=15.0, help="searches back to back this long")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sigterm_unwinds()
    env = {**os.environ, "IM_STRANGERS_MAY_SEND": "1", "IM_LOGIN_RATE": "1000000", "IM_LOGIN_BURST": "1000000",
           "IM_PASSWORD_MEMORY_KIB": "256", "IM_PASSWORD_TIME_COST": "1"}
    with tempfile.TemporaryDirectory(prefix="edgeim-bench-search-") as tmp:
        data = Path(tmp) / "data"
        cmd = [args.node_python, "-m", "edgeim.cli", "serve", "--port", "0", "--data-dir", str(data)]
        node, url = start_server(cmd, Path(tmp) / "setup.log", env=env)
        clients = []
        try:
            clients = start_clients(client_main, [{"phase": "setup", "url": url}])
            ids = receive(clients[0][1], "result", 300)
        finally:
            stop_clients(clients)
            stop(node)
        populate_s = populate(data / "edgeim.db", ids, args.messages, args.big_group)
        node, url = start_server(cmd, Path(tmp) / "node.log", env=env)
        clients = []
        try:
            clients = start_clients(client_main, [{"phase": "measure", "url": url, "quiet": args.quiet,
                                                   "seconds": args.seconds, **ids}])
            result = summary(receive(clients[0][1], "result", 300))
        finally:
            stop_clients(clients)
            stop(node)
    result["populate_s"] = round(populate_s, 1)
    if args.json:
        print(json.dumps({"machine": machine(), "node_python": args.node_python, "results": result}, indent=2))
        return
    print(f"node: {args.node_python}; {args.messages} messages of others ({args.big_group} in a group of the attacker)")
    for key, value in result.items():
        print(f"  {key:36} {value}")


if __name__ == "__main__":
    main()
