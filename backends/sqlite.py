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
while the writer commits. Searches run on a thread of their own (a search can cost far
more than a read: it never makes a SYNC wait), each within ``search_timeout`` seconds
from its call, queueing and indexing included, or ``SearchTimeout``. Nothing here blocks
the event loop.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import sqlite3
import struct
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain, islice
from typing import Any, Callable, Iterator, Sequence

import msgspec

from ..core_ext import content
from ..core_ext.appends import inserted, lay_out, unknown
from ..core_ext.keyfilter import KeyFilter, hold_keys, key_hash, key_rows
from .protocols import (
    Change, ConvId, CreateGroup, DeleteAccount, DissolveGroup, DropFriendRequest, DropFriendship, DropInvitation,
    DropJoinRequest, DropMember, EditMessage, Friend, FriendRequest, GroupId, GroupRecord, GroupRecords, HideMessages,
    Invitation, InvitationsFull, JoinRequest, Member, NewMessage, PINS_FULL, Pin, PinMessage, PutFriendRequest,
    PutInvitations, PutFriendship, PutGroup, PutJoinRequest, PutMember, Reacted, RecallMessage, RevokeToken,
    SetReaction, ShareFiles, UnpinMessage, ViewHead, reaction_summary,
    SearchTimeout, SetBlock, SetCredentials, SetDisabled, SetPasswordHash, SetProfile, SetRemark, SetSettings,
    SetUserConv, StoreClosed, StoreDamaged,
    StoredMessage, StoreUnavailable, User,
    UserConv, UserId, UsernameTaken, UserRecords,
)
from .writes import Append, Apply, CreateUser, Op, Outcome, Sink, WriteQueue, resolve, settle

__all__ = ["SqliteStore", "MIGRATIONS", "INDEX_IDLE", "INDEX_SLICE", "INDEX_SLICE_BYTES", "SEARCH_SCAN_ROWS"]

log = logging.getLogger("edgeim.store")

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
    """
    -- Conversations become per-user state rows that change only when that user acts;
    -- a conversation's newest message is read from messages, so a message is one row
    -- however many members its conversation has.
    CREATE TABLE user_convs (
        user_id    INTEGER NOT NULL,
        conv       TEXT    NOT NULL,
        read_seq   INTEGER NOT NULL DEFAULT 0,
        pinned     INTEGER NOT NULL DEFAULT 0,
        muted      INTEGER NOT NULL DEFAULT 0,
        hidden_seq INTEGER NOT NULL DEFAULT 0,
        joined_seq INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (user_id, conv)
    ) WITHOUT ROWID;
    CREATE INDEX user_convs_by_conv ON user_convs (conv, read_seq);
    INSERT INTO user_convs (user_id, conv) SELECT user_id, conv FROM conversations;
    DROP TABLE conversations;
    CREATE TABLE friends (
        user_id   INTEGER NOT NULL,
        friend_id INTEGER NOT NULL,
        remark    TEXT    NOT NULL DEFAULT '',
        since     INTEGER NOT NULL,
        PRIMARY KEY (user_id, friend_id)
    ) WITHOUT ROWID;
    CREATE TABLE friend_requests (
        receiver INTEGER NOT NULL,
        sender   INTEGER NOT NULL,
        message  TEXT    NOT NULL,
        ts       INTEGER NOT NULL,
        PRIMARY KEY (receiver, sender)
    ) WITHOUT ROWID;
    CREATE INDEX friend_requests_by_sender ON friend_requests (sender);
    CREATE TABLE blocks (
        user_id    INTEGER NOT NULL,
        blocked_id INTEGER NOT NULL,
        PRIMARY KEY (user_id, blocked_id)
    ) WITHOUT ROWID;
    CREATE INDEX blocks_by_blocked ON blocks (blocked_id);
    CREATE TABLE chat_groups (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        name        TEXT    NOT NULL,
        avatar      TEXT    NOT NULL,
        notice      TEXT    NOT NULL,
        owner       INTEGER NOT NULL,
        join_mode   TEXT    NOT NULL,
        mute_all    INTEGER NOT NULL,
        max_members INTEGER NOT NULL,
        created_at  INTEGER NOT NULL
    );
    CREATE TABLE group_members (
        group_id    INTEGER NOT NULL,
        user_id     INTEGER NOT NULL,
        role        TEXT    NOT NULL,
        muted_until INTEGER NOT NULL,
        joined_at   INTEGER NOT NULL,
        joined_seq  INTEGER NOT NULL,
        PRIMARY KEY (group_id, user_id)
    ) WITHOUT ROWID;
    CREATE INDEX group_members_by_user ON group_members (user_id);
    CREATE TABLE group_requests (
        group_id INTEGER NOT NULL,
        user_id  INTEGER NOT NULL,
        message  TEXT    NOT NULL,
        ts       INTEGER NOT NULL,
        PRIMARY KEY (group_id, user_id)
    ) WITHOUT ROWID;
    """,
    """
    CREATE TABLE revoked_tokens (
        token_id   TEXT    NOT NULL PRIMARY KEY,
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX revoked_tokens_by_expiry ON revoked_tokens (expires_at);
    """,
    """
    -- recall (a tombstone keeps who and when), mentions, and the text a search matches: a
    -- trigram index finds any substring of three characters or more, in any script
    ALTER TABLE messages ADD COLUMN mentions TEXT NOT NULL DEFAULT '';
    ALTER TABLE messages ADD COLUMN recalled_by INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE messages ADD COLUMN recalled_at INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE user_convs ADD COLUMN mention_seq INTEGER NOT NULL DEFAULT 0;
    CREATE VIRTUAL TABLE message_text USING fts5(body, tokenize = 'trigram');
    INSERT INTO message_text (rowid, body) SELECT id, content FROM messages WHERE type = 1 AND content <> '';
    """,
    """
    -- each user's own settings (rich messaging: invisible); no row: the defaults
    CREATE TABLE user_settings (
        user_id   INTEGER NOT NULL PRIMARY KEY,
        invisible INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    """,
    """
    -- operations: an operator's disabled accounts (im user disable), whose logins are refused
    ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;
    """,
    """
    -- the search index is written behind the commits, a conversation at a time: each
    -- conversation's messages up to its mark are in message_text (earlier versions
    -- indexed every message in its commit: all of them are)
    CREATE TABLE search_marks (
        conv TEXT    NOT NULL PRIMARY KEY,
        seq  INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO search_marks (conv, seq) SELECT conv, max(seq) FROM messages GROUP BY conv;
    """,
    """
    -- who may add a user to a group ('' never chosen: the node's default), and the
    -- invitations of the adds that setting did not allow, until accepted, declined or expired
    ALTER TABLE user_settings ADD COLUMN group_add TEXT NOT NULL DEFAULT '';
    CREATE TABLE group_invitations (
        group_id   INTEGER NOT NULL,
        invitee    INTEGER NOT NULL,
        inviter    INTEGER NOT NULL,
        ts         INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (group_id, invitee)
    ) WITHOUT ROWID;
    CREATE INDEX group_invitations_by_invitee ON group_invitations (invitee);
    CREATE INDEX group_invitations_by_inviter ON group_invitations (inviter);
    """,
    """
    -- replies and edits: the message a reply quotes, when a message was last edited (an
    -- edit moves the message's change revision, messages.rev, of the step with reactions)
    ALTER TABLE messages ADD COLUMN reply_to INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE messages ADD COLUMN edited_at INTEGER NOT NULL DEFAULT 0;
    """,
    """
    -- accounts and profiles: an avatar and a bio, the credential epoch every token carries
    -- (a new password moves it on: older tokens are refused), and deleted accounts (the
    -- row stays so that the id and the username are never reused)
    ALTER TABLE users ADD COLUMN avatar TEXT NOT NULL DEFAULT '';
    ALTER TABLE users ADD COLUMN bio TEXT NOT NULL DEFAULT '';
    ALTER TABLE users ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE users ADD COLUMN deleted_at INTEGER NOT NULL DEFAULT 0;
    """,
    """
    -- reactions and forwards: each reaction a row; the message keeps their summary and the
    -- conversation's change revision at its last change in place (an edit, a reaction, a
    -- recall: a SYNC lists what changed after a revision, messages_changed); a forwarded
    -- message names its original sender; a file
    -- forwarded to another conversation may be downloaded by that conversation's readers
    ALTER TABLE messages ADD COLUMN fwd INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE messages ADD COLUMN reactions TEXT NOT NULL DEFAULT '';
    ALTER TABLE messages ADD COLUMN rev INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX messages_by_rev ON messages (conv, rev) WHERE rev > 0;
    CREATE TABLE reactions (
        conv    TEXT    NOT NULL,
        seq     INTEGER NOT NULL,
        user_id INTEGER NOT NULL,
        emoji   TEXT    NOT NULL,
        ts      INTEGER NOT NULL,
        PRIMARY KEY (conv, seq, user_id, emoji)
    ) WITHOUT ROWID;
    CREATE TABLE file_convs (
        file_key TEXT NOT NULL,
        conv     TEXT NOT NULL,
        PRIMARY KEY (file_key, conv)
    ) WITHOUT ROWID;
    """,
    """
    -- per-user views: messages a user deleted for themselves (DELETE_FOR_ME), the seq up
    -- to which they cleared a conversation (CLEAR_HISTORY); message pins, per conversation
    ALTER TABLE user_convs ADD COLUMN cleared_seq INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE user_convs ADD COLUMN view_ver INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE hidden_messages (
        user_id INTEGER NOT NULL,
        conv    TEXT    NOT NULL,
        seq     INTEGER NOT NULL,
        at      INTEGER NOT NULL,
        PRIMARY KEY (user_id, conv, seq)
    ) WITHOUT ROWID;
    CREATE TABLE message_pins (
        conv      TEXT    NOT NULL,
        seq       INTEGER NOT NULL,
        pinned_by INTEGER NOT NULL,
        pinned_at INTEGER NOT NULL,
        PRIMARY KEY (conv, seq)
    ) WITHOUT ROWID;
    """,
    """
    -- A retried SEND is known by its (sender, cmid), a key the client makes up, at random:
    -- a unique index on it wrote a random page of a growing b-tree in every commit. The
    -- keys now live in message_cmids, written behind the commits a conversation at a time
    -- up to its cmid_marks seq (as the search index); the writer holds the keys past the
    -- marks in memory and reads them back from messages at open. SQLite cannot drop a
    -- table constraint, so messages is rebuilt without it.
    CREATE TABLE message_cmids (
        sender INTEGER NOT NULL,
        cmid   TEXT    NOT NULL,
        id     INTEGER NOT NULL,
        PRIMARY KEY (sender, cmid)
    ) WITHOUT ROWID;
    INSERT INTO message_cmids (sender, cmid, id) SELECT sender, cmid, id FROM messages;
    CREATE TABLE cmid_marks (
        conv TEXT    NOT NULL PRIMARY KEY,
        seq  INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO cmid_marks (conv, seq) SELECT conv, max(seq) FROM messages GROUP BY conv;
    CREATE TABLE messages_rebuilt (
        id          INTEGER PRIMARY KEY,  -- proposed by the node (NewMessage.msg_id)
        conv        TEXT    NOT NULL,
        seq         INTEGER NOT NULL,
        sender      INTEGER NOT NULL,
        to_user     INTEGER NOT NULL,
        cmid        TEXT    NOT NULL,
        type        INTEGER NOT NULL,
        content     TEXT    NOT NULL,
        ts          INTEGER NOT NULL,
        mentions    TEXT    NOT NULL DEFAULT '',
        recalled_by INTEGER NOT NULL DEFAULT 0,
        recalled_at INTEGER NOT NULL DEFAULT 0,
        reply_to    INTEGER NOT NULL DEFAULT 0,
        edited_at   INTEGER NOT NULL DEFAULT 0,
        fwd         INTEGER NOT NULL DEFAULT 0,
        reactions   TEXT    NOT NULL DEFAULT '',
        rev         INTEGER NOT NULL DEFAULT 0,
        UNIQUE (conv, seq)
    );
    INSERT INTO messages_rebuilt SELECT id, conv, seq, sender, to_user, cmid, type, content, ts, mentions,
        recalled_by, recalled_at, reply_to, edited_at, fwd, reactions, rev FROM messages;
    DROP TABLE messages;
    ALTER TABLE messages_rebuilt RENAME TO messages;
    CREATE INDEX messages_by_rev ON messages (conv, rev) WHERE rev > 0;
    """,
    """
    -- The search index keeps no positions (detail=none) and no column sizes (no ranking
    -- uses them): a message costs about a third less to index and its index half the
    -- disk. A query asks for the trigrams of its text, then compares the text of the
    -- messages that hold them all (_search), as the scan does.
    CREATE VIRTUAL TABLE message_text_rebuilt USING fts5(body, tokenize = 'trigram', detail = none,
                                                         columnsize = 0);
    INSERT INTO message_text_rebuilt (rowid, body) SELECT rowid, body FROM message_text;
    DROP TABLE message_text;
    ALTER TABLE message_text_rebuilt RENAME TO message_text;
    """,
    """
    -- The retry keys as 64-bit hashes of (sender, cmid) (im_key_hash, registered on every
    -- connection of the store), about 20 bytes a row instead of about 60; a hit is checked
    -- against the message's own sender and cmid, so two keys may share a hash. The writer
    -- writes them in hash order over everything it holds, so that one pass writes each
    -- page of the table once, however many conversations the keys come from.
    CREATE TABLE message_keys (
        h  INTEGER NOT NULL,
        id INTEGER NOT NULL,
        PRIMARY KEY (h, id)
    ) WITHOUT ROWID;
    INSERT INTO message_keys (h, id) SELECT im_key_hash(sender, cmid), id FROM message_cmids ORDER BY 1, 2;
    DROP TABLE message_cmids;
    """,
    """
    -- The retry keys in runs: each pass of the writer writes a run of its own, sorted by
    -- hash, after the others (a pass into one table sorted by hash wrote pages all over
    -- it, and cost more the larger it grew); runs are merged by size (_KeyRuns). A lookup
    -- probes every run. key_runs holds each run's number of keys (in the transactions
    -- that write them).
    CREATE TABLE message_keys_runs (
        run INTEGER NOT NULL,
        h   INTEGER NOT NULL,
        id  INTEGER NOT NULL,
        PRIMARY KEY (run, h, id)
    ) WITHOUT ROWID;
    INSERT INTO message_keys_runs (run, h, id) SELECT 0, h, id FROM message_keys ORDER BY h, id;
    DROP TABLE message_keys;
    ALTER TABLE message_keys_runs RENAME TO message_keys;
    CREATE TABLE key_runs (
        run  INTEGER PRIMARY KEY,
        keys INTEGER NOT NULL
    );
    INSERT INTO key_runs (run, keys) SELECT 0, n FROM (SELECT count(*) AS n FROM message_keys) WHERE n > 0;
    """,
)

class _Rows:
    """A statement over many rows, ``head`` + ``row``, ``row``, ... + ``tail``, run as a few
    statements of 64, 32, 16, ... 1 rows. Each statement is one SQLite step, and a step
    gives the GIL up and takes it back: ``executemany`` takes one step a row, so a writer
    thread beside a busy event loop waits for the GIL once a row (with a thread spinning in
    Python beside it, 240-row commits went 2.2 times as fast this way; beside the node's
    loop under send_1to1, which mostly waits in epoll without the GIL, no difference). The
    few sizes keep the statements in the connection's cache (any number of rows in one
    statement would prepare a new one for nearly every batch)."""

    __slots__ = ("_sql", "_width", "_arity")

    def __init__(self, head: str, row: str, tail: str = "") -> None:
        self._width = 64
        self._arity = row.count("?")
        self._sql = {n: head + ", ".join([row] * n) + tail for n in (64, 32, 16, 8, 4, 2, 1)}

    def run(self, conn: sqlite3.Connection, rows: Sequence[Sequence[Any]]) -> None:
        for sql, params in self._statements(rows):
            conn.execute(sql, params)

    def run_flat(self, conn: sqlite3.Connection, values: list[Any], lead: list[Any] | None = None) -> None:
        """``run`` over rows laid end to end in one list, a row's values after another's;
        ``lead``: the values of parameters in ``head``, first in every statement."""
        arity, size = self._arity, self._width
        start, count = 0, len(values) // arity
        while start < count:
            while count - start < size:
                size //= 2
            params = values[start * arity:(start + size) * arity]
            conn.execute(self._sql[size], lead + params if lead else params)
            start += size

    def fetch(self, conn: sqlite3.Connection, rows: Sequence[Sequence[Any]]) -> list[Any]:
        """What the statements (a SELECT) return, all of it."""
        return [found for sql, params in self._statements(rows) for found in conn.execute(sql, params)]

    def _statements(self, rows: Sequence[Sequence[Any]]) -> Iterator[tuple[str, list[Any]]]:
        start, size = 0, self._width
        while start < len(rows):
            while len(rows) - start < size:
                size //= 2
            yield self._sql[size], list(chain.from_iterable(rows[start:start + size]))
            start += size


_BUSY_TIMEOUT_MS = 5000  # how long a statement waits for a lock held by another connection
# The writer's page cache: the b-trees every append walks (messages, its two unique
# indexes, user_convs) stay in memory instead of being read back with a syscall each.
_WRITER_CACHE_KIB = 65536
# WAL pages between two checkpoints (SQLite's default: 1000). The pages every append
# dirties (the ends of those b-trees) are copied to the database once per checkpoint:
# fewer checkpoints copy them fewer times. The WAL grows to about this many 4 KiB pages.
_CHECKPOINT_PAGES = 10000
_SEQ_CACHE_MAX = 100_000  # conversations whose last seq the writer keeps in memory
_NO_BOUND = 2**63 - 1  # messages_before(before_seq=0): every seq is below this
_MAX_IDS = 500  # ids of one messages_by_id (a page's replies: at most MAX_PAGE)

_MESSAGE_COLUMNS = ("id, conv, seq, sender, to_user, cmid, type, content, ts, mentions, recalled_by, recalled_at,"
                    " reply_to, edited_at, fwd, reactions, rev")
# (sender, cmid) are looked up first: _known_ids
_INSERT_MESSAGES = _Rows("INSERT OR FAIL INTO messages (id, conv, seq, sender, to_user, cmid, type, content, ts, mentions)"
                         " VALUES ", "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
#: the (hash, id) rows of message_keys under a list of key hashes: the hashes drive the
#: lookup, one probe of its primary key a hash and a run
_KNOWN_KEYS = _Rows("SELECT m.h, m.id FROM (VALUES ", "(?)", ") AS k CROSS JOIN key_runs AS r"
                    " CROSS JOIN message_keys AS m ON m.run = r.run AND m.h = k.column1")
#: (hash, id) rows into a run (the first parameter)
_WRITE_KEYS = _Rows("INSERT OR IGNORE INTO message_keys (run, h, id) SELECT ?, column1, column2 FROM (VALUES ",
                    "(?, ?)", ")")
_SET_KEY_MARKS = _Rows("INSERT INTO cmid_marks (conv, seq) VALUES ", "(?, ?)",
                       " ON CONFLICT (conv) DO UPDATE SET seq = excluded.seq")
#: retry keys the writer holds in memory (about 100 bytes each) before it writes them all
#: to message_keys, in hash order, as a run of their own, between batches (it also writes
#: them whenever it is idle). The more keys a pass has, the fewer runs a lookup probes and
#: a merge rewrites
KEYS_HELD = 200_000
#: keys written per transaction of a pass or of a merge of runs (between two batches)
KEYS_SLICE = 5_000
#: runs of message_keys of one size tier (tier t: 8**t to 8**(t+1) - 1 keys) that the idle
#: writer merges into one (a key is rewritten about once a tier: log8 of the keys)
KEY_RUNS_MERGED = 8
#: ... and that it merges between batches, when it is not idle (so a busy writer pays for
#: merges later, and a lookup probes at most about this many runs a tier)
KEY_RUNS_MOST = 64
#: keys the writer's filter of stored keys holds before it grows (at 2 bytes a key): at
#: least this many, or twice the keys of message_keys at open
KEY_FILTER_MIN = 1 << 20
_INDEX_TEXT = "INSERT INTO message_text (rowid, body) VALUES (?, ?)"
_SET_MARK = "INSERT INTO search_marks (conv, seq) VALUES (?, ?) ON CONFLICT (conv) DO UPDATE SET seq = excluded.seq"
#: seconds without writes after which the writer indexes messages for search
INDEX_IDLE = 0.05
#: messages read into the search index per index transaction (~20 ms of the writer's time
#: for short messages)
INDEX_SLICE = 2048
#: text bytes indexed per index transaction, whichever of the two comes first (the trigram
#: index takes ~0.3 s a MiB: a slice of 2,048 messages of 32 KB would hold the writer for
#: 20 s; this holds it ~40 ms, one message at least)
INDEX_SLICE_BYTES = 128 * 1024
#: a search whose conversations hold at most this many messages (after the reader's floors)
#: reads them and compares their text; past it, the trigram index is asked (whose cost is
#: that of the query over every conversation's messages: bounded by the search timeout)
SEARCH_SCAN_ROWS = 100_000
#: seconds between two looks at a running search (its client gone, its deadline past)
_SEARCH_WATCH = 0.1
_ENTER_CONV = "INSERT INTO user_convs (user_id, conv) VALUES (?, ?) ON CONFLICT (user_id, conv) DO NOTHING"
_READ_UP_TO_ROWS = _Rows("UPDATE user_convs SET read_seq = max(read_seq, v.column1) FROM (VALUES ", "(?, ?, ?)",
                         ") AS v WHERE user_convs.user_id = v.column2 AND user_convs.conv = v.column3")
_KNOWN_PAIRS_MAX = 200_000  # (user, conv) rows the writer knows exist
_USER_COLUMNS = "id, username, password_hash, nickname, created_at, disabled, avatar, bio, epoch, deleted_at"


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction (BEGIN IMMEDIATE): committed if the block ends, rolled back if it
    raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _verified(conn: sqlite3.Connection, candidates: list[tuple[tuple[int, str], int]]) -> dict[tuple[int, str], int]:
    """Of (key, message id) pairs whose hashes matched, those whose message has that
    (sender, cmid): key -> id. Only retries (and collisions) get here."""
    if not candidates:
        return {}
    ids = list({msg_id for _, msg_id in candidates})
    rows: dict[int, tuple[int, str]] = {}
    for start in range(0, len(ids), _MAX_IDS):
        part = ids[start:start + _MAX_IDS]
        query = f"SELECT id, sender, cmid FROM messages WHERE id IN ({', '.join('?' * len(part))})"
        rows.update((msg_id, (sender, cmid)) for msg_id, sender, cmid in conn.execute(query, part))
    return {key: msg_id for key, msg_id in candidates if rows.get(msg_id) == key}


class _HeldKeys:
    """The writer thread's retry keys of committed messages not yet in message_keys.

    ``held`` fills with every commit (hash -> message id, or ids when two keys share a
    hash). When it holds KEYS_HELD, or the writer is idle or stopping, a *pass* begins:
    what is held is set apart, sorted by hash, and written KEYS_SLICE rows a transaction
    between batches, as a run of its own (``_KeyRuns``); the last transaction of the pass
    moves cmid_marks to the newest seq the pass held of each conversation (every key of
    that conversation up to it is in the table). Keys committed meanwhile wait for the next pass. After a crash the open reads
    the keys past the marks back from the messages (``_find_behind``)."""

    __slots__ = ("held", "tops", "_passing", "_pass_tops", "_rows", "_at", "_runs", "_run")

    def __init__(self, runs: _KeyRuns) -> None:
        self._runs = runs  # the pass writes a run of its own
        self._run: int | None = None  # the pass's run, once its first slice is in
        self.held: dict[int, int | tuple[int, ...]] = {}
        self.tops: dict[str, int] = {}  # conv -> the newest seq among the held keys
        self._passing: dict[int, int | tuple[int, ...]] = {}  # the keys of the pass under way
        self._pass_tops: dict[str, int] = {}
        self._rows: list[int] = []  # the pass's (hash, id) rows, sorted, laid end to end
        self._at = 0  # its rows before this are written

    def __len__(self) -> int:
        return len(self.held) + len(self._passing)

    @property
    def passing(self) -> bool:
        return bool(self._rows)

    def hold(self, keys: dict[tuple[int, str], tuple[int, str, int]], hashes: dict[tuple[int, str], int],
             stored: KeyFilter) -> None:
        """Hold ``keys`` ((sender, cmid) -> (message id, conv, seq)), whose hashes are in
        ``hashes`` or are made here; ``stored`` (the filter of stored keys) takes each hash
        (``keyfilter.hold_keys``: one compiled loop)."""
        hold_keys(keys, hashes, self.held, self.tops, stored)

    def candidates(self, h: int) -> tuple[int, ...]:
        held, passing = self.held.get(h), self._passing.get(h)
        if held is None and passing is None:  # a new key: nearly every one
            return ()
        return _ids(held) + _ids(passing)

    def write_some(self, conn: sqlite3.Connection, most: int) -> bool:
        """Write the next ``most`` rows of the pass under way (beginning one with what is
        held if none is). False if that failed: they stay held, and are correct."""
        if not self._rows:
            if not self.held:
                return True
            self._passing, self.held = self.held, {}
            self._pass_tops, self.tops = self.tops, {}
            # (hash, id) once per key, a hash that several keys share once per id, sorted
            self._rows, self._at = key_rows(self._passing), 0
        rows = self._rows[2 * self._at:2 * (self._at + most)]
        last = 2 * self._at + len(rows) >= len(self._rows)
        run = self._run
        try:
            with _immediate(conn):
                if run is None:
                    run = self._runs.new(conn)
                _WRITE_KEYS.run_flat(conn, rows, [run])
                self._runs.count(conn, [(run, len(rows) // 2)])  # one row a key: key_rows
                if last:
                    _SET_KEY_MARKS.run(conn, list(self._pass_tops.items()))
        except Exception:
            log.exception("writing the retry keys failed", extra={"keys": len(rows) // 2})
            return False
        if self._run is None:
            self._run = run
            self._runs.add(run, writing=True)
        self._runs.counted([(run, len(rows) // 2)])
        self._at += len(rows) // 2
        if last:
            self._passing, self._pass_tops, self._rows, self._at, self._run = {}, {}, [], 0, None
            self._runs.written(run)
        return True


@dataclass(slots=True)
class _Merge:
    """A merge of runs under way: ``slices`` ranges of hashes, ``done`` of them moved;
    ``busy``: it goes on between batches (a tier holds KEY_RUNS_MOST runs), not only
    when the writer is idle."""
    into: int
    sources: tuple[int, ...]
    slices: int
    busy: bool
    done: int = 0


class _KeyRuns:
    """The writer thread's view of the runs of message_keys (run -> its keys, as key_runs
    holds them), and their merges. A run's size tier is t for 8**t to 8**(t+1) - 1 keys
    (``KEY_RUNS_MERGED`` = 8). When a tier holds KEY_RUNS_MERGED runs and the writer is
    idle, or KEY_RUNS_MOST runs, they are merged into a new run, one range of hashes a
    transaction (about KEYS_SLICE keys; a merge begun idle waits while batches come,
    unless a tier fills up meanwhile): the slice copies the range out of every source
    into the new run and deletes it from them, so the new run is written from its start
    to its end as a pass writes one, and a lookup finds each key in a source or in it.
    The last slice takes the sources out of key_runs. Every transaction that moves keys
    counts them in key_runs, so a merge that a stop or a crash cuts short leaves correct
    runs with their counts, which later merges take as any others."""

    __slots__ = ("runs", "_next", "_writing", "_merge", "_due_idle", "_due_busy")

    def __init__(self) -> None:
        self.runs: dict[int, int] = {}
        self._next = 0  # the number of the next run
        self._writing: int | None = None  # the run a pass is writing: merged once written
        self._merge: _Merge | None = None
        self._due_idle = self._due_busy = False

    def load(self, conn: sqlite3.Connection) -> None:
        self.runs = dict(conn.execute("SELECT run, keys FROM key_runs"))
        self._next = max(self.runs, default=-1) + 1
        self._plan()

    def new(self, conn: sqlite3.Connection) -> int:
        """In the transaction that writes its first keys: the number of a new run, in
        key_runs (``add`` once that transaction is committed)."""
        conn.execute("INSERT INTO key_runs (run, keys) VALUES (?, 0)", (self._next,))
        return self._next

    def add(self, run: int, *, writing: bool = False) -> None:
        self.runs[run] = 0
        self._next = run + 1
        if writing:
            self._writing = run

    @staticmethod
    def count(conn: sqlite3.Connection, changes: list[tuple[int, int]]) -> None:
        """In a transaction that moves keys: (run, keys added or, below 0, taken)."""
        conn.executemany("UPDATE key_runs SET keys = keys + ? WHERE run = ?", [(n, run) for run, n in changes])

    def counted(self, changes: list[tuple[int, int]]) -> None:
        """Once that transaction is committed."""
        for run, n in changes:
            self.runs[run] += n

    def written(self, run: int) -> None:
        if self._writing == run:
            self._writing = None
        self._plan()

    def due(self, idle: bool) -> bool:
        if idle:
            return self._merge is not None or self._due_idle
        return self._due_busy or (self._merge is not None and self._merge.busy)

    def _plan(self) -> None:
        """Whether a tier is full enough for a merge, idle or not."""
        fullest = max(map(len, self._tiers().values()), default=0)
        self._due_idle, self._due_busy = fullest >= KEY_RUNS_MERGED, fullest >= KEY_RUNS_MOST

    def _tiers(self) -> dict[int, list[int]]:
        """Tier -> its runs, of the runs that no pass is writing and no merge is moving."""
        busy = {self._writing} | ({self._merge.into, *self._merge.sources} if self._merge else set())
        tiers: dict[int, list[int]] = {}
        for run, keys in self.runs.items():
            if run not in busy:
                tiers.setdefault(self._tier(keys), []).append(run)
        return tiers

    @staticmethod
    def _tier(keys: int) -> int:
        tier = 0
        while keys >= KEY_RUNS_MERGED:
            keys //= KEY_RUNS_MERGED
            tier += 1
        return tier

    def _sources(self, idle: bool) -> tuple[int, ...]:
        """The runs of the lowest tier full enough to merge."""
        enough = KEY_RUNS_MERGED if idle else KEY_RUNS_MOST
        full = [runs for _, runs in sorted(self._tiers().items()) if len(runs) >= enough]
        return tuple(sorted(full[0])) if full else ()

    def merge_some(self, conn: sqlite3.Connection, idle: bool) -> None:
        """The next slice of the merge under way, or the first of a new one. A slice that
        fails is rolled back and tried again later."""
        m = self._merge
        if m is None:
            sources = self._sources(idle)
            if not sources:
                self._plan()
                return
            keys = sum(self.runs[run] for run in sources)
            m = _Merge(self._next, sources, max(1, -(-keys // KEYS_SLICE)), busy=not idle)
        elif not idle:
            m.busy = True  # begun idle; a tier is full now
        step = 2**64 // m.slices
        low = -2**63 + m.done * step
        last = m.done == m.slices - 1
        high = 2**63 - 1 if last else low + step - 1
        try:
            with _immediate(conn):
                if m.done == 0:
                    self.new(conn)
                moved = conn.execute(
                    "INSERT OR IGNORE INTO message_keys (run, h, id) SELECT ?, h, id FROM message_keys"
                    f" WHERE run IN ({', '.join(map(str, m.sources))}) AND h BETWEEN ? AND ? ORDER BY h, id",
                    (m.into, low, high)).rowcount  # the sources' numbers: ints from key_runs
                changes = [(m.into, moved)] + [
                    (run, -conn.execute("DELETE FROM message_keys WHERE run = ? AND h BETWEEN ? AND ?",
                                        (run, low, high)).rowcount) for run in m.sources]
                self.count(conn, changes)
                if last:
                    conn.executemany("DELETE FROM key_runs WHERE run = ?", [(run,) for run in m.sources])
        except Exception:
            log.exception("merging runs of retry keys failed", extra={"runs": len(m.sources)})
            return
        if m.done == 0:
            self._merge = m
            self.add(m.into)
            self._plan()
        self.counted(changes)
        m.done += 1
        if last:
            for run in m.sources:
                del self.runs[run]
            self._merge = None
            self._plan()


def _ids(held: int | tuple[int, ...] | None) -> tuple[int, ...]:
    if held is None:
        return ()
    return held if isinstance(held, tuple) else (held,)


def _user(row: tuple[Any, ...]) -> User:
    return User(*row[:5], bool(row[5]), *row[6:])


@dataclass(slots=True)
class IndexNow:
    """Queued by a search: resolves once ``convs`` are indexed up to their newest message."""
    convs: set[str]
    ticket: asyncio.Future[None]
    sink: Sink
    loop: asyncio.AbstractEventLoop


class SqliteStore(WriteQueue):
    """``Store`` over one SQLite file. See the module docstring for what is durable when."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "FULL",
        batch_max: int = 2048,  # under load: each page a commit dirties serves more messages
        search_timeout: float = 2.0,
    ) -> None:
        synchronous = synchronous.upper()
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be 'FULL' or 'NORMAL', not {synchronous!r}")
        if batch_max < 1:
            raise ValueError("batch_max must be at least 1")
        if search_timeout <= 0:
            raise ValueError("search_timeout must be positive")
        super().__init__()
        self.path = os.fspath(path)
        self.synchronous = synchronous
        self.batch_max = batch_max
        self._writer: threading.Thread | None = None
        self._writer_done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._reader: concurrent.futures.ThreadPoolExecutor | None = None
        self._reader_local = threading.local()
        #: the searches' thread and connection, and the search it runs now (an interrupt
        #: is meant for that one only: ``_interrupt``)
        self.search_timeout = search_timeout
        self._searcher: concurrent.futures.ThreadPoolExecutor | None = None
        self._searcher_conn: sqlite3.Connection | None = None
        self._searching: object | None = None
        self._search_lock = threading.Lock()
        self._accepting = False
        self._closed = False
        # Owned by the writer thread: conv -> last seq assigned (committed, or pending in
        # the batch being written; a failed batch clears it).
        self._last_seq: dict[str, int] = {}
        # Owned by the writer thread: (user, conv) pairs known to have a user_convs row.
        self._known_pairs: set[tuple[int, str]] = set()
        # Owned by the writer thread: the conversations with messages past their search
        # mark (conv -> newest committed seq), and the searches waiting for some of them
        self._unindexed: dict[str, int] = {}
        self._fresh: dict[str, int] = {}  # the same for the batch being written, until it commits
        self._asks: list[IndexNow] = []
        # Owned by the writer thread: the retry keys of committed messages not in
        # message_keys yet (``_HeldKeys``); ``_staged``: the (sender, cmid) keys of the batch
        # being written -> (id, conv, seq), until its commit (a batch that fails takes its
        # keys with it).
        self._runs = _KeyRuns()  # the runs of message_keys
        self._held = _HeldKeys(self._runs)
        #: a hash of every key in message_keys or held (and, rarely, says so of another):
        #: a key it does not hold is new without a lookup (``_known_ids``)
        self._stored_keys = KeyFilter(1)  # sized at open (``_load_keys``)
        self._staged: dict[tuple[int, str], tuple[int, str, int]] = {}
        self._hashes: dict[tuple[int, str], int] = {}  # the batch's keys hashed by ``_known_ids``
        #: messages read into the search index (metrics)
        self.indexed = 0
        self._healthy = True

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r})"

    @property
    def healthy(self) -> bool:
        return self._healthy

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        """Create or migrate the schema, then start the writer and the reader threads."""
        if self._writer is not None or self._closed:
            raise RuntimeError("SqliteStore.open() may be called once")
        await self._start_writer(f"sqlite-writer:{self.path}", self._writer_main)
        # Created after the migrations so the reader never sees a half-built schema; one
        # thread, so its connection never crosses threads (check_same_thread stays on).
        self._reader = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="sqlite-reader", initializer=self._open_reader
        )
        self._searcher = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="sqlite-search", initializer=self._open_searcher
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
        await self._stop_writer()
        if self._reader is not None:
            # Queued after any read in flight; closes the connection on its own thread.
            await asyncio.get_running_loop().run_in_executor(self._reader, self._close_reader)
            self._reader.shutdown(wait=True)
        if self._searcher is not None:
            with self._search_lock:
                if self._searching is not None and self._searcher_conn is not None:
                    self._searcher_conn.interrupt()  # a search in progress ends now
            await asyncio.get_running_loop().run_in_executor(self._searcher, self._close_searcher)
            self._searcher.shutdown(wait=True)

    # -- writes (through the writer thread) --------------------------------------------

    # -- reads (on the reader thread) --------------------------------------------------

    async def get_user(self, user_id: UserId) -> User | None:
        rows = await self._read(f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?", (user_id,))
        return _user(rows[0]) if rows else None

    async def get_user_by_name(self, username: str) -> User | None:
        rows = await self._read(f"SELECT {_USER_COLUMNS} FROM users WHERE username = ?", (username,))
        return _user(rows[0]) if rows else None

    # -- operations (the admin API) ----------------------------------------------------------

    async def list_users(self, after: UserId, limit: int) -> list[User]:
        rows = await self._read(f"SELECT {_USER_COLUMNS} FROM users WHERE id > ? ORDER BY id LIMIT ?",
                                (after, max(0, limit)))
        return [_user(r) for r in rows]

    async def list_groups(self, after: GroupId, limit: int) -> list[tuple[GroupRecord, int]]:
        rows = await self._read(
            "SELECT g.id, g.name, g.avatar, g.notice, g.owner, g.join_mode, g.mute_all, g.max_members, g.created_at,"
            " (SELECT count(*) FROM group_members m WHERE m.group_id = g.id)"
            " FROM chat_groups g WHERE g.id > ? ORDER BY g.id LIMIT ?", (after, max(0, limit)))
        return [(GroupRecord(*r[:6], bool(r[6]), *r[7:9]), r[9]) for r in rows]

    async def messages_after(self, conv: ConvId, after_seq: int, limit: int, max_bytes: int = 0) -> list[StoredMessage]:
        if limit <= 0:  # SQLite reads LIMIT -1 as "no limit"
            return []
        return await self._read_with(
            _read_messages, f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conv = ? AND seq > ? ORDER BY seq LIMIT ?",
            (conv, after_seq, limit), max_bytes,
        )

    async def messages_before(self, conv: ConvId, before_seq: int, limit: int, max_bytes: int = 0) -> list[StoredMessage]:
        if limit <= 0:
            return []
        rows = await self._read_with(
            _read_messages, f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conv = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
            (conv, before_seq if before_seq > 0 else _NO_BOUND, limit), max_bytes,
        )
        rows.reverse()
        return rows

    async def messages_by_id(self, conv: ConvId, ids: Sequence[int]) -> list[StoredMessage]:
        ids = list(dict.fromkeys(ids))[:_MAX_IDS]
        if not ids:
            return []
        return await self._read_with(
            _read_messages, f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conv = ? AND id IN ({', '.join('?' * len(ids))})",
            (conv, *ids), 0)

    async def messages_changed(self, conv: ConvId, after_rev: int, up_to_seq: int,
                               limit: int) -> tuple[list[StoredMessage], int]:
        return await self._read_with(_messages_changed, conv, after_rev, up_to_seq, limit)

    async def file_convs(self, key: str) -> list[ConvId]:
        return [row[0] for row in await self._read("SELECT conv FROM file_convs WHERE file_key = ?", (key,))]

    async def load_user(self, user_id: UserId) -> UserRecords:
        return await self._read_with(_load_user, user_id)

    async def hidden_seqs(self, user: UserId, conv: ConvId, after_seq: int, upto_seq: int) -> list[int]:
        rows = await self._read("SELECT seq FROM hidden_messages WHERE user_id = ? AND conv = ? AND seq > ?"
                                " AND seq <= ? ORDER BY seq", (user, conv, after_seq, upto_seq))
        return [r[0] for r in rows]

    async def last_visible(self, user: UserId, conv: ConvId, floor: int) -> StoredMessage | None:
        return await self._read_with(_last_visible, user, conv, floor)

    async def pins(self, conv: ConvId) -> list[Pin]:
        return await self._read_with(_pins, conv)

    async def load_group(self, group_id: GroupId) -> GroupRecords | None:
        return await self._read_with(_load_group, group_id)

    async def token_revoked(self, token_id: str) -> bool:
        rows = await self._read("SELECT 1 FROM revoked_tokens WHERE token_id = ?", (token_id,))
        return bool(rows)

    async def group_add_rules(self, user_ids: Sequence[UserId]) -> dict[UserId, str]:
        wanted = [u for u in dict.fromkeys(user_ids) if 0 < u <= 2**63 - 1]
        return await self._read_with(_group_add_rules, wanted) if wanted else {}

    async def readers(self, conv: ConvId, seq: int, exclude: UserId, after: UserId, limit: int) -> tuple[int, list[UserId]]:
        return await self._read_with(_readers, conv, seq, exclude, after, limit)

    async def search(self, convs: Sequence[tuple[ConvId, int]], text: str, before_id: int,
                     limit: int, gone: Callable[[], bool] | None = None) -> list[StoredMessage]:
        """Matches every message acknowledged before the call: the conversations' messages
        not in the index yet are indexed first (on the writer, INDEX_SLICE messages or
        INDEX_SLICE_BYTES at a time, commits going on between two slices). Answers within
        ``search_timeout`` seconds of the call or raises ``SearchTimeout`` (what was asked
        of the writer goes on: the next search finds it done). ``gone()`` true: the caller
        left; the search is dropped where it is (``SearchTimeout`` too, nobody reads it)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.search_timeout
        behind = [conv for conv, _ in convs if conv in self._unindexed]  # a read of the writer's dict
        if behind:
            if not self._accepting:
                raise StoreClosed(f"{self!r} is {'closed' if self._closed else 'not open'}")
            indexed: asyncio.Future[None] = loop.create_future()
            self._enqueue(IndexNow(set(behind), indexed, resolve, loop))  # type: ignore[arg-type]
            await self._watch(indexed, deadline, gone)
            indexed.result()
        if not self._accepting or self._searcher is None:
            raise StoreClosed(f"{self!r} is {'closed' if self._closed else 'not open'}")
        token = object()
        job = self._searcher.submit(self._call_searcher, token, list(convs), text, before_id, limit)
        await self._watch(asyncio.wrap_future(job), deadline, gone, token, job)
        return job.result()

    async def _watch(self, future: asyncio.Future[Any], deadline: float, gone: Callable[[], bool] | None,
                     token: object | None = None, job: concurrent.futures.Future[Any] | None = None) -> None:
        """Wait for ``future`` until ``deadline`` or until the caller is gone; then a
        search (``job``) still queued is cancelled, a running one interrupted (``token``), and
        SearchTimeout raised (even if it ended meanwhile: it is late). Never cancels
        ``future`` when it is the writer's (its ticket settles when the writer is done)."""
        loop = asyncio.get_running_loop()
        try:
            while not future.done():
                left = deadline - loop.time()
                if left <= 0 or (gone is not None and gone()):
                    break
                await asyncio.wait({future}, timeout=min(left, _SEARCH_WATCH))
        except asyncio.CancelledError:  # the request itself was cancelled (shutdown)
            if job is not None and token is not None and not job.cancel():
                self._interrupt(token)
            raise
        if future.done():
            return
        if job is None or token is None:  # indexing: it goes on without this search
            raise SearchTimeout(f"the search took longer than {self.search_timeout:g} s (indexing its conversations)")
        why = "its client left" if gone is not None and gone() else f"it took longer than {self.search_timeout:g} s"
        if job.cancel():  # still queued behind other searches: never runs
            raise SearchTimeout(f"the search was dropped before it ran: {why}")
        self._interrupt(token)
        await asyncio.wait({future})  # the statement ends at its next step
        if not future.cancelled():
            future.exception()  # retrieved (interrupted, or done just before): past the deadline either way
        raise SearchTimeout(f"the search was stopped: {why}")

    def _interrupt(self, token: object) -> None:
        with self._search_lock:
            if self._searching is token and self._searcher_conn is not None:
                self._searcher_conn.interrupt()

    def _call_searcher(self, token: object, *args: Any) -> list[StoredMessage]:
        conn = self._searcher_conn
        assert conn is not None
        with self._search_lock:
            self._searching = token
        try:
            conn.execute("BEGIN")  # one snapshot for every statement
            try:
                return _search(conn, *args)
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")  # read only: nothing to keep
        finally:
            with self._search_lock:
                self._searching = None

    def _open_searcher(self) -> None:
        conn = self._connect()
        conn.execute("PRAGMA query_only = ON")
        self._searcher_conn = conn

    def _close_searcher(self) -> None:
        if self._searcher_conn is not None:
            self._searcher_conn.close()

    async def _read(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        if not self._accepting or self._reader is None:
            raise StoreClosed(f"{self!r} is {'closed' if self._closed else 'not open'}")
        return await asyncio.get_running_loop().run_in_executor(self._reader, self._fetchall, sql, params)

    async def _read_with(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(connection, *args)`` on the reader thread (several statements, one call)."""
        if not self._accepting or self._reader is None:
            raise StoreClosed(f"{self!r} is {'closed' if self._closed else 'not open'}")
        return await asyncio.get_running_loop().run_in_executor(self._reader, self._call_reader, fn, args)

    def _call_reader(self, fn: Any, args: tuple[Any, ...]) -> Any:
        conn = self._reader_local.conn
        conn.execute("BEGIN")  # one snapshot for every statement of fn
        try:
            return fn(conn, *args)
        finally:
            conn.execute("COMMIT")

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
        conn.create_function("im_key_hash", 2, key_hash, deterministic=True)  # migration step 15
        return conn

    def _writer_main(self, ready: concurrent.futures.Future[None]) -> None:
        try:
            _check_wal(self.path + "-wal")  # before SQLite replays it and forgets what it dropped
            conn = self._connect()
        except BaseException as exc:
            ready.set_exception(_open_error(self.path, exc))
            self._writer_done.set_result(None)
            return
        try:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute(f"PRAGMA synchronous = {self.synchronous}")
                conn.execute(f"PRAGMA cache_size = -{_WRITER_CACHE_KIB}")
                conn.execute(f"PRAGMA wal_autocheckpoint = {_CHECKPOINT_PAGES}")
                problems = [row[0] for row in conn.execute("PRAGMA quick_check(5)")]
                if problems != ["ok"]:
                    raise StoreDamaged(f"{self.path} failed its integrity check: {'; '.join(problems)}."
                                       " Restore it from a backup (or try the sqlite3 .recover command on a copy).")
                _migrate(conn)
                self._load_keys(conn)
                self._find_behind(conn)  # before open() returns: a search reads it
            except BaseException as exc:
                ready.set_exception(_open_error(self.path, exc))
                return
            ready.set_result(None)
            self._writer_loop(conn)
        finally:
            conn.close()
            self._writer_done.set_result(None)

    def _writer_loop(self, conn: sqlite3.Connection) -> None:
        for batch in self._batches(self.batch_max, self._index_wait):
            if batch:
                self._commit_batch(conn, batch)
            held = self._held
            if held.passing or len(held.held) >= KEYS_HELD or (not batch and held.held):
                held.write_some(conn, KEYS_SLICE)
            elif self._runs.due(idle=not batch):
                self._runs.merge_some(conn, idle=not batch)
            if self._asks:
                self._index_asked(conn)
            elif not batch and self._unindexed:  # nothing else to do: catch up a little
                self._index_some(conn, list(self._unindexed), INDEX_SLICE, INDEX_SLICE_BYTES)
        while self._held and self._held.write_some(conn, KEYS_SLICE):  # a stop: the next open reads none back
            pass

    def _commit_batch(self, conn: sqlite3.Connection, batch: list[Op]) -> None:
        """One transaction for the whole batch; every write is settled whatever happens.
        The messages between two changes go in with one multi-row statement; if one of
        them breaks a constraint, the transaction is rolled back and the batch written
        again row by row, which sorts them out (``_Careful``)."""
        if any(type(op) is IndexNow for op in batch):  # searches: settled once indexed
            self._asks += [op for op in batch if type(op) is IndexNow]  # type: ignore[misc]
            batch = [op for op in batch if type(op) is not IndexNow]
            if not batch:
                return
        self._hashes.clear()
        try:
            try:
                outcomes = self._write_batch(conn, batch, careful=False)
            except _Careful:
                self._forget_batch()
                outcomes = self._write_batch(conn, batch, careful=True)
        except Exception as exc:
            self._forget_batch()
            self._healthy = False
            failure = StoreUnavailable(f"the store could not commit: {exc}")
            failure.__cause__ = exc
            outcomes = [(op.ticket, None, failure) for op in batch]
        else:
            self._healthy = True
            self._unindexed.update(self._fresh)
            if self._staged:
                self._hold_keys()
        settle(batch, outcomes)

    def _forget_batch(self) -> None:
        """A transaction rolled back: the seqs it handed out and the list rows it wrote are
        forgotten (both reload lazily), and so is everything it staged."""
        self._last_seq.clear()
        self._known_pairs.clear()
        self._staged.clear()
        self._fresh.clear()

    def _write_batch(self, conn: sqlite3.Connection, batch: list[Op], careful: bool) -> list[Outcome]:
        """The batch in one transaction, committed; what each op came to."""
        outcomes: list[Outcome] = []
        self._staged.clear()
        self._fresh.clear()
        with _immediate(conn):
            # (sender, conv) -> the newest seq it sent in this batch: its read cursor moves
            # there with one UPDATE per pair
            touched: dict[tuple[int, str], int] = {}
            run: list[Append] = []
            for op in batch:
                if type(op) is Append:
                    run.append(op)
                    continue
                if run:
                    self._insert_run(conn, run, touched, outcomes, careful)
                    run = []
                try:
                    if isinstance(op, Apply):
                        result: Any = self._apply_change(conn, op.change, touched)
                    else:
                        result = _insert_user(conn, op)
                except Exception as exc:
                    if not _fails_one_op(exc):
                        raise
                    outcomes.append((op.ticket, None, exc))
                else:
                    outcomes.append((op.ticket, result, None))
            if run:
                self._insert_run(conn, run, touched, outcomes, careful)
            if touched:
                _READ_UP_TO_ROWS.run(conn, [(seq, user, conv) for (user, conv), seq in touched.items()])
        return outcomes

    def _insert_run(self, conn: sqlite3.Connection, run: list[Append], touched: dict[tuple[int, str], int],
                    outcomes: list[Outcome], careful: bool) -> None:
        """Messages with no change between them: seqs assigned here, then one multi-row
        INSERT OR FAIL. That needs no statement journal (SQLite keeps one for a statement
        that may have to undo its own rows, and writes it to a temporary file once it
        passes 64 KiB: most of the writer's syscalls before), so a constraint (a retried
        cmid stored earlier, a stale seq) leaves the rows before it in place: the batch is
        then rolled back and written again ``careful``-ly, a row at a time."""
        if careful:
            for op in run:
                try:
                    outcomes.append((op.ticket, self._insert_message(conn, op.message, touched), None))
                except Exception as one:
                    if not _fails_one_op(one):
                        raise
                    self._last_seq.pop(op.message.conv, None)  # a stale seq is one way to get here
                    outcomes.append((op.ticket, None, one))
            return
        if unknown(run, self._staged, self._hashes, key_hash, self._stored_keys):  # nearly every run
            self._insert_new(conn, run, touched, outcomes)
            return
        messages = [op.message for op in run]
        keys = [(m.sender, m.cmid) for m in messages]
        known = self._known_ids(conn, keys)
        if not known and not [m for m in messages if m.reply_to or m.fwd]:  # the filter held another key's hash
            self._insert_new(conn, run, touched, outcomes)
            return
        last_seq = self._last_seq
        rows: list[tuple[Any, ...]] = []
        firsts: dict[tuple[int, str], int] = {}  # (sender, cmid) -> its row in ``rows``
        # for each op of the run: its row (a repeat of a pair: -1 - that row; a pair stored
        # before this run: None, in ``earlier``)
        order: list[int | None] = []
        earlier: dict[tuple[int, str], StoredMessage] = {}
        for op in run:
            m = op.message
            key = (m.sender, m.cmid)
            first = firsts.get(key)
            if first is not None:  # the same pair twice in one run: the second is a retry
                order.append(-1 - first)
                continue
            if key in known:  # a retry of a message stored before
                if key not in earlier:
                    earlier[key] = self._message_by_id(conn, known[key])
                order.append(None)
                continue
            conv = m.conv
            seq = self._next_seq(conn, conv)
            last_seq[conv] = seq
            firsts[key] = len(rows)
            order.append(len(rows))
            rows.append((m.msg_id, conv, seq, m.sender, m.to, m.cmid, m.type, m.content, m.ts, m.mentions))
        _insert_messages(conn, list(chain.from_iterable(rows)))
        stored = [StoredMessage(*row) for row in rows]
        new: list[tuple[NewMessage, int]] = []
        staged = self._staged
        for row in rows:
            staged[(row[3], row[5])] = (row[0], row[1], row[2])
        for op, at in zip(run, order):
            if at is None:
                outcomes.append((op.ticket, earlier[(op.message.sender, op.message.cmid)], None))
                continue
            if at < 0:
                outcomes.append((op.ticket, msgspec.structs.replace(stored[-1 - at], duplicate=True), None))
                continue
            message = stored[at]
            if op.message.reply_to:
                message = stored[at] = _replied(conn, op.message, message)  # (a retry later in the run: as is)
            if op.message.fwd:  # a forward's copy: the mark is written beside the run's INSERT
                message = stored[at] = self._forwarded(conn, message, op.message.fwd)
            new.append((op.message, message.seq))
            outcomes.append((op.ticket, message, None))
        self._inserted(conn, new, touched)

    def _insert_new(self, conn: sqlite3.Connection, run: list[Append], touched: dict[tuple[int, str], int],
                    outcomes: list[Outcome]) -> None:
        """``_insert_run`` for a run of new messages that neither reply nor forward (nearly
        every run): one compiled loop (``appends.lay_out``) gives each its seq, its row's
        values, its StoredMessage and its outcome, then one multi-row INSERT and the SQL the
        rows bring along (``_brought_along``)."""
        last_seq = self._last_seq
        values, later = lay_out(run, conn, self._current_seq, last_seq, self._staged, StoredMessage, outcomes,
                                touched, self._fresh, self._known_pairs)
        _insert_messages(conn, values)
        if later:
            self._brought_along(conn, later)
        if len(last_seq) > _SEQ_CACHE_MAX:  # as _next_seq: the oldest go, and reload on use
            for conv in list(islice(last_seq, len(last_seq) - _SEQ_CACHE_MAX)):
                del last_seq[conv]

    def _insert_message(self, conn: sqlite3.Connection, m: NewMessage, touched: dict[tuple[int, str], int]) -> StoredMessage:
        known = self._known_ids(conn, [(m.sender, m.cmid)])
        if known:  # (sender, cmid) already stored, maybe earlier in this batch
            return self._message_by_id(conn, known[(m.sender, m.cmid)])
        seq = self._next_seq(conn, m.conv)
        _INSERT_MESSAGES.run(conn, [(m.msg_id, m.conv, seq, m.sender, m.to, m.cmid, m.type, m.content, m.ts, m.mentions)])
        self._staged[(m.sender, m.cmid)] = (m.msg_id, m.conv, seq)
        self._last_seq[m.conv] = seq
        stored = StoredMessage(m.msg_id, m.conv, seq, m.sender, m.to, m.cmid, m.type, m.content, m.ts, m.mentions)
        if m.reply_to:
            stored = _replied(conn, m, stored)
        if m.fwd:
            stored = self._forwarded(conn, stored, m.fwd)
        self._inserted(conn, [(m, seq)], touched)
        return stored

    # -- retries: the (sender, cmid) keys, behind the commits ------------------------------

    def _known_ids(self, conn: sqlite3.Connection, keys: list[tuple[int, str]]) -> dict[tuple[int, str], int]:
        """The ids of the messages stored under any of ``keys``: those of this batch, then,
        of the rest, those whose hash the filter of stored keys holds (every key held in
        memory or in message_keys is in it): held in memory, then in message_keys (a hash
        found is a candidate, the message's own sender and cmid decide)."""
        found: dict[tuple[int, str], int] = {}
        maybe: list[tuple[tuple[int, str], int]] = []  # (key, its hash) the filter holds
        staged, hashes, stored = self._staged, self._hashes, self._stored_keys
        for key in keys:
            hit = staged.get(key)
            if hit is not None:
                found[key] = hit[0]
                continue
            h = hashes.get(key)
            if h is None:
                h = hashes[key] = key_hash(*key)
            if h in stored:
                maybe.append((key, h))
        if not maybe:  # new keys: nearly always
            return found
        held = self._held
        found.update(_verified(conn, [(key, msg_id) for key, h in maybe for msg_id in held.candidates(h)]))
        by_hash: dict[int, list[tuple[int, str]]] = {}
        for key, h in maybe:
            if key not in found:
                by_hash.setdefault(h, []).append(key)
        if not by_hash:
            return found
        rows = _KNOWN_KEYS.fetch(conn, [(h,) for h in by_hash])
        found.update(_verified(conn, [(key, msg_id) for h, msg_id in rows for key in by_hash[h]]))
        return found

    @staticmethod
    def _message_by_id(conn: sqlite3.Connection, msg_id: int) -> StoredMessage:
        row = conn.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?", (msg_id,)).fetchone()
        return _stored(row, duplicate=True)

    def _hold_keys(self) -> None:
        """A batch committed: its keys join those held until ``_HeldKeys.write_some``, and
        the filter of stored keys."""
        self._held.hold(self._staged, self._hashes, self._stored_keys)
        self._staged.clear()
        self._hashes.clear()

    @staticmethod
    def _forwarded(conn: sqlite3.Connection, stored: StoredMessage, fwd: int) -> StoredMessage:
        conn.execute("UPDATE messages SET fwd = ? WHERE id = ?", (fwd, stored.id))
        return msgspec.structs.replace(stored, fwd=fwd)

    def _inserted(self, conn: sqlite3.Connection, new: list[tuple[NewMessage, int]],
                  touched: dict[tuple[int, str], int]) -> None:
        """What new messages' rows ((message, its seq), in order: a run's in one call) bring
        along in their transaction: the senders' cursors and the conversations' newest seqs
        (``appends.inserted``), then ``_brought_along``. Their text goes into the search
        index later (their conversations are marked unindexed: ``_index_some``)."""
        later = inserted(new, touched, self._fresh, self._known_pairs)
        if later:
            self._brought_along(conn, later)

    def _brought_along(self, conn: sqlite3.Connection, later: list[tuple[NewMessage, int]]) -> None:
        """The SQL of new rows that need it (``appends.inserted`` picks them), in order: a
        private conversation enters both users' lists at its first message, and mentions
        move the mentioned users' marks."""
        known = self._known_pairs
        for m, seq in later:
            conv = m.conv
            for user in m.members:
                if (user, conv) not in known:
                    conn.execute(_ENTER_CONV, (user, conv))
                    if len(known) >= _KNOWN_PAIRS_MAX:
                        known.clear()
                    known.add((user, conv))
            if m.mentions:
                _mark_mentions(conn, conv, seq, m.mentions)

    # -- the search index, behind the commits ---------------------------------------------

    def _index_wait(self) -> float | None:
        """How long the writer waits for writes before it indexes or writes the keys it
        holds (None: forever; 0 while searches wait: a slice, then whatever writes came
        meanwhile, then the next slice)."""
        if self._asks:
            return 0
        return INDEX_IDLE if self._unindexed or self._held or self._runs.due(idle=True) else None

    def _index_asked(self, conn: sqlite3.Connection) -> None:
        """A slice of the conversations searches wait for; the searches whose
        conversations are all indexed now are told. Between two slices, commits go on."""
        wanted = list(dict.fromkeys(c for ask in self._asks for c in ask.convs if c in self._unindexed))
        if wanted:
            self._index_some(conn, wanted, INDEX_SLICE, INDEX_SLICE_BYTES)
        done = [ask for ask in self._asks if not any(c in self._unindexed for c in ask.convs)]
        if done:
            self._asks = [ask for ask in self._asks if ask not in done]
            settle(done, [(ask.ticket, None, None) for ask in done])  # type: ignore[arg-type]

    def _index_some(self, conn: sqlite3.Connection, convs: list[str], most: int, most_bytes: int) -> None:
        """Index up to ``most`` messages of ``convs`` past their marks, and no more once
        their text passes ``most_bytes``, in one transaction that moves the marks; a
        conversation indexed up to its newest message is done."""
        try:
            with _immediate(conn):
                rows: list[tuple[int, str]] = []
                marks: list[tuple[str, int]] = []
                finished: list[str] = []
                size = 0
                for conv in convs:
                    if len(rows) >= most or size >= most_bytes:
                        break
                    mark = conn.execute("SELECT seq FROM search_marks WHERE conv = ?", (conv,)).fetchone()
                    last = mark[0] if mark else 0
                    reading = conn.execute(
                        "SELECT id, seq, type, content, recalled_by FROM messages WHERE conv = ? AND seq > ?"
                        " ORDER BY seq LIMIT ?", (conv, last, max(1, most - len(rows))))
                    for msg_id, seq, type_, stored, recalled_by in reading:
                        text = "" if recalled_by else content.searchable(type_, stored)
                        if text:
                            rows.append((msg_id, text))
                            size += len(text)
                        last = seq
                        if size >= most_bytes:
                            break
                    reading.close()  # (left part read when the bytes ran out)
                    marks.append((conv, last))
                    if last >= self._unindexed.get(conv, 0):
                        finished.append(conv)
                if rows:
                    # in id order: FTS5 writes out what it holds in memory as a new segment
                    # whenever a rowid comes lower than the one before, and one
                    # conversation after another would do that at every conversation
                    rows.sort()
                    conn.executemany(_INDEX_TEXT, rows)
                conn.executemany(_SET_MARK, marks)
        except Exception as exc:  # the messages are safe; a search on them fails until it works
            log.exception("indexing messages for search failed", extra={"convs": len(convs)})
            failure = StoreUnavailable(f"the search index could not be written: {exc}")
            asks, self._asks = self._asks, []
            settle(asks, [(ask.ticket, None, failure) for ask in asks])  # type: ignore[arg-type]
            return
        for conv in finished:
            self._unindexed.pop(conv, None)
        self.indexed += len(rows)

    def _load_keys(self, conn: sqlite3.Connection) -> None:
        """At open: the filter of stored keys, read from message_keys (about 0.35 s a
        million keys; room for twice as many, at 2 bytes each)."""
        self._runs.load(conn)
        stored = conn.execute("SELECT count(*) FROM message_keys").fetchone()[0]
        self._stored_keys = KeyFilter(max(KEY_FILTER_MIN, 2 * stored))
        add = self._stored_keys.add
        for (h,) in conn.execute("SELECT h FROM message_keys"):
            add(h)

    def _find_behind(self, conn: sqlite3.Connection) -> None:
        """At open: the conversations whose newest messages are past their search mark,
        and the keys of the messages past their cmid mark, held again (both: committed
        after the last index or key transaction before a stop or a crash)."""
        marks = dict(conn.execute("SELECT conv, seq FROM search_marks").fetchall())
        key_marks = dict(conn.execute("SELECT conv, seq FROM cmid_marks").fetchall())
        tops = conn.execute("SELECT conv, max(seq) FROM messages GROUP BY conv").fetchall()
        self._unindexed = {conv: top for conv, top in tops if top > marks.get(conv, 0)}
        for conv, top in tops:
            if top > key_marks.get(conv, 0):
                for sender, cmid, msg_id, seq in conn.execute(
                        "SELECT sender, cmid, id, seq FROM messages WHERE conv = ? AND seq > ? ORDER BY seq",
                        (conv, key_marks.get(conv, 0))):
                    self._staged[(sender, cmid)] = (msg_id, conv, seq)
        self._hold_keys()

    def _next_seq(self, conn: sqlite3.Connection, conv: str) -> int:
        """The seq the next message of ``conv`` gets (it is cached once the message is in)."""
        last = self._last_seq.get(conv)
        if last is None:
            last = self._current_seq(conn, conv)
            if len(self._last_seq) >= _SEQ_CACHE_MAX:
                del self._last_seq[next(iter(self._last_seq))]  # drop the oldest; it reloads on use
        return last + 1

    def _current_seq(self, conn: sqlite3.Connection, conv: str) -> int:
        last = self._last_seq.get(conv)
        if last is None:
            last = conn.execute("SELECT coalesce(max(seq), 0) FROM messages WHERE conv = ?", (conv,)).fetchone()[0]
        return last

    def _apply_change(self, conn: sqlite3.Connection, change: Change, touched: dict[tuple[int, str], int]) -> Any:
        """One change in a savepoint: if one of its statements fails, none of them stays."""
        conn.execute("SAVEPOINT change")
        try:
            result = _CHANGES[type(change)](self, conn, change)
        except BaseException:
            conn.execute("ROLLBACK TO change")
            conn.execute("RELEASE change")
            raise
        conn.execute("RELEASE change")
        if isinstance(change, SetUserConv):  # its read cursor is newer than this batch's sends
            touched.pop((change.user, change.state.conv), None)
        return result

    def _create_group(self, conn: sqlite3.Connection, c: CreateGroup) -> GroupRecords:
        cur = conn.execute(
            "INSERT INTO chat_groups (name, avatar, notice, owner, join_mode, mute_all, max_members, created_at)"
            " VALUES (?, ?, ?, ?, ?, 0, ?, ?)",
            (c.name, c.avatar, c.notice, c.owner, c.join_mode, c.max_members, c.ts),
        )
        group = GroupRecord(GroupId(cur.lastrowid or 0), c.name, c.avatar, c.notice, c.owner, c.join_mode,
                            False, c.max_members, c.ts)
        members = [Member(c.owner, "owner", 0, c.ts, 0)]
        members += [Member(user, "member", 0, c.ts, 0) for user in dict.fromkeys(c.members) if user != c.owner]
        for m in members:
            _put_member_row(conn, group.id, m)
        invitations: list[Invitation] = []
        if c.invited:
            invitations = _put_invitations(self, conn, PutInvitations(
                group.id, c.owner, c.invited, c.ts, c.expires_at, c.max_per_invitee, c.max_per_inviter))
        return GroupRecords(group, members, [], invitations=invitations)

    def _put_member(self, conn: sqlite3.Connection, c: PutMember) -> Member:
        row = conn.execute(
            "SELECT joined_at, joined_seq FROM group_members WHERE group_id = ? AND user_id = ?", (c.group, c.user)
        ).fetchone()
        if row is None:  # a new member starts after the messages already there
            member = Member(c.user, c.role, c.muted_until, c.ts, self._current_seq(conn, _group_conv(c.group)))
        else:
            member = Member(c.user, c.role, c.muted_until, row[0], row[1])
        _put_member_row(conn, c.group, member)
        conn.execute("DELETE FROM group_requests WHERE group_id = ? AND user_id = ?", (c.group, c.user))
        conn.execute("DELETE FROM group_invitations WHERE group_id = ? AND invitee = ?", (c.group, c.user))
        return member

    def _drop_member(self, conn: sqlite3.Connection, c: DropMember) -> None:
        conn.execute("DELETE FROM group_members WHERE group_id = ? AND user_id = ?", (c.group, c.user))
        conn.execute("DELETE FROM user_convs WHERE user_id = ? AND conv = ?", (c.user, _group_conv(c.group)))
        conn.execute("DELETE FROM hidden_messages WHERE user_id = ? AND conv = ?", (c.user, _group_conv(c.group)))
        self._known_pairs.discard((c.user, _group_conv(c.group)))

    def _dissolve(self, conn: sqlite3.Connection, c: DissolveGroup) -> None:
        conv = _group_conv(c.group)
        conn.execute("DELETE FROM chat_groups WHERE id = ?", (c.group,))
        conn.execute("DELETE FROM group_members WHERE group_id = ?", (c.group,))
        conn.execute("DELETE FROM group_requests WHERE group_id = ?", (c.group,))
        conn.execute("DELETE FROM group_invitations WHERE group_id = ?", (c.group,))
        conn.execute("DELETE FROM user_convs WHERE conv = ?", (conv,))
        conn.execute("DELETE FROM hidden_messages WHERE conv = ?", (conv,))
        conn.execute("DELETE FROM message_pins WHERE conv = ?", (conv,))
        self._known_pairs = {pair for pair in self._known_pairs if pair[1] != conv}

    def _set_user_conv(self, conn: sqlite3.Connection, c: SetUserConv) -> None:
        st = c.state
        conn.execute(
            "UPDATE user_convs SET read_seq = max(read_seq, ?), pinned = ?, muted = ?, hidden_seq = ?,"
            " cleared_seq = max(cleared_seq, ?), view_ver = max(view_ver, ?) WHERE user_id = ? AND conv = ?",
            (st.read_seq, st.pinned, st.muted, st.hidden_seq, st.cleared_seq, st.view_ver, c.user, st.conv),
        )



def _mark_mentions(conn: sqlite3.Connection, conv: str, seq: int, mentions: str) -> None:
    if mentions == "*":
        conn.execute("UPDATE user_convs SET mention_seq = ? WHERE conv = ?", (seq, conv))
        return
    users = [int(u) for u in mentions.split(",")]
    conn.execute(f"UPDATE user_convs SET mention_seq = ? WHERE conv = ? AND user_id IN ({', '.join('?' * len(users))})",
                 (seq, conv, *users))


def _recall(store: SqliteStore, conn: sqlite3.Connection, c: RecallMessage) -> StoredMessage | None:
    cur = conn.execute(
        "UPDATE messages SET content = '', mentions = '', recalled_by = ?, recalled_at = ?"
        " WHERE conv = ? AND seq = ? AND recalled_by = 0", (c.by, c.at, c.conv, c.seq))
    if cur.rowcount == 0:
        return None
    # its reactions go with its content; the recall moves the conversation's change
    # revision, so that a device away meanwhile learns it (SYNC changes_after)
    conn.execute("DELETE FROM reactions WHERE conv = ? AND seq = ?", (c.conv, c.seq))
    conn.execute("UPDATE messages SET reactions = '', rev = ? WHERE conv = ? AND seq = ?",
                 (_next_rev(conn, c.conv), c.conv, c.seq))
    row = conn.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conv = ? AND seq = ?", (c.conv, c.seq)).fetchone()
    conn.execute("DELETE FROM message_text WHERE rowid = ?", (row[0],))
    conn.execute("DELETE FROM message_pins WHERE conv = ? AND seq = ?", (c.conv, c.seq))
    return _stored(row)


def _edit(store: SqliteStore, conn: sqlite3.Connection, c: EditMessage) -> StoredMessage | None:
    found = conn.execute("SELECT id, type FROM messages WHERE conv = ? AND seq = ? AND sender = ? AND recalled_by = 0",
                         (c.conv, c.seq, c.by)).fetchone()
    if found is None:
        return None
    msg_id, type_ = found
    conn.execute("UPDATE messages SET content = ?, edited_at = ?, rev = ? WHERE id = ?",
                 (c.content, c.at, _next_rev(conn, c.conv), msg_id))
    # the search index: a message indexed already has its old text replaced in this
    # transaction; one behind the mark is indexed later from its row (the new text)
    mark = conn.execute("SELECT seq FROM search_marks WHERE conv = ?", (c.conv,)).fetchone()
    if mark is not None and c.seq <= mark[0]:
        conn.execute("DELETE FROM message_text WHERE rowid = ?", (msg_id,))
        text = content.searchable(type_, c.content)
        if text:
            conn.execute(_INDEX_TEXT, (msg_id, text))
    row = conn.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?", (msg_id,)).fetchone()
    return _stored(row)


def _insert_messages(conn: sqlite3.Connection, values: list[Any]) -> None:
    """A run's multi-row INSERT OR FAIL (its rows' values laid end to end). A constraint
    that fails one of them (a cmid stored earlier, a stale seq) raises ``_Careful``: the
    batch goes again a row at a time."""
    try:
        _INSERT_MESSAGES.run_flat(conn, values)
    except Exception as exc:
        if _fails_one_op(exc):
            raise _Careful from exc
        raise


def _replied(conn: sqlite3.Connection, m: NewMessage, stored: StoredMessage) -> StoredMessage:
    """A reply's row gets what it quotes (a second statement for replies only: the plain
    sends' multi-row INSERT stays as it is); its StoredMessage carries the quote to the push."""
    conn.execute("UPDATE messages SET reply_to = ? WHERE id = ?", (m.reply_to, stored.id))
    return msgspec.structs.replace(stored, reply_to=m.reply_to, quote=m.quote)


def _stored(row: tuple[Any, ...], duplicate: bool = False) -> StoredMessage:
    """A ``messages`` row (columns as in _MESSAGE_COLUMNS) as a StoredMessage."""
    return StoredMessage(*row[:12], duplicate=duplicate, reply_to=row[12], edited_at=row[13],
                         fwd=row[14], reactions=row[15], rev=row[16])


def _next_rev(conn: sqlite3.Connection, conv: str) -> int:
    """The conversation's next change revision (one writer: the order of its transactions)."""
    return conn.execute("SELECT coalesce(max(rev), 0) + 1 FROM messages WHERE conv = ? AND rev > 0",
                        (conv,)).fetchone()[0]


def _set_reaction(store: SqliteStore, conn: sqlite3.Connection, c: SetReaction) -> Reacted:
    row = conn.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conv = ? AND seq = ?", (c.conv, c.seq)).fetchone()
    if row is None:
        return Reacted("missing")
    message = _stored(row)
    if message.recalled_by:
        return Reacted("recalled", message)
    mine = [e for (e,) in conn.execute("SELECT emoji FROM reactions WHERE conv = ? AND seq = ? AND user_id = ?",
                                       (c.conv, c.seq, c.user))]
    if c.add:
        if c.emoji in mine:
            return Reacted("unchanged", message)
        if len(mine) >= c.max_per_user:
            return Reacted("too_many_mine", message)
        present = conn.execute("SELECT count(DISTINCT emoji), sum(emoji = ?) FROM reactions WHERE conv = ? AND seq = ?",
                               (c.emoji, c.conv, c.seq)).fetchone()
        if not present[1] and present[0] >= c.max_emoji:
            return Reacted("too_many_emoji", message)
        conn.execute("INSERT INTO reactions (conv, seq, user_id, emoji, ts) VALUES (?, ?, ?, ?, ?)",
                     (c.conv, c.seq, c.user, c.emoji, c.ts))
    else:
        if c.emoji not in mine:
            return Reacted("unchanged", message)
        conn.execute("DELETE FROM reactions WHERE conv = ? AND seq = ? AND user_id = ? AND emoji = ?",
                     (c.conv, c.seq, c.user, c.emoji))
    summary = reaction_summary(conn.execute(
        "SELECT emoji, user_id FROM reactions WHERE conv = ? AND seq = ? ORDER BY ts, user_id", (c.conv, c.seq)), c.shown)
    rev = _next_rev(conn, c.conv)
    conn.execute("UPDATE messages SET reactions = ?, rev = ? WHERE conv = ? AND seq = ?", (summary, rev, c.conv, c.seq))
    return Reacted("changed", msgspec.structs.replace(message, reactions=summary, rev=rev))


def _share_files(store: SqliteStore, conn: sqlite3.Connection, c: ShareFiles) -> None:
    conn.executemany("INSERT INTO file_convs (file_key, conv) VALUES (?, ?) ON CONFLICT DO NOTHING",
                     [(key, c.conv) for key in c.keys])


def _hide_messages(store: SqliteStore, conn: sqlite3.Connection, c: HideMessages) -> tuple[tuple[int, ...], int] | None:
    row = conn.execute("SELECT view_ver FROM user_convs WHERE user_id = ? AND conv = ?", (c.user, c.conv)).fetchone()
    if row is None:
        return None
    hidden = []
    for seq in sorted(set(c.seqs)):
        cur = conn.execute("INSERT INTO hidden_messages (user_id, conv, seq, at) VALUES (?, ?, ?, ?)"
                           " ON CONFLICT DO NOTHING", (c.user, c.conv, seq, c.at))
        if cur.rowcount:
            hidden.append(seq)
    if not hidden:
        return (), row[0]
    conn.execute("UPDATE user_convs SET view_ver = view_ver + 1 WHERE user_id = ? AND conv = ?", (c.user, c.conv))
    return tuple(hidden), row[0] + 1


def _pin_message(store: SqliteStore, conn: sqlite3.Connection, c: PinMessage) -> Pin | str | None:
    row = conn.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conv = ? AND seq = ?",
                       (c.conv, c.seq)).fetchone()
    message = _stored(row) if row is not None else None
    if message is None or message.recalled_by:
        return None
    pinned = conn.execute("SELECT pinned_by, pinned_at FROM message_pins WHERE conv = ? AND seq = ?",
                          (c.conv, c.seq)).fetchone()
    if pinned is not None:
        return Pin(c.conv, c.seq, pinned[0], pinned[1], message)
    if conn.execute("SELECT count(*) FROM message_pins WHERE conv = ?", (c.conv,)).fetchone()[0] >= c.limit:
        return PINS_FULL
    conn.execute("INSERT INTO message_pins (conv, seq, pinned_by, pinned_at) VALUES (?, ?, ?, ?)",
                 (c.conv, c.seq, c.by, c.at))
    return Pin(c.conv, c.seq, c.by, c.at, message, created=True)


def _unpin_message(store: SqliteStore, conn: sqlite3.Connection, c: UnpinMessage) -> bool:
    return conn.execute("DELETE FROM message_pins WHERE conv = ? AND seq = ?", (c.conv, c.seq)).rowcount > 0


def _group_conv(group: int) -> str:
    # the one place the store knows a conversation id's shape: a group's member rows and
    # its conversation's user_convs rows go together
    return f"g{group}"


def _put_member_row(conn: sqlite3.Connection, group: int, m: Member) -> None:
    conn.execute(
        "INSERT INTO group_members (group_id, user_id, role, muted_until, joined_at, joined_seq)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (group_id, user_id) DO UPDATE SET"
        " role = excluded.role, muted_until = excluded.muted_until",
        (group, m.user, m.role, m.muted_until, m.joined_at, m.joined_seq),
    )
    conn.execute(
        "INSERT INTO user_convs (user_id, conv, read_seq, joined_seq) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (user_id, conv) DO NOTHING",
        (m.user, _group_conv(group), m.joined_seq, m.joined_seq),
    )


def _put_friend_request(store: SqliteStore, conn: sqlite3.Connection, c: PutFriendRequest) -> None:
    conn.execute(
        "INSERT INTO friend_requests (receiver, sender, message, ts) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (receiver, sender) DO UPDATE SET message = excluded.message, ts = excluded.ts",
        (c.receiver, c.sender, c.message, c.ts),
    )


def _drop_friend_request(store: SqliteStore, conn: sqlite3.Connection, c: DropFriendRequest) -> None:
    conn.execute("DELETE FROM friend_requests WHERE receiver = ? AND sender = ?", (c.receiver, c.sender))


def _put_friendship(store: SqliteStore, conn: sqlite3.Connection, c: PutFriendship) -> None:
    for user, friend in ((c.a, c.b), (c.b, c.a)):
        conn.execute(
            "INSERT INTO friends (user_id, friend_id, since) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            (user, friend, c.ts),
        )
        conn.execute("DELETE FROM friend_requests WHERE receiver = ? AND sender = ?", (user, friend))


def _drop_friendship(store: SqliteStore, conn: sqlite3.Connection, c: DropFriendship) -> None:
    conn.execute("DELETE FROM friends WHERE (user_id = ? AND friend_id = ?) OR (user_id = ? AND friend_id = ?)",
                 (c.a, c.b, c.b, c.a))


def _set_remark(store: SqliteStore, conn: sqlite3.Connection, c: SetRemark) -> None:
    conn.execute("UPDATE friends SET remark = ? WHERE user_id = ? AND friend_id = ?", (c.remark, c.user, c.friend))


def _set_block(store: SqliteStore, conn: sqlite3.Connection, c: SetBlock) -> None:
    if c.blocked:
        conn.execute("INSERT INTO blocks (user_id, blocked_id) VALUES (?, ?) ON CONFLICT DO NOTHING", (c.user, c.other))
    else:
        conn.execute("DELETE FROM blocks WHERE user_id = ? AND blocked_id = ?", (c.user, c.other))


def _put_group(store: SqliteStore, conn: sqlite3.Connection, c: PutGroup) -> None:
    g = c.group
    conn.execute(
        "UPDATE chat_groups SET name = ?, avatar = ?, notice = ?, owner = ?, join_mode = ?, mute_all = ?,"
        " max_members = ? WHERE id = ?",
        (g.name, g.avatar, g.notice, g.owner, g.join_mode, g.mute_all, g.max_members, g.id),
    )


def _put_join_request(store: SqliteStore, conn: sqlite3.Connection, c: PutJoinRequest) -> None:
    conn.execute(
        "INSERT INTO group_requests (group_id, user_id, message, ts) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (group_id, user_id) DO UPDATE SET message = excluded.message, ts = excluded.ts",
        (c.group, c.user, c.message, c.ts),
    )


def _drop_join_request(store: SqliteStore, conn: sqlite3.Connection, c: DropJoinRequest) -> None:
    conn.execute("DELETE FROM group_requests WHERE group_id = ? AND user_id = ?", (c.group, c.user))


def _set_password_hash(store: SqliteStore, conn: sqlite3.Connection, c: SetPasswordHash) -> None:
    conn.execute("UPDATE users SET password_hash = ? WHERE id = ?", (c.password_hash, c.user))


def _revoke_token(store: SqliteStore, conn: sqlite3.Connection, c: RevokeToken) -> None:
    conn.execute("DELETE FROM revoked_tokens WHERE expires_at < ?", (int(time.time()),))  # no longer needed
    conn.execute("INSERT INTO revoked_tokens (token_id, expires_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                 (c.token_id, c.expires_at))


def _set_settings(store: SqliteStore, conn: sqlite3.Connection, c: SetSettings) -> None:
    conn.execute("INSERT INTO user_settings (user_id, invisible, group_add) VALUES (?, ?, ?)"
                 " ON CONFLICT (user_id) DO UPDATE SET invisible = excluded.invisible, group_add = excluded.group_add",
                 (c.user, c.invisible, c.group_add))


def _put_invitations(store: SqliteStore, conn: sqlite3.Connection, c: PutInvitations) -> list[Invitation]:
    """Stored, then counted: past a bound, InvitationsFull undoes the change (its savepoint)."""
    invitees = list(dict.fromkeys(c.invitees))
    conn.execute("DELETE FROM group_invitations WHERE inviter = ? AND expires_at <= ?", (c.inviter, c.ts))
    conn.executemany("DELETE FROM group_invitations WHERE invitee = ? AND expires_at <= ?",
                     [(u, c.ts) for u in invitees])
    conn.executemany(
        "INSERT INTO group_invitations (group_id, invitee, inviter, ts, expires_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (group_id, invitee) DO UPDATE SET inviter = excluded.inviter, ts = excluded.ts,"
        " expires_at = excluded.expires_at", [(c.group, u, c.inviter, c.ts, c.expires_at) for u in invitees])
    for u in invitees:
        if conn.execute("SELECT count(*) FROM group_invitations WHERE invitee = ?", (u,)).fetchone()[0] > c.max_per_invitee:
            raise InvitationsFull(u, inviter=False)
    if conn.execute("SELECT count(*) FROM group_invitations WHERE inviter = ?", (c.inviter,)).fetchone()[0] \
            > c.max_per_inviter:
        raise InvitationsFull(c.inviter, inviter=True)
    return [Invitation(c.group, u, c.inviter, c.ts, c.expires_at) for u in invitees]


def _drop_invitation(store: SqliteStore, conn: sqlite3.Connection, c: DropInvitation) -> None:
    conn.execute("DELETE FROM group_invitations WHERE group_id = ? AND invitee = ?", (c.group, c.invitee))


def _set_disabled(store: SqliteStore, conn: sqlite3.Connection, c: SetDisabled) -> None:
    conn.execute("UPDATE users SET disabled = ? WHERE id = ?", (int(c.disabled), c.user))


def _set_profile(store: SqliteStore, conn: sqlite3.Connection, c: SetProfile) -> None:
    conn.execute("UPDATE users SET nickname = ?, avatar = ?, bio = ? WHERE id = ? AND deleted_at = 0",
                 (c.nickname, c.avatar, c.bio, c.user))


def _set_credentials(store: SqliteStore, conn: sqlite3.Connection, c: SetCredentials) -> int:
    conn.execute("UPDATE users SET password_hash = ?, epoch = epoch + 1 WHERE id = ? AND deleted_at = 0",
                 (c.password_hash, c.user))
    row = conn.execute("SELECT epoch FROM users WHERE id = ?", (c.user,)).fetchone()
    return int(row[0]) if row else 0


def _delete_account(store: SqliteStore, conn: sqlite3.Connection, c: DeleteAccount) -> int:
    u = c.user
    conn.execute("UPDATE users SET password_hash = '', nickname = '', avatar = '', bio = '', epoch = epoch + 1,"
                 " deleted_at = ? WHERE id = ? AND deleted_at = 0", (c.ts, u))
    friends = [(row[0], u) for row in conn.execute("SELECT friend_id FROM friends WHERE user_id = ?", (u,))]
    conn.execute("DELETE FROM friends WHERE user_id = ?", (u,))  # friendships are both ways: by key
    conn.executemany("DELETE FROM friends WHERE user_id = ? AND friend_id = ?", friends)
    conn.execute("DELETE FROM friend_requests WHERE receiver = ? OR sender = ?", (u, u))
    conn.execute("DELETE FROM blocks WHERE user_id = ? OR blocked_id = ?", (u, u))
    conn.execute("DELETE FROM user_settings WHERE user_id = ?", (u,))
    conn.execute("DELETE FROM group_requests WHERE user_id = ?", (u,))
    conn.execute("DELETE FROM group_members WHERE user_id = ?", (u,))
    conn.execute("DELETE FROM user_convs WHERE user_id = ?", (u,))
    store._known_pairs = {pair for pair in store._known_pairs if pair[0] != u}
    if not c.erase:
        return 0
    rows = conn.execute("SELECT id, conv FROM messages WHERE sender = ? AND recalled_by = 0 ORDER BY conv, seq",
                        (u,)).fetchall()
    conn.executemany("DELETE FROM message_text WHERE rowid = ?", [(i,) for i, _ in rows])
    conn.execute("UPDATE messages SET content = '', mentions = '', recalled_by = ?, recalled_at = ?"
                 " WHERE sender = ? AND recalled_by = 0", (u, c.ts, u))
    # each tombstone takes its conversation's next change revision, as a recall does
    revs: dict[str, int] = {}
    stamped = []
    for msg_id, conv in rows:
        revs[conv] = revs[conv] + 1 if conv in revs else _next_rev(conn, conv)
        stamped.append((revs[conv], msg_id))
    conn.executemany("UPDATE messages SET reactions = '', rev = ? WHERE id = ?", stamped)
    conn.execute("DELETE FROM reactions WHERE (conv, seq) IN (SELECT conv, seq FROM messages WHERE sender = ?"
                 " AND recalled_at = ? AND recalled_by = ?)", (u, c.ts, u))
    return len(rows)


_CHANGES: dict[type, Callable[[SqliteStore, sqlite3.Connection, Any], Any]] = {
    PutFriendRequest: _put_friend_request,
    DropFriendRequest: _drop_friend_request,
    PutFriendship: _put_friendship,
    DropFriendship: _drop_friendship,
    SetRemark: _set_remark,
    SetBlock: _set_block,
    CreateGroup: SqliteStore._create_group,
    PutGroup: _put_group,
    PutMember: SqliteStore._put_member,
    DropMember: SqliteStore._drop_member,
    DissolveGroup: SqliteStore._dissolve,
    PutJoinRequest: _put_join_request,
    DropJoinRequest: _drop_join_request,
    SetUserConv: SqliteStore._set_user_conv,
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


# -- reads of several statements (on the reader thread, in one snapshot) --------------------

def _read_messages(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...], max_bytes: int) -> list[StoredMessage]:
    """The rows of ``sql`` in its order; with ``max_bytes``, no more after the one whose
    content takes the total past it (a page is cut there anyway: reading on is waste)."""
    out: list[StoredMessage] = []
    total = 0
    for row in conn.execute(sql, params):
        out.append(_stored(row))
        if max_bytes:
            total += len(row[7].encode())
            if total > max_bytes:
                break
    return out


def _messages_changed(conn: sqlite3.Connection, conv: str, after_rev: int, up_to_seq: int,
                      limit: int) -> tuple[list[StoredMessage], int]:
    # the revision first, and no row above it: a change committed between the two reads
    # comes at the next ask, never skipped
    top = conn.execute("SELECT coalesce(max(rev), 0) FROM messages WHERE conv = ? AND rev > 0", (conv,)).fetchone()[0]
    rows = [_stored(row) for row in conn.execute(
        f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conv = ? AND rev > ? AND rev <= ? AND seq <= ?"
        " ORDER BY rev LIMIT ?", (conv, max(after_rev, 0), top, up_to_seq, limit))]
    return rows, top


def _load_user(conn: sqlite3.Connection, user_id: int) -> UserRecords:
    friends = [Friend(*row) for row in conn.execute(
        "SELECT friend_id, remark, since FROM friends WHERE user_id = ? ORDER BY friend_id", (user_id,))]
    requests_in = [FriendRequest(*row) for row in conn.execute(
        "SELECT sender, receiver, message, ts FROM friend_requests WHERE receiver = ? ORDER BY ts", (user_id,))]
    requests_out = [FriendRequest(*row) for row in conn.execute(
        "SELECT sender, receiver, message, ts FROM friend_requests WHERE sender = ? ORDER BY ts", (user_id,))]
    blocked = [row[0] for row in conn.execute("SELECT blocked_id FROM blocks WHERE user_id = ?", (user_id,))]
    blocked_by = [row[0] for row in conn.execute("SELECT user_id FROM blocks WHERE blocked_id = ?", (user_id,))]
    convs = [UserConv(conv, read_seq, bool(pinned), bool(muted), hidden_seq, joined_seq, mention_seq, cleared_seq,
                      view_ver)
             for conv, read_seq, pinned, muted, hidden_seq, joined_seq, mention_seq, cleared_seq, view_ver
             in conn.execute(
                 "SELECT conv, read_seq, pinned, muted, hidden_seq, joined_seq, mention_seq, cleared_seq, view_ver"
                 " FROM user_convs WHERE user_id = ?", (user_id,))]
    heads = [_stored(row) for row in conn.execute(
        f"SELECT {', '.join('m.' + c.strip() for c in _MESSAGE_COLUMNS.split(','))}"
        " FROM user_convs u JOIN messages m ON m.conv = u.conv"
        " AND m.seq = (SELECT max(seq) FROM messages WHERE conv = u.conv) WHERE u.user_id = ?", (user_id,))]
    settings = conn.execute("SELECT invisible, group_add FROM user_settings WHERE user_id = ?", (user_id,)).fetchone()
    invisible = bool(settings[0]) if settings else False
    invitations = [Invitation(*row) for row in conn.execute(
        "SELECT group_id, invitee, inviter, ts, expires_at FROM group_invitations WHERE invitee = ? AND expires_at > ?"
        " ORDER BY group_id", (user_id, _now_ms()))]
    hidden, view_heads = _views(conn, user_id, convs, heads)
    return UserRecords(friends, requests_in, requests_out, blocked, blocked_by, convs, heads, invisible,
                       invitations, settings[1] if settings else "", hidden, view_heads)


def _views(conn: sqlite3.Connection, user_id: int, convs: list[UserConv],
           heads: list[StoredMessage]) -> tuple[list[tuple[ConvId, int]], list[ViewHead]]:
    """What the user deleted for themselves that their list shows: the hidden messages
    above each conversation's read cursor, and what stands for the heads they hid."""
    if not any(uc.view_ver for uc in convs):
        return [], []
    hidden = [(ConvId(conv), seq) for conv, seq in conn.execute(
        "SELECT h.conv, h.seq FROM hidden_messages h JOIN user_convs u ON u.user_id = h.user_id AND u.conv = h.conv"
        " WHERE h.user_id = ? AND h.seq > max(u.read_seq, u.cleared_seq, u.joined_seq) ORDER BY h.conv, h.seq",
        (user_id,))]
    # only where the user deleted something (view_ver) can the head be one they hid
    floors = {uc.conv: max(uc.joined_seq, uc.cleared_seq) for uc in convs if uc.view_ver}
    view_heads = []
    for head in heads:
        if head.conv in floors and head.seq > floors[head.conv] and conn.execute(
                "SELECT 1 FROM hidden_messages WHERE user_id = ? AND conv = ? AND seq = ?",
                (user_id, head.conv, head.seq)).fetchone():
            view_heads.append(ViewHead(head.conv, head.seq, _last_visible(conn, user_id, head.conv,
                                                                          floors[head.conv])))
    return hidden, view_heads


def _last_visible(conn: sqlite3.Connection, user_id: int, conv: str, floor: int) -> StoredMessage | None:
    row = conn.execute(
        f"SELECT {_MESSAGE_COLUMNS} FROM messages m WHERE conv = ? AND seq > ? AND NOT EXISTS"
        " (SELECT 1 FROM hidden_messages h WHERE h.user_id = ? AND h.conv = m.conv AND h.seq = m.seq)"
        " ORDER BY seq DESC LIMIT 1", (conv, floor, user_id)).fetchone()
    return _stored(row) if row is not None else None


def _pins(conn: sqlite3.Connection, conv: str) -> list[Pin]:
    return [Pin(ConvId(conv), row[0], row[1], row[2], _stored(row[3:])) for row in conn.execute(
        f"SELECT p.seq, p.pinned_by, p.pinned_at, {', '.join('m.' + c.strip() for c in _MESSAGE_COLUMNS.split(','))}"
        " FROM message_pins p JOIN messages m ON m.conv = p.conv AND m.seq = p.seq WHERE p.conv = ?"
        " ORDER BY p.pinned_at DESC, p.seq DESC", (conv,))]


def _load_group(conn: sqlite3.Connection, group_id: int) -> GroupRecords | None:
    row = conn.execute(
        "SELECT id, name, avatar, notice, owner, join_mode, mute_all, max_members, created_at"
        " FROM chat_groups WHERE id = ?", (group_id,)).fetchone()
    if row is None:
        return None
    group = GroupRecord(*row[:6], bool(row[6]), *row[7:])
    members = [Member(*r) for r in conn.execute(
        "SELECT user_id, role, muted_until, joined_at, joined_seq FROM group_members WHERE group_id = ?"
        " ORDER BY user_id", (group_id,))]
    requests = [JoinRequest(*r) for r in conn.execute(
        "SELECT user_id, message, ts FROM group_requests WHERE group_id = ? ORDER BY ts", (group_id,))]
    head = conn.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conv = ? ORDER BY seq DESC LIMIT 1",
                        (_group_conv(group_id),)).fetchone()
    invitations = [Invitation(*r) for r in conn.execute(
        "SELECT group_id, invitee, inviter, ts, expires_at FROM group_invitations WHERE group_id = ? AND expires_at > ?"
        " ORDER BY invitee", (group_id, _now_ms()))]
    return GroupRecords(group, members, requests, _stored(head) if head else None, invitations)


def _group_add_rules(conn: sqlite3.Connection, user_ids: list[int]) -> dict[UserId, str]:
    rules: dict[UserId, str] = {}
    for start in range(0, len(user_ids), 500):
        chunk = user_ids[start:start + 500]
        rules.update((UserId(u), rule or "") for u, rule in conn.execute(
            "SELECT u.id, s.group_add FROM users u LEFT JOIN user_settings s ON s.user_id = u.id"
            f" WHERE u.id IN ({', '.join('?' * len(chunk))}) AND u.deleted_at = 0", chunk))
    return rules


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _search(conn: sqlite3.Connection, convs: Sequence[tuple[str, int]], text: str, before_id: int,
            limit: int) -> list[StoredMessage]:
    """Narrowed to the reader's conversations first: when they hold at most
    SEARCH_SCAN_ROWS messages, their indexed text is read and compared (the cost is the
    reader's own messages, whoever else has written what); otherwise, and for a query of
    three characters or more, the trigram index answers (its cost is the query's over
    every message: the search timeout bounds it)."""
    if not convs or limit <= 0:
        return []
    mine = ", ".join("(?, ?)" for _ in convs)
    params: list[Any] = [value for pair in convs for value in pair]
    columns = ", ".join("m." + c.strip() for c in _MESSAGE_COLUMNS.split(","))
    rows = 0
    if len(text) >= 3:
        rows = conn.execute(f"WITH mine(conv, floor) AS (VALUES {mine}) SELECT coalesce(sum(max(0,"
                            " coalesce((SELECT max(seq) FROM messages WHERE conv = mine.conv), 0) - mine.floor)), 0)"
                            " FROM mine", params).fetchone()[0]
    # instr over lower(): a plain substring search (memcmp), case-insensitive for ASCII
    # letters; LIKE's pattern matcher can take quadratic time on text such as 32 KB of "a"
    if len(text) >= 3 and rows > SEARCH_SCAN_ROWS:  # the trigram index: any substring of three characters or more
        # the index narrows to the messages holding the text's trigrams, the text decides
        sql = (f"WITH mine(conv, floor) AS (VALUES {mine}) SELECT {columns} FROM message_text t"
               " JOIN messages m ON m.id = t.rowid JOIN mine ON mine.conv = m.conv AND m.seq > mine.floor"
               " WHERE message_text MATCH ? AND instr(lower(t.body), ?) > 0 AND t.rowid < ? AND m.recalled_by = 0"
               " ORDER BY t.rowid DESC LIMIT ?")
        params += [_trigrams(text), _ascii_lower(text), before_id or _NO_BOUND, limit]
    else:  # few messages, or shorter than a trigram: compare the indexed text of the reader's conversations
        sql = (f"WITH mine(conv, floor) AS (VALUES {mine}) SELECT {columns} FROM mine"
               " JOIN messages m ON m.conv = mine.conv AND m.seq > mine.floor JOIN message_text t ON t.rowid = m.id"
               " WHERE instr(lower(t.body), ?) > 0 AND m.id < ? AND m.recalled_by = 0 ORDER BY m.id DESC LIMIT ?")
        params += [_ascii_lower(text), before_id or _NO_BOUND, limit]
    return [_stored(row) for row in conn.execute(sql, params)]


def _trigrams(text: str) -> str:
    """A MATCH of the index (which keeps no positions, so no phrases) that every message
    containing ``text`` (three characters or more) satisfies: every third of its
    trigrams and its last one, which together cover it."""
    grams = dict.fromkeys([text[i:i + 3] for i in range(0, len(text) - 2, 3)] + [text[-3:]])
    return " AND ".join('"' + gram.replace('"', '""') + '"' for gram in grams)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _ascii_lower(text: str) -> str:
    """What SQLite's lower() makes of ``text`` (ASCII letters only, without ICU)."""
    return text.translate(_ASCII_LOWER)


def _readers(conn: sqlite3.Connection, conv: str, seq: int, exclude: int, after: int,
             limit: int) -> tuple[int, list[UserId]]:
    # a member who joined after the message starts with read_seq = joined_seq >= seq but
    # never saw it: only members with joined_seq < seq can have read it
    count = conn.execute(
        "SELECT count(*) FROM user_convs WHERE conv = ? AND read_seq >= ? AND joined_seq < ? AND user_id <> ?",
        (conv, seq, seq, exclude)).fetchone()[0]
    users = [row[0] for row in conn.execute(
        "SELECT user_id FROM user_convs WHERE conv = ? AND read_seq >= ? AND joined_seq < ? AND user_id <> ?"
        " AND user_id > ? ORDER BY user_id LIMIT ?", (conv, seq, seq, exclude, after, limit))]
    return count, users


def _open_error(path: str, exc: BaseException) -> BaseException:
    """What ``open`` raises for a failure to open: damage and unreachable files get their own
    errors with a message an operator can act on; anything else as it is."""
    if isinstance(exc, (StoreDamaged, StoreUnavailable)):
        return exc
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
        return StoreDamaged(f"{path} is damaged or is not an edgeim database ({exc}). Restore it from a backup.")
    if isinstance(exc, (sqlite3.OperationalError, OSError)):
        return StoreUnavailable(f"cannot open {path} for writing ({exc}): check the data dir's permissions and free space")
    return exc


def _check_wal(path: str) -> None:
    """Raise StoreDamaged if the write-ahead log holds committed frames that SQLite would
    drop at recovery: it replays frames up to the first whose salt or checksum is wrong and
    silently discards the rest. A torn last frame (a crash mid-write) is normal; a bad
    frame followed by more frames of the same log generation is damage."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return
    if len(data) < 32:
        return
    magic, _version, page_size, _ckpt, salt1, salt2, c1, c2 = struct.unpack(">8I", data[:32])
    if magic not in (0x377F0682, 0x377F0683) or not 512 <= page_size <= 65536 or page_size & (page_size - 1):
        return  # not a log SQLite would replay either
    order = ">" if magic & 1 else "<"
    s0, s1 = _wal_checksum(data[:24], order, 0, 0)
    if (s0, s1) != (c1, c2):
        return  # the header itself is bad: SQLite ignores the whole log (nothing was acked from it)
    frame = 24 + page_size
    good = bad_at = 0
    later = 0
    for offset in range(32, len(data) - frame + 1, frame):
        header = data[offset:offset + 24]
        _page, _commit, fs1, fs2, fc1, fc2 = struct.unpack(">6I", header)
        if (fs1, fs2) != (salt1, salt2):
            break  # an older generation of the log: its end
        if bad_at:
            later += 1
            continue
        t0, t1 = _wal_checksum(header[:8], order, s0, s1)
        t0, t1 = _wal_checksum(data[offset + 24:offset + frame], order, t0, t1)
        if (t0, t1) != (fc1, fc2):
            bad_at = good + 1
            continue
        s0, s1 = t0, t1
        good += 1
    if bad_at and later:
        raise StoreDamaged(
            f"the write-ahead log {path} is damaged at frame {bad_at}: {later} later frame(s) of committed writes"
            " would be dropped silently if the node started. Keep a copy of the data dir; to start anyway, move"
            " the -wal file aside (the writes in it are then lost)."
        )


def _wal_checksum(data: bytes, order: str, s0: int, s1: int) -> tuple[int, int]:
    """SQLite's WAL checksum over ``data`` (a multiple of 8 bytes), continuing (s0, s1)."""
    words = struct.unpack(f"{order}{len(data) // 4}I", data)
    mask = 0xFFFFFFFF
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & mask
        s1 = (s1 + words[i + 1] + s0) & mask
    return s0, s1


class _Careful(Exception):
    """A multi-row INSERT broke a constraint and left the rows before it in place: the
    batch is rolled back and written again a row at a time."""


def _fails_one_op(exc: Exception) -> bool:
    """True for errors confined to one statement (a constraint, a bad parameter): SQLite
    undid that statement only, so the rest of the batch can still commit. Anything else
    (I/O, lock timeout, corruption) fails the whole batch."""
    if isinstance(exc, (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.ProgrammingError,
                        sqlite3.InterfaceError)):
        return True
    return not isinstance(exc, sqlite3.Error)


def _insert_user(conn: sqlite3.Connection, op: CreateUser) -> User:
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

