"""The backend contracts: store, routes, bus. Each is a small ``typing.Protocol`` with an
embedded default (SQLite, memory, in-process) and, later, a cluster implementation
(TiDB/MySQL, Redis, RocketMQ). One contract suite (tests/backends/) runs against every
implementation; the guarantees stated here are what that suite checks.

The records are frozen msgspec Structs, not dataclasses: several are built per message,
and a Struct is built about ten times faster than a frozen dataclass.
"""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, NewType, Protocol, Sequence

import msgspec

__all__ = [
    "UserId", "NodeId", "ConvId",
    "User", "NewMessage", "StoredMessage", "Conversation", "Route", "Envelope",
    "Store", "Routes", "Bus",
    "UsernameTaken", "StoreClosed",
]

UserId = NewType("UserId", int)
NodeId = NewType("NodeId", str)
ConvId = NewType("ConvId", str)


class UsernameTaken(Exception):
    """``Store.create_user`` was given a username that already exists."""


class StoreClosed(RuntimeError):
    """The store is not open: ``open()`` was not called, or ``close()`` was."""


class User(msgspec.Struct, frozen=True):
    id: UserId
    username: str
    password_hash: str
    nickname: str
    created_at: int  # unix ms


class NewMessage(msgspec.Struct, frozen=True):
    """A message as the sender's node accepted it, before it has a seq or an id."""

    conv: ConvId
    sender: UserId
    to: UserId  # receiver user (1:1); a group id once groups exist
    cmid: str  # client message id: (sender, cmid) is unique
    type: int
    content: str
    msg_id: int  # unique id proposed by the node (kept unless (sender, cmid) already exists)
    ts: int  # server time, unix ms


class StoredMessage(msgspec.Struct, frozen=True):
    id: int
    conv: ConvId
    seq: int
    sender: UserId
    to: UserId
    cmid: str
    type: int
    content: str
    ts: int
    duplicate: bool = False  # True when (sender, cmid) was already stored: this is that row


class Conversation(msgspec.Struct, frozen=True):
    conv: ConvId
    peer: UserId
    last_seq: int
    last_ts: int


class Store(Protocol):
    """Durable state: users and messages.

    Guarantees:
    - ``append`` returns only after the message is durable (committed; for SQLite, WAL
      fsync'd per the configured sync mode) and never blocks the event loop: writes are
      batched into one transaction per batch (group commit) on a writer thread.
    - Within a conversation, seqs are assigned 1, 2, 3, ... strictly increasing with no gap
      among committed messages, in the order the store accepted them.
    - Messages are sequenced in the order ``submit`` is called (``append`` is
      ``await submit(...)``): a caller that submits in order gets seqs in that order.
    - ``append`` is idempotent on (sender, cmid): a second append of the same pair stores
      nothing and returns the first row with ``duplicate=True``; safe to retry.
    """

    async def open(self) -> None:
        """Create or migrate the schema; start the writer."""

    async def close(self) -> None:
        """Commit every append already accepted, then release resources."""

    async def create_user(self, username: str, password_hash: str, nickname: str) -> User:
        """Raises ``UsernameTaken``."""

    async def get_user(self, user_id: UserId) -> User | None: ...

    async def get_user_by_name(self, username: str) -> User | None: ...

    def submit(self, message: NewMessage) -> asyncio.Future[StoredMessage]:
        """Accept one message for the next batch, now, without yielding; the future
        resolves once it is durable (see the class guarantees). Raises StoreClosed."""

    async def append(self, message: NewMessage) -> StoredMessage:
        """``await submit(message)``."""

    async def messages_after(self, conv: ConvId, after_seq: int, limit: int) -> list[StoredMessage]:
        """Messages with seq > after_seq, ascending, at most ``limit``."""

    async def messages_before(self, conv: ConvId, before_seq: int, limit: int) -> list[StoredMessage]:
        """Messages with seq < before_seq (0: no bound), the newest ``limit`` of them, ascending."""

    async def conversations(self, user_id: UserId) -> list[Conversation]:
        """Every conversation the user takes part in, most recent first."""


class Route(msgspec.Struct, frozen=True):
    user_id: UserId
    terminal: str
    node: NodeId


class Routes(Protocol):
    """Where each (user, terminal) is connected: the presence map of the cluster.

    Guarantees: an entry lives ``ttl`` seconds unless ``renew`` is called (heartbeats
    renew it); ``bind`` replaces the entry for the same (user, terminal) atomically and
    returns the one it replaced; ``unbind`` removes the entry only if it still names the
    given node (a late unbind never removes a newer login's route).
    """

    async def bind(self, user_id: UserId, terminal: str, node: NodeId, ttl: float) -> Route | None: ...

    async def renew(self, user_id: UserId, terminal: str, node: NodeId, ttl: float) -> bool:
        """Extend the TTL; False if the entry is gone or names another node."""

    async def unbind(self, user_id: UserId, terminal: str, node: NodeId) -> bool: ...

    async def lookup(self, user_ids: Sequence[UserId]) -> list[Route]:
        """Live routes of these users (every terminal), in no particular order."""

    async def close(self) -> None: ...


class Envelope(msgspec.Struct, frozen=True):
    """What one node hands another: an encoded frame and the local users to give it to.

    ``frame`` is sent as is to every session of ``user_ids`` on the receiving node,
    except the session (``skip_user``, ``skip_terminal``) that originated it. A KICK
    envelope (``kick_terminal`` set) closes that user's session on that terminal.
    """

    frame: bytes
    user_ids: tuple[UserId, ...]
    skip_user: UserId = UserId(0)
    skip_terminal: str = ""
    kick_terminal: str = ""


class Bus(Protocol):
    """Node-to-node delivery: one topic per node.

    Guarantees: ``publish`` to a node is called once per target node per fanout, never
    once per receiver; delivery is at-most-once and per-publisher FIFO (a lost push is
    recovered by the client's sync, which is why messages are durable before they fan out).
    """

    async def start(self, node: NodeId, on_envelope: Callable[[Envelope], Awaitable[None] | None]) -> None:
        """Begin consuming this node's topic; ``on_envelope`` runs on the event loop."""

    async def publish(self, node: NodeId, envelope: Envelope) -> None: ...

    async def close(self) -> None: ...
