"""Where an encoded frame goes: to users (their sessions on this node, and one publish per
other node they are connected to) or to a conversation (this node's local members through
the routing table, and one publish per other node subscribed to it, which expands it
there). The frame is the same bytes object for every receiver.

Local sessions get a frame at once, inside the call (the routing table appends it to
their queues; the Outbox writes them at the end of the loop iteration), so a reply sent
after a push never overtakes it and nothing local waits on a backend. What must cross to
other nodes is queued as typed items (``Push``, ``Refresh``) and routed behind, in call
order, by one task: one routes lookup per batch, with a deadline, and one publish per node.

``IM_TRACE_FANOUT=1`` (read at startup; off by default and then free) times every
conversation push inside the node and logs it as one JSON line on stderr ("fanout
trace"): from the call of ``to_conv`` to the frame queued on every local peer, to the end
of the Outbox flush that hands it to their sockets; and every garbage collection over 5 ms
("gc trace"), a pause of the loop that lands in those times. For benchmarks
(bench/group_fanout.py)."""
from __future__ import annotations

import asyncio
import collections
import gc
import logging
import os
import time
from typing import Any, Awaitable, Callable, Coroutine, Iterable

import msgspec

from ..backends.protocols import Bus, ConvId, Envelope, GroupId, NodeId, Refresh, Routes, StoredMessage, UserId
from ..core_ext.fanout import RoutingTable
from ..ops.metrics import SIZE_BUCKETS, Histogram

__all__ = ["Delivery", "Push", "ROUTES_DEADLINE"]

log = logging.getLogger("edgeim.delivery")

#: seconds the routes may take to say where a batch's receivers are; past it, other nodes
#: miss that batch (their clients recover by sync) and the next batch goes on
ROUTES_DEADLINE = 2.0


class Push(msgspec.Struct, gc=False):
    """A frame for other nodes: to ``users`` (skipping one session), or, with ``conv``, to
    that conversation's members there but ``users``; with ``only_terminal``, to that one
    session of ``users[0]``. ``message`` is the stored message the frame carries, if it
    carries one: the receiving node's heads and lists take it from there."""

    frame: bytes
    users: tuple[UserId, ...] = ()
    conv: str = ""
    skip_user: UserId = UserId(0)
    skip_terminal: str = ""
    only_terminal: str = ""
    message: StoredMessage | None = None


_Item = Push | Refresh
_gc_started = 0.0


async def _nothing() -> None:
    return None


def _trace_gc(phase: str, info: dict[str, int]) -> None:
    """With IM_TRACE_FANOUT=1: log every garbage collection that takes over 5 ms (a pause
    of the event loop that lands in the fanout times)."""
    global _gc_started
    if phase == "start":
        _gc_started = time.perf_counter()
    else:
        took = time.perf_counter() - _gc_started
        if took > 0.005:
            log.info("gc trace", extra={"generation": info.get("generation"), "collected": info.get("collected"),
                                        "ms": round(took * 1e3, 1)})


class Delivery:
    """``alone``: no other node can exist (embedded routes and bus): nothing is routed
    beyond this node."""

    def __init__(self, node: NodeId, routes: Routes, bus: Bus, table: RoutingTable,
                 spawn: Callable[[Coroutine[Any, Any, Any]], object], alone: bool = False) -> None:
        self.node = node
        self._routes = routes
        self._bus = bus
        self._table = table
        self._spawn = spawn
        self._alone = alone
        self._queue: list[_Item] = []
        self._flushing = False
        # what this node failed to hand to other nodes: they are told (``Envelope.lost``)
        # before the next envelope that reaches them, or all of them when the routes failed
        self._lost_nodes: set[NodeId] = set()
        self._routes_failed = False
        #: what this node does with another node's news: state to reload, a message
        #: committed or recalled elsewhere, envelopes lost on the way, conversations it no
        #: longer takes frames for (set by the node)
        self.on_refresh: Callable[[Refresh], object] = lambda refresh: None
        self.on_message: Callable[[StoredMessage], object] = lambda message: None
        self.on_lost: Callable[[], object] = lambda: None
        self.on_unsubscribed: Callable[[list[ConvId]], object] = lambda convs: None
        #: True while this node reloads state another node changed, and what waits for those
        #: reloads (set by the node): a member removed on another node leaves this node's
        #: table only when the reload ends, so a conversation's frames wait until then, in order
        self.reloading: Callable[[], bool] = lambda: False
        self.settled: Callable[[], Awaitable[None]] = _nothing
        self._held: collections.deque[Envelope] = collections.deque()
        #: channels: conversation-like ids whose first character is a key here are expanded
        #: by that callable, not the routing table (presence watches: "w<user id>"); they
        #: cross nodes as conversations do (Routes.subscribe, one publish per node)
        self.channels: dict[str, Callable[[bytes, str], int]] = {}
        #: metrics (ops/metrics.py), counted per batch or per envelope, never per receiver
        self.route_lookups = 0
        self.route_failures = 0
        self.published = 0
        self.publish_failures = 0
        self.consumed = 0
        self.lost_signals = 0  # envelopes that said others were lost on the way here
        self.pushed = [0] * 256  # push frames queued on local connections, by op
        self.fanout = Histogram(SIZE_BUCKETS)  # local connections reached by one conversation push
        if os.environ.get("IM_TRACE_FANOUT") == "1":
            self.to_conv = self._to_conv_traced  # type: ignore[method-assign]
            gc.callbacks.append(_trace_gc)

    # -- pushes ---------------------------------------------------------------------------------

    def to_users(self, frame: bytes, users: Iterable[UserId], skip_user: UserId = UserId(0), skip_terminal: str = "",
                 message: StoredMessage | None = None, local: bool = False) -> None:
        """Deliver ``frame`` to every live session of ``users`` except (skip_user,
        skip_terminal): queued on the local ones now, routed to other nodes behind (one
        routes lookup per batch; not with ``local``). At most once: a receiver that misses
        a frame catches up with SYNC. ``message``: the stored message the frame carries
        (see ``Push``)."""
        users = tuple(users)
        self.pushed[frame[1]] += self._table.to_users(frame, users, skip_user, skip_terminal)
        if not self._alone and not local:
            self._later(Push(frame, users, skip_user=skip_user, skip_terminal=skip_terminal, message=message))

    def to_conv(self, frame: bytes, conv: ConvId, skip_user: UserId = UserId(0), skip_terminal: str = "",
                skip_users: Iterable[UserId] = (), message: StoredMessage | None = None, local: bool = False) -> None:
        """Deliver ``frame`` to every live session of every member of ``conv`` (a group's
        conversation) except (skip_user, skip_terminal) and ``skip_users`` (members who
        get it by name, through ``to_users``: those who just came or went, whom the other
        nodes may not count as members yet or any more): once per node, by conversation id."""
        skipped = tuple(skip_users)
        channel = self.channels.get(conv[0])
        if channel is not None:
            channel(frame, conv)
        else:
            reached = self._table.to_conv(frame, conv, skip_user, skip_terminal, set(skipped) if skipped else None)
            self.fanout.observe(reached)
            self.pushed[frame[1]] += reached
        if not self._alone and not local:
            self._later(Push(frame, skipped, conv, skip_user, skip_terminal, message=message))

    def _to_conv_traced(self, frame: bytes, conv: ConvId, skip_user: UserId = UserId(0), skip_terminal: str = "",
                        skip_users: Iterable[UserId] = (), message: StoredMessage | None = None,
                        local: bool = False) -> None:
        """``to_conv``, timed: the push is on every local peer's queue when the call
        returns; a ``call_soon`` from there runs after the Outbox flush that writes it
        (that flush was scheduled, with call_soon, by the first peer queued)."""
        started = time.perf_counter()
        Delivery.to_conv(self, frame, conv, skip_user, skip_terminal, skip_users, message, local)
        queued_at = time.perf_counter()

        def flushed() -> None:
            done = time.perf_counter()
            log.info("fanout trace", extra={
                "conv": conv, "members": self._table.members(conv), "frame_bytes": len(frame),
                "queued_us": round((queued_at - started) * 1e6, 1),
                "flushed_us": round((done - started) * 1e6, 1),
            })

        asyncio.get_running_loop().call_soon(flushed)

    def to_terminal(self, frame: bytes, user: UserId, terminal: str) -> None:
        """Deliver ``frame`` to the one session of (user, terminal), on whichever node it is,
        in order with the other pushes (a call's signaling goes to one device). At most once."""
        self._to_terminal(frame, user, terminal)
        if not self._alone:
            self._later(Push(frame, (user,), only_terminal=terminal))

    def refresh(self, users: Iterable[UserId] = (), groups: Iterable[int] = ()) -> None:
        """This node changed these users' or groups' state in the store: the other nodes
        that hold them (where the users are online, where the groups have members online)
        reload them. In order with the pushes queued before and after it."""
        if not self._alone:
            self._later(Refresh(tuple(users), tuple(GroupId(g) for g in groups)))

    def forget_profiles(self, users: Iterable[UserId], erased: bool = False) -> None:
        """These users' profiles changed (or they were deleted) in the store: every other
        node of the registry forgets its cached copy. In order with the pushes queued
        before and after it (so a push announcing the change comes after it)."""
        if not self._alone:
            self._later(Refresh(profiles=tuple(users), erased=erased))

    def _later(self, item: _Item) -> None:
        self._queue.append(item)
        if not self._flushing:
            self._flushing = True
            self._spawn(self._flush())

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    await self._route(batch)
                except Exception:
                    log.exception("push failed", extra={"frames": len(batch)})
        finally:
            self._flushing = False

    async def _route(self, batch: list[_Item]) -> None:
        """Publish a batch to the other nodes, in order: one routes lookup for the batch's
        users, one per conversation, each within ROUTES_DEADLINE."""
        nodes_of_user: dict[UserId, set[NodeId]] = {}
        nodes_of_conv: dict[str, list[NodeId]] = {}
        try:
            async with asyncio.timeout(ROUTES_DEADLINE):
                users = {u for item in batch for u in item.users}
                if users:
                    self.route_lookups += 1
                    for route in await self._routes.lookup(list(users)):
                        if route.node != self.node:
                            nodes_of_user.setdefault(route.user_id, set()).add(route.node)
                convs = {item.conv for item in batch if type(item) is Push and item.conv}
                convs.update(f"g{g}" for item in batch if type(item) is Refresh for g in item.groups)
                for conv in convs:
                    nodes_of_conv[conv] = [n for n in await self._routes.nodes_of(ConvId(conv)) if n != self.node]
                everyone: list[NodeId] = []
                if any(type(item) is Refresh and item.profiles for item in batch):
                    everyone = [info.id for info in await self._routes.nodes() if info.id != self.node]
        except Exception:  # other nodes get nothing this time; they are told once routes work
            self.route_failures += 1
            self._routes_failed = True
            log.exception("routes lookup failed", extra={"frames": len(batch)})
            return
        if self._routes_failed:
            await self._tell_everyone()
        for item in batch:
            if type(item) is Refresh and item.profiles:
                for node in everyone:
                    await self._publish(node, Envelope(b"", refresh=item))
                continue
            if type(item) is Refresh:
                nodes = {n for u in item.users for n in nodes_of_user.get(u, ())}
                nodes.update(n for g in item.groups for n in nodes_of_conv.get(f"g{g}", ()))
                for node in nodes:
                    await self._publish(node, Envelope(b"", refresh=item))
                continue
            if item.conv:  # ``users`` are the members skipped here (they get it by name)
                for node in nodes_of_conv.get(item.conv, ()):
                    await self._publish(node, Envelope(item.frame, item.users, conv=ConvId(item.conv),
                                                       skip_user=item.skip_user, skip_terminal=item.skip_terminal,
                                                       message=item.message))
                continue
            if item.only_terminal:  # to one terminal, on the nodes of the user
                for node in nodes_of_user.get(item.users[0], ()):
                    await self._publish(node, Envelope(item.frame, item.users, only_terminal=item.only_terminal))
                continue
            by_node: dict[NodeId, list[UserId]] = {}
            for user in item.users:
                for node in nodes_of_user.get(user, ()):
                    by_node.setdefault(node, []).append(user)
            for node, targets in by_node.items():
                await self._publish(node, Envelope(item.frame, tuple(targets), skip_user=item.skip_user,
                                                   skip_terminal=item.skip_terminal, message=item.message))

    async def _publish(self, node: NodeId, envelope: Envelope) -> None:
        if node in self._lost_nodes and not envelope.lost:
            await self._publish(node, Envelope(b"", lost=True))
        self.published += 1
        try:
            await self._bus.publish(node, envelope)
        except Exception:  # that node misses this frame: it is told with the next one
            self.publish_failures += 1
            self._lost_nodes.add(node)
            log.exception("publish failed", extra={"node": node})
        else:
            if envelope.lost:
                self._lost_nodes.discard(node)

    async def _tell_everyone(self) -> None:
        """After batches this node could not route: every other node in the registry reads
        again what it holds (it may have missed pushes of those batches)."""
        try:
            nodes = [info.id for info in await asyncio.wait_for(self._routes.nodes(), ROUTES_DEADLINE)]
        except Exception:
            log.exception("the node registry could not be read; other nodes are told later")
            return
        self._routes_failed = False
        for node in nodes:
            if node != self.node:
                await self._publish(node, Envelope(b"", lost=True))

    def deliver(self, envelope: Envelope) -> int:
        """An envelope from another node (the bus callback): give it to the local sessions.
        A conversation's frame waits while reloads are under way (see ``reloading``)."""
        self.consumed += 1
        if envelope.lost:
            self.lost_signals += 1
            self.on_lost()
            return 0
        if envelope.refresh is not None:
            self.on_refresh(envelope.refresh)
            return 0
        if envelope.conv and (self._held or self.reloading()):
            self._held.append(envelope)
            if len(self._held) == 1:
                self._spawn(self._release_held())
            return 0
        return self._deliver_now(envelope)

    async def _release_held(self) -> None:
        while self._held:
            if self.reloading():
                try:
                    await self.settled()
                except Exception:  # a reload that failed: its frames go as things are
                    log.exception("a reload failed while frames waited for it")
                continue
            self._deliver_now(self._held.popleft())

    def _deliver_now(self, envelope: Envelope) -> int:
        if envelope.message is not None:
            self.on_message(envelope.message)
        if envelope.kick_terminal:
            for user_id in envelope.user_ids:
                peer = self._table.get(user_id, envelope.kick_terminal)
                if peer is not None:
                    peer.owner.kick(envelope.frame)
            return 0
        if envelope.only_terminal:
            return self._to_terminal(envelope.frame, envelope.user_ids[0], envelope.only_terminal)
        if envelope.conv and envelope.conv[0] in self.channels:
            return self.channels[envelope.conv[0]](envelope.frame, envelope.conv)
        if envelope.conv:  # its user_ids are members skipped (they get it by name)
            return self._table.to_conv(envelope.frame, envelope.conv, envelope.skip_user, envelope.skip_terminal,
                                       set(envelope.user_ids) if envelope.user_ids else None)
        return self._table.to_users(envelope.frame, envelope.user_ids, envelope.skip_user, envelope.skip_terminal)

    def _to_terminal(self, frame: bytes, user: UserId, terminal: str) -> int:
        peer = self._table.get(user, terminal)
        if peer is None:
            return 0
        peer.send(frame)
        return 1

    async def kick(self, node: NodeId, frame: bytes, user_id: UserId, terminal: str) -> None:
        """Close (user_id, terminal) on ``node`` after giving it ``frame`` (a KICKED push)."""
        envelope = Envelope(frame, (user_id,), kick_terminal=terminal)
        if node == self.node:
            self.deliver(envelope)
        else:
            await self._bus.publish(node, envelope)

    # -- which conversations this node takes frames for ----------------------------------------

    def joined(self, conv: ConvId, user: UserId) -> None:
        """``user`` became a member of ``conv``; if the user is online here, this node now
        takes the conversation's frames for them."""
        if self._table.online(user) and self._table.join(conv, user):
            self._spawn(self._subscribe(True, [conv]))

    async def reach(self, conv: ConvId, users: Iterable[UserId]) -> None:
        """``users`` just became members of ``conv``: the other nodes they are online on
        take its frames from now on. Each of those nodes subscribes itself too, once it has
        reloaded the user, which is a bus hop and a store read later: a message sent in
        between would not be published to it. Best effort: a failure is logged, and the
        node's own subscription follows anyway."""
        try:
            nodes = {route.node for route in await self._routes.lookup(list(users)) if route.node != self.node}
            for node in nodes:
                await self._routes.subscribe(node, [conv])
        except Exception:
            log.exception("subscribing the new members' nodes failed", extra={"conv": conv})

    def left(self, conv: ConvId, user: UserId) -> None:
        if self._table.leave(conv, user):
            self._spawn(self._subscribe(False, [conv]))

    def online(self, user: UserId, convs: Iterable[ConvId]) -> None:
        """The user's first session on this node: take their group conversations' frames."""
        first = [conv for conv in convs if self._table.join(conv, user)]
        if first:
            self._spawn(self._subscribe(True, first))

    def offline(self, user: UserId, convs: Iterable[ConvId]) -> None:
        last = [conv for conv in convs if self._table.leave(conv, user)]
        if last:
            self._spawn(self._subscribe(False, last))

    async def _subscribe(self, on: bool, convs: list[ConvId]) -> None:
        if not on:
            self.on_unsubscribed(convs)
        try:
            if on:
                await self._routes.subscribe(self.node, convs)
            else:
                await self._routes.unsubscribe(self.node, convs)
        except Exception:
            log.exception("conversation subscription failed", extra={"convs": len(convs)})
