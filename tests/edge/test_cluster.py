"""Three ``im serve`` nodes on the cluster backends (MariaDB or TiDB, Redis, RocketMQ, started by
tests/servers.py) behave like one big node: messages, pushes, group membership, friends
and forced logouts cross nodes."""
from __future__ import annotations

import asyncio
import uuid

import pytest
from harness import ServeProcess, new_user, next_event
from servers import s3_server  # noqa: F401  (session fixture: a real S3 server)

from edgeim.core_ext import content
from edgeim.core_ext.protocol import ErrorCode, Op
from edgeim.sdk import Client, ServerError


@pytest.fixture
def nodes(tmp_path, mysql_server, redis_server, rocketmq_server):
    database = mysql_server.new_database()
    shared = dict(
        store=mysql_server.url(database),
        routes=f"{redis_server.url}?prefix={redis_server.new_prefix()}",
        bus=f"rocketmq://{rocketmq_server.namesrv}",
        token_secret="cluster-secret-" + uuid.uuid4().hex,
    )
    run = uuid.uuid4().hex[:8]
    started = []
    try:
        for name in "abc":
            node = ServeProcess(tmp_path / name, node_id=f"{run}-{name}", **shared)
            node.start()
            started.append(node)
        yield started
    finally:
        for node in started:
            if node.alive:
                node.stop()
        mysql_server.drop_database(database)


async def eventually(request, code: int, timeout: float = 10.0) -> bool:
    """Repeat ``request()`` until it is refused with ``code`` (a change made on another
    node reaches this one through the bus); False if it never is within ``timeout``."""
    async def attempts() -> bool:
        while True:
            try:
                await request()
            except ServerError as err:
                if err.code == code:
                    return True
                raise
            await asyncio.sleep(0.05)
    try:
        return await asyncio.wait_for(attempts(), timeout)
    except asyncio.TimeoutError:
        return False


@pytest.fixture
async def connect():
    made: list[Client] = []

    async def make(node: ServeProcess) -> Client:
        client = Client(node.url)
        await client.connect()
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()


async def test_a_message_reaches_every_device_on_every_node(nodes, connect):
    a, b, c = nodes
    alice, bob_phone, bob_web = await connect(a), await connect(b), await connect(c)
    _, alice_id = await new_user(alice)
    bob_name, bob_id = await new_user(bob_phone, "ios")
    await bob_web.login(bob_name, "secret-pw", "web")

    ack = await alice.send(bob_id, "across")
    pushed = [await asyncio.wait_for(x.pushes.get(), 20) for x in (bob_phone, bob_web)]
    assert [(p.id, p.seq, p.content) for p in pushed] == [(ack.msg_id, ack.seq, "across")] * 2
    # the list on bob's other node has the message that was committed on alice's
    (entry,) = await bob_web.conversations()
    assert (entry.last_text, entry.last_from, entry.unread) == ("across", alice_id, 1)
    # and the reply goes the other way, in the same conversation
    back = await bob_web.send(alice_id, "back")
    assert back.conv == ack.conv and back.seq == ack.seq + 1
    assert (await asyncio.wait_for(alice.pushes.get(), 20)).content == "back"


async def test_group_messages_and_membership_cross_nodes(nodes, connect):
    a, b, c = nodes
    owner, member_b, member_c = await connect(a), await connect(b), await connect(c)
    for client in (owner, member_b, member_c):
        await new_user(client)
    info = await owner.group_create("everywhere", [member_b.user_id, member_c.user_id])
    for member in (member_b, member_c):
        await next_event(member, Op.GROUP_PUSH, 20)  # "created" reached their nodes
    first = await owner.send_group(info.group, "hello all")
    for member in (member_b, member_c):
        assert (await asyncio.wait_for(member.pushes.get(), 20)).id == first.msg_id

    await owner.group_kick(info.group, member_c.user_id)
    kicked = await next_event(member_c, Op.GROUP_PUSH, 20)
    assert (kicked.event, kicked.users) == ("kicked", [member_c.user_id])
    second = await owner.send_group(info.group, "not for c")
    assert (await asyncio.wait_for(member_b.pushes.get(), 20)).id == second.msg_id
    await member_c.ping()  # a round trip: nothing else was queued for c
    assert member_c.pushes.empty()
    with pytest.raises(ServerError) as err:  # its node knows: no more reading, no more sending
        await member_c.sync(first.conv)
    assert err.value.code == ErrorCode.FORBIDDEN
    assert await member_c.groups() == []


async def test_friends_and_blocks_cross_nodes(serve_factory, nodes, connect):
    a, b, _ = nodes
    for node in (a, b):  # the product default: only friends message each other
        node.stop()
        node.env["IM_STRANGERS_MAY_SEND"] = "0"
        node.start()
    alice, bob = await connect(a), await connect(b)
    _, alice_id = await new_user(alice)
    _, bob_id = await new_user(bob)
    with pytest.raises(ServerError) as err:
        await alice.send(bob_id, "hi?")
    assert err.value.code == ErrorCode.NOT_FRIENDS
    await alice.friend_request(bob_id, "it's alice")
    assert (await next_event(bob, Op.FRIEND_PUSH, 20)).event == "request"
    await bob.friend_accept(alice_id)
    assert (await next_event(alice, Op.FRIEND_PUSH, 20)).event == "accepted"
    await alice.send(bob_id, "friends now")  # alice's node heard of the friendship made on bob's
    await bob.block(alice_id)
    # alice's node hears of the block through the bus: it holds from then on
    assert await eventually(lambda: alice.send(bob_id, "still?"), ErrorCode.BLOCKED)
    with pytest.raises(ServerError) as err:
        await alice.send(bob_id, "and now?")
    assert err.value.code == ErrorCode.BLOCKED


async def test_a_login_on_another_node_kicks_the_same_terminal(nodes, connect):
    a, b, _ = nodes
    first = await connect(a)
    name, _ = await new_user(first, "ios")
    second = await connect(b)
    await second.login(name, "secret-pw", "ios")
    assert await asyncio.wait_for(first.wait_closed(), 20) == 4001
    await second.ping()


# -- rich messaging across nodes: presence and calls -------------------------------------------

def _presence(p) -> tuple[int, bool, list[str]]:
    return p.user, p.online, [t.terminal for t in p.terminals]


async def pushed_presence(client: Client, expected: tuple[int, bool, list[str]], timeout: float = 20) -> bool:
    """Wait for a PRESENCE_PUSH saying ``expected`` (two nodes of a user may each push a
    change, so one may repeat a state: earlier pushes are skipped); False if none comes."""
    async def wait() -> bool:
        while _presence(await next_event(client, Op.PRESENCE_PUSH, timeout)) != expected:
            pass
        return True
    try:
        return await asyncio.wait_for(wait(), timeout)
    except asyncio.TimeoutError:
        return False


async def test_presence_crosses_nodes(nodes, connect):
    a, b, c = nodes
    alice, bob_web = await connect(a), await connect(b)
    await new_user(alice)
    bob_name, bob_id = await new_user(bob_web, "web")
    # alice on node a watches bob, whose sessions are on b and then c as well
    assert [_presence(p) for p in await alice.presence_subscribe([bob_id])] == [(bob_id, True, ["web"])]
    bob_ios = await connect(c)
    await bob_ios.login(bob_name, "secret-pw", "ios")
    assert await pushed_presence(alice, (bob_id, True, ["ios", "web"]))

    await bob_web.close()  # gone from b, still on c
    assert await pushed_presence(alice, (bob_id, True, ["ios"]))
    assert (await bob_ios.settings(invisible=True)).invisible is True
    assert await pushed_presence(alice, (bob_id, False, []))
    # a query on any node agrees; bob himself still sees his terminal
    carol = await connect(b)
    await new_user(carol)
    assert [_presence(p) for p in await carol.presence([bob_id])] == [(bob_id, False, [])]
    assert [_presence(p) for p in await bob_ios.presence([bob_id])] == [(bob_id, True, ["ios"])]


async def test_a_call_crosses_nodes(nodes, connect):
    a, b, c = nodes
    alice, bob_ios, bob_web = await connect(a), await connect(b), await connect(c)
    _, alice_id = await new_user(alice)
    bob_name, bob_id = await new_user(bob_ios, "ios")
    await bob_web.login(bob_name, "secret-pw", "web")

    started = await alice.call_invite(bob_id, "video", "v=0 offer")
    for device in (bob_ios, bob_web):  # every device rings, on both nodes
        ring = await next_event(device, Op.CALL_PUSH, 20)
        assert (ring.event, ring.call, ring.sdp) == ("ring", started.call, "v=0 offer")
    await bob_web.call_accept(started.call, "v=0 answer")  # on node c
    accepted = await next_event(alice, Op.CALL_PUSH, 20)
    assert (accepted.event, accepted.sdp, accepted.terminal) == ("accepted", "v=0 answer", "web")
    assert (await next_event(bob_ios, Op.CALL_PUSH, 20)).event == "answered_elsewhere"
    with pytest.raises(ServerError) as err:  # the state is shared: node b knows it was answered
        await bob_ios.call_accept(started.call, "v=0 late")
    assert err.value.code == ErrorCode.CONFLICT

    await alice.call_ice(started.call, "candidate:a")
    await bob_web.call_ice(started.call, "candidate:b")
    assert (await next_event(bob_web, Op.CALL_PUSH, 20)).candidate == "candidate:a"
    assert (await next_event(alice, Op.CALL_PUSH, 20)).candidate == "candidate:b"
    await alice.call_hangup(started.call)
    assert (await next_event(bob_web, Op.CALL_PUSH, 20)).event == "hangup"
    for device in (alice, bob_ios, bob_web):  # the call record reaches every device
        record = await asyncio.wait_for(device.pushes.get(), 20)
        assert (record.type, record.sender, record.content["status"]) == (8, alice_id, "answered")
    await bob_ios.ping()
    assert bob_ios.events.empty()  # no candidate reached the device not in the call


async def test_a_group_invitation_crosses_nodes(nodes, connect):
    a, b, c = nodes
    owner, invitee_b, invitee_c = await connect(a), await connect(b), await connect(c)
    await new_user(owner)
    invitee_name, invitee_id = await new_user(invitee_b)
    await invitee_c.login(invitee_name, "secret-pw", "ios")  # a second device, on a third node
    # the invitee's choice, made on b, is what a (which never loaded the invitee) applies
    assert (await invitee_b.settings(group_add="friends")).group_add == "friends"

    created = await owner.group_create("across", [invitee_id])

    assert (created.added, created.invited) == ([], [invitee_id])
    assert (await next_event(owner, Op.GROUP_PUSH, 20)).event == "created"
    for device in (invitee_b, invitee_c):
        event = await next_event(device, Op.GROUP_PUSH, 20)
        assert (event.event, event.group, event.actor) == ("invited", created.group, owner.user_id)
    # the invitee's nodes read the invitation back before the push: both list it
    for device in (invitee_b, invitee_c):
        assert [(i.group, i.inviter) for i in await device.group_invitations()] == [(created.group, owner.user_id)]

    info = await invitee_c.group_invitation_accept(created.group)

    assert (info.role, info.members) == ("member", 2)
    joined = await next_event(owner, Op.GROUP_PUSH, 20)
    assert (joined.event, joined.actor, joined.users) == ("joined", owner.user_id, [invitee_id])
    # node b learns of the acceptance made on c over the bus: its list empties within the wait
    async def invitations_gone() -> None:
        while await invitee_b.group_invitations():
            await asyncio.sleep(0.05)
    await asyncio.wait_for(invitations_gone(), 20)
    sent = await owner.send_group(created.group, "welcome")
    for device in (invitee_b, invitee_c):
        assert (await asyncio.wait_for(device.pushes.get(), 20)).id == sent.msg_id


# -- reactions and forwards across nodes ----------------------------------------------------

async def reaction_pushes(client: Client) -> list:
    """The REACTION_PUSHes waiting for ``client`` (a PING round trip first)."""
    await client.ping()
    found = []
    while not client.events.empty():
        kind, body = client.events.get_nowait()
        if kind == Op.REACTION_PUSH:
            found.append(body)
    return found


async def test_reactions_reach_every_device_once_across_nodes(nodes, connect):
    a, b, c = nodes
    owner, member_b, member_c, member_c_too = await connect(a), await connect(b), await connect(c), await connect(a)
    await new_user(owner)
    await new_user(member_b)
    name_c, _ = await new_user(member_c, "ios")
    await member_c_too.login(name_c, "secret-pw", "desktop")
    info = await owner.group_create("reacting", [member_b.user_id, member_c.user_id])
    for member in (member_b, member_c):
        await next_event(member, Op.GROUP_PUSH, 20)
    conv = f"g{info.group}"
    said = await owner.send_group(info.group, "vote with emoji")
    for member in (member_b, member_c, member_c_too):
        assert (await asyncio.wait_for(member.pushes.get(), 20)).id == said.msg_id

    event = await member_b.react(conv, said.seq, "\U0001f44d")
    for device in (owner, member_c, member_c_too):
        assert await next_event(device, Op.REACTION_PUSH, 20) == event
    for device in (owner, member_c, member_c_too, member_b):
        assert await reaction_pushes(device) == []  # once each, none to the reacting device
    # the page on another node shows it
    page = await member_c.history(conv)
    assert [(r.seq, [(x.emoji, x.count, x.users) for x in r.reactions]) for r in page.reactions] == [
        (said.seq, [("\U0001f44d", 1, [member_b.user_id])])]

    # 1:1, both users' devices on other nodes than the reacting one
    dm = await owner.send(member_c.user_id, "and you?")
    for device in (member_c, member_c_too):
        await asyncio.wait_for(device.pushes.get(), 20)
    back = await member_c.react(dm.conv, dm.seq, "\u2764\ufe0f")
    assert await next_event(owner, Op.REACTION_PUSH, 20) == back
    assert await next_event(member_c_too, Op.REACTION_PUSH, 20) == back


async def test_reactions_made_while_away_come_with_sync_on_another_node(nodes, connect):
    a, b, c = nodes
    alice, bob = await connect(a), await connect(b)
    alice_name, alice_id = await new_user(alice)
    _, bob_id = await new_user(bob)
    acks = [await alice.send(bob_id, f"m{i}") for i in range(3)]
    seen = await bob.react(acks[0].conv, acks[0].seq, "\U0001f44d")
    await alice.close()
    later = await bob.react(acks[1].conv, acks[1].seq, "\U0001f525")

    back = await connect(c)
    await back.login(alice_name, "secret-pw", "web")
    page = await back.sync(acks[0].conv, acks[-1].seq, changes_after=seen.rev)
    assert [m.seq for m in page.changed] == [acks[1].seq] and page.rev == later.rev
    assert [(r.seq, r.reactions[0].emoji) for r in page.reactions] == [(acks[1].seq, "\U0001f525")]


async def test_a_forward_crosses_nodes_and_its_file_downloads_there(s3_server, tmp_path, mysql_server, redis_server,
                                                                    rocketmq_server, connect):
    """Files on the S3 server (SeaweedFS): the copy's readers, on another node than the
    forwarder's, get a download grant for the original key."""
    database = mysql_server.new_database()
    shared = dict(store=mysql_server.url(database), routes=f"{redis_server.url}?prefix={redis_server.new_prefix()}",
                  bus=f"rocketmq://{rocketmq_server.namesrv}", token_secret="cluster-secret-" + uuid.uuid4().hex,
                  files=s3_server.url(s3_server.new_bucket()))
    run = uuid.uuid4().hex[:8]
    a = ServeProcess(tmp_path / "fa", node_id=f"{run}-a", **shared)
    b = ServeProcess(tmp_path / "fb", node_id=f"{run}-b", **shared)
    try:
        a.start()
        b.start()
        alice, bob, carol = await connect(a), await connect(a), await connect(b)
        _, alice_id = await new_user(alice)
        _, bob_id = await new_user(bob)
        _, carol_id = await new_user(carol)
        source = f"p{min(alice_id, bob_id)}_{max(alice_id, bob_id)}"
        key = await alice.upload(source, b"across the cluster", "text/plain", name="note.txt")
        ack = await alice.send_typed(bob_id, content.File(key=key, name="note.txt", size=18, mime="text/plain"))
        await asyncio.wait_for(bob.pushes.get(), 20)
        with pytest.raises(ServerError) as err:
            await carol.file_download_grant(key)
        assert err.value.code == ErrorCode.FORBIDDEN

        copies = await bob.forward(carol_id, source, [ack.seq])
        pushed = await asyncio.wait_for(carol.pushes.get(), 20)
        assert (pushed.id, pushed.forwarded_from, pushed.content["key"]) == (copies[0].msg_id, alice_id, key)
        assert await carol.download(key) == b"across the cluster"
    finally:
        for node in (a, b):
            if node.alive:
                node.stop()
        mysql_server.drop_database(database)
async def listed(client: Client, conv: str, check, timeout: float = 10.0):
    """The list entry of ``conv`` once ``check(entry)`` holds (the list of a node answers
    from memory, a bus hop behind another node's change); fails if it never does."""
    async def attempts():
        while True:
            found = [c for c in await client.conversations() if c.conv == conv]
            if found and check(found[0]):
                return found[0]
            await asyncio.sleep(0.05)
    return await asyncio.wait_for(attempts(), timeout)


async def test_views_and_message_pins_cross_nodes(nodes, connect):
    a, b, c = nodes
    alice = await connect(a)
    await new_user(alice)
    bob_name, bob_id = await new_user(await connect(a))
    carol_name, carol_id = await new_user(await connect(a))
    info = await alice.group_create("views", [bob_id, carol_id])
    conv = f"g{info.group}"
    for n in (1, 2, 3):
        await alice.send_group(info.group, f"v{n}")
    # the devices log in after: their nodes hold the group (lists name loaded groups only)
    bob_web, bob_ios, carol = await connect(b), await connect(c), await connect(c)
    await bob_web.login(bob_name, "secret-pw", "web")
    await bob_ios.login(bob_name, "secret-pw", "ios")
    await carol.login(carol_name, "secret-pw", "web")

    # delete for me on node b: bob's device on node c is told, and its node's list follows
    await bob_web.delete_for_me(conv, [3])
    pushed = await next_event(bob_ios, Op.VIEW_PUSH, 20)
    assert (pushed.event, pushed.seqs) == ("deleted", [3])
    entry = await listed(bob_ios, conv, lambda e: e.view_ver == 1)
    assert (entry.last_text, entry.unread) == ("v2", 2)
    assert [m.hidden for m in (await bob_ios.history(conv)).msgs] == [False, False, True]
    assert [m.hidden for m in (await carol.history(conv)).msgs] == [False, False, False]

    # clear history on node c: bob's device on node b is told, and its node's list follows
    await bob_ios.clear_history(conv)
    assert (await next_event(bob_web, Op.VIEW_PUSH, 20)).cleared_seq == 3
    entry = await listed(bob_web, conv, lambda e: e.cleared_seq == 3)
    assert (entry.unread, entry.last_text) == (0, "")
    assert (await bob_web.sync(conv)).msgs == []
    assert (await listed(carol, conv, lambda e: e.last_seq == 3)).unread == 3  # carol keeps hers

    # a message pin on node a reaches every other member device, on every node, once
    await alice.pin_message(conv, 2)
    for device in (bob_web, bob_ios, carol):
        pin = await next_event(device, Op.PIN_PUSH, 20)
        assert (pin.event, pin.seq, pin.by) == ("pinned", 2, alice.user_id)
    assert [p.message.content for p in (await carol.pins(conv)).pins] == ["v2"]
    await alice.recall(conv, 2)  # the recall drops the pin, and says so
    for device in (bob_web, bob_ios, carol):
        assert (await next_event(device, Op.PIN_PUSH, 20)).event == "unpinned"
        await device.ping()  # a round trip: no second PIN_PUSH was queued (once each)
        kinds = [device.events.get_nowait()[0] for _ in range(device.events.qsize())]
        assert Op.PIN_PUSH not in kinds
    assert (await bob_ios.pins(conv)).pins == []

    # 1:1: either user pins, across nodes; a device that was away reads it all on reconnect
    await carol.send(alice.user_id, "private")
    private = (await alice.sync(f"p{min(alice.user_id, carol.user_id)}_{max(alice.user_id, carol.user_id)}"))
    await carol.pin_message(private.conv, 1)
    assert (await next_event(alice, Op.PIN_PUSH, 20)).conv == private.conv
    later = await connect(a)
    await later.login(bob_name, "secret-pw", "desktop")
    entry = await listed(later, conv, lambda e: True)
    assert (entry.cleared_seq, entry.view_ver) == (3, 2)
    assert (await later.history(conv)).msgs == []


async def test_a_group_joined_through_another_node_is_in_the_list_at_once(nodes, connect):
    """Dave, on node b, is added to a group by its owner on node a: the list his node
    answers from memory has the group before any new message, as on one node."""
    a, b, _c = nodes
    owner, dave = await connect(a), await connect(b)
    for client in (owner, dave):
        await new_user(client)
    info = await owner.group_create("later", [])
    await owner.send_group(info.group, "before dave")
    await owner.group_invite(info.group, [dave.user_id])
    assert (await next_event(dave, Op.GROUP_PUSH, 20)).event == "joined"
    [entry] = await dave.conversations()
    assert (entry.conv, entry.kind, entry.unread, entry.last_seq) == (f"g{info.group}", "group", 0, 1)
    assert [g.group for g in await dave.groups()] == [info.group]
