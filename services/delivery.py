"""Where a frame goes once it is encoded: look up the receivers' routes, group them by
node, hand the local share to this node's hub and publish once per other node."""
from __future__ import annotations

import logging
from typing import Any, Callable, Coroutine, Sequence

from ..backends.protocols import Bus, Envelope, NodeId, Routes, UserId

__all__ = ["Delivery"]

log = logging.getLogger("edgeim.delivery")

#: (frame, receivers, skip_user, skip_terminal, reply): a push to route, or, when ``reply``
#: is set, a reply to hand to it in turn
_Item = tuple[bytes, Sequence[UserId], UserId, str, "Callable[[bytes], object] | None"]


class Delivery:
    def __init__(self, node: NodeId, routes: Routes, bus: Bus, local: Callable[[Envelope], object],
                 spawn: Callable[[Coroutine[Any, Any, Any]], object]) -> None:
        self.node = node
        self._routes = routes
        self._bus = bus
        self._local = local
        self._spawn = spawn
        self._queue: list[_Item] = []
        self._flushing = False

    def push(self, frame: bytes, user_ids: Sequence[UserId], skip_user: UserId = UserId(0), skip_terminal: str = "") -> None:
        """Deliver ``frame`` (the same bytes object everywhere) to every live session of
        ``user_ids`` except (skip_user, skip_terminal). Returns at once: what is pushed
        in one loop iteration (a commit batch) is routed with one routes lookup, and
        frames go out in the order they were pushed. At most once: a receiver that misses
        a frame catches up with SYNC."""
        self._enqueue((frame, user_ids, skip_user, skip_terminal, None))

    def then(self, send: Callable[[bytes], object], frame: bytes) -> None:
        """Call ``send(frame)`` once the pushes queued before it are handed over: a
        reply that must not overtake them (a SEND_ACK) goes through here."""
        self._enqueue((frame, (), UserId(0), "", send))

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
        nodes_of: dict[UserId, set[NodeId]] = {}
        try:
            for route in await self._routes.lookup(list({u for item in batch for u in item[1]})):
                nodes_of.setdefault(route.user_id, set()).add(route.node)
        except Exception:  # no pushes this time (receivers will sync); replies still go
            log.exception("routes lookup failed", extra={"frames": len(batch)})
        for frame, users, skip_user, skip_terminal, reply in batch:
            if reply is not None:
                reply(frame)
                continue
            by_node: dict[NodeId, list[UserId]] = {}
            for user in users:
                for node in nodes_of.get(user, ()):
                    by_node.setdefault(node, []).append(user)
            for node, targets in by_node.items():
                envelope = Envelope(frame, tuple(targets), skip_user, skip_terminal)
                if node == self.node:
                    self._local(envelope)
                    continue
                try:
                    await self._bus.publish(node, envelope)
                except Exception:  # that node misses this frame (it will sync); the rest go on
                    log.exception("publish failed", extra={"node": node})

    async def kick(self, node: NodeId, frame: bytes, user_id: UserId, terminal: str) -> None:
        """Close (user_id, terminal) on ``node`` after giving it ``frame`` (a KICKED push)."""
        envelope = Envelope(frame, (user_id,), kick_terminal=terminal)
        if node == self.node:
            self._local(envelope)
        else:
            await self._bus.publish(node, envelope)
