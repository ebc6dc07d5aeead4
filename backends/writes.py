"""The caller's side of a store's writer thread, shared by the stores that have one
(SqliteStore, MysqlStore): the records of queued writes, the hand-over of everything
written in one loop iteration to the writer in one put, and the settling of a batch on
its loops with one wake-up per loop.

A write is settled through its *sink*: a callable that takes the outcomes of a run of
writes, ``[(ticket, result, error), ...]``, in commit order. ``submit``/``apply`` use
futures (the ticket is the future, the sink resolves it); the message pipeline hands its
own sink to ``enqueue`` and gets a whole batch of messages in one call, with no future
and no wake-up per message (services/pipeline.py).

A store keeps its own writer thread and transactions; what it inherits here is only how
writes reach that thread and how their futures come back.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import msgspec

from ..ops.metrics import LATENCY_BUCKETS, SIZE_BUCKETS, Histogram
from .protocols import Change, NewMessage, StoreClosed, StoredMessage, User

log = logging.getLogger("edgeim.store")

__all__ = ["Append", "CreateUser", "Apply", "Op", "Outcome", "Sink", "STOP", "WriteQueue", "resolve", "settle"]


Outcome = tuple[Any, Any, "BaseException | None"]  # (ticket, result, error)
#: settles a run of writes on their loop: the outcomes in commit order
Sink = Callable[[list[Outcome]], None]


class Append(msgspec.Struct, gc=False):
    """A message to append (one per SEND: a Struct, whose construction is C, not the
    Python ``__init__`` of a dataclass). Not tracked by the collector: nothing it refers to
    refers back to it but the queue's list that carries it to the writer, which drops it."""

    message: NewMessage
    ticket: Any  # what the sink gets back with the stored row
    sink: Sink
    loop: asyncio.AbstractEventLoop


@dataclass(slots=True)
class CreateUser:
    username: str
    password_hash: str
    nickname: str
    created_at: int  # unix ms
    ticket: asyncio.Future[User]
    sink: Sink
    loop: asyncio.AbstractEventLoop


@dataclass(slots=True)
class Apply:
    change: Change
    ticket: asyncio.Future[Any]
    sink: Sink
    loop: asyncio.AbstractEventLoop


Op = Append | CreateUser | Apply
#: queued by close(): the writer commits what precedes it, then exits
STOP = object()


class WriteQueue:
    """``submit``, ``append``, ``apply`` and ``create_user`` of the Store Protocol, queueing
    records for the writer thread, which takes lists of them (or STOP) from ``_queue``.

    A subclass sets ``_accepting`` (True while open), ``_closed``, its writer thread
    ``_writer`` and ``_writer_done`` (set when the thread ends), and stops the writer with
    ``_stop_writer()``, so that nothing accepted is left behind.
    """

    _accepting: bool
    _closed: bool
    _writer: threading.Thread | None
    _writer_done: concurrent.futures.Future[None]

    def __init__(self) -> None:
        # lists of ops (or STOP): the loop hands over everything submitted in one loop
        # iteration at once, so the writer thread is woken once per iteration, not per op
        self._queue: queue.SimpleQueue[list[Op] | object] = queue.SimpleQueue()
        self._handover: list[Op] = []
        #: metrics (ops/metrics.py), filled by the writer thread: writes per transaction, and
        #: seconds from a batch handed to the writer's loop to its waiters woken
        self.batch_sizes = Histogram(SIZE_BUCKETS)
        self.commit_seconds = Histogram(LATENCY_BUCKETS)
        #: the loop that opened the store, where ``enqueue``'s sinks run
        self._loop: asyncio.AbstractEventLoop | None = None

    async def create_user(self, username: str, password_hash: str, nickname: str) -> User:
        """Durable when it returns. Raises ``UsernameTaken``."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[User] = loop.create_future()
        self._enqueue(CreateUser(username, password_hash, nickname, time.time_ns() // 1_000_000, future, resolve,
                                 loop))
        return await future

    def submit(self, message: NewMessage) -> asyncio.Future[StoredMessage]:
        """Queued when it returns; the future resolves once committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[StoredMessage] = loop.create_future()
        self._enqueue(Append(message, future, resolve, loop))
        return future

    def enqueue(self, message: NewMessage, ticket: Any, sink: Sink) -> None:
        """Queued when it returns; once its batch is committed, ``sink`` gets
        ``(ticket, row, None)`` (or ``(ticket, None, error)``) on the loop that opened the
        store, in one call with the batch's other writes of the same sink, in commit
        order. (That loop is kept: on Python 3.11 ``asyncio.get_running_loop()`` makes a
        getpid system call, one per SEND here.)"""
        loop = self._loop
        if loop is None or not self._accepting:
            raise StoreClosed(f"{self!r} is {'closed' if self._closed else 'not open'}")
        handover = self._handover  # (``_enqueue`` spelled out: this runs for every SEND)
        handover.append(Append(message, ticket, sink, loop))
        if len(handover) == 1:
            loop.call_soon(self._hand_over)

    async def append(self, message: NewMessage) -> StoredMessage:
        """Durable when it returns. If the caller is cancelled, the message may still be
        stored: retrying with the same cmid is safe."""
        return await self.submit(message)

    def apply(self, change: Change) -> asyncio.Future[Any]:
        """Queued when it returns, in order with messages; resolves once committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._enqueue(Apply(change, future, resolve, loop))
        return future

    def _enqueue(self, op: Op) -> None:
        if not self._accepting:
            raise StoreClosed(f"{self!r} is {'closed' if self._closed else 'not open'}")
        self._handover.append(op)
        if len(self._handover) == 1:
            op.loop.call_soon(self._hand_over)

    def _hand_over(self) -> None:
        if self._handover:
            ops, self._handover = self._handover, []
            self._queue.put(ops)

    async def _start_writer(self, name: str, main: Callable[[concurrent.futures.Future[None]], None]) -> None:
        """Start the writer thread ``main(ready)`` and wait until it sets ``ready`` (its
        schema is in place); if that fails or is cancelled, stop it, mark the store
        closed and raise."""
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._loop = asyncio.get_running_loop()
        # daemon: a forgotten close() must not hang interpreter exit; what it drops was
        # never acknowledged, since acknowledgements follow commits
        self._writer = threading.Thread(target=main, args=(ready,), name=name, daemon=True)
        self._writer.start()
        try:
            await asyncio.wrap_future(ready)
        except BaseException:
            self._queue.put(STOP)
            await asyncio.wrap_future(self._writer_done)
            self._writer.join()
            self._closed = True
            raise

    async def _stop_writer(self) -> None:
        """For close(): hand over what is still queued, then STOP; wait until the writer
        has committed everything before it and ended."""
        if self._writer is not None:
            self._hand_over()
            self._queue.put(STOP)  # FIFO: everything queued before it is committed first
            await asyncio.wrap_future(self._writer_done)
            self._writer.join()

    def _batches(self, batch_max: int, wait: Callable[[], float | None] = lambda: None) -> Iterator[list[Op]]:
        """On the writer thread: the batches to commit, each at most ``batch_max`` ops: it
        blocks for the first hand-over, then takes whatever else is waiting; it ends after
        the batches queued before STOP. When ``wait()`` gives a number of seconds and
        nothing came in that time, it yields an empty batch (the store's own work is due)."""
        get, get_nowait = self._queue.get, self._queue.get_nowait
        stopping = False
        while not stopping:
            ops: list[Op] = []
            try:
                item = get(timeout=wait())
            except queue.Empty:
                yield ops
                continue
            while True:
                if item is STOP:
                    stopping = True
                    break
                ops.extend(item)  # type: ignore[arg-type]
                if len(ops) >= batch_max:
                    break
                try:
                    item = get_nowait()
                except queue.Empty:
                    break
            for start in range(0, len(ops), batch_max):
                batch = ops[start:start + batch_max]
                began = time.perf_counter()
                yield batch  # resumed when the caller has committed it and settled its futures
                self.commit_seconds.observe(time.perf_counter() - began)
                self.batch_sizes.observe(len(batch))


def settle(batch: list[Op], outcomes: list[Outcome]) -> None:
    """From the writer thread: settle one batch with one wake-up per event loop, not one
    per write. On the loop, each run of consecutive writes with the same sink goes to
    that sink in one call, in commit order (a change and the messages after it stay in
    order)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Sink, list[Outcome]]]] = {}
    for op, outcome in zip(batch, outcomes):
        runs = by_loop.get(op.loop)
        if runs is None:
            runs = by_loop[op.loop] = []
        if runs and runs[-1][0] is op.sink:
            runs[-1][1].append(outcome)
        else:
            runs.append((op.sink, [outcome]))
    for loop, runs in by_loop.items():
        try:
            loop.call_soon_threadsafe(_dispatch, runs)
        except RuntimeError:  # that loop is closed: nobody is waiting any more
            pass


def _dispatch(runs: list[tuple[Sink, list[Outcome]]]) -> None:
    for sink, outcomes in runs:
        try:
            sink(outcomes)
        except Exception:  # one sink's bug must not leave the others' writes unsettled
            log.exception("settling a batch failed", extra={"writes": len(outcomes)})


def resolve(outcomes: list[Outcome]) -> None:
    """On the event loop: settle the futures (skipping those whose caller was cancelled;
    their writes may still be committed)."""
    for future, result, error in outcomes:
        if future.done():
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)
