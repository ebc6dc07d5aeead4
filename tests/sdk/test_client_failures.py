"""The Python SDK under gray failures: a SEND refused with 5001 UNAVAILABLE is retried
with the same cmid (bounded), and a heartbeat takes an idle client off a frozen node."""
from __future__ import annotations

import asyncio
import uuid

import pytest
from harness import TEST_ENV, ServeProcess, new_user
from servers import frozen

from edgeim.core_ext.protocol import ErrorCode
from edgeim.edge.node import Node
from edgeim.ops.config import Config
from edgeim.sdk import Client, ServerError


async def until(predicate, timeout: float = 20.0) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.02)
    await asyncio.wait_for(poll(), timeout)


@pytest.fixture
async def embedded(tmp_path):
    """A node in this process (so its id fence can be shut), and its WebSocket URL."""
    config = Config.load({"port": 0, "data_dir": tmp_path},
                         env={**TEST_ENV, "IM_STRANGERS_MAY_SEND": "1", "IM_TOKEN_SECRET": "readiness-secret-0123456789abcdef"})
    node = Node(config)
    host, port = await node.start()
    try:
        yield node, f"ws://{host}:{port}/ws"
    finally:
        await node.stop()


async def test_a_send_refused_with_5001_is_retried_with_its_cmid_and_stored_once(embedded):
    node, url = embedded
    async with Client(url, reconnect_delay=0.05, max_reconnect_delay=0.2) as alice, Client(url) as bob:
        await new_user(alice)
        _, bob_id = await new_user(bob)
        node.ids.fence(float("-inf"))  # the node cannot make ids: SEND is answered 5001
        sending = asyncio.ensure_future(alice.send(bob_id, "through", cmid="one"))
        await until(lambda: alice.send_retried >= 1)
        assert not sending.done()  # the refusal did not reach the application
        await node.number_lease.renew()  # the lease is confirmed again
        ack = await asyncio.wait_for(sending, 20)
        got = await asyncio.wait_for(bob.pushes.get(), 20)
        assert (got.cmid, got.content, got.seq) == ("one", "through", ack.seq)
        assert [m.cmid for m in (await alice.history(ack.conv)).msgs] == ["one"]


async def test_5001_reaches_the_application_after_the_last_retry(embedded):
    node, url = embedded
    async with Client(url, send_retries=2, reconnect_delay=0.01, max_reconnect_delay=0.05) as alice, \
            Client(url) as bob:
        await new_user(alice)
        _, bob_id = await new_user(bob)
        node.ids.fence(float("-inf"))
        with pytest.raises(ServerError) as refused:
            await asyncio.wait_for(alice.send(bob_id, "never"), 20)
        assert refused.value.code == ErrorCode.UNAVAILABLE and alice.send_retried == 2


@pytest.fixture
def two_nodes(tmp_path, mysql_server, redis_server, rocketmq_server):
    database = mysql_server.new_database()
    shared = dict(store=mysql_server.url(database), routes=f"{redis_server.url}?prefix={redis_server.new_prefix()}",
                  bus=f"rocketmq://{rocketmq_server.namesrv}", token_secret="hb-secret-" + uuid.uuid4().hex)
    run = uuid.uuid4().hex[:8]
    started: list[ServeProcess] = []
    try:
        for name in "ab":
            node = ServeProcess(tmp_path / name, node_id=f"{run}-{name}", **shared)
            node.log_path = tmp_path / f"{name}.log"
            node.start()
            started.append(node)
        yield started
    finally:
        for node in started:
            if node.alive:
                node.stop()
        mysql_server.drop_database(database)


async def test_an_idle_receiver_on_a_frozen_node_fails_over_and_gets_what_is_sent_to_it(two_nodes):
    a, b = two_nodes
    bob = Client([a.url, b.url], auto_reconnect=True, heartbeat=0.5, heartbeat_timeout=1.0,
                 reconnect_delay=0.05, max_reconnect_delay=0.5)
    alice = Client(b.url)
    try:
        await bob.connect()
        await alice.connect()
        _, bob_id = await new_user(bob)
        await new_user(alice)
        assert bob.url == a.url
        async with frozen(a.proc.pid):
            # bob sends nothing: only the heartbeat can tell that node a stopped answering
            await until(lambda: bob.reconnects >= 1 and bob.connected, 30)
            assert bob.url == b.url and bob.heartbeats_missed >= 1
            ack = await alice.send(bob_id, "while a is frozen")
            got = await asyncio.wait_for(bob.pushes.get(), 20)
            assert (got.content, got.seq) == ("while a is frozen", ack.seq)
    finally:
        await alice.close()
        await bob.close()
