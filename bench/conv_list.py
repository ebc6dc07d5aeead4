"""The conversation list of a user with many conversations, while messages flow elsewhere
on the node: latency of CONVERSATIONS (limit 500, the SDKs' catch-up page) right after a
message in a conversation that is not the user's, against the same request with nothing
changed since the last one (the cached page: the baseline measured in the same run), and
the time to walk the whole list (every page, as a catch-up does).

    python bench/conv_list.py [--convs 10000] [--samples 200] [--limit 500] [--name-len 8]
        [--tree PATH] [--json]

Set-up, not timed: a node started like the other benches (bench/benchlib.NODE_ENV), user A
creates ``--convs`` groups (names of ``--name-len`` characters) and user B creates one
group of their own. Timed: ``--samples`` times, B sends a message to B's group and waits
for its ack, then A asks for the first page (after a change), then asks again (nothing
changed). ``--tree PATH`` runs the node from another checkout of edgeim (built in place),
for a before/after comparison on one machine: the bench puts PATH first on PYTHONPATH
under the name ``edgeim``.
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

from benchlib import median, node_command, node_env, percentile, rss_kib, start_server, stop

from edgeim.core_ext import bodies
from edgeim.core_ext.protocol import Op
from edgeim.sdk import Client, ServerError


async def _make_groups(client: Client, count: int, name_len: int) -> None:
    pending: set[asyncio.Task[object]] = set()
    for n in range(count):
        name = (f"g{n}-" + "x" * 64)[:name_len]
        pending.add(asyncio.ensure_future(client.group_create(name)))
        if len(pending) >= 200:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
    await asyncio.gather(*pending)


async def _timed_page(client: Client, limit: int) -> tuple[float, int, int]:
    started = time.perf_counter()
    _, body = await client.request(Op.CONVERSATIONS, bodies.Conversations(limit=limit))
    elapsed = time.perf_counter() - started
    page = bodies.decode(body, bodies.ConversationList)
    return elapsed, len(page.convs), len(body)


async def run(url: str, args: argparse.Namespace) -> dict[str, object]:
    async with Client(url) as a, Client(url) as b:
        for client, name in ((a, "a"), (b, "b")):
            username = f"{name}{os.getpid()}"
            await client.register(username, "bench-password")
            await client.login(username, "bench-password", "web")
        started = time.perf_counter()
        await _make_groups(a, args.convs, args.name_len)
        setup = time.perf_counter() - started
        elsewhere = await b.group_create("elsewhere")
        after_change: list[float] = []
        unchanged: list[float] = []
        entries = size = 0
        for n in range(args.samples):
            await b.send_group(elsewhere.group, f"tick {n}")
            elapsed, entries, size = await _timed_page(a, args.limit)
            after_change.append(elapsed)
            unchanged.append((await _timed_page(a, args.limit))[0])
        started = time.perf_counter()
        try:
            walked: object = len(await a.conversations())
        except ServerError as exc:  # a node from before paging by bytes: 1004
            walked = f"refused: {exc.code} {exc}"
        walk = time.perf_counter() - started
        after_change.sort()
        unchanged.sort()
        return {
            "convs": args.convs, "setup_s": round(setup, 1), "page_entries": entries, "page_bytes": size,
            "after_change_ms": {"p50": round(median(after_change) * 1e3, 2),  # type: ignore[operator]
                                "p99": round(percentile(after_change, 0.99) * 1e3, 2)},
            "unchanged_ms": {"p50": round(median(unchanged) * 1e3, 2),  # type: ignore[operator]
                             "p99": round(percentile(unchanged, 0.99) * 1e3, 2)},
            "whole_list": {"entries": walked, "s": round(walk, 3)},
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--convs", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--limit", type=int, default=bodies.MAX_LIST,
                        help="CONVERSATIONS limit (a node from before paging by bytes answers 1004 above ~370)")
    parser.add_argument("--name-len", type=int, default=8, choices=range(1, 65), metavar="1..64")
    parser.add_argument("--tree", type=Path, default=None, help="run the node from this edgeim checkout")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = node_env()
        if args.tree is not None:
            shim = Path(tmp) / "shim"
            shim.mkdir()
            (shim / "edgeim").symlink_to(args.tree.resolve())
            env["PYTHONPATH"] = f"{shim}{os.pathsep}{env.get('PYTHONPATH', '')}"
        proc, url = start_server(node_command(Path(tmp) / "data"), Path(tmp) / "node.log", env)
        try:
            result = asyncio.run(run(url, args))
            result["node_rss_mib"] = round(rss_kib(proc.pid) / 1024, 1)
            result["node"] = str(args.tree) if args.tree else "this checkout"
        finally:
            stop(proc)
    if args.json:
        print(json.dumps(result))
        return
    print(f"node: {result['node']}; {result['convs']} conversations (set-up {result['setup_s']} s), "
          f"first page {result['page_entries']} entries, {result['page_bytes']} bytes, node RSS {result['node_rss_mib']} MiB")
    print(f"CONVERSATIONS limit {args.limit} after a message elsewhere: p50 {result['after_change_ms']['p50']} ms, "  # type: ignore[index]
          f"p99 {result['after_change_ms']['p99']} ms")  # type: ignore[index]
    print(f"baseline, nothing changed (cached page):  p50 {result['unchanged_ms']['p50']} ms, "  # type: ignore[index]
          f"p99 {result['unchanged_ms']['p99']} ms")  # type: ignore[index]
    print(f"whole list ({result['whole_list']['entries']} entries, every page): {result['whole_list']['s']} s")  # type: ignore[index]


if __name__ == "__main__":
    sys.exit(main())
