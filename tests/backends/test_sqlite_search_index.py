"""SqliteStore's search index is written behind the message commits, a conversation at a
time (search_marks): a commit writes no index row; the index catches up when the writer is
idle or before a search that needs it, and after a stop or a crash from the messages."""
from __future__ import annotations

import asyncio
import sqlite3

import pytest

from edgeim.backends import sqlite as sqlite_store
from edgeim.backends.protocols import ConvId, NewMessage, RecallMessage, SearchTimeout, UserId
from edgeim.backends.sqlite import SqliteStore

_ids = iter(range(1, 10**9))


def message(conv: str, text: str, sender: int = 1) -> NewMessage:
    n = next(_ids)
    return NewMessage(conv=ConvId(conv), sender=UserId(sender), to=2, cmid=f"c{n}", type=1, content=text,
                      msg_id=n, ts=n, members=(UserId(1), UserId(2)))


def index_rows(path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM message_text").fetchone()[0]


async def test_commits_write_no_index_row_and_a_search_indexes_first(tmp_path, never_idle):
    store = SqliteStore(tmp_path / "im.db")
    await store.open()
    try:
        await store.append(message("p1_2", "the quarterly report"))
        await store.append(message("p1_3", "another report"))
        assert index_rows(tmp_path / "im.db") == 0
        found = await store.search([(ConvId("p1_2"), 0)], "report", 0, 10)
        assert [m.content for m in found] == ["the quarterly report"]
        assert index_rows(tmp_path / "im.db") == 1  # only the searched conversation was indexed
        found = await store.search([(ConvId("p1_2"), 0), (ConvId("p1_3"), 0)], "report", 0, 10)
        assert [m.content for m in found] == ["another report", "the quarterly report"]
    finally:
        await store.close()


async def test_a_message_recalled_before_it_was_indexed_is_never_found(tmp_path, never_idle):
    store = SqliteStore(tmp_path / "im.db")
    await store.open()
    try:
        first = await store.append(message("p1_2", "secret plan"))
        await store.append(message("p1_2", "public plan"))
        assert await store.apply(RecallMessage(ConvId("p1_2"), first.seq, UserId(1), 5)) is not None
        found = await store.search([(ConvId("p1_2"), 0)], "plan", 0, 10)
        assert [m.content for m in found] == ["public plan"]
    finally:
        await store.close()


async def test_what_was_not_indexed_before_a_stop_is_indexed_after_it(tmp_path, never_idle):
    path = tmp_path / "im.db"
    store = SqliteStore(path)
    await store.open()
    sent = [await store.append(message("g7", f"note {n}")) for n in range(5)]
    await store.close()  # as after a crash: the marks are behind the messages
    assert index_rows(path) == 0

    store = SqliteStore(path)
    await store.open()
    try:
        found = await store.search([(ConvId("g7"), 0)], "note", 0, 10)
        assert sorted(m.id for m in found) == sorted(m.id for m in sent)
    finally:
        await store.close()


async def test_an_idle_writer_catches_the_index_up_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_store, "INDEX_SLICE", 3)  # several index transactions
    store = SqliteStore(tmp_path / "im.db")
    await store.open()
    try:
        for n in range(10):
            await store.append(message(f"p1_{n + 2}", f"hello {n}"))
        for _ in range(500):  # no search: the writer does it between writes
            if index_rows(tmp_path / "im.db") == 10:
                break
            await asyncio.sleep(0.01)
        assert index_rows(tmp_path / "im.db") == 10
    finally:
        await store.close()


# -- what a search may cost: its own thread, a deadline, its caller gone -------------------------

def _endless(conn, *args):
    """A statement that never ends unless interrupted (stands for a search over far too much)."""
    conn.execute("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c").fetchone()
    return []


@pytest.mark.parametrize("scan_rows", [0, 20_000], ids=["index", "scan"])
async def test_both_ways_of_searching_find_the_same(tmp_path, monkeypatch, scan_rows):
    """Past SEARCH_SCAN_ROWS the trigram index answers, below it the conversations' text
    is compared: the same messages either way (case, floors, recalls, short queries)."""
    monkeypatch.setattr(sqlite_store, "SEARCH_SCAN_ROWS", scan_rows)
    store = SqliteStore(tmp_path / "im.db")
    await store.open()
    try:
        old = await store.append(message("g1", "Report before the join"))
        await store.append(message("g1", "the REPORT after the join"))
        gone = await store.append(message("p1_2", "a report recalled"))
        await store.apply(RecallMessage(ConvId("p1_2"), gone.seq, UserId(1), 5))
        await store.append(message("p1_2", "weekly report"))
        await store.append(message("p1_3", "someone else's report"))
        await store.append(message("p1_2", "你好，世界"))
        # holds every trigram of "abcdef" and of "ПРИВЕТ" ("привет" in upper case), but
        # neither text: the index keeps no positions, the text decides, and case is
        # folded for ASCII letters only
        await store.append(message("p1_2", "abcd, cdef, defa ПРИВЕТ"))
        await store.append(message("p1_2", "xx ABCDEF yy"))
        mine = [(ConvId("g1"), old.seq), (ConvId("p1_2"), 0)]
        assert [m.content for m in await store.search(mine, "abcdef", 0, 10)] == ["xx ABCDEF yy"]
        assert [m.content for m in await store.search(mine, "привет", 0, 10)] == []
        assert [m.content for m in await store.search(mine, "ПРИВЕТ", 0, 10)] == ["abcd, cdef, defa ПРИВЕТ"]
        assert [m.content for m in await store.search(mine, "report", 0, 10)] == [
            "weekly report", "the REPORT after the join"]
        assert [m.content for m in await store.search(mine, "rEpOrT A", 0, 10)] == ["the REPORT after the join"]
        assert [m.content for m in await store.search(mine, "世界", 0, 10)] == ["你好，世界"]
        assert await store.search(mine, "recalled", 0, 10) == []
        assert [m.content for m in await store.search(mine, 'a "quoted" word', 0, 10)] == []
    finally:
        await store.close()


async def test_a_search_past_its_timeout_is_stopped_and_reads_never_wait_for_it(tmp_path, monkeypatch, never_idle):
    monkeypatch.setattr(sqlite_store, "_search", _endless)
    store = SqliteStore(tmp_path / "im.db", search_timeout=0.3)
    await store.open()
    try:
        sent = await store.append(message("p1_2", "hello"))
        endless = asyncio.ensure_future(store.search([(ConvId("p1_2"), 0)], "hello", 0, 10))
        queued = asyncio.ensure_future(store.search([(ConvId("p1_2"), 0)], "hello", 0, 10))
        await asyncio.sleep(0)
        assert [m.id for m in await store.messages_after(ConvId("p1_2"), 0, 10)] == [sent.id]
        assert not endless.done()  # a read went past a search that is still running
        with pytest.raises(SearchTimeout):
            await endless
        with pytest.raises(SearchTimeout):
            await queued
    finally:
        await store.close()


async def test_a_search_whose_caller_left_is_stopped(tmp_path, monkeypatch, never_idle):
    monkeypatch.setattr(sqlite_store, "_search", _endless)
    store = SqliteStore(tmp_path / "im.db", search_timeout=3600)
    await store.open()
    try:
        left = False
        search = asyncio.ensure_future(store.search([(ConvId("p1_2"), 0)], "hello", 0, 10, lambda: left))
        await asyncio.sleep(0.05)
        assert not search.done()
        left = True
        with pytest.raises(SearchTimeout):
            await search
        monkeypatch.undo()
        store_search = await store.search([(ConvId("p1_2"), 0)], "hello", 0, 10)  # the thread is free again
        assert store_search == []
    finally:
        await store.close()


async def test_big_messages_are_indexed_in_slices_of_bytes(tmp_path, monkeypatch, never_idle):
    """A search of a conversation with a backlog of large messages holds the writer for one
    slice of INDEX_SLICE_BYTES at a time, not INDEX_SLICE messages."""
    slices: list[int] = []
    index_some = SqliteStore._index_some

    def counted(self, conn, convs, most, most_bytes):
        before = self.indexed
        index_some(self, conn, convs, most, most_bytes)
        slices.append(self.indexed - before)
    monkeypatch.setattr(SqliteStore, "_index_some", counted)
    store = SqliteStore(tmp_path / "im.db")
    await store.open()
    try:
        big = "x" * 32_000
        sent = [await store.append(message("g9", f"{n} {big}")) for n in range(12)]
        found = await store.search([(ConvId("g9"), 0)], "11 xxx", 0, 20)
        assert [m.id for m in found] == [sent[11].id]
        per_slice = -(-sqlite_store.INDEX_SLICE_BYTES // 32_000)  # messages past the bound: one more at most
        assert sum(slices) == 12 and len(slices) >= 2 and max(slices) <= per_slice
    finally:
        await store.close()


async def test_the_index_rebuilt_without_positions_finds_what_it_found(tmp_path, monkeypatch, database_at):
    """A database of step 13 (an index with positions): migrated, its indexed messages
    are still found through the index, and new ones join them."""
    monkeypatch.setattr(sqlite_store, "SEARCH_SCAN_ROWS", 0)  # the index answers
    path = tmp_path / "im.db"
    conn = database_at(path, 13)
    conn.execute("INSERT INTO messages (id, conv, seq, sender, to_user, cmid, type, content, ts)"
                 " VALUES (1, 'p1_2', 1, 1, 2, 'm1', 1, 'the old report', 1)")
    conn.execute("INSERT INTO message_text (rowid, body) VALUES (1, 'the old report')")
    conn.execute("INSERT INTO search_marks (conv, seq) VALUES ('p1_2', 1)")
    conn.execute("INSERT INTO cmid_marks (conv, seq) VALUES ('p1_2', 1)")
    conn.close()

    store = SqliteStore(path)
    await store.open()
    try:
        await store.append(message("p1_2", "a new report"))
        found = await store.search([(ConvId("p1_2"), 0)], "report", 0, 10)
        assert [m.content for m in found] == ["a new report", "the old report"]
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'message_text'").fetchone()[0]
        assert "detail = none" in sql
        assert conn.execute("SELECT count(*) FROM message_text").fetchone()[0] == 2
