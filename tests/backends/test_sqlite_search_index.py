"""SqliteStore's search index is written behind the message commits, a conversation at a
time (search_marks): a commit writes no index row; the index catches up when the writer is
idle or before a search that needs it, and after a stop or a crash from the messages."""
from __future__ import annotations

import asyncio
import sqlite3

import pytest

from edgeim.backends import sqlite as sqlite_store
from edgeim.backends.protocols import ConvId, NewMessage, RecallMessage, UserId
from edgeim.backends.sqlite import SqliteStore

_ids = iter(range(1, 10**9))


def message(conv: str, text: str, sender: int = 1) -> NewMessage:
    n = next(_ids)
    return NewMessage(conv=ConvId(conv), sender=UserId(sender), to=2, cmid=f"c{n}", type=1, content=text,
                      msg_id=n, ts=n, members=(UserId(1), UserId(2)))


def index_rows(path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM message_text").fetchone()[0]


@pytest.fixture
def never_idle(monkeypatch):
    """The writer never finds time to index on its own: only searches (and reopening) do."""
    monkeypatch.setattr(sqlite_store, "INDEX_IDLE", 3600.0)


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
