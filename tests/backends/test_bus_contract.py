"""The ``Bus`` contract (backends/protocols.py), run against every implementation.

Add an implementation by adding a branch to ``make_bus``: it returns a factory of buses
that can reach each other (for ``LocalBus``, buses sharing one hub; for ``RocketMqBus``,
buses on the session's broker (tests/servers.py) with a topic prefix of the test's own).
Delivery is awaited with events, never with sleeps; "nothing else arrived" is checked
with a marker published after.

Both implementations pass every test as written: "at-most-once" is what ``on_envelope``
sees (the RocketMQ bus deduplicates the broker's at-least-once redeliveries), so exact
list equality holds for both.
"""
from __future__ import annotations

import asyncio
from typing import Callable

import pytest


from edgeim.backends.memory import LocalBus, LocalBusHub
from edgeim.backends.protocols import Bus, Envelope, NodeId, UserId

A, B, C = NodeId("node-a"), NodeId("node-b"), NodeId("node-c")


@pytest.fixture(params=["local", "rocketmq"])
async def make_bus(request: pytest.FixtureRequest):
    made: list[Bus] = []
    if request.param == "local":
        hub = LocalBusHub()
        factory: Callable[[], Bus] = lambda: LocalBus(hub)  # noqa: E731
    elif request.param == "rocketmq":
        from edgeim.backends.rocketmq import RocketMqBus
        server = request.getfixturevalue("rocketmq_server")
        prefix = server.new_prefix()
        factory = lambda: RocketMqBus(server.namesrv, topic_prefix=prefix)  # noqa: E731
    else:
        raise AssertionError(request.param)

    def make() -> Bus:
        bus = factory()
        made.append(bus)
        return bus

    yield make
    for bus in made:
        await bus.close()


class Inbox:
    """Collects envelopes; ``wait(n)`` returns once n have arrived."""

    def __init__(self) -> None:
        self.items: list[Envelope] = []
        self._want = 0
        self._enough = asyncio.Event()

    def __call__(self, envelope: Envelope) -> None:
        self.items.append(envelope)
        if len(self.items) >= self._want:
            self._enough.set()

    async def wait(self, n: int) -> list[Envelope]:
        self._want = n
        if len(self.items) < n:
            self._enough.clear()
            await self._enough.wait()
        return self.items


def envelope(i: int, *users: int) -> Envelope:
    return Envelope(frame=i.to_bytes(4, "big"), user_ids=tuple(UserId(u) for u in users or (1,)))


async def test_publish_reaches_only_the_target_node(make_bus):
    bus_a, bus_b = make_bus(), make_bus()
    inbox_a, inbox_b = Inbox(), Inbox()
    await bus_a.start(A, inbox_a)
    await bus_b.start(B, inbox_b)

    sent = Envelope(frame=b"\x01frame", user_ids=(UserId(7), UserId(8)),
                    skip_user=UserId(7), skip_terminal="web")
    await bus_a.publish(B, sent)
    await bus_b.publish(A, envelope(2))
    assert await inbox_b.wait(1) == [sent]
    assert [e.frame for e in await inbox_a.wait(1)] == [envelope(2).frame]
    # a marker sent after: once it arrives, nothing else went astray
    await bus_a.publish(A, envelope(3))
    await inbox_a.wait(2)
    assert inbox_b.items == [sent] and len(inbox_a.items) == 2


async def test_per_publisher_fifo(make_bus):
    bus_a, bus_b = make_bus(), make_bus()
    inbox = Inbox()
    await bus_a.start(A, Inbox())
    await bus_b.start(B, inbox)
    for i in range(1000):
        await bus_a.publish(B, envelope(i))
    got = await inbox.wait(1000)
    assert [int.from_bytes(e.frame, "big") for e in got] == list(range(1000))


async def test_publish_to_unknown_node_is_dropped(make_bus):
    bus_a, bus_b = make_bus(), make_bus()
    inbox = Inbox()
    await bus_a.start(A, Inbox())
    await bus_b.start(B, inbox)
    await bus_a.publish(C, envelope(1))  # nobody consumes node-c: no error, no delivery
    await bus_a.publish(B, envelope(2))
    assert [e.frame for e in await inbox.wait(1)] == [envelope(2).frame]


async def test_publish_does_not_run_the_callback_inline(make_bus):
    bus = make_bus()
    inbox = Inbox()
    await bus.start(A, inbox)
    await bus.publish(A, envelope(1))
    assert inbox.items == []  # the callback runs later, on the loop
    assert len(await inbox.wait(1)) == 1


async def test_async_callback_is_awaited(make_bus):
    bus_a, bus_b = make_bus(), make_bus()
    done = asyncio.Event()
    seen: list[Envelope] = []

    async def on_envelope(e: Envelope) -> None:
        await asyncio.sleep(0)
        seen.append(e)
        done.set()

    await bus_a.start(A, Inbox())
    await bus_b.start(B, on_envelope)
    await bus_a.publish(B, envelope(5))
    await done.wait()
    assert seen == [envelope(5)]


async def test_closed_node_receives_nothing(make_bus):
    bus_a, bus_b = make_bus(), make_bus()
    inbox_a, inbox_b = Inbox(), Inbox()
    await bus_a.start(A, inbox_a)
    await bus_b.start(B, inbox_b)
    await bus_b.close()
    await bus_a.publish(B, envelope(1))  # dropped, not an error
    with pytest.raises(RuntimeError):
        await bus_b.publish(A, envelope(2))
    await bus_a.publish(A, envelope(3))
    assert [e.frame for e in await inbox_a.wait(1)] == [envelope(3).frame]
    assert inbox_b.items == []


# -- local only ---------------------------------------------------------------------------

async def test_local_buses_without_a_shared_hub_are_isolated():
    one, two = LocalBus(), LocalBus()
    inbox = Inbox()
    await one.start(A, inbox)
    await two.start(A, Inbox())  # same node id, different hub: no conflict
    await two.publish(A, envelope(1))
    await one.publish(A, envelope(2))
    assert [e.frame for e in await inbox.wait(1)] == [envelope(2).frame]
    await one.close()
    await two.close()


async def test_local_node_id_is_consumed_once_per_hub():
    hub = LocalBusHub()
    first, second = LocalBus(hub), LocalBus(hub)
    await first.start(A, Inbox())
    with pytest.raises(RuntimeError):
        await second.start(A, Inbox())
    await first.close()
    await second.start(A, Inbox())  # free again once the first consumer closed
    await second.close()


async def test_ping_answers_while_the_broker_does_and_raises_once_closed(make_bus):
    bus = make_bus()
    await bus.start(A, Inbox())
    await asyncio.wait_for(bus.ping(), 10)
    await bus.close()
    with pytest.raises(Exception):
        await bus.ping()
