"""A node whose store cannot commit answers writes with 5001 and is not ready (/readyz 503)
until a commit succeeds again. In process, so that the store can be made to fail."""
from __future__ import annotations

import asyncio
import sqlite3
import urllib.error
import urllib.request

from harness import TEST_ENV

from edgeim.core_ext.protocol import ErrorCode
from edgeim.edge.node import Node
from edgeim.ops.config import Config
from edgeim.sdk import Client, ServerError


def readyz(base: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(base + "/readyz", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


async def test_a_failing_store_makes_writes_unavailable_and_the_node_unready(tmp_path, monkeypatch):
    config = Config.load({"port": 0, "data_dir": tmp_path},
                         env={**TEST_ENV, "IM_STRANGERS_MAY_SEND": "1", "IM_TOKEN_SECRET": "readiness-secret-0123456789abcdef"})
    node = Node(config)
    host, port = await node.start()
    base, url = f"http://{host}:{port}", f"ws://{host}:{port}/ws"
    try:
        # send_retries=0: the application sees the server's 5001 (the SDK would retry it)
        async with Client(url, send_retries=0) as alice, Client(url) as bob:
            await alice.register("alice", "secret-pw")
            bob_id = await bob.register("bob", "secret-pw")
            await alice.login("alice", "secret-pw", "web")
            await alice.send(bob_id, "before")
            assert await asyncio.to_thread(readyz, base) == (200, "ready\n")

            real = node.store._insert_run

            def disk_full(*args, **kwargs):
                raise sqlite3.OperationalError("database or disk is full")

            monkeypatch.setattr(node.store, "_insert_run", disk_full)
            try:
                await alice.send(bob_id, "while full", cmid="retry-me")
            except ServerError as err:
                assert err.code == ErrorCode.UNAVAILABLE
            else:
                raise AssertionError("a write to a full disk was acked")
            assert await asyncio.to_thread(readyz, base) == (503, "store unavailable\n")

            monkeypatch.setattr(node.store, "_insert_run", real)
            ack = await alice.send(bob_id, "while full", cmid="retry-me")  # the retry is stored, once
            assert await asyncio.to_thread(readyz, base) == (200, "ready\n")
            assert [m.content for m in (await alice.history(ack.conv)).msgs] == ["before", "while full"]
    finally:
        await node.stop()


async def test_a_node_whose_number_lease_is_not_confirmed_refuses_sends_until_it_is(tmp_path):
    """Fencing: once the lease of the node's number may have ended (here: its fence is
    shut, as when the node woke from a freeze past its lease or could not renew it), SEND
    is answered 5001 UNAVAILABLE and /readyz is 503, until a renewal succeeds; the client's
    retry with the same cmid is then stored once."""
    config = Config.load({"port": 0, "data_dir": tmp_path},
                         env={**TEST_ENV, "IM_STRANGERS_MAY_SEND": "1", "IM_TOKEN_SECRET": "readiness-secret-0123456789abcdef"})
    node = Node(config)
    host, port = await node.start()
    base, url = f"http://{host}:{port}", f"ws://{host}:{port}/ws"
    try:
        async with Client(url, send_retries=0) as alice, Client(url) as bob:
            await alice.register("alice", "secret-pw")
            bob_id = await bob.register("bob", "secret-pw")
            await alice.login("alice", "secret-pw", "web")
            await alice.send(bob_id, "before")
            node.ids.fence(float("-inf"))
            try:
                await alice.send(bob_id, "fenced", cmid="fenced")
            except ServerError as err:
                assert err.code == ErrorCode.UNAVAILABLE
            else:
                raise AssertionError("a message id was made without a valid lease")
            assert await asyncio.to_thread(readyz, base) == (503, "ids unavailable\n")
            await node.number_lease.renew()
            ack = await alice.send(bob_id, "fenced", cmid="fenced")
            assert await asyncio.to_thread(readyz, base) == (200, "ready\n")
            assert [m.content for m in (await alice.history(ack.conv)).msgs] == ["before", "fenced"]
    finally:
        await node.stop()


async def until(predicate, timeout: float = 10.0) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.005)
    await asyncio.wait_for(poll(), timeout)


async def test_a_probe_that_fails_or_hangs_marks_its_backend_down_until_one_answers_in_time():
    from edgeim.edge.readiness import Readiness

    mode = {"a": "ok", "b": "ok"}
    started = {"a": 0, "b": 0}
    release = asyncio.Event()

    async def probe(name: str) -> None:
        started[name] += 1
        if mode[name] == "raise":
            raise ConnectionError("refused")
        if mode[name] == "hang":
            await release.wait()

    readiness = Readiness({"a": lambda: probe("a"), "b": lambda: probe("b")}, interval=0.01, deadline=0.05)
    readiness.start()
    try:
        await until(lambda: started["a"] >= 2 and started["b"] >= 2)
        assert readiness.down() == []
        mode["a"] = "raise"
        await until(lambda: readiness.down() == ["a"])
        mode["b"] = "hang"
        await until(lambda: readiness.down() == ["a", "b"])
        hung_at = started["b"]
        await asyncio.sleep(0.2)  # twenty intervals: a hanging probe is not started again
        assert started["b"] == hung_at
        mode["a"] = mode["b"] = "ok"
        release.set()  # the hung probe ends late: not yet up, the next one in time is
        await until(lambda: readiness.down() == [])
    finally:
        await readiness.stop()
