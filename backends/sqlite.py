"""The embedded ``Store``: one SQLite file in WAL mode, written by one thread with group commit.

Durability: ``append`` and ``create_user`` return only after the transaction that holds
their row has committed. With ``synchronous="FULL"`` (the default) SQLite fsyncs the WAL at
every commit, so a returned append survives a power loss; with ``"NORMAL"`` it survives a
crash of this process but the last commits may be lost on power loss or an OS crash
(SQLite fsyncs the WAL only at checkpoints). Many appends share one commit, so the cost of
the fsync is paid once per batch, not once per message.

Threads: one writer thread owns the writing connection and is the only writer of the
file (the per-conversation seq cache relies on it: open one ``SqliteStore`` per file).
Reads run on one reader thread with its own read-only connection; WAL lets them proceed
while the writer commits. Nothing here blocks the event loop.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import os
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any

from .protocols import (
    ConvId, Conversation, NewMessage, StoreClosed, StoredMessage, User, UserId, UsernameTaken,
)

__all__ = ["SqliteStore", "MIGRATIONS"]

# Ordered schema steps; step i brings ``PRAGMA user_version`` from i to i + 1. Append new
# steps at the end and never edit a released one: open() applies only the missing steps.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE users (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reuses a deleted id
        username      TEXT    NOT NULL UNIQUE,
        password_hash TEXT    NOT NULL,
        nickname      TEXT    NOT NULL,
        created_at    INTEGER NOT NULL
    );
    CREATE TABLE messages (
        id      INTEGER PRIMARY KEY,  -- proposed by the node (NewMessage.msg_id)
        conv    TEXT    NOT NULL,
        seq     INTEGER NOT NULL,
        sender  INTEGER NOT NULL,
        to_user INTEGER NOT NULL,
        cmid    TEXT    NOT NULL,
        type    INTEGER NOT NULL,
        content TEXT    NOT NULL,
        ts      INTEGER NOT NULL,
        UNIQUE (conv, seq),
        UNIQUE (sender, cmid)
    );
    -- One row per (participant, conversation): conversations(user) is one range of the
    -- primary key. No (user_id, last_ts) index: the list is read whole, so sorting a
    -- user's few hundred rows is cheaper than updating a second b-tree on every append.
    CREATE TABLE conversations (
        user_id  INTEGER NOT NULL,
        conv     TEXT    NOT NULL,
        peer     INTEGER NOT NULL,
        last_seq INTEGER NOT NULL,
        last_ts  INTEGER NOT NULL,
        PRIMARY KEY (user_id, conv)
    ) WITHOUT ROWID;
    """,
)

_BUSY_TIMEOUT_MS = 5000  # how long a statement waits for a lock held by another connection
_SEQ_CACHE_MAX = 100_000  # conversations whose last seq the writer keeps in memory
_NO_BOUND = 2**63 - 1  # messages_before(before_seq=0): every seq is below this

_MESSAGE_COLUMNS = "id, conv, seq, sender, to_user, cmid, type, content, ts"
_INSERT_MESSAGE = (
    f"INSERT INTO messages ({_MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (sender, cmid) DO NOTHING"
)
_UPSERT_CONVERSATION = (
    "INSERT INTO conversations (user_id, conv, peer, last_seq, last_ts) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (user_id, conv) DO UPDATE SET"
    " last_seq = excluded.last_seq, last_ts = max(last_ts, excluded.last_ts)"
)


@dataclass(slots=True)
class _Append:
    message: NewMessage
    future: asyncio.Future[StoredMessage]
    loop: asyncio.AbstractEventLoop


@dataclass(slots=True)
class _CreateUser:
    username: str
    password_hash: str
    nickname: str
    created_at: int
    future: asyncio.Future[User]
    loop: asyncio.AbstractEventLoop


_Op = _Append | _CreateUser
_Outcome = tuple[asyncio.Future[Any], Any, BaseException | None]  # (future, result, error)
_STOP = object()  # queued by close(): the writer commits what precedes it, then exits


def _resolve(outcomes: list[_Outcome]) -> None:
    """Runs on the event loop: settle the futures of one batch (skipping cancelled ones)."""
    for future, result, error in outcomes:
        if future.done():  # the caller was cancelled; its row may still be committed
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


class SqliteStore:
    """``Store`` over one SQLite file. See the module docstring for what is durable when."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "FULL",
        batch_max: int = 512,
    ) -> None:
        synchronous = synchronous.upper()
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be 'FULL' or 'NORMAL', not {synchronous!r}")
        if batch_max < 1:
            raise ValueError("batch_max must be at least 1")
        self.path = os.fspath(path)
        self.synchronous = synchronous
        self.batch_max = batch_max
        # lists of ops (or _STOP): the loop hands over everything submitted in one loop
        # iteration at once, so the writer thread is woken once per iteration, not per op
        self._queue: queue.SimpleQueue[list[_Op] | object] = queue.SimpleQueue()
        self._handover: list[_Op] = []
        self._writer: threading.Thread | None = None
        self._writer_done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._reader: concurrent.futures.ThreadPoolExecutor | None = None
        self._reader_local = threading.local()
        self._accepting = False
        self._closed = False
        # Owned by the writer thread: conv -> last seq assigned (committed, or pending in
        # the batch being written; a failed batch clears it).
        self._last_seq: dict[str, int] = {}

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        """Create or migrate the schema, then start the writer and the reader threads."""
        if self._writer is not None or self._closed:
            raise RuntimeError("SqliteStore.open() may be called once")
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        # daemon: a forgotten close() must not hang interpreter exit; what it drops was
        # never acknowledged, since acknowledgements follow commits.
        self._writer = threading.Thread(
            target=self._writer_main, args=(ready,), name=f"sqlite-writer:{self.path}", daemon=True
        )
        self._writer.start()
        try:
            await asyncio.wrap_future(ready)
        except BaseException:  # failed, or cancelled while migrating: stop the writer
            self._queue.put(_STOP)
            await asyncio.wrap_future(self._writer_done)
            self._writer.join()
            self._closed = True
            raise
        # Created after the migrations so the reader never sees a half-built schema; one
        # thread, so its connection never crosses threads (check_same_thread stays on).
        self._reader = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="sqlite-reader", initializer=self._open_reader
        )
        self._accepting = True

    async def close(self) -> None:
        """Stop accepting work, commit every append already queued, then release everything.

        Appends queued before this call are committed and their callers get their rows;
        appends made after it raise ``StoreClosed``. Idempotent.
        """
        if self._closed:
            return
        self._closed = True
        self._accepting = False
        if self._writer is not None:
            self._hand_over()
            self._queue.put(_STOP)  # FIFO: everything queued before it is committed first
            await asyncio.wrap_future(self._writer_done)
            self._writer.join()
        if self._reader is not None:
            # Queued after any read in flight; closes the connection on its own thread.
            await asyncio.get_running_loop().run_in_executor(self._reader, self._close_reader)
            self._reader.shutdown(wait=True)

    # -- writes (through the writer thread) --------------------------------------------

    async def create_user(self, username: str, password_hash: str, nickname: str) -> User:
        """Durable when it returns. Raises ``UsernameTaken``."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[User] = loop.create_future()
        self._enqueue(_CreateUser(
            username, password_hash, nickname, time.time_ns() // 1_000_000, future, loop
        ))
        return await future

    def submit(self, message: NewMessage) -> asyncio.Future[StoredMessage]:
        """Queued when it returns; the future resolves once committed (per ``synchronous``)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[StoredMessage] = loop.create_future()
        self._enqueue(_Append(message, future, loop))
        return future

    async def append(self, message: NewMessage) -> StoredMessage:
        """Durable when it returns (per ``synchronous``). If the caller is cancelled, the
        message may still be stored: retrying with the same cmid is safe."""
        return await self.submit(message)

    def _enqueue(self, op: _Op) -> None:
        if not self._accepting:
            raise StoreClosed(f"SqliteStore({self.path!r}) is {'closed' if self._closed else 'not open'}")
        self._handover.append(op)
        if len(self._handover) == 1:
            op.loop.call_soon(self._hand_over)

    def _hand_over(self) -> None:
        if self._handover:
            ops, self._handover = self._handover, []
            self._queue.put(ops)

    # -- reads (on the reader thread) --------------------------------------------------

    async def get_user(self, user_id: UserId) -> User | None:
        rows = await self._read(
            "SELECT id, username, password_hash, nickname, created_at FROM users WHERE id = ?",
            (user_id,),
        )
        return User(*rows[0]) if rows else None

    async def get_user_by_name(self, username: str) -> User | None:
        rows = await self._read(
            "SELECT id, username, password_hash, nickname, created_at FROM users WHERE username = ?",
            (username,),
        )
        return User(*rows[0]) if rows else None

    async def messages_after(self, conv: ConvId, after_seq: int, limit: int) -> list[StoredMessage]:
        if limit <= 0:  # SQLite reads LIMIT -1 as "no limit"
            return []
        rows = await self._read(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conv = ? AND seq > ?"
            " ORDER BY seq LIMIT ?",
            (conv, after_seq, limit),
        )
        return [StoredMessage(*row) for row in rows]

    async def messages_before(self, conv: ConvId, before_seq: int, limit: int) -> list[StoredMessage]:
        if limit <= 0:
            return []
        rows = await self._read(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conv = ? AND seq < ?"
            " ORDER BY seq DESC LIMIT ?",
            (conv, before_seq if before_seq > 0 else _NO_BOUND, limit),
        )
        return [StoredMessage(*row) for row in reversed(rows)]

    async def conversations(self, user_id: UserId) -> list[Conversation]:
        rows = await self._read(
            "SELECT conv, peer, last_seq, last_ts FROM conversations WHERE user_id = ?"
            " ORDER BY last_ts DESC, conv",
            (user_id,),
        )
        return [Conversation(*row) for row in rows]

    async def _read(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        if not self._accepting or self._reader is None:
            raise StoreClosed(f"SqliteStore({self.path!r}) is {'closed' if self._closed else 'not open'}")
        return await asyncio.get_running_loop().run_in_executor(self._reader, self._fetchall, sql, params)

    def _fetchall(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        # fetchall() ends the statement, so no read transaction stays open to pin the WAL.
        return self._reader_local.conn.execute(sql, params).fetchall()

    def _open_reader(self) -> None:
        conn = self._connect()
        conn.execute("PRAGMA query_only = ON")
        self._reader_local.conn = conn

    def _close_reader(self) -> None:
        self._reader_local.conn.close()

    # -- the writer thread -------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: no implicit BEGINs; transactions are spelled out below.
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        return conn

    def _writer_main(self, ready: concurrent.futures.Future[None]) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:
            ready.set_exception(exc)
            self._writer_done.set_result(None)
            return
        try:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute(f"PRAGMA synchronous = {self.synchronous}")
                _migrate(conn)
            except BaseException as exc:
                ready.set_exception(exc)
                return
            ready.set_result(None)
            self._writer_loop(conn)
        finally:
            conn.close()
            self._writer_done.set_result(None)

    def _writer_loop(self, conn: sqlite3.Connection) -> None:
        get, get_nowait = self._queue.get, self._queue.get_nowait
        stopping = False
        while not stopping:
            ops: list[_Op] = []
            item = get()  # block for the first hand-over, then take whatever else is waiting
            while True:
                if item is _STOP:
                    stopping = True
                    break
                ops.extend(item)  # type: ignore[arg-type]
                if len(ops) >= self.batch_max:
                    break
                try:
                    item = get_nowait()
                except queue.Empty:
                    break
            for start in range(0, len(ops), self.batch_max):
                self._commit_batch(conn, ops[start:start + self.batch_max])

    def _commit_batch(self, conn: sqlite3.Connection, batch: list[_Op]) -> None:
        """One transaction for the whole batch; every future is settled whatever happens."""
        outcomes: list[_Outcome] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                # (user, conv) -> its newest row in this batch: one conversations upsert per pair.
                touched: dict[tuple[int, str], tuple[int, str, int, int, int]] = {}
                for op in batch:
                    try:
                        if isinstance(op, _Append):
                            result: Any = self._insert_message(conn, op.message, touched)
                        else:
                            result = _insert_user(conn, op)
                    except Exception as exc:
                        if not _fails_one_op(exc):
                            raise
                        if isinstance(op, _Append):  # a stale seq is one way to get here
                            self._last_seq.pop(op.message.conv, None)
                        outcomes.append((op.future, None, exc))
                    else:
                        outcomes.append((op.future, result, None))
                if touched:
                    conn.executemany(_UPSERT_CONVERSATION, touched.values())
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except Exception as exc:
            # Seqs handed out in this batch were rolled back: forget them, reload lazily.
            self._last_seq.clear()
            outcomes = [(op.future, None, exc) for op in batch]
        self._settle(batch, outcomes)

    def _insert_message(
        self,
        conn: sqlite3.Connection,
        m: NewMessage,
        touched: dict[tuple[int, str], tuple[int, str, int, int, int]],
    ) -> StoredMessage:
        last = self._last_seq.get(m.conv)
        if last is None:
            last = conn.execute(
                "SELECT coalesce(max(seq), 0) FROM messages WHERE conv = ?", (m.conv,)
            ).fetchone()[0]
        seq = last + 1
        cur = conn.execute(
            _INSERT_MESSAGE, (m.msg_id, m.conv, seq, m.sender, m.to, m.cmid, m.type, m.content, m.ts)
        )
        if cur.rowcount == 0:  # (sender, cmid) already stored, maybe earlier in this batch
            row = conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE sender = ? AND cmid = ?",
                (m.sender, m.cmid),
            ).fetchone()
            return StoredMessage(*row, duplicate=True)
        cache = self._last_seq
        if m.conv not in cache and len(cache) >= _SEQ_CACHE_MAX:
            del cache[next(iter(cache))]  # drop the oldest entry; it reloads on next use
        cache[m.conv] = seq
        touched[(m.sender, m.conv)] = (m.sender, m.conv, m.to, seq, m.ts)
        touched[(m.to, m.conv)] = (m.to, m.conv, m.sender, seq, m.ts)
        return StoredMessage(m.msg_id, m.conv, seq, m.sender, m.to, m.cmid, m.type, m.content, m.ts)

    @staticmethod
    def _settle(
        batch: list[_Op], outcomes: list[_Outcome]
    ) -> None:
        # One wake-up per loop per batch instead of one per message.
        by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
        for op, outcome in zip(batch, outcomes):
            by_loop.setdefault(op.loop, []).append(outcome)
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, items)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass


def _fails_one_op(exc: Exception) -> bool:
    """True for errors confined to one statement (a constraint, a bad parameter): SQLite
    undid that statement only, so the rest of the batch can still commit. Anything else
    (I/O, lock timeout, corruption) fails the whole batch."""
    if isinstance(exc, (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.ProgrammingError,
                        sqlite3.InterfaceError)):
        return True
    return not isinstance(exc, sqlite3.Error)


def _insert_user(conn: sqlite3.Connection, op: _CreateUser) -> User:
    try:
        cur = conn.execute(
            "INSERT INTO users (username, password_hash, nickname, created_at) VALUES (?, ?, ?, ?)",
            (op.username, op.password_hash, op.nickname, op.created_at),
        )
    except sqlite3.IntegrityError as exc:
        if exc.sqlite_errorcode == sqlite3.SQLITE_CONSTRAINT_UNIQUE:  # username is the only one
            raise UsernameTaken(op.username) from None
        raise
    return User(UserId(cur.lastrowid or 0), op.username, op.password_hash, op.nickname, op.created_at)


def _migrate(conn: sqlite3.Connection) -> None:
    """Apply the missing ``MIGRATIONS`` steps, each in its own transaction with its version
    bump, so a crash between steps leaves a consistent, resumable schema."""
    for target in range(1, len(MIGRATIONS) + 1):
        conn.execute("BEGIN IMMEDIATE")  # then read the version: another opener may have won
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise RuntimeError(
                    f"database schema version {version} is newer than this code ({len(MIGRATIONS)})"
                )
            if version >= target:
                conn.execute("COMMIT")
                continue
            for statement in _split_sql(MIGRATIONS[target - 1]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {target}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def _split_sql(script: str) -> list[str]:
    """Split a migration script into statements (executescript would commit on its own)."""
    statements, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            if pending.strip():
                statements.append(pending)
            pending = ""
    if pending.strip():
        statements.append(pending)
    return statements

