"""The SQLite writer's CPU per message as the store grows, by part: its commits, its passes
of retry keys and its merges of key runs, window after window of appended messages.

    python bench/store_growth.py [--messages 8000000] [--window 1000000] [--pairs 100] [--feed 2000] [--pieces]

One SqliteStore (synchronous=FULL) in a temp dir, fed ``--feed`` appends at a time (a
feed is about one commit, and the next waits for it) over ``--pairs`` conversations (as
send_1to1's pairs; a node under send_1to1 commits about 300 at a time, so ``--feed 300``
shows the writer as it runs there), with the young-generation GC threshold
the node sets (gc_young). Each part's CPU is the writer thread's (``time.thread_time``
around the store's own methods), so the numbers are per message appended, not per second.
To compare with an older version, put its checkout first on PYTHONPATH (parts it does not
have read 0).

``--pieces`` adds, at the end, the commit piece by piece over the whole run: the COMMIT
statement of a batch (its WAL pages and fsync), the multi-row INSERT, ``lay_out``, the
senders' cursor UPDATE, ``_hold_keys``, ``unknown`` (the retry keys' hashes and filter),
``settle`` and the rest, each timed on its own inside the commit (a piece an older
version does not have reads 0).
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from edgeim.backends import sqlite as sqlite_store
from edgeim.backends.protocols import ConvId, NewMessage, UserId

_GC_YOUNG = 10_000  # the node's default gc_young
_PARTS = (("commit", "SqliteStore", "_commit_batch"), ("key pass", "_HeldKeys", "write_some"),
          ("key merge", "_KeyRuns", "merge_some"))


#: --pieces: the two pieces that are not calls of their own
_COMMIT_PIECE, _CURSOR_PIECE = "COMMIT (WAL pages, fsync)", "senders' cursor UPDATE"
#: --pieces: the commit's pieces, (name, what is timed): a function of the store's module,
#: a method "Class.name", or "" for the two above
_PIECES = ((_COMMIT_PIECE, ""), ("multi-row INSERT", "_insert_messages"), ("lay_out", "lay_out"),
           (_CURSOR_PIECE, ""), ("_hold_keys", "SqliteStore._hold_keys"), ("unknown (retry keys)", "unknown"),
           ("settle", "settle"))


def time_pieces(spent: dict[str, float], committing: list[int]) -> None:
    """Wrap the store's pieces of a commit so that each adds its writer CPU to ``spent``;
    ``committing[0]``: a batch's commit is under way (a transaction's COMMIT counts only
    then, not a pass's of keys or of the search index)."""
    for piece, what in _PIECES:
        owner, _, name = what.rpartition(".")
        holder = getattr(sqlite_store, owner) if owner else sqlite_store
        if not name or not hasattr(holder, name):
            continue
        setattr(holder, name, timed(spent, [0], piece, getattr(holder, name)))
    rows, immediate = getattr(sqlite_store, "_Rows", None), getattr(sqlite_store, "_immediate", None)
    cursors = getattr(sqlite_store, "_READ_UP_TO_ROWS", None)
    if rows is not None and cursors is not None:
        run = rows.run

        def timed_run(self: Any, conn: Any, values: Any) -> Any:
            if self is not cursors:
                return run(self, conn, values)
            began = time.thread_time()
            try:
                return run(self, conn, values)
            finally:
                spent[_CURSOR_PIECE] += time.thread_time() - began
        rows.run = timed_run
    if immediate is not None:
        @contextmanager
        def timed_immediate(conn: Any) -> Iterator[None]:
            with immediate(conn):
                yield
                began = time.thread_time()  # the block is done: leaving it commits
            if committing[0]:
                spent[_COMMIT_PIECE] += time.thread_time() - began
        sqlite_store._immediate = timed_immediate
    commit = sqlite_store.SqliteStore._commit_batch

    def flagged(*args: Any, **kwargs: Any) -> Any:
        committing[0] += 1
        try:
            return commit(*args, **kwargs)
        finally:
            committing[0] -= 1
    sqlite_store.SqliteStore._commit_batch = flagged


def timed(spent: dict[str, float], inside: list[int], part: str, method: Callable[..., Any]) -> Callable[..., Any]:
    """``method``, its thread's CPU added to ``spent[part]``; ``inside[0]``: calls under way."""
    def run(*args: Any, **kwargs: Any) -> Any:
        inside[0] += 1
        began = time.thread_time()
        try:
            return method(*args, **kwargs)
        finally:
            spent[part] += time.thread_time() - began
            inside[0] -= 1
    return run


async def grow(path: Path, messages: int, window: int, pairs: int, feed: int, pieces: bool = False) -> None:
    spent = dict.fromkeys([part for part, _, _ in _PARTS], 0.0)
    inside = [0]  # only the writer thread changes it
    pieces_spent = dict.fromkeys([piece for piece, _ in _PIECES], 0.0)
    if pieces:  # inside the commit's own timing, so that the commit includes them
        time_pieces(pieces_spent, [0])
    for part, owner, name in _PARTS:
        cls = getattr(sqlite_store, owner, None)
        if cls is not None:
            setattr(cls, name, timed(spent, inside, part, getattr(cls, name)))
    store = sqlite_store.SqliteStore(path)
    await store.open()
    print(f"{'messages':>10}" + "".join(f"{part + ' µs':>14}" for part in spent) + f"{'writer µs':>12}")
    before, n = dict(spent), 0
    try:
        while n < messages:
            appends = []
            for _ in range(feed):
                sender = UserId(1 + n % pairs)
                to = UserId(sender + pairs)
                appends.append(store.append(NewMessage(
                    conv=ConvId(f"p{sender}_{to}"), sender=sender, to=to, cmid=f"c{n}", type=1,
                    content="hello there", msg_id=n + 1, ts=n + 1, members=(sender, to))))
                n += 1
            await asyncio.gather(*appends)
            if n % window == 0:
                while inside[0]:  # a commit settles its appends before its time is added
                    await asyncio.sleep(0.001)
                used = {part: (spent[part] - before[part]) * 1e6 / window for part in spent}
                print(f"{n:>10,}" + "".join(f"{v:>14.2f}" for v in used.values()) + f"{sum(used.values()):>12.2f}",
                      flush=True)
                before = dict(spent)
    finally:
        await store.close()
    if pieces:
        print(f"\nthe commit, piece by piece, µs a message over all {messages:,}:")
        for piece, used in pieces_spent.items():
            print(f"  {piece:28}{used * 1e6 / messages:>8.2f}")
        rest = spent["commit"] - sum(pieces_spent.values())
        print(f"  {'the rest':28}{rest * 1e6 / messages:>8.2f}\n  {'the commit in all':28}"
              f"{spent['commit'] * 1e6 / messages:>8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=8_000_000)
    parser.add_argument("--window", type=int, default=1_000_000, help="messages per line (a multiple of --feed)")
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--feed", type=int, default=2000, help="appends a commit")
    parser.add_argument("--pieces", action="store_true", help="then the commit piece by piece")
    args = parser.parse_args()
    if args.feed < 1 or args.window % args.feed or args.messages < args.window:
        parser.error("--feed must be positive and --window a multiple of it, at most --messages")
    gc.set_threshold(_GC_YOUNG)
    with tempfile.TemporaryDirectory(prefix="edgeim-store-growth-") as tmp:
        asyncio.run(grow(Path(tmp) / "im.db", args.messages, args.window, args.pairs, args.feed, args.pieces))


if __name__ == "__main__":
    main()
