"""What the embedded store's search index costs per message, and what a search through it costs.

    python bench/search_index.py [--messages 200000] [--convs 100] [--runs 3]

A SqliteStore gets --messages text messages of varied words (about 60 characters each,
over --convs conversations) from appenders that never pause, so the writer indexes none
of them meanwhile. Then one search over every conversation makes it index them all
first: the process's CPU time from then until the index has caught up, per message, is
what indexing costs (the event loop only waits meanwhile). Then searches for texts cut
out of random messages, through the index (the conversations hold more than
SEARCH_SCAN_ROWS messages).

Baseline, same run, same texts: plain sqlite3 inserting them into an FTS5 trigram table
with positions (``detail=full``, the layout before migration step 14) and into the
store's layout (``detail=none, columnsize=0``), slices of 2,048 rows a transaction as the
writer does; each then answers the same searches, with a phrase query and with the
trigrams the store asks for and a text comparison. Prints medians over the runs.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from edgeim.backends.protocols import ConvId, NewMessage, UserId
from edgeim.backends.sqlite import INDEX_SLICE, SqliteStore


def texts(count: int, seed: int = 1) -> list[str]:
    """Chat-like lines: words of 2 to 9 letters from a vocabulary of 5,000, cut at 64."""
    rnd = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rnd.choice(letters) for _ in range(rnd.randint(2, 9))) for _ in range(5000)]
    return [" ".join(rnd.choice(words) for _ in range(12))[:64] for _ in range(count)]


def queries(lines: list[str], count: int, seed: int = 2) -> list[str]:
    rnd = random.Random(seed)
    picked = []
    for _ in range(count):
        line = rnd.choice(lines)
        start = rnd.randrange(0, len(line) - 12)
        picked.append(line[start:start + 10])
    return picked


def _size(path: Path) -> int:
    return sum(os.path.getsize(f"{path}{suffix}") for suffix in ("", "-wal") if os.path.exists(f"{path}{suffix}"))


async def store_run(path: Path, lines: list[str], convs: int, asked: list[str]) -> tuple[float, float, int]:
    """(CPU µs per message indexed, median ms per search, bytes on disk)."""
    store = SqliteStore(path, search_timeout=3600)
    await store.open()
    ids = itertools.count(1)
    everyone = [(ConvId(f"p{c}_{c + 1}"), 0) for c in range(convs)]

    async def appender(c: int) -> None:
        for i in range(c, len(lines), convs):
            n = next(ids)
            await store.append(NewMessage(conv=everyone[c][0], sender=UserId(c), to=UserId(c + 1), cmid=f"m{n}",
                                          type=1, content=lines[i], msg_id=n, ts=n))

    try:
        await asyncio.gather(*(appender(c) for c in range(convs)))
        began = time.process_time()
        await store.search(everyone, lines[0][:10], 0, 1)  # indexes every conversation first
        cpu = time.process_time() - began
        took = []
        for text in asked:
            t0 = time.perf_counter()
            found = await store.search(everyone, text, 0, 20)
            took.append(time.perf_counter() - t0)
            assert found, f"{text!r} was cut out of a message and not found"
    finally:
        await store.close()
    return cpu / len(lines) * 1e6, statistics.median(took) * 1e3, _size(path)


def layout_run(path: Path, lines: list[str], options: str, phrase: bool,
               asked: list[str]) -> tuple[float, float, int]:
    """The same texts into a bare FTS5 table: (CPU µs per row, median ms per search, bytes)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(f"CREATE VIRTUAL TABLE t USING fts5(body, tokenize = 'trigram'{options})")
    began = time.process_time()
    for start in range(0, len(lines), INDEX_SLICE):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO t (rowid, body) VALUES (?, ?)",
                         [(n + 1, lines[n]) for n in range(start, min(start + INDEX_SLICE, len(lines)))])
        conn.execute("COMMIT")
    cpu = time.process_time() - began
    took = []
    for text in asked:
        t0 = time.perf_counter()
        if phrase:
            found = conn.execute("SELECT rowid FROM t WHERE t MATCH ? ORDER BY rowid DESC LIMIT 20",
                                 ('"' + text + '"',)).fetchall()
        else:
            grams = dict.fromkeys([text[i:i + 3] for i in range(0, len(text) - 2, 3)] + [text[-3:]])
            found = conn.execute("SELECT rowid FROM t WHERE t MATCH ? AND instr(lower(body), ?) > 0"
                                 " ORDER BY rowid DESC LIMIT 20",
                                 (" AND ".join(f'"{g}"' for g in grams), text)).fetchall()
        took.append(time.perf_counter() - t0)
        assert found
    conn.close()
    return cpu / len(lines) * 1e6, statistics.median(took) * 1e3, _size(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--convs", type=int, default=100)
    parser.add_argument("--searches", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    import uvloop

    lines = texts(args.messages)
    asked = queries(lines, args.searches)
    rows: dict[str, list[tuple[float, float, int]]] = {"store": [], "full": [], "none": []}
    with tempfile.TemporaryDirectory(prefix="edgeim-bench-") as tmp:
        for r in range(args.runs):
            rows["store"].append(uvloop.run(store_run(Path(tmp, f"store{r}.db"), lines, args.convs, asked)))
            rows["full"].append(layout_run(Path(tmp, f"full{r}.db"), lines, "", True, asked))
            rows["none"].append(layout_run(Path(tmp, f"none{r}.db"), lines, ", detail = none, columnsize = 0",
                                           False, asked))
    print(f"{args.messages:,} messages of about 60 characters, {args.convs} conversations,"
          f" {args.searches} searches of 10 characters, medians of {args.runs} runs")
    names = {"store": "SqliteStore (indexing behind the commits, then searching)",
             "full": "baseline: FTS5 trigram with positions, phrase query",
             "none": "baseline: FTS5 trigram, detail=none, trigrams + text compared"}
    for key, name in names.items():
        cpu = statistics.median(r[0] for r in rows[key])
        query = statistics.median(r[1] for r in rows[key])
        size = statistics.median(r[2] for r in rows[key])
        print(f"{name:62} {cpu:6.1f} us CPU/message  {query:6.2f} ms/search  {size / 2**20:7.1f} MiB on disk")


if __name__ == "__main__":
    main()
