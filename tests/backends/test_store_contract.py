"""The ``Store`` contract (backends/protocols.py), run against every implementation.

Add an implementation by adding a branch to ``store_factory``: the factory returns a
function that makes a new, unopened store over the *same* backing storage each time, so
that durability across reopen can be checked. "mysql" runs against a real MariaDB (TiDB with IM_TEST_MYSQL=tidb) that
tests/servers.py starts once per session, with a fresh database per test. SQLite-only
checks are at the end; MySQL-only ones are in test_mysql_store.py.
"""
from __future__ import annotations

import asyncio
import itertools
import sqlite3
import subprocess
import sys
from typing import Callable

import msgspec
import pytest

from edgeim.backends import sqlite as sqlite_backend
from edgeim.backends.protocols import (
    PINS_FULL, ConvId, CreateGroup, DissolveGroup, DropFriendship, DropJoinRequest, DropMember, HideMessages,
    NewMessage, Pin, PinMessage, PutFriendRequest, RecallMessage, UnpinMessage,
    PutFriendship, PutGroup, PutJoinRequest, PutMember, RevokeToken, SetBlock, SetPasswordHash, SetRemark,
    SetUserConv, Store, StoreClosed,
    StoredMessage, StoreUnavailable, UserConv, UserId, UsernameTaken,
)
from edgeim.backends.mysql import MysqlStore
from edgeim.backends.sqlite import SqliteStore

_ids = itertools.count(1)


def message(
    conv: str, sender: int, to: int, cmid: str | None = None, *, ts: int = 1, msg_id: int | None = None
) -> NewMessage:
    n = next(_ids)
    return NewMessage(
        conv=ConvId(conv), sender=UserId(sender), to=UserId(to), cmid=cmid or f"c{n}",
        type=1, content=f"hello {n}", msg_id=msg_id if msg_id is not None else n, ts=ts,
    )


@pytest.fixture(params=["sqlite", "mysql"])
def store_factory(request: pytest.FixtureRequest, tmp_path) -> Callable[[], Store]:
    if request.param == "sqlite":
        return lambda: SqliteStore(tmp_path / "im.db")
    if request.param == "mysql":
        server = request.getfixturevalue("mysql_server")  # started only if a mysql test runs
        database = server.new_database()
        request.addfinalizer(lambda: server.drop_database(database))
        return lambda: MysqlStore(server.url(database))
    raise AssertionError(request.param)


@pytest.fixture
async def store(store_factory):
    s = store_factory()
    await s.open()
    yield s
    await s.close()


async def reopen(store_factory) -> Store:
    s = store_factory()
    await s.open()
    return s


# -- users --------------------------------------------------------------------------------

async def test_create_and_get_user(store):
    alice = await store.create_user("alice", "h1", "Alice")
    bob = await store.create_user("bob", "h2", "Bob")
    assert alice.id >= 1 and bob.id != alice.id
    assert (alice.username, alice.password_hash, alice.nickname) == ("alice", "h1", "Alice")
    assert await store.get_user(alice.id) == alice
    assert await store.get_user_by_name("bob") == bob
    assert await store.get_user(UserId(10_000)) is None
    assert await store.get_user_by_name("carol") is None


async def test_username_taken(store):
    await store.create_user("alice", "h", "A")
    with pytest.raises(UsernameTaken):
        await store.create_user("alice", "other", "B")
    results = await asyncio.gather(
        *(store.create_user("bob", "h", str(i)) for i in range(20)), return_exceptions=True
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, UsernameTaken) for r in results if isinstance(r, BaseException))


# -- seqs ---------------------------------------------------------------------------------

async def test_submit_queues_at_once_and_seqs_follow_call_order(store):
    messages = [message("p:1:2", 1 + n % 2, 2 - n % 2) for n in range(300)]
    futures = [store.submit(m) for m in messages]  # no await in between: call order only
    stored = await asyncio.gather(*futures)
    assert [s.seq for s in stored] == list(range(1, 301))
    assert [s.id for s in stored] == [m.msg_id for m in messages]


async def test_seqs_are_1_to_n_per_conversation_under_concurrency(store):
    convs = {f"p:1:{peer}": peer for peer in range(2, 7)}
    messages = [message(conv, 1, peer) for _ in range(100) for conv, peer in convs.items()]
    stored = await asyncio.gather(*(store.append(m) for m in messages))
    for conv in convs:
        mine = [s for s in stored if s.conv == conv]
        assert sorted(s.seq for s in mine) == list(range(1, 101))
        assert not any(s.duplicate for s in mine)
        read = await store.messages_after(ConvId(conv), 0, 1000)
        assert [s.seq for s in read] == list(range(1, 101))
        assert {s.id for s in read} == {s.id for s in mine}
    # each returned row is exactly what was stored
    by_id = {s.id: s for s in stored}
    for m in messages:
        s = by_id[m.msg_id]
        assert (s.conv, s.sender, s.to, s.cmid, s.type, s.content, s.ts) == (
            m.conv, m.sender, m.to, m.cmid, m.type, m.content, m.ts)


# -- dedup --------------------------------------------------------------------------------

async def test_duplicate_cmid_returns_first_row(store):
    first = await store.append(message("p:1:2", 1, 2, "retry-me", msg_id=500))
    again = await store.append(message("p:1:2", 1, 2, "retry-me", msg_id=501))
    assert not first.duplicate and again.duplicate
    assert (again.id, again.seq, again.content) == (first.id, first.seq, first.content)
    # the duplicate consumed no seq, and the same cmid from another sender is not a duplicate
    other = await store.append(message("p:1:2", 2, 1, "retry-me"))
    assert (other.seq, other.duplicate) == (first.seq + 1, False)
    assert [m.id for m in await store.messages_after(ConvId("p:1:2"), 0, 10)] == [500, other.id]


async def test_duplicate_cmid_sent_concurrently(store):
    results = await asyncio.gather(*(store.append(message("p:1:2", 1, 2, "same")) for _ in range(10)))
    assert sum(not r.duplicate for r in results) == 1
    assert len({(r.id, r.seq) for r in results}) == 1
    assert len(await store.messages_after(ConvId("p:1:2"), 0, 100)) == 1


# -- paging -------------------------------------------------------------------------------

async def test_paging_forward_and_backward_is_exact(store):
    conv = ConvId("p:1:2")
    await asyncio.gather(*(store.append(message(conv, 1 + i % 2, 2 - i % 2)) for i in range(103)))
    await store.append(message("p:1:3", 1, 3))  # another conversation stays out of the pages

    forward, after = [], 0
    while page := await store.messages_after(conv, after, 7):
        assert len(page) <= 7
        forward += page
        after = page[-1].seq
    assert [m.seq for m in forward] == list(range(1, 104))

    backward, before = [], 0
    while page := await store.messages_before(conv, before, 7):
        assert [m.seq for m in page] == sorted(m.seq for m in page)
        backward = page + backward
        before = page[0].seq
    assert backward == forward

    assert [m.seq for m in await store.messages_after(conv, 100, 10)] == [101, 102, 103]
    assert [m.seq for m in await store.messages_before(conv, 4, 10)] == [1, 2, 3]
    assert [m.seq for m in await store.messages_before(conv, 0, 2)] == [102, 103]
    assert await store.messages_after(conv, 103, 10) == []
    assert await store.messages_before(conv, 1, 10) == []
    assert await store.messages_after(conv, 0, 0) == []
    assert await store.messages_before(conv, 0, 0) == []
    assert await store.messages_after(ConvId("nobody"), 0, 10) == []


# -- conversations and per-user state --------------------------------------------------------

def pm(sender: int, to: int, ts: int = 1) -> NewMessage:
    """A private message that enters both users' lists at its first message."""
    low, high = sorted((sender, to))
    return msgspec.structs.replace(message(f"p{low}_{high}", sender, to, ts=ts), members=(UserId(sender), UserId(to)))


async def test_a_private_message_enters_both_lists_once_with_its_head(store):
    await store.append(pm(1, 2, ts=100))
    await store.append(pm(2, 1, ts=200))
    await store.append(pm(3, 1, ts=300))
    one = await store.load_user(UserId(1))
    assert sorted(c.conv for c in one.convs) == ["p1_2", "p1_3"]
    assert {h.conv: (h.seq, h.ts) for h in one.heads} == {"p1_2": (2, 200), "p1_3": (1, 300)}
    two = await store.load_user(UserId(2))
    assert [c.conv for c in two.convs] == ["p1_2"]
    assert (await store.load_user(UserId(99))).convs == []


async def test_the_senders_read_cursor_follows_their_sends_only(store):
    await store.append(pm(1, 2))
    await store.append(pm(2, 1))
    await store.append(pm(1, 2))
    reads = {u: (await store.load_user(UserId(u))).convs[0].read_seq for u in (1, 2)}
    assert reads == {1: 3, 2: 2}


async def test_user_conv_state_is_set_and_the_read_cursor_never_goes_back(store):
    await store.append(pm(1, 2))
    await store.apply(SetUserConv(UserId(2), UserConv(ConvId("p1_2"), read_seq=1, pinned=True, muted=True, hidden_seq=1)))
    await store.apply(SetUserConv(UserId(2), UserConv(ConvId("p1_2"), read_seq=0, pinned=True)))
    (state,) = (await store.load_user(UserId(2))).convs
    assert (state.read_seq, state.pinned, state.muted, state.hidden_seq) == (1, True, False, 0)


async def test_friend_requests_friendships_remarks_and_blocks(store):
    await store.apply(PutFriendRequest(UserId(1), UserId(2), "hi", 10))
    one, two = await store.load_user(UserId(1)), await store.load_user(UserId(2))
    assert [(r.sender, r.receiver, r.message) for r in one.requests_out] == [(1, 2, "hi")]
    assert [(r.sender, r.message) for r in two.requests_in] == [(1, "hi")]
    await store.apply(PutFriendship(UserId(2), UserId(1), 20))
    await store.apply(SetRemark(UserId(1), UserId(2), "bobby"))
    one, two = await store.load_user(UserId(1)), await store.load_user(UserId(2))
    assert [(f.user, f.remark, f.since) for f in one.friends] == [(2, "bobby", 20)]
    assert [(f.user, f.remark) for f in two.friends] == [(1, "")]
    assert one.requests_out == [] and two.requests_in == []
    await store.apply(SetBlock(UserId(2), UserId(1), True))
    assert (await store.load_user(UserId(1))).blocked_by == [2]
    assert (await store.load_user(UserId(2))).blocked == [1]
    await store.apply(SetBlock(UserId(2), UserId(1), False))
    await store.apply(DropFriendship(UserId(1), UserId(2)))
    one = await store.load_user(UserId(1))
    assert (one.friends, one.blocked_by) == ([], [])


async def test_groups_members_and_the_join_seq(store):
    made = await store.apply(CreateGroup("g", "", "", UserId(1), "approval", 100, [UserId(2), UserId(1)], 5))
    group = made.group
    assert [(m.user, m.role, m.joined_seq) for m in made.members] == [(1, "owner", 0), (2, "member", 0)]
    conv = ConvId(f"g{group.id}")
    for n in range(3):
        await store.append(message(conv, 1, group.id))
    late = await store.apply(PutMember(group.id, UserId(3), "member", 0, 9))
    assert late.joined_seq == 3  # the messages before the join are not the late member's
    assert (await store.load_group(group.id)).head.seq == 3
    await store.apply(PutMember(group.id, UserId(3), "admin", 123, 10))  # a change keeps the join
    loaded = await store.load_group(group.id)
    assert [(m.user, m.role, m.muted_until, m.joined_seq) for m in loaded.members] == [
        (1, "owner", 0, 0), (2, "member", 0, 0), (3, "admin", 123, 3)]
    three = await store.load_user(UserId(3))
    assert [(c.conv, c.read_seq, c.joined_seq) for c in three.convs] == [(conv, 3, 3)]
    assert [h.seq for h in three.heads] == [3]  # one row per message, read through the membership

    await store.apply(PutJoinRequest(group.id, UserId(4), "let me in", 11))
    assert [(r.user, r.message) for r in (await store.load_group(group.id)).requests] == [(4, "let me in")]
    await store.apply(DropJoinRequest(group.id, UserId(4)))
    await store.apply(PutGroup(msgspec.structs.replace(group, name="renamed", mute_all=True)))
    await store.apply(DropMember(group.id, UserId(2)))
    loaded = await store.load_group(group.id)
    assert (loaded.group.name, loaded.group.mute_all, loaded.requests) == ("renamed", True, [])
    assert [m.user for m in loaded.members] == [1, 3]
    assert (await store.load_user(UserId(2))).convs == []
    await store.apply(DissolveGroup(group.id))
    assert await store.load_group(group.id) is None
    assert (await store.load_user(UserId(1))).convs == []


async def test_readers_of_a_message(store):
    made = await store.apply(CreateGroup("g", "", "", UserId(1), "open", 100, [UserId(2), UserId(3), UserId(4)], 5))
    conv = ConvId(f"g{made.group.id}")
    await store.append(message(conv, 1, made.group.id))
    await store.append(message(conv, 2, made.group.id))
    await store.apply(SetUserConv(UserId(3), UserConv(conv, read_seq=2)))
    assert await store.readers(conv, 1, UserId(1), UserId(0), 10) == (2, [2, 3])  # the sender left out
    assert await store.readers(conv, 2, UserId(2), UserId(0), 10) == (1, [3])
    assert await store.readers(conv, 1, UserId(1), UserId(2), 10) == (2, [3])  # paged by user id
    late = await store.apply(PutMember(made.group.id, UserId(5), "member", 0, 6))  # joins at seq 2
    assert late.joined_seq == 2
    assert await store.readers(conv, 2, UserId(2), UserId(0), 10) == (1, [3])  # 5 never saw seq 2
    await store.append(message(conv, 1, made.group.id))  # seq 3
    await store.apply(SetUserConv(UserId(5), UserConv(conv, read_seq=3, joined_seq=2)))
    assert await store.readers(conv, 3, UserId(1), UserId(0), 10) == (1, [5])


async def test_a_change_that_fails_fails_alone(store):
    made = await store.apply(CreateGroup("g", "", "", UserId(1), "open", 100, [], 5))
    bad = store.apply(PutGroup(msgspec.structs.replace(made.group, name=None)))  # NOT NULL
    good = store.apply(PutFriendRequest(UserId(1), UserId(2), "", 1))
    with pytest.raises(Exception):
        await bad
    await good
    assert (await store.load_group(made.group.id)).group.name == "g"
    assert len((await store.load_user(UserId(2))).requests_in) == 1


# -- durability and lifecycle -------------------------------------------------------------

async def test_every_returned_append_survives_reopen(store_factory):
    s = await reopen(store_factory)
    user = await s.create_user("alice", "h", "A")
    stored = await asyncio.gather(*(s.append(message(f"p:1:{2 + i % 3}", 1, 2 + i % 3)) for i in range(300)))
    await s.close()

    s = await reopen(store_factory)
    try:
        assert await s.get_user(user.id) == user
        for conv in {m.conv for m in stored}:
            expect = sorted((m for m in stored if m.conv == conv), key=lambda m: m.seq)
            assert await s.messages_after(conv, 0, 1000) == expect
        # seqs continue after reopen, and dedup still knows the old cmids
        nxt = await s.append(message("p:1:2", 1, 2))
        assert nxt.seq == 101
        dup = await s.append(message(stored[0].conv, 1, stored[0].to, stored[0].cmid))
        assert dup.duplicate and dup.id == stored[0].id
    finally:
        await s.close()


async def test_close_commits_queued_appends(store_factory):
    s = await reopen(store_factory)
    queued = [asyncio.ensure_future(s.append(message("p:1:2", 1, 2))) for _ in range(500)]
    await asyncio.sleep(0)  # every append has run up to its enqueue
    late = [asyncio.ensure_future(s.append(message("p:1:2", 1, 2))) for _ in range(100)]
    await s.close()  # the appends were never awaited before this
    queued_results = await asyncio.gather(*queued, return_exceptions=True)
    late_results = await asyncio.gather(*late, return_exceptions=True)

    assert all(isinstance(r, StoredMessage) for r in queued_results)
    ok = [r for r in queued_results + late_results if isinstance(r, StoredMessage)]
    assert all(isinstance(r, StoredMessage | StoreClosed) for r in late_results)
    s = await reopen(store_factory)
    try:
        stored = await s.messages_after(ConvId("p:1:2"), 0, 10_000)
    finally:
        await s.close()
    assert sorted(ok, key=lambda m: m.seq) == stored


async def test_append_after_close_raises(store_factory):
    s = await reopen(store_factory)
    await s.close()
    await s.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await s.append(message("p:1:2", 1, 2))
    with pytest.raises(RuntimeError, match="closed"):
        await s.messages_after(ConvId("p:1:2"), 0, 10)


async def test_reopen_is_idempotent(store_factory):
    for _ in range(3):
        s = await reopen(store_factory)
        await s.append(message("p:1:2", 1, 2))
        await s.close()
    s = await reopen(store_factory)
    try:
        assert [m.seq for m in await s.messages_after(ConvId("p:1:2"), 0, 10)] == [1, 2, 3]
    finally:
        await s.close()


async def test_event_loop_keeps_running_during_a_large_batch(store):
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0)

    appends = asyncio.gather(*(store.append(message("p:1:2", 1, 2)) for _ in range(3000)))
    ticking = asyncio.ensure_future(ticker())
    await appends
    done.set()
    await ticking
    assert ticks > 0


# -- SQLite only ----------------------------------------------------------------------------

@pytest.fixture
async def sqlite_store(tmp_path):
    s = SqliteStore(tmp_path / "im.db")
    await s.open()
    yield s
    await s.close()


def hold_write_lock(path) -> sqlite3.Connection:
    """A second connection that holds the write lock until rollback: the writer waits."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    return conn


async def test_sqlite_committed_rows_are_visible_to_another_process(sqlite_store):
    stored = await asyncio.gather(*(sqlite_store.append(message("p:1:2", 1, 2)) for _ in range(200)))
    # The store is still open: the rows must be in the file (WAL), not only in this process.
    script = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]);"
        " print(c.execute(\"SELECT count(*), max(seq) FROM messages WHERE conv = 'p:1:2'\").fetchone());"
        " c.close()"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, sqlite_store.path, stdout=subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    assert out.decode().strip() == f"({len(stored)}, {len(stored)})"


async def test_sqlite_duplicates_in_one_batch(sqlite_store):
    lock = hold_write_lock(sqlite_store.path)
    try:
        blocked = asyncio.ensure_future(sqlite_store.append(message("p:1:2", 1, 2)))
        await asyncio.sleep(0)  # the writer takes this one and waits for the lock ...
        pair = asyncio.gather(  # ... so these two are queued together: one batch
            sqlite_store.append(message("p:1:2", 1, 2, "twice", msg_id=9001)),
            sqlite_store.append(message("p:1:2", 1, 2, "twice", msg_id=9002)),
        )
        await asyncio.sleep(0)
    finally:
        lock.rollback()
        lock.close()
    await blocked
    first, second = await pair
    assert (first.duplicate, second.duplicate) == (False, True)
    assert (second.id, second.seq) == (9001, first.seq)


async def test_sqlite_append_waits_for_commit_and_loop_stays_free(sqlite_store):
    lock = hold_write_lock(sqlite_store.path)
    try:
        appends = [asyncio.ensure_future(sqlite_store.append(message("p:1:2", 1, 2))) for _ in range(50)]
        ticks = 0
        for _ in range(200):  # the writer is stuck on the lock; the loop is not
            await asyncio.sleep(0)
            ticks += 1
        assert ticks == 200 and not any(a.done() for a in appends)
        # reads still work while the writer waits (separate connection, WAL)
        assert await sqlite_store.messages_after(ConvId("p:1:2"), 0, 10) == []
    finally:
        lock.rollback()
        lock.close()
    assert [m.seq for m in await asyncio.gather(*appends)] == list(range(1, 51))


async def test_sqlite_failed_batch_fails_its_appends_and_writer_recovers(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_backend, "_BUSY_TIMEOUT_MS", 20)
    s = SqliteStore(tmp_path / "im.db")
    await s.open()
    try:
        await s.append(message("p:1:2", 1, 2))
        lock = hold_write_lock(s.path)
        try:
            with pytest.raises(StoreUnavailable, match="locked") as failed:
                await s.append(message("p:1:2", 1, 2))
            assert isinstance(failed.value.__cause__, sqlite3.OperationalError)
        finally:
            lock.rollback()
            lock.close()
        after = await s.append(message("p:1:2", 1, 2))
        assert after.seq == 2  # the failed batch consumed no seq
    finally:
        await s.close()


async def test_sqlite_one_bad_message_fails_alone(sqlite_store):
    await sqlite_store.append(message("p:1:2", 1, 2, msg_id=7))
    lock = hold_write_lock(sqlite_store.path)
    try:
        ahead = asyncio.ensure_future(sqlite_store.append(message("p:1:3", 1, 3)))
        await asyncio.sleep(0)
        batch = asyncio.gather(
            sqlite_store.append(message("p:1:2", 1, 2)),
            sqlite_store.append(message("p:1:2", 1, 2, msg_id=7)),  # id already taken
            sqlite_store.append(message("p:1:2", 1, 2)),
            return_exceptions=True,
        )
        await asyncio.sleep(0)
    finally:
        lock.rollback()
        lock.close()
    await ahead
    good1, bad, good2 = await batch
    assert isinstance(bad, sqlite3.IntegrityError)
    assert (good1.seq, good2.seq) == (2, 3)


async def test_sqlite_migrations_run_once(tmp_path):
    path = tmp_path / "im.db"
    for _ in range(2):
        s = SqliteStore(path, synchronous="NORMAL")
        await s.open()
        await s.close()
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == len(sqlite_backend.MIGRATIONS)
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            assert {"users", "messages", "user_convs", "friends", "chat_groups", "group_members"} <= tables
            assert "conversations" not in tables  # migration 2 replaced it
        finally:
            conn.close()


async def test_sqlite_refuses_a_newer_schema(tmp_path):
    path = tmp_path / "im.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(sqlite_backend.MIGRATIONS) + 1}")
    conn.close()
    s = SqliteStore(path)
    with pytest.raises(RuntimeError, match="newer"):
        await s.open()
    with pytest.raises(StoreClosed):
        await s.append(message("p:1:2", 1, 2))
    await s.close()


def test_sqlite_rejects_bad_options(tmp_path):
    with pytest.raises(ValueError):
        SqliteStore(tmp_path / "im.db", synchronous="OFF")
    with pytest.raises(ValueError):
        SqliteStore(tmp_path / "im.db", batch_max=0)


async def test_sqlite_migration_2_keeps_the_lists_of_a_version_1_file(tmp_path):
    path = tmp_path / "im.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in sqlite_backend._split_sql(sqlite_backend.MIGRATIONS[0]):
        conn.execute(statement)
    conn.execute("INSERT INTO messages VALUES (1, 'p1_2', 1, 1, 2, 'c', 1, 'old', 5)")
    conn.execute("INSERT INTO conversations VALUES (1, 'p1_2', 2, 1, 5), (2, 'p1_2', 1, 1, 5)")
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    s = SqliteStore(path)
    await s.open()
    try:
        two = await s.load_user(UserId(2))
        assert [c.conv for c in two.convs] == ["p1_2"] and [h.content for h in two.heads] == ["old"]
    finally:
        await s.close()


# -- credentials ----------------------------------------------------------------------------

async def test_user_settings_are_stored_and_loaded_with_the_user(store_factory):
    # rich messaging: invisible is a persisted user setting, loaded with the user's records
    from edgeim.backends.protocols import SetSettings
    store = await reopen(store_factory)
    alice = await store.create_user("alice", "h", "")
    assert (await store.load_user(alice.id)).invisible is False  # no row: the default
    await store.apply(SetSettings(alice.id, True))
    assert (await store.load_user(alice.id)).invisible is True
    await store.close()
    store = await reopen(store_factory)
    assert (await store.load_user(alice.id)).invisible is True  # durable
    await store.apply(SetSettings(alice.id, False))
    assert (await store.load_user(alice.id)).invisible is False
    await store.close()


async def test_a_password_hash_is_replaced(store):
    user = await store.create_user("carol", "old-hash", "Carol")
    await store.apply(SetPasswordHash(user.id, "new-hash"))
    assert (await store.get_user(user.id)).password_hash == "new-hash"
    assert (await store.get_user_by_name("carol")).password_hash == "new-hash"


async def test_revoked_tokens_are_remembered_until_they_expire(store):
    assert not await store.token_revoked("t1")
    await store.apply(RevokeToken("t1", 2**40))
    await store.apply(RevokeToken("t1", 2**40))  # twice is fine
    await store.apply(RevokeToken("old", 1))  # expired already: may be forgotten
    assert await store.token_revoked("t1")
    assert not await store.token_revoked("t2")


async def test_reads_stop_once_the_contents_pass_max_bytes(store):
    for n in range(10):
        await store.append(msgspec.structs.replace(message("p1_2", 1, 2), content="é" * 500))  # 1,000 bytes each
    after = await store.messages_after(ConvId("p1_2"), 0, 10, max_bytes=2500)
    assert [m.seq for m in after] == [1, 2, 3]  # the third takes it past 2,500: no fourth is read
    before = await store.messages_before(ConvId("p1_2"), 0, 10, max_bytes=2500)
    assert [m.seq for m in before] == [8, 9, 10]
    assert len(await store.messages_after(ConvId("p1_2"), 0, 10)) == 10  # no bound by default


# -- operations: disabled accounts, the admin API's lists ------------------------------------------

async def test_a_disabled_account_stays_disabled_until_enabled(store_factory):
    from edgeim.backends.protocols import SetDisabled

    first = store_factory()
    await first.open()
    user = await first.create_user("dora", "h", "Dora")
    assert user.disabled is False
    await first.apply(SetDisabled(user.id, True))
    assert (await first.get_user(user.id)).disabled is True
    await first.close()
    again = store_factory()  # durable: a new instance reads it back
    await again.open()
    try:
        assert (await again.get_user_by_name("dora")).disabled is True
        await again.apply(SetDisabled(user.id, False))
        assert (await again.get_user(user.id)).disabled is False
    finally:
        await again.close()


async def test_list_users_and_groups_page_by_id(store):
    from edgeim.backends.protocols import GroupId, SetDisabled

    ids = [(await store.create_user(f"u{n}", "h", f"U{n}")).id for n in range(5)]
    await store.apply(SetDisabled(ids[1], True))
    first = await store.list_users(UserId(0), 3)
    assert [u.username for u in first] == ["u0", "u1", "u2"] and first[1].disabled
    assert [u.id for u in await store.list_users(first[-1].id, 3)] == ids[3:]
    assert await store.list_users(ids[-1], 3) == []
    a = (await store.apply(CreateGroup("a", "", "", ids[0], "open", 100, [ids[1], ids[2]], 5))).group
    b = (await store.apply(CreateGroup("b", "", "", ids[1], "open", 100, [], 5))).group
    assert [(g.name, n) for g, n in await store.list_groups(GroupId(0), 10)] == [("a", 3), ("b", 1)]
    assert [g.id for g, _ in await store.list_groups(a.id, 10)] == [b.id]
    await store.apply(DissolveGroup(a.id))
    assert [g.id for g, _ in await store.list_groups(GroupId(0), 10)] == [b.id]


# -- per-user views and message pins ----------------------------------------------------------

async def test_hidden_messages_are_the_users_own_and_survive_reopen(store_factory):
    store = await reopen(store_factory)
    try:
        for _ in range(4):
            await store.append(pm(1, 2))
        conv = ConvId("p1_2")
        await store.apply(SetUserConv(UserId(2), UserConv(conv, read_seq=1)))
        assert await store.apply(HideMessages(UserId(2), conv, (4, 2, 2), 50)) == ((2, 4), 1)
        assert await store.apply(HideMessages(UserId(2), conv, (2, 3), 60)) == ((3,), 2)  # 2: already
        assert await store.apply(HideMessages(UserId(2), conv, (3,), 70)) == ((), 2)  # nothing new: same ver
        assert await store.apply(HideMessages(UserId(9), conv, (1,), 70)) is None  # not in the conversation
        assert await store.hidden_seqs(UserId(2), conv, 0, 10) == [2, 3, 4]
        assert await store.hidden_seqs(UserId(2), conv, 2, 3) == [3]
        assert await store.hidden_seqs(UserId(1), conv, 0, 10) == []  # the other user keeps them
        visible = await store.last_visible(UserId(2), conv, 0)
        assert visible is not None and visible.seq == 1
        assert (await store.last_visible(UserId(1), conv, 0)).seq == 4
        assert await store.last_visible(UserId(2), conv, 1) is None
    finally:
        await store.close()
    store = await reopen(store_factory)
    try:
        two = await store.load_user(UserId(2))
        assert [(c.conv, c.view_ver) for c in two.convs] == [(conv, 2)]
        assert two.hidden == [(conv, 2), (conv, 3), (conv, 4)]  # above the read cursor (1)
        [stand_in] = two.view_heads  # the newest (4) is hidden: the newest seen is 1
        assert (stand_in.conv, stand_in.head_seq, stand_in.message.seq) == (conv, 4, 1)
        one = await store.load_user(UserId(1))
        assert (one.hidden, one.view_heads, one.convs[0].view_ver) == ([], [], 0)
    finally:
        await store.close()


async def test_a_clear_is_kept_with_the_users_state_and_never_goes_back(store):
    for _ in range(3):
        await store.append(pm(1, 2))
    conv = ConvId("p1_2")
    await store.apply(SetUserConv(UserId(2), UserConv(conv, cleared_seq=2, view_ver=1)))
    await store.apply(SetUserConv(UserId(2), UserConv(conv, cleared_seq=1, view_ver=0, muted=True)))
    (state,) = (await store.load_user(UserId(2))).convs
    assert (state.cleared_seq, state.view_ver, state.read_seq, state.muted) == (2, 1, 0, True)
    assert (await store.load_user(UserId(1))).convs[0].cleared_seq == 0


async def test_message_pins_are_bounded_listed_and_dropped_by_a_recall(store):
    made = await store.apply(CreateGroup("g", "", "", UserId(1), "approval", 100, [UserId(2)], 5))
    conv = ConvId(f"g{made.group.id}")
    for _ in range(4):
        await store.append(message(conv, 1, made.group.id))
    first = await store.apply(PinMessage(conv, 1, UserId(1), 100, 2))
    assert isinstance(first, Pin) and (first.seq, first.by, first.at, first.message.seq) == (1, 1, 100, 1)
    again = await store.apply(PinMessage(conv, 1, UserId(2), 200, 2))  # pinned already: the stored pin
    assert (again.by, again.at) == (1, 100)
    await store.apply(PinMessage(conv, 3, UserId(2), 300, 2))
    assert await store.apply(PinMessage(conv, 4, UserId(1), 400, 2)) == PINS_FULL
    assert await store.apply(PinMessage(conv, 9, UserId(1), 400, 5)) is None  # no such message
    assert [(p.seq, p.by, p.message.seq) for p in await store.pins(conv)] == [(3, 2, 3), (1, 1, 1)]

    await store.apply(RecallMessage(conv, 3, UserId(1), 500))
    assert [p.seq for p in await store.pins(conv)] == [1]
    assert await store.apply(PinMessage(conv, 3, UserId(1), 600, 5)) is None  # recalled
    assert await store.apply(UnpinMessage(conv, 1)) is True
    assert await store.apply(UnpinMessage(conv, 1)) is False
    assert await store.pins(conv) == []
    await store.apply(PinMessage(conv, 2, UserId(1), 700, 5))
    await store.apply(DissolveGroup(made.group.id))
    assert await store.pins(conv) == []


async def test_racing_pins_never_pass_the_bound(store):
    made = await store.apply(CreateGroup("g", "", "", UserId(1), "approval", 100, [], 5))
    conv = ConvId(f"g{made.group.id}")
    for _ in range(6):
        await store.append(message(conv, 1, made.group.id))
    results = await asyncio.gather(*(store.apply(PinMessage(conv, seq, UserId(1), seq, 3)) for seq in range(1, 7)))
    assert sum(isinstance(r, Pin) for r in results) == 3
    assert results.count(PINS_FULL) == 3
    assert len(await store.pins(conv)) == 3
