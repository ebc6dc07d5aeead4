"""The garbage collector of a node: every collection timed (``gc.callbacks``), and the
objects that live long moved out of the collector's way.

A node holds its connections for hours: a logged-in idle connection is ~27 objects the
cycle collector tracks (session, peer, picows and uvloop transports, the user's state),
so 17,000 connections are ~460,000 of them, which every full (generation 2) collection
traverses while the event loop waits. CPython starts a full collection once the objects
promoted since the last one pass a quarter of those that survived it, so the pauses
grow with the connections held, not with the garbage.

``gc.freeze()`` moves every tracked object into the permanent generation, which no
collection traverses. The node freezes what start-up made, and every ``every`` seconds
(when a collection promoted anything meanwhile) collects the two young generations and
freezes what survived: a full collection then traverses only what arrived since the last
freeze. The price: a frozen object that later becomes part of a reference cycle is never
collected, so what a node holds for long must be freed by reference counting when it
goes. A closed connection is (``Peer.release``); a login, a SEND, its push and a close
leave no cycle behind (tests/edge/test_gc.py checks it through ``POST /debug/gc``, which
counts what a full collection of everything, frozen objects included, finds unreachable).
``edgeim_gc_frozen_objects`` shows what is frozen; docs/architecture.md has the figures.
"""
from __future__ import annotations

import asyncio
import collections
import gc
import time
from typing import Any

from .metrics import LAG_BUCKETS, Histogram

__all__ = ["GcWatch", "garbage_census"]


class GcWatch:
    """Counts and times the collections of each generation; with ``every`` > 0, freezes
    at start and then every ``every`` seconds (see the module docstring); with ``young``,
    collects the young generation once that many tracked objects are new instead of
    CPython's 700. ``start`` and ``stop`` add and remove the ``gc.callbacks`` hook, the
    timer and the threshold."""

    def __init__(self, loop: asyncio.AbstractEventLoop, every: float, young: int = 0) -> None:
        self.loop = loop
        self.every = every
        self.young = young  # the young generation's threshold while started (0: as it is)
        self._thresholds: tuple[int, int, int] | None = None  # those before ``start``
        self.collections = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self.collected = [0, 0, 0]  # unreachable objects found (cyclic garbage)
        self.full = Histogram(LAG_BUCKETS)  # seconds of each full collection: a pause of the loop
        self.freezes = 0
        self._started = 0.0
        self._promoted_at = -1  # collections of generation 1 and 2 at the last freeze
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self.young:
            self._thresholds = gc.get_threshold()
            gc.set_threshold(self.young, *self._thresholds[1:])
        gc.callbacks.append(self._on_gc)
        if self.every > 0:
            gc.freeze()  # what start-up made: modules, config, backends
            self.freezes += 1
            self._promoted_at = self.collections[1] + self.collections[2]
            self._timer = self.loop.call_later(self.every, self._tick)

    def stop(self) -> None:
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            self._thresholds = None
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    @property
    def frozen(self) -> int:
        return gc.get_freeze_count()

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        generation = info["generation"]
        self.collections[generation] += 1
        self.seconds[generation] += took
        self.collected[generation] += info["collected"]
        if generation == 2:
            self.full.observe(took)

    def _tick(self) -> None:
        self._timer = self.loop.call_later(self.every, self._tick)
        promoted = self.collections[1] + self.collections[2]
        if promoted == self._promoted_at:
            return  # nothing reached the oldest generation since the last freeze
        # the young generations first (small): their cyclic garbage is freed, not frozen
        gc.collect(1)
        gc.freeze()
        self.freezes += 1
        self._promoted_at = self.collections[1] + self.collections[2]


def garbage_census(limit: int = 30) -> dict[str, Any]:
    """What a full collection finds unreachable, by type, frozen objects included: the
    permanent generation is thawed for it and frozen again after (when it held anything).
    Runs two full collections (one to look, one to free what it saw): a pause of the
    loop, for ``POST /debug/gc`` only."""
    was_frozen = gc.get_freeze_count()
    flags = gc.get_debug()
    t0 = time.perf_counter()
    gc.unfreeze()
    gc.set_debug(flags | gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        found = collections.Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage)
    finally:
        gc.set_debug(flags)
        gc.garbage.clear()
    gc.collect()  # what SAVEALL kept is unreachable again: freed now
    if was_frozen:
        gc.freeze()
    return {"unreachable": sum(found.values()), "by_type": dict(found.most_common(limit)),
            "frozen_before": was_frozen, "frozen_after": gc.get_freeze_count(),
            "seconds": round(time.perf_counter() - t0, 4)}
