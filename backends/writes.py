"""The caller's side of a store's writer thread, shared by the stores that have one
(SqliteStore, MysqlStore): the records of queued writes, the hand-over of everything
written in one loop iteration to the writer in one put, and the settling of a batch's
futures on their loops with one wake-up per loop.

A store keeps its own writer thread and transactions; what it inherits here is only how
writes reach that thread and how their futures come back.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from ..ops.metrics import LATENCY_BUCKETS, SIZE_BUCKETS, Histogram
from .protocols import Change, NewMessage, StoreClosed, StoredMessage, User

__all__ = ["Append", "CreateUser", "Apply", "Op", "Outcome", "STOP", "WriteQueue", "settle"]


@dataclass(slots=True)
class Append:
    message: NewMessage
    future: asyncio.Future[StoredMessage]
    loop: asyncio.AbstractEventLoop


@dataclass(slots=True)
class CreateUser:
    username: str
    password_hash: str
    nickname: str
    created_at: int  # unix ms
    future: asyncio.Future[User]
    loop: asyncio.AbstractEventLoop


@dataclass(slots=True)
class Apply:
    change: Change
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


Op = Append | CreateUser | Apply
Outcome = tuple[asyncio.Future[Any], Any, BaseException | None]  # (future, result, error)
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

    async def create_user(self, username: str, password_hash: str, nickname: str) -> User:
        """Durable when it returns. Raises ``UsernameTaken``."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[User] = loop.create_future()
        self._enqueue(CreateUser(username, password_hash, nickname, time.time_ns() // 1_000_000, future, loop))
        return await future

    def submit(self, message: NewMessage) -> asyncio.Future[StoredMessage]:
        """Queued when it returns; the future resolves once committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[StoredMessage] = loop.create_future()
        self._enqueue(Append(message, future, loop))
        return future

    async def append(self, message: NewMessage) -> StoredMessage:
        """Durable when it returns. If the caller is cancelled, the message may still be
        stored: retrying with the same cmid is safe."""
        return await self.submit(message)

    def apply(self, change: Change) -> asyncio.Future[Any]:
        """Queued when it returns, in order with messages; resolves once committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._enqueue(Apply(change, future, loop))
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

    def _batches(self, batch_max: int) -> Iterator[list[Op]]:
        """On the writer thread: the batches to commit, each at most ``batch_max`` ops: it
        blocks for the first hand-over, then takes whatever else is waiting; it ends after
        the batches queued before STOP."""
        get, get_nowait = self._queue.get, self._queue.get_nowait
        stopping = False
        while not stopping:
            ops: list[Op] = []
            item = get()
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
    """From the writer thread: resolve the futures of one batch, with one wake-up per
    event loop instead of one per write."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
    for op, outcome in zip(batch, outcomes):
        by_loop.setdefault(op.loop, []).append(outcome)
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, items)
        except RuntimeError:  # that loop is closed: nobody is waiting any more
            pass


def _resolve(outcomes: list[Outcome]) -> None:
    """On the event loop: settle the futures (skipping those whose caller was cancelled;
    their writes may still be committed)."""
    for future, result, error in outcomes:
        if future.done():
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)
