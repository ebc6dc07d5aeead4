"""User profiles against a real ``im serve``: USER_FIND by exact username and USERS by ids,
as a client uses them to befriend someone and to show names for ids."""
from __future__ import annotations

import pytest

from edgeim.core_ext.protocol import ErrorCode, Op
from edgeim.sdk import Client, ServerError

from harness import new_user, next_event


async def test_find_by_exact_username_gives_the_id_to_befriend(clients):
    alice, bob = await clients(), await clients()
    await new_user(alice)
    bob_name = "bob_" + str(id(bob))[-6:]
    bob_id = await bob.register(bob_name, "secret-pw", "Bob the Builder")
    await bob.login(bob_name, "secret-pw", "web")

    found = await alice.user_find(bob_name)
    await alice.friend_request(found.user)
    request = await next_event(bob, Op.FRIEND_PUSH)

    assert (found.user, found.username, found.nickname) == (bob_id, bob_name, "Bob the Builder")
    assert (request.event, request.user) == ("request", alice.user_id)


async def test_unknown_or_inexact_username_is_user_not_found(clients):
    alice = await clients()
    name, _ = await new_user(alice)
    for wrong in ("nobody_at_all", name.upper(), name[:-1]):
        with pytest.raises(ServerError) as err:
            await alice.user_find(wrong)
        assert err.value.code == ErrorCode.USER_NOT_FOUND, wrong


async def test_users_gives_existing_profiles_in_order_once(clients):
    a, b, c = await clients(), await clients(), await clients()
    names = [await new_user(x) for x in (a, b, c)]
    ids = [user_id for _, user_id in names]

    got = await a.users([ids[2], 999_999_999, ids[0], ids[2], ids[1]])

    assert [(p.user, p.username) for p in got] == [(ids[2], names[2][0]), (ids[0], names[0][0]), (ids[1], names[1][0])]


async def test_bad_profile_requests_are_refused_and_need_a_login(clients, server):
    alice = await clients()
    with pytest.raises(ServerError) as before_login:
        await alice.users([1])
    await new_user(alice)
    with pytest.raises(ServerError) as too_many:
        await alice.users(range(1, 102))
    with pytest.raises(ServerError) as bad_name:
        await alice.user_find("no spaces allowed")

    assert before_login.value.code == ErrorCode.NOT_AUTHENTICATED
    assert too_many.value.code == ErrorCode.BAD_BODY
    assert bad_name.value.code == ErrorCode.BAD_BODY
    async with Client(server.url) as other:  # the node is still serving
        await new_user(other)
        assert [p.user for p in await other.users([alice.user_id])] == [alice.user_id]
