"""What the embedded store's writer costs a message in SQLite alone, in three shapes.

    python bench/writer_sql.py [--messages 200000] [--batch 228] [--convs 100] [--runs 5]

Plain sqlite3, the store's schema and pragmas (a SqliteStore opens and closes the file
first), the writer's statements for send_1to1's load: batches of --batch messages over
--convs private conversations, each batch one transaction with the retry keys' lookup,
the messages' INSERT in statements of 64, 32, ... rows, the senders' read cursors, COMMIT.
Shapes, alternating, each on a new file:

- ``savepoint``: the INSERT in a SAVEPOINT, without OR FAIL (the store before 77147ee);
- ``memory``: the same with ``PRAGMA temp_store = MEMORY``;
- ``or-fail``: INSERT OR FAIL and no savepoint (the store now).

Prints the process's CPU time per message (user and system) for each, medians over the
runs. The difference is SQLite's statement journal: a statement that may have to undo
its own rows, or a savepoint, copies each page it first changes into one, and spills it
to a temporary file once it passes 64 KiB.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import statistics
import tempfile
from pathlib import Path

from edgeim.backends.sqlite import _INSERT_MESSAGES, _KNOWN_KEYS, _READ_UP_TO_ROWS, SqliteStore, _Rows, key_hash

SHAPES = ("savepoint", "memory", "or-fail")
TEXT = "hello there, a chat message of some 64 bytes or so, as the bench!"
#: the INSERT before 77147ee, without OR FAIL
_PLAIN_INSERT = _Rows(_INSERT_MESSAGES._sql[1].split(" VALUES ")[0].replace(" OR FAIL", "") + " VALUES ",
                      "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def new_database(path: Path, convs: int) -> sqlite3.Connection:
    async def create() -> None:
        store = SqliteStore(path)
        await store.open()
        await store.close()

    asyncio.run(create())
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode = WAL", "synchronous = FULL", "cache_size = -65536", "wal_autocheckpoint = 10000"):
        conn.execute(f"PRAGMA {pragma}")
    conn.execute("BEGIN")
    for a in range(convs):
        for user in (a, a + 100_000):
            conn.execute("INSERT INTO user_convs (user_id, conv) VALUES (?, ?)", (user, f"p{a}_{a + 100_000}"))
    conn.execute("COMMIT")
    return conn


def run(path: Path, shape: str, messages: int, batch: int, convs: int) -> tuple[float, float]:
    """(user, system) CPU seconds per message of writing ``messages`` in ``shape``."""
    conn = new_database(path, convs)
    if shape == "memory":
        conn.execute("PRAGMA temp_store = MEMORY")
    insert = _INSERT_MESSAGES if shape == "or-fail" else _PLAIN_INSERT
    rng = random.Random(7)
    seqs: dict[str, int] = {}
    msg_id = 0
    before = os.times()
    for _ in range(messages // batch):
        rows, keys, touched = [], [], {}
        for _ in range(batch):
            msg_id += 1
            a = rng.randrange(convs)
            conv = f"p{a}_{a + 100_000}"
            seq = seqs[conv] = seqs.get(conv, 0) + 1
            cmid = rng.randbytes(16).hex()
            rows.append((msg_id, conv, seq, a, a + 100_000, cmid, 1, TEXT, msg_id, ""))
            keys.append((a, cmid))
            touched[(a, conv)] = seq
        conn.execute("BEGIN IMMEDIATE")
        _KNOWN_KEYS.fetch(conn, [(key_hash(*key),) for key in keys])
        if shape != "or-fail":
            conn.execute("SAVEPOINT run")
        insert.run(conn, rows)
        if shape != "or-fail":
            conn.execute("RELEASE run")
        _READ_UP_TO_ROWS.run(conn, [(seq, user, conv) for (user, conv), seq in touched.items()])
        conn.execute("COMMIT")
    after = os.times()
    conn.close()
    done = messages // batch * batch
    return (after.user - before.user) / done, (after.system - before.system) / done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=228)
    parser.add_argument("--convs", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"{args.messages} messages in batches of {args.batch} over {args.convs} conversations,"
          f" synchronous=FULL, {args.runs} runs")
    times: dict[str, list[tuple[float, float]]] = {shape: [] for shape in SHAPES}
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(args.runs):
            for shape in SHAPES:
                times[shape].append(run(Path(tmp) / f"{shape}-{n}.db", shape, args.messages, args.batch, args.convs))
    for shape in SHAPES:
        user = statistics.median(u for u, _ in times[shape]) * 1e6
        system = statistics.median(s for _, s in times[shape]) * 1e6
        total = statistics.median(u + s for u, s in times[shape]) * 1e6
        print(f"{shape:10s} {total:6.1f} us CPU/message (user {user:5.1f}, system {system:5.1f})")


if __name__ == "__main__":
    main()
