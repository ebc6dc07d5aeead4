"""Where a frame goes once it is encoded: look up the receivers' routes, group them by
node, hand the local share to this node's hub and publish once per other node."""
from __future__ import annotations

from typing import Callable, Sequence

from ..backends.protocols import Bus, Envelope, NodeId, Routes, UserId

__all__ = ["Delivery"]


class Delivery:
    def __init__(self, node: NodeId, routes: Routes, bus: Bus, local: Callable[[Envelope], object]) -> None:
        self.node = node
        self._routes = routes
        self._bus = bus
        self._local = local

    async def push(self, frame: bytes, user_ids: Sequence[UserId], skip_user: UserId = UserId(0), skip_terminal: str = "") -> None:
        """Deliver ``frame`` (the same bytes object everywhere) to every live session of
        ``user_ids`` except (skip_user, skip_terminal). At most once: a receiver that misses
        it catches up with SYNC."""
        by_node: dict[NodeId, set[UserId]] = {}
        for route in await self._routes.lookup(user_ids):
            by_node.setdefault(route.node, set()).add(route.user_id)
        for node, users in by_node.items():
            envelope = Envelope(frame, tuple(users), skip_user, skip_terminal)
            if node == self.node:
                self._local(envelope)
            else:
                await self._bus.publish(node, envelope)

    async def kick(self, node: NodeId, frame: bytes, user_id: UserId, terminal: str) -> None:
        """Close (user_id, terminal) on ``node`` after giving it ``frame`` (a KICKED push)."""
        envelope = Envelope(frame, (user_id,), kick_terminal=terminal)
        if node == self.node:
            self._local(envelope)
        else:
            await self._bus.publish(node, envelope)
