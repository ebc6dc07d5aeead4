"""Unique 64-bit message ids: 41 bits of milliseconds since 2025-01-01, 10 bits of
node number, 12 bits of sequence within the millisecond. Ids from one node increase
strictly, also if the wall clock steps back; two nodes never collide while their node
numbers differ, which the lease of node numbers in the routes guarantees.

Fencing: a node mints ids only while it can show that its number's lease is valid. The
lease is judged by the routes' clock; the node keeps a lower bound of its expiry on its
own monotonic clock (the time it *sent* the lease or renewal request, plus the TTL, minus
a margin), and ``IdGenerator.next`` refuses (``Unavailable``, 5001) once that bound has
passed without a successful renewal: a node frozen past its lease, or cut off from the
routes, stops minting before another node can have taken its number.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Callable

from ..backends.protocols import NodeId, Routes
from ..core_ext.errors import Unavailable

__all__ = ["IdGenerator", "NumberLease", "NODE_NUMBERS", "LEASE_MARGIN"]

log = logging.getLogger("edgeim.ids")

EPOCH_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z
_SEQ_BITS = 12
_NODE_BITS = 10
_SEQ_MASK = (1 << _SEQ_BITS) - 1
#: how many node numbers there are (10 bits)
NODE_NUMBERS = 1 << _NODE_BITS
#: seconds taken off a lease's TTL when the node computes how long it may mint: room for
#: the node's and the routes server's clocks running at slightly different rates
LEASE_MARGIN = 1.0


class IdGenerator:
    """Message ids of one node. ``clock`` (monotonic seconds) judges the fence: ``next``
    raises ``Unavailable`` at and after ``valid_until`` (by default never: a generator
    nobody fences, as in unit tests)."""

    __slots__ = ("_node", "_last_ms", "_seq", "_valid_until", "_clock")

    def __init__(self, node: int = 0, *, clock: Callable[[], float] = time.monotonic,
                 valid_until: float = math.inf) -> None:
        self._node = 0
        self.set_node(node)
        self._last_ms = 0
        self._seq = 0
        self._clock = clock
        self._valid_until = valid_until

    @property
    def node(self) -> int:
        return self._node >> _SEQ_BITS

    @property
    def valid_until(self) -> float:
        """When (on ``clock``) minting stops unless the lease is renewed before."""
        return self._valid_until

    @property
    def fenced(self) -> bool:
        """True while ``next`` refuses: the lease is not known to be valid."""
        return self._clock() >= self._valid_until

    def set_node(self, node: int) -> None:
        """The node number, leased from the routes when the node starts (``Routes.lease_number``):
        two live nodes never hold the same one, so their ids never collide."""
        if not 0 <= node < NODE_NUMBERS:
            raise ValueError("node number must fit in 10 bits")
        self._node = node << _SEQ_BITS

    def fence(self, valid_until: float) -> None:
        """Mint only before ``valid_until`` (on ``clock``): what a successful lease or renewal
        proves (``NumberLease``)."""
        self._valid_until = valid_until

    def next(self, now_ms: int = 0) -> int:
        """The next id; raises ``Unavailable`` (5001: the client retries with the same cmid)
        while the lease of the node number is not known to be valid. ``now_ms`` is the
        caller's reading of the wall clock in unix ms (the message's timestamp), 0 to read it
        here."""
        if self._clock() >= self._valid_until:
            raise Unavailable("this node cannot make message ids now (its node number lease is not"
                              " confirmed); retry later")
        now = (now_ms or int(time.time() * 1000)) - EPOCH_MS
        if now <= self._last_ms:
            # same millisecond, or the clock stepped back: keep counting on the last one
            self._seq = (self._seq + 1) & _SEQ_MASK
            if self._seq == 0:  # 4096 ids in one ms: borrow the next millisecond
                self._last_ms += 1
            now = self._last_ms
        else:
            self._seq = 0
            self._last_ms = now
        return (now << (_SEQ_BITS + _NODE_BITS)) | self._node | self._seq


class NumberLease:
    """Keeps ``ids``' node number leased from ``routes`` and its fence up to date.

    ``acquire`` leases a number (at start); ``renew`` (every few seconds) extends the lease,
    or, when it lapsed (the routes were unreachable for its whole TTL, the node was frozen
    past it, or the routes lost it), leases a number again: the same one when it is free,
    else another. Each success fences ``ids`` at (time the request was sent) + ``ttl`` -
    ``LEASE_MARGIN``: the routes set the expiry after they got the request, so the lease
    lasts at least that long. A failed or lapsed renewal leaves the old fence, so minting
    stops when the lease may have ended, and resumes with the next success.
    """

    def __init__(self, routes: Routes, node: NodeId, ids: IdGenerator, ttl: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if ttl <= LEASE_MARGIN:
            raise ValueError(f"ttl must be longer than {LEASE_MARGIN} s")
        self._routes = routes
        self._node = node
        self._ids = ids
        self._ttl = ttl
        self._clock = clock

    async def acquire(self) -> int:
        """Lease a number for ``ids`` (raises what the routes raise); returns it."""
        sent = self._clock()
        number = await self._routes.lease_number(self._node, self._ttl, NODE_NUMBERS)
        self._ids.set_node(number)
        self._ids.fence(sent + self._ttl - LEASE_MARGIN)
        return number

    async def renew(self) -> bool:
        """Extend the lease; True if it had lapsed and a number was leased again (the
        caller writes its routes again). Raises what the routes raise (the fence stays)."""
        sent = self._clock()
        if await self._routes.renew_number(self._ids.node, self._node, self._ttl):
            self._ids.fence(sent + self._ttl - LEASE_MARGIN)
            return False
        # lapsed: stop minting at once (another node may hold the number now), then lease again
        self._ids.fence(-math.inf)
        old = self._ids.node
        number = await self.acquire()
        log.warning("node number lease lapsed; leased again", extra={"old": old, "number": number})
        return True
