"""Sessions against a real ``im serve``: registration, password and token login,
one live session per (user, terminal), heartbeats and timeouts."""
from __future__ import annotations

import asyncio

import pytest
from harness import new_user

from edgeim.core_ext.protocol import CloseCode, ErrorCode
from edgeim.sdk import Client, ServerError


async def test_register_then_login_with_password_and_with_token(clients):
    client = await clients()
    user_id = await client.register("carol", "secret-pw", "Carol")
    ok = await client.login("carol", "secret-pw", "desktop")
    assert (ok.user_id, ok.terminal) == (user_id, "desktop") and ok.token

    other = await clients()
    again = await other.token_login(ok.token, "web")
    assert again.user_id == user_id
    assert await other.conversations() == []  # the token session is authenticated


@pytest.mark.parametrize(
    ("action", "code"),
    [
        (lambda c: c.register("taken", "secret-pw"), ErrorCode.USERNAME_TAKEN),
        (lambda c: c.login("taken", "wrong-password", "web"), ErrorCode.BAD_CREDENTIALS),
        (lambda c: c.login("nobody", "secret-pw", "web"), ErrorCode.BAD_CREDENTIALS),
        (lambda c: c.token_login("not-a-token", "web"), ErrorCode.TOKEN_INVALID),
        (lambda c: c.register("x", "secret-pw"), ErrorCode.BAD_BODY),  # username too short
        (lambda c: c.register("ok_name", "short"), ErrorCode.BAD_BODY),  # password too short
    ],
)
async def test_refused_credentials_get_their_error_code(clients, action, code):
    client = await clients()
    await client.register("taken", "secret-pw")
    with pytest.raises(ServerError) as err:
        await action(client)
    assert err.value.code == code
    assert client.connected  # an error frame does not close the connection


async def test_token_signed_with_another_secret_is_invalid(serve_factory):
    first, second = serve_factory(), serve_factory()
    async with Client(first.url) as a, Client(second.url) as b:
        await a.register("dave", "secret-pw")
        token = (await a.login("dave", "secret-pw", "web")).token
        await b.register("dave", "secret-pw")
        with pytest.raises(ServerError) as err:
            await b.token_login(token, "web")
    assert err.value.code == ErrorCode.TOKEN_INVALID


async def test_expired_token_is_refused(serve_factory):
    server = serve_factory(token_ttl=1)
    async with Client(server.url) as client:
        await client.register("erin", "secret-pw")
        token = (await client.login("erin", "secret-pw", "web")).token
    await asyncio.sleep(2.1)  # the token's exp (whole seconds) is now in the past
    async with Client(server.url) as client:
        with pytest.raises(ServerError) as err:
            await client.token_login(token, "web")
    assert err.value.code == ErrorCode.TOKEN_EXPIRED


async def test_second_login_on_a_connection_is_refused(clients):
    client = await clients()
    await new_user(client)
    with pytest.raises(ServerError) as err:
        await client.login("whoever", "secret-pw", "web")
    assert err.value.code == ErrorCode.ALREADY_AUTHENTICATED


async def test_new_login_on_same_terminal_kicks_the_old_session(clients):
    old, peer = await clients(), await clients()
    name, user_id = await new_user(old, "ios")
    await new_user(peer)
    other_terminal = await clients()
    await other_terminal.login(name, "secret-pw", "desktop")

    new = await clients()
    await new.login(name, "secret-pw", "ios")

    await asyncio.wait_for(old.kicked.wait(), 5)
    assert await asyncio.wait_for(old.wait_closed(), 5) == CloseCode.REPLACED
    assert other_terminal.connected  # other terminals are untouched
    # the kicked session's departure did not take the new session's route with it
    await peer.send(user_id, "still reachable")
    assert (await asyncio.wait_for(new.pushes.get(), 5)).content == "still reachable"
    assert (await asyncio.wait_for(other_terminal.pushes.get(), 5)).content == "still reachable"


async def test_logout_closes_with_its_code(clients):
    client = await clients()
    await new_user(client)
    await client.logout()
    assert await asyncio.wait_for(client.wait_closed(), 5) == CloseCode.LOGGED_OUT


async def test_no_login_within_the_auth_timeout_closes_4002(serve_factory):
    server = serve_factory(auth_timeout=0.5)
    async with Client(server.url) as client:
        assert await asyncio.wait_for(client.wait_closed(), 10) == CloseCode.AUTH_TIMEOUT


async def test_idle_session_closes_4003_and_heartbeats_keep_one_open(serve_factory):
    server = serve_factory(idle_timeout=1)
    async with Client(server.url) as idle, Client(server.url) as beating:
        await new_user(idle)
        await new_user(beating)

        async def heartbeat() -> None:
            while True:
                await beating.ping()
                await asyncio.sleep(0.25)

        task = asyncio.ensure_future(heartbeat())
        assert await asyncio.wait_for(idle.wait_closed(), 10) == CloseCode.IDLE_TIMEOUT
        await asyncio.sleep(1.5)  # longer than the idle timeout
        assert beating.connected
        task.cancel()


async def test_websocket_pings_count_as_activity(serve_factory):
    server = serve_factory(idle_timeout=1)
    async with Client(server.url) as client:
        await new_user(client)
        for _ in range(12):  # 3 s of pings only, three idle timeouts long
            client._transport.send_ping()
            await asyncio.sleep(0.25)
        assert client.connected
        await client.ping()


async def test_expired_route_is_restored_while_the_session_lives(serve_factory):
    server = serve_factory(route_ttl=0.5)
    async with Client(server.url) as alice, Client(server.url) as bob:
        await new_user(alice)
        _, bob_id = await new_user(bob)
        for _ in range(8):  # 2 s: the route's TTL runs out between sweeps several times
            await bob.ping()
            await asyncio.sleep(0.25)
        await alice.send(bob_id, "you are still routable")
        assert (await asyncio.wait_for(bob.pushes.get(), 5)).content == "you are still routable"


async def test_one_registration_or_login_at_a_time_per_connection(clients):
    client = await clients()
    first = asyncio.ensure_future(client.register("gina", "secret-pw"))
    second = asyncio.ensure_future(client.register("hank", "secret-pw"))
    results = await asyncio.gather(first, second, return_exceptions=True)
    assert isinstance(results[0], int)
    assert isinstance(results[1], ServerError) and results[1].code == ErrorCode.RATE_LIMITED
    assert isinstance(await client.register("hank", "secret-pw"), int)  # fine once the first is done


async def test_client_close_fails_pending_sends_instead_of_hanging(clients):
    alice, bob = await clients(), await clients()
    await new_user(alice)
    _, bob_id = await new_user(bob)
    sends = [asyncio.ensure_future(alice.send(bob_id, f"x{n}")) for n in range(20)]
    await asyncio.sleep(0)
    await alice.close()
    results = await asyncio.wait_for(asyncio.gather(*sends, return_exceptions=True), 10)
    assert all(not isinstance(r, BaseException) or isinstance(r, ConnectionError) for r in results)


async def test_a_client_that_stops_reading_is_dropped_and_others_are_served(serve_factory):
    server = serve_factory(max_write_buffer=200_000, rate=100_000, burst=100_000)
    async with Client(server.url) as alice, Client(server.url) as deaf, Client(server.url) as carol:
        await new_user(alice)
        _, deaf_id = await new_user(deaf)
        _, carol_id = await new_user(carol)
        deaf._transport.underlying_transport.pause_reading()
        payload = "z" * 30_000
        for _ in range(1000):  # 30 MB of pushes for a client that reads none of them
            await alice.send(deaf_id, payload)
            if not deaf.connected:
                break
        deaf._transport.underlying_transport.resume_reading()
        assert await asyncio.wait_for(deaf.wait_closed(), 10) is None  # dropped, no close frame
        await alice.send(carol_id, "still serving")
        assert (await asyncio.wait_for(carol.pushes.get(), 5)).content == "still serving"
