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
    PINS_FULL, ConvId, CreateGroup, DissolveGroup, EditMessage, HideMessages, Pin, PinMessage, Quote, RecallMessage,
    DropFriendship, DropJoinRequest, DropMember, NewMessage, PutFriendRequest, PutFriendship, PutGroup, PutJoinRequest,
    PutMember, RevokeToken, SetBlock, SetPasswordHash, SetReaction, SetRemark, SetUserConv, ShareFiles, Store,
    StoreClosed, UnpinMessage,
    StoredMessage, StoreUnavailable, UserConv, UserId, UsernameTaken,
)
from edgeim.backends.mysql import MysqlStore
from edgeim.backends.sqlite import SqliteStore

_ids = itertools.count(1)
MAX_SEQ = 2**63 - 1


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


# -- replies and edits ----------------------------------------------------------------------

async def test_a_reply_stores_what_it_quotes(store):
    conv = ConvId("p1_2")
    first = await store.append(message(conv, 1, 2))
    quote = Quote(first.id, first.seq, first.sender, first.type, first.content[:3])
    # replies and plain messages in one batch, a retry of a reply among them
    futures = [store.submit(msgspec.structs.replace(message(conv, 2, 1, "r1"), reply_to=first.id, quote=quote)),
               store.submit(message(conv, 1, 2, "plain")),
               store.submit(msgspec.structs.replace(message(conv, 2, 1, "r1"), reply_to=first.id, quote=quote))]
    reply, plain, retry = await asyncio.gather(*futures)
    assert (reply.reply_to, reply.quote, reply.duplicate) == (first.id, quote, False)  # the quote, for the push
    assert (plain.reply_to, plain.quote) == (0, None)
    assert (retry.duplicate, retry.id, retry.reply_to) == (True, reply.id, first.id)
    read = {m.seq: m for m in await store.messages_after(conv, 0, 10)}
    assert [(m.reply_to, m.quote) for m in read.values()] == [(0, None), (first.id, None), (0, None)]
    # what a reply quotes is read by id, within its conversation only
    assert sorted(m.id for m in await store.messages_by_id(conv, [first.id, reply.id, 10**12])) == sorted(
        [first.id, reply.id])
    assert await store.messages_by_id(ConvId("p1_3"), [first.id]) == []
    assert await store.messages_by_id(conv, []) == []
    assert (await store.messages_by_id(conv, [reply.id]))[0].reply_to == first.id


async def test_edits_take_change_revisions_per_conversation_and_are_read_back_once(store_factory, store):
    conv, other = ConvId("p1_2"), ConvId("p1_3")
    one, two, three = [await store.append(message(conv, 1, 2)) for _ in range(3)]
    elsewhere = await store.append(message(other, 1, 3))

    edited = await store.apply(EditMessage(conv, one.seq, UserId(1), "one, edited", 1000))
    assert (edited.id, edited.seq, edited.content, edited.edited_at, edited.rev) == (
        one.id, one.seq, "one, edited", 1000, 1)
    assert (await store.apply(EditMessage(conv, two.seq, UserId(1), "two, edited", 1001))).rev == 2
    assert (await store.apply(EditMessage(conv, one.seq, UserId(1), "one, again", 1002))).rev == 3
    assert (await store.apply(EditMessage(other, elsewhere.seq, UserId(1), "there", 1003))).rev == 1

    # refused: not the sender's, no such message (nothing moves), recalled (the recall moved it)
    assert await store.apply(EditMessage(conv, three.seq, UserId(2), "not mine", 1004)) is None
    assert await store.apply(EditMessage(conv, 99, UserId(1), "none", 1004)) is None
    assert (await store.apply(RecallMessage(conv, three.seq, UserId(1), 1005))).rev == 4
    assert await store.apply(EditMessage(conv, three.seq, UserId(1), "back", 1006)) is None

    def seen(rows: list[StoredMessage]) -> list[tuple[int, str, int]]:
        return [(m.seq, m.content, m.rev) for m in rows]

    # each changed message once, as it is now, by revision; the conversation's revision beside
    changed, top = await store.messages_changed(conv, 0, MAX_SEQ, 10)
    assert (seen(changed), top) == ([(two.seq, "two, edited", 2), (one.seq, "one, again", 3), (three.seq, "", 4)], 4)
    assert seen((await store.messages_changed(conv, 2, MAX_SEQ, 10))[0]) == [(one.seq, "one, again", 3),
                                                                            (three.seq, "", 4)]
    assert await store.messages_changed(conv, 4, MAX_SEQ, 10) == ([], 4)
    assert seen((await store.messages_changed(conv, 0, MAX_SEQ, 1))[0]) == [(two.seq, "two, edited", 2)]
    assert seen((await store.messages_changed(conv, 0, one.seq, 10))[0]) == [(one.seq, "one, again", 3)]  # up to seq
    assert seen((await store.messages_changed(other, 0, MAX_SEQ, 10))[0]) == [(elsewhere.seq, "there", 1)]
    # the pages show the new text, and it is durable
    await store.close()
    again = await reopen(store_factory)
    try:
        read = await again.messages_after(conv, 0, 10)
        assert [(m.content, m.edited_at, m.rev) for m in read] == [
            ("one, again", 1002, 3), ("two, edited", 1001, 2), ("", 0, 4)]
        assert (await again.apply(EditMessage(conv, two.seq, UserId(1), "two, later", 1007))).rev == 5
    finally:
        await again.close()


async def test_edits_reactions_and_recalls_share_one_revision(store):
    conv = ConvId("p1_2")
    one, two = [await store.append(message(conv, 1, 2)) for _ in range(2)]
    reacted = await store.apply(SetReaction(conv, one.seq, UserId(2), "A", True, 10, max_emoji=5,
                                            max_per_user=5, shown=5))
    edited = await store.apply(EditMessage(conv, two.seq, UserId(1), "two, edited", 11))
    recalled = await store.apply(RecallMessage(conv, one.seq, UserId(1), 12))  # a reacted one
    assert (reacted.message.rev, edited.rev, recalled.rev) == (1, 2, 3)
    changed, top = await store.messages_changed(conv, 1, MAX_SEQ, 10)
    assert ([(m.seq, m.rev, m.content, m.reactions) for m in changed], top) == (
        [(two.seq, 2, "two, edited", ""), (one.seq, 3, "", "")], 3)


async def test_a_search_finds_the_edited_text_not_the_old(store):
    conv = ConvId("p1_2")
    indexed = await store.append(message(conv, 1, 2))
    await store.apply(EditMessage(conv, indexed.seq, UserId(1), "the zebra crossing", 1))
    assert [m.id for m in await store.search([(conv, 0)], "zebra", 0, 10)] == [indexed.id]  # indexed now
    await store.apply(EditMessage(conv, indexed.seq, UserId(1), "the giraffe crossing", 2))  # indexed: replaced
    fresh = await store.append(message(conv, 1, 2))
    await store.apply(EditMessage(conv, fresh.seq, UserId(1), "a lion, then a tiger", 3))  # not indexed yet
    await store.apply(EditMessage(conv, fresh.seq, UserId(1), "a tiger only", 4))
    assert await store.search([(conv, 0)], "zebra", 0, 10) == []
    assert await store.search([(conv, 0)], "lion", 0, 10) == []
    assert [m.id for m in await store.search([(conv, 0)], "giraffe", 0, 10)] == [indexed.id]
    assert [m.id for m in await store.search([(conv, 0)], "tiger", 0, 10)] == [fresh.id]
    assert [m.content for m in await store.search([(conv, 0)], "crossing", 0, 10)] == ["the giraffe crossing"]


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


async def test_sqlite_seq_cache_stays_bounded_and_seqs_stay_right(sqlite_store, monkeypatch):
    """The writer keeps the last seq of at most _SEQ_CACHE_MAX conversations; one batch
    over more of them drops the oldest, which read their seq back when they come again."""
    monkeypatch.setattr(sqlite_backend, "_SEQ_CACHE_MAX", 3)
    convs = [(f"p:{u}:{u + 1}", u, u + 1) for u in range(1, 16, 2)]  # 8 conversations

    async def one_batch() -> list[StoredMessage]:
        lock = hold_write_lock(sqlite_store.path)
        try:
            blocked = asyncio.ensure_future(sqlite_store.append(message("p:100:101", 100, 101)))
            await asyncio.sleep(0)  # the writer waits for the lock with this one ...
            batch = asyncio.gather(*(sqlite_store.append(message(c, a, b)) for c, a, b in convs for _ in range(2)))
            await asyncio.sleep(0)  # ... and takes these together
        finally:
            lock.rollback()
            lock.close()
        await blocked
        return await batch

    first, second = await one_batch(), await one_batch()
    assert [m.seq for m in first] == [1, 2] * len(convs)
    assert [m.seq for m in second] == [3, 4] * len(convs)
    assert len(sqlite_store._last_seq) <= 3


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
    """The batch's multi-row INSERT stops at the bad row with the rows before it written:
    the store rolls the batch back and writes it again a row at a time, every op once."""
    await sqlite_store.append(message("p:1:2", 1, 2, msg_id=70_007))
    lock = hold_write_lock(sqlite_store.path)
    try:
        ahead = asyncio.ensure_future(sqlite_store.append(message("p:1:3", 1, 3)))
        await asyncio.sleep(0)
        batch = asyncio.gather(
            sqlite_store.append(message("p:1:2", 1, 2)),
            sqlite_store.apply(CreateGroup("g", "", "", UserId(1), "open", 100, [], 5)),
            sqlite_store.append(message("p:1:2", 1, 2)),
            sqlite_store.append(message("p:1:2", 1, 2, msg_id=70_007)),  # id already taken
            sqlite_store.append(message("p:1:2", 1, 2)),
            return_exceptions=True,
        )
        await asyncio.sleep(0)
    finally:
        lock.rollback()
        lock.close()
    await ahead
    first, made, second, bad, third = await batch
    assert isinstance(bad, sqlite3.IntegrityError)
    assert [first.seq, second.seq, third.seq] == [2, 3, 4]
    history = await sqlite_store.messages_after(ConvId("p:1:2"), 0, 10)
    assert [(m.id, m.seq) for m in history] == [(70_007, 1), (first.id, 2), (second.id, 3), (third.id, 4)]
    assert (await sqlite_store.load_group(made.group.id)).group.name == "g"
    conn = sqlite3.connect(sqlite_store.path)
    try:
        assert conn.execute("SELECT count(*) FROM chat_groups").fetchone()[0] == 1
    finally:
        conn.close()
    assert (await sqlite_store.append(message("p:1:2", 1, 2))).seq == 5


async def test_sqlite_a_batch_rolled_back_after_its_rows_leaves_search_nothing_to_wait_for(sqlite_store):
    """The rows of a batch that fails at its end are gone: a search does not wait for
    them to be indexed (it waited for its whole timeout, then failed)."""
    def private(text):
        return msgspec.structs.replace(message("p:1:2", 1, 2), content=text, members=(UserId(1), UserId(2)))

    first = await sqlite_store.append(private("hello"))
    conn = sqlite3.connect(sqlite_store.path, isolation_level=None)
    try:  # the sender's read cursor cannot move past 1: the batch fails after its INSERT
        conn.execute("CREATE TRIGGER stuck BEFORE UPDATE OF read_seq ON user_convs WHEN NEW.read_seq > 1"
                     " BEGIN SELECT RAISE(ABORT, 'stuck'); END")
        with pytest.raises(StoreUnavailable, match="stuck"):
            await sqlite_store.append(private("hello again"))
        conn.execute("DROP TRIGGER stuck")
    finally:
        conn.close()
    found = await sqlite_store.search([(ConvId("p:1:2"), 0)], "hello", 0, 10)
    assert [m.id for m in found] == [first.id]


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


async def test_sqlite_migration_2_keeps_the_lists_of_a_version_1_file(tmp_path, database_at):
    path = tmp_path / "im.db"
    conn = database_at(path, 1)
    conn.execute("INSERT INTO messages VALUES (1, 'p1_2', 1, 1, 2, 'c', 1, 'old', 5)")
    conn.execute("INSERT INTO conversations VALUES (1, 'p1_2', 2, 1, 5), (2, 'p1_2', 1, 1, 5)")
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


# -- who may add whom to a group, and the invitations of the other adds -----------------------

async def test_the_group_add_rule_is_stored_read_in_bulk_and_durable(store_factory):
    from edgeim.backends.protocols import SetSettings
    store = await reopen(store_factory)
    alice = await store.create_user("alice", "h", "")
    bob = await store.create_user("bob", "h", "")
    assert (await store.load_user(alice.id)).group_add == ""  # never chosen: the node's default
    await store.apply(SetSettings(alice.id, True, "nobody"))
    assert await store.group_add_rules([alice.id, bob.id, UserId(10_000), UserId(2**63 - 1)]) == {
        alice.id: "nobody", bob.id: ""}  # who does not exist is left out
    await store.close()
    store = await reopen(store_factory)
    loaded = await store.load_user(alice.id)
    assert (loaded.invisible, loaded.group_add) == (True, "nobody")
    await store.apply(SetSettings(alice.id, False, "anyone"))  # one write replaces both
    loaded = await store.load_user(alice.id)
    assert (loaded.invisible, loaded.group_add) == (False, "anyone")
    assert await store.group_add_rules([]) == {}
    await store.close()


async def test_invitations_are_stored_with_the_group_bounded_and_all_or_nothing(store):
    import time

    from edgeim.backends.protocols import DropInvitation, Invitation, InvitationsFull, PutInvitations
    owner, a, b, c = [(await store.create_user(n, "h", "")).id for n in ("owner", "a", "b", "c")]
    now = int(time.time() * 1000)
    week = now + 7 * 86_400_000
    made = await store.apply(CreateGroup("g", "", "", owner, "approval", 100, [], now, [a, b], week, 2, 10))
    g = made.group.id
    assert made.invitations == [Invitation(g, a, owner, now, week), Invitation(g, b, owner, now, week)]
    assert [m.user for m in made.members] == [owner]  # invited, not members
    assert (await store.load_group(g)).invitations == made.invitations
    assert (await store.load_user(a)).invitations == [made.invitations[0]]
    assert (await store.load_user(a)).convs == []

    # a's second invitation fits; a third does not, and takes c's down with it
    other = (await store.apply(CreateGroup("h", "", "", owner, "approval", 100, [], now, [a], week, 2, 10))).group.id
    with pytest.raises(InvitationsFull) as full:
        await store.apply(PutInvitations(g, owner, [c, a], now, week, 1, 10))
    assert (full.value.user, full.value.inviter) == (a, False)
    assert (await store.load_user(c)).invitations == []
    groups_before = await store.list_groups(0, 100)
    with pytest.raises(InvitationsFull):  # a group whose invitations do not fit is not created
        await store.apply(CreateGroup("x", "", "", owner, "approval", 100, [], now, [a], week, 2, 10))
    assert await store.list_groups(0, 100) == groups_before
    # the inviter's bound: 3 sent
    with pytest.raises(InvitationsFull) as full:
        await store.apply(PutInvitations(other, owner, [c], now, week, 5, 3))
    assert (full.value.user, full.value.inviter) == (owner, True)

    # a new member's invitation goes in the same write; a declined one goes; so do a group's
    await store.apply(PutMember(g, a, "member", 0, now))
    await store.apply(DropInvitation(other, a))
    assert (await store.load_user(a)).invitations == []
    assert [i.invitee for i in (await store.load_group(g)).invitations] == [b]
    await store.apply(DissolveGroup(g))
    assert (await store.load_user(b)).invitations == []


async def test_expired_invitations_are_not_loaded_nor_counted(store):
    import time

    from edgeim.backends.protocols import PutInvitations
    owner, a = [(await store.create_user(n, "h", "")).id for n in ("owner", "a")]
    now = int(time.time() * 1000)
    g1 = (await store.apply(CreateGroup("g1", "", "", owner, "approval", 100, [], now))).group.id
    g2 = (await store.apply(CreateGroup("g2", "", "", owner, "approval", 100, [], now))).group.id
    await store.apply(PutInvitations(g1, owner, [a], now - 2000, now - 1000, 1, 1))  # expired already

    assert (await store.load_user(a)).invitations == []
    assert (await store.load_group(g1)).invitations == []
    await store.apply(PutInvitations(g2, owner, [a], now, now + 60_000, 1, 1))  # fits both bounds of 1
    assert [i.group for i in (await store.load_user(a)).invitations] == [g2]
# -- accounts and profiles ------------------------------------------------------------------

async def test_a_profile_is_replaced_and_durable(store_factory):
    from edgeim.backends.protocols import SetProfile

    store = await reopen(store_factory)
    user = await store.create_user("erin", "h", "Erin")
    assert (user.avatar, user.bio, user.epoch, user.deleted) == ("", "", 0, False)
    await store.apply(SetProfile(user.id, "Erin B.", "https://example.org/e.png", "hi ✓"))
    await store.close()
    store = await reopen(store_factory)
    try:
        again = await store.get_user_by_name("erin")
        assert (again.nickname, again.avatar, again.bio) == ("Erin B.", "https://example.org/e.png", "hi ✓")
        assert again.password_hash == "h"  # nothing else moved
    finally:
        await store.close()


async def test_new_credentials_move_the_epoch_on(store):
    from edgeim.backends.protocols import SetCredentials

    user = await store.create_user("fred", "h0", "Fred")
    assert await store.apply(SetCredentials(user.id, "h1")) == 1
    assert await store.apply(SetCredentials(user.id, "h2")) == 2
    again = await store.get_user(user.id)
    assert (again.password_hash, again.epoch) == ("h2", 2)
    await store.apply(SetPasswordHash(user.id, "h3"))  # a rehash at login keeps the epoch
    assert (await store.get_user(user.id)).epoch == 2


async def test_a_deleted_account_keeps_its_row_and_loses_its_graph(store):
    from edgeim.backends.protocols import DeleteAccount, GroupId, SetProfile

    gone, a, b = [await store.create_user(n, "h", n.title()) for n in ("gina", "hal", "ivy")]
    await store.apply(SetProfile(gone.id, "G", "https://x.org/a.png", "bio"))
    await store.apply(PutFriendship(gone.id, a.id, 1))
    await store.apply(PutFriendRequest(b.id, gone.id, "hi", 1))
    await store.apply(SetBlock(b.id, gone.id, True))
    group = (await store.apply(CreateGroup("g", "", "", a.id, "open", 100, [gone.id, b.id], 1))).group
    conv = ConvId(f"p{min(gone.id, a.id)}_{max(gone.id, a.id)}")
    kept = await store.append(msgspec.structs.replace(message(conv, gone.id, a.id), members=(gone.id, a.id)))
    await store.append(message(conv, a.id, gone.id))
    assert await store.apply(DeleteAccount(gone.id, 1234)) == 0
    row = await store.get_user(gone.id)
    assert (row.deleted_at, row.nickname, row.avatar, row.bio, row.password_hash) == (1234, "", "", "", "")
    assert row.username == "gina" and row.epoch == 1 and row.deleted
    with pytest.raises(UsernameTaken):  # the username is not freed
        await store.create_user("gina", "h", "")
    mine = await store.load_user(gone.id)
    assert (mine.friends, mine.requests_in, mine.blocked_by, mine.convs) == ([], [], [], [])
    other = await store.load_user(a.id)
    assert other.friends == [] and conv in [c.conv for c in other.convs]  # the other party keeps the chat
    assert (await store.load_user(b.id)).blocked == [] and (await store.load_user(b.id)).requests_out == []
    members = (await store.load_group(GroupId(group.id))).members
    assert gone.id not in [m.user for m in members]
    msgs = await store.messages_after(conv, 0, 10)
    assert [(m.sender, m.content, m.recalled_by) for m in msgs][0] == (gone.id, kept.content, 0)  # kept as sent


async def test_a_deleted_account_with_erasure_leaves_tombstones(store):
    from edgeim.backends.protocols import DeleteAccount

    gone, a = await store.create_user("jay", "h", "J"), await store.create_user("kim", "h", "K")
    conv = ConvId(f"p{min(gone.id, a.id)}_{max(gone.id, a.id)}")
    for _ in range(3):
        await store.append(msgspec.structs.replace(message(conv, gone.id, a.id), members=(gone.id, a.id)))
    theirs = await store.append(message(conv, a.id, gone.id))
    edited = await store.apply(EditMessage(conv, theirs.seq, a.id, "hello again", 50))
    assert edited.rev == 1
    assert await store.apply(DeleteAccount(gone.id, 99, erase=True)) == 3
    msgs = await store.messages_after(conv, 0, 10)
    assert [(m.content, m.recalled_by, m.recalled_at) for m in msgs[:3]] == [("", gone.id, 99)] * 3
    # each tombstone moved the conversation's change revision, as a recall does
    changed, top = await store.messages_changed(conv, 1, MAX_SEQ, 10)
    assert ([(m.seq, m.rev) for m in changed], top) == ([(m.seq, 2 + i) for i, m in enumerate(msgs[:3])], 4)
    assert msgs[3].content == "hello again" and msgs[3].recalled_by == 0  # the other party's own stay
    assert await store.search([(conv, 0)], "hello", 0, 10) == [msgs[3]]


# -- reactions and forwards --------------------------------------------------------------

async def test_reactions_are_bounded_summarised_and_move_the_revision(store_factory):
    store = await reopen(store_factory)
    try:
        first = await store.append(message("p1_2", 1, 2))
        second = await store.append(message("p1_2", 1, 2))

        def react(seq: int, user: int, emoji: str, add: bool = True, ts: int = 10) -> asyncio.Future:
            return store.apply(SetReaction(ConvId("p1_2"), seq, UserId(user), emoji, add, ts, max_emoji=2,
                                           max_per_user=2, shown=1))

        done = await react(first.seq, 2, "A")
        assert (done.outcome, done.message.reactions, done.message.rev) == ("changed", '[["A",1,[2]]]', 1)
        assert (await react(first.seq, 2, "A")).outcome == "unchanged"  # the same again: nothing written
        assert (await react(first.seq, 1, "A", ts=11)).message.reactions == '[["A",2,[2]]]'  # one user shown
        assert (await react(first.seq, 1, "B", ts=12)).message.rev == 3
        assert (await react(first.seq, 1, "C")).outcome == "too_many_mine"
        assert (await react(first.seq, 2, "C")).outcome == "too_many_emoji"
        assert (await react(first.seq, 2, "B", add=False)).outcome == "unchanged"  # never added
        assert (await react(99, 2, "A")).outcome == "missing"
        moved = await react(second.seq, 2, "B")
        assert (moved.outcome, moved.message.rev) == ("changed", 4)

        rows = await store.messages_after(ConvId("p1_2"), 0, 10)
        assert [(m.seq, m.reactions, m.rev) for m in rows] == [
            (1, '[["A",2,[2]],["B",1,[1]]]', 3), (2, '[["B",1,[2]]]', 4)]
        changed, top = await store.messages_changed(ConvId("p1_2"), 0, 10, 10)
        assert ([m.seq for m in changed], top) == ([1, 2], 4)
        changed, top = await store.messages_changed(ConvId("p1_2"), 3, 10, 10)
        assert ([m.seq for m in changed], top) == ([2], 4)
        assert (await store.messages_changed(ConvId("p1_2"), 0, 1, 10))[0][0].seq == 1  # up to seq 1 only

        # a recall takes the reactions with the content, and moves the revision
        tombstone = await store.apply(RecallMessage(ConvId("p1_2"), first.seq, UserId(1), 50))
        assert (tombstone.reactions, tombstone.rev) == ("", 5)
        assert (await react(first.seq, 2, "A")).outcome == "recalled"
        await store.close()
        store = await reopen(store_factory)  # durable
        rows = await store.messages_before(ConvId("p1_2"), 0, 10)
        assert [(m.seq, m.reactions, m.rev) for m in rows] == [(1, "", 5), (2, '[["B",1,[2]]]', 4)]
    finally:
        await store.close()


async def test_a_forwarded_message_keeps_its_mark_and_its_files_their_conversations(store_factory):
    store = await reopen(store_factory)
    try:
        plain = await store.append(message("p1_3", 1, 3))
        forwarded = await store.append(msgspec.structs.replace(message("p1_3", 1, 3), fwd=2))
        hidden = await store.append(msgspec.structs.replace(message("p1_3", 1, 3), fwd=-1))
        retried = await store.append(msgspec.structs.replace(message("p1_3", 1, 3, cmid=forwarded.cmid), fwd=2))
        assert (plain.fwd, forwarded.fwd, hidden.fwd) == (0, 2, -1)
        assert retried.duplicate and retried.id == forwarded.id
        await store.apply(ShareFiles(ConvId("g9"), ("p1_2/AAAAAAAAAAAAAAAA/a.pdf",)))
        await store.apply(ShareFiles(ConvId("g9"), ("p1_2/AAAAAAAAAAAAAAAA/a.pdf",)))  # again: no error
        await store.apply(ShareFiles(ConvId("p1_3"), ("p1_2/AAAAAAAAAAAAAAAA/a.pdf",)))
        await store.close()
        store = await reopen(store_factory)
        rows = await store.messages_after(ConvId("p1_3"), 0, 10)
        assert [m.fwd for m in rows] == [0, 2, -1]
        assert sorted(await store.file_convs("p1_2/AAAAAAAAAAAAAAAA/a.pdf")) == ["g9", "p1_3"]
        assert await store.file_convs("p1_2/AAAAAAAAAAAAAAAA/b.pdf") == []
    finally:
        await store.close()


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
    assert isinstance(first, Pin)
    assert (first.seq, first.by, first.at, first.message.seq, first.created) == (1, 1, 100, 1, True)
    again = await store.apply(PinMessage(conv, 1, UserId(1), 100, 2))  # pinned already, even by the same, same ms
    assert (again.by, again.at, again.created) == (1, 100, False)
    again = await store.apply(PinMessage(conv, 1, UserId(2), 200, 2))  # pinned already: the stored pin
    assert (again.by, again.at, again.created) == (1, 100, False)
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
