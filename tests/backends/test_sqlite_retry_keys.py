"""SqliteStore knows a retried append by its (sender, cmid) key without a unique index on
messages: the keys of recent messages are held by the writer and written to message_keys
(as 64-bit hashes, a hit checked against the message) behind the commits, in passes over
everything held, in hash order (cmid_marks move at the end of a pass). A retry is a
duplicate whether its key is held, written, or read back from the messages after a crash,
and two keys that share a hash stay two messages."""
from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from edgeim.backends import sqlite as sqlite_store
from edgeim.backends.protocols import ConvId, NewMessage, UserId
from edgeim.backends.sqlite import SqliteStore


def message(conv: str, cmid: str, msg_id: int, sender: int = 1) -> NewMessage:
    return NewMessage(conv=ConvId(conv), sender=UserId(sender), to=UserId(2), cmid=cmid, type=1,
                      content=f"text of {cmid}", msg_id=msg_id, ts=msg_id, members=(UserId(1), UserId(2)))


def count(path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


async def written(path, keys: int) -> None:
    """Wait until message_keys holds ``keys`` rows (the writer writes them behind)."""
    for _ in range(500):
        if count(path, "message_keys") == keys:
            return
        await asyncio.sleep(0.01)
    assert count(path, "message_keys") == keys


async def test_a_retry_whose_key_is_held_is_a_duplicate(tmp_path, never_idle):
    store = SqliteStore(tmp_path / "im.db")
    await store.open()
    try:
        first = await store.append(message("p1_2", "a", 1))
        again = await store.append(message("p1_2", "a", 2))  # a new id, as a resend after a reconnect mints
        assert count(tmp_path / "im.db", "message_keys") == 0  # held, not written
        assert (again.duplicate, again.id, again.seq) == (True, first.id, first.seq)
        assert count(tmp_path / "im.db", "messages") == 1
    finally:
        await store.close()


async def test_an_idle_writer_writes_the_keys_and_a_retry_is_still_a_duplicate(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_store, "KEYS_SLICE", 2)  # several key transactions
    path = tmp_path / "im.db"
    store = SqliteStore(path)
    await store.open()
    try:
        firsts = [await store.append(message(f"p1_{n + 2}", f"k{n}", n + 1)) for n in range(5)]
        await written(path, 5)
        with sqlite3.connect(path) as conn:
            assert dict(conn.execute("SELECT conv, seq FROM cmid_marks")) == {m.conv: m.seq for m in firsts}
        retries = await asyncio.gather(*(store.append(message(f"p1_{n + 2}", f"k{n}", 100 + n)) for n in range(5)))
        assert [(r.duplicate, r.id) for r in retries] == [(True, m.id) for m in firsts]
        fresh = await store.append(message("p1_2", "new", 200))
        assert (fresh.duplicate, fresh.seq) == (False, 2)
    finally:
        await store.close()


async def test_a_batch_of_new_messages_and_retries_of_written_ones(tmp_path, monkeypatch):
    """One run of appends: retries of messages whose keys were written, a retry twice, and
    new messages between them; each gets its own outcome, in order."""
    monkeypatch.setattr(sqlite_store, "KEYS_HELD", 1)  # every key written right after its batch
    store = SqliteStore(tmp_path / "im.db")
    await store.open()
    try:
        old = [await store.append(message("p1_2", f"old{n}", n + 1)) for n in range(3)]
        await written(tmp_path / "im.db", 3)  # (the writer writes them after it settled the appends)
        got = await asyncio.gather(
            store.append(message("p1_2", "new0", 10)), store.append(message("p1_2", "old1", 11)),
            store.append(message("p1_2", "new1", 12)), store.append(message("p1_2", "old1", 13)),
            store.append(message("p1_2", "new0", 14)), store.append(message("p1_2", "old2", 15)))
        assert [(m.cmid, m.duplicate) for m in got] == [
            ("new0", False), ("old1", True), ("new1", False), ("old1", True), ("new0", True), ("old2", True)]
        assert [got[1].id, got[3].id, got[5].id] == [old[1].id, old[1].id, old[2].id]
        assert got[4].id == got[0].id
        assert [got[0].seq, got[2].seq] == [4, 5]
        assert count(tmp_path / "im.db", "messages") == 5
    finally:
        await store.close()


_CRASH = textwrap.dedent("""
    import asyncio, os, sys
    from edgeim.backends import sqlite as sqlite_store
    from edgeim.backends.protocols import ConvId, NewMessage, UserId
    sqlite_store.INDEX_IDLE = 3600.0  # the keys stay held: the crash takes them
    async def main():
        store = sqlite_store.SqliteStore(sys.argv[1])
        await store.open()
        for n in range(40):
            await store.append(NewMessage(conv=ConvId(f"p1_{n % 4 + 2}"), sender=UserId(1), to=UserId(2),
                                          cmid=f"c{n}", type=1, content="x", msg_id=n + 1, ts=n + 1,
                                          members=(UserId(1), UserId(2))))
        os._exit(0)  # no close: as kill -9
    asyncio.run(main())
""")


async def test_keys_held_at_a_crash_are_read_back_from_the_messages(tmp_path):
    path = tmp_path / "im.db"
    subprocess.run([sys.executable, "-c", _CRASH, str(path)], check=True, timeout=60)
    assert (count(path, "messages"), count(path, "message_keys")) == (40, 0)

    store = SqliteStore(path)
    await store.open()
    try:
        retries = await asyncio.gather(*(store.append(message(f"p1_{n % 4 + 2}", f"c{n}", 1000 + n))
                                         for n in range(40)))
        assert all(r.duplicate for r in retries)
        assert [r.id for r in retries] == [n + 1 for n in range(40)]
        assert count(path, "messages") == 40
    finally:
        await store.close()
    # a stop writes what the writer held: the next open reads nothing back
    assert count(path, "message_keys") == 40


async def test_the_migration_keeps_every_key_and_drops_the_index(tmp_path, database_at):
    """A database of step 12: its messages' keys go to message_cmids (step 13), then to
    message_keys (step 15), and the rebuilt messages table keeps its rows, its (conv,
    seq) uniqueness and its other index."""
    path = tmp_path / "im.db"
    conn = database_at(path, 12)
    conn.executemany("INSERT INTO messages (id, conv, seq, sender, to_user, cmid, type, content, ts, rev)"
                     " VALUES (?, 'p1_2', ?, 1, 2, ?, 1, 'old', 1, ?)", [(n, n, f"m{n}", n % 2) for n in range(1, 4)])
    conn.close()

    store = SqliteStore(path)
    await store.open()
    try:
        again = await store.append(message("p1_2", "m2", 50))
        assert (again.duplicate, again.id, again.seq, again.rev) == (True, 2, 2, 0)
        new = await store.append(message("p1_2", "m4", 51))
        assert (new.duplicate, new.seq) == (False, 4)
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        indexes = {row[1]: row[2] for row in conn.execute("PRAGMA index_list(messages)")}
        columns = [[r[2] for r in conn.execute(f"PRAGMA index_info('{name}')")] for name in indexes]
        assert sorted(columns) == [["conv", "rev"], ["conv", "seq"]]
        assert conn.execute("SELECT count(*) FROM message_keys").fetchone()[0] == 4
        # the migrated keys are run 0 (step 16); the stop wrote the new one as run 1
        assert dict(conn.execute("SELECT run, keys FROM key_runs")) == {0: 3, 1: 1}
        assert dict(conn.execute("SELECT run, count(*) FROM message_keys GROUP BY run")) == {0: 3, 1: 1}
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'message_cmids'").fetchone()[0] == 0
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("INSERT INTO messages (id, conv, seq, sender, to_user, cmid, type, content, ts)"
                         " VALUES (99, 'p1_2', 1, 1, 2, 'x', 1, 'dup seq', 1)")


@pytest.mark.parametrize("written_first", [False, True], ids=["held", "written"])
async def test_keys_that_share_a_hash_are_told_apart_by_their_messages(tmp_path, monkeypatch, never_idle,
                                                                       written_first):
    """Every key of a sender hashed alike: new cmids are still new messages, and a retry
    of each finds its own message, whether the keys are held or in message_keys."""
    monkeypatch.setattr(sqlite_store, "key_hash", lambda sender, cmid: sender)
    if written_first:
        monkeypatch.setattr(sqlite_store, "KEYS_HELD", 1)
    path = tmp_path / "im.db"
    store = SqliteStore(path)
    await store.open()
    try:
        firsts = [await store.append(message("p1_2", f"k{n}", n + 1)) for n in range(4)]
        assert [m.duplicate for m in firsts] == [False] * 4 and [m.seq for m in firsts] == [1, 2, 3, 4]
        if written_first:
            await written(path, 4)
        retries = await asyncio.gather(*(store.append(message("p1_2", f"k{n}", 100 + n)) for n in (2, 0, 3)))
        assert [(r.duplicate, r.id) for r in retries] == [(True, 3), (True, 1), (True, 4)]
        other = await store.append(message("p1_2", "k0", 200, sender=2))  # same cmid, another sender
        assert (other.duplicate, other.seq) == (False, 5)
        assert count(path, "messages") == 5
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert sorted(conn.execute("SELECT h, id FROM message_keys")) == [(1, 1), (1, 2), (1, 3), (1, 4), (2, 200)]


async def test_after_a_stop_a_retry_finds_its_key_in_the_table(tmp_path):
    """A stop writes the held keys; the next open reads them into its filter of stored
    keys, so a retry is still a duplicate and a new cmid still a new message."""
    path = tmp_path / "im.db"
    store = SqliteStore(path)
    await store.open()
    try:
        firsts = [await store.append(message("p1_2", f"s{n}", n + 1)) for n in range(30)]
    finally:
        await store.close()
    assert count(path, "message_keys") == 30

    store = SqliteStore(path)
    await store.open()
    try:
        retries = await asyncio.gather(*(store.append(message("p1_2", f"s{n}", 100 + n)) for n in range(30)))
        assert [(r.duplicate, r.id) for r in retries] == [(True, m.id) for m in firsts]
        fresh = await store.append(message("p1_2", "s30", 200))
        assert (fresh.duplicate, fresh.seq) == (False, 31)
    finally:
        await store.close()


class _MaybeEverything:
    """A filter of stored keys that takes every hash for a stored one: as if each new key
    were a false positive."""

    def add(self, h: int) -> None:
        pass

    def __contains__(self, h: object) -> bool:
        return True


async def test_a_false_positive_of_the_filter_costs_a_lookup_not_a_message(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_store, "KEYS_HELD", 1)  # every key written right after its batch
    monkeypatch.setattr(sqlite_store, "KeyFilter", lambda capacity: _MaybeEverything())
    path = tmp_path / "im.db"
    store = SqliteStore(path)
    await store.open()
    try:
        old = await store.append(message("p1_2", "old", 1))
        await written(path, 1)
        got = await asyncio.gather(*(store.append(message("p1_2", cmid, 10 + n))
                                     for n, cmid in enumerate(["new0", "old", "new1"])))
        assert [(m.cmid, m.duplicate, m.seq) for m in got] == [("new0", False, 2), ("old", True, 1), ("new1", False, 3)]
        assert got[1].id == old.id
        assert count(path, "messages") == 3
    finally:
        await store.close()


def runs(path) -> dict[int, int]:
    """key_runs: run -> the keys it counts."""
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT run, keys FROM key_runs"))


def check_runs(path, keys: int) -> dict[int, int]:
    """message_keys holds ``keys`` keys, each once, in the runs key_runs counts; the runs."""
    with sqlite3.connect(path) as conn:
        in_rows = dict(conn.execute("SELECT run, count(*) FROM message_keys GROUP BY run"))
        distinct = conn.execute("SELECT count(*) FROM (SELECT DISTINCT h, id FROM message_keys)").fetchone()[0]
    counted = runs(path)
    assert {run: n for run, n in counted.items() if n} == in_rows
    assert sum(in_rows.values()) == distinct == keys
    return counted


def tier(keys: int) -> int:
    """A run's size tier when KEY_RUNS_MERGED is 2."""
    return max(keys, 1).bit_length() - 1


async def test_each_pass_is_a_run_and_the_idle_writer_merges_a_full_tier(tmp_path, monkeypatch):
    """Every pass writes a run of its own. Idle, the writer merges the runs of a size tier
    once it holds KEY_RUNS_MERGED of them (2 here: tier t holds 2**t to 2**(t+1) - 1
    keys), a few keys a transaction, until no tier holds two. Every key stays in exactly
    one run, which key_runs counts, and a retry of each is a duplicate."""
    monkeypatch.setattr(sqlite_store, "KEYS_HELD", 1)  # a pass after every batch
    monkeypatch.setattr(sqlite_store, "KEYS_SLICE", 2)  # merges of several transactions
    monkeypatch.setattr(sqlite_store, "KEY_RUNS_MERGED", 2)
    path = tmp_path / "im.db"
    store = SqliteStore(path)
    await store.open()
    try:
        firsts = [await store.append(message(f"p1_{n % 3 + 2}", f"k{n}", n + 1)) for n in range(11)]
        for _ in range(500):
            tiers = [tier(n) for n in runs(path).values()]
            if count(path, "message_keys") == 11 and len(tiers) == len(set(tiers)):
                break
            await asyncio.sleep(0.01)
        merged = check_runs(path, 11)
        tiers = [tier(n) for n in merged.values()]
        assert len(tiers) == len(set(tiers)) and len(merged) < 11
        assert max(merged) > 10  # merged runs are numbered after the eleven passes' runs
        retries = await asyncio.gather(*(store.append(message(f"p1_{n % 3 + 2}", f"k{n}", 100 + n))
                                         for n in range(11)))
        assert [(r.duplicate, r.id) for r in retries] == [(True, m.id) for m in firsts]
        fresh = await store.append(message("p1_2", "new", 200))
        assert fresh.duplicate is False
    finally:
        await store.close()
    check_runs(path, 12)


@pytest.mark.parametrize("most", [3, 100])
async def test_a_busy_writer_merges_only_a_tier_of_key_runs_most(tmp_path, monkeypatch, never_idle, most):
    """Never idle, the writer merges a tier only once it holds KEY_RUNS_MOST runs (3: it
    does, between batches; 100: it never does, and every pass's run stays). Keys are found
    all the same."""
    monkeypatch.setattr(sqlite_store, "KEYS_HELD", 2)  # a pass every other batch: runs of 2
    monkeypatch.setattr(sqlite_store, "KEYS_SLICE", 2)
    monkeypatch.setattr(sqlite_store, "KEY_RUNS_MERGED", 2)
    monkeypatch.setattr(sqlite_store, "KEY_RUNS_MOST", most)
    path = tmp_path / "im.db"
    store = SqliteStore(path)
    await store.open()
    try:
        firsts = [await store.append(message("p1_2", f"b{n}", n + 1)) for n in range(20)]
        retries = await asyncio.gather(*(store.append(message("p1_2", f"b{n}", 100 + n)) for n in range(20)))
        assert [(r.duplicate, r.id) for r in retries] == [(True, m.id) for m in firsts]
    finally:
        await store.close()
    # read once the writer has stopped: between two batches it goes on merging, and a
    # merge under way may be draining the largest run
    sizes = sorted(check_runs(path, count(path, "message_keys")).values())
    if most == 3:
        assert sizes[-1] >= 6  # three runs of 2 at least were merged
    else:
        assert set(sizes) == {2}
    check_runs(path, 20)


_CRASH_IN_A_MERGE = textwrap.dedent("""
    import asyncio, os, sys
    from edgeim.backends import sqlite as sqlite_store
    from edgeim.backends.protocols import ConvId, NewMessage, UserId
    sqlite_store.INDEX_IDLE = 3600.0
    sqlite_store.KEYS_HELD, sqlite_store.KEYS_SLICE = 2, 2  # runs of 2 keys (a pass every other batch)
    sqlite_store.KEY_RUNS_MERGED, sqlite_store.KEY_RUNS_MOST = 2, 4
    slices = 0
    merge_some = sqlite_store._KeyRuns.merge_some
    def crashing(self, conn, idle):
        global slices
        merge_some(self, conn, idle)
        slices += 1
        if slices == 2:  # of the 4 of merging four runs of 2
            os._exit(0)  # as kill -9
    sqlite_store._KeyRuns.merge_some = crashing
    async def main():
        store = sqlite_store.SqliteStore(sys.argv[1])
        await store.open()
        for n in range(40):
            await store.append(NewMessage(conv=ConvId("p1_2"), sender=UserId(1), to=UserId(2), cmid=f"c{n}",
                                          type=1, content="x", msg_id=n + 1, ts=n + 1,
                                          members=(UserId(1), UserId(2))))
        sys.exit("the merge never began")
    asyncio.run(main())
""")


async def test_a_merge_cut_short_by_a_crash_leaves_every_key_counted_and_found(tmp_path):
    path = tmp_path / "im.db"
    subprocess.run([sys.executable, "-c", _CRASH_IN_A_MERGE, str(path)], check=True, timeout=60)
    stored = count(path, "messages")
    on_disk = count(path, "message_keys")
    counted = check_runs(path, on_disk)
    assert 8 <= on_disk < stored  # four runs written at least, the keys after them held when it crashed
    # the four sources are still runs, some with fewer keys than the 2 of a pass: the merge
    # took some of their keys into its own run
    assert len(counted) >= 5 and min(counted.values()) < 2

    store = SqliteStore(path)
    await store.open()
    try:
        retries = await asyncio.gather(*(store.append(message("p1_2", f"c{n}", 1000 + n)) for n in range(stored)))
        assert [(r.duplicate, r.id) for r in retries] == [(True, n + 1) for n in range(stored)]
    finally:
        await store.close()
    check_runs(path, stored)


async def test_a_merge_begun_idle_waits_while_batches_come_unless_a_tier_fills(tmp_path, monkeypatch):
    """The merge policy, on a database of the current schema: two runs of 2 keys are
    due for a merge when idle only; begun idle, the merge waits under load, and goes on
    under load once a tier of other runs holds KEY_RUNS_MOST; then those are merged.
    Each key is in one run, counted."""
    monkeypatch.setattr(sqlite_store, "KEY_RUNS_MERGED", 2)
    monkeypatch.setattr(sqlite_store, "KEY_RUNS_MOST", 3)
    monkeypatch.setattr(sqlite_store, "KEYS_SLICE", 1)  # a merge of 4 keys: 4 slices
    store = SqliteStore(tmp_path / "im.db")  # the schema
    await store.open()
    await store.close()
    conn = sqlite3.connect(tmp_path / "im.db", isolation_level=None)

    def write_run(run: int, hashes: list[int]) -> None:
        conn.executemany("INSERT INTO message_keys (run, h, id) VALUES (?, ?, ?)", [(run, h, h) for h in hashes])
        conn.execute("INSERT INTO key_runs (run, keys) VALUES (?, ?)", (run, len(hashes)))

    write_run(0, [-2**62 - 5, 2**62])  # one key in each of the first and the last quarter
    write_run(1, [-5, 7])
    runs = sqlite_store._KeyRuns()
    runs.load(conn)
    assert (runs.due(idle=True), runs.due(idle=False)) == (True, False)
    runs.merge_some(conn, idle=True)  # the first slice: the new run is 2
    assert runs.runs[2] + runs.runs[0] + runs.runs[1] == 4 and runs.runs[2] == 1
    assert (runs.due(idle=True), runs.due(idle=False)) == (True, False)  # waits under load

    for run in (3, 4, 5):  # passes: three runs of tier 1 (2 to 3 keys), KEY_RUNS_MOST
        write_run(run, [10 * run, 10 * run + 1])
        runs.add(run, writing=True)
        runs.counted([(run, 2)])
        runs.written(run)
    assert runs.due(idle=False)
    while runs.due(idle=False):
        runs.merge_some(conn, idle=False)
    assert dict(conn.execute("SELECT run, keys FROM key_runs")) == {2: 4, 6: 6} == runs.runs
    assert sorted(conn.execute("SELECT run, h FROM message_keys")) == [
        (2, -2**62 - 5), (2, -5), (2, 7), (2, 2**62), (6, 30), (6, 31), (6, 40), (6, 41), (6, 50), (6, 51)]
    conn.close()
