"""Gray failures of the cluster backends: a server that hangs (SIGSTOP) instead of dying.
``/readyz`` turns 503 naming the backend within a few seconds while it does not answer,
and 200 again after SIGCONT; a SEND between two users of the node is still answered while
Redis hangs (routes calls fail within their timeout instead of hanging).

Redis is this module's own (tests/servers.py ``private_redis``); the database and the
RocketMQ broker are the session's, frozen for a few seconds each and always continued in
a ``finally``."""
from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
import uuid

import pytest
from harness import ServeProcess, new_user
from servers import frozen, private_redis

from edgeim.sdk import Client, ServerError

#: how long /readyz may take to tell (the probe runs every second, deadline 1 s here)
TELL_WITHIN = 15.0


@pytest.fixture(scope="module")
def redis_own(tmp_path_factory):
    with private_redis(tmp_path_factory.mktemp("redis-gray")) as server:
        yield server


@pytest.fixture
def node(tmp_path, mysql_server, redis_own, rocketmq_server):
    database = mysql_server.new_database()
    server = ServeProcess(
        tmp_path / "a", node_id=f"gray-{uuid.uuid4().hex[:8]}", store=mysql_server.url(database),
        routes=f"{redis_own.url}?prefix={redis_own.new_prefix()}", bus=f"rocketmq://{rocketmq_server.namesrv}",
        token_secret="gray-secret-" + uuid.uuid4().hex, routes_timeout=1, store_timeout=2,
        backend_probe_timeout=1)
    server.log_path = tmp_path / "a.log"
    server.start()
    try:
        yield server
    finally:
        if server.alive:
            server.stop()
        mysql_server.drop_database(database)


def readyz(base: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(base + "/readyz", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


async def readyz_becomes(base: str, status: int) -> str:
    """Poll /readyz until it answers ``status``; its body then. Fails past TELL_WITHIN."""
    async def poll() -> str:
        while True:
            code, body = await asyncio.to_thread(readyz, base)
            if code == status:
                return body
            await asyncio.sleep(0.2)
    return await asyncio.wait_for(poll(), TELL_WITHIN)


async def test_readyz_tells_while_redis_hangs_and_sends_are_still_answered(node, redis_own):
    base = node.http_url
    assert await readyz_becomes(base, 200) == "ready\n"
    async with Client(node.url) as alice, Client(node.url) as bob:
        await new_user(alice)
        _, bob_id = await new_user(bob)
        await alice.send(bob_id, "before")
        async with frozen(redis_own.proc.pid):
            assert "routes unavailable" in await readyz_becomes(base, 503)
            # the store works: the send is stored and answered, whatever the routes do, and
            # the push to a device on this node goes out at once (it never waits on them)
            ack = await asyncio.wait_for(alice.send(bob_id, "during", cmid="during"), 20)
            got = [await asyncio.wait_for(bob.pushes.get(), 20) for _ in range(2)]
            assert [m.content for m in got] == ["before", "during"]
            assert "routes unavailable" in await readyz_becomes(base, 503)  # still frozen
        assert await readyz_becomes(base, 200) == "ready\n"
        again = await alice.send(bob_id, "during", cmid="during")
        assert again.msg_id == ack.msg_id  # stored once


async def test_readyz_tells_while_the_database_hangs_and_sends_fail_with_5001(node, mysql_server):
    base = node.http_url
    assert await readyz_becomes(base, 200) == "ready\n"
    # send_retries=0: the application sees the node's 5001 (the SDK would retry it)
    async with Client(node.url, send_retries=0) as alice, Client(node.url) as bob:
        await new_user(alice)
        _, bob_id = await new_user(bob)
        async with frozen(mysql_server.proc.pid):
            assert "store unavailable" in await readyz_becomes(base, 503)
            with pytest.raises(ServerError) as refused:
                await asyncio.wait_for(alice.send(bob_id, "during", cmid="db-frozen"), 60)
            assert refused.value.code == 5001
        assert await readyz_becomes(base, 200) == "ready\n"
        ack = await alice.send(bob_id, "during", cmid="db-frozen")  # the client's retry
        assert ack.seq == 1


async def test_readyz_tells_while_the_broker_hangs(node, rocketmq_server):
    base = node.http_url
    assert await readyz_becomes(base, 200) == "ready\n"
    async with frozen(rocketmq_server.broker_proc.pid):
        assert "bus unavailable" in await readyz_becomes(base, 503)
    assert await readyz_becomes(base, 200) == "ready\n"


async def test_a_send_refused_while_the_database_hangs_is_retried_by_the_sdk_and_stored_once(node, mysql_server):
    async with Client(node.url, reconnect_delay=0.5, max_reconnect_delay=2.0) as alice, Client(node.url) as bob:
        await new_user(alice)
        _, bob_id = await new_user(bob)
        async with frozen(mysql_server.proc.pid):
            sending = asyncio.ensure_future(alice.send(bob_id, "through the freeze", cmid="ride-through"))

            async def refused_once() -> None:
                while alice.send_retried < 1:
                    await asyncio.sleep(0.05)
            await asyncio.wait_for(refused_once(), 60)  # the node answered 5001, the SDK sends again
            assert not sending.done()
        ack = await asyncio.wait_for(sending, 60)
        got = await asyncio.wait_for(bob.pushes.get(), 20)
        assert (got.cmid, got.seq) == ("ride-through", ack.seq)
        assert [m.cmid for m in (await bob.history(ack.conv)).msgs] == ["ride-through"]


def node_number(msg_id: int) -> int:
    return (msg_id >> 12) & 0x3FF


async def test_a_node_frozen_past_its_number_lease_never_mints_with_the_number_another_node_took(
        tmp_path, mysql_server, redis_own, rocketmq_server):
    """Node a (5 s lease) is frozen until its lease expired in Redis and node c, starting
    meanwhile, took a's number. A SEND that waited in a's socket during the freeze is
    handled when a wakes, before or after a's renewal: either way its id does not carry
    the number c holds (the fence refuses it with 5001 until a has leased another one, and
    the SDK retries it), and it is stored once."""
    import redis.asyncio as aioredis

    database = mysql_server.new_database()
    prefix = redis_own.new_prefix()
    shared = dict(store=mysql_server.url(database), routes=f"{redis_own.url}?prefix={prefix}",
                  bus=f"rocketmq://{rocketmq_server.namesrv}", token_secret="fence-secret-" + uuid.uuid4().hex)
    run = uuid.uuid4().hex[:8]
    a = ServeProcess(tmp_path / "a", node_id=f"{run}-a", number_lease=5, **shared)
    c = ServeProcess(tmp_path / "c", node_id=f"{run}-c", **shared)
    a.log_path, c.log_path = tmp_path / "a.log", tmp_path / "c.log"
    raw = aioredis.from_url(redis_own.url)
    clients: list[Client] = []
    try:
        a.start()
        alice, bob = Client(a.url, heartbeat=None), Client(a.url, heartbeat=None)  # they stay on a
        clients += [alice, bob]
        await alice.connect()
        await bob.connect()
        await new_user(alice)
        _, bob_id = await new_user(bob)
        before = await alice.send(bob_id, "before")
        number_a = node_number(before.msg_id)
        async with frozen(a.proc.pid):
            async def lapsed() -> None:
                while await raw.get(f"{prefix}num:{number_a}") == f"{run}-a".encode():
                    await asyncio.sleep(0.1)
            await asyncio.wait_for(lapsed(), 30)
            await asyncio.to_thread(c.start)
            carol = Client(c.url, heartbeat=None)
            clients.append(carol)
            await carol.connect()
            await new_user(carol)
            number_c = node_number((await carol.send(bob_id, "from c")).msg_id)
            assert number_c == number_a  # the hazard: c makes ids with a's old number
            during = asyncio.ensure_future(alice.send(bob_id, "sent while a is frozen", cmid="frozen-send"))
            await asyncio.sleep(0)  # the frame is written to a's socket
        ack = await asyncio.wait_for(during, 60)
        assert node_number(ack.msg_id) != number_c
        assert [m.cmid for m in (await alice.history(ack.conv)).msgs].count("frozen-send") == 1
    finally:
        for client in clients:
            await client.close()
        await raw.aclose()
        for node in (a, c):
            if node.alive:
                node.stop()
        mysql_server.drop_database(database)


async def test_a_login_while_redis_hangs_is_refused_with_5001_and_can_be_retried(node, redis_own):
    async with Client(node.url) as alice, Client(node.url) as bob:
        name, _ = await new_user(alice)
        async with frozen(redis_own.proc.pid):
            with pytest.raises(ServerError) as refused:
                await asyncio.wait_for(bob.login(name, "secret-pw", "phone"), 20)
            assert refused.value.code == 5001
        ok = await bob.login(name, "secret-pw", "phone")  # the same connection: it was not logged in
        assert ok.user_id == alice.user_id
