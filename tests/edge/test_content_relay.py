"""Application content (types 100..255) against a real ``im serve``: what is accepted is
relayed value for value (push and SYNC), what a store's JSON would alter is refused with
1003 naming where, the size bound is on what is sent (MessagePack), and SYNC and HISTORY
move on past a stored message that cannot fit a frame (stored before that bound)."""
from __future__ import annotations

import sqlite3
from typing import Any

import msgspec
import pytest

from edgeim.core_ext import bodies
from edgeim.core_ext.protocol import MAX_BODY_SIZE, ErrorCode, Flag, Op
from edgeim.sdk import Client, ServerError

from harness import new_user, people


class RawSend(msgspec.Struct):
    """A SEND body as an attacker writes it: nothing checked on this side."""

    cmid: str
    content: Any
    type: int = 100


async def raw_send(client: Client, to: int, value: Any, cmid: str, flags: int = 0) -> ServerError:
    with pytest.raises(ServerError) as refused:
        await client.request(Op.SEND, RawSend(cmid=cmid, content=value), target=to, flags=flags)
    return refused.value


async def test_application_content_is_relayed_value_for_value(clients):
    alice, bob = await people(clients, 2)
    value = {"i": [0, -1, 2**53 + 1, 2**63 - 1, 2**64 - 1, -2**63], "f": [0.1, -0.0, 1.0, 1e308, 5e-324],
             "s": "é😀\u0000", "n": None, "b": [True, False], "m": {"deep": {"er": [[], {}]}}}

    ack = await alice.send(bob.user_id, value, type=200)
    pushed = await bob.pushes.get()
    page = await bob.sync(ack.conv, 0)

    assert pushed.content == value and pushed.type == 200
    assert [m.content for m in page.msgs] == [value]
    assert repr(pushed.content["f"][1]) == "-0.0"


@pytest.mark.parametrize("value, where", [
    ({"x": float("nan")}, "content.x: nan"),
    ({"x": [1, float("inf")]}, "content.x[1]: inf"),
    ({"x": {"y": -float("inf")}}, "content.x.y: -inf"),
    ({"x": {1: "one"}}, "content.x: map key 1"),
    ({"x": b"\x00\x01"}, "content.x: binary"),
    ({"x": msgspec.msgpack.Ext(5, b"raw")}, "content.x: extension type"),
])
async def test_what_json_would_alter_is_refused_naming_where(clients, value, where):
    alice, bob = await people(clients, 2)

    refused = await raw_send(alice, bob.user_id, value, "c1")

    assert refused.code == ErrorCode.BAD_BODY and where in str(refused)
    await alice.send(bob.user_id, "still here")  # the connection and the conversation go on
    assert (await bob.pushes.get()).content == "still here"


async def test_a_content_too_large_as_messagepack_is_refused_and_sync_goes_on(clients):
    alice, bob = await people(clients, 2)
    floats = {"f": [0.1] * 7276}  # 29,111 bytes as JSON, 65,498 as MessagePack
    assert len(msgspec.json.encode(floats)) < bodies.MAX_CONTENT < len(msgspec.msgpack.encode(floats))

    refused = await raw_send(alice, bob.user_id, floats, "big")
    ack = await alice.send(bob.user_id, {"f": [0.1] * 3000}, type=100)  # within both bounds

    assert refused.code == ErrorCode.BAD_BODY and "content" in str(refused) and "MessagePack" in str(refused)
    assert (await bob.pushes.get()).content == {"f": [0.1] * 3000}
    page = await bob.sync(ack.conv, 0, limit=1)
    assert [m.seq for m in page.msgs] == [1] and not page.has_more
    with pytest.raises(ValueError):  # the SDK checks before sending
        await alice.send(bob.user_id, floats, type=100)


async def test_sync_and_history_move_past_a_stored_message_that_cannot_fit_a_frame(serve_factory):
    server = serve_factory()
    async with Client(server.url) as alice, Client(server.url) as bob:
        await new_user(alice)
        bob_name, bob_id = await new_user(bob)
        first = await alice.send(bob_id, {"f": [1]}, type=100)
        await alice.send(bob_id, "after it")
    server.stop()
    # as a node before the MessagePack bound stored it: 29 KB of JSON, 65 KB on the wire
    db = sqlite3.connect(server.data_dir / "edgeim.db")
    db.execute("UPDATE messages SET content = ? WHERE conv = ? AND seq = 1",
               (msgspec.json.encode({"f": [0.1] * 7276}).decode(), first.conv))
    db.commit()
    db.close()
    server.start()
    async with Client(server.url) as bob:
        await bob.login(bob_name, "secret-pw", "web")
        _, raw = await bob.request(Op.SYNC, bodies.Sync(conv=first.conv, after_seq=0, limit=1))
        synced = bodies.decode(raw, bodies.Page)
        rest = await bob.sync(first.conv, synced.msgs[-1].seq)
        history = await bob.history(first.conv)
        everything = await bob.sync_all()

    assert len(raw) <= MAX_BODY_SIZE
    [big] = synced.msgs
    assert (big.seq, big.type, big.content, big.too_large, synced.has_more) == (1, 100, "", True, True)
    assert [m.content for m in rest.msgs] == ["after it"] and not rest.has_more
    assert [(m.seq, m.too_large) for m in history.msgs] == [(1, True), (2, False)]
    assert [m.seq for m in everything] == [1, 2]


async def test_a_group_message_too_large_as_messagepack_is_refused(clients):
    alice, bob = await people(clients, 2)
    group = await alice.group_create("g", [bob.user_id])

    refused = await raw_send(alice, group.group, {"f": [0.1] * 7276}, "big", flags=int(Flag.GROUP))

    assert refused.code == ErrorCode.BAD_BODY and "MessagePack" in str(refused)
