"""The SQLite writer's CPU per message as the store grows, by part: its commits, its passes
of retry keys and its merges of key runs, window after window of appended messages.

    python bench/store_growth.py [--messages 8000000] [--window 1000000] [--pairs 100] [--feed 2000]

One SqliteStore (synchronous=FULL) in a temp dir, fed ``--feed`` appends at a time (a
feed is about one commit, and the next waits for it) over ``--pairs`` conversations (as
send_1to1's pairs; a node under send_1to1 commits about 300 at a time, so ``--feed 300``
shows the writer as it runs there), with the young-generation GC threshold
the node sets (gc_young). Each part's CPU is the writer thread's (``time.thread_time``
around the store's own methods), so the numbers are per message appended, not per second.
To compare with an older version, put its checkout first on PYTHONPATH (parts it does not
have read 0).
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from edgeim.backends import sqlite as sqlite_store
from edgeim.backends.protocols import ConvId, NewMessage, UserId

_GC_YOUNG = 10_000  # the node's default gc_young
_PARTS = (("commit", "SqliteStore", "_commit_batch"), ("key pass", "_HeldKeys", "write_some"),
          ("key merge", "_KeyRuns", "merge_some"))


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


async def grow(path: Path, messages: int, window: int, pairs: int, feed: int) -> None:
    spent = dict.fromkeys([part for part, _, _ in _PARTS], 0.0)
    inside = [0]  # only the writer thread changes it
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=8_000_000)
    parser.add_argument("--window", type=int, default=1_000_000, help="messages per line (a multiple of --feed)")
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--feed", type=int, default=2000, help="appends a commit")
    args = parser.parse_args()
    if args.feed < 1 or args.window % args.feed or args.messages < args.window:
        parser.error("--feed must be positive and --window a multiple of it, at most --messages")
    gc.set_threshold(_GC_YOUNG)
    with tempfile.TemporaryDirectory(prefix="edgeim-store-growth-") as tmp:
        asyncio.run(grow(Path(tmp) / "im.db", args.messages, args.window, args.pairs, args.feed))


if __name__ == "__main__":
    main()
