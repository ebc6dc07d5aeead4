"""The node's ``/metrics``: a Prometheus collector that builds every ``edgeim_*`` family
from the counters the node's parts keep (ops/metrics.py: plain counters and bucket arrays
bumped on the hot paths) when Prometheus scrapes, and the registry that adds the process's
RSS, CPU and open files. It reads the node, so it lives beside it in the edge layer."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..core_ext.protocol import Op
from ..ops.metrics import EDGE, Histogram
from ..ops.version import VERSION
from ..services import state
from .session import AUTHENTICATED

if TYPE_CHECKING:  # the node imports admin.py, which imports this module
    from .node import Node

__all__ = ["NodeCollector", "node_registry"]


def _op_name(op: int) -> str:
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
        by_terminal: dict[str, int] = {}
        for session in list(node.server.sessions):
            terminal = session.terminal if session.state == AUTHENTICATED else ""
            by_terminal[terminal] = by_terminal.get(terminal, 0) + 1
        family = GaugeMetricFamily("edgeim_connections", "Open WebSocket connections, by terminal (\"\": not logged in)",
                                   labels=["terminal"])
        for terminal, count in sorted(by_terminal.items()):
            family.add_metric([terminal], count)
        yield family
        guard = node.http.guard
        if guard is not None:
            yield GaugeMetricFamily("edgeim_http_connections", "Open connections of the HTTP port",
                                    value=len(guard.open))
            closed = CounterMetricFamily("edgeim_http_closed", "HTTP connections the node closed or refused for"
                                         " their slowness or at the cap, by reason", labels=["reason"])
            for reason, count in guard.closed.items():
                closed.add_metric([reason], count)
            yield closed
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
        yield CounterMetricFamily("edgeim_messages", "SENDs acknowledged (durable)", value=node.pipeline.acked)
        yield node.pipeline.send_latency.family("edgeim_send_latency_seconds",
                                           "SEND received to SEND_ACK queued (the commit included)")
        if node.loop_lag is not None:
            yield node.loop_lag.histogram.family("edgeim_event_loop_lag_seconds",
                                                 "How late the event loop ran a timer (sampled every 0.25 s)")
            yield GaugeMetricFamily("edgeim_event_loop_lag_last_seconds", "The last event-loop lag measured",
                                    value=node.loop_lag.last)
            yield GaugeMetricFamily("edgeim_event_loop_lag_max_seconds", "The longest event-loop lag of the last minute",
                                    value=node.loop_lag.longest())
        yield from self._gc(node)

    def _gc(self, node: Node) -> Iterator[Any]:
        watch = node.gc
        for name, doc, values in (
                ("edgeim_gc_collections", "Garbage collections, by generation (2: full)", watch.collections),
                ("edgeim_gc_seconds", "Seconds spent in garbage collections (the event loop waits), by generation",
                 watch.seconds),
                ("edgeim_gc_collected", "Unreachable objects the collections found (reference cycles), by generation",
                 watch.collected)):
            family = CounterMetricFamily(name, doc, labels=["generation"])
            for generation, value in enumerate(values):
                family.add_metric([str(generation)], value)
            yield family
        yield watch.full.family("edgeim_gc_full_seconds", "One full (generation 2) garbage collection")
        yield CounterMetricFamily("edgeim_gc_freezes", "Times what survived the young collections was frozen"
                                  " (gc_freeze_every)", value=watch.freezes)
        yield GaugeMetricFamily("edgeim_gc_frozen_objects", "Objects in the permanent generation: no collection"
                                " traverses them", value=watch.frozen)

    def _delivery(self, node: Node) -> Iterator[Any]:
        d = node.delivery
        yield CounterMetricFamily("edgeim_route_lookups", "Routes lookups (one per loop iteration with pushes)",
                                  value=d.route_lookups)
        yield CounterMetricFamily("edgeim_route_lookup_failures", "Routes lookups that failed", value=d.route_failures)
        yield d.fanout.family("edgeim_fanout_size", "Local receiving connections of one conversation push")
        yield CounterMetricFamily("edgeim_bus_published", "Envelopes published to other nodes", value=d.published)
        yield CounterMetricFamily("edgeim_bus_publish_failures", "Envelopes that could not be published",
                                  value=d.publish_failures)
        yield CounterMetricFamily("edgeim_bus_consumed", "Envelopes received from other nodes", value=d.consumed)
        yield CounterMetricFamily("edgeim_bus_lost", "Times this node learned that pushes from other nodes were lost"
                                  " on the way (it read its state again)", value=d.lost_signals)
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
