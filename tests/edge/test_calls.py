"""Call signaling against a real ``im serve``: invite rings every device of the callee,
accept on one stops the others, reject, cancel, busy, hang up, ICE between the two
devices in the call, the ring timeout, devices that leave, and the call record stored in
the conversation when a call ends."""
from __future__ import annotations

import asyncio

import pytest

from edgeim.core_ext.protocol import ErrorCode, Op
from edgeim.sdk import Client, ServerError

from harness import new_user, next_event, nothing_pending

OFFER, ANSWER = "v=0 o=caller offer", "v=0 o=callee answer"
RING = 1.0  # seconds: the ring timeout of these nodes


@pytest.fixture
def server(serve_factory):
    return serve_factory("cython", call_ring_timeout=RING)


class Person:
    """A user with one client per terminal."""

    def __init__(self, name: str, devices: dict[str, Client]) -> None:
        self.name = name
        self.devices = devices

    @property
    def id(self) -> int:
        return next(iter(self.devices.values())).user_id

    def __getitem__(self, terminal: str) -> Client:
        return self.devices[terminal]


async def person(clients, *terminals: str) -> Person:
    first = await clients()
    name, _ = await new_user(first, terminals[0])
    devices = {terminals[0]: first}
    for terminal in terminals[1:]:
        devices[terminal] = await clients()
        await devices[terminal].login(name, "secret-pw", terminal)
    return Person(name, devices)


async def record_of(client: Client) -> dict:
    """The next call record pushed to ``client`` (a type 8 message): its content."""
    message = await asyncio.wait_for(client.pushes.get(), 10)
    assert message.type == 8
    return message.content


async def test_a_call_rings_every_device_is_answered_on_one_and_hung_up(clients):
    alice, bob = await person(clients, "web"), await person(clients, "ios", "desktop")

    started = await alice["web"].call_invite(bob.id, "video", OFFER)
    rings = [await next_event(bob[t], Op.CALL_PUSH) for t in ("ios", "desktop")]
    await bob["ios"].call_accept(started.call, ANSWER)
    accepted = await next_event(alice["web"], Op.CALL_PUSH)
    elsewhere = await next_event(bob["desktop"], Op.CALL_PUSH)

    for ring in rings:
        assert (ring.event, ring.call, ring.caller, ring.callee, ring.kind, ring.sdp) == (
            "ring", started.call, alice.id, bob.id, "video", OFFER)
    assert (accepted.event, accepted.sdp, accepted.terminal) == ("accepted", ANSWER, "ios")
    assert (elsewhere.event, elsewhere.terminal, elsewhere.sdp) == ("answered_elsewhere", "ios", "")

    # ICE candidates go between the two devices in the call, both ways, and nowhere else
    await alice["web"].call_ice(started.call, "candidate:1 udp caller")
    await bob["ios"].call_ice(started.call, "candidate:2 udp callee")
    to_bob = await next_event(bob["ios"], Op.CALL_PUSH)
    to_alice = await next_event(alice["web"], Op.CALL_PUSH)
    assert (to_bob.event, to_bob.candidate, to_bob.terminal) == ("ice", "candidate:1 udp caller", "web")
    assert (to_alice.event, to_alice.candidate, to_alice.terminal) == ("ice", "candidate:2 udp callee", "ios")
    assert await nothing_pending(bob["desktop"], messages=False)

    await bob["ios"].call_hangup(started.call)
    hangup = await next_event(alice["web"], Op.CALL_PUSH)
    assert (hangup.event, hangup.terminal) == ("hangup", "ios") and hangup.duration_ms >= 0

    record = await record_of(alice["web"])
    assert record == {"call": str(started.call), "kind": "video", "caller": alice.id, "callee": bob.id,
                      "status": "answered", "duration_ms": record["duration_ms"]}
    assert await record_of(bob["ios"]) == record and await record_of(bob["desktop"]) == record
    (stored,) = (await bob["ios"].history(f"p{min(alice.id, bob.id)}_{max(alice.id, bob.id)}")).msgs
    assert (stored.type, stored.sender, stored.content) == (8, alice.id, record)
    # the call is over: both are free, and the ended call is gone
    with pytest.raises(ServerError) as err:
        await alice["web"].call_hangup(started.call)
    assert err.value.code == ErrorCode.NOT_FOUND
    again = await bob["desktop"].call_invite(alice.id, "audio", OFFER)
    assert again.call != started.call


async def test_a_rejected_call_stops_every_ringing_device(clients):
    alice, bob = await person(clients, "web"), await person(clients, "ios", "desktop")
    started = await alice["web"].call_invite(bob.id, "audio", OFFER)
    for terminal in ("ios", "desktop"):
        await next_event(bob[terminal], Op.CALL_PUSH)

    await bob["desktop"].call_reject(started.call)

    assert (await next_event(alice["web"], Op.CALL_PUSH)).event == "rejected"
    assert (await next_event(bob["ios"], Op.CALL_PUSH)).event == "rejected"
    assert (await record_of(alice["web"]))["status"] == "rejected"
    with pytest.raises(ServerError) as err:
        await bob["ios"].call_accept(started.call, ANSWER)
    assert err.value.code == ErrorCode.NOT_FOUND


async def test_a_cancelled_call_stops_ringing(clients):
    alice, bob = await person(clients, "web"), await person(clients, "ios")
    started = await alice["web"].call_invite(bob.id, "audio", OFFER)
    await next_event(bob["ios"], Op.CALL_PUSH)

    await alice["web"].call_cancel(started.call)

    cancelled = await next_event(bob["ios"], Op.CALL_PUSH)
    assert (cancelled.event, cancelled.call) == ("cancelled", started.call)
    assert (await record_of(bob["ios"]))["status"] == "cancelled"


async def test_an_unanswered_call_times_out_as_missed(clients):
    alice, bob = await person(clients, "web"), await person(clients, "ios")
    started = await alice["web"].call_invite(bob.id, "video", OFFER)
    await next_event(bob["ios"], Op.CALL_PUSH)

    timeouts = [await next_event(c, Op.CALL_PUSH, RING + 10) for c in (alice["web"], bob["ios"])]

    assert [(t.event, t.call) for t in timeouts] == [("timeout", started.call)] * 2
    record = await record_of(bob["ios"])
    assert (record["status"], record["duration_ms"]) == ("missed", 0)
    with pytest.raises(ServerError) as err:
        await bob["ios"].call_accept(started.call, ANSWER)
    assert err.value.code == ErrorCode.NOT_FOUND


async def test_a_user_in_a_call_is_busy(clients):
    alice, bob, carol = [await person(clients, "web") for _ in range(3)]
    started = await alice["web"].call_invite(bob.id, "audio", OFFER)
    await next_event(bob["web"], Op.CALL_PUSH)

    for caller, callee in ((carol, bob), (carol, alice), (alice, carol)):
        with pytest.raises(ServerError) as err:
            await caller["web"].call_invite(callee.id, "audio", OFFER)
        assert err.value.code == ErrorCode.BUSY, (caller.name, callee.name)
    # a busy callee gets the attempt as a call record; a busy caller's attempt leaves none
    assert (await record_of(bob["web"]))["status"] == "busy"
    assert (await record_of(alice["web"]))["status"] == "busy"
    await alice["web"].call_cancel(started.call)
    assert (await next_event(bob["web"], Op.CALL_PUSH)).event == "cancelled"
    await carol["web"].call_invite(bob.id, "audio", OFFER)  # free again


async def test_the_state_machine_refuses_what_does_not_fit(clients):
    alice, bob = await person(clients, "web", "ios"), await person(clients, "web", "ios")
    stranger = await person(clients, "web")
    started = await alice["web"].call_invite(bob.id, "video", OFFER)
    call = started.call
    refused = [
        (alice["web"].call_accept(call, ANSWER), ErrorCode.FORBIDDEN),  # the caller does not accept
        (alice["web"].call_reject(call), ErrorCode.FORBIDDEN),
        (alice["ios"].call_cancel(call), ErrorCode.FORBIDDEN),  # only the calling device cancels
        (bob["web"].call_cancel(call), ErrorCode.FORBIDDEN),
        (alice["web"].call_hangup(call), ErrorCode.CONFLICT),  # ringing: cancel it instead
        (bob["web"].call_ice(call, "candidate:0"), ErrorCode.CONFLICT),  # not answered yet
        (stranger["web"].call_accept(call, ANSWER), ErrorCode.NOT_FOUND),  # not theirs
        (alice["web"].call_invite(alice.id, "audio", OFFER), ErrorCode.INVALID_ARGUMENT),
        (stranger["web"].call_invite(2**62, "audio", OFFER), ErrorCode.USER_NOT_FOUND),
    ]
    for attempt, code in refused:
        with pytest.raises(ServerError) as err:
            await attempt
        assert err.value.code == code, err.value
    await bob["web"].call_accept(call, ANSWER)
    with pytest.raises(ServerError) as err:  # answered on another device already
        await bob["ios"].call_accept(call, ANSWER)
    assert err.value.code == ErrorCode.CONFLICT
    for attempt in (bob["ios"].call_hangup(call), bob["ios"].call_ice(call, "c"), alice["ios"].call_ice(call, "c")):
        with pytest.raises(ServerError) as err:  # devices that are not in the call
            await attempt
        assert err.value.code == ErrorCode.FORBIDDEN
    await alice["web"].call_hangup(call)


async def test_a_device_that_leaves_ends_its_call(clients):
    alice, bob = await person(clients, "web"), await person(clients, "ios")
    ringing = await alice["web"].call_invite(bob.id, "audio", OFFER)
    await next_event(bob["ios"], Op.CALL_PUSH)
    await alice["web"].close()  # the calling device goes: the call stops ringing
    assert (await next_event(bob["ios"], Op.CALL_PUSH)).event == "cancelled"

    carol = await person(clients, "web")
    started = await bob["ios"].call_invite(carol.id, "video", OFFER)
    await next_event(carol["web"], Op.CALL_PUSH)
    await carol["web"].call_accept(started.call, ANSWER)
    await next_event(bob["ios"], Op.CALL_PUSH)  # accepted
    await carol["web"].close()  # a device in the call goes: the other hears a hang-up

    hangup = await next_event(bob["ios"], Op.CALL_PUSH)
    assert (hangup.event, hangup.call) == ("hangup", started.call)
    assert ringing.call != started.call


async def test_calls_follow_the_rules_of_1_to_1_messages(serve_factory):
    node = serve_factory("cython", strangers_may_send=0)
    async with Client(node.url) as alice, Client(node.url) as bob:
        await new_user(alice)
        await new_user(bob)
        with pytest.raises(ServerError) as err:
            await alice.call_invite(bob.user_id, "audio", OFFER)
        assert err.value.code == ErrorCode.NOT_FRIENDS
        await alice.friend_request(bob.user_id)
        await bob.friend_accept(alice.user_id)
        await bob.block(alice.user_id)
        with pytest.raises(ServerError) as err:
            await alice.call_invite(bob.user_id, "audio", OFFER)
        assert err.value.code == ErrorCode.BLOCKED
        await bob.unblock(alice.user_id)
        assert (await alice.call_invite(bob.user_id, "audio", OFFER)).call > 0
