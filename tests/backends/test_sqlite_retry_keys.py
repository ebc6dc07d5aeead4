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
