"""The one owner of a message's life, from admitted to every socket.

A message is admitted by ``Messages`` (who may send, ids, the checks) and handed here:

1. **append**: ``Store.enqueue`` queues it for the next group commit; no future, no task;
2. **durable**: the store settles a whole batch with one call of ``on_committed`` on the
   loop, in commit order; for each message, in one loop:
   - the sender's SEND_ACK (never before the commit: invariant 1),
   - the conversation's head and the list state (``Conversations.committed``),
   - the push, encoded once (``frames.message_frame``), queued on the local sessions at
     once and handed to ``Delivery`` for the other nodes, with the stored message beside
     the frame (other nodes take their state from that record, not from the bytes).

SEND (1:1 and group, replies included), FORWARD's copies (``forward``), a recall's tombstone,
an edit, a call's record and any message the server writes go through here; the edge parses
frames and hands the replies back, and holds no after-commit logic. A connection's sends are enqueued in the order it sent them and the
store commits in enqueue order, so its acks come back in that order; a retried send
(same cmid) is acked with the stored ids and not pushed again.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

from ..backends.protocols import ConvId, NewMessage, Store, StoreClosed, StoredMessage, UserId
from ..core_ext.errors import FrameError, Unavailable
from ..core_ext.frames import message_frame, settle_sends
from ..core_ext.bodies import SendAck, decode
from ..core_ext.protocol import HEADER_SIZE, Op
from ..ops.metrics import EDGE, LATENCY_BUCKETS, Histogram
from .conversations import Conversations, is_group
from .delivery import Delivery

__all__ = ["Origin", "Pipeline"]

log = logging.getLogger("edgeim.pipeline")

_MSG_PUSH = int(Op.MSG_PUSH)
_RECALL_PUSH = int(Op.RECALL_PUSH)
_EDIT_PUSH = int(Op.EDIT_PUSH)


class Origin(Protocol):
    """The connection a SEND came from (the edge's session): where its ack goes, and
    whose devices a push skips."""

    user_id: UserId
    terminal: str
    in_flight: int

    def send_frame(self, frame: bytes) -> None: ...

    def fail(self, op: int, req_id: int, exc: BaseException) -> None: ...


class _Forwarding:
    """The origin of a FORWARD's copies in ``settle_sends``: it gathers their acks (request
    id = the copy's index) instead of sending them, and skips the forwarding device in
    their pushes as a SEND's origin does."""

    def __init__(self, origin: Origin, count: int) -> None:
        self.user_id = origin.user_id
        self.terminal = origin.terminal
        self.in_flight = 0
        self.done: asyncio.Future[list[SendAck]] = asyncio.get_running_loop().create_future()
        self._stored: list[SendAck | None] = [None] * count
        self._left = count

    def send_frame(self, frame: bytes) -> None:
        ack = decode(frame[HEADER_SIZE:], SendAck)
        index = int.from_bytes(frame[4:8], "little")
        self._stored[index] = ack
        self._left -= 1
        if not self._left and not self.done.done():
            self.done.set_result(self._stored)  # type: ignore[arg-type]

    def fail(self, op: int, req_id: int, exc: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(exc)


class Pipeline:
    def __init__(self, store: Store, conversations: Conversations, delivery: Delivery) -> None:
        self._store = store
        self._conversations = conversations
        self._delivery = delivery
        self._sink = self.on_committed  # bound once: the store keeps it with every message
        #: metrics: SENDs acknowledged (always: the node registry's messages/s) and, while
        #: metrics are on, SEND to SEND_ACK seconds
        self.acked = 0
        self.send_latency = Histogram(LATENCY_BUCKETS)
        self._timed: list[float] = []  # a batch's SEND start times (settle_sends fills it)

    # -- in -------------------------------------------------------------------------------------

    def send(self, origin: Origin, req_id: int, message: NewMessage) -> None:
        """Append a checked SEND; its ack and push follow the commit (``on_committed``).
        UNAVAILABLE when the store no longer takes writes (the node is stopping)."""
        try:  # (``_enqueue`` spelled out: this runs for every SEND)
            self._store.enqueue(message, (origin, req_id, time.perf_counter() if EDGE.on else 0.0), self._sink)
        except StoreClosed:
            raise Unavailable("the node is shutting down") from None
        origin.in_flight += 1

    def forward(self, origin: Origin, messages: list[NewMessage]) -> asyncio.Future[list[SendAck]]:
        """Append a FORWARD's checked copies as SENDs of ``origin``, but for their acks:
        the future resolves to them, in order, once every copy is durable (or to the first
        failure). Each copy is pushed as any new message (a retried copy is not)."""
        forwarding = _Forwarding(origin, len(messages))
        for i, message in enumerate(messages):
            self._enqueue(message, (forwarding, i, 0.0))
            forwarding.in_flight += 1
        return forwarding.done

    def record(self, message: NewMessage) -> None:
        """Append a message the server writes (a call record): unchecked, idempotent on
        (sender, cmid) like every append, pushed to every device of its members."""
        self._enqueue(message, None)

    def _enqueue(self, message: NewMessage, ticket: Any) -> None:
        try:
            self._store.enqueue(message, ticket, self._sink)
        except StoreClosed:
            raise Unavailable("the node is shutting down") from None

    # -- durable ----------------------------------------------------------------------------------

    def on_committed(self, outcomes: list[tuple[Any, StoredMessage | None, BaseException | None]]) -> None:
        """A commit's messages, in commit order (the store's sink): ack, state, push, in one
        compiled loop (``frames.settle_sends``); then the timed SENDs' latencies, against one
        clock reading (their acks go out together, at the loop's next flush)."""
        timed = self._timed
        self.acked += settle_sends(outcomes, self._conversations.committed, self._pushed, self._failed, timed)
        if timed:
            self.send_latency.observe_since(time.perf_counter(), timed)
            timed.clear()

    @staticmethod
    def _failed(stored: StoredMessage, exc: BaseException, pushing: bool) -> None:
        """A new message's lists (``Conversations.committed``) or push failed. It is durable
        and acked: the lists catch up at the next load, the receivers sync it. Logged, and
        the rest of the batch goes on."""
        where = {"conv": stored.conv, "seq": stored.seq}
        if not pushing:
            log.error("the lists could not follow a message", exc_info=exc, extra=where)
        elif isinstance(exc, FrameError):  # stored and acked, but too large for a push
            log.warning("a message is too large to push", extra=where)
        else:
            log.error("a push failed", exc_info=exc, extra=where)

    def _pushed(self, stored: StoredMessage, origin: Origin | None) -> None:
        """A new message to every device of its conversation but the sending one."""
        if origin is None:
            self._push(_MSG_PUSH, stored, 0, "")
        else:
            self._push(_MSG_PUSH, stored, origin.user_id, origin.terminal)

    def recalled(self, tombstone: StoredMessage, by: Origin) -> None:
        """A recall is durable: the lists' previews and every device but ``by`` follow."""
        self._conversations.recalled(tombstone)
        self._push(_RECALL_PUSH, tombstone, by.user_id, by.terminal)

    def edited(self, message: StoredMessage, by: Origin) -> None:
        """An edit is durable: the lists' previews and every device but ``by`` follow, on
        every node (EDIT_PUSH, once per device)."""
        self._conversations.edited(message)
        self._push(_EDIT_PUSH, message, by.user_id, by.terminal)

    def _push(self, op: int, stored: StoredMessage, skip_user: int, skip_terminal: str) -> None:
        """``stored`` to every device of its conversation's members but (skip_user,
        skip_terminal): one frame for all of them."""
        frame = message_frame(op, stored)  # (no NewType calls, no is_group: this runs for every message)
        if stored.conv[:1] == "g":
            self._delivery.to_conv(frame, stored.conv, skip_user, skip_terminal, message=stored)
        else:
            self._delivery.to_users(frame, (stored.to, stored.sender), skip_user, skip_terminal,  # type: ignore[arg-type]
                                    message=stored)

    def repush(self, heads: list[StoredMessage]) -> None:
        """After pushes from other nodes were lost: each conversation head that moved when
        this node read its state again goes to the local devices of its members but its
        sender (whose device that sent it had the ack; an SDK would take its own message
        for a new one). A client that sees a seq past the one it has syncs the gap; one
        that has it drops it."""
        for head in heads:
            try:
                frame = message_frame(_RECALL_PUSH if head.recalled_by else _MSG_PUSH, head)
            except FrameError:  # too large to push: the client finds it at its next sync
                continue
            if is_group(head.conv):
                self._delivery.to_conv(frame, ConvId(head.conv), skip_users=(head.sender,), local=True)
            else:
                self._delivery.to_users(frame, (UserId(head.to),), local=True)

    # -- from other nodes -------------------------------------------------------------------------

    def on_remote(self, stored: StoredMessage) -> None:
        """A message committed, recalled or edited on another node: this node's heads and lists
        follow, as the committing node's did."""
        if stored.recalled_by:
            self._conversations.recalled(stored)
        elif stored.edited_at:  # an edit (a new message is never edited yet)
            self._conversations.edited(stored)
        else:
            self._conversations.committed(stored)
