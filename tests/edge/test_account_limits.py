"""What one account may cost across all its sessions: messages and bytes per second, and
live sessions; each refused with its documented code, nothing stored for it."""
from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest
from harness import new_user

from edgeim.core_ext.protocol import ErrorCode, Op
from edgeim.sdk import Client, ServerError


async def test_the_send_rate_is_per_account_not_per_connection(serve_factory):
    server = serve_factory(user_send_rate=0.001, user_send_burst=5)
    async with Client(server.url) as phone, Client(server.url) as laptop, Client(server.url) as bob:
        name, _ = await new_user(phone, "ios")
        await laptop.login(name, "secret-pw", "desktop")
        _, bob_id = await new_user(bob)
        acks = [await phone.send(bob_id, f"p{n}") for n in range(3)]
        acks += [await laptop.send(bob_id, f"l{n}") for n in range(2)]
        with pytest.raises(ServerError) as err:
            await laptop.send(bob_id, "one too many")
        assert err.value.code == ErrorCode.RATE_LIMITED
        stored = (await bob.history(acks[0].conv)).msgs
    assert [m.content for m in stored] == ["p0", "p1", "p2", "l0", "l1"]


async def test_the_byte_rate_is_per_account(serve_factory):
    server = serve_factory(user_send_bytes_rate=1, user_send_bytes_burst=40_000)
    async with Client(server.url) as alice, Client(server.url) as bob:
        await new_user(alice)
        _, bob_id = await new_user(bob)
        ack = await alice.send(bob_id, "x" * 30_000)
        with pytest.raises(ServerError) as err:
            await alice.send(bob_id, "y" * 30_000)
        assert err.value.code == ErrorCode.RATE_LIMITED
        assert await alice.send(bob_id, "small") is not None  # what is left of the budget still serves
        assert [m.content[0] for m in (await bob.history(ack.conv)).msgs] == ["x", "s"]


async def test_live_sessions_per_account(serve_factory):
    server = serve_factory(max_sessions_per_user=2)
    async with Client(server.url) as web, Client(server.url) as ios:
        name, _ = await new_user(web, "web")
        await ios.login(name, "secret-pw", "ios")
        async with Client(server.url) as third:
            with pytest.raises(ServerError) as err:
                await third.login(name, "secret-pw", "desktop")
            assert err.value.code == ErrorCode.TOO_MANY_SESSIONS
            await third.ping()  # refused, not closed, and not logged in
        async with Client(server.url) as again:  # the same terminal replaces its session: it fits
            await again.login(name, "secret-pw", "ios")
            assert await ios.wait_closed() == 4001
        await web.logout()
        await web.wait_closed()
        async with Client(server.url) as desktop:  # a freed place can be taken
            await desktop.login(name, "secret-pw", "desktop")


ADMIN = "admin-" + "0123456789abcdef"


def sessions_of(server, user_id: int) -> list:
    request = urllib.request.Request(f"{server.http_url}/admin/users/{user_id}",
                                     headers={"Authorization": f"Bearer {ADMIN}"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(reply.read())["sessions"]


async def reconnected(server, client: Client) -> Client:
    """The same account on a new connection, once its last session here has closed (the
    node lists no session of it: it has let the account go)."""
    token, user_id = client.token, client.user_id
    await client.close()

    async def gone() -> None:
        while await asyncio.to_thread(sessions_of, server, user_id):
            await asyncio.sleep(0.05)

    await asyncio.wait_for(gone(), 10)
    again = Client(server.url)
    await again.connect()
    await again.token_login(token, "web")
    return again


async def test_a_spent_send_budget_is_not_restored_by_reconnecting(serve_factory):
    server = serve_factory(user_send_rate=0.001, user_send_burst=3, admin_token=ADMIN)
    async with Client(server.url) as alice, Client(server.url) as bob:
        await new_user(alice)
        _, bob_id = await new_user(bob)
        acks = [await alice.send(bob_id, f"m{n}") for n in range(3)]
        again = await reconnected(server, alice)
        try:
            with pytest.raises(ServerError) as err:
                await again.send(bob_id, "after reconnecting")
        finally:
            await again.close()
        stored = (await bob.history(acks[0].conv)).msgs
    assert err.value.code == ErrorCode.RATE_LIMITED
    assert [m.content for m in stored] == ["m0", "m1", "m2"]


async def test_group_creation_has_a_budget_that_reconnecting_keeps(serve_factory):
    server = serve_factory(group_creates_per_hour=2, admin_token=ADMIN)
    async with Client(server.url) as alice, Client(server.url) as bob:
        await new_user(alice)
        _, bob_id = await new_user(bob)
        made = [await alice.group_create(f"g{n}", [bob_id]) for n in range(2)]
        with pytest.raises(ServerError) as first:
            await alice.group_create("g2", [bob_id])
        again = await reconnected(server, alice)
        try:
            with pytest.raises(ServerError) as second:
                await again.group_create("g3", [bob_id])
            groups = await again.groups()
        finally:
            await again.close()
    assert first.value.code == second.value.code == ErrorCode.RATE_LIMITED
    assert sorted(g.group for g in groups) == sorted(g.group for g in made)  # nothing stored for the refused


async def test_call_invitations_have_a_budget_that_reconnecting_keeps(serve_factory):
    server = serve_factory(call_invites_per_minute=2, admin_token=ADMIN)
    async with Client(server.url) as alice, Client(server.url) as bob:
        await new_user(alice)
        _, bob_id = await new_user(bob)
        for _ in range(2):
            started = await alice.call_invite(bob_id, "audio", "v=0 offer")
            await alice.call_cancel(started.call)
        with pytest.raises(ServerError) as first:
            await alice.call_invite(bob_id, "audio", "v=0 offer")
        again = await reconnected(server, alice)
        try:
            with pytest.raises(ServerError) as second:
                await again.call_invite(bob_id, "audio", "v=0 offer")
        finally:
            await again.close()
        rings = []
        while not bob.events.empty():
            kind, body = bob.events.get_nowait()
            if kind == Op.CALL_PUSH and body.event == "ring":
                rings.append(body.call)
    assert first.value.code == second.value.code == ErrorCode.RATE_LIMITED
    assert len(rings) == 2  # the refused invitations rang nobody
