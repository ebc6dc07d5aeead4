"""The cluster ``Store``: MySQL-protocol servers (MariaDB, MySQL, TiDB) through mysqlclient.

Several nodes, each with its own ``MysqlStore``, share one database. What makes that safe:

- **Seqs come from the database, inside the transaction.** Every conversation has a row
  ``convs(conv, last_seq)``. A batch first locks the rows of every conversation it writes,
  in sorted order (``INSERT ... ON DUPLICATE KEY UPDATE`` takes an exclusive row lock
  whether the row is new or not), reads their ``last_seq``, numbers its messages from
  there, and writes the new ``last_seq`` back before it commits. A second node writing the
  same conversation waits on that row lock until the first commits, then reads the new
  value: seqs stay 1, 2, 3, ... without gap or duplicate across any number of nodes.
  Nothing is cached between transactions. Sorted locking keeps two batches from
  deadlocking on their conversations; any other deadlock is retried (below).
- **Idempotence on (sender, cmid)** is a UNIQUE key. A batch looks its pairs up after it
  holds its conversations' locks, so a concurrent writer of the same conversation has
  committed (and is seen) by then; a pair inserted concurrently into *another*
  conversation makes the multi-row INSERT fail, and the batch is redone row by row.
- **A batch is retried whole** on a deadlock, a lock wait timeout or a lost connection
  (reconnecting first), for up to ``retry_for`` seconds, then its callers get
  ``StoreUnavailable``. Each transaction also stamps this writer's row in
  ``store_writers`` with the batch number; when the COMMIT itself fails, the writer waits
  for that row's lock on a new connection and reads the stamp to learn whether the commit
  happened, so a committed batch is never applied twice (which would create a user or a
  group twice) and an uncommitted one is never reported durable.

Durable means committed by the server: MariaDB/MySQL flush InnoDB's redo log at every
commit with the default ``innodb_flush_log_at_trx_commit=1``; TiDB commits through Raft.

SQL that TiDB also runs: no stored procedures, triggers, foreign keys or events; ids from
AUTO_INCREMENT are used as unique values only, never for order; explicit transactions on
an autocommit connection; READ COMMITTED for the writer (TiDB runs it in pessimistic
mode), REPEATABLE READ (a snapshot) for multi-statement reads, started without READ ONLY
on TiDB (which refuses it); SAVEPOINT and GET_LOCK (TiDB 6.2 or later). Tested against
MariaDB 10.11 (`make test`) and TiDB 8.4-era master on its unistore store (`make test-tidb`).

Threads: one writer thread owns the writing connection and does group commit (everything
submitted in one loop iteration is handed over at once; one transaction per batch, with
one multi-row INSERT per run of messages). Reads run on a small pool of reader threads,
one connection each. Nothing here blocks the event loop.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
import urllib.parse
import uuid
from typing import Any, Callable, Sequence

import msgspec

from ..core_ext import content
from .protocols import (
    ConvId, CreateGroup, DissolveGroup, DropFriendRequest, DropFriendship, DropInvitation, DropJoinRequest,
    DropMember, EditMessage, Friend, FriendRequest, GroupId, GroupRecord, GroupRecords, Invitation, InvitationsFull,
    JoinRequest, Member, NewMessage, PutFriendRequest, PutInvitations, PutFriendship, PutGroup, PutJoinRequest, PutMember,
    Reacted, RecallMessage, RevokeToken, SetReaction, ShareFiles, reaction_summary,
    SearchTimeout, SetBlock, SetDisabled, SetPasswordHash, SetRemark, SetSettings, SetUserConv, StoreClosed, StoreDamaged, StoredMessage, StoreUnavailable, User,
    DeleteAccount, SetCredentials, SetProfile,
    HideMessages, PINS_FULL, Pin, PinMessage, UnpinMessage, ViewHead,
    UserConv, UserId, UsernameTaken, UserRecords,
)
from .writes import Append, Apply, CreateUser, Op, Outcome, WriteQueue, settle

try:
    import MySQLdb
except ImportError:  # pragma: no cover - reported by MysqlStore() with what to install
    MySQLdb = None  # type: ignore[assignment]

__all__ = ["MysqlStore", "MIGRATIONS", "parse_url"]

_TABLE = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"

# Ordered schema steps; step i brings schema_version from i to i + 1. Steps 1-3 are
# SqliteStore's MIGRATIONS 1-3 in MySQL dialect (binary collation: keys compare as SQLite
# compares them, except that a _bin collation ignores trailing spaces, so the one key a
# client chooses freely, cmid, is VARBINARY); step 4 adds what several writers need. MySQL commits each DDL statement
# on its own, so a step cannot be one transaction: every statement is written to be
# harmless when run again, and a step interrupted midway is simply rerun. Append new steps
# at the end and never edit a released one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        f"""CREATE TABLE IF NOT EXISTS users (
            id            BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
            username      VARCHAR(128) NOT NULL,
            password_hash TEXT         NOT NULL,
            nickname      TEXT         NOT NULL,
            created_at    BIGINT       NOT NULL,
            UNIQUE KEY users_username (username)
        ) {_TABLE}""",
        f"""CREATE TABLE IF NOT EXISTS messages (
            id      BIGINT       NOT NULL PRIMARY KEY,  -- proposed by the node (NewMessage.msg_id)
            conv    VARCHAR(128) NOT NULL,
            seq     BIGINT       NOT NULL,
            sender  BIGINT       NOT NULL,
            to_user BIGINT       NOT NULL,
            cmid    VARBINARY(512) NOT NULL,  -- the client's bytes: no collation, no trailing-space padding
            type    INT          NOT NULL,
            content MEDIUMTEXT   NOT NULL,
            ts      BIGINT       NOT NULL,
            UNIQUE KEY messages_conv_seq (conv, seq),
            UNIQUE KEY messages_sender_cmid (sender, cmid)
        ) {_TABLE}""",
        f"""CREATE TABLE IF NOT EXISTS conversations (
            user_id  BIGINT       NOT NULL,
            conv     VARCHAR(128) NOT NULL,
            peer     BIGINT       NOT NULL,
            last_seq BIGINT       NOT NULL,
            last_ts  BIGINT       NOT NULL,
            PRIMARY KEY (user_id, conv)
        ) {_TABLE}""",
    ),
    (
        f"""CREATE TABLE IF NOT EXISTS user_convs (
            user_id    BIGINT       NOT NULL,
            conv       VARCHAR(128) NOT NULL,
            read_seq   BIGINT       NOT NULL DEFAULT 0,
            pinned     TINYINT      NOT NULL DEFAULT 0,
            muted      TINYINT      NOT NULL DEFAULT 0,
            hidden_seq BIGINT       NOT NULL DEFAULT 0,
            joined_seq BIGINT       NOT NULL DEFAULT 0,
            PRIMARY KEY (user_id, conv),
            KEY user_convs_by_conv (conv, read_seq)
        ) {_TABLE}""",
        # recreated empty if a previous run of this step already dropped it
        f"""CREATE TABLE IF NOT EXISTS conversations (
            user_id BIGINT NOT NULL, conv VARCHAR(128) NOT NULL, peer BIGINT NOT NULL,
            last_seq BIGINT NOT NULL, last_ts BIGINT NOT NULL, PRIMARY KEY (user_id, conv)
        ) {_TABLE}""",
        "INSERT IGNORE INTO user_convs (user_id, conv) SELECT user_id, conv FROM conversations",
        "DROP TABLE IF EXISTS conversations",
        f"""CREATE TABLE IF NOT EXISTS friends (
            user_id   BIGINT       NOT NULL,
            friend_id BIGINT       NOT NULL,
            remark    VARCHAR(255) NOT NULL DEFAULT '',
            since     BIGINT       NOT NULL,
            PRIMARY KEY (user_id, friend_id)
        ) {_TABLE}""",
        f"""CREATE TABLE IF NOT EXISTS friend_requests (
            receiver BIGINT NOT NULL,
            sender   BIGINT NOT NULL,
            message  TEXT   NOT NULL,
            ts       BIGINT NOT NULL,
            PRIMARY KEY (receiver, sender),
            KEY friend_requests_by_sender (sender)
        ) {_TABLE}""",
        f"""CREATE TABLE IF NOT EXISTS blocks (
            user_id    BIGINT NOT NULL,
            blocked_id BIGINT NOT NULL,
            PRIMARY KEY (user_id, blocked_id),
            KEY blocks_by_blocked (blocked_id)
        ) {_TABLE}""",
        f"""CREATE TABLE IF NOT EXISTS chat_groups (
            id          BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
            name        TEXT        NOT NULL,
            avatar      TEXT        NOT NULL,
            notice      TEXT        NOT NULL,
            owner       BIGINT      NOT NULL,
            join_mode   VARCHAR(32) NOT NULL,
            mute_all    TINYINT     NOT NULL,
            max_members BIGINT      NOT NULL,
            created_at  BIGINT      NOT NULL
        ) {_TABLE}""",
        f"""CREATE TABLE IF NOT EXISTS group_members (
            group_id    BIGINT      NOT NULL,
            user_id     BIGINT      NOT NULL,
            role        VARCHAR(32) NOT NULL,
            muted_until BIGINT      NOT NULL,
            joined_at   BIGINT      NOT NULL,
            joined_seq  BIGINT      NOT NULL,
            PRIMARY KEY (group_id, user_id),
            KEY group_members_by_user (user_id)
        ) {_TABLE}""",
        f"""CREATE TABLE IF NOT EXISTS group_requests (
            group_id BIGINT NOT NULL,
            user_id  BIGINT NOT NULL,
            message  TEXT   NOT NULL,
            ts       BIGINT NOT NULL,
            PRIMARY KEY (group_id, user_id)
        ) {_TABLE}""",
    ),
    (
        f"""CREATE TABLE IF NOT EXISTS revoked_tokens (
            token_id   VARCHAR(128) NOT NULL PRIMARY KEY,
            expires_at BIGINT       NOT NULL,
            KEY revoked_tokens_by_expiry (expires_at)
        ) {_TABLE}""",
    ),
    (
        # the seq counter of each conversation: the row every writer of it locks
        f"""CREATE TABLE IF NOT EXISTS convs (
            conv     VARCHAR(128) NOT NULL PRIMARY KEY,
            last_seq BIGINT       NOT NULL
        ) {_TABLE}""",
        "INSERT IGNORE INTO convs (conv, last_seq) SELECT conv, max(seq) FROM messages GROUP BY conv",
        # one row per open store, stamped by each of its transactions (see the module doc)
        f"""CREATE TABLE IF NOT EXISTS store_writers (
            writer     VARCHAR(64) NOT NULL PRIMARY KEY,
            last_batch BIGINT      NOT NULL,
            ts         BIGINT      NOT NULL
        ) {_TABLE}""",
    ),
    (
        # recall, mentions (SqliteStore's step 4; its full-text index has no twin here: a
        # search scans the reader's conversations). ADD COLUMN IF NOT EXISTS: MariaDB and TiDB
        "ALTER TABLE messages ADD COLUMN IF NOT EXISTS mentions VARCHAR(2200) NOT NULL DEFAULT ''",
        "ALTER TABLE messages ADD COLUMN IF NOT EXISTS recalled_by BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE messages ADD COLUMN IF NOT EXISTS recalled_at BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE user_convs ADD COLUMN IF NOT EXISTS mention_seq BIGINT NOT NULL DEFAULT 0",
    ),
    (
        # each user's own settings (rich messaging: invisible); no row: the defaults
        f"""CREATE TABLE IF NOT EXISTS user_settings (
            user_id   BIGINT  NOT NULL PRIMARY KEY,
            invisible TINYINT NOT NULL DEFAULT 0
        ) {_TABLE}""",
    ),
    (
        # operations: an operator's disabled accounts (im user disable), whose logins are refused
        "ALTER TABLE users ADD COLUMN IF NOT EXISTS disabled TINYINT NOT NULL DEFAULT 0",
    ),
    (
        # who may add a user to a group ('' never chosen: the node's default), and the
        # invitations of the adds that setting did not allow (SqliteStore's step 8)
        "ALTER TABLE user_settings ADD COLUMN IF NOT EXISTS group_add VARCHAR(16) NOT NULL DEFAULT ''",
        f"""CREATE TABLE IF NOT EXISTS group_invitations (
            group_id   BIGINT NOT NULL,
            invitee    BIGINT NOT NULL,
            inviter    BIGINT NOT NULL,
            ts         BIGINT NOT NULL,
            expires_at BIGINT NOT NULL,
            PRIMARY KEY (group_id, invitee),
            KEY group_invitations_by_invitee (invitee),
            KEY group_invitations_by_inviter (inviter)
        ) {_TABLE}""",
    ),
    (
        # replies and edits (SqliteStore's step of the same name): the message a reply
        # quotes, when a message was last edited (an edit moves the message's change
        # revision, messages.rev, of the step with reactions)
        "ALTER TABLE messages ADD COLUMN IF NOT EXISTS reply_to BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE messages ADD COLUMN IF NOT EXISTS edited_at BIGINT NOT NULL DEFAULT 0",
    ),
    (
        # accounts and profiles (SqliteStore's step of the same name): an avatar and a bio,
        # the credential epoch every token carries, deleted accounts (the row stays)
        "ALTER TABLE users ADD COLUMN IF NOT EXISTS avatar VARCHAR(1024) NOT NULL DEFAULT ''",
        "ALTER TABLE users ADD COLUMN IF NOT EXISTS bio VARCHAR(1024) NOT NULL DEFAULT ''",
        "ALTER TABLE users ADD COLUMN IF NOT EXISTS epoch BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE users ADD COLUMN IF NOT EXISTS deleted_at BIGINT NOT NULL DEFAULT 0",
    ),
    (
        # reactions and forwards (SqliteStore's step with them): the reaction rows, the
        # message's summary (TEXT: NULL for none, TiDB takes no TEXT default) and change
        # revision (an edit, a reaction, a recall), the conversation's last change revision
        # (on its locked convs row, so changes of several writers get revisions in commit
        # order), the forward mark, and the conversations a file was forwarded to
        "ALTER TABLE messages ADD COLUMN IF NOT EXISTS fwd BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE messages ADD COLUMN IF NOT EXISTS reactions TEXT NULL",
        "ALTER TABLE messages ADD COLUMN IF NOT EXISTS rev BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE convs ADD COLUMN IF NOT EXISTS last_rev BIGINT NOT NULL DEFAULT 0",
        "CREATE INDEX IF NOT EXISTS messages_by_rev ON messages (conv, rev)",
        f"""CREATE TABLE IF NOT EXISTS reactions (
            conv    VARCHAR(128) NOT NULL,
            seq     BIGINT       NOT NULL,
            user_id BIGINT       NOT NULL,
            emoji   VARCHAR(64)  NOT NULL,
            ts      BIGINT       NOT NULL,
            PRIMARY KEY (conv, seq, user_id, emoji)
        ) {_TABLE}""",
        f"""CREATE TABLE IF NOT EXISTS file_convs (
            file_key VARCHAR(512) NOT NULL,
            conv     VARCHAR(128) NOT NULL,
            PRIMARY KEY (file_key, conv)
        ) {_TABLE}""",
    ),
    (
        # per-user views: messages a user deleted for themselves (DELETE_FOR_ME), the seq up
        # to which they cleared a conversation (CLEAR_HISTORY); message pins (SqliteStore's twin)
        "ALTER TABLE user_convs ADD COLUMN IF NOT EXISTS cleared_seq BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE user_convs ADD COLUMN IF NOT EXISTS view_ver BIGINT NOT NULL DEFAULT 0",
        f"""CREATE TABLE IF NOT EXISTS hidden_messages (
            user_id BIGINT       NOT NULL,
            conv    VARCHAR(128) NOT NULL,
            seq     BIGINT       NOT NULL,
            at      BIGINT       NOT NULL,
            PRIMARY KEY (user_id, conv, seq)
        ) {_TABLE}""",
        f"""CREATE TABLE IF NOT EXISTS message_pins (
            conv      VARCHAR(128) NOT NULL,
            seq       BIGINT       NOT NULL,
            pinned_by BIGINT       NOT NULL,
            pinned_at BIGINT       NOT NULL,
            PRIMARY KEY (conv, seq)
        ) {_TABLE}""",
    ),
)

_TABLES = frozenset({
    "users", "messages", "user_convs", "friends", "friend_requests", "blocks", "chat_groups", "group_members",
    "group_requests", "revoked_tokens", "convs", "store_writers", "user_settings", "group_invitations",
    "reactions", "file_convs", "hidden_messages", "message_pins",
})

# MySQL's default mode may differ per server; pin the strict one: a bad value is an error
# (that fails its write alone), never a silent truncation.
_SQL_MODE = "STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"
_NO_BOUND = 2**63 - 1  # messages_before(before_seq=0): every seq is below this
_KEY_CHARS = 128  # VARCHAR(128): conv, cmid, username, token ids
_IN_CHUNK = 500  # tuples per IN (...) list
_WRITER_ROWS_KEPT_MS = 7 * 24 * 3600 * 1000  # store_writers rows of stores gone this long are deleted

_MESSAGE_COLUMNS = ("id, conv, seq, sender, to_user, cmid, type, content, ts, mentions, recalled_by, recalled_at,"
                    " reply_to, edited_at, fwd, reactions, rev")
_SELECT_MESSAGES = f"SELECT {_MESSAGE_COLUMNS} FROM messages"
# only %s placeholders inside VALUES (...): mysqlclient then sends executemany as ONE
# multi-row statement (it splits at 64 KiB)
_INSERT_MESSAGES = ("INSERT INTO messages (id, conv, seq, sender, to_user, cmid, type, content, ts, mentions)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)")
_ENTER_CONVS = ("INSERT INTO user_convs (user_id, conv) VALUES (%s, %s)"
                " ON DUPLICATE KEY UPDATE user_id = user_id")
_LOCK_CONVS = "INSERT INTO convs (conv, last_seq) VALUES (%s, %s) ON DUPLICATE KEY UPDATE last_seq = last_seq"
_SET_LAST_SEQS = ("INSERT INTO convs (conv, last_seq) VALUES (%s, %s)"
                  " ON DUPLICATE KEY UPDATE last_seq = VALUES(last_seq)")
_STAMP = ("INSERT INTO store_writers (writer, last_batch, ts) VALUES (%s, %s, %s)"
          " ON DUPLICATE KEY UPDATE last_batch = VALUES(last_batch), ts = VALUES(ts)")

_ER_DUP_ENTRY = 1062  # MySQL's "Duplicate entry ... for key ..."
_ER_UNKNOWN_SYSTEM_VARIABLE = 1193


class _RowByRow(Exception):
    """A multi-row INSERT broke a constraint: redo the batch one message at a time."""


class _CommitUnknown(Exception):
    """COMMIT raised: the transaction may or may not have committed."""

    def __init__(self, outcomes: list[Outcome]) -> None:
        super().__init__("commit outcome unknown")
        self.outcomes = outcomes


def parse_url(url: str) -> dict[str, Any]:
    """``mysql://user:password@host:port/database`` (also ``mariadb://`` and ``tidb://``)
    as mysqlclient ``connect()`` arguments. ``?unix_socket=PATH`` connects through a socket."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("mysql", "mariadb", "tidb"):
        raise ValueError(f"not a MySQL URL (mysql://user:password@host:port/database): {url!r}")
    database = urllib.parse.unquote(parts.path.lstrip("/"))
    if not database or "/" in database:
        raise ValueError(f"the URL names no database (mysql://user:password@host:port/DATABASE): {url!r}")
    args: dict[str, Any] = {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or (4000 if parts.scheme == "tidb" else 3306),
        "user": urllib.parse.unquote(parts.username or "root"),
        "password": urllib.parse.unquote(parts.password or ""),
        "database": database,
    }
    query = urllib.parse.parse_qs(parts.query)
    if "unix_socket" in query:
        args["unix_socket"] = query["unix_socket"][0]
    return args


def _retryable(exc: BaseException) -> bool:
    """Errors of the connection or of concurrency (lost connection, server gone, killed,
    deadlock, lock wait timeout, TiDB write conflict): the batch is fine, try it again.
    Errors of the SQL or the data (constraints, bad values) are not."""
    assert MySQLdb is not None
    return isinstance(exc, (MySQLdb.OperationalError, MySQLdb.InterfaceError, MySQLdb.InternalError))


#: client errors of a connection that is gone (server gone away, lost during a query, the
#: server closed it), and the server's own "disconnected for inactivity"
_CONNECTION_LOST = frozenset({2006, 2013, 2055, 4031})


def _connection_lost(exc: BaseException) -> bool:
    assert MySQLdb is not None
    return isinstance(exc, MySQLdb.OperationalError) and bool(exc.args) and exc.args[0] in _CONNECTION_LOST


def _idle_transaction_variable(conn: Any) -> str | None:
    """The session variable with which the server ends an idle transaction: TiDB's, or
    MariaDB's; None on MySQL, which has none. From the handshake, no round trip."""
    info = conn.get_server_info()
    if "TiDB" in info:
        return "tidb_idle_transaction_timeout"
    if "MariaDB" in info:
        return "idle_transaction_timeout"
    return None


def _fails_one_op(exc: BaseException) -> bool:
    """True for errors confined to one change (a constraint, a bad value, a bug in its
    handler): the server undid that statement only, the batch goes on without it."""
    assert MySQLdb is not None
    if isinstance(exc, MySQLdb.Error):
        return isinstance(exc, (MySQLdb.IntegrityError, MySQLdb.DataError, MySQLdb.ProgrammingError,
                                MySQLdb.NotSupportedError))
    return isinstance(exc, Exception)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class _Tx:
    """What the changes of one batch share: the cursor and the locked last seqs."""

    __slots__ = ("cur", "last")

    def __init__(self, cur: Any, last: dict[str, int]) -> None:
        self.cur = cur
        self.last = last  # conv -> last seq, for every conversation this batch locked


class MysqlStore(WriteQueue):
    """``Store`` over a MySQL-protocol database shared by any number of nodes.

    ``url``: ``mysql://user:password@host:port/database``; the database must exist (the
    store creates and migrates its tables). ``reader_threads``: reader threads (one connection
    each). ``retry_for``: seconds a batch is retried through lost connections and
    deadlocks before its callers get ``StoreUnavailable``.

    Deadlines: connecting gives up after ``connect_timeout`` seconds, and every reply is
    waited for at most ``read_timeout`` seconds (``write_timeout`` the same), so a server
    that hangs fails reads with ``StoreUnavailable`` and writes' batches after their retries;
    only the schema migration at ``open`` waits without a bound (DDL and its named lock).

    ``idle_transaction_timeout`` (seconds, 0: the server's default): the server ends a
    transaction of this store left idle that long (a node frozen mid-batch) and drops its
    connection, releasing the row locks other nodes wait for: MariaDB's
    ``idle_transaction_timeout``, TiDB's ``tidb_idle_transaction_timeout`` (MySQL has no
    such setting; there the lock holder is ended by ``wait_timeout`` only). A batch whose
    connection was lost after it ran longer than that is not retried: its callers get
    ``StoreUnavailable`` (nothing acked; clients retry with the same cmid) and the writer
    reconnects for the next batch.
    """

    def __init__(
        self,
        url: str,
        *,
        reader_threads: int = 2,
        batch_max: int = 512,
        retry_for: float = 10.0,
        connect_timeout: int = 5,
        read_timeout: int = 10,
        idle_transaction_timeout: int = 10,
        search_timeout: float = 2.0,
    ) -> None:
        if MySQLdb is None:
            raise StoreUnavailable("MysqlStore needs mysqlclient: pip install mysqlclient"
                                   " (it builds against default-libmysqlclient-dev and pkg-config)")
        if reader_threads < 1:
            raise ValueError("reader_threads must be at least 1")
        if batch_max < 1:
            raise ValueError("batch_max must be at least 1")
        self._args = parse_url(url)
        self.url = url
        #: seconds a search's statements may run, together (the server stops them: SearchTimeout)
        self.search_timeout = search_timeout
        self.reader_threads = reader_threads
        self.batch_max = batch_max
        self.retry_for = retry_for
        self.idle_transaction_timeout = idle_transaction_timeout
        self._connect_args = dict(
            self._args, charset="utf8mb4", autocommit=True, connect_timeout=connect_timeout,
            read_timeout=read_timeout, write_timeout=read_timeout,
        )
        super().__init__()
        self._writer: threading.Thread | None = None
        self._writer_done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._reader_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._reader_local = threading.local()
        self._reader_conns: list[Any] = []
        self._reader_lock = threading.Lock()
        self._accepting = False
        self._closed = False
        self._healthy = True
        # owned by the writer thread
        self._conn: Any = None
        self._conn_id = 0
        self._writer_id = uuid.uuid4().hex
        self._batch_no = 0

    def __repr__(self) -> str:
        a = self._args
        return f"MysqlStore({a['user']}@{a['host']}:{a['port']}/{a['database']})"

    @property
    def healthy(self) -> bool:
        return self._healthy

    @property
    def writer_connection_id(self) -> int | None:
        """The server-side id of the writer's connection (``KILL <id>``), or None."""
        return self._conn_id if self._conn is not None else None

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, create or migrate the schema, then start the writer and readers.

        Raises ``StoreUnavailable`` when the server cannot be reached or refuses the user
        or the database, ``StoreDamaged`` when the schema is newer than this code or
        tables are missing after migration."""
        if self._writer is not None or self._closed:
            raise RuntimeError("MysqlStore.open() may be called once")
        await self._start_writer(f"mysql-writer:{self._args['database']}", self._writer_main)
        self._reader_pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.reader_threads, thread_name_prefix="mysql-reader")
        self._accepting = True

    async def close(self) -> None:
        """Stop accepting work, commit everything already queued, release the connections.
        Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._accepting = False
        await self._stop_writer()
        if self._reader_pool is not None:
            pool, self._reader_pool = self._reader_pool, None
            await asyncio.get_running_loop().run_in_executor(None, pool.shutdown, True)
            with self._reader_lock:
                conns, self._reader_conns = self._reader_conns, []
            for conn in conns:  # no reader thread uses them any more
                _close_quietly(conn)

    # -- writes (through the writer thread) --------------------------------------------

    # -- reads (on the reader threads) -------------------------------------------------

    async def get_user(self, user_id: UserId) -> User | None:
        rows = await self._read(_fetchall, f"SELECT {_USER_COLUMNS} FROM users WHERE id = %s", (user_id,))
        return _user(rows[0]) if rows else None

    async def get_user_by_name(self, username: str) -> User | None:
        rows = await self._read(_fetchall, f"SELECT {_USER_COLUMNS} FROM users WHERE username = %s", (username,))
        return _user(rows[0]) if rows else None

    # -- operations (the admin API) ----------------------------------------------------------

    async def list_users(self, after: UserId, limit: int) -> list[User]:
        rows = await self._read(_fetchall, f"SELECT {_USER_COLUMNS} FROM users WHERE id > %s ORDER BY id LIMIT %s",
                                (after, max(0, limit)))
        return [_user(r) for r in rows]

    async def list_groups(self, after: GroupId, limit: int) -> list[tuple[GroupRecord, int]]:
        rows = await self._read(
            _fetchall,
            "SELECT g.id, g.name, g.avatar, g.notice, g.owner, g.join_mode, g.mute_all, g.max_members, g.created_at,"
            " (SELECT count(*) FROM group_members m WHERE m.group_id = g.id)"
            " FROM chat_groups g WHERE g.id > %s ORDER BY g.id LIMIT %s", (after, max(0, limit)))
        return [(GroupRecord(*r[:6], bool(r[6]), *r[7:9]), int(r[9])) for r in rows]

    async def messages_after(self, conv: ConvId, after_seq: int, limit: int, max_bytes: int = 0) -> list[StoredMessage]:
        if limit <= 0:
            return []
        return await self._read(
            _read_messages, f"{_SELECT_MESSAGES} WHERE conv = %s AND seq > %s ORDER BY seq LIMIT %s",
            (conv, after_seq, limit), max_bytes)

    async def messages_before(self, conv: ConvId, before_seq: int, limit: int, max_bytes: int = 0) -> list[StoredMessage]:
        if limit <= 0:
            return []
        rows = await self._read(
            _read_messages, f"{_SELECT_MESSAGES} WHERE conv = %s AND seq < %s ORDER BY seq DESC LIMIT %s",
            (conv, before_seq if before_seq > 0 else _NO_BOUND, limit), max_bytes)
        rows.reverse()
        return rows

    async def messages_by_id(self, conv: ConvId, ids: Sequence[int]) -> list[StoredMessage]:
        ids = list(dict.fromkeys(ids))[:_IN_CHUNK]
        if not ids:
            return []
        return await self._read(
            _read_messages, f"{_SELECT_MESSAGES} WHERE conv = %s AND id IN ({_in_list(len(ids), 1)})", (conv, *ids), 0)

    async def messages_changed(self, conv: ConvId, after_rev: int, up_to_seq: int,
                               limit: int) -> tuple[list[StoredMessage], int]:
        return await self._read(_in_snapshot, _messages_changed, conv, after_rev, up_to_seq, limit)

    async def file_convs(self, key: str) -> list[ConvId]:
        rows = await self._read(_fetchall, "SELECT conv FROM file_convs WHERE file_key = %s", (key,))
        return [ConvId(r[0]) for r in rows]

    async def load_user(self, user_id: UserId) -> UserRecords:
        return await self._read(_in_snapshot, _load_user, user_id)

    async def hidden_seqs(self, user: UserId, conv: ConvId, after_seq: int, upto_seq: int) -> list[int]:
        rows = await self._read(_fetchall, "SELECT seq FROM hidden_messages WHERE user_id = %s AND conv = %s"
                                " AND seq > %s AND seq <= %s ORDER BY seq", (user, conv, after_seq, upto_seq))
        return [int(r[0]) for r in rows]

    async def last_visible(self, user: UserId, conv: ConvId, floor: int) -> StoredMessage | None:
        return await self._read(_last_visible, user, conv, floor)

    async def pins(self, conv: ConvId) -> list[Pin]:
        return await self._read(_pins, conv)

    async def load_group(self, group_id: GroupId) -> GroupRecords | None:
        return await self._read(_in_snapshot, _load_group, group_id)

    async def token_revoked(self, token_id: str) -> bool:
        return bool(await self._read(_fetchall, "SELECT 1 FROM revoked_tokens WHERE token_id = %s", (token_id,)))

    async def group_add_rules(self, user_ids: Sequence[UserId]) -> dict[UserId, str]:
        wanted = [u for u in dict.fromkeys(user_ids) if 0 < u <= _NO_BOUND]
        return await self._read(_group_add_rules, wanted) if wanted else {}

    async def readers(self, conv: ConvId, seq: int, exclude: UserId, after: UserId, limit: int) -> tuple[int, list[UserId]]:
        return await self._read(_in_snapshot, _readers, conv, seq, exclude, after, limit)

    async def search(self, convs: Sequence[tuple[ConvId, int]], text: str, before_id: int,
                     limit: int, gone: Callable[[], bool] | None = None) -> list[StoredMessage]:
        """A scan, bounded by the server: each statement may run for what is left of
        ``search_timeout`` (MariaDB ``max_statement_time``, MySQL and TiDB
        ``MAX_EXECUTION_TIME``), then ``SearchTimeout``. ``gone`` is looked at between
        two statements."""
        return await self._read(_in_snapshot, _search, list(convs), text, before_id, limit,
                                time.monotonic() + self.search_timeout, gone)

    async def _read(self, fn: Callable[..., Any], *args: Any) -> Any:
        pool = self._reader_pool
        if not self._accepting or pool is None:
            raise StoreClosed(f"{self!r} is {'closed' if self._closed else 'not open'}")
        return await asyncio.get_running_loop().run_in_executor(pool, self._call_reader, fn, args)

    def _call_reader(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        """``fn(cursor, *args)`` on this reader thread's connection. A connection lost
        between reads (server restart, idle kill) is replaced once: reads are safe to redo."""
        for attempt in (1, 2):
            conn = getattr(self._reader_local, "conn", None)
            try:
                if conn is None:
                    conn = self._connect("REPEATABLE READ")
                    self._reader_local.conn = conn
                    with self._reader_lock:
                        self._reader_conns.append(conn)
                return fn(conn.cursor(), *args)
            except (MySQLdb.OperationalError, MySQLdb.InterfaceError) as exc:
                if conn is not None:
                    self._reader_local.conn = None
                    with self._reader_lock:
                        if conn in self._reader_conns:
                            self._reader_conns.remove(conn)
                    _close_quietly(conn)
                if attempt == 2:
                    raise StoreUnavailable(f"{self!r}: a read failed: {exc}") from exc
        raise AssertionError("unreachable")

    # -- connections -------------------------------------------------------------------

    def _connect(self, isolation: str, bounded: bool = True) -> Any:
        """A connection of this store; ``bounded=False``: without read and write timeouts
        (the migration: DDL and its named lock may take long)."""
        args = self._connect_args
        if not bounded:
            args = {k: v for k, v in args.items() if k not in ("read_timeout", "write_timeout")}
        conn = MySQLdb.connect(**args)
        try:
            cur = conn.cursor()
            cur.execute(f"SET SESSION sql_mode = '{_SQL_MODE}'")
            cur.execute(f"SET SESSION TRANSACTION ISOLATION LEVEL {isolation}")
            idle = _idle_transaction_variable(conn) if self.idle_transaction_timeout > 0 else None
            if idle is not None:
                try:
                    cur.execute(f"SET SESSION {idle} = {int(self.idle_transaction_timeout)}")
                except MySQLdb.OperationalError as exc:
                    if exc.args[0] != _ER_UNKNOWN_SYSTEM_VARIABLE:  # (an older server: none)
                        raise
        except BaseException:
            _close_quietly(conn)
            raise
        return conn

    def _writer_conn(self) -> Any:
        if self._conn is None:
            conn = self._connect("READ COMMITTED")
            self._conn_id = conn.thread_id()  # read here: the connection is this thread's alone
            self._conn = conn
        return self._conn

    def _drop_writer_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            _close_quietly(conn)

    # -- the writer thread -------------------------------------------------------------

    def _writer_main(self, ready: concurrent.futures.Future[None]) -> None:
        try:
            try:
                ddl = self._connect("READ COMMITTED", bounded=False)
            except MySQLdb.Error as exc:
                raise _unavailable(self._args, exc) from exc
            try:
                _migrate(ddl, self._args["database"])
            finally:
                _close_quietly(ddl)
            conn = self._writer_conn()
            cur = conn.cursor()
            cur.execute("DELETE FROM store_writers WHERE ts < %s", (_now_ms() - _WRITER_ROWS_KEPT_MS,))
            # the row exists before the first batch, so every batch updates (and locks) it
            cur.execute(_STAMP, (self._writer_id, 0, _now_ms()))
        except BaseException as exc:
            self._drop_writer_conn()
            if isinstance(exc, MySQLdb.Error):
                exc = StoreUnavailable(f"{self!r}: cannot prepare the database: {exc}")
            ready.set_exception(exc)
            self._writer_done.set_result(None)
            return
        ready.set_result(None)
        try:
            self._writer_loop()
        finally:
            self._drop_writer_conn()
            self._writer_done.set_result(None)

    def _writer_loop(self) -> None:
        for batch in self._batches(self.batch_max):
            self._commit_batch(batch)

    def _commit_batch(self, batch: list[Op]) -> None:
        """Commit ``batch`` in one transaction, retrying it whole through deadlocks and
        lost connections for up to ``retry_for`` seconds; every future is settled."""
        self._batch_no += 1
        stamp = self._batch_no
        row_by_row = False
        unknown: _CommitUnknown | None = None  # a failed COMMIT whose outcome is still to learn
        deadline = time.monotonic() + self.retry_for
        delay = 0.01
        began = time.monotonic()
        ended_idle = False  # the failed COMMIT's connection was ended for idleness
        while True:
            try:
                if unknown is not None:
                    if self._was_committed(stamp):
                        outcomes = unknown.outcomes
                        break
                    if ended_idle:
                        self._fail_batch(batch, unknown.__cause__, began)
                        return
                    unknown = None  # it was rolled back: do it again
                began = time.monotonic()
                outcomes = self._attempt(batch, stamp, row_by_row)
                break
            except _RowByRow:
                self._rollback_or_drop()
                row_by_row = True
            except _CommitUnknown as exc:
                self._drop_writer_conn()  # learn the outcome on a new connection
                unknown = exc
                ended_idle = self._ended_idle(exc.__cause__, began)
            except Exception as exc:
                self._rollback_or_drop()
                self._healthy = False
                if unknown is None and self._ended_idle(exc, began):
                    self._fail_batch(batch, exc, began)
                    return
                if not _retryable(exc) or time.monotonic() >= deadline:
                    what = "cannot tell whether a commit happened" if unknown is not None else "could not commit"
                    failure = StoreUnavailable(f"{self!r} {what}: {exc}")
                    failure.__cause__ = exc
                    settle(batch, [(op.ticket, None, failure) for op in batch])
                    return
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
        self._healthy = True
        settle(batch, outcomes)

    def _ended_idle(self, exc: BaseException | None, began: float) -> bool:
        """Did the server end this batch's transaction for sitting idle (this process was
        frozen mid-batch past ``idle_transaction_timeout``)? Then other writers have gone on
        without its locks: fail the batch rather than commit it late."""
        return (self.idle_transaction_timeout > 0 and exc is not None and _connection_lost(exc)
                and time.monotonic() - began >= self.idle_transaction_timeout)

    def _fail_batch(self, batch: list[Op], exc: BaseException | None, began: float) -> None:
        """Every caller of ``batch`` gets ``StoreUnavailable``; the connection is dropped (the
        next batch connects again)."""
        self._drop_writer_conn()
        failure = StoreUnavailable(f"{self!r}: a transaction lost its connection after {time.monotonic() - began:.0f} s"
                                   f" (idle_transaction_timeout {self.idle_transaction_timeout} s): {exc}")
        failure.__cause__ = exc
        settle(batch, [(op.ticket, None, failure) for op in batch])

    def _rollback_or_drop(self) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            conn.rollback()
        except Exception:  # the connection is gone: reconnect on the next attempt
            self._drop_writer_conn()

    def _commit(self, conn: Any) -> None:
        """COMMIT (a method of its own so tests can make it fail after committing)."""
        conn.commit()

    def _was_committed(self, stamp: int) -> bool:
        """After a failed COMMIT: wait for the lock on this writer's stamp row (the old
        transaction holds it until the server has committed or rolled it back), then read
        whether it carries ``stamp``."""
        conn = self._writer_conn()
        cur = conn.cursor()
        cur.execute("START TRANSACTION")
        try:
            cur.execute("SELECT last_batch FROM store_writers WHERE writer = %s FOR UPDATE", (self._writer_id,))
            row = cur.fetchone()
        finally:
            conn.rollback()
        return row is not None and row[0] == stamp

    def _attempt(self, batch: list[Op], stamp: int, row_by_row: bool) -> list[Outcome]:
        """One try at the batch's transaction. Raises what should make the batch retry."""
        conn = self._writer_conn()
        cur = conn.cursor()
        # a key too long for its column would fail the batch's shared statements (the
        # locks, the duplicate lookup), not only its own: refuse it here, alone
        refused = {id(op): _refusal(op.message) for op in batch if isinstance(op, Append)}
        refused = {k: v for k, v in refused.items() if v is not None}
        appends = [op.message for op in batch if isinstance(op, Append) and id(op) not in refused]
        locked = {m.conv for m in appends}
        locked.update(_group_conv(op.change.group) for op in batch
                      if isinstance(op, Apply) and isinstance(op.change, PutMember))
        # an edit, a reaction or a recall moves a conversation's revision, and a pin counts its
        # conversation's pins: under its lock, as seqs
        locked.update(op.change.conv for op in batch if isinstance(op, Apply) and isinstance(
            op.change, (EditMessage, SetReaction, RecallMessage, PinMessage)))
        cur.execute("START TRANSACTION")
        last = _lock_convs(cur, sorted(locked))
        start_last = dict(last)
        tx = _Tx(cur, last)
        # (sender, cmid) -> the row already stored (looked up under the conversation locks)
        known = _stored_pairs(cur, [(m.sender, m.cmid) for m in appends])
        outcomes: list[Outcome] = []
        run: list[tuple[Any, ...]] = []  # message rows of the current run, not yet inserted
        entering: dict[tuple[int, str], None] = {}
        touched: dict[tuple[int, str], int] = {}  # (sender, conv) -> newest seq it sent
        mentioned: list[tuple[str, int, str]] = []  # (conv, seq, mentions) of the messages that mention
        replies: list[tuple[int, int]] = []  # (reply_to, id) of the replies (a statement of their own)
        forwarded: list[tuple[int, int]] = []  # (fwd, id) of the forwards' copies

        def flush() -> None:
            if run:
                try:
                    cur.executemany(_INSERT_MESSAGES, run)
                except MySQLdb.Error as exc:  # an id taken, a pair inserted elsewhere, a bad value
                    if _fails_one_op(exc):
                        raise _RowByRow() from exc
                    raise
                run.clear()

        for op in batch:
            if isinstance(op, Append):
                m = op.message
                if refused and id(op) in refused:
                    outcomes.append((op.ticket, None, refused[id(op)]))
                    continue
                first = known.get((m.sender, m.cmid))
                if first is not None:  # stored before, or earlier in this batch
                    outcomes.append((op.ticket, msgspec.structs.replace(first, duplicate=True), None))
                    continue
                seq = last[m.conv] + 1
                row = (m.msg_id, m.conv, seq, m.sender, m.to, m.cmid, m.type, m.content, m.ts, m.mentions)
                if row_by_row:
                    error = _insert_alone(cur, row)
                    if error is not None:
                        found = _stored_pairs(cur, [(m.sender, m.cmid)]).get((m.sender, m.cmid))
                        if found is not None:
                            known[(m.sender, m.cmid)] = found
                            outcomes.append((op.ticket, msgspec.structs.replace(found, duplicate=True), None))
                        else:
                            outcomes.append((op.ticket, None, error))
                        continue
                else:
                    run.append(row)
                last[m.conv] = seq
                stored = StoredMessage(*row)
                if m.reply_to:
                    replies.append((m.reply_to, m.msg_id))
                    stored = msgspec.structs.replace(stored, reply_to=m.reply_to, quote=m.quote)
                if m.fwd:  # a forward's copy: its mark is set once its row is in
                    forwarded.append((m.fwd, m.msg_id))
                    stored = msgspec.structs.replace(stored, fwd=m.fwd)
                known[(m.sender, m.cmid)] = stored
                for user in m.members:  # a private conversation enters both lists
                    entering[(user, m.conv)] = None
                touched[(m.sender, m.conv)] = seq
                if m.mentions:
                    mentioned.append((m.conv, seq, m.mentions))
                outcomes.append((op.ticket, stored, None))
            else:
                flush()  # changes see every message before them, as called
                try:
                    if isinstance(op, Apply):
                        result = _alone(cur, lambda: _CHANGES[type(op.change)](tx, op.change))
                        if isinstance(op.change, SetUserConv):  # its cursor is newer than the sends
                            touched.pop((op.change.user, op.change.state.conv), None)
                    else:
                        result = _alone(cur, lambda: _insert_user(cur, op))
                except Exception as exc:
                    if not _fails_one_op(exc):
                        raise
                    outcomes.append((op.ticket, None, exc))
                else:
                    outcomes.append((op.ticket, result, None))
        flush()
        if replies:
            cur.executemany("UPDATE messages SET reply_to = %s WHERE id = %s", replies)
        if entering:
            cur.executemany(_ENTER_CONVS, list(entering))
        if touched:
            _move_read_cursors(cur, touched)
        for conv, seq, mentions in mentioned:
            _mark_mentions(cur, conv, seq, mentions)
        if forwarded:
            cur.executemany("UPDATE messages SET fwd = %s WHERE id = %s", forwarded)
        moved = [(conv, seq) for conv, seq in last.items() if seq != start_last.get(conv)]
        if moved:
            cur.executemany(_SET_LAST_SEQS, moved)
        cur.execute(_STAMP, (self._writer_id, stamp, _now_ms()))
        try:
            self._commit(conn)
        except Exception as exc:
            raise _CommitUnknown(outcomes) from exc
        return outcomes


def _message(row: tuple[Any, ...]) -> StoredMessage:
    """A ``messages`` row (columns as in _MESSAGE_COLUMNS) as a StoredMessage: cmid comes
    back as the bytes of its VARBINARY column."""
    (id_, conv, seq, sender, to, cmid, type_, content, ts, mentions, recalled_by, recalled_at, reply_to, edited_at,
     fwd, reactions, rev) = row
    return StoredMessage(id_, conv, seq, sender, to, cmid.decode(), type_, content, ts, mentions, recalled_by,
                         recalled_at, reply_to=reply_to, edited_at=edited_at, fwd=fwd,
                         reactions=reactions or "", rev=rev)


def _refusal(m: NewMessage) -> ValueError | None:
    if len(m.conv) > _KEY_CHARS or len(m.cmid) > _KEY_CHARS:
        return ValueError(f"conv and cmid are limited to {_KEY_CHARS} characters in MysqlStore")
    return None


def _close_quietly(conn: Any) -> None:
    try:
        conn.close()
    except Exception:
        pass


def _unavailable(args: dict[str, Any], exc: BaseException) -> StoreUnavailable:
    where = args.get("unix_socket") or f"{args['host']}:{args['port']}"
    code = exc.args[0] if exc.args else None
    if code == 1045:
        hint = "the server refused the user or password of the URL"
    elif code == 1049:
        hint = (f"database {args['database']!r} does not exist: create it with"
                f" CREATE DATABASE {args['database']} CHARACTER SET utf8mb4")
    elif code == 1044:
        hint = f"user {args['user']!r} may not use database {args['database']!r}"
    else:
        hint = "is the server running and reachable from here?"
    return StoreUnavailable(f"cannot connect to MySQL at {where} as {args['user']!r} ({exc}): {hint}")


def _group_conv(group: int) -> str:
    return f"g{group}"


def _is_tidb(conn: Any) -> bool:
    """True on TiDB (its version string reads "8.0.11-TiDB-v8.4.0..."); from the handshake,
    no round trip."""
    return "TiDB" in conn.get_server_info()


def _mark_mentions(cur: Any, conv: str, seq: int, mentions: str) -> None:
    if mentions == "*":
        cur.execute("UPDATE user_convs SET mention_seq = %s WHERE conv = %s", (seq, conv))
        return
    users = [int(u) for u in mentions.split(",")]
    cur.execute(f"UPDATE user_convs SET mention_seq = %s WHERE conv = %s AND user_id IN ({_in_list(len(users), 1)})",
                (seq, conv, *users))


def _in_list(n: int, width: int) -> str:
    one = "(" + ", ".join(["%s"] * width) + ")" if width > 1 else "%s"
    return ", ".join([one] * n)


def _lock_convs(cur: Any, convs: list[str]) -> dict[str, int]:
    """Lock the seq rows of ``convs`` (sorted: every writer locks in the same order) and
    return their last seqs; a conversation's first writer creates its row."""
    if not convs:
        return {}
    cur.executemany(_LOCK_CONVS, [(conv, 0) for conv in convs])
    last: dict[str, int] = {}
    for start in range(0, len(convs), _IN_CHUNK):
        chunk = convs[start:start + _IN_CHUNK]
        cur.execute(f"SELECT conv, last_seq FROM convs WHERE conv IN ({_in_list(len(chunk), 1)}) FOR UPDATE",
                    chunk)
        last.update(cur.fetchall())
    return last


def _stored_pairs(cur: Any, pairs: list[tuple[int, str]]) -> dict[tuple[int, str], StoredMessage]:
    out: dict[tuple[int, str], StoredMessage] = {}
    pairs = list(dict.fromkeys(pairs))
    for start in range(0, len(pairs), _IN_CHUNK):
        chunk = pairs[start:start + _IN_CHUNK]
        cur.execute(f"{_SELECT_MESSAGES} WHERE (sender, cmid) IN ({_in_list(len(chunk), 2)})",
                    [v for pair in chunk for v in pair])
        for row in cur.fetchall():
            stored = _message(row)
            out[(stored.sender, stored.cmid)] = stored
    return out


def _insert_alone(cur: Any, row: tuple[Any, ...]) -> BaseException | None:
    """Insert one message in a savepoint; the error if it broke a constraint."""
    try:
        _alone(cur, lambda: cur.execute(_INSERT_MESSAGES, row))
    except Exception as exc:
        if not _fails_one_op(exc):
            raise
        return exc
    return None


def _alone(cur: Any, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a savepoint: if one of its statements fails, none of them stays."""
    cur.execute("SAVEPOINT one_op")
    try:
        result = fn()
    except BaseException:
        try:
            cur.execute("ROLLBACK TO SAVEPOINT one_op")
        except Exception:  # a deadlock already rolled everything back: the caller retries
            pass
        raise
    cur.execute("RELEASE SAVEPOINT one_op")
    return result


def _move_read_cursors(cur: Any, touched: dict[tuple[int, str], int]) -> None:
    """Each sender's read cursor moves to the newest seq it sent, for rows that exist (as
    in SqliteStore: a member who left in the meantime gets no row back). One UPDATE per
    chunk, joined to the pairs as a derived table (a CASE per pair costs the server far more)."""
    items = list(touched.items())
    for start in range(0, len(items), _IN_CHUNK):
        chunk = items[start:start + _IN_CHUNK]
        # the conv literals get the column's collation explicitly: a derived table's string
        # column would otherwise carry the connection's, and the join would refuse to compare
        pairs = " UNION ALL ".join(["SELECT %s AS user_id, %s COLLATE utf8mb4_bin AS conv, %s AS seq"] * len(chunk))
        cur.execute(f"UPDATE user_convs u JOIN ({pairs}) t ON u.user_id = t.user_id AND u.conv = t.conv"
                    " SET u.read_seq = GREATEST(u.read_seq, t.seq)",
                    [v for (user, conv), seq in chunk for v in (user, conv, seq)])


def _insert_user(cur: Any, op: CreateUser) -> User:
    try:
        cur.execute("INSERT INTO users (username, password_hash, nickname, created_at) VALUES (%s, %s, %s, %s)",
                    (op.username, op.password_hash, op.nickname, op.created_at))
    except MySQLdb.IntegrityError as exc:
        if exc.args and exc.args[0] == _ER_DUP_ENTRY:  # username is the only unique key
            raise UsernameTaken(op.username) from None
        raise
    return User(UserId(cur.lastrowid), op.username, op.password_hash, op.nickname, op.created_at)


def _put_member_rows(cur: Any, group: int, members: list[Member]) -> None:
    cur.executemany(
        "INSERT INTO group_members (group_id, user_id, role, muted_until, joined_at, joined_seq)"
        " VALUES (%s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE"
        " role = VALUES(role), muted_until = VALUES(muted_until)",
        [(group, m.user, m.role, m.muted_until, m.joined_at, m.joined_seq) for m in members])
    cur.executemany(
        "INSERT INTO user_convs (user_id, conv, read_seq, joined_seq) VALUES (%s, %s, %s, %s)"
        " ON DUPLICATE KEY UPDATE user_id = user_id",
        [(m.user, _group_conv(group), m.joined_seq, m.joined_seq) for m in members])


# -- the changes: each maps one record of protocols.Change to SQL ----------------------------

def _put_friend_request(tx: _Tx, c: PutFriendRequest) -> None:
    tx.cur.execute("INSERT INTO friend_requests (receiver, sender, message, ts) VALUES (%s, %s, %s, %s)"
                   " ON DUPLICATE KEY UPDATE message = VALUES(message), ts = VALUES(ts)",
                   (c.receiver, c.sender, c.message, c.ts))


def _drop_friend_request(tx: _Tx, c: DropFriendRequest) -> None:
    tx.cur.execute("DELETE FROM friend_requests WHERE receiver = %s AND sender = %s", (c.receiver, c.sender))


def _put_friendship(tx: _Tx, c: PutFriendship) -> None:
    tx.cur.executemany("INSERT INTO friends (user_id, friend_id, since) VALUES (%s, %s, %s)"
                       " ON DUPLICATE KEY UPDATE since = since", [(c.a, c.b, c.ts), (c.b, c.a, c.ts)])
    tx.cur.execute("DELETE FROM friend_requests WHERE (receiver = %s AND sender = %s) OR (receiver = %s AND sender = %s)",
                   (c.a, c.b, c.b, c.a))


def _drop_friendship(tx: _Tx, c: DropFriendship) -> None:
    tx.cur.execute("DELETE FROM friends WHERE (user_id = %s AND friend_id = %s) OR (user_id = %s AND friend_id = %s)",
                   (c.a, c.b, c.b, c.a))


def _set_remark(tx: _Tx, c: SetRemark) -> None:
    tx.cur.execute("UPDATE friends SET remark = %s WHERE user_id = %s AND friend_id = %s", (c.remark, c.user, c.friend))


def _set_block(tx: _Tx, c: SetBlock) -> None:
    if c.blocked:
        tx.cur.execute("INSERT INTO blocks (user_id, blocked_id) VALUES (%s, %s)"
                       " ON DUPLICATE KEY UPDATE user_id = user_id", (c.user, c.other))
    else:
        tx.cur.execute("DELETE FROM blocks WHERE user_id = %s AND blocked_id = %s", (c.user, c.other))


def _create_group(tx: _Tx, c: CreateGroup) -> GroupRecords:
    tx.cur.execute(
        "INSERT INTO chat_groups (name, avatar, notice, owner, join_mode, mute_all, max_members, created_at)"
        " VALUES (%s, %s, %s, %s, %s, 0, %s, %s)",
        (c.name, c.avatar, c.notice, c.owner, c.join_mode, c.max_members, c.ts))
    # AUTO_INCREMENT: unique, but not ordered across TiDB servers; only used as an id
    group = GroupRecord(GroupId(tx.cur.lastrowid), c.name, c.avatar, c.notice, c.owner, c.join_mode,
                        False, c.max_members, c.ts)
    members = [Member(c.owner, "owner", 0, c.ts, 0)]
    members += [Member(user, "member", 0, c.ts, 0) for user in dict.fromkeys(c.members) if user != c.owner]
    _put_member_rows(tx.cur, group.id, members)
    invitations: list[Invitation] = []
    if c.invited:
        invitations = _put_invitations(tx, PutInvitations(
            group.id, c.owner, c.invited, c.ts, c.expires_at, c.max_per_invitee, c.max_per_inviter))
    return GroupRecords(group, members, [], invitations=invitations)


def _put_group(tx: _Tx, c: PutGroup) -> None:
    g = c.group
    tx.cur.execute(
        "UPDATE chat_groups SET name = %s, avatar = %s, notice = %s, owner = %s, join_mode = %s, mute_all = %s,"
        " max_members = %s WHERE id = %s",
        (g.name, g.avatar, g.notice, g.owner, g.join_mode, g.mute_all, g.max_members, g.id))


def _put_member(tx: _Tx, c: PutMember) -> Member:
    tx.cur.execute("SELECT joined_at, joined_seq FROM group_members WHERE group_id = %s AND user_id = %s FOR UPDATE",
                   (c.group, c.user))
    row = tx.cur.fetchone()
    if row is None:  # a new member starts after the messages already there (its conv row is locked)
        member = Member(c.user, c.role, c.muted_until, c.ts, tx.last[_group_conv(c.group)])
    else:
        member = Member(c.user, c.role, c.muted_until, row[0], row[1])
    _put_member_rows(tx.cur, c.group, [member])
    tx.cur.execute("DELETE FROM group_requests WHERE group_id = %s AND user_id = %s", (c.group, c.user))
    tx.cur.execute("DELETE FROM group_invitations WHERE group_id = %s AND invitee = %s", (c.group, c.user))
    return member


def _drop_member(tx: _Tx, c: DropMember) -> None:
    tx.cur.execute("DELETE FROM group_members WHERE group_id = %s AND user_id = %s", (c.group, c.user))
    tx.cur.execute("DELETE FROM user_convs WHERE user_id = %s AND conv = %s", (c.user, _group_conv(c.group)))
    tx.cur.execute("DELETE FROM hidden_messages WHERE user_id = %s AND conv = %s", (c.user, _group_conv(c.group)))


def _dissolve(tx: _Tx, c: DissolveGroup) -> None:
    tx.cur.execute("DELETE FROM chat_groups WHERE id = %s", (c.group,))
    tx.cur.execute("DELETE FROM group_members WHERE group_id = %s", (c.group,))
    tx.cur.execute("DELETE FROM group_requests WHERE group_id = %s", (c.group,))
    tx.cur.execute("DELETE FROM group_invitations WHERE group_id = %s", (c.group,))
    tx.cur.execute("DELETE FROM user_convs WHERE conv = %s", (_group_conv(c.group),))
    tx.cur.execute("DELETE FROM hidden_messages WHERE conv = %s", (_group_conv(c.group),))
    tx.cur.execute("DELETE FROM message_pins WHERE conv = %s", (_group_conv(c.group),))


def _put_join_request(tx: _Tx, c: PutJoinRequest) -> None:
    tx.cur.execute("INSERT INTO group_requests (group_id, user_id, message, ts) VALUES (%s, %s, %s, %s)"
                   " ON DUPLICATE KEY UPDATE message = VALUES(message), ts = VALUES(ts)",
                   (c.group, c.user, c.message, c.ts))


def _drop_join_request(tx: _Tx, c: DropJoinRequest) -> None:
    tx.cur.execute("DELETE FROM group_requests WHERE group_id = %s AND user_id = %s", (c.group, c.user))


def _set_user_conv(tx: _Tx, c: SetUserConv) -> None:
    st = c.state
    tx.cur.execute(
        "INSERT INTO user_convs (user_id, conv, read_seq, pinned, muted, hidden_seq, joined_seq, cleared_seq, view_ver)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE"
        " read_seq = GREATEST(read_seq, VALUES(read_seq)), pinned = VALUES(pinned), muted = VALUES(muted),"
        " hidden_seq = VALUES(hidden_seq), cleared_seq = GREATEST(cleared_seq, VALUES(cleared_seq)),"
        " view_ver = GREATEST(view_ver, VALUES(view_ver))",
        (c.user, st.conv, st.read_seq, st.pinned, st.muted, st.hidden_seq, st.joined_seq, st.cleared_seq,
         st.view_ver))


def _set_password_hash(tx: _Tx, c: SetPasswordHash) -> None:
    tx.cur.execute("UPDATE users SET password_hash = %s WHERE id = %s", (c.password_hash, c.user))


def _revoke_token(tx: _Tx, c: RevokeToken) -> None:
    # forget a few expired ones on the way (LIMIT: a bounded delete, whatever the backlog)
    tx.cur.execute("DELETE FROM revoked_tokens WHERE expires_at < %s LIMIT 100", (int(time.time()),))
    tx.cur.execute("INSERT INTO revoked_tokens (token_id, expires_at) VALUES (%s, %s)"
                   " ON DUPLICATE KEY UPDATE token_id = token_id", (c.token_id, c.expires_at))


def _recall(tx: _Tx, c: RecallMessage) -> StoredMessage | None:
    tx.cur.execute("UPDATE messages SET content = '', mentions = '', recalled_by = %s, recalled_at = %s"
                   " WHERE conv = %s AND seq = %s AND recalled_by = 0", (c.by, c.at, c.conv, c.seq))
    if tx.cur.rowcount == 0:
        return None
    # its reactions go with its content; the recall moves the conversation's change revision
    tx.cur.execute("DELETE FROM reactions WHERE conv = %s AND seq = %s", (c.conv, c.seq))
    tx.cur.execute("UPDATE messages SET reactions = NULL, rev = %s WHERE conv = %s AND seq = %s",
                   (_next_rev(tx.cur, c.conv), c.conv, c.seq))
    tx.cur.execute(f"{_SELECT_MESSAGES} WHERE conv = %s AND seq = %s", (c.conv, c.seq))
    tombstone = _message(tx.cur.fetchone())
    tx.cur.execute("DELETE FROM message_pins WHERE conv = %s AND seq = %s", (c.conv, c.seq))
    return tombstone


def _hide_messages(tx: _Tx, c: HideMessages) -> tuple[tuple[int, ...], int] | None:
    tx.cur.execute("SELECT view_ver FROM user_convs WHERE user_id = %s AND conv = %s FOR UPDATE", (c.user, c.conv))
    row = tx.cur.fetchone()
    if row is None:
        return None
    seqs = sorted(set(c.seqs))
    tx.cur.execute("SELECT seq FROM hidden_messages WHERE user_id = %s AND conv = %s"
                   f" AND seq IN ({_in_list(len(seqs), 1)})", (c.user, c.conv, *seqs))
    already = {r[0] for r in tx.cur.fetchall()}
    hidden = tuple(seq for seq in seqs if seq not in already)
    if not hidden:
        return (), int(row[0])
    tx.cur.executemany("INSERT INTO hidden_messages (user_id, conv, seq, at) VALUES (%s, %s, %s, %s)",
                       [(c.user, c.conv, seq, c.at) for seq in hidden])
    tx.cur.execute("UPDATE user_convs SET view_ver = view_ver + 1 WHERE user_id = %s AND conv = %s", (c.user, c.conv))
    return hidden, int(row[0]) + 1


def _pin_message(tx: _Tx, c: PinMessage) -> Pin | str | None:
    tx.cur.execute(f"{_SELECT_MESSAGES} WHERE conv = %s AND seq = %s", (c.conv, c.seq))
    row = tx.cur.fetchone()
    message = _message(row) if row is not None else None
    if message is None or message.recalled_by:
        return None
    tx.cur.execute("SELECT pinned_by, pinned_at FROM message_pins WHERE conv = %s AND seq = %s", (c.conv, c.seq))
    pinned = tx.cur.fetchone()
    if pinned is not None:
        return Pin(c.conv, c.seq, UserId(pinned[0]), int(pinned[1]), message)
    tx.cur.execute("SELECT count(*) FROM message_pins WHERE conv = %s", (c.conv,))
    if tx.cur.fetchone()[0] >= c.limit:
        return PINS_FULL
    tx.cur.execute("INSERT INTO message_pins (conv, seq, pinned_by, pinned_at) VALUES (%s, %s, %s, %s)",
                   (c.conv, c.seq, c.by, c.at))
    return Pin(c.conv, c.seq, c.by, c.at, message, created=True)


def _unpin_message(tx: _Tx, c: UnpinMessage) -> bool:
    tx.cur.execute("DELETE FROM message_pins WHERE conv = %s AND seq = %s", (c.conv, c.seq))
    return bool(tx.cur.rowcount > 0)


def _edit(tx: _Tx, c: EditMessage) -> StoredMessage | None:
    # the batch locked the conversation's convs row (``locked``): revs follow commit order
    tx.cur.execute("SELECT id FROM messages WHERE conv = %s AND seq = %s AND sender = %s AND recalled_by = 0 FOR UPDATE",
                   (c.conv, c.seq, c.by))
    found = tx.cur.fetchone()
    if found is None:
        return None
    tx.cur.execute("UPDATE messages SET content = %s, edited_at = %s, rev = %s WHERE id = %s",
                   (c.content, c.at, _next_rev(tx.cur, c.conv), found[0]))
    tx.cur.execute(f"{_SELECT_MESSAGES} WHERE id = %s", (found[0],))
    return _message(tx.cur.fetchone())
def _next_rev(cur: Any, conv: str, count: int = 1) -> int:
    """The conversation's next change revision (the first of ``count``): its convs row's
    counter moves on. The caller holds that row's lock (the batch's ``locked``), so the
    revisions of several writers follow their commit order."""
    cur.execute("UPDATE convs SET last_rev = last_rev + %s WHERE conv = %s", (count, conv))
    cur.execute("SELECT last_rev FROM convs WHERE conv = %s", (conv,))
    return int(cur.fetchone()[0]) - count + 1


def _set_reaction(tx: _Tx, c: SetReaction) -> Reacted:
    cur = tx.cur
    cur.execute(f"{_SELECT_MESSAGES} WHERE conv = %s AND seq = %s", (c.conv, c.seq))
    row = cur.fetchone()
    if row is None:
        return Reacted("missing")
    message = _message(row)
    if message.recalled_by:
        return Reacted("recalled", message)
    cur.execute("SELECT emoji FROM reactions WHERE conv = %s AND seq = %s AND user_id = %s", (c.conv, c.seq, c.user))
    mine = [r[0] for r in cur.fetchall()]
    if c.add:
        if c.emoji in mine:
            return Reacted("unchanged", message)
        if len(mine) >= c.max_per_user:
            return Reacted("too_many_mine", message)
        cur.execute("SELECT count(DISTINCT emoji), coalesce(sum(emoji = %s), 0) FROM reactions"
                    " WHERE conv = %s AND seq = %s", (c.emoji, c.conv, c.seq))
        distinct, present = cur.fetchone()
        if not present and distinct >= c.max_emoji:
            return Reacted("too_many_emoji", message)
        cur.execute("INSERT INTO reactions (conv, seq, user_id, emoji, ts) VALUES (%s, %s, %s, %s, %s)",
                    (c.conv, c.seq, c.user, c.emoji, c.ts))
    else:
        if c.emoji not in mine:
            return Reacted("unchanged", message)
        cur.execute("DELETE FROM reactions WHERE conv = %s AND seq = %s AND user_id = %s AND emoji = %s",
                    (c.conv, c.seq, c.user, c.emoji))
    cur.execute("SELECT emoji, user_id FROM reactions WHERE conv = %s AND seq = %s ORDER BY ts, user_id",
                (c.conv, c.seq))
    summary = reaction_summary(cur.fetchall(), c.shown)
    rev = _next_rev(cur, c.conv)
    cur.execute("UPDATE messages SET reactions = %s, rev = %s WHERE conv = %s AND seq = %s",
                (summary or None, rev, c.conv, c.seq))
    return Reacted("changed", msgspec.structs.replace(message, reactions=summary, rev=rev))


def _share_files(tx: _Tx, c: ShareFiles) -> None:
    tx.cur.executemany("INSERT INTO file_convs (file_key, conv) VALUES (%s, %s)"
                       " ON DUPLICATE KEY UPDATE conv = conv", [(key, c.conv) for key in c.keys])


def _set_settings(tx: _Tx, c: SetSettings) -> None:
    tx.cur.execute("INSERT INTO user_settings (user_id, invisible, group_add) VALUES (%s, %s, %s)"
                   " ON DUPLICATE KEY UPDATE invisible = VALUES(invisible), group_add = VALUES(group_add)",
                   (c.user, c.invisible, c.group_add))


def _put_invitations(tx: _Tx, c: PutInvitations) -> list[Invitation]:
    """As SqliteStore's: stored, then counted, InvitationsFull undoes it. The users' rows
    (invitees and inviter, in id order) are locked first, so that writers on other nodes
    inviting the same users count one after the other and none overshoots a bound."""
    cur = tx.cur
    invitees = list(dict.fromkeys(c.invitees))
    everyone = sorted(set(invitees) | {c.inviter})
    for start in range(0, len(everyone), _IN_CHUNK):
        chunk = everyone[start:start + _IN_CHUNK]
        cur.execute(f"SELECT id FROM users WHERE id IN ({_in_list(len(chunk), 1)}) ORDER BY id FOR UPDATE", chunk)
        cur.fetchall()
    cur.execute("DELETE FROM group_invitations WHERE inviter = %s AND expires_at <= %s", (c.inviter, c.ts))
    cur.executemany("DELETE FROM group_invitations WHERE invitee = %s AND expires_at <= %s",
                    [(u, c.ts) for u in invitees])
    cur.executemany(
        "INSERT INTO group_invitations (group_id, invitee, inviter, ts, expires_at) VALUES (%s, %s, %s, %s, %s)"
        " ON DUPLICATE KEY UPDATE inviter = VALUES(inviter), ts = VALUES(ts), expires_at = VALUES(expires_at)",
        [(c.group, u, c.inviter, c.ts, c.expires_at) for u in invitees])
    for start in range(0, len(invitees), _IN_CHUNK):
        chunk = invitees[start:start + _IN_CHUNK]
        cur.execute(f"SELECT invitee, count(*) FROM group_invitations WHERE invitee IN ({_in_list(len(chunk), 1)})"
                    " GROUP BY invitee", chunk)
        for invitee, count in cur.fetchall():
            if count > c.max_per_invitee:
                raise InvitationsFull(invitee, inviter=False)
    cur.execute("SELECT count(*) FROM group_invitations WHERE inviter = %s", (c.inviter,))
    if cur.fetchone()[0] > c.max_per_inviter:
        raise InvitationsFull(c.inviter, inviter=True)
    return [Invitation(c.group, u, c.inviter, c.ts, c.expires_at) for u in invitees]


def _drop_invitation(tx: _Tx, c: DropInvitation) -> None:
    tx.cur.execute("DELETE FROM group_invitations WHERE group_id = %s AND invitee = %s", (c.group, c.invitee))


def _set_disabled(tx: _Tx, c: SetDisabled) -> None:
    tx.cur.execute("UPDATE users SET disabled = %s WHERE id = %s", (int(c.disabled), c.user))


def _set_profile(tx: _Tx, c: SetProfile) -> None:
    tx.cur.execute("UPDATE users SET nickname = %s, avatar = %s, bio = %s WHERE id = %s AND deleted_at = 0",
                   (c.nickname, c.avatar, c.bio, c.user))


def _set_credentials(tx: _Tx, c: SetCredentials) -> int:
    tx.cur.execute("UPDATE users SET password_hash = %s, epoch = epoch + 1 WHERE id = %s AND deleted_at = 0",
                   (c.password_hash, c.user))
    tx.cur.execute("SELECT epoch FROM users WHERE id = %s", (c.user,))
    row = tx.cur.fetchone()
    return int(row[0]) if row else 0


def _delete_account(tx: _Tx, c: DeleteAccount) -> int:
    u, cur = c.user, tx.cur
    cur.execute("UPDATE users SET password_hash = '', nickname = '', avatar = '', bio = '', epoch = epoch + 1,"
                " deleted_at = %s WHERE id = %s AND deleted_at = 0", (c.ts, u))
    cur.execute("SELECT friend_id FROM friends WHERE user_id = %s", (u,))  # friendships are both ways: by key
    friends = [(row[0], u) for row in cur.fetchall()]
    cur.execute("DELETE FROM friends WHERE user_id = %s", (u,))
    if friends:
        cur.executemany("DELETE FROM friends WHERE user_id = %s AND friend_id = %s", friends)
    cur.execute("DELETE FROM friend_requests WHERE receiver = %s OR sender = %s", (u, u))
    cur.execute("DELETE FROM blocks WHERE user_id = %s OR blocked_id = %s", (u, u))
    cur.execute("DELETE FROM user_settings WHERE user_id = %s", (u,))
    cur.execute("DELETE FROM group_requests WHERE user_id = %s", (u,))
    cur.execute("DELETE FROM group_members WHERE user_id = %s", (u,))
    cur.execute("DELETE FROM user_convs WHERE user_id = %s", (u,))
    if not c.erase:
        return 0
    cur.execute("SELECT id, conv FROM messages WHERE sender = %s AND recalled_by = 0 ORDER BY conv, seq", (u,))
    rows = cur.fetchall()
    if not rows:
        return 0
    # each tombstone takes its conversation's next change revision, as a recall does:
    # under the conversations' locks (sorted, as every writer locks; a deadlock retries)
    by_conv: dict[str, list[int]] = {}
    for msg_id, conv in rows:
        by_conv.setdefault(conv, []).append(msg_id)
    _lock_convs(cur, sorted(set(by_conv) - set(tx.last)))
    stamped = []
    for conv, ids in by_conv.items():
        first = _next_rev(cur, conv, len(ids))
        stamped.extend((first + i, msg_id) for i, msg_id in enumerate(ids))
    cur.execute("DELETE r FROM reactions r JOIN messages m ON m.conv = r.conv AND m.seq = r.seq"
                " WHERE m.sender = %s AND m.recalled_by = 0", (u,))
    cur.execute("UPDATE messages SET content = '', mentions = '', recalled_by = %s, recalled_at = %s"
                " WHERE sender = %s AND recalled_by = 0", (u, c.ts, u))
    cur.executemany("UPDATE messages SET reactions = NULL, rev = %s WHERE id = %s", stamped)
    return len(rows)


_USER_COLUMNS = "id, username, password_hash, nickname, created_at, disabled, avatar, bio, epoch, deleted_at"


def _user(row: tuple[Any, ...]) -> User:
    return User(*row[:5], bool(row[5]), *row[6:])


_CHANGES: dict[type, Callable[[_Tx, Any], Any]] = {
    PutFriendRequest: _put_friend_request,
    DropFriendRequest: _drop_friend_request,
    PutFriendship: _put_friendship,
    DropFriendship: _drop_friendship,
    SetRemark: _set_remark,
    SetBlock: _set_block,
    CreateGroup: _create_group,
    PutGroup: _put_group,
    PutMember: _put_member,
    DropMember: _drop_member,
    DissolveGroup: _dissolve,
    PutJoinRequest: _put_join_request,
    DropJoinRequest: _drop_join_request,
    SetUserConv: _set_user_conv,
    SetPasswordHash: _set_password_hash,
    RevokeToken: _revoke_token,
    RecallMessage: _recall,
    EditMessage: _edit,
    SetSettings: _set_settings,
    SetDisabled: _set_disabled,
    PutInvitations: _put_invitations,
    DropInvitation: _drop_invitation,
    SetProfile: _set_profile,
    SetCredentials: _set_credentials,
    DeleteAccount: _delete_account,
    SetReaction: _set_reaction,
    ShareFiles: _share_files,
    HideMessages: _hide_messages,
    PinMessage: _pin_message,
    UnpinMessage: _unpin_message,
}


# -- reads (on a reader thread) ---------------------------------------------------------------

def _fetchall(cur: Any, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    cur.execute(sql, params)
    return list(cur.fetchall())


def _in_snapshot(cur: Any, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(cur, *args)`` in one read-only snapshot (every statement sees the same commits)."""
    # TiDB refuses READ ONLY (error 1235, a "noop function"); its REPEATABLE READ
    # transaction is a snapshot all the same, and one that only reads takes no lock
    cur.execute("START TRANSACTION" if _is_tidb(cur.connection) else "START TRANSACTION READ ONLY")
    try:
        return fn(cur, *args)
    finally:
        cur.connection.rollback()


def _read_messages(cur: Any, sql: str, params: tuple[Any, ...], max_bytes: int) -> list[StoredMessage]:
    """The rows of ``sql`` in its order; with ``max_bytes``, none after the one whose
    content takes the total past it."""
    cur.execute(sql, params)
    out: list[StoredMessage] = []
    total = 0
    for row in cur.fetchall():
        out.append(_message(row))
        if max_bytes:
            total += len(row[7].encode())
            if total > max_bytes:
                break
    return out


def _messages_changed(cur: Any, conv: str, after_rev: int, up_to_seq: int,
                      limit: int) -> tuple[list[StoredMessage], int]:
    # the revision first, and no row above it (one snapshot all the same)
    cur.execute("SELECT coalesce(max(last_rev), 0) FROM convs WHERE conv = %s", (conv,))
    top = int(cur.fetchone()[0])
    cur.execute(f"{_SELECT_MESSAGES} WHERE conv = %s AND rev > %s AND rev <= %s AND seq <= %s ORDER BY rev LIMIT %s",
                (conv, max(after_rev, 0), top, up_to_seq, limit))
    return [_message(r) for r in cur.fetchall()], top


def _load_user(cur: Any, user_id: int) -> UserRecords:
    def rows(sql: str) -> Any:
        cur.execute(sql, (user_id,))
        return cur.fetchall()

    friends = [Friend(*r) for r in rows("SELECT friend_id, remark, since FROM friends WHERE user_id = %s"
                                        " ORDER BY friend_id")]
    requests_in = [FriendRequest(*r) for r in rows(
        "SELECT sender, receiver, message, ts FROM friend_requests WHERE receiver = %s ORDER BY ts")]
    requests_out = [FriendRequest(*r) for r in rows(
        "SELECT sender, receiver, message, ts FROM friend_requests WHERE sender = %s ORDER BY ts")]
    blocked = [UserId(r[0]) for r in rows("SELECT blocked_id FROM blocks WHERE user_id = %s")]
    blocked_by = [UserId(r[0]) for r in rows("SELECT user_id FROM blocks WHERE blocked_id = %s")]
    convs = [UserConv(conv, read_seq, bool(pinned), bool(muted), hidden_seq, joined_seq, mention_seq, cleared_seq,
                      view_ver)
             for conv, read_seq, pinned, muted, hidden_seq, joined_seq, mention_seq, cleared_seq, view_ver in rows(
                 "SELECT conv, read_seq, pinned, muted, hidden_seq, joined_seq, mention_seq, cleared_seq, view_ver"
                 " FROM user_convs WHERE user_id = %s")]
    # the head is the message at the conversation's last seq (convs moves with each commit)
    heads = [_message(r) for r in rows(
        f"SELECT {', '.join('m.' + c.strip() for c in _MESSAGE_COLUMNS.split(','))}"
        " FROM user_convs u JOIN convs c ON c.conv = u.conv"
        " JOIN messages m ON m.conv = c.conv AND m.seq = c.last_seq WHERE u.user_id = %s")]
    settings = rows("SELECT invisible, group_add FROM user_settings WHERE user_id = %s")
    invisible = bool(settings[0][0]) if settings else False
    cur.execute("SELECT group_id, invitee, inviter, ts, expires_at FROM group_invitations"
                " WHERE invitee = %s AND expires_at > %s ORDER BY group_id", (user_id, _now_ms()))
    invitations = [Invitation(*r) for r in cur.fetchall()]
    hidden: list[tuple[ConvId, int]] = []
    view_heads: list[ViewHead] = []
    if any(uc.view_ver for uc in convs):  # what the user deleted for themselves that their list shows
        hidden = [(ConvId(conv), int(seq)) for conv, seq in rows(
            "SELECT h.conv, h.seq FROM hidden_messages h JOIN user_convs u ON u.user_id = h.user_id AND u.conv = h.conv"
            " WHERE h.user_id = %s AND h.seq > GREATEST(u.read_seq, u.cleared_seq, u.joined_seq)"
            " ORDER BY h.conv, h.seq")]
        floors = {uc.conv: max(uc.joined_seq, uc.cleared_seq) for uc in convs}
        for conv, seq in rows("SELECT h.conv, h.seq FROM hidden_messages h JOIN convs c"
                              " ON c.conv = h.conv AND c.last_seq = h.seq WHERE h.user_id = %s"):
            if seq > floors.get(conv, 0):
                view_heads.append(ViewHead(ConvId(conv), int(seq), _last_visible(cur, user_id, conv, floors[conv])))
    return UserRecords(friends, requests_in, requests_out, blocked, blocked_by, convs, heads, invisible,
                       invitations, settings[0][1] if settings else "", hidden, view_heads)


def _last_visible(cur: Any, user_id: int, conv: str, floor: int) -> StoredMessage | None:
    cur.execute(f"{_SELECT_MESSAGES} m WHERE conv = %s AND seq > %s AND NOT EXISTS"
                " (SELECT 1 FROM hidden_messages h WHERE h.user_id = %s AND h.conv = m.conv AND h.seq = m.seq)"
                " ORDER BY seq DESC LIMIT 1", (conv, floor, user_id))
    row = cur.fetchone()
    return _message(row) if row is not None else None


def _pins(cur: Any, conv: str) -> list[Pin]:
    columns = ", ".join("m." + c.strip() for c in _MESSAGE_COLUMNS.split(","))
    cur.execute(f"SELECT p.seq, p.pinned_by, p.pinned_at, {columns}"
                " FROM message_pins p JOIN messages m ON m.conv = p.conv AND m.seq = p.seq WHERE p.conv = %s"
                " ORDER BY p.pinned_at DESC, p.seq DESC", (conv,))
    return [Pin(ConvId(conv), int(r[0]), UserId(r[1]), int(r[2]), _message(r[3:])) for r in cur.fetchall()]


def _load_group(cur: Any, group_id: int) -> GroupRecords | None:
    cur.execute("SELECT id, name, avatar, notice, owner, join_mode, mute_all, max_members, created_at"
                " FROM chat_groups WHERE id = %s", (group_id,))
    row = cur.fetchone()
    if row is None:
        return None
    group = GroupRecord(*row[:6], bool(row[6]), *row[7:])
    cur.execute("SELECT user_id, role, muted_until, joined_at, joined_seq FROM group_members WHERE group_id = %s"
                " ORDER BY user_id", (group_id,))
    members = [Member(*r) for r in cur.fetchall()]
    cur.execute("SELECT user_id, message, ts FROM group_requests WHERE group_id = %s ORDER BY ts", (group_id,))
    requests = [JoinRequest(*r) for r in cur.fetchall()]
    cur.execute(f"{_SELECT_MESSAGES} WHERE conv = %s ORDER BY seq DESC LIMIT 1", (_group_conv(group_id),))
    head = cur.fetchone()
    cur.execute("SELECT group_id, invitee, inviter, ts, expires_at FROM group_invitations"
                " WHERE group_id = %s AND expires_at > %s ORDER BY invitee", (group_id, _now_ms()))
    invitations = [Invitation(*r) for r in cur.fetchall()]
    return GroupRecords(group, members, requests, _message(head) if head else None, invitations)


def _group_add_rules(cur: Any, user_ids: list[int]) -> dict[UserId, str]:
    rules: dict[UserId, str] = {}
    for start in range(0, len(user_ids), _IN_CHUNK):
        chunk = user_ids[start:start + _IN_CHUNK]
        cur.execute("SELECT u.id, s.group_add FROM users u LEFT JOIN user_settings s ON s.user_id = u.id"
                    f" WHERE u.id IN ({_in_list(len(chunk), 1)}) AND u.deleted_at = 0", chunk)
        rules.update((UserId(u), rule or "") for u, rule in cur.fetchall())
    return rules


def _search(cur: Any, convs: list[tuple[str, int]], text: str, before_id: int, limit: int, deadline: float,
            gone: Callable[[], bool] | None) -> list[StoredMessage]:
    """No full-text index here: the messages of ``convs`` whose content holds ``text`` are
    scanned newest first, and the candidates checked against what a search matches. Each
    statement is stopped by the server once ``deadline`` (monotonic) has passed."""
    if not convs or limit <= 0:
        return []
    needle = text.lower()
    pattern = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    mariadb = "MariaDB" in cur.connection.get_server_info()
    found: list[StoredMessage] = []
    for start in range(0, len(convs), _IN_CHUNK):
        left = deadline - time.monotonic()
        if left <= 0 or (gone is not None and gone()):
            raise SearchTimeout("the search ran past its time bound")
        chunk = convs[start:start + _IN_CHUNK]
        sql = (f"{_SELECT_MESSAGES} WHERE conv IN ({_in_list(len(chunk), 1)}) AND id < %s AND recalled_by = 0"
               f" AND type IN ({content.TEXT}, {content.FILE}, {content.LOCATION}) AND LOWER(content) LIKE %s"
               " ORDER BY id DESC LIMIT %s")
        if mariadb:
            sql = f"SET STATEMENT max_statement_time = {max(left, 0.001):.3f} FOR {sql}"
        else:  # MySQL 5.7+, TiDB
            sql = sql.replace("SELECT ", f"SELECT /*+ MAX_EXECUTION_TIME({max(1, int(left * 1000))}) */ ", 1)
        try:
            cur.execute(sql, (*[conv for conv, _ in chunk], before_id or _NO_BOUND, pattern, limit * 4))
        except MySQLdb.MySQLError as exc:
            if exc.args and exc.args[0] in _STATEMENT_TIMEOUTS:
                raise SearchTimeout("the search ran past its time bound") from None
            raise
        floors = dict(chunk)
        for row in cur.fetchall():
            m = _message(row)
            if m.seq > floors[m.conv] and needle in content.searchable(m.type, m.content).lower():
                found.append(m)
    found.sort(key=lambda m: m.id, reverse=True)
    return found[:limit]


#: a statement stopped at its time bound: MariaDB ER_STATEMENT_TIMEOUT, MySQL and TiDB ER_QUERY_TIMEOUT
_STATEMENT_TIMEOUTS = (1969, 3024)


def _readers(cur: Any, conv: str, seq: int, exclude: int, after: int, limit: int) -> tuple[int, list[UserId]]:
    # only members with joined_seq < seq can have read it (see SqliteStore)
    where = "conv = %s AND read_seq >= %s AND joined_seq < %s AND user_id <> %s"
    cur.execute(f"SELECT count(*) FROM user_convs WHERE {where}", (conv, seq, seq, exclude))
    count = cur.fetchone()[0]
    cur.execute(f"SELECT user_id FROM user_convs WHERE {where} AND user_id > %s ORDER BY user_id LIMIT %s",
                (conv, seq, seq, exclude, after, limit))
    return count, [UserId(r[0]) for r in cur.fetchall()]


# -- schema ------------------------------------------------------------------------------------

def _migrate(conn: Any, database: str) -> None:
    """Apply the missing ``MIGRATIONS`` steps under a server-wide named lock (several
    nodes may open at once; one migrates, the others wait and find nothing to do)."""
    cur = conn.cursor()
    lock = f"edgeim.migrate.{database}"[:64]
    cur.execute("SELECT GET_LOCK(%s, 120)", (lock,))
    if cur.fetchone()[0] != 1:
        raise StoreUnavailable(f"another node has been migrating database {database!r} for 2 minutes;"
                               " try again once it is done")
    try:
        cur.execute(f"CREATE TABLE IF NOT EXISTS schema_version (id TINYINT NOT NULL PRIMARY KEY,"
                    f" version INT NOT NULL) {_TABLE}")
        cur.execute("INSERT IGNORE INTO schema_version (id, version) VALUES (1, 0)")
        cur.execute("SELECT version FROM schema_version WHERE id = 1")
        version = cur.fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreDamaged(f"database {database!r} has schema version {version}, newer than this code"
                               f" ({len(MIGRATIONS)}): run a newer edgeim, or restore a backup")
        for target in range(version + 1, len(MIGRATIONS) + 1):
            for statement in MIGRATIONS[target - 1]:
                cur.execute(statement)
            cur.execute("UPDATE schema_version SET version = %s WHERE id = 1", (target,))
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (database,))
        missing = _TABLES - {r[0] for r in cur.fetchall()}
        if missing:
            raise StoreDamaged(f"database {database!r} says it is at schema version {len(MIGRATIONS)} but has"
                               f" no table {', '.join(sorted(missing))}: restore it from a backup")
    finally:
        cur.execute("SELECT RELEASE_LOCK(%s)", (lock,))
        cur.fetchall()
