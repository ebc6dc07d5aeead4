"""Presence against a real ``im serve``: queries (online, terminals), watches with
debounced pushes, invisible mode, who may see whom, and the request budget."""
from __future__ import annotations

import asyncio

import pytest

from edgeim.core_ext.protocol import ErrorCode, Op
from edgeim.sdk import Client, ServerError

from harness import new_user, next_event, nothing_pending

DEBOUNCE = 0.3


@pytest.fixture
def server(serve_factory):
    return serve_factory("cython", strangers_may_send=0, presence_debounce=DEBOUNCE, presence_rate=0.5,
                         presence_burst=20)


async def befriend(a: Client, b: Client) -> None:
    await a.friend_request(b.user_id)
    await b.friend_accept(a.user_id)
    await next_event(b, Op.FRIEND_PUSH)
    await next_event(a, Op.FRIEND_PUSH)


def shown(presence) -> tuple[int, bool, list[str]]:
    return presence.user, presence.online, [t.terminal for t in presence.terminals]


async def test_query_says_who_is_online_and_on_which_terminals(clients, server):
    alice, bob = await people(clients, 2)
    await befriend(alice, bob)
    bob_ios = await clients()
    await bob_ios.login(*(await bob_name(bob)), "ios")

    assert [shown(p) for p in await alice.presence([bob.user_id, alice.user_id])] == [
        (bob.user_id, True, ["ios", "web"]), (alice.user_id, True, ["web"])]
    await bob_ios.close()
    await bob.close()
    assert await until(lambda: alice.presence([bob.user_id]), lambda ps: not ps[0].online)
    assert [shown(p) for p in await alice.presence([bob.user_id])] == [(bob.user_id, False, [])]


async def bob_name(client: Client) -> tuple[str, str]:
    """The username and password of a client made by ``people`` (to log in another device)."""
    return _names[client.user_id], "secret-pw"


_names: dict[int, str] = {}


async def people(clients, n: int) -> list[Client]:
    """``harness.people``, remembering each user's name."""
    made = []
    for _ in range(n):
        client = await clients()
        name, user_id = await new_user(client)
        _names[user_id] = name
        made.append(client)
    return made


async def pushed(client: Client, expected: tuple[int, bool, list[str]], timeout: float = 10.0) -> bool:
    """Wait for a PRESENCE_PUSH saying ``expected``. Earlier ones are skipped: the window of
    the user's own login may close after the watch began and push the state before."""
    async def wait() -> bool:
        while shown(await next_event(client, Op.PRESENCE_PUSH, timeout)) != expected:
            pass
        return True
    try:
        return await asyncio.wait_for(wait(), timeout)
    except asyncio.TimeoutError:
        return False


async def until(ask, ok, timeout: float = 10.0) -> bool:
    """Ask again until ``ok(answer)`` (a route unbinds right after the socket closes)."""
    async def loop() -> bool:
        while not ok(await ask()):
            await asyncio.sleep(0.05)
        return True
    try:
        return await asyncio.wait_for(loop(), timeout)
    except asyncio.TimeoutError:
        return False


async def test_a_watcher_is_pushed_comings_and_goings(clients, server):
    alice, bob = await people(clients, 2)
    await befriend(alice, bob)
    assert [shown(p) for p in await alice.presence_subscribe([bob.user_id])] == [(bob.user_id, True, ["web"])]

    phone = await clients()
    await phone.login(*(await bob_name(bob)), "ios")
    assert await pushed(alice, (bob.user_id, True, ["ios", "web"]))
    await phone.close()
    await bob.close()
    assert await pushed(alice, (bob.user_id, False, []))
    await alice.presence_unsubscribe([bob.user_id])
    again = await clients()
    await again.login(*(await bob_name(bob)), "web")
    await asyncio.sleep(DEBOUNCE * 3)  # the window closes: an unsubscribed session hears nothing
    assert await nothing_pending(alice, messages=False)


async def test_a_flapping_connection_does_not_flood_its_watchers(serve_factory):
    server = serve_factory("cython", strangers_may_send=0, presence_debounce=1.0)
    made: list[Client] = []

    async def clients() -> Client:
        made.append(Client(server.url))
        await made[-1].connect()
        return made[-1]

    alice, bob = await people(clients, 2)
    await befriend(alice, bob)
    await alice.presence_subscribe([bob.user_id])
    name = await bob_name(bob)

    for _ in range(5):  # on and off, much faster than the window
        flap = Client(server.url)
        await flap.connect()
        await flap.login(*name, "android")
        await flap.close()
    await asyncio.sleep(2.5)  # past the last window

    # ten comings and goings, a push per window at most: far fewer pushes, the last one
    # (if any: the windows may have closed on web alone) saying how things are, web only
    pushes = []
    while not alice.events.empty():
        op, body = alice.events.get_nowait()
        if op == Op.PRESENCE_PUSH:
            pushes.append(shown(body))
    assert len(pushes) < 5
    assert not pushes or pushes[-1] == (bob.user_id, True, ["web"])
    assert [shown(p) for p in await alice.presence([bob.user_id])] == [(bob.user_id, True, ["web"])]
    for client in made:
        await client.close()


async def test_invisible_users_look_offline_to_others_but_not_to_themselves(clients, server):
    alice, bob = await people(clients, 2)
    await befriend(alice, bob)
    await alice.presence_subscribe([bob.user_id])

    assert (await bob.settings()).invisible is False
    assert (await bob.settings(invisible=True)).invisible is True
    assert await pushed(alice, (bob.user_id, False, []))
    assert [shown(p) for p in await alice.presence([bob.user_id])] == [(bob.user_id, False, [])]
    assert [shown(p) for p in await bob.presence([bob.user_id])] == [(bob.user_id, True, ["web"])]
    # the setting is the user's: it holds for a new login, and after a restart of the node
    again = await clients()
    await again.login(*(await bob_name(bob)), "ios")
    assert (await again.settings()).invisible is True
    assert [shown(p) for p in await alice.presence([bob.user_id])] == [(bob.user_id, False, [])]
    assert (await bob.settings(invisible=False)).invisible is False
    assert await pushed(alice, (bob.user_id, True, ["ios", "web"]))


async def test_invisible_survives_a_restart(serve_factory):
    node = serve_factory("cython", presence_debounce=DEBOUNCE)
    async with Client(node.url) as bob:
        name, bob_id = await new_user(bob)
        await bob.settings(invisible=True)
    node.restart()
    async with Client(node.url) as bob, Client(node.url) as alice:
        await bob.login(name, "secret-pw", "web")
        await new_user(alice)
        assert (await bob.settings()).invisible is True
        assert [shown(p) for p in await alice.presence([bob_id])] == [(bob_id, False, [])]


async def test_who_may_see_whom(clients, server):
    alice, bob, stranger = await people(clients, 3)
    await befriend(alice, bob)
    cases = [
        (stranger.presence([alice.user_id]), ErrorCode.NOT_FRIENDS),
        (stranger.presence_subscribe([alice.user_id]), ErrorCode.NOT_FRIENDS),
        (alice.presence_subscribe([alice.user_id]), ErrorCode.INVALID_ARGUMENT),  # oneself: query it
    ]
    for call, code in cases:
        with pytest.raises(ServerError) as err:
            await call
        assert err.value.code == code, err.value
    await bob.block(alice.user_id)
    for call in (alice.presence([bob.user_id]), alice.presence_subscribe([bob.user_id])):
        with pytest.raises(ServerError) as err:
            await call
        assert err.value.code == ErrorCode.BLOCKED


async def test_a_block_stops_the_pushes_of_a_watch(clients, server):
    alice, bob = await people(clients, 2)
    await befriend(alice, bob)
    await alice.presence_subscribe([bob.user_id])
    await asyncio.sleep(DEBOUNCE * 3)  # the window of bob's own login closes (a push, maybe)
    while not alice.events.empty():
        alice.events.get_nowait()
    await bob.block(alice.user_id)

    phone = await clients()
    await phone.login(*(await bob_name(bob)), "ios")
    await asyncio.sleep(DEBOUNCE * 3)

    assert await nothing_pending(alice, messages=False)


async def test_presence_requests_are_rate_limited(serve_factory):
    node = serve_factory("cython", presence_rate=0.1, presence_burst=2)
    async with Client(node.url) as alice:
        _, alice_id = await new_user(alice)
        await alice.presence([alice_id])
        await alice.presence([alice_id])
        with pytest.raises(ServerError) as err:
            await alice.presence([alice_id])
        assert err.value.code == ErrorCode.RATE_LIMITED


async def test_a_session_watches_at_most_max_watch_users(serve_factory):
    node = serve_factory("cython", presence_max_watch=2)
    async with Client(node.url) as alice:
        await new_user(alice)
        others = []
        for _ in range(3):
            async with Client(node.url) as other:
                others.append((await new_user(other))[1])
        await alice.presence_subscribe(others[:2])
        await alice.presence_subscribe(others[:2])  # the same ones again: still two
        with pytest.raises(ServerError) as err:
            await alice.presence_subscribe(others[2:])
        assert err.value.code == ErrorCode.RATE_LIMITED
        await alice.presence_unsubscribe(others[:1])
        assert [p.user for p in await alice.presence_subscribe(others[2:])] == others[2:]
