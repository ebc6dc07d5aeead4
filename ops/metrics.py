"""What a node counts, and its ``/metrics`` in the Prometheus text format.

The hot paths never call prometheus-client: a frame, a send or a batch adds 1 to a plain
list slot or fills a fixed bucket array (``Histogram.observe``: one bisect), on the
objects that already do the work (the sessions' process-wide ``EDGE`` counters, the
``Delivery``, the store's writer, the bus). ``NodeCollector`` reads them when Prometheus
scrapes, and builds the metric families then; so a scrape costs what the number of
series costs, and a frame costs an addition. ``LoopLag`` measures the event loop's
lateness with a timer of its own. RSS, CPU and open files come from prometheus-client's
``ProcessCollector`` (read from /proc at scrape time).

Every series is listed in docs/operations.md ("Metrics"); ops/alerts.yml and
ops/grafana-dashboard.json use them.
"""
from __future__ import annotations

import asyncio
from bisect import bisect_left
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:  # the node imports this module, not the other way round
    from ..edge.node import Node

__all__ = ["Histogram", "EdgeCounters", "EDGE", "LoopLag", "NodeCollector", "node_registry", "render",
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
    outlive it. ``on`` is read once per frame (metrics off: nothing is counted)."""

    def __init__(self) -> None:
        self.on = True
        self.frames_in = [0] * 256
        self.frames_out = [0] * 256
        self.errors: dict[int, int] = {}
        self.logins = [0, 0]  # ok, refused


EDGE = EdgeCounters()


class LoopLag:
    """Every ``interval`` seconds a timer notes how late it ran: the time the event loop
    spent on something else (a long callback, a GC pause, CPU starvation)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float = 0.25) -> None:
        self.loop = loop
        self.interval = interval
        self.histogram = Histogram(LAG_BUCKETS)
        self.last = 0.0
        self._due = 0.0
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._due = self.loop.time() + self.interval
        self._handle = self.loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        now = self.loop.time()
        self.last = max(0.0, now - self._due)
        self.histogram.observe(self.last)
        self._due = now + self.interval
        self._handle = self.loop.call_at(self._due, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


def _op_name(op: int) -> str:
    from ..core_ext.protocol import Op

    try:
        return Op(op).name
    except ValueError:
        return f"0x{op:02x}"


class NodeCollector(Collector):
    """Builds every ``edgeim_*`` family from the node's own counters at scrape time."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def collect(self) -> Iterator[Any]:
        node = self.node
        yield from self._edge(node)
        yield from self._delivery(node)
        yield from self._store(node)
        yield from self._health(node)

    def _edge(self, node: Node) -> Iterator[Any]:
        from ..edge.session import AUTHENTICATED

        by_terminal: dict[str, int] = {}
        for session in list(node.server.sessions):
            terminal = session.terminal if session.state == AUTHENTICATED else ""
            by_terminal[terminal] = by_terminal.get(terminal, 0) + 1
        family = GaugeMetricFamily("edgeim_connections", "Open WebSocket connections, by terminal (\"\": not logged in)",
                                   labels=["terminal"])
        for terminal, count in sorted(by_terminal.items()):
            family.add_metric([terminal], count)
        yield family
        logins = CounterMetricFamily("edgeim_logins", "Logins (LOGIN, TOKEN_LOGIN), by result", labels=["result"])
        logins.add_metric(["ok"], EDGE.logins[0])
        logins.add_metric(["refused"], EDGE.logins[1])
        yield logins
        for name, doc, counts in (("edgeim_frames_in", "Request frames received, by op", EDGE.frames_in),
                                  ("edgeim_frames_out", "Frames sent to clients, by op", EDGE.frames_out)):
            family = CounterMetricFamily(name, doc, labels=["op"])
            for op, count in enumerate(list(counts)):
                if count:
                    family.add_metric([_op_name(op)], count)
            yield family
        errors = CounterMetricFamily("edgeim_errors", "ERROR frames sent, by code (docs/protocol.md)", labels=["code"])
        for code, count in sorted(EDGE.errors.items()):
            errors.add_metric([str(code)], count)
        yield errors
        yield CounterMetricFamily("edgeim_messages", "SENDs acknowledged (durable)", value=node.api.acked)
        yield node.api.send_latency.family("edgeim_send_latency_seconds",
                                           "SEND received to SEND_ACK queued (the commit included)")
        if node.loop_lag is not None:
            yield node.loop_lag.histogram.family("edgeim_event_loop_lag_seconds",
                                                 "How late the event loop ran a timer (sampled every 0.25 s)")
            yield GaugeMetricFamily("edgeim_event_loop_lag_last_seconds", "The last event-loop lag measured",
                                    value=node.loop_lag.last)

    def _delivery(self, node: Node) -> Iterator[Any]:
        from ..services import state

        d = node.delivery
        yield CounterMetricFamily("edgeim_route_lookups", "Routes lookups (one per loop iteration with pushes)",
                                  value=d.route_lookups)
        yield CounterMetricFamily("edgeim_route_lookup_failures", "Routes lookups that failed", value=d.route_failures)
        yield d.fanout.family("edgeim_fanout_size", "Local receiving connections of one conversation push")
        yield CounterMetricFamily("edgeim_bus_published", "Envelopes published to other nodes", value=d.published)
        yield CounterMetricFamily("edgeim_bus_publish_failures", "Envelopes that could not be published",
                                  value=d.publish_failures)
        yield CounterMetricFamily("edgeim_bus_consumed", "Envelopes received from other nodes", value=d.consumed)
        lag = getattr(node.bus, "lag", None)
        if isinstance(lag, Histogram):
            yield lag.family("edgeim_bus_lag_seconds", "Publish (on another node) to consume (here) of an envelope")
        hits, misses = state.LIST_CACHE
        cache = CounterMetricFamily("edgeim_list_cache", "List replies (conversations, friends, groups) served from"
                                    " the encoded-page cache or built", labels=["result"])
        cache.add_metric(["hit"], hits)
        cache.add_metric(["miss"], misses)
        yield cache
        yield GaugeMetricFamily("edgeim_state_users", "Users held in memory (online here)", value=len(node.state.users))
        yield GaugeMetricFamily("edgeim_state_groups", "Groups held in memory", value=len(node.state.groups))

    def _store(self, node: Node) -> Iterator[Any]:
        store = node.store
        batch = getattr(store, "batch_sizes", None)
        if isinstance(batch, Histogram):
            yield batch.family("edgeim_store_batch_size", "Writes (messages and changes) per store transaction")
        commit = getattr(store, "commit_seconds", None)
        if isinstance(commit, Histogram):
            yield commit.family("edgeim_store_commit_seconds", "One store transaction: write, commit, wake the waiters")

    def _health(self, node: Node) -> Iterator[Any]:
        from .version import VERSION

        info = GaugeMetricFamily("edgeim_build_info", "1, labelled with the version and node id",
                                 labels=["version", "node"])
        info.add_metric([VERSION, node.id], 1)
        yield info
        yield GaugeMetricFamily("edgeim_start_time_seconds", "Unix time the node started", value=node.started_at)
        yield GaugeMetricFamily("edgeim_ready", "1 while /readyz is 200", value=1 if node.ready() else 0)
        yield GaugeMetricFamily("edgeim_draining", "1 while the node drains", value=1 if node.server.draining else 0)
        up = GaugeMetricFamily("edgeim_backend_up", "1 while the backend works", labels=["backend"])
        for backend, ok in node.backends_up().items():
            up.add_metric([backend], 1 if ok else 0)
        yield up


def node_registry(node: Node) -> CollectorRegistry:
    """A registry of this node alone (the process's RSS, CPU and files included)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(node))
    ProcessCollector(registry=registry)
    return registry


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

