"""What one account may cost across all its sessions: messages and bytes per second, and
live sessions; each refused with its documented code, nothing stored for it."""
from __future__ import annotations

import pytest
from harness import new_user

from edgeim.core_ext.protocol import ErrorCode
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
