"""The cluster ``Bus``: node-to-node envelopes through RocketMQ (name server + broker).

Topics and groups
    Each node consumes one topic, ``{topic_prefix}{node}`` with the node id sanitized to
    RocketMQ's topic alphabet (``[A-Za-z0-9_-]``, at most 127 characters; a node id that had
    to change gets a hash suffix, so two ids never share a topic). ``start`` creates the
    topic on every master broker (``create_topics``), so the consumer finds its route at
    once instead of waiting ~30 s for a route refresh.

Latest offset for a new incarnation
    Every ``start`` consumes with a consumer group of its own (``{topic}_{incarnation}``),
    so a restarted node never shares offsets with its previous life. A brand-new group
    would read the topic from offset 0 (the broker answers 0 while the first message is
    still in memory), so before the consumer starts, ``start`` creates the group on each
    broker and commits, per queue, the queue's current max offset: consumption begins at
    what is published from now on. The callback also drops any message below those start
    offsets, in case a commit did not take. ``close`` deletes the group again.

Batching and encoding
    ``publish`` never blocks: it appends the envelope to the target node's list for this
    loop iteration and schedules one flush (``call_soon``); the flush hands each target's
    list to the sender thread in one piece. The sender thread (the client's ``send`` is
    blocking) takes everything queued since its last send and sends ONE broker message per
    target topic (split past ``max_batch_bytes``, about 512 KiB; the producer's message
    size limit is raised from the client's 128 KiB default to just under the broker's
    4 MiB), so under load batches grow by themselves. A batch is msgpack ``[publisher, seq, [envelope, ...]]``. The client library
    cuts bodies at the first NUL byte (on send and on receive), so the msgpack bytes are
    escaped: ``\\x01`` -> ``\\x01\\x02``, ``\\x00`` -> ``\\x01\\x01`` (two C-speed
    ``bytes.replace`` passes each way; bodies grow by the share of 0x00/0x01 bytes, a few
    percent for typical frames, against 33% for base64).

Order and duplicates
    A publisher's messages go to one queue of the target topic (orderly send, sharding key
    = the publisher's incarnation id) and the consumer runs one consuming thread, so one
    publisher's envelopes arrive in publish order. The broker delivers at least once
    (a rebalance or a broker restart redelivers); each batch carries (publisher incarnation
    id, sequence number) and the receiver keeps, per publisher, the highest sequence and
    the sequences seen within ``dedup_window`` below it: a batch seen before, or older than
    the window, is dropped, so ``on_envelope`` sees each envelope at most once.

Failures
    Pushes are at-most-once (the Bus Protocol): a send that fails (broker down, timeout) is
    logged and its envelopes dropped; nothing raises into ``publish``'s callers and nothing
    waits for the broker on the event loop. Once more than ``max_pending`` envelopes wait
    for the sender thread, ``publish`` drops new ones. The client library reconnects by
    itself; the next send after the broker is back goes through. A restarted broker does
    not know the consumer until the library's next heartbeat (every 30 s) and assigns it
    no queue meanwhile; a watcher thread asks the brokers every ``watch_interval`` seconds
    whether they count this group's consumer, and after two noes starts the consumer again
    (same group: it resumes at the broker's offsets; redeliveries are deduplicated), so
    consumption resumes a few seconds after the broker, not up to 30 s later.

Native resources
    Callbacks come on the library's native threads; envelopes hop to the loop with one
    ``call_soon_threadsafe`` per broker message. ``Message`` objects are destroyed right
    after each send; ``close`` shuts the consumer down and destroys it, and shuts the
    producer down. The producer is not destroyed: ``DestroyProducer`` of the C library the
    0.5.0rc2 wheel bundles crashes the process (apache/rocketmq-client-cpp#212, a wrong
    cast, fixed upstream after that build), so its few hundred bytes stay allocated.
"""
from __future__ import annotations

import asyncio
import collections
import hashlib
import itertools
import json
import logging
import queue
import re
import socket
import struct
import threading
import time
import uuid
from typing import Any

import msgspec

from ..ops.metrics import LAG_BUCKETS, Histogram
from .consumer import Consumer, OnEnvelope
from .memory import BusClosed
from .protocols import Envelope, NodeId

__all__ = ["RocketMqBus", "RocketMqAdmin", "RocketMqAdminError", "topic_for", "escape_nul", "unescape_nul"]

logger = logging.getLogger(__name__)


_TOPIC_OK = re.compile(r"[A-Za-z0-9_-]")
_TOPIC_MAX = 127


def topic_for(node: str, prefix: str = "edgeim_") -> str:
    """The topic a node consumes: ``prefix + node`` in RocketMQ's topic alphabet."""
    clean = "".join(c if _TOPIC_OK.fullmatch(c) else "_" for c in node)
    topic = prefix + clean
    if clean != node or len(topic) > _TOPIC_MAX:
        digest = hashlib.sha1(node.encode()).hexdigest()[:10]
        topic = f"{topic[:_TOPIC_MAX - 11]}_{digest}"
    return topic


def escape_nul(data: bytes) -> bytes:
    """``data`` without NUL bytes: 0x01 -> 01 02, then 0x00 -> 01 01."""
    return data.replace(b"\x01", b"\x01\x02").replace(b"\x00", b"\x01\x01")


def unescape_nul(data: bytes) -> bytes:
    """The inverse of ``escape_nul`` (escapes are aligned, so two left-to-right passes do)."""
    return data.replace(b"\x01\x01", b"\x00").replace(b"\x01\x02", b"\x01")


class _Batch(msgspec.Struct, array_like=True):
    publisher: str  # the publishing bus's incarnation id
    seq: int  # 1, 2, 3, ... per publisher and target topic, in send order; a failed send uses one up
    envelopes: list[Envelope]
    #: unix seconds at send (the receiver's bus lag metric; 0 from publishers that predate it)
    sent_at: float = 0.0
    #: unix seconds at which the publisher sent (or tried) its previous batch to this topic
    #: (0: none): a receiver that never saw that one can tell whether it was lost
    prev_at: float = 0.0


#: seconds of clock difference between two nodes that a receiver allows for when it judges
#: whether a publisher's earlier batch was sent before it started consuming
CLOCK_MARGIN = 1.0


# -- a minimal admin client of RocketMQ's remoting protocol ------------------------------------

_GET_ROUTEINFO_BY_TOPIC = 105
_GET_BROKER_CLUSTER_INFO = 106
_UPDATE_AND_CREATE_TOPIC = 17
_GET_MAX_OFFSET = 30
_UPDATE_CONSUMER_OFFSET = 15
_UPDATE_AND_CREATE_SUBSCRIPTIONGROUP = 200
_DELETE_SUBSCRIPTIONGROUP = 207
_SEND_MESSAGE = 10
_GET_CONSUMER_LIST_BY_GROUP = 38
_TOPIC_NOT_EXIST = 17


class RocketMqAdminError(RuntimeError):
    """A remoting call failed (no connection, or a non-success response code)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class RocketMqAdmin:
    """The few admin calls the bus needs, spoken directly (remoting protocol, JSON headers):
    cluster and route info from the name server; topic and group creation, max offsets and
    offset commits on a broker. Blocking; the bus runs it on a thread."""

    def __init__(self, namesrv: str, timeout: float = 3.0) -> None:
        self.namesrv = namesrv
        self.timeout = timeout
        self._opaque = itertools.count(1)

    def call(self, addr: str, code: int, fields: dict[str, Any] | None = None, body: bytes = b"") -> tuple[dict[str, Any], bytes]:
        header = json.dumps({
            "code": code, "language": "PYTHON", "version": 0, "opaque": next(self._opaque), "flag": 0,
            "extFields": {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in (fields or {}).items()},
        }).encode()
        frame = struct.pack(">II", 4 + len(header) + len(body), len(header)) + header + body
        host, port = addr.rsplit(":", 1)
        try:
            with socket.create_connection((host, int(port)), timeout=self.timeout) as sock:
                sock.sendall(frame)
                (length,) = struct.unpack(">I", _read_exactly(sock, 4))
                data = _read_exactly(sock, length)
        except OSError as exc:
            raise RocketMqAdminError(f"{addr}: {exc}") from exc
        header_len = struct.unpack(">I", data[:4])[0] & 0xFFFFFF
        return json.loads(data[4:4 + header_len]), data[4 + header_len:]

    def _ok(self, addr: str, code: int, fields: dict[str, Any] | None = None, body: bytes = b"") -> tuple[dict[str, Any], bytes]:
        head, data = self.call(addr, code, fields, body)
        if head.get("code") != 0:
            raise RocketMqAdminError(f"{addr}: request {code} failed with {head.get('code')}: {head.get('remark')}",
                                     head.get("code"))
        return head, data

    def master_brokers(self) -> dict[str, str]:
        """broker name -> address of its master, as the name server knows them now."""
        _, data = self._ok(self.namesrv, _GET_BROKER_CLUSTER_INFO)
        info = _loads_fastjson(data)
        masters = {}
        for name, broker in (info.get("brokerAddrTable") or {}).items():
            addr = (broker.get("brokerAddrs") or {}).get("0")
            if addr:
                masters[name] = addr
        return masters

    def route(self, topic: str) -> dict[str, Any] | None:
        """The topic's route (``brokerDatas``, ``queueDatas``), or None if it has none."""
        head, data = self.call(self.namesrv, _GET_ROUTEINFO_BY_TOPIC, {"topic": topic})
        if head.get("code") == _TOPIC_NOT_EXIST:
            return None
        if head.get("code") != 0:
            raise RocketMqAdminError(f"route of {topic}: {head.get('code')}: {head.get('remark')}", head.get("code"))
        return _loads_fastjson(data)

    def create_topic(self, broker: str, topic: str, queues: int) -> None:
        self._ok(broker, _UPDATE_AND_CREATE_TOPIC, {
            "topic": topic, "defaultTopic": "TBW102", "readQueueNums": queues, "writeQueueNums": queues,
            "perm": 6, "topicFilterType": "SINGLE_TAG", "topicSysFlag": 0, "order": False,
        })

    def wait_route(self, topic: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            route = self.route(topic)
            if route is not None and route.get("queueDatas"):
                return route
            if time.monotonic() > deadline:
                raise RocketMqAdminError(f"no route for topic {topic} after {timeout:.0f} s")
            time.sleep(0.02)

    def create_group(self, broker: str, group: str) -> None:
        body = json.dumps({
            "groupName": group, "consumeEnable": True, "consumeFromMinEnable": True,
            "consumeBroadcastEnable": True, "retryQueueNums": 1, "retryMaxTimes": 16, "brokerId": 0,
            "whichBrokerWhenConsumeSlowly": 1, "notifyConsumerIdsChangedEnable": True,
        }).encode()
        self._ok(broker, _UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, {}, body)

    def delete_group(self, broker: str, group: str) -> None:
        self._ok(broker, _DELETE_SUBSCRIPTIONGROUP, {"groupName": group, "cleanOffset": True})

    def consumer_ids(self, broker: str, group: str) -> list[str]:
        """The clients the broker counts as live consumers of ``group`` (from their heartbeats)."""
        head, data = self.call(broker, _GET_CONSUMER_LIST_BY_GROUP, {"consumerGroup": group})
        if head.get("code") != 0:
            return []  # "no consumer for this group"
        return list(_loads_fastjson(data).get("consumerIdList") or []) if data else []

    def max_offset(self, broker: str, topic: str, queue_id: int) -> int:
        head, _ = self._ok(broker, _GET_MAX_OFFSET, {"topic": topic, "queueId": queue_id})
        return int(head["extFields"]["offset"])

    def commit_offset(self, broker: str, group: str, topic: str, queue_id: int, offset: int) -> None:
        self._ok(broker, _UPDATE_CONSUMER_OFFSET,
                 {"consumerGroup": group, "topic": topic, "queueId": queue_id, "commitOffset": offset})

    def send(self, broker: str, topic: str, body: bytes, queue_id: int = 0) -> None:
        """One message straight to a broker (readiness probes; the bus sends with the client)."""
        self._ok(broker, _SEND_MESSAGE, {
            "producerGroup": "edgeim_admin", "topic": topic, "defaultTopic": "TBW102", "defaultTopicQueueNums": 4,
            "queueId": queue_id, "sysFlag": 0, "bornTimestamp": int(time.time() * 1000), "flag": 0,
            "properties": "", "reconsumeTimes": 0, "unitMode": False, "batch": False,
        }, body)


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        buf += chunk
    return bytes(buf)


_BARE_INT_KEY = re.compile(rb'([{,])(-?\d+):')


def _loads_fastjson(data: bytes) -> Any:
    """fastjson writes integer map keys bare (``{0:"addr"}``): quote them, then parse."""
    return json.loads(_BARE_INT_KEY.sub(rb'\1"\2":', data))


# -- the bus --------------------------------------------------------------------------------------

class _Seen:
    """Per publisher: the highest batch seq and the seqs seen within ``window`` below it."""

    __slots__ = ("high", "seqs")

    def __init__(self) -> None:
        self.high = 0
        self.seqs: set[int] = set()


class RocketMqBus:
    """``Bus`` on RocketMQ (see the module docstring for the design and its guarantees).

    ``namesrv`` is the name server address, ``host:port`` (several separated by ``;``).
    Counters for tests and metrics: ``broker_messages_sent``, ``envelopes_sent``,
    ``broker_messages_received``, ``duplicates_dropped``, ``envelopes_dropped``,
    ``send_failures``, ``consumer_restarts``.
    """

    def __init__(
        self,
        namesrv: str,
        *,
        topic_prefix: str = "edgeim_",
        create_topics: bool = True,
        queues: int = 4,
        send_timeout_ms: int = 3000,
        max_pending: int = 100_000,
        max_batch_bytes: int = 512 * 1024,
        max_message_bytes: int = 4 * 1024 * 1024 - 64 * 1024,
        dedup_window: int = 4096,
        max_publishers: int = 10_000,
        watch_interval: float = 2.0,
    ) -> None:
        self.namesrv = namesrv
        self.topic_prefix = topic_prefix
        self.create_topics = create_topics
        self.queues = queues
        self.send_timeout_ms = send_timeout_ms
        self.max_pending = max_pending
        self.max_batch_bytes = max_batch_bytes
        self.max_message_bytes = max_message_bytes  # the broker's default maxMessageSize is 4 MiB
        self.dedup_window = dedup_window
        self.max_publishers = max_publishers
        self.watch_interval = watch_interval
        self.incarnation = uuid.uuid4().hex[:16]
        self.admin = RocketMqAdmin(namesrv.split(";")[0])

        self.broker_messages_sent = 0
        self.envelopes_sent = 0
        self.broker_messages_received = 0
        self.duplicates_dropped = 0
        #: metrics: seconds from a batch's send (by its publisher) to its receipt here
        self.lag = Histogram(LAG_BUCKETS)
        self.envelopes_dropped = 0
        self.send_failures = 0
        self.consumer_restarts = 0
        #: metrics: batches after which this node saw a publisher's earlier batches missing
        self.gaps = 0
        self._consuming_since = 0.0

        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        # publish side (loop thread)
        self._outgoing: dict[str, list[Envelope]] = {}
        self._flush_scheduled = False
        self._topics: dict[str, str] = {}
        # sender thread
        self._queue: queue.SimpleQueue[tuple[str, list[Envelope]] | None] = queue.SimpleQueue()
        self._pending = 0  # envelopes handed to the sender thread and not yet sent or dropped
        self._pending_lock = threading.Lock()
        self._sender: threading.Thread | None = None
        self._producer: Any = None
        # sender thread: per target topic, the last seq used and when its batch was sent
        self._seqs: dict[str, int] = {}
        self._sent_at: dict[str, float] = {}
        #: topics whose envelopes were dropped before a send (a full queue): their next
        #: batch skips a seq, so the receiver sees the loss
        self._skipped: set[str] = set()
        self._last_failure_log = 0.0
        self._failures_unlogged = 0
        # consume side
        self._node: NodeId | None = None
        self._topic: str | None = None
        self._group: str | None = None
        self._brokers: dict[str, str] = {}
        self._receiver: Consumer | None = None  # set by start()
        self._consumer: Any = None
        self._consumer_lock = threading.Lock()  # the consumer is swapped by the watcher, taken by close
        self._consumer_generation = 0
        self._watcher: threading.Thread | None = None
        self._stop_watching = threading.Event()
        self._start_offsets: dict[int, int] = {}
        self._seen: collections.OrderedDict[str, _Seen] = collections.OrderedDict()
        self._decoder = msgspec.msgpack.Decoder(_Batch)

    # -- Bus ------------------------------------------------------------------------------

    async def start(self, node: NodeId, on_envelope: OnEnvelope) -> None:
        if self._closed:
            raise BusClosed("RocketMqBus is closed")
        if self._node is not None:
            raise RuntimeError(f"RocketMqBus already consumes {self._node!r}")
        self._loop = asyncio.get_running_loop()
        self._consuming_since = time.time()
        self._node, self._receiver = node, Consumer(node, on_envelope)
        self._topic = topic_for(node, self.topic_prefix)
        self._group = f"{self._topic[:200]}_{self.incarnation}"
        await asyncio.to_thread(self._prepare_offsets)
        try:
            self._consumer = await asyncio.to_thread(self._start_consumer)
        except BaseException:
            await asyncio.to_thread(self._delete_group)
            raise
        self._ensure_sender()
        if self.watch_interval > 0 and self._brokers:
            self._watcher = threading.Thread(target=self._watch, name=f"rocketmq-watch-{self.incarnation[:6]}",
                                             daemon=True)
            self._watcher.start()

    async def publish(self, node: NodeId, envelope: Envelope) -> None:
        if self._closed:
            raise BusClosed("RocketMqBus is closed")
        batch = self._outgoing.get(node)
        if batch is None:
            self._outgoing[node] = [envelope]
        else:
            batch.append(envelope)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            self._loop.call_soon(self._flush)

    async def ping(self) -> None:
        """Ask the name server for the master brokers, and each of them for this node's
        topic's offset, on a thread; each call gives up after ``admin.timeout`` seconds
        (a stopped or frozen broker raises ``RocketMqAdminError``)."""
        if self._closed:
            raise BusClosed("RocketMqBus is closed")
        await asyncio.to_thread(self._ping)

    def _ping(self) -> None:
        masters = self.admin.master_brokers()
        if not masters:
            raise RocketMqAdminError(f"the name server {self.admin.namesrv} knows no master broker")
        for addr in masters.values():  # any answer will do: the broker is there and answers
            self.admin.call(addr, _GET_MAX_OFFSET, {"topic": self._topic or "TBW102", "queueId": 0})

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._flush()  # what was published before close still goes
        self._stop_watching.set()
        if self._watcher is not None:
            await asyncio.to_thread(self._watcher.join)
        with self._consumer_lock:
            consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await asyncio.to_thread(_shutdown_consumer, consumer)
        if self._group is not None:
            await asyncio.to_thread(self._delete_group)
        if self._sender is not None:
            self._queue.put(None)
            await asyncio.to_thread(self._sender.join)
        if self._receiver is not None:
            await self._receiver.close()

    # -- publishing -------------------------------------------------------------------------

    def topic(self, node: str) -> str:
        topic = self._topics.get(node)
        if topic is None:
            topic = self._topics[node] = topic_for(node, self.topic_prefix)
        return topic

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._outgoing:
            return
        outgoing, self._outgoing = self._outgoing, {}
        self._ensure_sender()
        for node, envelopes in outgoing.items():
            n = len(envelopes)
            with self._pending_lock:
                if self._pending + n > self.max_pending:
                    self.envelopes_dropped += n
                    self._skipped.add(self.topic(node))
                    logger.warning("RocketMQ bus: %d envelopes wait for the broker; dropping %d for %s",
                                   self._pending, n, node)
                    continue
                self._pending += n
            self._queue.put((self.topic(node), envelopes))

    def _ensure_sender(self) -> None:
        if self._sender is None:
            self._sender = threading.Thread(target=self._send_loop, name=f"rocketmq-bus-{self.incarnation[:6]}",
                                            daemon=True)
            self._sender.start()

    def _send_loop(self) -> None:
        encoder = msgspec.msgpack.Encoder()
        stop = False
        try:
            while not stop:
                items = [self._queue.get()]
                while True:  # everything queued while the last send ran goes in this round
                    try:
                        items.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                by_topic: dict[str, list[Envelope]] = {}
                for item in items:
                    if item is None:
                        stop = True
                        continue
                    topic, envelopes = item
                    if topic in by_topic:
                        by_topic[topic].extend(envelopes)
                    else:
                        by_topic[topic] = list(envelopes)
                for topic, envelopes in by_topic.items():
                    self._send_topic(encoder, topic, envelopes)
                    with self._pending_lock:
                        self._pending -= len(envelopes)
        finally:
            producer, self._producer = self._producer, None
            if producer is not None:
                try:
                    producer.shutdown()  # never DestroyProducer: see the module docstring
                except Exception:
                    logger.exception("RocketMQ producer shutdown failed")

    def _send_topic(self, encoder: msgspec.msgpack.Encoder, topic: str, envelopes: list[Envelope]) -> None:
        pending = self._chunks(envelopes)
        pending.reverse()
        seq = self._seqs.get(topic, 0)
        if topic in self._skipped:
            self._skipped.discard(topic)
            seq += 1
        while pending:
            chunk = pending.pop()
            now = time.time()
            body = escape_nul(encoder.encode(_Batch(self.incarnation, seq + 1, chunk, now,
                                                    self._sent_at.get(topic, 0.0))))
            if len(body) > self.max_message_bytes:
                if len(chunk) > 1:  # the estimate was short: halve and try again
                    half = len(chunk) // 2
                    pending += [chunk[half:], chunk[:half]]
                    continue
                self.envelopes_dropped += 1
                logger.error("RocketMQ bus: an envelope of %d bytes encoded exceeds %d; dropped",
                             len(chunk[0].frame), self.max_message_bytes)
                seq += 1  # the receiver sees the gap
                continue
            seq += 1
            self._sent_at[topic] = now
            if self.send_body(topic, body):
                self.broker_messages_sent += 1
                self.envelopes_sent += len(chunk)
            else:
                self.envelopes_dropped += len(chunk)
        self._seqs[topic] = seq

    def _chunks(self, envelopes: list[Envelope]) -> list[list[Envelope]]:
        """Split at about ``max_batch_bytes`` of estimated encoded size (rarely needed)."""
        chunks: list[list[Envelope]] = [[]]
        size = 0
        for e in envelopes:
            cost = 96 + len(e.frame) + 9 * len(e.user_ids) + len(e.conv) + len(e.skip_terminal) + len(e.kick_terminal)
            if chunks[-1] and size + cost > self.max_batch_bytes:
                chunks.append([])
                size = 0
            chunks[-1].append(e)
            size += cost
        return chunks

    def send_body(self, topic: str, body: bytes) -> bool:
        """One broker message, on the sender thread (tests call it to replay a batch)."""
        from rocketmq.client import Message
        try:
            producer = self._get_producer()
            message = Message(topic)
            try:
                message.set_body(body)
                producer.send_orderly_with_sharding_key(message, self.incarnation)
            finally:
                message.destroy()
            return True
        except Exception as exc:
            self.send_failures += 1
            self._log_failure(topic, exc)
            return False

    def _get_producer(self) -> Any:
        if self._producer is None:
            from rocketmq.client import Producer
            producer = Producer(f"edgeim_pub_{self.incarnation}", orderly=True)
            producer.set_namesrv_addr(self.namesrv)
            producer.set_timeout(self.send_timeout_ms)
            producer.set_max_message_size(self.max_message_bytes)  # the client's default is 128 KiB
            _set_producer_instance(producer, f"edgeim-pub-{self.incarnation}")
            producer.start()
            self._producer = producer
        return self._producer

    def _log_failure(self, topic: str, exc: Exception) -> None:
        now = time.monotonic()
        self._failures_unlogged += 1
        if now - self._last_failure_log >= 5.0:
            logger.warning("RocketMQ bus: %d send(s) failed, pushes dropped (clients recover by sync); last to %s: %s",
                           self._failures_unlogged, topic, exc)
            self._last_failure_log = now
            self._failures_unlogged = 0

    # -- consuming --------------------------------------------------------------------------

    def _prepare_offsets(self) -> None:
        """Create the topic (if asked) and this incarnation's group, and commit the queues'
        current max offsets as the group's offsets: consumption starts at the latest."""
        assert self._topic is not None and self._group is not None
        topic, group = self._topic, self._group
        if self.create_topics:
            route = self.admin.route(topic)
            if route is None or not route.get("queueDatas"):
                for broker in self.admin.master_brokers().values():
                    self.admin.create_topic(broker, topic, self.queues)
                self.admin.wait_route(topic)
        route = self.admin.route(topic)
        if route is None:
            return  # no topic yet: everything it will ever hold is newer than this start
        for data in route.get("brokerDatas") or []:
            addr = (data.get("brokerAddrs") or {}).get("0")
            if addr:
                self._brokers[data["brokerName"]] = addr
        for qd in route.get("queueDatas") or []:
            addr = self._brokers.get(qd["brokerName"])
            if addr is None:
                continue
            self.admin.create_group(addr, group)
            for queue_id in range(int(qd.get("readQueueNums", 0))):
                offset = self.admin.max_offset(addr, topic, queue_id)
                self.admin.commit_offset(addr, group, topic, queue_id, offset)
                # several brokers: keep the lowest, so the filter never drops a new message
                self._start_offsets[queue_id] = min(offset, self._start_offsets.get(queue_id, offset))

    def _start_consumer(self) -> Any:
        from rocketmq.client import ConsumeStatus, PushConsumer
        assert self._topic is not None and self._group is not None
        consumer = PushConsumer(self._group)
        consumer.set_namesrv_addr(self.namesrv)
        self._consumer_generation += 1
        consumer.set_instance_name(f"edgeim-sub-{self.incarnation}-{self._consumer_generation}")
        consumer.set_thread_count(1)  # one consuming thread: a queue's messages in order
        success = ConsumeStatus.CONSUME_SUCCESS

        def on_message(message: Any) -> int:
            try:
                self._on_message(message)
            except Exception:
                logger.exception("RocketMQ bus: a message could not be handled; dropped")
            return success

        consumer.subscribe(self._topic, on_message)
        try:
            consumer.start()
        except BaseException:
            _shutdown_consumer(consumer)
            raise
        return consumer

    def _watch(self) -> None:
        """A broker that restarted has forgotten this consumer, and the client library only
        tells it again with its next heartbeat (every 30 s): until then the broker assigns
        the group no queue and nothing is consumed. Every ``watch_interval`` ask each broker
        whether it counts this group's consumer; if one answers no twice in a row, start the
        consumer again (same group: it resumes at the offsets the broker kept; the few it
        may redeliver are deduplicated)."""
        misses = 0
        while not self._stop_watching.wait(self.watch_interval):
            try:
                forgotten = any(not self.admin.consumer_ids(addr, self._group or "") for addr in self._brokers.values())
            except RocketMqAdminError:
                misses = 0  # the broker is down: nothing to fix until it is back
                continue
            misses = misses + 1 if forgotten else 0
            if misses < 2:
                continue
            misses = 0
            logger.warning("RocketMQ bus: the broker lost the consumer of %s; starting it again", self._topic)
            with self._consumer_lock:
                if self._stop_watching.is_set():
                    return
                old, self._consumer = self._consumer, None
                try:
                    if old is not None:
                        _shutdown_consumer(old)
                    self._consumer = self._start_consumer()
                    self.consumer_restarts += 1
                except Exception:
                    logger.exception("RocketMQ bus: restarting the consumer of %s failed; retrying", self._topic)

    def _on_message(self, message: Any) -> None:
        """On the consumer's native thread: filter, decode, dedup, then one hop to the loop."""
        if self._closed:
            return
        start = self._start_offsets.get(message.queue_id)
        if start is not None and message.queue_offset < start:
            return  # published before this incarnation started
        self.broker_messages_received += 1
        batch = self._decoder.decode(unescape_nul(message.body))
        lost = self._lost_before(batch)
        if not self._first_time(batch.publisher, batch.seq):
            self.duplicates_dropped += 1
            return
        if lost:
            self.gaps += 1
            batch.envelopes.insert(0, Envelope(b"", lost=True))
        if batch.sent_at:  # (clocks of two machines: NTP-close, and never below 0 here)
            self.lag.observe(max(0.0, time.time() - batch.sent_at))
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._deliver, batch.envelopes)
        except RuntimeError:  # the loop is closed: nobody to deliver to
            pass

    def _lost_before(self, batch: _Batch) -> bool:
        """Did batches of this publisher to this node go missing before ``batch``? A gap
        in its sequence, or, from a publisher not seen yet, an earlier batch it sent after
        this node started consuming (older ones were for an earlier run of this node)."""
        seen = self._seen.get(batch.publisher)
        if seen is not None:
            return batch.seq > seen.high + 1
        return batch.seq > 1 and batch.prev_at > self._consuming_since + CLOCK_MARGIN

    def _first_time(self, publisher: str, seq: int) -> bool:
        seen = self._seen.get(publisher)
        if seen is None:
            seen = self._seen[publisher] = _Seen()
            if len(self._seen) > self.max_publishers:
                self._seen.popitem(last=False)
        else:
            self._seen.move_to_end(publisher)
        floor = seen.high - self.dedup_window
        if seq <= floor or seq in seen.seqs:
            return False
        seen.seqs.add(seq)
        if seq > seen.high:
            seen.high = seq
            if len(seen.seqs) > 2 * self.dedup_window:
                floor = seq - self.dedup_window
                seen.seqs = {s for s in seen.seqs if s > floor}
        return True

    def _deliver(self, envelopes: list[Envelope]) -> None:
        for envelope in envelopes:
            if self._closed or self._receiver is None:
                return
            self._receiver.deliver(envelope)

    def _delete_group(self) -> None:
        for addr in self._brokers.values():
            try:
                self.admin.delete_group(addr, self._group or "")
            except RocketMqAdminError as exc:
                logger.info("RocketMQ bus: could not delete group %s on %s: %s", self._group, addr, exc)


def _shutdown_consumer(consumer: Any) -> None:
    try:
        consumer.shutdown()
    finally:
        consumer.destroy()  # the callback (kept in consumer._callback_refs) outlives the native consumer


def _set_producer_instance(producer: Any, name: str) -> None:
    """Each bus gets a client instance of its own (the wrapper has no setter for it)."""
    from rocketmq.ffi import dll
    dll.SetProducerInstanceName(producer._handle, name.encode())
