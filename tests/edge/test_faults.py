"""Faults under load on a three-node cluster (real MariaDB, Redis, RocketMQ): nodes killed
with SIGKILL ten times, then Redis restarted, then the RocketMQ broker restarted, while
SDK clients spread over the nodes send steadily. Afterwards every acknowledged message
has reached each of its receivers' applications exactly once, and the store holds each
cmid exactly once.

Redis and RocketMQ are this module's own instances (tests/servers.py ``private_*``):
restarting them must not disturb the session's servers the other tests share."""
from __future__ import annotations

import asyncio
import collections
import itertools
import signal
import time
import uuid
from pathlib import Path

import pytest
from harness import ServeProcess, new_user, next_event
from servers import private_redis, private_rocketmq

from edgeim.core_ext import bodies
from edgeim.core_ext.protocol import Op
from edgeim.sdk import Client

SENDERS = 4
RECEIVERS = 4
#: seconds between two sends of one sender (4 senders: ~130 messages/s in all)
SEND_EVERY = 0.03
KILLS = 10


class App(Client):
    """A client whose ``pushes`` the application drains into ``got``; ``live`` notes what
    came as a push on the socket (not from a catch-up)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.got: list[bodies.Message] = []
        self.live: set[tuple[str, int]] = set()

    def _deliver(self, message: bodies.Message) -> None:
        self.live.add((message.conv, message.seq))
        super()._deliver(message)

    async def drain(self) -> None:
        while True:
            self.got.append(await self.pushes.get())


@pytest.fixture(scope="module")
def redis_own(tmp_path_factory):
    with private_redis(tmp_path_factory.mktemp("redis-faults")) as server:
        yield server


@pytest.fixture(scope="module")
def rocketmq_own():
    with private_rocketmq() as server:
        yield server


@pytest.fixture
def cluster(tmp_path: Path, mysql_server, redis_own, rocketmq_own):
    database = mysql_server.new_database()
    shared = dict(
        store=mysql_server.url(database),
        routes=f"{redis_own.url}?prefix={redis_own.new_prefix()}",
        bus=f"rocketmq://{rocketmq_own.namesrv}",
        token_secret="faults-secret-" + uuid.uuid4().hex,
        # the per-connection frame budget is not under test: resends after a reconnect come in bursts
        rate=1_000_000, burst=1_000_000,
        strangers_may_send=True,  # 1:1 sends without a friendship made first across the nodes
    )
    run = uuid.uuid4().hex[:8]
    nodes = []
    try:
        for name in "abc":
            node = ServeProcess(tmp_path / name, node_id=f"{run}-{name}", **shared)
            node.log_path = tmp_path / f"{name}.log"  # a pipe nobody reads would fill up
            node.start()
            nodes.append(node)
        yield nodes, database
    finally:
        for node in nodes:
            if node.alive:
                node.stop()
        mysql_server.drop_database(database)


async def test_no_acked_message_is_lost_or_duplicated_through_node_kills_and_backend_restarts(
        cluster, mysql_server, redis_own, rocketmq_own):
    nodes, database = cluster
    urls = [node.url for node in nodes]
    started = time.monotonic()
    phases: list[str] = []

    def phase(name: str) -> None:  # for the printed figures, not asserted
        phases.append(f"{name} {time.monotonic() - started:.0f}s")

    orders = list(itertools.permutations(urls))

    def spread(i: int) -> list[str]:
        # each client its own order of the nodes (as an app would shuffle them): the clients
        # of a dead node go on to both others, not all to the same one
        return list(orders[i % len(orders)])

    senders = [App(spread(i), auto_reconnect=True) for i in range(SENDERS)]
    receivers = [App(spread(i + 1), auto_reconnect=True) for i in range(RECEIVERS)]
    everyone = senders + receivers
    extra_clients: list[App] = []
    drains = []
    try:
        for client in everyone:
            await client.connect()
            await new_user(client)
        group = await senders[0].group_create("faults", [c.user_id for c in everyone[1:]])
        for member in everyone[1:]:
            await next_event(member, Op.GROUP_PUSH, 20)
        drains = [asyncio.ensure_future(c.drain()) for c in everyone]

        # -- load: each sender, in turn, to each receiver and to the group -----------------------
        sent: dict[str, tuple[int, int]] = {}  # cmid -> (sender index, receiver user id or 0: group)
        acks: dict[str, bodies.SendAck] = {}
        failures: list[BaseException] = []
        stop = asyncio.Event()

        async def one(client: App, cmid: str, to: int) -> None:
            try:
                if to:
                    acks[cmid] = await client.send(to, cmid, cmid=cmid)
                else:
                    acks[cmid] = await client.send_group(group.group, cmid, cmid=cmid)
            except BaseException as exc:  # noqa: BLE001 - counted and asserted below
                failures.append(exc)

        async def load(index: int, client: App) -> list[asyncio.Future[None]]:
            targets = itertools.cycle([r.user_id for r in receivers] + [0])
            tasks = []
            for n in itertools.count():
                if stop.is_set():
                    return tasks
                cmid = f"s{index}-{n}"
                to = next(targets)
                sent[cmid] = (index, to)
                tasks.append(asyncio.ensure_future(one(client, cmid, to)))
                await asyncio.sleep(SEND_EVERY)
            return tasks

        loaders = [asyncio.ensure_future(load(i, s)) for i, s in enumerate(senders)]

        # -- faults during the load ------------------------------------------------------------
        await asyncio.sleep(2)
        for _ in range(KILLS):
            # the node most clients are on: every kill drops some
            node = max(nodes, key=lambda n: sum(c.connected and c.url == n.url for c in everyone))
            await asyncio.to_thread(node.restart, signal.SIGKILL)  # same data dir, node id, port
            await asyncio.sleep(1)
        phase("kills")
        await asyncio.to_thread(redis_own.restart)  # comes back empty: routes are soft state
        await asyncio.sleep(3)  # the nodes notice within 2 s and write their routes again
        await asyncio.to_thread(rocketmq_own.stop_broker, True)  # SIGKILL; the load goes on meanwhile
        await asyncio.to_thread(rocketmq_own.start_broker)  # same port and store
        phase("broker restarted")
        await asyncio.sleep(5)  # the consumers are back within ~4 s
        stop.set()
        sends = [t for tasks in await asyncio.gather(*loaders) for t in tasks]
        await asyncio.wait_for(asyncio.gather(*sends), 90)
        phase("all acked")

        # -- pushes flow again after the faults: one more round, each must come as a push ---------
        # Where the clients ended up after the kills is up to their reconnects (they may all be on
        # one node), so a new member sends the round from the node holding the fewest of them:
        # at least two thirds of the pushes cross nodes through the restarted Redis and broker.
        fewest = min(urls, key=lambda url: sum(c.connected and c.url == url for c in everyone))
        prober = App(fewest)
        extra_clients.append(prober)
        await prober.connect()
        await new_user(prober)
        await senders[0].group_invite(group.group, [prober.user_id])
        await next_event(prober, Op.GROUP_PUSH, 20)
        crossing = [c for c in everyone if c.url != prober.url]
        assert len(crossing) >= 2 * len(everyone) // 3
        probes: dict[App, list[bodies.SendAck]] = collections.defaultdict(list)
        for i, client in enumerate(everyone):
            probes[client].append(await prober.send(client.user_id, f"probe {i}"))
        ack = await prober.send_group(group.group, "probe group")
        for member in everyone:
            probes[member].append(ack)

        async def all_pushed(client: App) -> None:
            while not all((a.conv, a.seq) in client.live for a in probes[client]):
                await asyncio.sleep(0.05)
        await asyncio.wait_for(asyncio.gather(*(all_pushed(c) for c in everyone)), 30)
        phase("probes pushed")

        # -- every client catches up (what an app does when it comes to the foreground) -----------
        for client in everyone:
            while True:
                try:
                    await client.catch_up()
                    break
                except ConnectionError:  # still reconnecting: its own catch-up follows the login
                    await asyncio.sleep(0.2)
        await asyncio.sleep(0.1)
        for client in everyone:
            await client.ping()  # anything queued for it has arrived
        while any(not c.pushes.empty() for c in everyone):
            await asyncio.sleep(0.01)
    finally:
        for task in drains:
            task.cancel()
        for client in everyone + extra_clients:
            await client.close()

    # -- the figures ------------------------------------------------------------------------
    assert failures == []
    assert set(acks) == set(sent)  # every send was acked in the end (resent across drops)
    assert len({(a.conv, a.seq) for a in acks.values()}) == len(acks)
    probe_keys = {(a.conv, a.seq) for acked in probes.values() for a in acked}
    lost = duplicates = extra = delivered = 0
    for index, client in enumerate(everyone):
        expected = {cmid for cmid, (s, to) in sent.items()
                    if (to == client.user_id) or (to == 0 and everyone[s] is not client)}
        got = [m for m in client.got if (m.conv, m.seq) not in probe_keys]
        delivered += len(got)
        counts = collections.Counter(m.cmid for m in got)
        duplicates += sum(n - 1 for n in counts.values())
        lost += len(expected - set(counts))
        extra += len(set(counts) - expected)
    with mysql_server.root() as conn:
        cur = conn.cursor()
        cur.execute(f"SELECT cmid, COUNT(*) FROM {database}.messages WHERE cmid LIKE 's%%' GROUP BY sender, cmid")
        stored = collections.Counter({cmid.decode(): n for cmid, n in cur.fetchall()})
    reconnects = sum(c.reconnects for c in everyone)
    print(f"\nfaults: {KILLS} node kills, 1 Redis restart, 1 broker restart; {len(sent)} sent, {len(acks)} acked, "
          f"{delivered} delivered to applications, {lost} lost, {duplicates} duplicates, {extra} unexpected, "
          f"{reconnects} reconnects; store: {sum(stored.values())} rows for {len(stored)} cmids; "
          f"at {', '.join(phases)}")
    assert (lost, duplicates, extra) == (0, 0, 0)
    assert set(stored) == set(acks) and set(stored.values()) == {1}
    assert reconnects >= KILLS  # every kill dropped some clients, who came back


async def _until(done, timeout: float, what: str) -> None:
    """Wait (polling) until ``done()``; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s: {what}"
        await asyncio.sleep(0.1)


async def test_messages_acked_while_pushes_were_lost_reach_the_application_once_they_flow(cluster, rocketmq_own):
    """Bob is on node b, Alice and Carol on node a. With the broker killed, Alice's m2 and
    m3 and Carol's n1 (a new conversation) are acked but their pushes to node b are lost.
    Once the broker is back, node b learns of the loss from the gap in node a's batch
    sequence, reads its state again and re-pushes the heads that moved: Bob's application
    gets every acked message, once, without a reconnect."""
    nodes, _ = cluster
    a, b, _c = nodes
    alice, carol, bob = App(a.url), App(a.url), App(b.url)
    drain = None
    try:
        for client in (alice, carol, bob):
            await client.connect()
            await new_user(client)
        drain = asyncio.ensure_future(bob.drain())
        first = await alice.send(bob.user_id, "m1")
        await _until(lambda: [m.seq for m in bob.got] == [first.seq], 20, "m1 pushed across")

        await asyncio.to_thread(rocketmq_own.stop_broker, True)
        try:
            acked = [await alice.send(bob.user_id, "m2"), await alice.send(bob.user_id, "m3"),
                     await carol.send(bob.user_id, "n1")]
            await asyncio.sleep(4)  # node a's sends to the dead broker fail (its send timeout is 3 s)
        finally:
            await asyncio.to_thread(rocketmq_own.start_broker)
        assert len(bob.got) == 1, "nothing should have crossed while the broker was down"

        # pushes flow again: probes from alice until one comes to bob as a push
        n = 0

        def probed() -> bool:
            return any(m.content.startswith("probe") for m in bob.got)

        deadline = time.monotonic() + 60
        while not probed() and time.monotonic() < deadline:
            n += 1
            await alice.send(bob.user_id, f"probe {n}")
            await asyncio.sleep(0.5)
        assert probed(), "pushes did not flow again within 60 s of the broker's restart"
        healed = time.monotonic()

        want = {(ack.conv, ack.seq) for ack in acked}
        await _until(lambda: want <= {(m.conv, m.seq) for m in bob.got}, 10,
                     "the messages acked during the outage handed to the application")
        got = [(m.conv, m.seq) for m in bob.got]
        assert len(got) == len(set(got))  # each once
        assert {m.content for m in bob.got} >= {"m1", "m2", "m3", "n1"}
        print(f"\nlost pushes: {len(acked)} acked during the outage, at the application "
              f"{time.monotonic() - healed:.1f} s after pushes flowed again")
    finally:
        if drain is not None:
            drain.cancel()
        for client in (alice, carol, bob):
            await client.close()
