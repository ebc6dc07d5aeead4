"""``RocketMqBus`` against a real name server + broker (tests/servers.py): what the Bus
contract suite cannot see from outside. Batching, NUL bytes, no replay after a restart,
duplicates from the broker dropped, a broker outage and the recovery after it.

Each test uses a topic prefix of its own. Delivery is awaited with events; a "nothing
else arrived" check publishes a marker after and waits for it.
"""
from __future__ import annotations

import asyncio
import threading

import msgspec
import pytest

from edgeim.backends.protocols import ConvId, Envelope, NodeId, UserId
from edgeim.backends.rocketmq import RocketMqBus, _Batch, escape_nul, topic_for, unescape_nul

A, B = NodeId("node-a"), NodeId("node-b")


class Inbox:
    def __init__(self) -> None:
        self.items: list[Envelope] = []
        self._changed = asyncio.Event()

    def __call__(self, envelope: Envelope) -> None:
        self.items.append(envelope)
        self._changed.set()

    async def wait(self, n: int, timeout: float = 30.0) -> list[Envelope]:
        async with asyncio.timeout(timeout):
            while len(self.items) < n:
                self._changed.clear()
                await self._changed.wait()
        return self.items

    async def wait_for(self, frame: bytes, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while not any(e.frame == frame for e in self.items):
                self._changed.clear()
                await self._changed.wait()


async def until(condition, timeout: float = 30.0) -> None:
    """Wait (yielding to the loop) until ``condition()`` holds; fail after ``timeout``."""
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)
    await asyncio.wait_for(poll(), timeout)


def env(frame: bytes, *users: int) -> Envelope:
    return Envelope(frame=frame, user_ids=tuple(UserId(u) for u in users or (1,)))


@pytest.fixture
async def make_bus(rocketmq_server):
    prefix = rocketmq_server.new_prefix()
    made: list[RocketMqBus] = []

    def make(**kwargs) -> RocketMqBus:
        bus = RocketMqBus(rocketmq_server.namesrv, topic_prefix=prefix, **kwargs)
        made.append(bus)
        return bus

    yield make
    for bus in made:
        await bus.close()


# -- pure functions ---------------------------------------------------------------------------

@pytest.mark.parametrize("data", [b"", b"\x00", b"\x01", b"\x01\x01", b"\x00\x01\x02", b"\x01\x00\x01\x02\x00\x00",
                                  bytes(range(256)) * 3])
def test_nul_escape_round_trips_and_has_no_nul(data: bytes) -> None:
    escaped = escape_nul(data)
    assert b"\x00" not in escaped
    assert unescape_nul(escaped) == data


def test_topic_names_follow_rocketmq_rules() -> None:
    assert topic_for("node-a") == "edgeim_node-a"
    odd = topic_for("10.0.0.7:8765/x")
    assert odd.startswith("edgeim_10_0_0_7_8765_x_") and all(c.isalnum() or c in "_-" for c in odd)
    assert topic_for("a.b") != topic_for("a_b")  # sanitized ids keep apart
    assert len(topic_for("n" * 500)) <= 127


# -- against the broker -------------------------------------------------------------------------

async def test_one_iteration_of_publishes_is_one_broker_message(make_bus) -> None:
    bus_a, bus_b = make_bus(), make_bus()
    inbox_b = Inbox()
    await bus_a.start(A, Inbox())
    await bus_b.start(B, inbox_b)
    for i in range(50):  # no await yields: one loop iteration
        await bus_a.publish(B, env(i.to_bytes(2, "big")))
    got = await inbox_b.wait(50)
    assert [int.from_bytes(e.frame, "big") for e in got] == list(range(50))
    # the sender thread counts a send once the broker answered it, which may come after
    # the consumer got the message
    await until(lambda: bus_a.envelopes_sent == 50)
    assert bus_a.broker_messages_sent == 1
    assert bus_b.broker_messages_received == 1

    await bus_a.publish(B, env(b"next"))  # a later iteration: a message of its own
    await inbox_b.wait(51)
    await until(lambda: bus_a.envelopes_sent == 51)
    assert bus_a.broker_messages_sent == 2


async def test_publish_does_not_wait_for_the_broker(make_bus) -> None:
    bus = make_bus()
    await bus.start(A, Inbox())
    held, release = threading.Event(), threading.Event()
    real = bus.send_body

    def stuck(topic: str, body: bytes) -> bool:  # a broker that does not answer (yet)
        held.set()
        release.wait(30)
        return real(topic, body)

    bus.send_body = stuck  # type: ignore[method-assign]
    for i in range(2000):
        await bus.publish(B, env(b"x"))
        if i % 100 == 0:
            await asyncio.sleep(0)
    # every publish returned, over 20 loop iterations, while the first send still hangs
    assert await asyncio.to_thread(held.wait, 30)
    assert bus.broker_messages_sent == 0
    release.set()
    await until(lambda: bus.envelopes_sent == 2000)


async def test_nul_bytes_and_every_field_survive(make_bus) -> None:
    bus_a, bus_b = make_bus(), make_bus()
    inbox = Inbox()
    await bus_a.start(A, Inbox())
    await bus_b.start(B, inbox)
    sent = [
        Envelope(frame=b"\x00\x00head\x00\x01\x02tail\x00", user_ids=(UserId(0), UserId(256), UserId(2**40)),
                 skip_user=UserId(256), skip_terminal="web\x00x"),
        Envelope(frame=bytes(range(256)) * 40, conv=ConvId("g1"), kick_terminal="ios"),
        Envelope(frame=b""),
    ]
    for e in sent:
        await bus_a.publish(B, e)
    assert await inbox.wait(3) == sent


async def test_a_restarted_node_does_not_replay_old_envelopes(make_bus) -> None:
    publisher = make_bus()
    await publisher.start(A, Inbox())
    first, first_inbox = make_bus(), Inbox()
    await first.start(B, first_inbox)
    await publisher.publish(B, env(b"old-1"))
    await publisher.publish(B, env(b"old-2"))
    await first_inbox.wait(2)
    await first.close()
    sent = publisher.broker_messages_sent
    await publisher.publish(B, env(b"while-down"))  # nobody consumes node-b now
    async with asyncio.timeout(10):  # stored on the broker before the next incarnation starts
        while publisher.broker_messages_sent == sent:
            await asyncio.sleep(0.01)

    second, second_inbox = make_bus(), Inbox()
    await second.start(B, second_inbox)
    await publisher.publish(B, env(b"new"))
    await second_inbox.wait_for(b"new")
    assert [e.frame for e in second_inbox.items] == [b"new"]


async def test_a_batch_the_broker_delivers_twice_is_handed_over_once(make_bus) -> None:
    bus_a, bus_b = make_bus(), make_bus()
    inbox = Inbox()
    await bus_a.start(A, Inbox())
    await bus_b.start(B, inbox)
    batch = escape_nul(msgspec.msgpack.encode(_Batch("replayer", 1, [env(b"once")])))
    topic = bus_a.topic(B)
    assert await asyncio.to_thread(bus_a.send_body, topic, batch)
    assert await asyncio.to_thread(bus_a.send_body, topic, batch)  # the same batch again, as a redelivery
    await bus_a.publish(B, env(b"marker"))
    await inbox.wait_for(b"marker")
    assert [e.frame for e in inbox.items] == [b"once", b"marker"]
    assert bus_b.broker_messages_received == 3 and bus_b.duplicates_dropped == 1


async def test_broker_outage_drops_pushes_and_recovers(make_bus, rocketmq_server) -> None:
    bus_a, bus_b = make_bus(send_timeout_ms=1000), make_bus()
    inbox = Inbox()
    await bus_a.start(A, Inbox())
    await bus_b.start(B, inbox)
    await bus_a.publish(B, env(b"before"))
    await inbox.wait(1)

    await asyncio.to_thread(rocketmq_server.stop_broker, True)
    try:
        await bus_a.publish(B, env(b"during"))  # does not raise: the sender thread meets the outage
        async with asyncio.timeout(30):
            while bus_a.send_failures == 0:
                await asyncio.sleep(0.05)
    finally:
        await asyncio.to_thread(rocketmq_server.start_broker)

    # the client reconnects by itself, and the bus makes the restarted broker know its
    # consumer again: publish until one gets through (sends that fail meanwhile are dropped)
    async with asyncio.timeout(60):
        i = 0
        while not any(e.frame.startswith(b"after") for e in inbox.items):
            await bus_a.publish(B, env(b"after-%d" % i))
            i += 1
            await asyncio.sleep(0.5)
    assert bus_b.consumer_restarts >= 1  # the bus's watcher, not the library's 30 s heartbeat
    frames = [e.frame for e in inbox.items]
    assert frames[0] == b"before" and b"during" not in frames
    assert len(frames) == len(set(frames))  # no duplicates across the restart
