"""The SQLite writer's runs of new messages (``SqliteStore._insert_run``), the reference
and pure-Python twin of ``_appends.pyx`` (``appends`` selects): whether every message of a
run is new for sure, then, in one loop, each message's seq, its row's values, its stored
message and its outcome, and what its row brings along in the same transaction.

A run is a list of ``Append`` (backends/writes.py) whose ``message`` is a ``NewMessage``.
The functions know nothing of SQL: they fill the writer's dicts and return what the
writer then writes; the store's own rules (the seq cache's size, the list rows and the
mentions) stay in backends/sqlite.py."""
from __future__ import annotations

from typing import Any, Callable

import msgspec

__all__ = ["unknown", "lay_out", "inserted"]


def unknown(run: list[Any], staged: dict[tuple[int, str], tuple[int, str, int]],
            hashes: dict[tuple[int, str], int], key_hash: Callable[[int, str], int], stored: Any) -> bool:
    """True when every message of ``run`` is new for sure: none replies or forwards, and
    no key (sender, cmid) is staged in this batch or maybe stored (its hash, ``key_hash``'s,
    in the filter ``stored``). Each hash made is kept in ``hashes`` (the filter takes it at
    commit).
    False asks the writer for its general path, which looks the keys up."""
    for op in run:
        m = op.message
        if m.reply_to or m.fwd:
            return False
        key = (m.sender, m.cmid)
        if key in staged:
            return False
        h = hashes.get(key)
        if h is None:
            h = hashes[key] = key_hash(m.sender, m.cmid)
        if h in stored:
            return False
    return True


def lay_out(run: list[Any], conn: Any, current_seq: Callable[[Any, str], int], last_seq: dict[str, int],
            staged: dict[tuple[int, str], tuple[int, str, int]], make: Callable[..., Any],
            outcomes: list[tuple[Any, Any, None]], touched: dict[tuple[int, str], int], fresh: dict[str, int],
            known_pairs: set[tuple[int, str]]) -> tuple[list[Any], list[tuple[Any, int]]]:
    """A run of new messages (``unknown`` said so) laid out: each gets the seq after its
    conversation's last (``last_seq``, else ``current_seq(conn, conv)``), its stored
    message (``make``: StoredMessage, positionally), its key staged as (id, conv, seq)
    and its outcome (ticket, stored, None); a key repeated in the run (a retry sent before
    the first was acked) gets the first's message as a duplicate. Returns the rows' values
    laid end to end (id, conv, seq, sender, to_user, cmid, type, content, ts, mentions)
    and, in order, the (message, seq) whose rows bring SQL along (``inserted``)."""
    values: list[Any] = []
    new: list[tuple[Any, int]] = []
    firsts: dict[tuple[int, str], Any] = {}
    for op in run:
        m = op.message
        key = (m.sender, m.cmid)
        first = firsts.get(key)
        if first is not None:
            outcomes.append((op.ticket, msgspec.structs.replace(first, duplicate=True), None))
            continue
        conv = m.conv
        seq = last_seq.get(conv)
        seq = (current_seq(conn, conv) if seq is None else seq) + 1
        last_seq[conv] = seq
        msg_id = m.msg_id
        values += (msg_id, conv, seq, m.sender, m.to, m.cmid, m.type, m.content, m.ts, m.mentions)
        stored = firsts[key] = make(msg_id, conv, seq, m.sender, m.to, m.cmid, m.type, m.content, m.ts, m.mentions)
        staged[key] = (msg_id, conv, seq)
        outcomes.append((op.ticket, stored, None))
        new.append((m, seq))
    return values, inserted(new, touched, fresh, known_pairs)


def inserted(new: list[tuple[Any, int]], touched: dict[tuple[int, str], int], fresh: dict[str, int],
             known_pairs: set[tuple[int, str]]) -> list[tuple[Any, int]]:
    """New messages' rows are in ((message, seq), in order): each sender's read cursor
    moves to its newest seq (``touched``, by (sender, conv)) and each conversation's newest
    seq is noted (``fresh``, for the search index). Returns those whose rows bring SQL
    along, in order: a pair of ``members`` not in ``known_pairs`` (a private conversation's
    first message enters both lists), or mentions."""
    later: list[tuple[Any, int]] = []
    for m, seq in new:
        conv = m.conv
        touched[(m.sender, conv)] = seq
        fresh[conv] = seq
        if m.mentions:
            later.append((m, seq))
            continue
        for user in m.members:
            if (user, conv) not in known_pairs:
                later.append((m, seq))
                break
    return later
