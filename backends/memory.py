"""The embedded ``Routes`` and ``Bus``: plain dictionaries in this process.

``MemoryRoutes`` is the route table of a single node (or of several nodes in one process
that share the instance). ``LocalBus`` connects nodes whose buses share a ``LocalBusHub``;
a bus made without a hub has a hub of its own and can only reach itself, which is what a
single ``im serve`` node needs.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Sequence

from ..ops.metrics import LAG_BUCKETS, Histogram
from .consumer import Consumer, OnEnvelope
from .protocols import CallRecord, ConvId, Envelope, NodeId, NodeInfo, Route, UserId

__all__ = ["MemoryRoutes", "LocalBus", "LocalBusHub", "BusClosed"]

logger = logging.getLogger(__name__)


class MemoryRoutes:
    """``Routes`` in a dict: user -> terminal -> (node, expires_at on ``clock``).

    Every call is atomic because it runs on the event loop without awaiting. An expired
    entry is invisible to every call and is removed when next touched, or by a sweep of
    the whole table that runs once the calls since the last sweep outnumber the entries
    it left (so memory stays proportional to the live entries at amortized O(1) per call).
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._by_user: dict[UserId, dict[str, tuple[NodeId, float]]] = {}
        self._size = 0
        self._ops_since_sweep = 0
        self._size_after_sweep = 0
        self._nodes_of: dict[ConvId, set[NodeId]] = {}
        self._numbers: dict[int, tuple[NodeId, float]] = {}  # node number -> (node, expires_at)
        self._hidden: set[UserId] = set()
        self._calls: dict[int, tuple[CallRecord, float]] = {}  # call id -> (record, expires_at)
        self._in_call: dict[UserId, int] = {}  # user -> the call they are in (while it lives)
        self._registry: dict[NodeId, tuple[NodeInfo, float]] = {}  # node -> (record, expires_at)

    async def bind(self, user_id: UserId, terminal: str, node: NodeId, ttl: float) -> Route | None:
        now = self._tick()
        terminals = self._by_user.setdefault(user_id, {})
        old = terminals.get(terminal)
        if old is None:
            self._size += 1
        terminals[terminal] = (node, now + ttl)
        if old is not None and old[1] > now:
            return Route(user_id, terminal, old[0])
        return None

    async def renew(self, user_id: UserId, terminal: str, node: NodeId, ttl: float) -> bool:
        now = self._tick()
        entry = self._live(user_id, terminal, now)
        if entry is None or entry[0] != node:
            return False
        self._by_user[user_id][terminal] = (node, now + ttl)
        return True

    async def unbind(self, user_id: UserId, terminal: str, node: NodeId) -> bool:
        entry = self._live(user_id, terminal, self._tick())
        if entry is None or entry[0] != node:
            return False  # a newer login owns this (user, terminal) now: leave it
        self._remove(user_id, terminal)
        return True

    async def lookup(self, user_ids: Sequence[UserId]) -> list[Route]:
        now = self._tick()
        routes: list[Route] = []
        for user_id in dict.fromkeys(user_ids):  # each user once, even if asked twice
            terminals = self._by_user.get(user_id)
            if not terminals:
                continue
            for terminal, (node, expires_at) in list(terminals.items()):
                if expires_at > now:
                    routes.append(Route(user_id, terminal, node))
                else:
                    self._remove(user_id, terminal)
        return routes

    async def subscribe(self, node: NodeId, convs: Sequence[ConvId]) -> None:
        for conv in convs:
            self._nodes_of.setdefault(conv, set()).add(node)

    async def unsubscribe(self, node: NodeId, convs: Sequence[ConvId]) -> None:
        for conv in convs:
            nodes = self._nodes_of.get(conv)
            if nodes is not None:
                nodes.discard(node)
                if not nodes:
                    del self._nodes_of[conv]

    async def nodes_of(self, conv: ConvId) -> list[NodeId]:
        return list(self._nodes_of.get(conv, ()))

    async def unsubscribe_node(self, node: NodeId) -> None:
        for conv in [c for c, nodes in self._nodes_of.items() if node in nodes]:
            await self.unsubscribe(node, [conv])

    async def lease_number(self, node: NodeId, ttl: float, numbers: int) -> int:
        now = self._clock()
        for number, (holder, expires_at) in self._numbers.items():
            if holder == node:
                self._numbers[number] = (node, now + ttl)
                return number
        for number in range(numbers):
            held = self._numbers.get(number)
            if held is None or held[1] <= now:
                self._numbers[number] = (node, now + ttl)
                return number
        raise RuntimeError(f"all {numbers} node numbers are leased: too many nodes")

    async def renew_number(self, number: int, node: NodeId, ttl: float) -> bool:
        held = self._numbers.get(number)
        if held is None or held[0] != node or held[1] <= self._clock():
            return False
        self._numbers[number] = (node, self._clock() + ttl)
        return True

    async def ping(self) -> None:
        """In memory: always answers."""

    # -- presence and calls (rich messaging) --------------------------------------------------

    async def set_hidden(self, user_id: UserId, hidden: bool) -> None:
        if hidden:
            self._hidden.add(user_id)
        else:
            self._hidden.discard(user_id)

    async def hidden(self, user_ids: Sequence[UserId]) -> set[UserId]:
        return {u for u in user_ids if u in self._hidden}

    async def start_call(self, call: CallRecord, ttl: float) -> UserId | None:
        for user in (call.caller, call.callee):
            if self._live_call(self._in_call.get(user)) is not None:
                return user
        self._calls[call.id] = (call, self._clock() + ttl)
        self._in_call[call.caller] = self._in_call[call.callee] = call.id
        return None

    async def get_call(self, call_id: int) -> CallRecord | None:
        return self._live_call(call_id)

    async def update_call(self, call: CallRecord, expect: str, ttl: float) -> bool:
        stored = self._live_call(call.id)
        if stored is None or stored.state != expect:
            return False
        self._calls[call.id] = (call, self._clock() + ttl)
        return True

    async def end_call(self, call_id: int, expect: str) -> CallRecord | None:
        stored = self._live_call(call_id)
        if stored is None or stored.state != expect:
            return None
        self._drop_call(stored)
        return stored

    def _live_call(self, call_id: int | None) -> CallRecord | None:
        entry = self._calls.get(call_id) if call_id is not None else None
        if entry is None:
            return None
        if entry[1] <= self._clock():
            self._drop_call(entry[0])
            return None
        return entry[0]

    def _drop_call(self, call: CallRecord) -> None:
        self._calls.pop(call.id, None)
        for user in (call.caller, call.callee):
            if self._in_call.get(user) == call.id:
                del self._in_call[user]

    # -- the node registry (operations) ----------------------------------------------------------

    async def announce(self, info: NodeInfo, ttl: float) -> None:
        self._registry[info.id] = (info, self._clock() + ttl)

    async def nodes(self) -> list[NodeInfo]:
        now = self._clock()
        for node in [n for n, (_, expires_at) in self._registry.items() if expires_at <= now]:
            del self._registry[node]
        return [info for _, (info, _) in sorted(self._registry.items())]

    async def withdraw(self, node: NodeId) -> None:
        self._registry.pop(node, None)

    async def close(self) -> None:
        self._nodes_of.clear()
        self._by_user.clear()
        self._size = 0
        self._size_after_sweep = 0

    def __len__(self) -> int:
        """Entries held, live or not yet swept (for tests and metrics)."""
        return self._size

    def _tick(self) -> float:
        now = self._clock()
        self._ops_since_sweep += 1
        if self._ops_since_sweep > self._size_after_sweep:
            self._ops_since_sweep = 0
            for user_id, terminals in list(self._by_user.items()):
                for terminal, (_, expires_at) in list(terminals.items()):
                    if expires_at <= now:
                        self._remove(user_id, terminal)
            self._size_after_sweep = self._size
        return now

    def _live(self, user_id: UserId, terminal: str, now: float) -> tuple[NodeId, float] | None:
        entry = self._by_user.get(user_id, {}).get(terminal)
        if entry is not None and entry[1] <= now:
            self._remove(user_id, terminal)
            return None
        return entry

    def _remove(self, user_id: UserId, terminal: str) -> None:
        terminals = self._by_user[user_id]
        del terminals[terminal]
        self._size -= 1
        if not terminals:
            del self._by_user[user_id]


class BusClosed(RuntimeError):
    """``publish`` or ``start`` on a ``LocalBus`` after ``close``."""


class LocalBusHub:
    """The in-process "broker": which node id is consumed by which ``LocalBus``."""

    def __init__(self) -> None:
        self.consumers: dict[NodeId, LocalBus] = {}


class LocalBus:
    """``Bus`` between nodes of one process that share a ``LocalBusHub``.

    Guarantees: ``publish`` never runs the receiver's callback itself; the callback is
    scheduled with ``call_soon`` on the receiver's loop (``call_soon_threadsafe`` from
    another thread), so deliveries from one publisher run in publish order. Delivery is
    at-most-once: a publish to a node that nobody consumes, or that closes before the
    callback runs, is dropped. The envelope object is handed over as is, not copied.
    An ``on_envelope`` that returns an awaitable runs as a task; ``close`` cancels those
    still running.
    """

    def __init__(self, hub: LocalBusHub | None = None) -> None:
        self.hub = hub if hub is not None else LocalBusHub()
        self._node: NodeId | None = None
        self._receiver: Consumer | None = None  # set by start()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        #: metrics: seconds from publish to the receiver's callback (of envelopes received here)
        self.lag = Histogram(LAG_BUCKETS)

    async def start(self, node: NodeId, on_envelope: OnEnvelope) -> None:
        if self._closed:
            raise BusClosed("LocalBus is closed")
        if self._node is not None:
            raise RuntimeError(f"LocalBus already consumes {self._node!r}")
        if node in self.hub.consumers:
            raise RuntimeError(f"node {node!r} is already consumed on this hub")
        self._node, self._receiver = node, Consumer(node, on_envelope)
        self._loop = asyncio.get_running_loop()
        self.hub.consumers[node] = self

    async def publish(self, node: NodeId, envelope: Envelope) -> None:
        if self._closed:
            raise BusClosed("LocalBus is closed")
        target = self.hub.consumers.get(node)
        if target is None or target._loop is None:
            return  # at-most-once: nobody consumes that topic
        if target._loop is asyncio.get_running_loop():
            target._loop.call_soon(target._deliver, envelope, time.monotonic())
        else:
            target._loop.call_soon_threadsafe(target._deliver, envelope, time.monotonic())

    async def ping(self) -> None:
        """In process: answers until closed."""
        if self._closed:
            raise BusClosed("LocalBus is closed")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._node is not None and self.hub.consumers.get(self._node) is self:
            del self.hub.consumers[self._node]
        if self._receiver is not None:
            await self._receiver.close()

    def _deliver(self, envelope: Envelope, published_at: float = 0.0) -> None:
        if not self._closed and self._receiver is not None:
            if published_at:
                self.lag.observe(time.monotonic() - published_at)
            self._receiver.deliver(envelope)

