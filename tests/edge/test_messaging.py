"""1:1 messaging against a real ``im serve`` process, on both codec implementations:
send/ack/push, multi-device, offline sync, retries, restarts, ordering, membership."""
from __future__ import annotations

import asyncio
import signal

import msgspec
import pytest

from edgeim.core_ext import bodies
from edgeim.core_ext.codec import decode_frame, encode_frame
from edgeim.core_ext.protocol import ErrorCode, Flag, Op
from edgeim.sdk import Client, ServerError

from harness import everything_stored_for, new_user


@pytest.fixture
def server(serve_factory, codec):
    return serve_factory(codec)


async def test_send_is_acked_then_pushed_to_receiver(clients):
    alice, bob = await clients(), await clients()
    _, alice_id = await new_user(alice)
    _, bob_id = await new_user(bob)

    ack = await alice.send(bob_id, "hi bob", cmid="c-1")
    push = await asyncio.wait_for(bob.pushes.get(), 5)

    assert ack.cmid == "c-1" and ack.seq == 1 and ack.conv == f"p{alice_id}_{bob_id}"
    assert (push.id, push.seq, push.conv, push.sender, push.to) == (ack.msg_id, 1, ack.conv, alice_id, bob_id)
    assert (push.content, push.cmid, push.ts) == ("hi bob", "c-1", ack.ts)
    assert alice.pushes.empty()  # the sending connection gets the ack, not a push


async def test_every_device_of_both_sides_gets_the_same_push_bytes(server):
    """Invariant 4: one encoding per fanout, the same bytes on every receiving device."""
    seen: dict[str, list[bytes]] = {}

    class Recording(Client):
        def _on_frame(self, data: bytes) -> None:
            if decode_frame(data)[0] == Op.MSG_PUSH:
                seen.setdefault(self.terminal, []).append(data)
            super()._on_frame(data)

    alice_phone, alice_desktop = Recording(server.url), Recording(server.url)
    bob_phone, bob_web = Recording(server.url), Recording(server.url)
    for client in (alice_phone, alice_desktop, bob_phone, bob_web):
        await client.connect()
    alice_id = await alice_phone.register("alice", "secret-pw")
    bob_id = await bob_phone.register("bob", "secret-pw")
    await alice_phone.login("alice", "secret-pw", "ios")
    await alice_desktop.login("alice", "secret-pw", "desktop")
    await bob_phone.login("bob", "secret-pw", "android")
    await bob_web.login("bob", "secret-pw", "web")

    await alice_phone.send(bob_id, "to all your devices")
    for client in (alice_desktop, bob_phone, bob_web):
        await asyncio.wait_for(client.pushes.get(), 5)

    assert set(seen) == {"desktop", "android", "web"}  # not the sending device ("ios")
    frames = [frames[0] for frames in seen.values()]
    assert frames[0] == frames[1] == frames[2]
    assert decode_frame(frames[0])[3] == bob_id  # header target: the receiver, routable unread
    for client in (alice_phone, alice_desktop, bob_phone, bob_web):
        await client.close()
    assert alice_id != bob_id


async def test_offline_receiver_syncs_on_reconnect_exactly_once_in_order(server, clients):
    """Invariant 2: reconnect and sync from the last seq gets each acked message once, in seq order."""
    alice, bob = await clients(), await clients()
    _, bob_id = await new_user(bob)
    await new_user(alice)
    first = await alice.send(bob_id, "while online")
    await asyncio.wait_for(bob.pushes.get(), 5)
    await bob.close()

    acks = [await alice.send(bob_id, f"offline {n}") for n in range(25)]

    bob2 = Client(server.url)
    await bob2.connect()
    await bob2.token_login(bob.token, "web")
    bob2.last_seqs = dict(bob.last_seqs)  # what the app kept on disk
    caught_up = await bob2.sync_all(limit=10)  # three pages
    await bob2.close()

    assert [m.seq for m in caught_up] == list(range(first.seq + 1, first.seq + 26))
    assert [m.id for m in caught_up] == [a.msg_id for a in acks]
    assert [m.content for m in caught_up] == [f"offline {n}" for n in range(25)]


async def test_second_device_syncs_what_the_first_sent(clients):
    alice, bob = await clients(), await clients()
    alice_name, _ = await new_user(alice, "ios")
    _, bob_id = await new_user(bob)
    acks = [await alice.send(bob_id, f"m{n}") for n in range(3)]

    alice_laptop = await clients()
    await alice_laptop.login(alice_name, "secret-pw", "desktop")
    caught_up = await alice_laptop.sync_all()

    assert [(m.seq, m.id, m.content) for m in caught_up] == [(a.seq, a.msg_id, f"m{n}") for n, a in enumerate(acks)]


async def test_retried_send_is_stored_once_and_acked_with_the_same_ids(clients):
    """Invariant 3."""
    alice, bob = await clients(), await clients()
    _, alice_id = await new_user(alice)
    _, bob_id = await new_user(bob)

    first = await alice.send(bob_id, "once", cmid="retry-me")
    _, body = await alice.request(Op.SEND, bodies.Send(cmid="retry-me", content="once"), target=bob_id, flags=Flag.RETRY)
    again = bodies.decode(body, bodies.SendAck)
    _, body = await alice.request(Op.SEND, bodies.Send(cmid="retry-me", content="once"), target=bob_id)
    third = bodies.decode(body, bodies.SendAck)
    page = await bob.history(first.conv)

    assert (again.msg_id, again.seq, again.ts) == (first.msg_id, first.seq, first.ts)
    assert (third.msg_id, third.seq) == (first.msg_id, first.seq)
    assert [m.id for m in page.msgs] == [first.msg_id]
    assert (await asyncio.wait_for(bob.pushes.get(), 5)).id == first.msg_id
    await bob.ping()  # a round trip after the retries: no second push was queued before it
    assert bob.pushes.empty()
    assert alice_id in (m.sender for m in page.msgs)


async def test_pipelined_sends_keep_their_order_and_seqs_strictly_increase(clients):
    alice, bob = await clients(), await clients()
    await new_user(alice)
    _, bob_id = await new_user(bob)

    acks = await asyncio.gather(*(alice.send(bob_id, f"n{n}") for n in range(200)))
    pushes = [await asyncio.wait_for(bob.pushes.get(), 5) for _ in range(200)]

    assert [a.seq for a in acks] == list(range(1, 201))
    assert len({a.msg_id for a in acks}) == 200
    assert [p.content for p in sorted(pushes, key=lambda p: p.seq)] == [f"n{n}" for n in range(200)]


async def test_history_pages_backwards_without_gaps(clients):
    alice, bob = await clients(), await clients()
    await new_user(alice)
    _, bob_id = await new_user(bob)
    acks = await asyncio.gather(*(alice.send(bob_id, f"h{n}") for n in range(23)))
    conv = acks[0].conv

    pages, before = [], 0
    while True:
        page = await bob.history(conv, before_seq=before, limit=10)
        pages.append([m.seq for m in page.msgs])
        if not page.has_more:
            break
        before = page.msgs[0].seq

    assert pages == [list(range(14, 24)), list(range(4, 14)), [1, 2, 3]]


async def sent_then_killed(server, texts: list[str]) -> tuple[str, list[bodies.SendAck]]:
    """A new user sends ``texts`` to another (Bob); once all are acked the node is killed
    (SIGKILL) and started again. Returns (Bob's username, the acks)."""
    alice, bob = Client(server.url), Client(server.url)
    await alice.connect()
    await bob.connect()
    await new_user(alice)
    bob_name, bob_id = await new_user(bob)
    acks = list(await asyncio.gather(*(alice.send(bob_id, text) for text in texts)))
    await alice.close()
    await bob.close()
    server.restart(signal.SIGKILL)
    return bob_name, acks


async def test_acked_messages_survive_a_crash_and_a_clean_restart(server):
    """Invariant 1: an ack means durable, even if the node is killed right after it."""
    bob_name, acks = await sent_then_killed(server, [f"k{n}" for n in range(300)])
    stored = await everything_stored_for(server.url, bob_name)
    assert sorted((m.seq, m.id) for m in stored) == sorted((a.seq, a.msg_id) for a in acks)

    server.restart(signal.SIGTERM)
    assert len(await everything_stored_for(server.url, bob_name)) == 300


async def test_acked_messages_are_found_by_search_after_a_crash(server):
    """The search index is written behind the commits: what was acked before a kill -9 is
    indexed from the messages themselves, before the first search that needs it."""
    bob_name, acks = await sent_then_killed(server, [f"needle {n} in the haystack" for n in range(40)])
    async with Client(server.url) as again:
        await again.login(bob_name, "secret-pw", "ios")
        found = await again.search("needle", limit=50)
        assert sorted(m.id for m in found.msgs) == sorted(a.msg_id for a in acks)
        assert (await again.search("haystack 3")).msgs == []  # a substring, not words apart


async def test_sdk_resends_unacked_sends_after_the_node_restarts(server):
    alice, bob = Client(server.url, auto_reconnect=True), Client(server.url)
    await alice.connect()
    await bob.connect()
    await new_user(alice)
    bob_name, bob_id = await new_user(bob)
    await bob.close()

    sends = [asyncio.ensure_future(alice.send(bob_id, f"r{n}")) for n in range(50)]
    await asyncio.sleep(0)  # the frames are written; the node goes before all are acked
    server.restart(signal.SIGKILL)
    acks = await asyncio.wait_for(asyncio.gather(*sends), 30)

    stored = await everything_stored_for(server.url, bob_name)
    await alice.close()
    assert sorted(m.content for m in stored) == sorted(f"r{n}" for n in range(50))  # each stored once
    assert sorted(m.id for m in stored) == sorted(a.msg_id for a in acks)


async def test_members_only_read_their_conversations(clients):
    """Invariant 6: conversation membership is checked server-side."""
    alice, bob, eve = await clients(), await clients(), await clients()
    await new_user(alice)
    _, bob_id = await new_user(bob)
    await new_user(eve)
    ack = await alice.send(bob_id, "private")

    for call in (eve.sync(ack.conv), eve.history(ack.conv)):
        with pytest.raises(ServerError) as err:
            await call
        assert err.value.code == ErrorCode.FORBIDDEN
    with pytest.raises(ServerError) as err:
        await eve.sync("p1_1")
    assert err.value.code == ErrorCode.INVALID_ARGUMENT
    assert [c.conv for c in await eve.conversations()] == []
    assert (await bob.sync(ack.conv)).msgs[0].content == "private"


async def test_send_to_missing_user_or_to_self_is_refused(clients):
    alice = await clients()
    _, alice_id = await new_user(alice)
    with pytest.raises(ServerError) as err:
        await alice.send(10**9, "anyone?")
    assert err.value.code == ErrorCode.USER_NOT_FOUND
    with pytest.raises(ServerError) as err:
        await alice.send(alice_id, "me")
    assert err.value.code == ErrorCode.INVALID_ARGUMENT
    assert await alice.conversations() == []


async def test_pages_fit_in_a_frame_and_page_on_with_has_more(server, clients):
    alice, bob = await clients(), await clients()
    await new_user(alice)
    bob_name, bob_id = await new_user(bob)
    big = "中" * 10_000  # 30 000 bytes in UTF-8: two fit in one frame, three do not
    acks = [await alice.send(bob_id, f"{n}{big}") for n in range(5)]
    conv = acks[0].conv

    first = await bob.sync(conv, 0, limit=100)
    newest = await bob.history(conv, 0, limit=100)
    everything = await everything_stored_for(server.url, bob_name)

    assert [m.seq for m in first.msgs] == [1, 2] and first.has_more
    assert [m.seq for m in newest.msgs] == [4, 5] and newest.has_more
    assert [m.seq for m in everything] == [1, 2, 3, 4, 5]
    assert everything[4].content == f"4{big}"


async def test_content_over_the_byte_bound_is_refused(clients):
    alice, bob = await clients(), await clients()
    await new_user(alice)
    _, bob_id = await new_user(bob)
    with pytest.raises(ValueError):  # the SDK checks before sending ...
        await alice.send(bob_id, "中" * 11_000)  # 11 000 characters, 33 000 bytes
    body = msgspec.msgpack.encode({"cmid": "c", "content": "中" * 11_000})  # ... the node too
    op, reply = await alice.exchange_raw(encode_frame(Op.SEND, 77, bob_id, body), 77)
    assert op == Op.ERROR and bodies.decode(reply, bodies.Error).code == ErrorCode.BAD_BODY
    assert await bob.conversations() == []


async def test_a_failed_send_does_not_let_later_sends_overtake_earlier_ones(clients):
    alice, bob, carol = await clients(), await clients(), await clients()
    _, alice_id = await new_user(alice)
    _, bob_id = await new_user(bob)
    _, carol_id = await new_user(carol)  # never sent to yet: the node looks her up

    sends = [
        asyncio.ensure_future(alice.send(carol_id, "a")),
        asyncio.ensure_future(alice.send(bob_id, "b")),
        asyncio.ensure_future(alice.send(alice_id, "c: refused")),
        asyncio.ensure_future(alice.send(bob_id, "d")),
    ]
    a, b, c, d = await asyncio.gather(*sends, return_exceptions=True)

    assert isinstance(c, ServerError) and c.code == ErrorCode.INVALID_ARGUMENT
    assert (b.seq, d.seq) == (1, 2)
    assert a.seq == 1


async def test_sync_all_fills_a_gap_left_by_a_missed_push(server, clients):
    alice = await clients()
    await new_user(alice)
    bob = await clients()
    bob_name, bob_id = await new_user(bob)
    await bob.close()
    await alice.send(bob_id, "missed while offline")

    bob = await clients()
    await bob.login(bob_name, "secret-pw", "web")
    await alice.send(bob_id, "pushed")
    pushed = await asyncio.wait_for(bob.pushes.get(), 5)
    caught_up = await bob.sync_all()

    assert pushed.seq == 2
    assert [m.content for m in caught_up] == ["missed while offline", "pushed"]


async def test_each_connection_sees_a_conversations_seqs_in_order(server):
    """Acks and pushes of one conversation reach a connection in seq order, even when
    both sides send at once and their messages commit in the same batch."""
    arrivals: dict[str, list[int]] = {}

    class Recording(Client):
        def _on_frame(self, data: bytes) -> None:
            op, _, _, _, body = decode_frame(data)
            if op == Op.SEND_ACK:
                arrivals.setdefault(self.terminal, []).append(bodies.decode(body, bodies.SendAck).seq)
            elif op == Op.MSG_PUSH:
                arrivals.setdefault(self.terminal, []).append(bodies.decode(body, bodies.Message).seq)
            super()._on_frame(data)

    alice, bob = Recording(server.url), Recording(server.url)
    await alice.connect()
    await bob.connect()
    alice_id = await alice.register("alice", "secret-pw")
    bob_id = await bob.register("bob", "secret-pw")
    await alice.login("alice", "secret-pw", "ios")
    await bob.login("bob", "secret-pw", "web")

    for _ in range(20):
        await asyncio.gather(*(alice.send(bob_id, "a") for _ in range(5)), *(bob.send(alice_id, "b") for _ in range(5)))
    await alice.ping()
    await bob.ping()  # every push was written before these replies
    await alice.close()
    await bob.close()

    for terminal in ("ios", "web"):
        assert arrivals[terminal] == list(range(1, 201)), terminal


def _masked(frame: bytes) -> bytes:
    """A client-to-server WebSocket message by hand (mask key 0: payload unchanged)."""
    size = len(frame)
    length = bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + size.to_bytes(2, "big")
    return b"\x82" + length + b"\0\0\0\0" + frame


async def test_sends_in_one_read_reach_the_store_in_the_order_sent(clients):
    alice, bob, carol = await clients(), await clients(), await clients()
    await new_user(alice)
    _, bob_id = await new_user(bob)
    _, carol_id = await new_user(carol)
    await alice.send(bob_id, "bob is known to the node now")
    first = asyncio.get_running_loop().create_future()
    second = asyncio.get_running_loop().create_future()
    alice._waiting[900], alice._waiting[901] = first, second
    order: list[int] = []
    first.add_done_callback(lambda _: order.append(900))
    second.add_done_callback(lambda _: order.append(901))

    # one TCP write: a SEND whose receiver the node must look up, then one it knows
    alice._transport.underlying_transport.write(
        _masked(encode_frame(Op.SEND, 900, carol_id, bodies.encode(bodies.Send(cmid="to-carol", content="1"))))
        + _masked(encode_frame(Op.SEND, 901, bob_id, bodies.encode(bodies.Send(cmid="to-bob", content="2")))))
    await asyncio.wait_for(asyncio.gather(first, second), 5)

    assert [op for op, _ in (first.result(), second.result())] == [Op.SEND_ACK, Op.SEND_ACK]
    assert order == [900, 901]
