"""One suite for both layouts of the SQLite writer's runs of new messages (the pure-Python
twin and the compiled ``_appends``): which runs are new for sure, the seqs, rows, stored
messages and outcomes of a run, a key repeated in it, and what the rows bring along. The
store's own tests (tests/backends) run them inside transactions; here each result is read
directly, and the two implementations must agree on a random run."""
from __future__ import annotations

import random

import pytest

from edgeim.backends.protocols import ConvId, NewMessage, StoredMessage, UserId
from edgeim.backends.writes import Append
from edgeim.core_ext import _appends, appends_py, keyfilter_py
from edgeim.core_ext.keyfilter import key_hash

IMPLEMENTATIONS = [appends_py, _appends]  # the compiled module must be built: no skip


@pytest.fixture(params=IMPLEMENTATIONS, ids=["python", "cython"])
def impl(request):
    return request.param


def new(conv: str, sender: int, to: int, cmid: str, msg_id: int, **fields) -> NewMessage:
    fields.setdefault("members", (UserId(sender), UserId(to)) if conv.startswith("p") else ())
    return NewMessage(ConvId(conv), UserId(sender), to, cmid, 1, f"text {cmid}", msg_id, 1000 + msg_id, **fields)


def run_of(*messages: NewMessage) -> list[Append]:
    return [Append(m, f"ticket {m.cmid}", None, None) for m in messages]  # type: ignore[arg-type]


def lay(impl, run, last_seq, current=None, known_pairs=frozenset()):
    """``lay_out`` with fresh writer dicts; its results and theirs."""
    asked: list[str] = []

    def current_seq(conn, conv):
        assert conn == "conn"
        asked.append(conv)
        return (current or {}).get(conv, 0)

    staged, outcomes, touched, fresh = {}, [], {}, {}
    values, later = impl.lay_out(run, "conn", current_seq, last_seq, staged, StoredMessage, outcomes, touched,
                                 fresh, set(known_pairs))
    return values, later, staged, outcomes, touched, fresh, asked


def test_a_run_of_new_keys_is_unknown_and_its_hashes_are_kept(impl):
    run = run_of(new("p1_2", 1, 2, "a", 11), new("p1_3", 1, 3, "b", 12))
    hashes: dict = {}
    assert impl.unknown(run, {}, hashes, key_hash, keyfilter_py.KeyFilter(10)) is True
    assert hashes == {(1, "a"): key_hash(1, "a"), (1, "b"): key_hash(1, "b")}


@pytest.mark.parametrize("why", ["reply", "forward", "staged", "stored"])
def test_a_run_is_not_unknown_when_one_message_may_be_known_or_reads_another(impl, why):
    last = new("p1_2", 1, 2, "z", 13, reply_to=5 if why == "reply" else 0, fwd=7 if why == "forward" else 0)
    run = run_of(new("p1_2", 1, 2, "a", 11), last)
    staged = {(1, "z"): (99, "p1_2", 3)} if why == "staged" else {}
    stored = keyfilter_py.KeyFilter(10)
    if why == "stored":
        stored.add(key_hash(1, "z"))
    assert impl.unknown(run, staged, {}, key_hash, stored) is False


def test_a_hash_already_made_is_not_made_again(impl):
    made: list = []
    kept, stored_hash = key_hash(9, "kept"), key_hash(9, "stored")

    def counting(sender, cmid):
        made.append((sender, cmid))
        return stored_hash

    hashes = {(1, "a"): kept}
    stored = keyfilter_py.KeyFilter(10)
    stored.add(stored_hash)
    assert kept not in stored
    assert impl.unknown(run_of(new("p1_2", 1, 2, "a", 11)), {}, hashes, counting, stored) is True
    assert made == [] and hashes == {(1, "a"): kept}
    assert impl.unknown(run_of(new("p1_2", 1, 2, "b", 12)), {}, hashes, counting, stored) is False
    assert made == [(1, "b")] and hashes[(1, "b")] == stored_hash


def test_a_run_is_numbered_per_conversation_and_laid_out(impl):
    a, b, c = new("p1_2", 1, 2, "a", 11), new("p1_3", 1, 3, "b", 12), new("p1_2", 2, 1, "c", 13, mentions="")
    values, later, staged, outcomes, touched, fresh, asked = lay(impl, run_of(a, b, c), {"p1_2": 4},
                                                                 current={"p1_3": 9})
    assert asked == ["p1_3"]  # p1_2's last seq was cached
    assert values == [11, "p1_2", 5, 1, 2, "a", 1, "text a", 1011, "",
                      12, "p1_3", 10, 1, 3, "b", 1, "text b", 1012, "",
                      13, "p1_2", 6, 2, 1, "c", 1, "text c", 1013, ""]
    assert [(t, s.id, s.conv, s.seq, s.duplicate, e) for t, s, e in outcomes] == [
        ("ticket a", 11, "p1_2", 5, False, None), ("ticket b", 12, "p1_3", 10, False, None),
        ("ticket c", 13, "p1_2", 6, False, None)]
    assert outcomes[0][1] == StoredMessage(11, ConvId("p1_2"), 5, UserId(1), 2, "a", 1, "text a", 1011, "")
    assert staged == {(1, "a"): (11, "p1_2", 5), (1, "b"): (12, "p1_3", 10), (2, "c"): (13, "p1_2", 6)}
    assert touched == {(1, "p1_2"): 5, (1, "p1_3"): 10, (2, "p1_2"): 6}
    assert fresh == {"p1_2": 6, "p1_3": 10}
    # every pair is new to the writer: each message's row enters its lists
    assert later == [(a, 5), (b, 10), (c, 6)]


def test_a_key_repeated_in_a_run_is_the_first_ones_duplicate(impl):
    first, retry = new("p1_2", 1, 2, "a", 11), new("p1_2", 1, 2, "a", 12)
    values, later, staged, outcomes, touched, fresh, _ = lay(impl, run_of(first, retry), {"p1_2": 0})
    assert len(values) == 10 and values[0] == 11  # one row
    assert [(t, s.id, s.seq, s.duplicate) for t, s, _ in outcomes] == [("ticket a", 11, 1, False),
                                                                      ("ticket a", 11, 1, True)]
    assert staged == {(1, "a"): (11, "p1_2", 1)} and touched == {(1, "p1_2"): 1}


def test_only_rows_with_new_pairs_or_mentions_bring_sql_along(impl):
    known = {(1, "p1_2"), (2, "p1_2")}
    plain = new("p1_2", 1, 2, "a", 11)
    group = new("g7", 1, 7, "b", 12)
    mentioning = new("g7", 1, 7, "c", 13, mentions="2,3")
    half_known = new("p1_2", 1, 2, "d", 14, members=(UserId(1), UserId(5)))
    _, later, *_ = lay(impl, run_of(plain, group, mentioning, half_known), {"p1_2": 1, "g7": 1}, known_pairs=known)
    assert later == [(mentioning, 3), (half_known, 3)]


def test_inserted_moves_cursors_and_picks_what_brings_sql(impl):
    a, b = new("p1_2", 1, 2, "a", 11), new("g7", 2, 7, "b", 12, mentions="*")
    touched, fresh = {(1, "p1_2"): 2}, {}
    later = impl.inserted([(a, 3), (b, 8)], touched, fresh, {(1, "p1_2"), (2, "p1_2")})
    assert later == [(b, 8)]
    assert touched == {(1, "p1_2"): 3, (2, "g7"): 8} and fresh == {"p1_2": 3, "g7": 8}


def test_both_implementations_agree_on_a_random_run():
    rng = random.Random(16)
    convs = [f"p{u}_{u + 1}" for u in range(1, 6)] + ["g1", "g2"]
    messages = []
    for i in range(400):
        conv = rng.choice(convs)
        sender = rng.randint(1, 5)
        cmid = f"c{rng.randint(0, 300)}"  # some keys repeat: retries within the run
        mentions = rng.choice(["", "", "", "*", "3"]) if conv[0] == "g" else ""
        messages.append(new(conv, sender, 7 if conv[0] == "g" else sender + 1, cmid, 100 + i, mentions=mentions))
    run = run_of(*messages)
    known = {(u, c) for u in range(1, 4) for c in convs}
    results = [lay(impl, run, {"p1_2": 40, "g1": 3}, current={"g2": 17}, known_pairs=known)
               for impl in IMPLEMENTATIONS]
    assert results[0] == results[1]
    values, later, staged, outcomes, *_ = results[1]
    assert len(outcomes) == 400 and len(values) == 10 * len(staged)
    assert sum(s.duplicate for _, s, _ in outcomes) == 400 - len(staged) > 0


def test_a_bad_run_fails_alike(impl):
    with pytest.raises(AttributeError):
        impl.unknown([object()], {}, {}, key_hash, keyfilter_py.KeyFilter(10))
    with pytest.raises(ValueError):
        impl.inserted([(new("p1_2", 1, 2, "a", 1),)], {}, {}, set())
