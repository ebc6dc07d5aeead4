"""What a node counts, and its ``/metrics`` in the Prometheus text format.

The hot paths never call prometheus-client: a frame, a send or a batch adds 1 to a plain
list slot or fills a fixed bucket array (``Histogram.observe``: one bisect), on the
objects that already do the work (the sessions' process-wide ``EDGE`` counters, the
``Delivery``, the store's writer, the bus). edge/metrics.py's collector reads them when
Prometheus scrapes, and builds the metric families then; so a scrape costs what the number of
series costs, and a frame costs an addition. ``LoopLag`` measures the event loop's
lateness with a timer of its own. RSS, CPU and open files come from prometheus-client's
``ProcessCollector`` (read from /proc at scrape time).

Every series is listed in docs/operations.md ("Metrics"); ops/alerts.yml and
ops/grafana-dashboard.json use them.
"""
from __future__ import annotations

import asyncio
import collections
from bisect import bisect_left
from typing import Iterable, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import HistogramMetricFamily

__all__ = ["Histogram", "EdgeCounters", "EDGE", "LoopLag", "render", "monotonic_rate",
           "LATENCY_BUCKETS", "SIZE_BUCKETS", "LAG_BUCKETS", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: seconds: a send's store commit, a batch's commit
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: counts: a store batch's writes, a conversation push's local receivers
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
#: seconds: the event loop's lateness, the bus's publish-to-consume delay
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Histogram:
    """A fixed-bucket histogram as plain Python: ``observe`` is one bisect and two
    additions (safe from one writer thread; a scrape reads it as it is)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last slot is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def observe_since(self, now: float, starts: Iterable[float]) -> None:
        """``observe(now - started)`` for each of ``starts`` (a batch timed on one clock
        reading)."""
        counts, bounds, total = self.counts, self.bounds, 0.0
        for started in starts:
            value = now - started
            counts[bisect_left(bounds, value)] += 1
            total += value
        self.sum += total

    @property
    def count(self) -> int:
        return sum(self.counts)

    def family(self, name: str, doc: str, labels: Iterable[str] = (), label_values: Iterable[str] = (),
               family: HistogramMetricFamily | None = None) -> HistogramMetricFamily:
        """This histogram as a Prometheus family (cumulative buckets), or added to ``family``."""
        cumulative, buckets = 0, []
        for bound, count in zip((*self.bounds, float("inf")), list(self.counts)):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), cumulative))
        if family is None:
            family = HistogramMetricFamily(name, doc, labels=list(labels))
        family.add_metric(list(label_values), buckets, self.sum)
        return family


class EdgeCounters:
    """What the sessions of this process count: frames in and out by op, ERROR frames by
    code, logins. Process-wide (one node is one process), since a session's counts must
    outlive it. ``on`` is set at the node's start (metrics off: nothing is counted); a
    session reads it when it opens for its frame counts (``frames_in``, ``frames_out``)."""

    def __init__(self) -> None:
        self.on = True
        self.frames_in = [0] * 256
        self.frames_out = [0] * 256
        self.errors: dict[int, int] = {}
        self.logins = [0, 0]  # ok, refused


EDGE = EdgeCounters()


class LoopLag:
    """Every ``interval`` seconds a timer notes how late it ran: the time the event loop
    spent on something else (a long callback, a GC pause, CPU starvation). ``longest()``
    is the longest lateness of the last ``window`` seconds (a histogram's buckets cannot
    say how long the longest pause was)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float = 0.25, window: float = 60.0) -> None:
        self.loop = loop
        self.interval = interval
        self.window = window
        self.histogram = Histogram(LAG_BUCKETS)
        self.last = 0.0
        self._due = 0.0
        self._handle: asyncio.TimerHandle | None = None
        # (time, lag), lags decreasing: the first is the longest of the window
        self._longest: collections.deque[tuple[float, float]] = collections.deque()

    def longest(self) -> float:
        now = self.loop.time()
        while self._longest and self._longest[0][0] < now - self.window:
            self._longest.popleft()
        return self._longest[0][1] if self._longest else 0.0

    def start(self) -> None:
        self._due = self.loop.time() + self.interval
        self._handle = self.loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        now = self.loop.time()
        self.last = max(0.0, now - self._due)
        self.histogram.observe(self.last)
        while self._longest and self._longest[-1][1] <= self.last:
            self._longest.pop()
        self._longest.append((now, self.last))
        if self._longest[0][0] < now - self.window:
            self._longest.popleft()
        self._due = now + self.interval
        self._handle = self.loop.call_at(self._due, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


def monotonic_rate(samples: list[tuple[float, int]], now: float, value: int, window: float = 10.0) -> float:
    """Per-second rate of ``value`` over about ``window`` seconds, keeping ``samples``
    (time, value) as the history (the registry's messages/s)."""
    samples.append((now, value))
    while len(samples) > 2 and now - samples[1][0] >= window:
        samples.pop(0)
    first_at, first = samples[0]
    return (value - first) / (now - first_at) if now > first_at else 0.0

