"""Typing indicators against a real ``im serve``: relayed to the other members online in a
1:1 or group conversation, never stored, refused where a message would be, rate-limited
per user."""
from __future__ import annotations

import pytest

from edgeim.core_ext.protocol import ErrorCode, Op
from edgeim.sdk import ServerError

from harness import next_event, nothing_pending, people


@pytest.fixture
def server(serve_factory):
    # the product default (friends only), and a small typing budget to reach it
    return serve_factory("cython", strangers_may_send=0, typing_rate=0.5, typing_burst=3)


async def befriend(a, b) -> None:
    await a.friend_request(b.user_id)
    await b.friend_accept(a.user_id)
    await next_event(b, Op.FRIEND_PUSH)
    await next_event(a, Op.FRIEND_PUSH)


def conv_of(a, b) -> str:
    low, high = sorted((a.user_id, b.user_id))
    return f"p{low}_{high}"


async def test_typing_reaches_the_other_user_and_is_not_stored(clients):
    alice, bob = await people(clients, 2)
    await befriend(alice, bob)

    await alice.typing(conv_of(alice, bob))
    started = await next_event(bob, Op.TYPING_PUSH)
    await alice.typing(conv_of(alice, bob), False)
    stopped = await next_event(bob, Op.TYPING_PUSH)

    assert (started.conv, started.user, started.typing) == (conv_of(alice, bob), alice.user_id, True)
    assert (stopped.user, stopped.typing) == (alice.user_id, False)
    assert await nothing_pending(alice)  # the typist's own sessions get nothing
    assert await bob.conversations() == []  # nothing stored: no conversation, no message
    assert (await bob.sync(conv_of(alice, bob))).msgs == []


async def test_typing_in_a_group_reaches_the_other_members(clients):
    owner, member, other = await people(clients, 3)
    info = await owner.group_create("typists", [member.user_id, other.user_id])
    for client in (member, other):
        await next_event(client, Op.GROUP_PUSH)

    await member.typing(f"g{info.group}")

    for client in (owner, other):
        event = await next_event(client, Op.TYPING_PUSH)
        assert (event.conv, event.user, event.typing) == (f"g{info.group}", member.user_id, True)
    assert await nothing_pending(member, messages=False)


async def test_typing_where_one_may_not_send_is_refused(clients):
    alice, bob, carol = await people(clients, 3)
    await befriend(alice, bob)
    cases = [
        (carol.typing(conv_of(alice, bob)), ErrorCode.FORBIDDEN),  # not hers
        (carol.typing(conv_of(carol, alice)), ErrorCode.NOT_FRIENDS),  # friends only here
        (alice.typing("g999999"), ErrorCode.FORBIDDEN),  # no such group
        (alice.typing("nonsense"), ErrorCode.INVALID_ARGUMENT),
    ]
    for call, code in cases:
        with pytest.raises(ServerError) as err:
            await call
        assert err.value.code == code, err.value
    await bob.block(alice.user_id)
    with pytest.raises(ServerError) as err:
        await alice.typing(conv_of(alice, bob))
    assert err.value.code == ErrorCode.BLOCKED
    assert await nothing_pending(bob, messages=False)


async def test_typing_is_rate_limited_per_user(clients):
    alice, bob = await people(clients, 2)
    await befriend(alice, bob)
    conv = conv_of(alice, bob)
    for _ in range(3):  # the burst
        await alice.typing(conv)

    with pytest.raises(ServerError) as err:
        await alice.typing(conv)

    assert err.value.code == ErrorCode.RATE_LIMITED
    for _ in range(3):
        assert (await next_event(bob, Op.TYPING_PUSH)).user == alice.user_id
    assert await nothing_pending(bob, messages=False)  # the refused one was not relayed
