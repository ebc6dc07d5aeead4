"""MysqlStore beyond the Store contract: several stores (nodes) on one database, lost
connections and lost commit acknowledgements, open errors, migrations.

Runs against the real MariaDB of tests/servers.py (TiDB with ``IM_TEST_MYSQL=tidb``), a
fresh database per test. Faults are real where they can be (``KILL`` of the writer's
connection or a cut of its TCP connection, a row lock held by another connection); a commit
whose acknowledgement is lost is simulated by committing and then raising the error the
client would have seen.
"""
from __future__ import annotations

import asyncio
import itertools
import os
import socket
import threading
import time
import urllib.request

import msgspec
import MySQLdb
import pytest
from servers import TiDB, frozen

from edgeim.backends import mysql as mysql_backend
from edgeim.backends.mysql import MysqlStore, parse_url
from edgeim.backends.protocols import (
    ConvId, CreateGroup, NewMessage, PutFriendRequest, PutMember, SearchTimeout, StoreDamaged, StoredMessage, StoreUnavailable,
    UserId, UsernameTaken,
)

_ids = itertools.count(10_000_000)


def message(conv: str, sender: int, to: int, cmid: str | None = None, *, msg_id: int | None = None,
            content: str | None = None) -> NewMessage:
    n = next(_ids)
    return NewMessage(conv=ConvId(conv), sender=UserId(sender), to=to, cmid=cmid or f"m{n}", type=1,
                      content=content if content is not None else f"hello {n}",
                      msg_id=msg_id if msg_id is not None else n, ts=n)


@pytest.fixture
def database(mysql_server):
    name = mysql_server.new_database()
    yield name
    mysql_server.drop_database(name)


@pytest.fixture
def url(mysql_server, database) -> str:
    return mysql_server.url(database)


@pytest.fixture
async def stores(url):
    """``await stores(n)``: n open MysqlStores on the same database (n nodes); all closed at the end."""
    made: list[MysqlStore] = []

    async def make(n: int = 1, **options) -> list[MysqlStore]:
        new = [MysqlStore(url, **options) for _ in range(n)]
        await asyncio.gather(*(s.open() for s in new))  # concurrent opens: one migrates
        made.extend(new)
        return new

    yield make
    for s in made:
        await s.close()


def root_on(server, database):
    conn = server.root()
    conn.select_db(database)
    return conn


def assert_gap_free(rows: list[StoredMessage], n: int) -> None:
    assert [m.seq for m in rows] == list(range(1, n + 1))
    assert len({m.id for m in rows}) == n and len({(m.sender, m.cmid) for m in rows}) == n


# -- several nodes on one database -----------------------------------------------------------

async def test_nodes_appending_to_one_conversation_get_gap_free_seqs(stores):
    nodes = await stores(3)
    convs = ["g1", "g2", "p1_2"]
    per_node = 200
    submitted: dict[int, list[NewMessage]] = {}

    async def node_writes(i: int, store: MysqlStore) -> list[StoredMessage]:
        # each node writes every conversation, in a different order, in several batches
        mine = [message(convs[(k + i) % 3], 100 + i, 1) for k in range(per_node)]
        submitted[i] = mine
        out: list[StoredMessage] = []
        for start in range(0, per_node, 40):
            out += await asyncio.gather(*(store.append(m) for m in mine[start:start + 40]))
        return out

    results = await asyncio.gather(*(node_writes(i, s) for i, s in enumerate(nodes)))
    everything = [m for r in results for m in r]
    assert not any(m.duplicate for m in everything)
    for conv in convs:
        acked = sorted((m for m in everything if m.conv == conv), key=lambda m: m.seq)
        assert_gap_free(acked, len(acked))
        for reader in nodes:  # every node reads what every node wrote
            assert await reader.messages_after(ConvId(conv), 0, 10_000) == acked
        # each node's writes keep its call order
        for i, r in enumerate(results):
            seqs = [m.seq for m in r if m.conv == conv]
            assert seqs == sorted(seqs)
    assert all(s.healthy for s in nodes)


async def test_nodes_retrying_the_same_cmid_store_it_once(stores):
    a, b = await stores(2)
    same = [message("p1_2", 1, 2, "retried", msg_id=n) for n in (1, 2, 3, 4)]
    results = await asyncio.gather(a.append(same[0]), b.append(same[1]), a.append(same[2]), b.append(same[3]))
    assert sum(not r.duplicate for r in results) == 1
    assert len({(r.id, r.seq) for r in results}) == 1
    assert len(await a.messages_after(ConvId("p1_2"), 0, 10)) == 1


async def test_a_join_on_one_node_is_ordered_with_messages_from_another(stores):
    a, b = await stores(2)
    made = await a.apply(CreateGroup("g", "", "", UserId(1), "open", 100, [], 1))
    conv = ConvId(f"g{made.group.id}")
    appends = [a.submit(message(conv, 1, made.group.id)) for _ in range(100)]
    joins = [b.apply(PutMember(made.group.id, UserId(u), "member", 0, 2)) for u in range(10, 20)]
    stored = await asyncio.gather(*appends)
    members = await asyncio.gather(*joins)
    assert_gap_free(sorted(stored, key=lambda m: m.seq), 100)
    # a join seq is a seq that existed when the member joined: 0..100, never beyond
    assert all(0 <= m.joined_seq <= 100 for m in members)
    loaded = await b.load_group(made.group.id)
    assert loaded.head.seq == 100 and len(loaded.members) == 11


# -- lost connections, lost commits --------------------------------------------------------------

async def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def cut_connection(server, conn_id: int) -> bool:
    """End connection ``conn_id`` (one of this process's) at any point of its work: ``KILL``
    on MariaDB; on TiDB the client's end of its TCP connection is shut down (a network cut),
    because a KILL that lands during COMMIT crashes the TiDB server this suite builds
    (TiDB issue #63956). False if the connection was already gone."""
    if not isinstance(server, TiDB):
        with server.root() as admin:
            try:
                admin.cursor().execute(f"KILL CONNECTION {conn_id}")
            except MySQLdb.OperationalError:  # already gone (1094: unknown thread id)
                return False
        return True
    with server.root() as admin:
        cur = admin.cursor()
        cur.execute("SELECT host FROM information_schema.processlist WHERE id = %s", (conn_id,))
        row = cur.fetchone()
    if row is None:
        return False
    client_port = int(row[0].rsplit(":", 1)[1])
    for fd in os.listdir("/proc/self/fd"):
        try:
            # a dup keeps the socket alive while it is checked: shutdown hits this one socket
            copy = os.dup(int(fd))
        except OSError:  # closed meanwhile
            continue
        try:
            sock = socket.socket(fileno=copy)
        except OSError:  # not a socket
            os.close(copy)
            continue
        with sock:
            if sock.family != socket.AF_INET:
                continue
            try:
                if sock.getsockname()[1] == client_port and sock.getpeername()[1] == server.port:
                    sock.shutdown(socket.SHUT_RDWR)
                    return True
            except OSError:
                pass
    return False


def insert_statements(server) -> int:
    """INSERT statements the server has run since it started (MariaDB's Com_insert; TiDB's
    statement counter on its status port)."""
    if not isinstance(server, TiDB):
        with server.root() as admin:
            cur = admin.cursor()
            cur.execute("SHOW GLOBAL STATUS LIKE 'Com_insert'")
            return int(cur.fetchone()[1])
    with urllib.request.urlopen(f"http://127.0.0.1:{server.status_port}/metrics", timeout=10) as response:
        lines = response.read().decode().splitlines()
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in lines
               if line.startswith("tidb_executor_statement_total{") and 'type="Insert"' in line)


def running_statement(server, conn_id: int) -> str | None:
    with server.root() as conn:
        cur = conn.cursor()
        cur.execute("SELECT info FROM information_schema.processlist WHERE id = %s", (conn_id,))
        row = cur.fetchone()
    return row[0] if row else None


async def test_a_connection_killed_mid_batch_is_retried_without_loss_or_duplicates(stores, mysql_server, database):
    (store,) = await stores(1)
    await store.append(message("p1_2", 1, 2))
    # Another connection holds a row the batch will need after its messages are inserted:
    # the writer stops there, with the batch's messages written but not committed.
    holder = root_on(mysql_server, database)
    try:
        holder.cursor().execute("START TRANSACTION")
        holder.cursor().execute("INSERT INTO friend_requests VALUES (2, 1, 'held', 1)")
        messages = [message("p1_2", 1, 2) for _ in range(50)]
        futures = [store.submit(m) for m in messages] + [store.apply(PutFriendRequest(UserId(1), UserId(2), "hi", 5))]
        futures += [store.submit(message("p1_3", 1, 3))]
        victim = store.writer_connection_id
        await wait_for(lambda: "friend_requests" in (running_statement(mysql_server, victim) or ""))
        with mysql_server.root() as admin:
            admin.cursor().execute(f"KILL CONNECTION {victim}")
        await wait_for(lambda: store.writer_connection_id not in (None, victim))
        assert not any(f.done() for f in futures)  # still waiting for the held row, on a new connection
    finally:
        holder.rollback()
        holder.close()
    results = await asyncio.gather(*futures)
    assert [r.seq for r in results[:50]] == list(range(2, 52))
    assert not any(r.duplicate for r in results[:50])
    assert results[51].seq == 1
    assert_gap_free(await store.messages_after(ConvId("p1_2"), 0, 100), 51)
    assert [r.message for r in (await store.load_user(UserId(2))).requests_in] == ["hi"]
    assert store.healthy


async def test_nodes_whose_connections_keep_being_killed_lose_and_repeat_nothing(stores, mysql_server):
    """Two nodes write one conversation while their writer connections are killed over and
    over, at whatever point each batch has reached (some kills land during COMMIT)."""
    a, b = await stores(2)
    done = False
    kills = 0

    async def killer() -> None:
        nonlocal kills
        for victim in itertools.cycle((a, b)):
            if done:
                return
            conn_id = victim.writer_connection_id
            if conn_id and cut_connection(mysql_server, conn_id):
                kills += 1
            await asyncio.sleep(0.02)

    async def node_writes(store: MysqlStore, sender: int) -> list[StoredMessage]:
        # at least 15 rounds, and on until the killer has cut five connections: on a quiet
        # machine 300 messages can be written between fewer kills (bounded: never hangs)
        out: list[StoredMessage] = []
        for rounds in itertools.count(1):
            out += await asyncio.gather(*(store.append(message("g7", sender, 7)) for _ in range(20)))
            if rounds >= 15 and kills >= 5 or rounds >= 300:
                return out
        raise AssertionError("unreachable")

    killing = asyncio.ensure_future(killer())
    try:
        results = await asyncio.gather(node_writes(a, 1), node_writes(b, 2))
    finally:
        done = True
        await killing
    acked = sorted((m for r in results for m in r), key=lambda m: m.seq)
    assert kills >= 5 and not any(m.duplicate for m in acked)
    assert_gap_free(acked, len(acked))
    assert await a.messages_after(ConvId("g7"), 0, 1000) == acked
    assert a.healthy and b.healthy


async def test_an_idle_connection_killed_is_replaced(stores, mysql_server):
    (store,) = await stores(1)
    await store.append(message("p1_2", 1, 2))
    await store.messages_after(ConvId("p1_2"), 0, 10)
    with mysql_server.root() as admin:
        cur = admin.cursor()
        cur.execute(f"KILL CONNECTION {store.writer_connection_id}")
        cur.execute("SELECT id FROM information_schema.processlist WHERE user = 'edgeim'")
        for (conn_id,) in cur.fetchall():  # the readers' connections too
            try:
                cur.execute(f"KILL CONNECTION {conn_id}")
            except MySQLdb.OperationalError as exc:
                if exc.args[0] != 1094:  # "unknown thread": it ended meanwhile (the killed writer, a closed one)
                    raise
    again = await store.append(message("p1_2", 1, 2))
    assert again.seq == 2
    assert [m.seq for m in await store.messages_after(ConvId("p1_2"), 0, 10)] == [1, 2]


async def test_a_commit_whose_acknowledgement_is_lost_is_not_applied_twice(stores, monkeypatch):
    (store,) = await stores(1)
    real_commit = MysqlStore._commit
    lost = []

    def commit_then_lose_the_ack(self, conn):
        real_commit(self, conn)
        if not lost:
            lost.append(True)
            raise MySQLdb.OperationalError(2013, "Lost connection to server during query")

    monkeypatch.setattr(MysqlStore, "_commit", commit_then_lose_the_ack)
    user_f = asyncio.ensure_future(store.create_user("carol", "h", "Carol"))
    group_f = store.apply(CreateGroup("g", "", "", UserId(1), "open", 10, [], 1))
    sent = [store.submit(message("p1_2", 1, 2)) for _ in range(20)]
    user, made, stored = await user_f, await group_f, await asyncio.gather(*sent)
    assert lost  # the first batch's commit did lose its acknowledgement
    assert [m.seq for m in stored] == list(range(1, 21)) and not any(m.duplicate for m in stored)
    assert await store.get_user_by_name("carol") == user
    assert (await store.load_group(made.group.id)).group == made.group
    assert_gap_free(await store.messages_after(ConvId("p1_2"), 0, 100), 20)
    with pytest.raises(UsernameTaken):  # exactly one carol
        await store.create_user("carol", "h", "Carol")


async def test_a_commit_that_fails_is_retried(stores, monkeypatch):
    (store,) = await stores(1)
    failures = []

    def fail_once(self, conn):
        if not failures:
            failures.append(True)
            conn.rollback()
            raise MySQLdb.OperationalError(2013, "Lost connection to server during query")
        conn.commit()

    monkeypatch.setattr(MysqlStore, "_commit", fail_once)
    user = await store.create_user("dave", "h", "Dave")
    stored = await asyncio.gather(*(store.append(message("p1_2", 1, 2)) for _ in range(5)))
    assert failures and await store.get_user(user.id) == user
    assert [m.seq for m in stored] == [1, 2, 3, 4, 5]


async def test_healthy_is_false_while_writes_fail_and_true_after(stores, monkeypatch):
    (store,) = await stores(1, retry_for=0.3)
    real = MysqlStore._attempt
    broken = True

    def attempt(self, *args):
        if broken:
            raise MySQLdb.OperationalError(2006, "MySQL server has gone away")
        return real(self, *args)

    monkeypatch.setattr(MysqlStore, "_attempt", attempt)
    with pytest.raises(StoreUnavailable, match="could not commit"):
        await store.append(message("p1_2", 1, 2))
    assert not store.healthy
    broken = False
    assert (await store.append(message("p1_2", 1, 2))).seq == 1  # the failed one took no seq
    assert store.healthy


async def test_a_message_that_breaks_a_constraint_fails_alone(stores):
    (store,) = await stores(1)
    await store.append(message("p1_2", 1, 2, msg_id=7))
    batch = await asyncio.gather(
        store.append(message("p1_2", 1, 2)),
        store.append(message("p1_2", 1, 2, msg_id=7)),  # id already taken
        store.append(message("p1_2", 1, 2)),
        store.append(message("p1_2", 1, 2, "x" * 200)),  # cmid longer than its column
        store.append(msgspec.structs.replace(message("p1_2", 1, 2), type=2**40)),  # out of range: DataError
        store.append(message("p1_2", 1, 2)),
        return_exceptions=True,
    )
    assert isinstance(batch[1], MySQLdb.IntegrityError)
    assert isinstance(batch[3], ValueError)
    assert isinstance(batch[4], MySQLdb.DataError)
    assert [batch[0].seq, batch[2].seq, batch[5].seq] == [2, 3, 4]
    assert_gap_free(await store.messages_after(ConvId("p1_2"), 0, 10), 4)


async def test_a_cmid_taken_in_another_conversation_by_another_node(stores, mysql_server, database):
    a, b = await stores(2)
    first = await a.append(message("p1_2", 1, 2, "c1"))
    again = await b.append(message("p1_3", 1, 3, "c1"))
    assert again.duplicate and again.id == first.id and again.conv == "p1_2"
    assert await b.messages_after(ConvId("p1_3"), 0, 10) == []


async def test_text_round_trips_exactly(stores):
    (store,) = await stores(1)
    content = "emoji 😀, CJK 你好, NUL-free but \t\n and 'quotes' \\ %s"
    stored = await store.append(message("p1_2", 1, 2, content=content))
    assert (await store.messages_after(ConvId("p1_2"), 0, 1))[0].content == content == stored.content
    # cmids are the client's bytes: a trailing space makes another cmid (a _bin collation would pad)
    a = await store.append(message("p1_2", 1, 2, "same"))
    b = await store.append(message("p1_2", 1, 2, "same "))
    c = await store.append(message("p1_2", 1, 2, "sáme 😀"))
    assert not b.duplicate and not c.duplicate and (a.seq, b.seq, c.seq) == (2, 3, 4)
    again = await store.append(message("p1_2", 1, 2, "same "))
    assert again.duplicate and again.id == b.id and again.cmid == "same "
    assert [m.cmid for m in await store.messages_after(ConvId("p1_2"), 1, 10)] == ["same", "same ", "sáme 😀"]
    # usernames compare as SQLite compares them: byte for byte
    alice = await store.create_user("alice", "h", "A")
    big = await store.create_user("Alice", "h", "A")
    assert alice.id != big.id and (await store.get_user_by_name("Alice")).id == big.id


# -- open, migrations ----------------------------------------------------------------------------

async def test_open_fails_clearly_without_a_server():
    from servers import free_port
    store = MysqlStore(f"mysql://edgeim:pw@127.0.0.1:{free_port()}/nothing", connect_timeout=2)
    with pytest.raises(StoreUnavailable, match=r"cannot connect to MySQL at 127\.0\.0\.1:\d+ .*running"):
        await store.open()


async def test_open_fails_clearly_on_a_bad_password_or_database(mysql_server, database):
    bad_pw = mysql_server.url(database).replace(mysql_server.password, "wrong")
    with pytest.raises(StoreUnavailable, match="refused the user or password"):
        await MysqlStore(bad_pw).open()
    with pytest.raises(StoreUnavailable, match="does not exist: create it"):
        await MysqlStore(mysql_server.url("t_no_such_db")).open()


async def test_migrations_run_once_and_a_newer_schema_is_refused(stores, mysql_server, database):
    await stores(3)  # three nodes open a fresh database at once
    with root_on(mysql_server, database) as conn:
        cur = conn.cursor()
        cur.execute("SELECT version FROM schema_version")
        assert cur.fetchall() == ((len(mysql_backend.MIGRATIONS),),)
        cur.execute("SHOW TABLES")
        tables = {r[0] for r in cur.fetchall()}
        assert mysql_backend._TABLES <= tables and "conversations" not in tables
        cur.execute("UPDATE schema_version SET version = version + 1")
    with pytest.raises(StoreDamaged, match="newer than this code"):
        await MysqlStore(mysql_server.url(database)).open()


async def test_a_missing_table_is_reported_as_damage(stores, mysql_server, database):
    await stores(1)
    with root_on(mysql_server, database) as conn:
        conn.cursor().execute("DROP TABLE convs")
    with pytest.raises(StoreDamaged, match="no table convs"):
        await MysqlStore(mysql_server.url(database)).open()


def test_parse_url():
    assert parse_url("mysql://u:p%40ss@db.example:3307/im") == {
        "host": "db.example", "port": 3307, "user": "u", "password": "p@ss", "database": "im"}
    assert parse_url("tidb://root@10.0.0.1/im")["port"] == 4000
    assert parse_url("mysql://u@localhost/im?unix_socket=/run/m.sock")["unix_socket"] == "/run/m.sock"
    for bad in ("postgres://u@h/db", "mysql://u@h/", "mysql://u@h"):
        with pytest.raises(ValueError):
            parse_url(bad)


async def test_a_batch_of_many_messages_is_few_statements(stores, mysql_server):
    """Group commit: a batch of 500 private messages costs a handful of statements, not 500."""
    (store,) = await stores(1)
    before = insert_statements(mysql_server)
    msgs = [msgspec.structs.replace(message(f"p1_{2 + i % 5}", 1, 2 + i % 5), members=(UserId(1), UserId(2 + i % 5)))
            for i in range(500)]
    stored = await asyncio.gather(*(store.append(m) for m in msgs))
    inserts = insert_statements(mysql_server) - before
    assert len(stored) == 500
    assert inserts < 20  # one batch: lock rows, messages, list rows, last seqs, stamp


async def test_a_frozen_server_fails_reads_and_writes_instead_of_hanging(stores, mysql_server):
    """SIGSTOP of the database server: connections stay up and nothing answers. A read
    raises StoreUnavailable, a write's batch fails to its caller with StoreUnavailable
    (nothing acked), each well inside the test's bound; after SIGCONT the store works."""
    (store,) = await stores(1, read_timeout=1, connect_timeout=1, retry_for=1.0)
    await store.append(message("p1_2", 1, 2, cmid="before"))
    await store.messages_after(ConvId("p1_2"), 0, 10)  # a reader connection exists
    async with frozen(mysql_server.proc.pid):
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(store.messages_after(ConvId("p1_2"), 0, 10), 30)
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(store.append(message("p1_2", 1, 2, cmid="during")), 30)
        assert not store.healthy
    again = await asyncio.wait_for(store.append(message("p1_2", 1, 2, cmid="during")), 30)  # the client's retry
    assert [m.cmid for m in await store.messages_after(ConvId("p1_2"), 0, 10)] == ["before", "during"]
    assert again.seq == 2 and not again.duplicate and store.healthy


async def test_a_transaction_left_idle_by_a_frozen_node_is_ended_and_the_other_writer_proceeds(
        stores, monkeypatch):
    """Node a's writer stops mid-transaction holding the lock of conversation g9 (as when
    its process is frozen). The server ends that transaction once it has been idle for
    ``idle_transaction_timeout``; node b, waiting for the lock, then commits. When a wakes
    its batch fails with StoreUnavailable (nothing acked) and its next write reconnects."""
    a, b = await stores(2, idle_transaction_timeout=2)
    frozen, wake = threading.Event(), threading.Event()
    real = mysql_backend._stored_pairs

    def freeze_once(cur, pairs):  # runs after the batch locked its conversations
        if not frozen.is_set():
            frozen.set()
            wake.wait(60)
        return real(cur, pairs)

    monkeypatch.setattr(mysql_backend, "_stored_pairs", freeze_once)
    try:
        stalled = a.submit(message("g9", 1, 9, cmid="from-a"))
        await wait_for(frozen.is_set)
        stored = await asyncio.wait_for(b.append(message("g9", 2, 9, cmid="from-b")), 30)
        assert stored.seq == 1  # a's transaction took no seq: it was rolled back
    finally:
        wake.set()
    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(stalled, 30)
    retried = await asyncio.wait_for(a.append(message("g9", 1, 9, cmid="from-a")), 30)
    assert retried.seq == 2 and not retried.duplicate
    assert [m.cmid for m in await b.messages_after(ConvId("g9"), 0, 10)] == ["from-b", "from-a"]


async def test_search_finds_and_is_stopped_by_the_server_past_its_time_bound(stores, monkeypatch):
    """The scan is bounded by the server's statement time limit (MariaDB max_statement_time,
    MySQL and TiDB MAX_EXECUTION_TIME): a statement that would run on (a BENCHMARK per row here,
    standing for a scan of too many messages) is stopped and the search raises SearchTimeout."""
    (store,) = await stores(1, search_timeout=0.5)
    await store.append(message("p1_2", 1, 2, content="the quarterly report"))
    found = await store.search([(ConvId("p1_2"), 0)], "REPORT", 0, 10)
    assert [m.content for m in found] == ["the quarterly report"]

    columns = mysql_backend._MESSAGE_COLUMNS
    monkeypatch.setattr(mysql_backend, "_SELECT_MESSAGES",
                        f"SELECT {columns} FROM (SELECT *, BENCHMARK(2000000000, MD5('x')) AS slow FROM messages HAVING slow = 0) AS messages")
    with pytest.raises(SearchTimeout):
        await store.search([(ConvId("p1_2"), 0)], "report", 0, 10)
    monkeypatch.undo()
    assert len(await store.search([(ConvId("p1_2"), 0)], "report", 0, 10)) == 1  # the reader goes on
