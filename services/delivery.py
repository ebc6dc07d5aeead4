"""Where an encoded frame goes: to users (their sessions on this node, and one publish per
other node they are connected to) or to a conversation (this node's local members through
the routing table, and one publish per other node subscribed to it, which expands it
there). The frame is the same bytes object for every receiver.

``IM_TRACE_FANOUT=1`` (read at startup; off by default and then free: the plain
``to_conv`` runs) times every conversation push inside the node and logs it as one JSON
line on stderr ("fanout trace"): from the call of ``to_conv`` (made in the commit's
callback), to the frame queued on every local peer, to the end of the Outbox flush that
hands it to their sockets; and every garbage collection over 5 ms ("gc trace"), a pause
of the loop that lands in those times. For benchmarks (bench/group_fanout.py)."""
from __future__ import annotations

import asyncio
import collections
import gc
import logging
import os
import time
from typing import Any, Awaitable, Callable, Coroutine, Iterable

from ..backends.protocols import Bus, ConvId, Envelope, NodeId, Routes, UserId
from ..core_ext.fanout import RoutingTable
from ..ops.metrics import SIZE_BUCKETS, Histogram

__all__ = ["Delivery"]

log = logging.getLogger("edgeim.delivery")

# (frame, users, conv, skip_user, skip_terminal, reply, refresh): a push to users (conv "")
# or to a conversation; when ``reply`` is set, a reply to hand to it in turn; when
# ``refresh`` is set, state keys the other nodes holding them must reload
_Item = tuple[bytes, tuple[UserId, ...], str, UserId, str, "Callable[[bytes], object] | None", tuple[str, ...]]
#: the op bytes (header offset 1) of MSG_PUSH and RECALL_PUSH frames: another node's new or
#: recalled message, whose head and list entries this node's state takes over
_MESSAGE_OPS = (0x40, 0x46)
#: marks an item's skip_terminal as "only this terminal" (terminal names never hold it)
_ONLY = "="


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
    def __init__(self, node: NodeId, routes: Routes, bus: Bus, table: RoutingTable,
                 spawn: Callable[[Coroutine[Any, Any, Any]], object]) -> None:
        self.node = node
        self._routes = routes
        self._bus = bus
        self._table = table
        self._spawn = spawn
        self._queue: list[_Item] = []
        self._flushing = False
        #: what this node does with another node's news: state keys to reload, a message
        #: committed elsewhere, conversations it no longer takes frames for (set by the node)
        self.on_refresh: Callable[[tuple[str, ...]], object] = lambda keys: None
        self.on_message: Callable[[bytes], object] = lambda frame: None
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
        self.pushed = [0] * 256  # push frames queued on local connections, by op
        self.fanout = Histogram(SIZE_BUCKETS)  # local connections reached by one conversation push
        if os.environ.get("IM_TRACE_FANOUT") == "1":
            self.to_conv = self._to_conv_traced  # type: ignore[method-assign]
            gc.callbacks.append(_trace_gc)

    # -- pushes ---------------------------------------------------------------------------------

    def to_users(self, frame: bytes, users: Iterable[UserId], skip_user: UserId = UserId(0), skip_terminal: str = "") -> None:
        """Deliver ``frame`` to every live session of ``users`` except (skip_user,
        skip_terminal). Returns at once: what is pushed in one loop iteration is routed
        with one routes lookup, and frames go out in the order they were pushed. At most
        once: a receiver that misses a frame catches up with SYNC."""
        self._enqueue((frame, tuple(users), "", skip_user, skip_terminal, None, ()))

    def to_conv(self, frame: bytes, conv: ConvId, skip_user: UserId = UserId(0), skip_terminal: str = "",
                skip_users: Iterable[UserId] = ()) -> None:
        """Deliver ``frame`` to every live session of every member of ``conv`` (a group's
        conversation) except (skip_user, skip_terminal) and ``skip_users`` (members who
        get it by name, through ``to_users``: those who just came or went, whom the other
        nodes may not count as members yet or any more): once per node, by conversation id."""
        self._enqueue((frame, tuple(skip_users), conv, skip_user, skip_terminal, None, ()))

    def _to_conv_traced(self, frame: bytes, conv: ConvId, skip_user: UserId = UserId(0), skip_terminal: str = "",
                        skip_users: Iterable[UserId] = ()) -> None:
        """``to_conv``, timed: a marker queued right behind the push notes when the push has
        been appended to every local peer's queue, then a ``call_soon`` from there runs
        after the Outbox flush that writes it (that flush was scheduled, with call_soon,
        by the first peer queued, so it comes first in the ready queue)."""
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        self._enqueue((frame, tuple(skip_users), conv, skip_user, skip_terminal, None, ()))

        def queued(_: object) -> None:
            loop.call_soon(flushed, time.perf_counter())

        def flushed(queued_at: float) -> None:
            done = time.perf_counter()
            log.info("fanout trace", extra={
                "conv": conv, "members": self._table.members(conv), "frame_bytes": len(frame),
                "queued_us": round((queued_at - started) * 1e6, 1),
                "flushed_us": round((done - started) * 1e6, 1),
            })

        self._enqueue((b"", (), "", UserId(0), "", queued, ()))

    def to_terminal(self, frame: bytes, user: UserId, terminal: str) -> None:
        """Deliver ``frame`` to the one session of (user, terminal), on whichever node it is,
        in order with the other pushes (a call's signaling goes to one device). At most once."""
        self._enqueue((frame, (user,), "", UserId(0), _ONLY + terminal, None, ()))

    def then(self, send: Callable[[bytes], object], frame: bytes) -> None:
        """Call ``send(frame)`` once the pushes queued before it are handed over: a reply
        that must not overtake them (a SEND_ACK) goes through here."""
        self._enqueue((frame, (), "", UserId(0), "", send, ()))

    def refresh(self, users: Iterable[UserId] = (), groups: Iterable[int] = ()) -> None:
        """This node changed these users' or groups' state in the store: the other nodes
        that hold them (where the users are online, where the groups have members online)
        reload them. In order with the pushes queued before and after it."""
        keys = tuple(f"u:{u}" for u in users) + tuple(f"g:{g}" for g in groups)
        convs = ",".join(f"g{g}" for g in groups)
        self._enqueue((b"", tuple(users), convs, UserId(0), "", None, keys))

    def _enqueue(self, item: _Item) -> None:
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
        nodes_of_user: dict[UserId, set[NodeId]] = {}
        nodes_of_conv: dict[str, list[NodeId]] = {}
        try:
            users = {u for item in batch for u in item[1]}
            if users:
                self.route_lookups += 1
                for route in await self._routes.lookup(list(users)):
                    if route.node != self.node:
                        nodes_of_user.setdefault(route.user_id, set()).add(route.node)
            for conv in {c for item in batch if item[2] for c in item[2].split(",")}:
                nodes_of_conv[conv] = [n for n in await self._routes.nodes_of(ConvId(conv)) if n != self.node]
        except Exception:  # other nodes get nothing this time (receivers will sync); local ones do
            self.route_failures += 1
            log.exception("routes lookup failed", extra={"frames": len(batch)})
        table = self._table
        for frame, users, conv, skip_user, skip_terminal, reply, refresh in batch:
            if reply is not None:
                reply(frame)
                continue
            if refresh:
                nodes = {n for u in users for n in nodes_of_user.get(u, ())}
                nodes.update(n for c in conv.split(",") if c for n in nodes_of_conv.get(c, ()))
                for node in nodes:
                    await self._publish(node, Envelope(b"", refresh=refresh))
                continue
            if conv:  # ``users`` are the members skipped here (they get it by name)
                channel = self.channels.get(conv[0])
                if channel is not None:
                    channel(frame, conv)
                else:
                    reached = table.to_conv(frame, conv, skip_user, skip_terminal, set(users) if users else None)
                    self.fanout.observe(reached)
                    self.pushed[frame[1]] += reached
                for node in nodes_of_conv.get(conv, ()):
                    await self._publish(node, Envelope(frame, users, conv=ConvId(conv), skip_user=skip_user,
                                                       skip_terminal=skip_terminal))
                continue
            if skip_terminal[:1] == _ONLY:  # to one terminal: here, or on the nodes of the user
                only = skip_terminal[1:]
                self._to_terminal(frame, users[0], only)
                for node in nodes_of_user.get(users[0], ()):
                    await self._publish(node, Envelope(frame, users, only_terminal=only))
                continue
            self.pushed[frame[1]] += table.to_users(frame, users, skip_user, skip_terminal)
            by_node: dict[NodeId, list[UserId]] = {}
            for user in users:
                for node in nodes_of_user.get(user, ()):
                    by_node.setdefault(node, []).append(user)
            for node, targets in by_node.items():
                await self._publish(node, Envelope(frame, tuple(targets), skip_user=skip_user, skip_terminal=skip_terminal))

    async def _publish(self, node: NodeId, envelope: Envelope) -> None:
        self.published += 1
        try:
            await self._bus.publish(node, envelope)
        except Exception:  # that node misses this frame (it will sync); the rest go on
            self.publish_failures += 1
            log.exception("publish failed", extra={"node": node})

    def deliver(self, envelope: Envelope) -> int:
        """An envelope from another node (the bus callback): give it to the local sessions.
        A conversation's frame waits while reloads are under way (see ``reloading``)."""
        self.consumed += 1
        if envelope.refresh:
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
        if len(envelope.frame) > 1 and envelope.frame[1] in _MESSAGE_OPS:
            self.on_message(envelope.frame)
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
