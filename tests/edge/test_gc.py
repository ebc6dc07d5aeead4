"""The node and the garbage collector: a closed connection is freed by reference counting,
never left as a reference cycle (which, once frozen by ``gc_freeze_every``, no collection
would ever free); the freezing and the collections show on ``/metrics``.

``POST /debug/gc`` (admin) runs a full collection that keeps what it finds unreachable
and counts it by type, frozen objects included: the census these tests read."""
from __future__ import annotations

import asyncio
import gc
import json
import re
import urllib.request
import uuid

from harness import new_user

from edgeim.ops.gcwatch import GcWatch
from edgeim.sdk import Client

TOKEN = "admin-" + uuid.uuid4().hex
#: what one connection is made of, on the node's side (either codec's Peer)
CONNECTION_TYPES = ("edgeim.edge.session.Session", "edgeim.core_ext._fanout.Peer", "edgeim.core_ext.fanout_py.Peer",
                    "picows.picows.WSTransport", "uvloop.loop.TCPTransport")


def _http(method: str, url: str, token: str = "") -> str:
    request = urllib.request.Request(url, method=method, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read().decode()


async def _census(node) -> dict:
    return json.loads(await asyncio.to_thread(_http, "POST", f"{node.http_url}/debug/gc?limit=1000", TOKEN))


async def _connections(node) -> int:
    stats = json.loads(await asyncio.to_thread(_http, "GET", f"{node.http_url}/admin/stats", TOKEN))
    return stats["connections"]


async def test_closed_connections_leave_no_reference_cycles(serve_factory, codec):
    node = serve_factory(codec, admin_token=TOKEN)
    await _census(node)  # whatever start-up left goes now
    clients = [Client(node.url) for _ in range(12)]
    for client in clients:
        await client.connect()
    users = [await new_user(client) for client in clients[:10]]  # two stay anonymous
    # messages both ways, so each session has answered and pushed
    for sender, (_, receiver_id) in zip(clients[:10], users[1:] + users[:1]):
        await sender.send(receiver_id, "hello")
    # a login on the same terminal replaces a session: the node closes the old one (4001)
    replacing = Client(node.url)
    await replacing.connect()
    await replacing.login(users[0][0], "secret-pw", "web")
    clients.append(replacing)
    for client in clients:
        await client.close()
    for _ in range(200):
        if await _connections(node) == 0:
            break
        await asyncio.sleep(0.05)
    assert await _connections(node) == 0

    census = await _census(node)

    leaked = {kind: count for kind, count in census["by_type"].items() if kind in CONNECTION_TYPES}
    assert leaked == {}, census


def _metric(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert found, f"{name} not in /metrics"
    return float(found[1])


async def test_start_up_is_frozen_and_collections_are_counted(serve_factory):
    node = serve_factory()
    async with Client(node.url) as client:
        await new_user(client)
        text = await asyncio.to_thread(_http, "GET", f"{node.http_url}/metrics")
    assert _metric(text, "edgeim_gc_frozen_objects") > 10_000  # the modules, the config, the backends
    assert _metric(text, "edgeim_gc_freezes_total") >= 1
    for generation in "012":  # exported from the start, zeros included
        assert _metric(text, f'edgeim_gc_collections_total{{generation="{generation}"}}') >= 0
    assert _metric(text, "edgeim_event_loop_lag_max_seconds") >= 0


async def test_gc_freeze_every_0_freezes_nothing(serve_factory):
    node = serve_factory(gc_freeze_every=0)
    text = await asyncio.to_thread(_http, "GET", f"{node.http_url}/metrics")
    assert _metric(text, "edgeim_gc_frozen_objects") == 0
    assert _metric(text, "edgeim_gc_freezes_total") == 0


def test_the_young_threshold_is_set_while_started_and_given_back_after():
    before = gc.get_threshold()
    loop = asyncio.new_event_loop()
    try:
        watch = GcWatch(loop, every=0, young=12_345)
        watch.start()
        try:
            assert gc.get_threshold() == (12_345, *before[1:])
        finally:
            watch.stop()
        assert gc.get_threshold() == before
    finally:
        loop.close()
