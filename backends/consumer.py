"""The receiving end every Bus shares: hand each envelope to the node's callback on the
event loop, run an awaitable it returns as a task, and cancel those tasks at close."""
from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Awaitable, Callable

from .protocols import Envelope

__all__ = ["Consumer", "OnEnvelope"]

logger = logging.getLogger(__name__)

OnEnvelope = Callable[[Envelope], Awaitable[None] | None]


class Consumer:
    """``on_envelope`` for one node; ``deliver`` runs on the loop. A failing callback is
    logged, never raised into the bus."""

    def __init__(self, node: str, on_envelope: OnEnvelope) -> None:
        self.node = node
        self._on_envelope = on_envelope
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = False

    def deliver(self, envelope: Envelope) -> None:
        if self.closed:
            return
        try:
            result = self._on_envelope(envelope)
        except Exception:
            logger.exception("on_envelope failed on node %s", self.node)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("on_envelope failed on node %s", self.node, exc_info=task.exception())

    async def close(self) -> None:
        """Deliver nothing more; cancel the callbacks' tasks still running and wait for them."""
        self.closed = True
        tasks, self._tasks = self._tasks, set()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
