"""What one account's searches may cost everyone else, through a real node: a search that
would never end (the store's search replaced by a statement that runs until interrupted)
leaves other users' SYNCs and logins answered, a second search of the same account is
refused, and the search is stopped when its client leaves. In process, so that the
store's search can be made endless."""
from __future__ import annotations

import asyncio

import pytest
from harness import TEST_ENV

from edgeim.backends import sqlite as sqlite_store
from edgeim.core_ext.protocol import ErrorCode
from edgeim.edge.node import Node
from edgeim.ops.config import Config
from edgeim.sdk import Client, ServerError


async def until(condition) -> None:
    """Wait for ``condition()`` (an event seen by polling; fails rather than hangs)."""
    async def wait() -> None:
        while not condition():
            await asyncio.sleep(0.01)
    await asyncio.wait_for(wait(), 10)


def endless(conn, *args):
    conn.execute("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c").fetchone()
    return []


async def test_an_endless_search_harms_no_one_else_and_stops_when_its_client_leaves(tmp_path, monkeypatch):
    config = Config.load({"port": 0, "data_dir": tmp_path, "search_timeout": 3600},
                         env={**TEST_ENV, "IM_STRANGERS_MAY_SEND": "1",
                              "IM_TOKEN_SECRET": "search-limits-secret-0123456789abcdef"})
    node = Node(config)
    host, port = await node.start()
    url = f"ws://{host}:{port}/ws"
    try:
        async with Client(url) as mallory, Client(url) as alice, Client(url) as bob:
            await mallory.register("mallory", "secret-pw")
            await mallory.login("mallory", "secret-pw", "web")
            await alice.register("alice", "secret-pw")
            await alice.login("alice", "secret-pw", "web")
            bob_id = await bob.register("bob", "secret-pw")
            await bob.login("bob", "secret-pw", "web")
            sent = await alice.send(bob_id, "hello bob")
            await mallory.send(bob_id, "a haystack")

            monkeypatch.setattr(sqlite_store, "_search", endless)
            running = asyncio.ensure_future(mallory.search("haystack"))
            await until(lambda: node.store._searching is not None)  # the endless statement is running

            with pytest.raises(ServerError) as err:
                await mallory.search("needle")
            assert err.value.code == ErrorCode.RATE_LIMITED  # one search per account at a time
            assert [m.id for m in (await bob.sync(sent.conv)).msgs] == [sent.msg_id]
            async with Client(url) as again:  # a login reads the store too
                await again.login("alice", "secret-pw", "ios")
            assert not running.done()

            await mallory.close()  # its client leaves: the search is stopped
            await until(lambda: node.store._searching is None)
            running.cancel()
            monkeypatch.undo()
            assert [m.content for m in (await bob.search("hello")).msgs] == ["hello bob"]  # the thread is free
    finally:
        await node.stop()
