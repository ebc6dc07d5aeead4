"""Append throughput of SqliteStore: N concurrent appenders, each sending M messages in turn.

    python bench/store_append.py [--appenders 1000] [--per-appender 20] [--runs 5] [--loop uvloop]

For each synchronous mode prints the median over the runs of appends/s, the median p50 and
p99 append latency, and the baseline measured in the same run: plain sqlite3 on one thread
committing each message in its own transaction (what the store would do without group
commit). Peak RSS of the process is printed at the end.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import resource
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from edgeim.backends.protocols import ConvId, NewMessage, UserId
from edgeim.backends.sqlite import SqliteStore


async def store_run(
    path: Path, synchronous: str, batch_max: int, appenders: int, per_appender: int
) -> tuple[float, list[float]]:
    store = SqliteStore(path, synchronous=synchronous, batch_max=batch_max)
    await store.open()
    latencies: list[float] = []
    msg_ids = itertools.count(1)  # increasing, like the node's snowflake ids

    async def appender(a: int) -> None:
        conv = ConvId(f"p:{a}:{a + 1}")
        for i in range(per_appender):
            m = NewMessage(conv=conv, sender=UserId(a), to=UserId(a + 1), cmid=f"{a}-{i}", type=1,
                           content="hello, this is a short chat message", msg_id=next(msg_ids),
                           ts=time.time_ns() // 1_000_000)
            t0 = time.perf_counter()
            await store.append(m)
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(appender(a) for a in range(appenders)))
    elapsed = time.perf_counter() - t0
    await store.close()
    return appenders * per_appender / elapsed, latencies


async def _create_schema(path: Path) -> None:
    store = SqliteStore(path)
    await store.open()
    await store.close()


def baseline_run(path: Path, synchronous: str, count: int) -> float:
    """One INSERT + COMMIT per message on one connection, same schema and sync mode."""
    asyncio.run(_create_schema(path))  # the store's own schema, every migration step
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    t0 = time.perf_counter()
    for i in range(count):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO messages (id, conv, seq, sender, to_user, cmid, type, content, ts)"
            " VALUES (?, 'p:1:2', ?, 1, 2, ?, 1, 'hello, this is a short chat message', 0)",
            (i + 1, i + 1, str(i)),
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return count / elapsed


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--appenders", type=int, default=1000)
    parser.add_argument("--per-appender", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch-max", type=int, default=2048)
    parser.add_argument("--baseline-count", type=int, default=2000)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop")
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop
        run = uvloop.run
    else:
        run = asyncio.run

    print(f"{args.appenders} appenders x {args.per_appender} appends, batch_max={args.batch_max},"
          f" {args.runs} runs, loop={args.loop}")
    with tempfile.TemporaryDirectory(prefix="edgeim-bench-") as tmp:
        for synchronous in ("FULL", "NORMAL"):
            rates, p50s, p99s, baselines = [], [], [], []
            for r in range(args.runs):
                rate, latencies = run(store_run(Path(tmp, f"store-{synchronous}-{r}.db"), synchronous,
                                                args.batch_max, args.appenders, args.per_appender))
                latencies.sort()
                rates.append(rate)
                p50s.append(percentile(latencies, 0.50))
                p99s.append(percentile(latencies, 0.99))
                baselines.append(baseline_run(Path(tmp, f"base-{synchronous}-{r}.db"), synchronous,
                                              args.baseline_count))
            print(
                f"synchronous={synchronous:6} SqliteStore {statistics.median(rates):9,.0f} appends/s"
                f"  p50 {statistics.median(p50s) * 1e3:6.2f} ms  p99 {statistics.median(p99s) * 1e3:6.2f} ms"
                f"  | baseline (commit per message) {statistics.median(baselines):9,.0f} appends/s"
            )
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
